"""The main job over a collection of pictures: find them, annotate each on every core, and keep every result.

    collection = collect_pictures(["photos", "more/IMG_0001.heic"])   # files and folders (searched recursively)
    jobs = plan_jobs(collection.pictures, Path("out"), filter_name=None)
    with ResultsFile.open(Path("faces.jsonl"), resume=True) as results:   # JSON Lines, one picture a line
        todo = [job for job in jobs if not results.holds(job.label)]
        for record in annotated_records(todo, Settings(), workers=4):
            results.write(record)

Each picture becomes one record (``picture_record``: its name, size in pixels and faces, or its error) and, unless
its output is None, an annotated copy (``render``) under the output folder, at the picture's path relative to the
folder that holds all the inputs (``plan_jobs``), so two ``photo.jpg`` of different folders never collide. JPEG
photos (and HEIC/HEIF and WebP ones) are annotated as JPEG of quality ``JPEG_QUALITY``, others as PNG.

The results file is written one line per picture as each picture finishes, flushed and synced to the disk, so a run
stopped any way (Ctrl-C, ``kill -9``, a power cut) keeps every picture it finished; ``ResultsFile.open(resume=True)``
reads them back (dropping a half-written last line) for the run that goes on.

Workers (``annotated_records``) are processes of the standard library's ``concurrent.futures``, each with its own
pipeline on one thread; the parent writes their records in the order of the jobs.
"""
from __future__ import annotations

import glob
import json
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

import cv2
import numpy as np

from data_load import DataError
from detector_architectures import DEFAULT_DETECTOR
from resources.files import atomic_write
from resources.onnx_model import has_torch

# File name endings searched for in folders (case-insensitive); a file named on the command line is read whatever its
# name (``data_load.read_image`` decodes by content).
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
PICTURE_SUFFIXES = (*JPEG_SUFFIXES, ".png", ".heic", ".heif", ".hif", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif",
                    ".pbm", ".pgm", ".ppm", ".pnm")
# Photos of these (lossy) formats are annotated as JPEG; the others, drawings and screenshots among them, as PNG.
LOSSY_SUFFIXES = (*JPEG_SUFFIXES, ".heic", ".heif", ".hif", ".webp")
# The quality of annotated JPEG photos (libjpeg's 1-100 scale): a phone photo's own quality is about 90-95, so the
# annotated copy of a JPEG photo is about its size (benchmarks/batch_speed.py: 1.04 times at the median and at most
# 1.51 times on its 330 photos of JPEG quality 85-95).
JPEG_QUALITY = 90
# Jobs handed to the worker processes ahead of the one whose record is written next (per worker): enough to keep every
# worker busy while a slow picture holds the order, few enough that a stopped run loses little work.
QUEUE_PER_WORKER = 4
# Seconds between two progress lines when the output is not a terminal (a log file, a notebook, a cluster job).
LOG_EVERY = 5.0


# ---------------------------------------------------------------------------------------------------------
# Drawing and records
# ---------------------------------------------------------------------------------------------------------
def draw_faces(image: np.ndarray, faces: list, box_colour=(0, 200, 255), point_colour=(255, 0, 255)) -> np.ndarray:
    """Boxes and keypoints drawn on a copy of an RGB picture; sizes follow the face so small faces stay legible."""
    canvas = image.copy()
    for face in faces:
        x, y, w, h = np.round(face.box).astype(int)
        thickness = max(1, int(round(w / 120)))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), box_colour, thickness, cv2.LINE_AA)
        radius = max(1, int(round(w / 90)))
        for px, py in face.keypoints:
            cv2.circle(canvas, (int(round(px)), int(round(py))), radius, point_colour, -1, cv2.LINE_AA)
    return canvas


def render(image: np.ndarray, faces: list, filter_name: str | None) -> np.ndarray:
    """The faces drawn on a copy of an RGB picture: boxes and keypoints, or the filter ``filter_name`` (a key of
    ``filters.FILTERS``) on every face."""
    if filter_name is None:
        return draw_faces(image, faces)
    from filters import apply_filter

    return apply_filter(image, faces, filter_name)


def rounded(values, digits: int) -> list:
    """Numbers (any nesting, any float dtype) as Python floats rounded to ``digits`` decimals: float32 values are
    widened first, so 902.09 is written as 902.09 and not as its float32 neighbour 902.0900268554688."""
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


def faces_to_json(faces: list) -> list[dict]:
    """The faces as JSON-ready dicts: box (x, y, w, h) and keypoints ((x, y) pixels, iBUG order), rounded to
    0.01 pixel, the detector's score, the flip error and the face score (None where not computed)."""
    return [
        {
            "box": rounded(face.box, 2),
            "score": None if face.score is None else round(float(face.score), 4),
            "flip_error": None if face.flip_error is None else round(float(face.flip_error), 4),
            "face_score": None if face.face_score is None else round(float(face.face_score), 4),
            "convention": face.convention,
            "model": face.model,
            "keypoints": rounded(face.keypoints, 2),
        }
        for face in faces
    ]


def picture_record(label: str, image: np.ndarray, faces: list) -> dict:
    """One picture's entry in the results file: its name, size in pixels and faces (``faces_to_json``)."""
    return {"image": str(label), "width": image.shape[1], "height": image.shape[0], "faces": faces_to_json(faces)}


def error_record(label: str, reason: str) -> dict:
    """The entry of a picture that could not be read or written: its name and the one-line reason."""
    return {"image": str(label), "error": reason}


def encode_picture(image: np.ndarray, suffix: str) -> bytes:
    """An RGB picture encoded as JPEG (quality ``JPEG_QUALITY``) for a JPEG file name ending, else as PNG."""
    jpeg = suffix.lower() in JPEG_SUFFIXES
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if jpeg else []
    ok, encoded = cv2.imencode(".jpg" if jpeg else ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise DataError(f"Could not encode a {image.shape[1]} x {image.shape[0]} picture as {'JPEG' if jpeg else 'PNG'}.")
    return encoded.tobytes()


def save_rgb(path: Path, image: np.ndarray) -> None:
    """Write an RGB picture atomically (JPEG for a ``.jpg``/``.jpeg`` name, ``encode_picture``, else PNG): to a
    hidden file beside ``path``, then renamed onto it, so a stopped run never leaves half a picture under its name.
    The hidden file a killed run (``kill -9`` while it wrote) left for the same picture is removed first: a picture
    has one writer, while ``atomic_write`` itself must leave alone the temporary files of other processes writing the
    same path at the same time (two processes building one cache).

    Raises DataError (one line) when the folder cannot be made or written."""
    encoded = encode_picture(image, path.suffix)
    try:
        for leftover in path.parent.glob(f".{glob.escape(path.name)}.{'?' * 8}.tmp"):  # atomic_write's mkstemp names
            leftover.unlink(missing_ok=True)
        atomic_write(path, lambda partial: Path(partial).write_bytes(encoded))
    except OSError as error:
        raise DataError(f"Could not write {path}: {error.strerror}; check that the folder is writable.") from None


def write_text_atomically(path: Path, text: str) -> None:
    """Write a text file through a temporary file beside it, so an interrupted write leaves the old one whole."""
    def write(partial: str) -> None:
        with open(partial, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())

    atomic_write(path, write)


# ---------------------------------------------------------------------------------------------------------
# Finding the pictures
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Collection:
    """The pictures to annotate, in order and each once (files named, then each folder's pictures sorted by path),
    and the files left out, counted by reason (``skipped``: "not a picture file", "hidden", "named twice",
    "in the output folder"; ``skipped_types``: the name endings of the files that are not pictures)."""

    pictures: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    skipped_types: Counter = field(default_factory=Counter)

    def skipped_summary(self) -> str:
        """One line saying how many files were left out and why; "" when none was."""
        if not self.skipped:
            return ""
        reasons = []
        for reason, count in self.skipped.most_common():
            if reason == "not a picture file" and self.skipped_types:
                kinds = ", ".join(f"{ending} {n}" for ending, n in self.skipped_types.most_common(4))
                more = len(self.skipped_types) - 4
                reason += f" ({kinds}{f', {more} more kinds' if more > 0 else ''})"
            reasons.append(f"{count} {reason}")
        total = sum(self.skipped.values())
        return f"skipped {total} file{'s' if total != 1 else ''}: {'; '.join(reasons)}"


def is_picture_name(name: str) -> bool:
    """Whether a file name ends like a picture file (``PICTURE_SUFFIXES``, any case)."""
    return name.lower().endswith(PICTURE_SUFFIXES)


def inside(path: str, folder: str | None) -> bool:
    """Whether ``path`` lies in ``folder`` (both as absolute paths; False when ``folder`` is None)."""
    if folder is None:
        return False
    folder = os.path.abspath(folder)
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def read_path_list(list_file: str, stdin: IO[str] | None = None) -> list[str]:
    """The paths of a list file (``-``: standard input), one a line; blank lines and lines starting with ``#`` are
    left out. Relative paths are taken from the current folder, as a shell would.

    Raises UsageError (one line) when the list cannot be read."""
    try:
        if list_file == "-":
            text = (stdin or sys.stdin).read()
        else:
            text = Path(list_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not a text file"
        raise UsageError(f"--from-list {list_file} cannot be read ({reason}): give a text file with one path a line.") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def collect_pictures(paths: Sequence[str], exclude: str | None = None) -> Collection:
    """The pictures named by ``paths``: each file as it is (whatever its name: an unreadable one fails as a picture),
    each folder searched recursively for picture files (``is_picture_name``) in path order, hidden files and folders
    (names starting with ".") left out, as is anything inside ``exclude`` (the output folder, so a second run does
    not annotate the annotated copies). A path that does not exist is kept: it fails as a picture, with its reason.
    A picture named twice is annotated once."""
    collection = Collection()
    seen: set[str] = set()

    def add(picture: str) -> None:
        key = os.path.abspath(picture)
        if key in seen:
            collection.skipped["named twice"] += 1
            return
        seen.add(key)
        collection.pictures.append(picture)

    for path in paths:
        if not os.path.isdir(path):
            add(path)
            continue
        for folder, subfolders, files in os.walk(path):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            if inside(folder, exclude):
                collection.skipped["in the output folder"] += len(files)
                subfolders[:] = []
                continue
            for name in sorted(files):
                if name.startswith("."):
                    collection.skipped["hidden"] += 1
                elif not is_picture_name(name):
                    collection.skipped["not a picture file"] += 1
                    collection.skipped_types[os.path.splitext(name)[1].lower() or "no ending"] += 1
                else:
                    add(os.path.join(folder, name))
    return collection


# ---------------------------------------------------------------------------------------------------------
# Planning the outputs
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One picture to annotate: ``label`` names it in the results (the path as found, or a demo picture's name),
    ``source`` is the file to read (None: a picture handed over in memory), ``output`` the annotated copy's path
    (None: no copy)."""

    label: str
    source: str | None
    output: str | None


def output_suffix(filter_name: str | None) -> str:
    """What an annotated copy's name adds to its picture's: ``_keypoints``, ``_sunglasses``, ``_mask-tiger``."""
    return f"_{filter_name.replace(':', '-')}" if filter_name else "_keypoints"


def annotated_suffix(picture: str) -> str:
    """The file name ending of a picture's annotated copy: a JPEG photo's own (``.jpg``, ``.JPEG``, ...), ``.jpg``
    for the other lossy photo formats (HEIC/HEIF, WebP), ``.png`` for the rest."""
    suffix = os.path.splitext(picture)[1]
    if suffix.lower() in JPEG_SUFFIXES:
        return suffix
    return ".jpg" if suffix.lower() in LOSSY_SUFFIXES else ".png"


def common_folder(pictures: Sequence[str]) -> str:
    """The deepest folder holding every picture (absolute); the current folder for none."""
    folders = [os.path.dirname(os.path.abspath(p)) for p in pictures]
    if not folders:
        return os.getcwd()
    try:
        return os.path.commonpath(folders)
    except ValueError:  # pictures on different drives (Windows): keep their whole paths under the output folder
        return ""


def plan_jobs(pictures: Sequence[str], out_dir: Path | None, filter_name: str | None) -> list[Job]:
    """One job per picture, with the path of its annotated copy under ``out_dir`` (None: no copies): the picture's
    path relative to the folder that holds all the pictures (``common_folder``), its name with ``output_suffix``
    and ``annotated_suffix``: ``trip/day1/photo.jpg`` and ``trip/day2/photo.jpg`` become ``out/day1/photo_keypoints.jpg``
    and ``out/day2/photo_keypoints.jpg``. Paths that would still clash (names that differ only in case, or ``a.heic``
    beside ``a.jpg``) get a number: ``photo_2_keypoints.jpg``."""
    base = common_folder(pictures)
    jobs, taken = [], set()
    for picture in pictures:
        if out_dir is None:
            jobs.append(Job(picture, picture, None))
            continue
        absolute = os.path.abspath(picture)
        relative = os.path.relpath(absolute, base) if base else os.path.splitdrive(absolute)[1].lstrip("\\/")
        folder, name = os.path.split(relative)
        stem, ending = os.path.splitext(name)[0], output_suffix(filter_name) + annotated_suffix(name)
        output, number = out_dir / folder / f"{stem}{ending}", 2
        while str(output).lower() in taken:
            output, number = out_dir / folder / f"{stem}_{number}{ending}", number + 1
        taken.add(str(output).lower())
        jobs.append(Job(picture, picture, str(output)))
    return jobs


# ---------------------------------------------------------------------------------------------------------
# The results file
# ---------------------------------------------------------------------------------------------------------
class UsageError(ValueError):
    """An argument that cannot be used (an output path that cannot be written, a results file that would be
    replaced): one line saying what to do; the command exits with 2."""


def record_key(label: str) -> str:
    """What identifies a picture in a results file: its path made absolute from the current folder (a demo
    picture's name likewise), so ``photos/a.jpg`` and ``./photos/a.jpg`` are one picture."""
    return os.path.abspath(label)


def read_results(path: Path) -> tuple[list[str], bool]:
    """The complete lines of a results file (each a JSON object with an "image") and whether its last line was
    cut short (a run stopped while writing it); such a line is left out.

    Raises UsageError (one line) for a file that is not a results file of this tool."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    cut = lines.pop() != ""  # text after the last newline: a line being written when the run stopped
    kept = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or "image" not in record:
            raise UsageError(
                f"--json {path} is not a results file of this tool (line {number} is not a picture's record): "
                "give another file, or --overwrite to replace it."
            )
        kept.append(line)
    return kept, cut


class ResultsFile:
    """The results file (JSON Lines): one record a line, appended, flushed and synced as each picture finishes.

    ``ResultsFile.open`` checks the path before any picture is read; ``holds(label)`` says whether a picture's
    record is already there (``--resume``); ``write(record)`` appends one."""

    def __init__(self, path: Path, stream: IO[str], done: dict[str, int], dropped: dict[str, int]) -> None:
        self.path = path
        self.stream = stream
        self.done = done  # record_key -> number of faces, of the pictures whose record was kept
        self.dropped = dropped  # what a resume left out: "half-written" and "failed" lines

    @classmethod
    def open(cls, path: Path, resume: bool = False, overwrite: bool = False) -> "ResultsFile":
        """Open the results file at ``path`` for writing, creating its folder: empty or new, or with ``overwrite``
        emptied, or with ``resume`` kept (its pictures then count as done, except those that failed, whose lines are
        dropped so they are tried again, and a half-written last line, which is dropped).

        Raises UsageError (one line saying what to do) for a folder, a path that cannot be written, and a file that
        already holds results without ``resume`` or ``overwrite``."""
        if path.is_dir():
            raise UsageError(f"--json {path} is a folder: give a file name, such as {path / 'faces.jsonl'}.")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"--json {path}: cannot create the folder {path.parent} ({error.strerror}): give a file in a folder you can write to.") from None
        done: dict[str, int] = {}
        dropped: dict[str, int] = {"half-written": 0, "failed": 0}
        try:
            holds_results = path.is_file() and path.stat().st_size > 0
            if holds_results and not (resume or overwrite):
                raise UsageError(
                    f"--json {path} already holds results: add --resume to go on with them, --overwrite to replace "
                    "them, or give another file."
                )
            if holds_results and resume:
                lines, cut = read_results(path)
                kept = []
                for line in lines:
                    record = json.loads(line)
                    if "error" in record:
                        dropped["failed"] += 1
                    else:
                        kept.append(line)
                        done[record_key(record["image"])] = len(record.get("faces", []))
                dropped["half-written"] = int(cut)
                if cut or dropped["failed"]:
                    write_text_atomically(path, "".join(line + "\n" for line in kept))
            stream = open(path, "a" if resume else "w", encoding="utf-8")
        except OSError as error:
            raise UsageError(f"--json {path} cannot be written ({error.strerror}): give a file in a folder you can write to.") from None
        return cls(path, stream, done, dropped)

    def holds(self, label: str) -> bool:
        """Whether the picture ``label`` already has its record (from the run that is resumed)."""
        return record_key(label) in self.done

    def write(self, record: dict) -> None:
        """Append one record as a line, flushed and synced to the disk before returning."""
        self.stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.stream.flush()
        os.fsync(self.stream.fileno())

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> "ResultsFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_out_dir(out_dir: Path) -> None:
    """Make sure the annotated pictures can be written into ``out_dir``, creating it; before any picture is read.

    Raises UsageError (one line) for a file, and for a folder that cannot be created or written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder: give a folder for the annotated pictures, or --no-pictures.")
    probe = out_dir / f".write-check-{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UsageError(f"--out {out_dir} cannot be written ({error.strerror}): give a folder you can write to, or --no-pictures.") from None


# ---------------------------------------------------------------------------------------------------------
# Annotating, in this process or in worker processes
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """How every picture is annotated: the model file (None: the shipped one), the face detector's name
    (``detector_architectures.DETECTORS``), the smallest face in pixels (None: the detector's default), the filter
    to draw (None: the keypoints) and the CPU threads of each pipeline."""

    model: str | None = None
    detector: str = DEFAULT_DETECTOR
    min_face: int | None = None
    filter_name: str | None = None
    threads: int = 1


class Annotator:
    """One process's pipeline (``KeypointPipeline.from_pretrained`` with the ``Settings``, or ``pipe``); called
    with a ``Job`` (and the picture itself for an in-memory one), it returns the picture's record after writing its
    annotated copy. A picture that cannot be read or written gives an ``error_record``; nothing is raised for it."""

    def __init__(self, settings: Settings, pipe=None) -> None:
        from pipeline.keypoint_pipeline import KeypointPipeline

        self.settings = settings
        self.pipe = pipe or KeypointPipeline.from_pretrained(
            settings.model, detector=settings.detector, min_face_size=settings.min_face, threads=settings.threads
        )

    def __call__(self, job: Job, picture: np.ndarray | None = None) -> dict:
        from pipeline.faces import as_rgb_image

        try:
            image = as_rgb_image(picture if picture is not None else job.source)
            faces = self.pipe.detect(image)
            if job.output is not None:
                save_rgb(Path(job.output), render(image, faces, self.settings.filter_name))
        except DataError as error:
            return error_record(job.label, str(error))
        except (cv2.error, MemoryError) as error:  # a picture too big for this machine's memory, or OpenCV's refusal
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else "out of memory"
            return error_record(job.label, f"{job.label} could not be annotated ({type(error).__name__}: {reason}).")
        return {**picture_record(job.label, image, faces), "output": job.output}


def one_thread() -> None:
    """Keep this process to one CPU thread (PyTorch, OpenCV and the BLAS/OpenMP libraries): workers share the cores."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
    if has_torch():  # the light install (requirements-light.txt) runs without PyTorch
        import torch

        torch.set_num_threads(1)
    cv2.setNumThreads(1)


_worker_annotator: Annotator | None = None


def exit_with_parent() -> None:
    """Let this worker end when the process that started it is gone (``kill -9`` of the job), instead of waiting
    for work forever: a thread waits on the parent's sentinel (``multiprocessing.parent_process``)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def start_worker(settings: Settings) -> None:
    """A worker process's start: one thread, Ctrl-C left to the parent (which stops the job), its own pipeline."""
    import signal

    global _worker_annotator
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    one_thread()
    _worker_annotator = Annotator(settings)


def annotate_in_worker(job: Job) -> dict:
    """A worker process's task: one job's record (``Annotator``)."""
    assert _worker_annotator is not None, "start_worker did not run"
    return _worker_annotator(job)


def annotated_records(
    jobs: Iterable[Job],
    settings: Settings,
    workers: int = 1,
    pipe=None,
    pictures: dict[str, np.ndarray] | None = None,
) -> Iterator[dict]:
    """The record of each job (``Annotator``), in the order of ``jobs``.

    ``workers`` 1: in this process, with ``pipe`` when given; in-memory ``pictures`` (by label) are only read there.
    More: that many worker processes (``concurrent.futures.ProcessPoolExecutor``, started fresh: "spawn"), each
    with its own pipeline on one thread, given ``QUEUE_PER_WORKER`` jobs ahead each. Closing the iterator (a stopped
    job) cancels the jobs not yet begun."""
    jobs = iter(jobs)
    if workers <= 1:
        annotator = Annotator(settings, pipe)
        for job in jobs:
            yield annotator(job, (pictures or {}).get(job.label))
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=start_worker, initargs=(settings,))
    pending: deque[Future] = deque()
    try:
        for job in jobs:
            pending.append(pool.submit(annotate_in_worker, job))
            if len(pending) >= workers * QUEUE_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=not pending, cancel_futures=True)


# ---------------------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------------------
class Progress:
    """Pictures done of ``total``, pictures per second, time left and faces found so far: a tqdm bar when ``stream``
    is a terminal, else a line every ``LOG_EVERY`` seconds. Error lines go to ``errors``."""

    def __init__(self, total: int, stream: IO[str] | None = None, errors: IO[str] | None = None, every: float = LOG_EVERY) -> None:
        from tqdm import tqdm

        self.stream, self.errors = stream or sys.stdout, errors or sys.stderr
        self.total, self.every = total, every
        self.done = self.faces = self.failed = 0
        self.start = self.logged = time.perf_counter()
        interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, unit="picture", file=self.stream, dynamic_ncols=True, smoothing=0.05) if interactive else None

    def update(self, record: dict) -> None:
        """Count one finished picture's record; print its error, if any, on one line."""
        self.done += 1
        if "error" in record:
            self.failed += 1
            self.error(f"error: {record['error']}")
        else:
            self.faces += len(record["faces"])
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.faces} faces", refresh=False)
            self.bar.update(1)
        elif time.perf_counter() - self.logged >= self.every:
            self.log()

    def rate(self) -> float:
        """Pictures per second so far."""
        return self.done / max(time.perf_counter() - self.start, 1e-9)

    def log(self) -> None:
        """One progress line: done of total, pictures per second, time left, faces so far."""
        from tqdm import tqdm

        rate = self.rate()
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        print(
            f"{self.done}/{self.total} pictures, {rate:.1f} pictures/s, {tqdm.format_interval(left)} left, {self.faces} faces"
            + (f", {self.failed} failed" if self.failed else ""),
            file=self.stream,
            flush=True,
        )
        self.logged = time.perf_counter()

    def error(self, line: str) -> None:
        """Print a line on the error stream without breaking the bar."""
        if self.bar is not None:
            self.bar.write(line, file=self.errors)
        else:
            print(line, file=self.errors, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def seconds(self) -> float:
        return time.perf_counter() - self.start
