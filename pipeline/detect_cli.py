"""Find every face in pictures or video and draw its 68 keypoints (the project's main job).

    python detect.py                                  # the bundled demo pictures -> outputs/
    python detect.py photo.jpg group.png --out results --json results/faces.json
    python detect.py photo.jpg --filter sunglasses    # draw a filter instead of the keypoints
    python detect.py --video clip.mp4                 # annotated video -> outputs/clip_keypoints.mp4
    python detect.py --webcam 0 --show                # live, press q to stop

Exit status: 0 when every input was processed (finding no face is not an error), 1 when an input could not
be read or the model is missing, 2 for wrong arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from data_load import DataError
from detector_architectures import DEFAULT_DETECTOR, DETECTORS
from models import ModelError

REPO_DIR = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_DIR / "outputs"


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
# Drawing
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


def faces_to_json(faces: list) -> list[dict]:
    """The faces as JSON-ready dicts: box (x, y, w, h) and keypoints ((x, y) pixels, iBUG order), rounded to
    0.01 pixel, the detector's score and the flip error (None where not computed)."""
    return [
        {
            "box": [round(float(v), 2) for v in face.box],
            "score": None if face.score is None else float(face.score),
            "flip_error": None if face.flip_error is None else round(float(face.flip_error), 4),
            "face_score": None if face.face_score is None else round(float(face.face_score), 4),
            "convention": face.convention,
            "model": face.model,
            "keypoints": np.round(face.keypoints, 2).tolist(),
        }
        for face in faces
    ]


def picture_record(label: str, image: np.ndarray, faces: list) -> dict:
    """One picture's entry in the ``--json`` file: its name, size in pixels and faces (``faces_to_json``)."""
    return {"image": str(label), "width": image.shape[1], "height": image.shape[0], "faces": faces_to_json(faces)}


def output_suffix(filter_name: str | None) -> str:
    """What an annotated copy's name adds to its picture's: ``_keypoints``, ``_sunglasses``, ``_mask-tiger``."""
    return f"_{filter_name.replace(':', '-')}" if filter_name else "_keypoints"


def annotated_name(label: str, filter_name: str | None) -> str:
    """The file name of a picture's annotated copy: ``photo_keypoints.png``, ``photo_sunglasses.png``,
    ``photo_mask-tiger.png``."""
    return f"{Path(label).stem}{output_suffix(filter_name)}.png"


def annotate(pipe, image: np.ndarray, filter_name: str | None) -> tuple[list, np.ndarray, float]:
    """Detect every face of an RGB picture and draw it (``render``): the faces, the annotated picture and the
    milliseconds detection and keypoints took (drawing excluded)."""
    tic = time.perf_counter()
    faces = pipe.detect(image)
    milliseconds = (time.perf_counter() - tic) * 1000
    return faces, render(image, faces, filter_name), milliseconds


def save_rgb(path: Path, image: np.ndarray) -> None:
    """Write an RGB picture atomically: to a temporary file beside ``path``, then renamed onto it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    if not cv2.imwrite(str(partial), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        partial.unlink(missing_ok=True)
        raise DataError(f"Could not write {path}: check that the folder is writable.")
    os.replace(partial, path)


def write_text_atomically(path: Path, text: str) -> None:
    """Write a text file through a temporary file beside it, so an interrupted write leaves the old one whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def output_names(labels: list[str], filter_name: str | None) -> list[str]:
    """One distinct output file name per input, in order: ``annotated_name``; inputs whose stems clash (two
    folders holding a picture of the same name, or one file given twice) also carry their folder's name,
    then a number, until every name is unique (names are compared case-insensitively, as some file systems do)."""
    suffix = output_suffix(filter_name)
    paths = [Path(label) for label in labels]
    names = [annotated_name(label, filter_name) for label in labels]
    clashing = {n.lower() for n in names if sum(m.lower() == n.lower() for m in names) > 1}
    taken: set[str] = {n.lower() for n in names if n.lower() not in clashing}
    unique = []
    for path, name in zip(paths, names):
        if name.lower() in clashing:
            folder = path.resolve().parent.name
            base = f"{folder}_{path.stem}" if folder else path.stem
            name, number = f"{base}{suffix}.png", 2
            while name.lower() in taken:
                name, number = f"{base}_{number}{suffix}.png", number + 1
        taken.add(name.lower())
        unique.append(name)
    return unique


# ---------------------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------------------
def run_pictures(
    pipe, pictures: list[tuple[str, np.ndarray | Path]], out_dir: Path, filter_name: str | None
) -> tuple[list[dict], int]:
    """Annotate each (label, picture) into its own file in ``out_dir`` (``output_names``); returns the JSON records
    (each naming its output) and how many inputs failed."""
    from pipeline.keypoint_pipeline import as_rgb_image

    records, failures = [], 0
    labels = [label for label, _ in pictures]
    for (label, picture), name in zip(pictures, output_names(labels, filter_name)):
        try:
            image = as_rgb_image(picture)
            faces, annotated, milliseconds = annotate(pipe, image, filter_name)
            out_file = out_dir / name
            save_rgb(out_file, annotated)
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
            continue
        print(f"{label}: {len(faces)} face{'s' if len(faces) != 1 else ''} in {milliseconds:.0f} ms -> {out_file}")
        records.append({**picture_record(label, image, faces), "output": str(out_file)})
    return records, failures


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


def run_video(pipe, source: str | int, out_dir: Path, filter_name: str | None, show: bool, max_frames: int | None) -> dict:
    """Track faces through a video file or webcam, writing an annotated video; returns timing figures."""
    from pipeline.keypoint_pipeline import FaceTracker

    capture = open_capture(source)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    tracker = FaceTracker(pipe, fps=fps)
    name = f"webcam{source}" if isinstance(source, int) else Path(source).stem
    out_file = out_dir / f"{name}_{filter_name.replace(':', '-') if filter_name else 'keypoints'}.mp4"
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
            annotated = cv2.cvtColor(render(frame, faces, filter_name), cv2.COLOR_RGB2BGR)
            if writer is None:
                out_dir.mkdir(parents=True, exist_ok=True)
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
    print(f"{name}: {frames} frames, {frames / busy:.0f} frames per second of tracking -> {out_file}")
    return {"frames": frames, "fps": frames / busy, "output": str(out_file)}


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
    parser.add_argument("pictures", nargs="*", help="picture files (default: the bundled demo pictures)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--video", help="a video file to annotate")
    source.add_argument("--webcam", type=int, nargs="?", const=0, help="a webcam index (default 0)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: outputs/)")
    parser.add_argument("--json", help="also write the faces (boxes, scores, flip errors, keypoints) to this JSON file")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out_dir = Path(args.out)
    try:
        if args.filter:
            from filters import check_filter_name

            check_filter_name(args.filter)
        from pipeline.keypoint_pipeline import KeypointPipeline

        tic = time.perf_counter()
        pipe = KeypointPipeline.from_pretrained(args.model, detector=args.detector, min_face_size=args.min_face)
        print(f"loaded {pipe.meta['architecture']} model and {args.detector} face detector in {time.perf_counter() - tic:.2f} s")
        if args.video is not None or args.webcam is not None:
            source = args.video if args.video is not None else args.webcam
            run_video(pipe, source, out_dir, args.filter, args.show, args.max_frames)
            return 0
        pictures = [(p, Path(p)) for p in args.pictures] if args.pictures else list(demo_pictures(args.data).items())
        records, failures = run_pictures(pipe, pictures, out_dir, args.filter)
        if args.json:
            json_file = Path(args.json)
            write_text_atomically(json_file, json.dumps(records, indent=1))
            print(f"wrote {json_file}")
        return 1 if failures else 0
    except (DataError, ModelError, ValueError, NotImplementedError) as error:  # NotImplementedError: a TODO not done
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
