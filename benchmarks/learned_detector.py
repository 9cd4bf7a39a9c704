"""The learned face detector (``detector_architectures/cnn.py``) beside Haar: faces found, false detections, time.

    FKP_300W=../shared/300w python benchmarks/learned_detector.py --data ../shared/data [--limit N]
        [--thresholds 0.35 0.5] [--model saved_models/face_detector.onnx]

Only the detectors run (``HaarFaceDetector()`` with its default settings, the fast pass of the pipeline, and
``CNNFaceDetector()``), one thread each, on:

1. the 770 course test pictures;
2. the held-out 300-W validation crops (``data_300w.validation_photos``, never trained on), as they are and as
   close-ups: each crop enlarged to fill the height of a 2000 x 1500, 3000 x 2000 or 4032 x 3024 picture (1.0-1.35
   times the height, so the face is 740-2000 px; the sides are the crop's border, replicated);
3. the measuring part of the pictures without faces (``no_faces.no_face_pictures``): every detection is false;
   and the held-out 300-W crops again, each turned by a random roll (uniform over the circle, about its centre,
   replicated border): faces found and, for the CNN's detection of each face found at the lowest threshold, its
   roll and five points against the true ones (``cnn.five_points`` of the turned keypoints): the error of its roll
   in degrees, and its points' mean distance in inter-ocular distances;
4. time: 640 x 480 pictures (course test pictures scaled to a height of 480 and widened by their border), the
   4032 x 3024 close-ups of 2., and 4032 x 3024 pictures with six course test faces of about 100 px pasted onto a
   picture without faces.

A face is found when a detection matches it (``detector_architectures.face_found``). The CNN is counted at each
``--thresholds`` score (detections below it dropped; the same as running with that ``score_threshold``). Times are
CPU milliseconds per call (``time.process_time``, one thread), median and worst; reading and building the pictures
are excluded. "cnn small faces" is the CNN with ``max_side`` raised so a 4032 x 3024 picture is searched at
1344 x 1008 (faces from 60 px).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from data_load import DataError, haar_box_from_keypoints  # noqa: E402
from detector_architectures import Detection, HaarFaceDetector, face_found  # noqa: E402
from detector_architectures.cnn import DEFAULT_PARAMS, CNNFaceDetector, eye_line_angle, five_points  # noqa: E402
from detector_architectures.haar import match_face  # noqa: E402
from detector_settings import measuring_sets  # noqa: E402
from pipeline.faces import angle_between  # noqa: E402

CLOSE_UP_SIZES = ((2000, 1500), (3000, 2000), (4032, 3024))  # (width, height), in turn
BIG = (4032, 3024)
GROUP_FACE = 100.0  # Haar-box side of the faces pasted on the big group pictures


def timed(detector, picture: np.ndarray) -> tuple[list[Detection], float]:
    tic = time.process_time()
    found = detector.detect(picture)
    return found, 1000 * (time.process_time() - tic)


def close_up(picture: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The crop enlarged to fill a picture of ``size`` (w, h): (picture, 2 x 3 matrix from crop to picture)."""
    w, h = size
    side = h * rng.uniform(1.0, 1.35) / picture.shape[0]
    ch, cw = picture.shape[:2]
    dx = w / 2 - side * cw / 2 + rng.uniform(-0.2, 0.2) * w
    dy = h / 2 - side * ch / 2
    matrix = np.array([[side, 0, dx + 0.5 * side - 0.5], [0, side, dy + 0.5 * side - 0.5]], np.float32)
    big = cv2.warpAffine(picture, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return big, matrix


def moved(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def turned(picture: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The picture turned by ``angle`` degrees (counter-clockwise as seen) about its centre, its border replicated:
    (picture, 2 x 3 matrix)."""
    h, w = picture.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    return cv2.warpAffine(picture, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), matrix


def group_picture(faces: list[tuple[np.ndarray, np.ndarray]], backdrop: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """A 4032 x 3024 picture: ``backdrop`` stretched over it, six faces (picture, keypoints) pasted on a 3 x 2 grid
    with a Haar box of about GROUP_FACE px (each pasted as the square 2.2 times its box). Returns (picture, keypoints)."""
    w, h = BIG
    canvas = cv2.resize(backdrop, (w, h), interpolation=cv2.INTER_LINEAR)
    truth = []
    for k, (picture, points) in enumerate(faces[:6]):
        box = haar_box_from_keypoints(points)
        target = GROUP_FACE * rng.uniform(0.9, 1.1)
        scale = target / box[2]
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        gx, gy = (k % 3 + 0.5) * w / 3 + rng.uniform(-300, 300), (k // 3 + 0.5) * h / 2 + rng.uniform(-300, 300)
        matrix = np.array([[scale, 0, gx - scale * cx], [0, scale, gy - scale * cy]], np.float32)
        half = int(1.1 * target)
        x0, y0 = int(gx) - half, int(gy) - half
        shift = np.array([[1, 0, -x0], [0, 1, -y0]], np.float32)
        local = shift @ np.vstack([matrix, [0, 0, 1]])
        patch = cv2.warpAffine(picture, local, (2 * half, 2 * half), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        canvas[y0 : y0 + 2 * half, x0 : x0 + 2 * half] = patch
        truth.append(moved(points, matrix))
    return canvas, truth


class Tally:
    """Faces found, detections and times of one detector on one set; the CNN counted at several thresholds."""

    def __init__(self, thresholds: list[float] | None) -> None:
        self.thresholds = thresholds or [None]
        self.found = {t: 0 for t in self.thresholds}
        self.detections = {t: 0 for t in self.thresholds}
        self.faces = 0
        self.pictures = 0
        self.ms: list[float] = []

    def add(self, detections: list[Detection], ms: float, truth: list[np.ndarray]) -> None:
        self.pictures += 1
        self.faces += len(truth)
        self.ms.append(ms)
        for t in self.thresholds:
            kept = [d for d in detections if t is None or d.score >= t]
            self.detections[t] += len(kept)
            self.found[t] += sum(face_found(kept, points) for points in truth)

    def cell(self, t: float | None, faces: bool = True) -> str:
        timing = f"{np.median(self.ms):.1f} ms" if self.ms else "-"
        if not faces:
            return f"{self.detections[t]} det, {timing}"
        return f"{self.found[t]}/{self.faces}, {self.detections[t]} det, {timing}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="course dataset folder (default: $FKP_DATA or data/)")
    parser.add_argument("--data-300w", help="300-W folder(s) (default: $FKP_300W)")
    parser.add_argument("--model", help="CNN detector model (.onnx or .pt; default: the shipped one)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[DEFAULT_PARAMS["score_threshold"], 0.5],
                        help="CNN score thresholds to count at (default: the detector's own and 0.5)")
    parser.add_argument("--limit", type=int, help="only the first N pictures of each set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    rng = np.random.default_rng(args.seed)
    thresholds = sorted(args.thresholds)
    try:
        course, truth, samples, empty = measuring_sets(args.data, args.data_300w, args.limit)
        truth = list(truth)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    detectors = {
        "haar": (HaarFaceDetector(), None),
        "cnn": (CNNFaceDetector(args.model, threads=1, score_threshold=thresholds[0]), thresholds),
    }
    small_faces = CNNFaceDetector(args.model, threads=1, score_threshold=thresholds[0], max_side=1344)
    print(f"CNN: {detectors['cnn'][0]!r} ({detectors['cnn'][0].backend}); one thread; CPU ms per picture, median")
    columns = [("haar", None)] + [("cnn", t) for t in thresholds]
    header = f"{'set':<34}" + "".join(f"{(name if t is None else f'{name} score >= {t}'):>30}" for name, t in columns)

    def report(label: str, tallies: dict[str, Tally], faces: bool = True) -> None:
        line = f"{label:<34}" + "".join(f"{tallies[name].cell(t, faces):>30}" for name, t in columns)
        print(line, flush=True)

    def run_set(pictures, truths) -> dict[str, Tally]:
        tallies = {name: Tally(th) for name, (_, th) in detectors.items()}
        for picture, points in zip(pictures, truths):
            for name, (detector, _) in detectors.items():
                found, ms = timed(detector, picture)
                tallies[name].add(found, ms, points)
        return tallies

    print(header)
    report(f"course test ({len(course)})", run_set(course, [[p] for p in truth]))
    report(f"300-W held-out crops ({len(samples)})", run_set([s["image"] for s in samples], [[s["keypoints"]] for s in samples]))
    close = {name: Tally(th) for name, (_, th) in detectors.items()}
    close_big = {name: Tally(th) for name, (_, th) in detectors.items()}
    close_small = Tally(thresholds)
    for k, sample in enumerate(samples):
        size = CLOSE_UP_SIZES[k % len(CLOSE_UP_SIZES)]
        picture, matrix = close_up(sample["image"], size, rng)
        points = [moved(sample["keypoints"], matrix)]
        for name, (detector, _) in detectors.items():
            found, ms = timed(detector, picture)
            close[name].add(found, ms, points)
            if size == BIG:
                close_big[name].add(found, ms, points)
        if size == BIG:
            close_small.add(*timed(small_faces, picture), points)
        del picture
    report(f"300-W close-ups 3-12 MP ({len(samples)})", close)
    tallies = {name: Tally(th) for name, (_, th) in detectors.items()}
    for picture in empty:
        for name, (detector, _) in detectors.items():
            tallies[name].add(*timed(detector, picture), [])
    report(f"no faces, measuring ({len(empty)})", tallies, faces=False)
    rolled = {name: Tally(th) for name, (_, th) in detectors.items()}
    roll_errors, point_errors = [], []
    for sample in samples:
        picture, matrix = turned(sample["image"], float(rng.uniform(-180, 180)))
        points = moved(sample["keypoints"], matrix)
        for name, (detector, _) in detectors.items():
            found, ms = timed(detector, picture)
            rolled[name].add(found, ms, [points])
            match = match_face(found, points) if name == "cnn" else None
            if match is not None and found[match].points is not None:
                truth_five, five = five_points(points), found[match].points
                roll_errors.append(abs(angle_between(found[match].roll, float(eye_line_angle(truth_five)))))
                point_errors.append(float(np.linalg.norm(five - truth_five, axis=1).mean() / np.linalg.norm(truth_five[1] - truth_five[0])))
    report(f"300-W crops turned at random ({len(samples)})", rolled)
    if roll_errors:
        print(f"{'':<34}the CNN's five points on the {len(roll_errors)} turned faces found: roll error median "
              f"{np.median(roll_errors):.1f}, 95th percentile {np.percentile(roll_errors, 95):.1f} degrees, "
              f"{int((np.array(roll_errors) > 30).sum())} over 30; point error {np.mean(point_errors):.3f} inter-ocular")

    print("\ntime (one thread, CPU ms per picture: median / worst); faces found / faces, detections")
    vga = []
    for picture, points in list(zip(course, truth))[:40]:
        h, w = picture.shape[:2]
        scale = 480 / h
        width = round(w * scale)
        resized = cv2.resize(picture, (width, 480), interpolation=cv2.INTER_LINEAR)
        left = max(0, (640 - width) // 2)
        padded = cv2.copyMakeBorder(resized, 0, 0, left, max(0, 640 - width - left), cv2.BORDER_REPLICATE)[:, :640]
        vga.append((padded, [(points * scale + np.array([left, 0])).astype(np.float32)]))
    groups = []
    faces_pool = list(zip(course, truth))
    backdrops = [p for p in empty if min(p.shape[:2]) >= 200] or empty
    for k in range(5):
        chosen = [faces_pool[i] for i in rng.choice(len(faces_pool), 6, replace=len(faces_pool) < 6)]
        groups.append(group_picture(chosen, backdrops[k % len(backdrops)], rng))
    timing_sets = {
        f"640x480, 1 face ({len(vga)})": vga,
        "4032x3024 close-ups": None,
        "4032x3024, six 100-px faces (5)": groups,
    }
    all_detectors = {**detectors, "cnn small faces": (small_faces, thresholds)}
    print(f"faces and detections counted at score >= {thresholds[0]} for the CNN")
    print(f"{'picture':<34}" + "".join(f"{name:>36}" for name in all_detectors))
    for label, items in timing_sets.items():
        cells = []
        for name, (detector, th) in all_detectors.items():
            if items is None:
                tally = close_small if name == "cnn small faces" else close_big[name]
            else:
                tally = Tally(th)
                for picture, points in items:
                    tally.add(*timed(detector, picture), points)
            t = th[0] if th else None
            cells.append(f"{np.median(tally.ms):.1f} / {max(tally.ms):.1f} ms, {tally.found[t]}/{tally.faces}, {tally.detections[t]} det")
        label = label if items is not None else f"{label} ({close_small.pictures})"
        print(f"{label:<34}" + "".join(f"{c:>36}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
