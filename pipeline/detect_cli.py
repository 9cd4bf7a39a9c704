"""Find every face in pictures or video and draw its 68 keypoints (the project's main job).

    python detect.py                                  # the bundled demo pictures -> outputs/
    python detect.py photos/ --out annotated --json faces.jsonl     # a folder, searched recursively
    python detect.py photos/ --out annotated --json faces.jsonl --resume   # go on after a stop
    python detect.py --from-list paths.txt --json faces.jsonl --no-pictures   # the results file alone
    python detect.py photos/ --json faces.jsonl --ray auto   # on a Ray cluster (pip install -r requirements-ray.txt)
    python detect.py photo.jpg --filter sunglasses    # draw a filter instead of the keypoints
    python detect.py --video clip.mp4 --json frames.jsonl   # annotated video, one results line per frame
    python detect.py --webcam 0 --show                # live, press q to stop

Pictures are files (read whatever their name) and folders, searched recursively for picture files (JPEG, PNG,
HEIC/HEIF, WebP, BMP, TIFF, GIF, PNM; hidden files are left out). Annotated copies keep the pictures' sub-folders
under --out; JPEG, HEIC and WebP photos become JPEG (quality 90), other pictures PNG. The results file (--json) is
JSON Lines: one line per picture, written as it finishes, with its faces (box, scores, 68 keypoints in pixels,
rounded to 0.01) or its error. It is never replaced without --overwrite; --resume goes on with it, skipping the
pictures it holds (those that failed are tried again). Pictures are annotated by --workers processes of one thread.
More in docs/batch.md.

Exit status: 0 when every picture or frame was processed (finding no face is not an error); 1 when a picture could
not be read or written, the model could not be loaded, or Ray could not be started or reached; 2 for wrong
arguments, among them an output path that cannot be written, a results file that exists (without --resume or
--overwrite) and --ray without Ray installed; 130 when stopped with Ctrl-C (run the same command with --resume).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from data_load import DataError
from detector_architectures import DEFAULT_DETECTOR, DETECTORS
from resources.onnx_model import ModelError
# draw_faces, faces_to_json and save_rgb are here for the notebooks and the web demo, which call them from this module.
from pipeline.batch import (  # noqa: F401
    Job,
    Progress,
    ResultsFile,
    Settings,
    UsageError,
    annotated_records,
    check_out_dir,
    collect_pictures,
    draw_faces,
    faces_to_json,
    one_thread,
    output_suffix,
    picture_record,
    plan_jobs,
    read_path_list,
    render,
    save_rgb,
)

REPO_DIR = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_DIR / "outputs"
# Without --workers, a worker process is started for every this many pictures (up to the cores): a worker takes a few
# seconds to start (Python, PyTorch and the models), the time of about 8 small photos, so a handful of pictures is
# annotated in this process.
PICTURES_PER_WORKER = 8


# ---------------------------------------------------------------------------------------------------------
# Demo pictures we may ship: a public-domain photo shipped in scikit-image, and montages made at run time
# ---------------------------------------------------------------------------------------------------------
def astronaut() -> np.ndarray:
    """NASA's public-domain portrait of Eileen Collins, shipped inside scikit-image (512 x 512 RGB)."""
    from skimage import data

    return data.astronaut()


def montage(pictures: list[np.ndarray], columns: int = 3, cell: int = 220, gap: int = 12) -> np.ndarray:
    """Pictures letter-boxed into equal cells on a grey canvas: a group photo for the detector. At most
    ``columns`` a row, in as few rows as that allows, with the fewest empty cells (4 pictures make 2 x 2, not 3 + 1)."""
    count = len(pictures)
    columns = min(range(1, max(1, min(columns, count)) + 1), key=lambda c: (-(-count // c), -count % c))
    rows = -(-len(pictures) // columns)
    canvas = np.full((rows * (cell + gap) + gap, columns * (cell + gap) + gap, 3), 200, np.uint8)
    for i, picture in enumerate(pictures):
        scale = cell / max(picture.shape[:2])
        resized = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        top = gap + (i // columns) * (cell + gap) + (cell - resized.shape[0]) // 2
        left = gap + (i % columns) * (cell + gap) + (cell - resized.shape[1]) // 2
        canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return canvas


def test_face_montage(count: int = 6, data_dir: str | None = None, seed: int = 3) -> np.ndarray | None:
    """A montage of test-set pictures of different people, or None when the dataset is not at hand."""
    from data_load import read_image, read_keypoints_csv, resolve_data_dir, split_paths

    try:
        csv_file, root_dir = split_paths(resolve_data_dir(data_dir, download=False), "test")
        names, _ = read_keypoints_csv(csv_file)
    except DataError:
        return None
    from data_load import person_of

    by_person: dict[str, str] = {}
    for name in np.random.default_rng(seed).permutation(names):
        by_person.setdefault(person_of(name), name)
    chosen = sorted(by_person.values())[:count]
    return montage([read_image(root_dir / name) for name in chosen])


def demo_pictures(data_dir: str | None = None) -> dict[str, np.ndarray]:
    """The bundled demo: the astronaut, a mirrored/rescaled montage of her, and test faces when available."""
    photo = astronaut()
    pictures = {"astronaut": photo}
    faces = test_face_montage(data_dir=data_dir)
    if faces is not None:
        pictures["test_faces_montage"] = faces
    pictures["astronaut_montage"] = montage([photo, photo[:, ::-1], cv2.resize(photo, None, fx=0.6, fy=0.6)], cell=260)
    return pictures


# ---------------------------------------------------------------------------------------------------------
# One picture in memory (the web demo's)
# ---------------------------------------------------------------------------------------------------------
def annotated_name(label: str, filter_name: str | None) -> str:
    """The file name of a picture's annotated PNG copy: ``photo_keypoints.png``, ``photo_sunglasses.png``,
    ``photo_mask-tiger.png``."""
    return f"{Path(label).stem}{output_suffix(filter_name)}.png"


def annotate(pipe, image: np.ndarray, filter_name: str | None) -> tuple[list, np.ndarray, float]:
    """Detect every face of an RGB picture and draw it (``render``): the faces, the annotated picture and the
    milliseconds detection and keypoints took (drawing excluded)."""
    tic = time.perf_counter()
    faces = pipe.detect(image)
    milliseconds = (time.perf_counter() - tic) * 1000
    return faces, render(image, faces, filter_name), milliseconds


# ---------------------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------------------
def default_workers() -> int:
    """The CPU cores this process may use (its affinity where the system tells it, else every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def planned_jobs(args: argparse.Namespace, listed: list[str], out_dir: Path | None) -> tuple[list[Job], dict[str, np.ndarray], str]:
    """The jobs of the command line's pictures and folders and the ``listed`` ones (or of the demo pictures, then
    handed over in memory by label), and the line saying which files were skipped ("" for none)."""
    if not (args.pictures or args.from_list):
        demo = demo_pictures(args.data)
        suffix = output_suffix(args.filter)
        return [Job(label, None, None if out_dir is None else str(out_dir / f"{label}{suffix}.png")) for label in demo], demo, ""
    collection = collect_pictures([*args.pictures, *listed], exclude=None if out_dir is None else str(out_dir))
    return plan_jobs(collection.pictures, out_dir, args.filter), {}, collection.skipped_summary()


def start_line(jobs: list[Job], todo: list[Job], skipped: str, results: ResultsFile | None) -> str:
    """What the job is about to do: pictures found, to do, skipped, already in the results file."""
    notes = [skipped] if skipped else []
    if results is not None and results.done:
        notes.append(f"{len(jobs) - len(todo)} already in {results.path}")
    if results is not None and any(results.dropped.values()):
        failed, cut = results.dropped["failed"], results.dropped["half-written"]
        notes.append(f"{failed} failed and {cut} half-written line{'s' if failed + cut != 1 else ''} dropped from it, to do again")
    return f"{len(jobs)} picture{'s' if len(jobs) != 1 else ''}, {len(todo)} to do" + "".join(f"; {note}" for note in notes)


def run_pictures(args: argparse.Namespace, out_dir: Path | None) -> int:
    """Annotate the pictures of the command line (or the demo pictures) into ``out_dir`` (None: no copies), writing
    each record to the --json results file as it finishes; the exit status (0, 1 when a picture failed, 130 when
    stopped). The output paths are checked before anything is read."""
    from pipeline.keypoint_pipeline import KeypointPipeline

    listed = read_path_list(args.from_list) if args.from_list else []
    if out_dir is not None:
        check_out_dir(out_dir)
    results = ResultsFile.open(Path(args.json), resume=args.resume, overwrite=args.overwrite) if args.json else None
    try:
        jobs, demo, skipped = planned_jobs(args, listed, out_dir)
        todo = [job for job in jobs if results is None or not results.holds(job.label)]
        print(start_line(jobs, todo, skipped, results))
        if not todo:
            return 0
        settings = Settings(args.model, args.detector, args.min_face, args.filter, threads=1)
        one_thread()
        tic = time.perf_counter()
        pipe = KeypointPipeline.from_pretrained(settings.model, detector=settings.detector, min_face_size=settings.min_face, threads=1)
        print(f"loaded {pipe.meta['architecture']} model and {args.detector} face detector in {time.perf_counter() - tic:.2f} s")
        if args.ray is not None:
            from pipeline.ray_job import ray_records

            records = ray_records(todo, settings, args.ray, args.workers)
        else:
            workers = 1 if demo else min(args.workers or default_workers(), len(todo) if args.workers else max(1, len(todo) // PICTURES_PER_WORKER))
            records = annotated_records(todo, settings, workers, pipe, demo)
            if workers > 1:
                print(f"annotating on {workers} worker processes")
        return write_records(records, len(todo), results, out_dir)
    finally:
        if results is not None:
            results.close()


def write_records(records: Iterator[dict], total: int, results: ResultsFile | None, out_dir: Path | None) -> int:
    """Write each record to the results file as it comes, with the progress (``Progress``), then the summary line;
    the exit status (0, 1 when a picture failed or a worker process died, 130 when stopped with Ctrl-C)."""
    progress = Progress(total)
    how_to_go_on = (
        f"the {{done}} pictures done are in {results.path}: run the same command with --resume to go on" if results
        else "add --json FILE to keep the results of a run that may stop"
    )
    try:
        for record in records:
            if results is not None:
                results.write(record)
            progress.update(record)
    except KeyboardInterrupt:
        progress.close()
        print(f"stopped: {how_to_go_on.format(done=progress.done)}.", file=sys.stderr)
        return 130
    except BrokenProcessPool:
        progress.close()
        print(f"error: a worker process died (out of memory?): {how_to_go_on.format(done=progress.done)}, with fewer --workers.", file=sys.stderr)
        return 1
    finally:
        progress.close()
        records.close()
    faces = f"{progress.faces} face{'s' if progress.faces != 1 else ''}"
    failed = f", {progress.failed} could not be read or written (lines above)" if progress.failed else ""
    where = [f"annotated pictures in {out_dir}" if out_dir is not None else "", f"results in {results.path}" if results else ""]
    print(
        f"{progress.done} pictures in {progress.seconds():.1f} s ({progress.rate():.1f} pictures/s): {faces}{failed}"
        + "".join(f"; {w}" for w in where if w)
    )
    return 1 if progress.failed else 0


def open_capture(source: str | int) -> cv2.VideoCapture:
    """An opened video file or webcam; OpenCV's own warnings are silenced in favour of one clear error."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    if isinstance(source, str) and not Path(source).is_file():
        raise DataError(f"Video {source} does not exist: check the file path.")
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f"webcam {source}" if isinstance(source, int) else f"video {source}"
        raise DataError(f"Could not open {what}: check the {'camera connection and index' if isinstance(source, int) else 'file path and format'}.")
    return capture


def run_video(
    pipe,
    source: str | int,
    out_dir: Path | None,
    filter_name: str | None,
    show: bool,
    max_frames: int | None,
    results: ResultsFile | None = None,
) -> dict:
    """Track faces through a video file or webcam, writing an annotated video into ``out_dir`` (None: none) and,
    with ``results``, one record per frame (``picture_record`` with the frame's number from 0 and its time in
    seconds); returns timing figures."""
    from pipeline.tracking import FaceTracker

    capture = open_capture(source)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    tracker = FaceTracker(pipe, fps=fps)
    name = f"webcam{source}" if isinstance(source, int) else Path(source).stem
    label = f"webcam{source}" if isinstance(source, int) else str(source)
    out_file = None if out_dir is None else out_dir / f"{name}{output_suffix(filter_name)}.mp4"
    writer = None
    frames, busy = 0, 0.0
    try:
        while max_frames is None or frames < max_frames:
            ok, frame_bgr = capture.read()
            if not ok:
                break
            frame = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
            tic = time.perf_counter()
            faces = tracker.update(frame)
            busy += time.perf_counter() - tic
            if results is not None:
                record = picture_record(label, frame, faces)
                results.write({"image": label, "frame": frames, "time": round(frames / fps, 3), **record, "output": None if out_file is None else str(out_file)})
            if out_file is not None or show:
                annotated = cv2.cvtColor(render(frame, faces, filter_name), cv2.COLOR_RGB2BGR)
            if out_file is not None:
                if writer is None:
                    out_file.parent.mkdir(parents=True, exist_ok=True)
                    writer = cv2.VideoWriter(str(out_file), cv2.VideoWriter_fourcc(*"mp4v"), fps, annotated.shape[1::-1])
                writer.write(annotated)
            frames += 1
            if show:
                cv2.imshow("facial keypoints (q to quit)", annotated)
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    break
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if show:
            cv2.destroyAllWindows()
    if frames == 0:
        raise DataError(f"No frame could be read from {name}: check that it is a video the installed OpenCV can decode.")
    where = [str(out_file) if out_file is not None else "", str(results.path) if results is not None else ""]
    print(f"{name}: {frames} frames, {frames / max(busy, 1e-9):.0f} frames per second of tracking -> {', '.join(w for w in where if w) or 'nothing written'}")
    return {"frames": frames, "fps": frames / max(busy, 1e-9), "output": None if out_file is None else str(out_file)}


# ---------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------
def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pictures", nargs="*", help="picture files and folders (default: the bundled demo pictures)")
    parser.add_argument("--from-list", metavar="FILE", help="also the pictures and folders listed in FILE, one path a line (- for standard input)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--video", help="a video file to annotate")
    source.add_argument("--webcam", type=int, nargs="?", const=0, help="a webcam index (default 0)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder of the annotated pictures (default: outputs/)")
    parser.add_argument("--no-pictures", action="store_true", help="write no annotated pictures: the results file alone")
    parser.add_argument("--json", metavar="FILE", help="results file (JSON Lines): one line per picture or video frame, with its faces or its error")
    results = parser.add_mutually_exclusive_group()
    results.add_argument("--resume", action="store_true", help="go on with the --json file: skip the pictures it holds")
    results.add_argument("--overwrite", action="store_true", help="replace the --json file when it already holds results")
    parser.add_argument(
        "--workers", type=positive_int, help=f"worker processes of one thread each (default: one for every {PICTURES_PER_WORKER} pictures, up to this "
        f"machine's {default_workers()} cores; with --ray: the actors, by default one per CPU of the cluster)"
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="annotate on a Ray cluster through Ray Data: auto (the running cluster), HOST:PORT, ray://HOST:PORT, or local "
        "(a new one on this machine); without ADDRESS, $RAY_ADDRESS or the cluster last started here, else a new local one. "
        "Needs `pip install -r requirements-ray.txt`; the pictures and --out must be at the same paths on every node",
    )
    parser.add_argument("--filter", help="draw a face filter instead of the keypoints (e.g. sunglasses)")
    parser.add_argument("--model", help="model file (default: the shipped model in saved_models/)")
    parser.add_argument("--data", help="dataset folder for the demo montage (default: $FKP_DATA or data/)")
    parser.add_argument("--show", action="store_true", help="show the video in a window while processing")
    parser.add_argument(
        "--min-face",
        type=positive_int,
        help="smallest face to find, in pixels (default: 40, and on a big photo 2.5 %% of its shorter side: 76 px on "
        "4032 x 3024, found in about a quarter of a second; smaller is slower, by the square of the ratio)",
    )
    parser.add_argument(
        "--detector", choices=DETECTORS, default=DEFAULT_DETECTOR, help=f"face detector (default: {DEFAULT_DETECTOR})"
    )
    parser.add_argument("--max-frames", type=positive_int, help="stop a video after this many frames (1 or more)")
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """Raise UsageError (one line) for options that do not go together, an unknown filter or a bad Ray address."""
    video = args.video is not None or args.webcam is not None
    if args.filter:
        from filters import check_filter_name

        try:
            check_filter_name(args.filter)
        except ValueError as error:
            raise UsageError(str(error)) from None
    if (args.resume or args.overwrite) and not args.json:
        raise UsageError(f"--{'resume' if args.resume else 'overwrite'} applies to the results file: give it with --json FILE.")
    if video and (args.pictures or args.from_list):
        raise UsageError("give pictures or --video/--webcam, not both.")
    if video and args.resume:
        raise UsageError("--resume goes on with pictures, not a video: a video is annotated from its start (add --overwrite to replace its results).")
    if video and args.ray is not None:
        raise UsageError("--ray annotates pictures, not a video: leave it out for --video and --webcam.")
    if args.ray is not None and importlib.util.find_spec("ray") is None:
        raise UsageError("--ray needs Ray, which is not installed: pip install -r requirements-ray.txt")
    if args.ray and not (args.ray in ("auto", "local") or ":" in args.ray):
        raise UsageError(f"--ray takes a cluster's address (auto, local, HOST:PORT or ray://HOST:PORT), not {args.ray!r}: put the pictures before --ray.")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out_dir = None if args.no_pictures else Path(args.out)
    try:
        check_arguments(args)
        if args.video is None and args.webcam is None:
            return run_pictures(args, out_dir)
        from pipeline.keypoint_pipeline import KeypointPipeline

        if out_dir is not None:
            check_out_dir(out_dir)
        with ResultsFile.open(Path(args.json), overwrite=args.overwrite) if args.json else nullcontext() as results:
            tic = time.perf_counter()
            pipe = KeypointPipeline.from_pretrained(args.model, detector=args.detector, min_face_size=args.min_face)
            print(f"loaded {pipe.meta['architecture']} model and {args.detector} face detector in {time.perf_counter() - tic:.2f} s")
            source = args.video if args.video is not None else args.webcam
            run_video(pipe, source, out_dir, args.filter, args.show, args.max_frames, results)
        return 0
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (DataError, ModelError, ValueError, NotImplementedError) as error:  # NotImplementedError: a TODO not done
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
