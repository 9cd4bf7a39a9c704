"""Faces found, false faces and milliseconds per picture of the whole pipeline on pictures it builds.

    python benchmarks/pipeline_speed.py --data ../shared/data --data-300w ../shared/300w [--repeats 3] [--threads 1]

The pictures (640 x 480, 1920 x 1080 and 4032 x 3024) hold 0-6 faces of several sizes, upright, turned and dark,
pasted at run time from scikit-image's public-domain astronaut portrait and, when the dataset is at hand, from
course test pictures, on a plain grey-brown background; beside them, close-up portraits of phone and camera sizes
(3-12 megapixels) whose face fills a third to all of the picture, enlarged from the astronaut, course test faces and
held-out 300-W faces (``CLOSEUPS``). Each face's true keypoints are moved with it; a face is found when a pipeline
face's keypoints lie within ``MATCH_NME`` (inter-ocular) of them, and every other pipeline face is a false face.
Times are the median of ``--repeats`` runs of ``KeypointPipeline.detect`` on the array (reading excluded; CPU
time, with the wall-clock time beside it), with the default settings, with the other face detector
(``detector_architectures.DETECTORS``) and, for comparison, with the wider search (``WiderSearch``) run where no
face is sure ("wider search if unsure", what the cascades first use by default) and on every picture ("wider
always", up to 1920 x 1080), after the default detector; every setting with the shipped model's second stage. The
last line sums up each setting: faces found, false faces, median and worst time per picture.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from data_load import DataError, read_image, read_keypoints_csv, resolve_data_dir, split_paths  # noqa: E402
from pipeline.evaluation import nme_interocular  # noqa: E402
from detector_architectures import DEFAULT_DETECTOR, make_detector  # noqa: E402
from pipeline.haar_search import WiderSearch  # noqa: E402
from pipeline.keypoint_pipeline import KeypointPipeline  # noqa: E402

MATCH_NME = 0.25  # a pipeline face within this inter-ocular error of a true face is that face
ALWAYS_MAX_PIXELS = 2_100_000  # "wider always" is timed on pictures up to 1920 x 1080 only (minutes beyond)


@dataclass
class Source:
    """A picture holding one face and that face's (68, 2) keypoints."""

    image: np.ndarray
    keypoints: np.ndarray


@dataclass
class Closeup:
    """A close-up portrait: the picture of source ``source`` scaled and cut so that its face's keypoint box is
    ``fraction`` of the picture's height, centred at (``cx``, ``cy``) as fractions of the width and height."""

    source: int
    fraction: float
    cx: float = 0.5
    cy: float = 0.55


@dataclass
class Placement:
    """Where a face goes: its source, the centre (x, y) and height (pixels) of its keypoint box on the canvas, its
    roll in degrees (counter-clockwise as seen) and a brightness factor."""

    source: int
    centre: tuple[float, float]
    height: float
    angle: float = 0.0
    brightness: float = 1.0


def held_out_300w(data_300w: str | None, count: int = 3) -> list[Source]:
    """``count`` held-out 300-W faces (``data_300w.VALIDATION_LIST``, spread over the list), gray as stored, with
    their keypoints; none without the folder."""
    from pipeline.data_300w import VALIDATION_LIST, read_pts, resolve_300w_dirs

    try:
        folders = resolve_300w_dirs(data_300w)
    except DataError:
        return []
    names = [line.strip() for line in VALIDATION_LIST.read_text().splitlines() if line.strip() and not line.startswith("#")]
    found = []
    for name in [names[i] for i in np.linspace(0, len(names) - 1, count).astype(int)]:
        folder_name, stem = name.split("/")
        for folder in folders:
            pts = folder / f"{stem}.pts"
            if folder.name == folder_name and pts.exists():
                found.append(Source(read_image(pts.with_suffix(".jpg"), as_stored=True), read_pts(pts)))
                break
    return found


def sources(data_dir: str | None, data_300w: str | None = None) -> list[Source]:
    """The astronaut (keypoints from the pipeline on the upright portrait), up to five course test faces and, last,
    three held-out 300-W faces (the close-ups count them from the end)."""
    from skimage import data

    astronaut = data.astronaut()
    (face,) = KeypointPipeline.from_pretrained(threads=1).detect(astronaut)
    found = [Source(astronaut, face.keypoints)]
    try:
        csv_file, root_dir = split_paths(resolve_data_dir(data_dir, download=False), "test")
        names, truth = read_keypoints_csv(csv_file)
    except DataError:
        return found + held_out_300w(data_300w)
    for i in np.linspace(0, len(names) - 1, 5).astype(int):
        found.append(Source(read_image(root_dir / names[i], as_stored=True), truth[i]))
    return found + held_out_300w(data_300w)


def portrait(shape: tuple[int, int], faces: list[Source], closeup: Closeup) -> tuple[np.ndarray, list[np.ndarray]]:
    """A close-up of ``shape`` (H, W): the source picture enlarged (bicubic, replicated border where the picture
    ends), and its face's keypoints."""
    source = faces[closeup.source % len(faces)]
    x0, y0 = source.keypoints.min(axis=0)
    x1, y1 = source.keypoints.max(axis=0)
    scale = closeup.fraction * shape[0] / (y1 - y0)
    matrix = np.array([[scale, 0.0, closeup.cx * shape[1] - scale * (x0 + x1) / 2], [0.0, scale, closeup.cy * shape[0] - scale * (y0 + y1) / 2]])
    image = cv2.warpAffine(source.image, matrix, (shape[1], shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return image, [source.keypoints @ matrix[:, :2].T + matrix[:, 2]]


def compose(shape: tuple[int, int], faces: list[Source], placements: list[Placement] | Closeup) -> tuple[np.ndarray, list[np.ndarray]]:
    """A canvas of ``shape`` (H, W) with each placed face warped in (scaled, turned, darkened), and its keypoints;
    for a ``Closeup``, that portrait."""
    if isinstance(placements, Closeup):
        return portrait(shape, faces, placements)
    rng = np.random.default_rng(0)
    canvas = np.empty((*shape, 3), np.uint8)
    canvas[:] = (120, 110, 95)
    canvas = cv2.add(canvas, rng.integers(0, 12, canvas.shape, dtype=np.uint8))
    truths = []
    for place in placements:
        source = faces[place.source % len(faces)]
        x0, y0 = source.keypoints.min(axis=0)
        x1, y1 = source.keypoints.max(axis=0)
        scale = place.height / (y1 - y0)
        matrix = cv2.getRotationMatrix2D(((x0 + x1) / 2, (y0 + y1) / 2), place.angle, scale)
        matrix[:, 2] += np.array(place.centre) - np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        side = int(2.2 * place.height)
        left, top = int(place.centre[0] - side / 2), int(place.centre[1] - side / 2)
        shifted = matrix.copy()
        shifted[:, 2] -= (left, top)
        patch = cv2.warpAffine(source.image, shifted, (side, side), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        mask = np.zeros((side, side), np.float32)
        cv2.circle(mask, (side // 2, side // 2), int(side * 0.45), 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), side * 0.03)[..., None]
        region = canvas[top : top + side, left : left + side]
        blended = region * (1 - mask) + patch * place.brightness * mask
        canvas[top : top + side, left : left + side] = np.clip(blended, 0, 255).astype(np.uint8)
        truths.append(source.keypoints @ matrix[:, :2].T + matrix[:, 2])
    return canvas, truths


def scenes() -> list[tuple[str, tuple[int, int], list[Placement]]]:
    """(name, (H, W), placements) of every benchmark picture."""
    return [
        ("640x480, 1 upright face", (480, 640), [Placement(0, (320, 230), 160)]),
        ("640x480, 3 upright faces", (480, 640), [Placement(1, (140, 200), 110), Placement(2, (330, 260), 140), Placement(0, (520, 220), 90)]),
        ("640x480, no face", (480, 640), []),
        ("640x480, 1 face turned 60 deg", (480, 640), [Placement(0, (320, 240), 150, angle=60)]),
        ("640x480, 1 face upside down", (480, 640), [Placement(3, (320, 240), 150, angle=180)]),
        ("640x480, 1 dark face (15 %)", (480, 640), [Placement(0, (320, 240), 150, brightness=0.15)]),
        ("1920x1080, 4 upright + 1 turned 45 deg", (1080, 1920),
         [Placement(i + 1, (260 + 350 * i, 500), 180) for i in range(4)] + [Placement(0, (1650, 520), 200, angle=-45)]),
        ("1920x1080, 3 faces 60-300 px", (1080, 1920), [Placement(1, (400, 500), 300), Placement(2, (900, 400), 120), Placement(4, (1500, 600), 60)]),
        ("4032x3024, 6 faces of 100 px", (3024, 4032), [Placement(i, (600 + 1300 * (i % 3), 900 + 1300 * (i // 3)), 100) for i in range(6)]),
        ("4032x3024, 2 faces of 900 px + 1 of 60 px", (3024, 4032),
         [Placement(1, (1000, 1400), 900), Placement(2, (2600, 1500), 900), Placement(0, (3700, 400), 60)]),
    ] + CLOSEUPS


# Close-up portraits of phone and camera sizes whose face fills a third to all of the picture (the fraction is the
# face's keypoint box height over the picture's height): the astronaut, course test faces and held-out 300-W faces.
CLOSEUPS = [
    ("close-up 4288x2848, astronaut, face 0.35", (2848, 4288), Closeup(0, 0.35, 0.45, 0.4)),
    ("close-up 3024x3024, astronaut, face 0.2", (3024, 3024), Closeup(0, 0.2, 0.45, 0.3)),
    ("close-up 2048x1536, course face 0.33", (1536, 2048), Closeup(1, 0.33)),
    ("close-up 4032x3024, course face 0.6", (3024, 4032), Closeup(2, 0.6)),
    ("close-up 3024x4032, course face 0.4", (4032, 3024), Closeup(3, 0.4)),
    ("close-up 4000x3000, 300-W face 0.5", (3000, 4000), Closeup(-1, 0.5)),
    ("close-up 3000x4000, 300-W face 0.33", (4000, 3000), Closeup(-2, 0.33)),
    ("close-up 2448x3264, 300-W face 0.8", (3264, 2448), Closeup(-3, 0.8)),
]


def score(faces: list, truths: list[np.ndarray]) -> tuple[int, int]:
    """(true faces found, false faces) for the pipeline's faces against the true keypoints."""
    found, used = 0, set()
    for truth in truths:
        errors = [nme_interocular(f.keypoints[None], truth[None])[0] for f in faces]
        best = int(np.argmin(errors)) if errors else None
        if best is not None and errors[best] <= MATCH_NME and best not in used:
            found += 1
            used.add(best)
    return found, len(faces) - len(used)


def median_ms(pipe: KeypointPipeline, image: np.ndarray, repeats: int) -> tuple[float, float, list]:
    """Median wall-clock and CPU milliseconds of ``pipe.detect(image)``, and its faces. With one thread the CPU
    time is what the wall-clock time would be on an idle machine; on a shared machine the wall clock is longer."""
    wall, cpu, faces = [], [], []
    for _ in range(repeats):
        tic, cpu_tic = time.perf_counter(), time.process_time()
        faces = pipe.detect(image)
        wall.append((time.perf_counter() - tic) * 1000)
        cpu.append((time.process_time() - cpu_tic) * 1000)
    return float(np.median(wall)), float(np.median(cpu)), faces


def compared_settings(base: KeypointPipeline, threads: int) -> dict[str, KeypointPipeline]:
    """The pipelines timed side by side: ``base`` (the defaults), the other detector, and the default detector with
    the wider search where unsure and always; all with ``base``'s model and second stage."""
    other = "cnn" if DEFAULT_DETECTOR == "haar" else "haar"
    same = {"second_stage": base.second_stage}
    return {
        f"default ({DEFAULT_DETECTOR})": base,
        f"detector {other}": KeypointPipeline(base.runner, make_detector(other, threads=threads), **same),
        "wider search if unsure": KeypointPipeline(base.runner, base.detector, wider=WiderSearch(when="if_unsure"), **same),
        "wider always": KeypointPipeline(base.runner, base.detector, wider=WiderSearch(when="always"), **same),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset folder (default: $FKP_DATA or data/; without it, astronaut faces only)")
    parser.add_argument("--data-300w", help="300-W folder for the close-ups of held-out faces (default: $FKP_300W)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", help="time only the pictures whose name holds this text (e.g. close-up)")
    parser.add_argument("--save", help="also write the benchmark pictures to this folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    base = KeypointPipeline.from_pretrained(threads=args.threads)
    settings = compared_settings(base, args.threads)
    faces = sources(args.data, args.data_300w)
    print(f"{len(faces)} face sources, {args.threads} thread(s), median of {args.repeats} runs; "
          "found / true, false faces, CPU ms per picture (wall-clock ms)")
    print(f"{'picture':<42} " + "  ".join(f"{name:>30}" for name in settings), flush=True)
    times: dict[str, list[float]] = {name: [] for name in settings}
    totals: dict[str, list[int]] = {name: [0, 0, 0] for name in settings}
    for name, shape, placements in scenes():
        if args.only and args.only not in name:
            continue
        image, truths = compose(shape, faces, placements)
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(Path(args.save) / f"{name.replace(' ', '_').replace(',', '')}.jpg"), image[..., ::-1])
        cells = []
        for setting, pipe in settings.items():
            if setting == "wider always" and image.shape[0] * image.shape[1] > ALWAYS_MAX_PIXELS:
                cells.append("-")
                continue
            wall, cpu, found_faces = median_ms(pipe, image, args.repeats)
            found, false = score(found_faces, truths)
            times[setting].append(cpu)
            totals[setting] = [totals[setting][0] + found, totals[setting][1] + len(truths), totals[setting][2] + false]
            cells.append(f"{found}/{len(truths)}, {false} false, {cpu:6.0f} ms ({wall:.0f})")
        print(f"{name:<42} " + "  ".join(f"{c:>30}" for c in cells), flush=True)
    summary = []
    for setting in settings:
        found, true, false = totals[setting]
        ms = times[setting]
        summary.append(f"{found}/{true}, {false} false, {np.median(ms):.0f} / {max(ms):.0f} ms" if ms else "-")
    print(f"{'all: found, false, median / worst CPU ms':<42} " + "  ".join(f"{c:>30}" for c in summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
