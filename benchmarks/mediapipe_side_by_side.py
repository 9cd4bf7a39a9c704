"""The same pictures to the project's pipeline and to MediaPipe Face Mesh, in turns, in one run: faces and time.

    python benchmarks/mediapipe_side_by_side.py --data ../shared/data --data-300w ../shared/300w \\
        --mediapipe-python /tmp/benchvenv/bin/python [--detector haar|cnn] [--repeats 3] [--threads 1] [--only TEXT]
    python benchmarks/mediapipe_side_by_side.py --mediapipe-python /tmp/benchvenv/bin/python --pictures a.jpg b.jpg

MediaPipe 0.10.21 needs numpy < 2, so it lives in its own virtual environment (``requirements-bench.txt``):

    python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install -r requirements-bench.txt

The script runs with the project's Python and starts itself again with ``--mediapipe-python`` (default: this
Python) as a worker that imports only numpy and MediaPipe. Where that Python has no MediaPipe, it says so in one line
(how to install it) and exits with status 1.

Each picture goes to the project's ``KeypointPipeline.detect`` (the shipped models, the detector ``--detector``,
default ``detector_architectures.DEFAULT_DETECTOR``) and to Face Mesh (legacy ``mp.solutions.face_mesh``,
``static_image_mode=True``, up to ``MAX_FACES`` faces, ``refine_landmarks=False``, its own face detector), one call
to each in turn, ``--repeats`` times, so a busy machine slows both alike; each side's time is the median of its
calls, in CPU milliseconds of its own process (``time.process_time``, every thread of the process counted) with the
wall-clock milliseconds beside it. Decoding the picture and handing it to the worker are excluded; both sides get
the same RGB array, and both are called once on the first picture before the timing starts.

Pictures: those of ``benchmarks/pipeline_speed.py`` (640 x 480 to 12 megapixels: upright, turned, upside-down,
dark and small faces, close-ups of phone and camera sizes), or the files given with ``--pictures`` (then faces are
counted, not scored). A true face is found by a side when one of its faces' 68 keypoints lie within
``pipeline_speed.MATCH_NME`` (inter-ocular) of the true ones (``pipeline_speed.score``); Face Mesh's 468 points are
read as 68 with ``reference_landmarkers.MESH_TO_IBUG68``. Every other face is a false face.

Printed: per picture, found / true faces, false faces and ms of each side and the ratio of the CPU times (project
over MediaPipe); then for each side faces found, false faces, median and worst CPU ms, and the ratios of the
medians, of the worst times and the median of the per-picture ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAX_FACES = 10  # Face Mesh looks for at most this many faces a picture (the benchmark's pictures hold up to 6)
INSTALL = ("python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install -r requirements-bench.txt, "
           "then pass --mediapipe-python /tmp/benchvenv/bin/python")


# ---------------------------------------------------------------------------------------------------------
# The worker: MediaPipe alone (numpy and MediaPipe; nothing of the project)
# ---------------------------------------------------------------------------------------------------------
def worker() -> int:
    """Answers ``{"ready": version}`` (or ``{"error": message}`` without MediaPipe), then reads lines ``PATH`` (an
    .npy H x W x 3 uint8 RGB picture) from stdin and answers one JSON line for each: the CPU and wall-clock ms of one
    ``FaceMesh.process`` call and each face's 468 mesh points (x, y) in pixels."""
    try:
        import mediapipe as mp
    except ImportError as error:
        print(json.dumps({"error": f"MediaPipe is not installed for {sys.executable} ({error})"}), flush=True)
        return 1
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=MAX_FACES, refine_landmarks=False)
    print(json.dumps({"ready": mp.__version__}), flush=True)
    for line in sys.stdin:
        picture = np.load(line.strip())
        tic, cpu_tic = time.perf_counter(), time.process_time()
        result = mesh.process(picture)
        wall, cpu = 1000 * (time.perf_counter() - tic), 1000 * (time.process_time() - cpu_tic)
        height, width = picture.shape[:2]
        faces = [[[p.x * width, p.y * height] for p in face.landmark] for face in result.multi_face_landmarks or []]
        print(json.dumps({"cpu": cpu, "wall": wall, "faces": faces}), flush=True)
    mesh.close()
    return 0


class MediaPipeUnavailable(RuntimeError):
    """MediaPipe could not be started or stopped answering (a one-line message that says what to do)."""


class MediaPipeWorker:
    """The worker process, started with ``python`` (an interpreter with MediaPipe installed); its messages (MediaPipe
    logs on stderr) go to a temporary file, whose last line explains a worker that stops."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.log = tempfile.TemporaryFile("w+")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
        try:
            self.process = subprocess.Popen([python, __file__, "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=self.log, text=True, env=env)
        except OSError as error:
            raise MediaPipeUnavailable(f"cannot run {python} ({error.strerror}): make an environment with MediaPipe: {INSTALL}.") from None
        answer = self._answer()
        if "error" in answer:
            self.close()
            raise MediaPipeUnavailable(f"{answer['error']}: {INSTALL}.")
        self.version = answer["ready"]

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.log.seek(0)
            last = ([""] + [text for text in self.log.read().splitlines() if text.strip()])[-1].strip()
            raise MediaPipeUnavailable(f"the MediaPipe worker ({self.python}) stopped with status {self.process.returncode}"
                                       f"{': ' + last if last else ''}; check that it runs MediaPipe: {INSTALL}.")
        return json.loads(line)

    def run(self, path: Path) -> dict:
        """Face Mesh on the picture saved at ``path``: ``{"cpu": ms, "wall": ms, "faces": [468 x [x, y], ...]}``."""
        try:
            self.process.stdin.write(f"{path}\n")
            self.process.stdin.flush()
        except BrokenPipeError:  # the worker stopped: _answer says why
            pass
        return self._answer()

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except BrokenPipeError:  # the worker stopped already
            pass
        self.process.wait()
        self.log.close()


# ---------------------------------------------------------------------------------------------------------
# The comparison (the project's side)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class MeshFace:
    """A Face Mesh face read as the 68 iBUG keypoints (68, 2), in picture pixels."""

    keypoints: np.ndarray


def mesh_faces(meshes: list) -> list[MeshFace]:
    """Face Mesh faces (each 468 x [x, y] pixels) as 68-point faces (``reference_landmarkers.MESH_TO_IBUG68``)."""
    from reference_landmarkers import MESH_TO_IBUG68

    return [MeshFace(np.asarray(mesh, np.float64)[MESH_TO_IBUG68]) for mesh in meshes]


def pictures_to_compare(args: argparse.Namespace) -> list[tuple[str, np.ndarray, list[np.ndarray] | None]]:
    """(name, H x W x 3 uint8 RGB picture, true keypoints or None) for every picture of the run."""
    from data_load import read_image
    from pipeline_speed import compose, scenes, sources

    if args.pictures:
        return [(Path(p).name, read_image(p), None) for p in args.pictures]
    faces = sources(args.data, args.data_300w)
    chosen = [(name, shape, placements) for name, shape, placements in scenes() if not args.only or args.only in name]
    return [(name, *compose(shape, faces, placements)) for name, shape, placements in chosen]


def tally(faces: list, truths: list[np.ndarray] | None) -> tuple[int, int]:
    """(true faces found, false faces) against the true keypoints (``pipeline_speed.score``); without them (0, the
    number of faces)."""
    from pipeline_speed import score

    return (0, len(faces)) if truths is None else score(faces, truths)


def cell(found: int, false: int, truths: list | None, cpu: float, wall: float) -> str:
    """One side's column of a row: found / true, false faces (or the faces counted), CPU ms (wall-clock ms)."""
    faces = f"{false} faces" if truths is None else f"{found}/{len(truths)}, {false} false"
    return f"{faces}, {cpu:6.1f} ms ({wall:.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="course dataset folder (default: $FKP_DATA or data/; without it, astronaut faces only)")
    parser.add_argument("--data-300w", help="300-W folder for the close-ups of held-out faces (default: $FKP_300W)")
    parser.add_argument("--pictures", nargs="+", help="picture files to compare instead of the benchmark's pictures")
    parser.add_argument("--only", help="compare only the benchmark pictures whose name holds this text (e.g. close-up)")
    parser.add_argument("--detector", help="the project's face detector (default: the pipeline's default)")
    parser.add_argument("--mediapipe-python", default=sys.executable, help="a Python with MediaPipe installed (default: this one)")
    parser.add_argument("--repeats", type=int, default=3, help="calls to each side per picture, alternating (median)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of the project's models and OpenCV")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker()
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import cv2
    import torch

    from data_load import DataError
    from detector_architectures import DEFAULT_DETECTOR, DETECTORS
    from pipeline.keypoint_pipeline import KeypointPipeline

    detector = args.detector or DEFAULT_DETECTOR
    if detector not in DETECTORS:
        parser.error(f"--detector must be one of {', '.join(DETECTORS)}")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    try:  # MediaPipe first: a missing one is said at once
        mediapipe = MediaPipeWorker(args.mediapipe_python)
    except MediaPipeUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        pipe = KeypointPipeline.from_pretrained(detector=detector, threads=args.threads)
        pictures = pictures_to_compare(args)
        if not pictures:
            print(f"error: no benchmark picture's name holds {args.only!r}: see pipeline_speed.scenes for the names.", file=sys.stderr)
            return 1
        return compare(pipe, detector, mediapipe, pictures, args.repeats, args.threads)
    except (DataError, ValueError, MediaPipeUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        mediapipe.close()


def compare(pipe: Any, detector: str, mediapipe: MediaPipeWorker, pictures: list, repeats: int, threads: int) -> int:
    """Times and scores every picture (``pictures_to_compare``) on the pipeline ``pipe`` (a ``KeypointPipeline``) and
    MediaPipe, alternating, and prints the table and the summary."""
    sides = (f"project ({detector})", f"MediaPipe {mediapipe.version}")
    times: dict[str, list[float]] = {side: [] for side in sides}
    totals: dict[str, list[int]] = {side: [0, 0, 0] for side in sides}  # found, true, false
    print(f"The project's pipeline (detector {detector}, {threads} thread(s)) and MediaPipe {mediapipe.version} Face Mesh "
          f"(its own detector), one call to each in turn, median of {repeats}; found / true, false faces, CPU ms "
          "(wall-clock ms)")
    print(f"{'picture':<42} {sides[0]:>32} {sides[1]:>32} {'ratio':>7}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for k, (name, picture, truths) in enumerate(pictures):
            picture = np.ascontiguousarray(picture, dtype=np.uint8)
            path = Path(folder) / f"{k}.npy"
            np.save(path, picture)
            if k == 0:  # one untimed call to each side first
                pipe.detect(picture)
                mediapipe.run(path)
            calls: dict[str, list] = {side: [] for side in sides}
            for _ in range(repeats):
                tic, cpu_tic = time.perf_counter(), time.process_time()
                faces = pipe.detect(picture)
                calls[sides[0]].append((1000 * (time.process_time() - cpu_tic), 1000 * (time.perf_counter() - tic), faces))
                theirs = mediapipe.run(path)
                calls[sides[1]].append((theirs["cpu"], theirs["wall"], mesh_faces(theirs["faces"])))
            cells = []
            for side in sides:
                cpu, wall = (float(np.median([call[i] for call in calls[side]])) for i in (0, 1))
                found, false = tally(calls[side][-1][2], truths)
                times[side].append(cpu)
                count = len(truths) if truths is not None else 0
                totals[side] = [totals[side][0] + found, totals[side][1] + count, totals[side][2] + false]
                cells.append(cell(found, false, truths, cpu, wall))
            ratio = times[sides[0]][-1] / max(times[sides[1]][-1], 1e-3)
            print(f"{name:<42} {cells[0]:>32} {cells[1]:>32} {ratio:7.2f}", flush=True)
    print()
    for side in sides:
        found, true, false = totals[side]
        ms = np.array(times[side])
        faces = f"{false} faces" if pictures[0][2] is None else f"{found}/{true} found, {false} false"
        print(f"all, {side}: {faces}, median {np.median(ms):.1f} ms, worst {ms.max():.1f} ms (CPU)")
    ours, theirs = (np.array(times[side]) for side in sides)
    print(f"ratio project / MediaPipe: median {np.median(ours) / np.median(theirs):.2f}, worst {ours.max() / theirs.max():.2f}, "
          f"median of the per-picture ratios {np.median(ours / np.maximum(theirs, 1e-3)):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
