"""The main job on a Ray cluster, through Ray Data: ``python detect.py PICTURES --json faces.jsonl --ray [ADDRESS]``.

The driver (the machine that runs ``detect.py``) finds the pictures and plans their outputs as the plain run does
(``pipeline.batch``); Ray Data spreads the list of paths over an actor pool, where each actor holds one pipeline on
one CPU thread (``RayAnnotator``, a callable class for ``Dataset.map_batches``); each actor reads its pictures and
writes their annotated copies itself, and hands back their records, which the driver writes to the results file, in
the order of the list, as they arrive. So every node must see the pictures and the output folder at the same paths
(shared storage: NFS, a cluster file system, a bucket mounted with FUSE), and have the project's requirements
installed; the project's code and models travel with the job (Ray's ``working_dir``).

Ray is optional (``requirements-ray.txt``); nothing else in the project imports this module.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from data_load import DataError
from pipeline.batch import Annotator, Job, Settings, one_thread

REPO_DIR = Path(__file__).resolve().parents[1]
# What the job's copy of the project leaves out (Ray also leaves out what .gitignore lists: data/, outputs/, ...).
SHIP_EXCLUDES = [".venv", "*.ipynb", "benchmarks", "tests", "course", "docs"]
# Pictures per Ray Data block: a block is the unit handed to an actor, so small blocks spread a collection evenly
# over the pool and return results steadily; every actor has at least 4 blocks to take.
PICTURES_PER_BLOCK = 16
BLOCKS_PER_ACTOR = 4


class RayAnnotator:
    """Ray Data's callable class (``map_batches``): one ``Annotator`` per actor, on one thread. A batch holds the columns of ``job_row``; it gives back the jobs' records as
    JSON text ("record"), so that records of any shape (faces or an error) travel in one column. The records name
    pictures and outputs as the driver does (``job_row``), so they equal the plain run's."""

    def __init__(self, settings: Settings) -> None:
        one_thread()
        self.annotator = Annotator(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = []
        for label, source, output, planned in zip(batch["label"], batch["source"], batch["output"], batch["planned"]):
            record = self.annotator(Job(str(label), str(source), None if output is None else str(output)))
            if "error" in record:
                record["error"] = record["error"].replace(str(source), str(label))
            else:
                record["output"] = planned
            records.append(json.dumps(record))
        return {"record": np.array(records, dtype=object)}


def job_row(job: Job) -> dict:
    """A job as a row of the dataset: its label, the picture and output paths made absolute (the actors do not work
    in the driver's folder), and the output path as planned (for the record)."""
    return {
        "label": job.label,
        "source": os.path.abspath(job.source or job.label),
        "output": None if job.output is None else os.path.abspath(job.output),
        "planned": job.output,
    }


def blocks_for(pictures: int, actors: int) -> int:
    """How many blocks ``pictures`` are split into for a pool of ``actors`` (``PICTURES_PER_BLOCK``,
    ``BLOCKS_PER_ACTOR``), at most one picture a block."""
    return max(1, min(pictures, max(BLOCKS_PER_ACTOR * actors, -(-pictures // PICTURES_PER_BLOCK))))


def connect(address: str) -> bool:
    """Join the Ray cluster at ``address`` ("": ``ray.init``'s own search: $RAY_ADDRESS, then the cluster last started
    on this machine, else a new local one; "local": a new one on this machine); nothing is done when this process is
    already connected. The project's code and models travel with the job (Ray's ``working_dir``), except to a new
    local cluster, whose workers import them from here. Whether this call connected (and so should disconnect).

    Raises DataError (one line) when Ray cannot start or reach the cluster (Ray gives its own processes 30 s to start,
    which a busy machine can exceed: try again)."""
    import ray

    if ray.is_initialized():
        return False
    if address == "local":
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_DIR), os.environ.get("PYTHONPATH")]))}}
    else:
        runtime_env = {"working_dir": str(REPO_DIR), "excludes": SHIP_EXCLUDES}
    try:
        ray.init(address=address or None, runtime_env=runtime_env, include_dashboard=False, logging_level=logging.WARNING)
    except Exception as error:  # Ray raises ConnectionError, RuntimeError, or a bare Exception for a start-up that timed out
        ray.shutdown()
        where = f"the Ray cluster at {address}" if address not in ("", "local") else "a Ray instance"
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataError(f"Could not start or reach {where}: {reason} Check the address (`ray status` on the cluster) and try again.") from None
    return True


def ray_records(jobs: Sequence[Job], settings: Settings, address: str, workers: int | None = None) -> Iterator[dict]:
    """The record of each job, in the order of ``jobs``, computed on the Ray cluster at ``address`` (``connect``)
    by an actor pool of ``RayAnnotator`` of at most ``workers`` actors (None: one per CPU of the cluster), each on
    one CPU. The model file, when given, must be at the same path on every node."""
    import ray
    import ray.data

    started = connect(address)
    try:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the job has its own (batch.Progress)
        context.execution_options.preserve_order = True  # records in the order of the jobs, as the plain run
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = workers or max(1, cpus)
        print(f"annotating on Ray ({cpus} CPUs): up to {actors} actor{'s' if actors != 1 else ''}", flush=True)
        if settings.model is not None:
            settings = replace(settings, model=os.path.abspath(settings.model))
        dataset = ray.data.from_items([job_row(job) for job in jobs], override_num_blocks=blocks_for(len(jobs), actors))
        dataset = dataset.map_batches(
            RayAnnotator,
            fn_constructor_args=(settings,),
            batch_size=1,
            num_cpus=1,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
        )
        for row in dataset.iter_rows():
            yield json.loads(row["record"])
    finally:
        if started:
            ray.shutdown()
