"""Tune the Haar face detector (detector_architectures/haar.py): sweep its settings and measure each.

    python benchmarks/tune_detector.py --data ../shared/data --limit 800
    python benchmarks/tune_detector.py --limit 300 --no-final        # a quick look

What it measures, for every setting (cascade set, scaleFactor, minNeighbors of the first and of the other
cascades, histogram equalisation, whether the other cascades always run or only when the first finds nothing):

  found    share of the labelled faces found (``face_found``) on a random subsample of the training images
  miss     the same as a count
  extra    detections per training image other than the labelled face: each image has one labelled face, so
           these are false positives (mostly hands, ears, background texture; now and then a real face behind)
  no-face  detections on pictures without a human face: scikit-image's bundled photos (coffee, a cat, rocket,
           coins, page, text, ...) plus generated noise, smooth noise, gradients and a blank image
  ms       time per training image, one thread (the sum of its cascades' runs; each measured once per image)

Each cascade runs once per image with minNeighbors=0 and its raw windows are grouped for every minNeighbors
value by ``haar.group_windows``, which is what ``detectMultiScale`` does; combinations are then merged exactly
as ``HaarFaceDetector.detect`` merges them, so the sweep costs one detection per cascade and scaleFactor.

Choosing, stage 1 (the subsample): each setting costs its misses per image plus its false detections per image
divided by ``--miss-cost`` (10: a missed face is as bad as ten false detections); of the settings within one
face of the cheapest, the fastest wins. Settings whose other cascades run only when the first finds nothing
("if_empty") are shown but not chosen: on these one-face images they look free, but in a picture with several
faces they can't rescue a face the first cascade missed.

Stage 2 (all training images, cheaply): one face in 800 is noise, and the settings differ by a few faces per
thousand, so the stage-1 settings with the chosen equalisation (every scaleFactor) are compared again with
their misses counted on all training images. The first cascade runs on every image; the others only where it
missed, since they can only add faces. False positives and time still come from the subsample. Same rule.

Between the stages it fits each cascade's box correction (``BoxCorrection``) on the subsample and checks
enlarging small images (``min_side``) on the subsample and on training faces shrunk to 16-48 pixels. Finally
it runs the chosen setting on all test and all training images: detection rate, extra detections, time, and
the box-convention error (detected box against ``haar_box_from_keypoints``, the box the model is trained on).
"""
from __future__ import annotations

import argparse
import pickle
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_DIR))

from data_load import DataError, haar_box_from_keypoints, read_image, read_keypoints_csv, resolve_data_dir, split_paths  # noqa: E402
from detector_architectures.haar import (  # noqa: E402
    BOX_CORRECTIONS,
    DEFAULT_PARAMS,
    BoxCorrection,
    Detection,
    HaarFaceDetector,
    box_convention_error,
    group_windows,
    match_face,
    match_scores,
    mirror_box,
    suppress,
    MATCH_COVER,
    MATCH_IOU,
)

CASCADE_SETS = {  # short name -> cascades in priority order ("profile" runs on the image and on its mirror)
    "default": ("frontalface_default",),
    "alt": ("frontalface_alt",),
    "alt2": ("frontalface_alt2",),
    "alt_tree": ("frontalface_alt_tree",),
    "profile": ("profileface",),
    "default+alt": ("frontalface_default", "frontalface_alt"),
    "default+alt2": ("frontalface_default", "frontalface_alt2"),
    "default+profile": ("frontalface_default", "profileface"),
    "default+alt+profile": ("frontalface_default", "frontalface_alt", "profileface"),
    "default+alt2+profile": ("frontalface_default", "frontalface_alt2", "profileface"),
    "default+profile+alt2": ("frontalface_default", "profileface", "frontalface_alt2"),
}
SCALE_FACTORS = (1.05, 1.1, 1.2)
MIN_NEIGHBORS = (2, 3, 4, 5, 6)
EQUALIZE = (False, True)
MIN_SIDES = (0, 96, 128, 160, 200)
SMALL_FACE_SIDES = (16, 24, 32, 48)

NO_FACE_SKIMAGE = (  # bundled with scikit-image (no download); "camera" and "astronaut" show people, so not here
    "coffee", "chelsea", "rocket", "coins", "page", "text", "horse", "hubble_deep_field", "immunohistochemistry",
    "retina", "logo", "moon", "clock", "brick", "grass", "gravel", "colorwheel", "checkerboard", "microaneurysms",
    "cell", "shepp_logan_phantom", "binary_blobs", "stereo_motorcycle",
)


# ---------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------
class LazyImages:
    """Images read from disk when indexed, so a whole split needn't sit in memory."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return read_image(self.paths[i])

    def __iter__(self):
        return (read_image(path) for path in self.paths)


def load_split(data_dir: Path, split: str, limit: int | None = None, seed: int = 0, lazy: bool = False):
    """Names, keypoints and RGB images of a split, or of a random subsample of ``limit`` of them."""
    csv_file, root = split_paths(data_dir, split)
    names, keypoints = read_keypoints_csv(csv_file)
    index = np.arange(len(names))
    if limit and limit < len(names):
        index = np.sort(np.random.default_rng(seed).choice(len(names), limit, replace=False))
    paths = [root / names[i] for i in index]
    images = LazyImages(paths) if lazy else [read_image(path) for path in paths]
    return [names[i] for i in index], keypoints[index], images


def to_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype.kind == "f":
        image = np.clip(image * (255.0 if image.max() <= 1 else 1.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[:, :, :3])


def no_face_images(seed: int = 0) -> dict[str, np.ndarray]:
    """Pictures without a human face: the bundled scikit-image ones that load offline, and generated ones."""
    images = {}
    try:
        import skimage.data
    except ImportError:
        skimage = None
    if skimage is not None:
        for name in NO_FACE_SKIMAGE:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    function = getattr(skimage.data, name)
                    image = function(rng=seed) if name == "binary_blobs" else function()  # random unless seeded
            except Exception:  # not in this version, or needs a download
                continue
            images[name] = to_rgb(image[0] if isinstance(image, tuple) else image)
    rng = np.random.default_rng(seed)
    images["uniform_noise"] = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    images["gaussian_noise"] = np.clip(rng.normal(128, 40, (480, 640, 3)), 0, 255).astype(np.uint8)
    for sigma in (2, 4, 8):
        smooth = cv2.GaussianBlur(rng.normal(0, 1, (480, 640)).astype(np.float32), (0, 0), sigma)
        smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255
        images[f"smooth_noise_{sigma}"] = to_rgb(smooth.astype(np.uint8))
    yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
    images["gradient_horizontal"] = to_rgb((xx / 639 * 255).astype(np.uint8))
    images["gradient_vertical"] = to_rgb((yy / 479 * 255).astype(np.uint8))
    images["gradient_radial"] = to_rgb(np.clip(255 - np.hypot(xx - 320, yy - 240) / 400 * 255, 0, 255).astype(np.uint8))
    images["blank"] = np.full((480, 640, 3), 128, np.uint8)
    return images


# ---------------------------------------------------------------------------------------------------------
# Raw cascade runs, grouped once per minNeighbors
# ---------------------------------------------------------------------------------------------------------
RUNS = (  # (cascade, mirrored)
    ("frontalface_default", False),
    ("frontalface_alt", False),
    ("frontalface_alt2", False),
    ("frontalface_alt_tree", False),
    ("profileface", False),
    ("profileface", True),
)


def runs_of(cascades: tuple[str, ...]) -> list[tuple[str, bool]]:
    return [(name, mirrored) for name in cascades for mirrored in ((False, True) if name == "profileface" else (False,))]


@dataclass
class RunResults:
    """One (cascade, mirrored, equalize, scaleFactor) run on a list of images: ``grouped[minNeighbors][image]`` =
    [(uncorrected box in original pixels, neighbour count), ...]; ``ms[image]`` = time of the run."""

    grouped: dict[int, list[list[tuple[np.ndarray, float]]]] = field(default_factory=dict)
    ms: list[float] = field(default_factory=list)


def run_cascades(images: list[np.ndarray], params: dict, runs=RUNS, progress: str = "") -> dict:
    """Raw windows of every run on every image, grouped for each minNeighbors: {run: RunResults}."""
    detector = HaarFaceDetector(**{**params, "cascades": tuple(dict.fromkeys(name for name, _ in runs))})
    results = {run: RunResults() for run in runs}
    for image in images:
        start = time.perf_counter()
        working = detector.prepare(image)
        prepare_ms = (time.perf_counter() - start) * 1000
        for run in runs:
            result = results[run]
            start = time.perf_counter()
            raw = detector.raw_windows(working, *run) if working is not None else (np.zeros((0, 4)), np.zeros(0))
            result.ms.append((time.perf_counter() - start) * 1000 + prepare_ms / len(runs))
            scale = working.scale if working is not None else 1.0
            for mn in MIN_NEIGHBORS:
                boxes, counts, _ = group_windows(*raw, mn)
                result.grouped.setdefault(mn, []).append([(box / scale, float(count)) for box, count in zip(boxes, counts)])
    if progress:
        print(f"  {progress}: " + ", ".join(f"{n}{'(mirror)' if m else ''} {np.mean(r.ms):.1f} ms" for (n, m), r in results.items()), flush=True)
    return results


def corrected(boxes_counts, name: str, mirrored: bool, corrections=None) -> list[Detection]:
    correction = (corrections or BOX_CORRECTIONS).get(name, BoxCorrection())
    if mirrored:
        correction = correction.mirrored()
    label = f"{name}_mirrored" if mirrored else name
    found = [Detection(correction.apply(box), count, label) for box, count in boxes_counts]
    return sorted(found, key=lambda d: -d.score)


# ---------------------------------------------------------------------------------------------------------
# Evaluating settings from the cached runs
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    cascades: str  # key of CASCADE_SETS
    scale_factor: float
    min_neighbors: int
    secondary_min_neighbors: int
    equalize: bool
    secondary: str = "always"

    def params(self) -> dict:
        return {
            **DEFAULT_PARAMS,
            "cascades": CASCADE_SETS[self.cascades],
            "scale_factor": self.scale_factor,
            "min_neighbors": self.min_neighbors,
            "secondary_min_neighbors": self.secondary_min_neighbors,
            "equalize": self.equalize,
            "secondary": self.secondary,
        }

    def label(self) -> str:
        cascades = CASCADE_SETS[self.cascades]
        mn = f"{self.min_neighbors}" + (f"/{self.secondary_min_neighbors}" if len(cascades) > 1 else "")
        mode = f" {self.secondary}" if len(cascades) > 1 else ""
        return f"{self.cascades:<21} sf {self.scale_factor:<4} mn {mn:<4} eq {'on ' if self.equalize else 'off'}{mode}"


class Evaluator:
    """Scores settings on cached runs of face images (with keypoints) and no-face images."""

    def __init__(self, face_runs: dict, keypoints: np.ndarray, noface_runs: dict, n_noface: int) -> None:
        self.face_runs, self.noface_runs = face_runs, noface_runs
        self.keypoints, self.n_noface = keypoints, n_noface
        self._detections: dict = {}
        self._match: dict[int, tuple[float, float]] = {}

    def detections(self, runs: dict, key, mn: int, i: int) -> list[Detection]:
        cache_key = (id(runs), key, mn, i)
        if cache_key not in self._detections:
            name, mirrored = key[0], key[1]
            self._detections[cache_key] = corrected(runs[key].grouped[mn][i], name, mirrored)
        return self._detections[cache_key]

    def matches(self, detection: Detection, keypoints: np.ndarray) -> bool:
        if id(detection) not in self._match:
            self._match[id(detection)] = match_scores(detection.box, keypoints)
        iou, cover = self._match[id(detection)]
        return iou >= MATCH_IOU or cover >= MATCH_COVER

    def merged(self, setting: Setting, runs: dict, i: int) -> tuple[list[Detection], float]:
        """The detector's output for image i and its time (ms), from the cached runs."""
        cascades = CASCADE_SETS[setting.cascades]
        lists, ms = [], 0.0
        for name, mirrored in runs_of(cascades):
            if name != cascades[0] and setting.secondary == "if_empty" and any(lists):
                break
            key = (name, mirrored, setting.equalize, setting.scale_factor)
            mn = setting.min_neighbors if name == cascades[0] else setting.secondary_min_neighbors
            lists.append(self.detections(runs, key, mn, i))
            ms += runs[key].ms[i]
        return suppress([d for run in lists for d in run], DEFAULT_PARAMS["nms_iou"]), ms

    def evaluate(self, setting: Setting) -> dict:
        n = len(self.keypoints)
        found = extra = 0
        ms = 0.0
        for i in range(n):
            detections, t = self.merged(setting, self.face_runs, i)
            hit = any(self.matches(d, self.keypoints[i]) for d in detections)
            found += hit
            extra += len(detections) - hit
            ms += t
        noface = sum(len(self.merged(setting, self.noface_runs, i)[0]) for i in range(self.n_noface))
        noface_images = sum(bool(self.merged(setting, self.noface_runs, i)[0]) for i in range(self.n_noface))
        return {
            "setting": setting,
            "found": found / n,
            "miss": n - found,
            "extra": extra / n,
            "noface": noface,
            "noface_images": noface_images,
            "fp_rate": (extra + noface) / (n + self.n_noface),
            "ms": ms / n,
        }


def all_settings() -> list[Setting]:
    settings = []
    for cascades, names in CASCADE_SETS.items():
        for sf in SCALE_FACTORS:
            for eq in EQUALIZE:
                for mn in MIN_NEIGHBORS:
                    if len(names) == 1:
                        settings.append(Setting(cascades, sf, mn, mn, eq))
                        continue
                    for mn2 in MIN_NEIGHBORS:
                        for mode in ("always", "if_empty"):
                            settings.append(Setting(cascades, sf, mn, mn2, eq, mode))
    return settings


def cost(miss_rate: float, fp_rate: float, miss_cost: float) -> float:
    """What a setting costs, in missed faces per image: misses plus false detections at 1/miss_cost each."""
    return miss_rate + fp_rate / miss_cost


def choose(rows: list[dict], miss_cost: float, n_faces: int, miss_key: str = "miss") -> dict:
    """The cheapest setting (``cost``); settings within one face (1/n_faces) of the cheapest count as equal, and
    of those the fastest wins. Only "always" settings (see the module docstring)."""
    eligible = [r for r in rows if r["setting"].secondary == "always"]
    for r in eligible:
        r["cost"] = cost(r[miss_key] / n_faces, r["fp_rate"], miss_cost)
    cheapest = min(r["cost"] for r in eligible)
    eligible = [r for r in eligible if r["cost"] <= cheapest + 1.0 / n_faces + 1e-12]
    return min(eligible, key=lambda r: (r["ms"], r["cost"]))


def format_row(r: dict) -> str:
    full = f" {r['miss_full']:9d}" if "miss_full" in r else ""
    return (
        f"{r['setting'].label():<62} {100 * r['found']:6.2f}% {r['miss']:4d} {r['extra']:6.3f} "
        f"{r['noface']:4d} ({r['noface_images']:2d}) {r['ms']:7.1f}{full}"
    )


HEADER = f"{'setting':<62} {'found':>7} {'miss':>4} {'extra':>6} {'no-face (imgs)':>14} {'ms':>7}"


# ---------------------------------------------------------------------------------------------------------
# Box corrections and convention error
# ---------------------------------------------------------------------------------------------------------
def fit_corrections(face_runs: dict, keypoints: np.ndarray, widths: list[int], scale_factor: float, mn: int = 3) -> dict:
    """Each cascade's BoxCorrection from its uncorrected boxes that match a face, against the face's Haar box.

    The profile cascade is fitted in its own frame: boxes found on the mirrored image are mirrored back, along
    with the target box, and pooled with those found on the image itself."""
    fitted = {}
    for name in dict.fromkeys(n for n, _ in RUNS):
        detected, target = [], []
        for mirrored in (False, True) if name == "profileface" else (False,):
            key = (name, mirrored, False, scale_factor)
            if key not in face_runs:
                continue
            for i, boxes_counts in enumerate(face_runs[key].grouped[mn]):
                boxes = [box for box, _ in boxes_counts]
                j = match_face(boxes, keypoints[i])
                if j is None:
                    continue
                box, face = boxes[j], haar_box_from_keypoints(keypoints[i]).astype(np.float64)
                if mirrored:
                    box, face = mirror_box(box, widths[i]), mirror_box(face, widths[i])
                detected.append(box)
                target.append(face)
        fitted[name] = (BoxCorrection.fit(np.array(detected), np.array(target)), len(detected))
    return fitted


def convention_error_summary(errors: np.ndarray) -> str:
    errors = np.asarray(errors).reshape(-1, 3)
    if not len(errors):
        return "no matched detections"
    mean, std = errors.mean(axis=0), errors.std(axis=0)
    return (
        f"centre x {mean[0]:+.3f} +/- {std[0]:.3f}, centre y {mean[1]:+.3f} +/- {std[1]:.3f} (box sides), "
        f"side ratio {mean[2]:.3f} +/- {std[2]:.3f}  (n={len(errors)})"
    )


def evaluate_detector(detector: HaarFaceDetector, names, keypoints, images) -> dict:
    """End-to-end: detection rate, misses, extra detections, time, and box-convention errors by cascade."""
    found, extra, ms = 0, 0, []
    errors: dict[str, list] = {}
    misses = []
    for name, points, image in zip(names, keypoints, images):
        start = time.perf_counter()
        detections = detector.detect(image)
        ms.append((time.perf_counter() - start) * 1000)
        j = match_face(detections, points)
        if j is None:
            misses.append(name)
            extra += len(detections)
            continue
        found += 1
        extra += len(detections) - 1
        error = box_convention_error(detections[j].box, haar_box_from_keypoints(points))
        errors.setdefault(detections[j].cascade, []).append(error)
    return {
        "n": len(names),
        "found": found / len(names),
        "misses": misses,
        "extra": extra / len(names),
        "ms": float(np.mean(ms)),
        "errors": errors,
    }


def print_final(label: str, result: dict) -> None:
    print(
        f"{label}: found {100 * result['found']:.2f}% ({result['n'] - len(result['misses'])}/{result['n']}), "
        f"extra detections {result['extra']:.3f}/image, {result['ms']:.1f} ms/image"
    )
    if result["misses"]:
        print(f"  missed: {', '.join(result['misses'])}")
    everything = [e for errors in result["errors"].values() for e in errors]
    print(f"  box-convention error, all: {convention_error_summary(everything)}")
    for cascade, errors in sorted(result["errors"].items()):
        print(f"    {cascade:<28} {convention_error_summary(errors)}")


# ---------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="dataset folder (default: $FKP_DATA, else data/)")
    parser.add_argument("--limit", type=int, default=800, help="training images in the sweep subsample (default 800)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsample")
    parser.add_argument("--miss-cost", type=float, default=10.0,
                        help="a missed face costs as much as this many false detections (default 10)")
    parser.add_argument("--cache", help="keep the subsample's cascade runs in this pickle file and reuse them")
    parser.add_argument("--top", type=int, default=30, help="rows of the combined-settings table to print")
    parser.add_argument("--csv", help="write every setting's row to this CSV file")
    parser.add_argument("--no-final", dest="final", action="store_false", help="skip stage 2 and the full test / training runs")
    parser.add_argument("--full-limit", type=int, help="use only this many images of each split in stage 2 and the final runs (a quick check)")
    return parser


def subsample_runs(images: list[np.ndarray], noface: dict[str, np.ndarray], cache: str | None, key: tuple) -> tuple[dict, dict]:
    """Every run of RUNS at every scaleFactor and equalisation, on the subsample and on the no-face images."""
    if cache and Path(cache).is_file():
        with open(cache, "rb") as handle:
            stored = pickle.load(handle)
        if stored.get("key") == key:
            print(f"  (cascade runs read from {cache})")
            return stored["face_runs"], stored["noface_runs"]
    face_runs, noface_runs = {}, {}
    for sf in SCALE_FACTORS:
        for eq in EQUALIZE:
            params = {**DEFAULT_PARAMS, "scale_factor": sf, "equalize": eq}
            runs = run_cascades(images, params, progress=f"sf {sf} eq {'on' if eq else 'off'}")
            face_runs.update({(name, mirrored, eq, sf): r for (name, mirrored), r in runs.items()})
            runs = run_cascades(list(noface.values()), params)
            noface_runs.update({(name, mirrored, eq, sf): r for (name, mirrored), r in runs.items()})
    if cache:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "wb") as handle:
            pickle.dump({"key": key, "face_runs": face_runs, "noface_runs": noface_runs}, handle)
    return face_runs, noface_runs


def stage_two(
    rows: list[dict], first: dict, params: dict, data_dir: Path, miss_cost: float, limit: int | None = None
) -> tuple[dict, list[dict], int]:
    """Count every candidate's misses on all training images: the stage-1 settings with the first choice's first
    cascade and equalisation, at every scaleFactor.

    The first cascade runs on every image (its raw windows regrouped for each minNeighbors); the other cascades
    only where it missed the face at some minNeighbors, since they can only add faces (their boxes come after
    the first cascade's in the merge). False positives and time still come from the subsample rows.
    """
    equalize = first["setting"].equalize
    primary = CASCADE_SETS[first["setting"].cascades][0]
    candidates = [
        r for r in rows
        if r["setting"].secondary == "always" and r["setting"].equalize == equalize and CASCADE_SETS[r["setting"].cascades][0] == primary
    ]
    names, keypoints, images = load_split(data_dir, "training", limit, lazy=True)
    detectors = {
        sf: HaarFaceDetector(**{**params, "scale_factor": sf, "equalize": equalize, "cascades": tuple(dict.fromkeys(n for n, _ in RUNS))})
        for sf in SCALE_FACTORS
    }
    primary_found = np.zeros((len(SCALE_FACTORS), len(names), len(MIN_NEIGHBORS)), bool)
    lists: dict[tuple[float, int], dict[tuple[str, bool, int], list[Detection]]] = {}  # (sf, image) -> run lists
    start = time.perf_counter()
    for i, image in enumerate(images):
        for f, (sf, detector) in enumerate(detectors.items()):
            working = detector.prepare(image)
            if working is None:
                continue
            raw = detector.raw_windows(working, primary)
            found = {mn: detector.detections_of_run(raw, primary, False, working.scale, mn) for mn in MIN_NEIGHBORS}
            for k, mn in enumerate(MIN_NEIGHBORS):
                primary_found[f, i, k] = match_face(suppress(found[mn], params["nms_iou"]), keypoints[i]) is not None
            if primary_found[f, i].all():
                continue
            runs = {(primary, False, mn): found[mn] for mn in MIN_NEIGHBORS}
            for name, mirrored in RUNS:
                if name != primary:
                    raw = detector.raw_windows(working, name, mirrored)
                    for mn in MIN_NEIGHBORS:
                        runs[(name, mirrored, mn)] = detector.detections_of_run(raw, name, mirrored, working.scale, mn)
            lists[(sf, i)] = runs
    print(f"  {len(names)} training images in {time.perf_counter() - start:.0f} s; the first cascade missed at some "
          f"minNeighbors: " + ", ".join(f"{sum(1 for s, _ in lists if s == sf)} images at sf {sf}" for sf in SCALE_FACTORS))
    for r in candidates:
        s = r["setting"]
        f, k = SCALE_FACTORS.index(s.scale_factor), MIN_NEIGHBORS.index(s.min_neighbors)
        misses = int((~primary_found[f, :, k]).sum())
        for (sf, i), runs in lists.items():
            if sf != s.scale_factor or primary_found[f, i, k]:
                continue
            merged = []
            for j, (name, mirrored) in enumerate(runs_of(CASCADE_SETS[s.cascades])):
                merged += runs[(name, mirrored, s.min_neighbors if j == 0 else s.secondary_min_neighbors)]
            misses -= match_face(suppress(merged, params["nms_iou"]), keypoints[i]) is not None
        r["miss_full"] = misses
    return choose(candidates, miss_cost, len(names), miss_key="miss_full"), candidates, len(names)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cv2.setNumThreads(1)
    try:
        data_dir = resolve_data_dir(args.data)
        names, keypoints, images = load_split(data_dir, "training", args.limit, args.seed)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    noface = no_face_images(args.seed)
    n = len(names)
    print(f"{n} training images (seed {args.seed}), {len(noface)} no-face images: {', '.join(noface)}")
    print(f"OpenCV {cv2.__version__}, one thread. Stage 1: every cascade at every scaleFactor / equalisation on the subsample ...")
    preprocessing = tuple(DEFAULT_PARAMS[k] for k in ("min_face_size", "working_face_size", "min_side", "max_upscale", "max_side"))
    key = (tuple(names), tuple(noface), SCALE_FACTORS, EQUALIZE, MIN_NEIGHBORS, preprocessing)
    face_runs, noface_runs = subsample_runs(images, noface, args.cache, key)

    evaluator = Evaluator(face_runs, keypoints, noface_runs, len(noface))
    rows = [evaluator.evaluate(setting) for setting in all_settings()]
    for r in rows:
        r["cost"] = cost(r["miss"] / n, r["fp_rate"], args.miss_cost)

    print("\nSingle cascades: found % / extra detections per image / detections on the no-face images, by minNeighbors")
    print(f"{'cascade':<10} {'sf':<5} {'eq':<4} {'ms':>6}  " + "  ".join(f"{'mn ' + str(mn):^19}" for mn in MIN_NEIGHBORS))
    for cascades in (k for k, v in CASCADE_SETS.items() if len(v) == 1):
        for sf in SCALE_FACTORS:
            for eq in EQUALIZE:
                cells = [r for r in rows if r["setting"].cascades == cascades and r["setting"].scale_factor == sf and r["setting"].equalize == eq]
                cells.sort(key=lambda r: r["setting"].min_neighbors)
                print(f"{cascades:<10} {sf:<5} {'on' if eq else 'off':<4} {cells[0]['ms']:6.1f}  "
                      + "  ".join(f"{100 * r['found']:6.2f}/{r['extra']:.3f}/{r['noface']:3d}" for r in cells))

    print(f"\nCost = misses per image + false detections per image / {args.miss_cost:g} (a miss costs {args.miss_cost:g} false detections).")
    print(f"Cheapest {args.top} of {len(rows)} settings; 'extra' per image, 'no-face' in total over {len(noface)} images, ms per image:")
    print(HEADER)
    for r in sorted(rows, key=lambda r: (r["cost"], r["ms"]))[: args.top]:
        print(format_row(r))
    print("reference (frontal default alone):")
    for setting in (Setting("default", 1.1, 3, 3, False), Setting("default", 1.1, 2, 2, False), Setting("default", 1.05, 3, 3, False)):
        print(format_row(next(r for r in rows if r["setting"] == setting)))
    print("the cheapest of each cascade set (same rule as the choice):")
    for cascades in CASCADE_SETS:
        print(format_row(choose([r for r in rows if r["setting"].cascades == cascades], args.miss_cost, n)))
    first = choose(rows, args.miss_cost, n)
    print("Stage 1 choice (cheapest; within one face of it, the fastest):")
    print(format_row(first))

    # -- box corrections -------------------------------------------------------------------------------------
    sf = first["setting"].scale_factor
    print(f"\nBox corrections fitted on the subsample (scaleFactor {sf}, minNeighbors 3) vs. haar.BOX_CORRECTIONS:")
    for name, (fit, count) in fit_corrections(face_runs, keypoints, [im.shape[1] for im in images], sf).items():
        shipped = BOX_CORRECTIONS.get(name, BoxCorrection())
        differs = max(abs(fit.scale - shipped.scale), abs(fit.dx - shipped.dx), abs(fit.dy - shipped.dy)) >= 0.015
        print(f"  {name:<22} n={count:4d} scale {fit.scale:.3f} dx {fit.dx:+.3f} dy {fit.dy:+.3f}   "
              f"shipped {shipped.scale:.3f} {shipped.dx:+.3f} {shipped.dy:+.3f}{'   <- differs' if differs else ''}")

    # -- enlarging small images ------------------------------------------------------------------------------
    params = first["setting"].params()
    print(f"\nEnlarging small images (min_side), stage 1 choice: subsample images / training faces shrunk to {SMALL_FACE_SIDES} px")
    small_index = np.random.default_rng(args.seed + 1).choice(n, min(150, n), replace=False)
    shrunk = {}
    for side in SMALL_FACE_SIDES:
        for i in small_index:
            factor = side / float(haar_box_from_keypoints(keypoints[i])[2])
            image = cv2.resize(images[i], None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
            shrunk.setdefault(side, []).append((image, (keypoints[i] + 0.5) * factor - 0.5))
    affected = [i for i, image in enumerate(images) if min(image.shape[:2]) < max(MIN_SIDES)]
    best = None
    for min_side in MIN_SIDES:
        detector = HaarFaceDetector(**{**params, "min_side": min_side})
        start = time.perf_counter()
        found_small = [np.mean([match_face(detector.detect(im), pts) is not None for im, pts in shrunk[side]]) for side in SMALL_FACE_SIDES]
        small_ms = (time.perf_counter() - start) * 1000 / sum(len(v) for v in shrunk.values())
        hits = sum(match_face(detector.detect(images[i]), keypoints[i]) is not None for i in affected)
        print(f"  min_side {min_side:3d}: subsample images shorter than {max(MIN_SIDES)} px: {hits}/{len(affected)} found; shrunk faces "
              + ", ".join(f"{side}px {100 * f:.0f}%" for side, f in zip(SMALL_FACE_SIDES, found_small)) + f"; {small_ms:.1f} ms/image")
        score = (hits, round(float(np.mean(found_small)), 2))
        if best is None or score > best[1]:
            best = (min_side, score)
    print(f"  -> min_side {best[0]} (most subsample faces, then most shrunk faces, then the smallest)")
    params["min_side"] = best[0]

    final_row = first
    if args.final:
        print(f"\nStage 2: the stage-1 settings with equalisation {'on' if first['setting'].equalize else 'off'}, with misses "
              "counted on all training images ('miss(all)'; false positives and time still from the subsample):")
        final_row, candidates, n_full = stage_two(rows, first, params, data_dir, args.miss_cost, args.full_limit)
        print(HEADER + f" {'miss(all)':>9}")
        for r in sorted(candidates, key=lambda r: (r["cost"], r["ms"]))[: args.top]:
            print(format_row(r))
        print("the cheapest of each cascade set:")
        for cascades in dict.fromkeys(r["setting"].cascades for r in candidates):
            subset = [r for r in candidates if r["setting"].cascades == cascades]
            print(format_row(choose(subset, args.miss_cost, n_full, "miss_full")))
        choose(candidates, args.miss_cost, n_full, "miss_full")  # (restores every candidate's cost)
        print("Stage 2 choice:")
        print(format_row(final_row))
        params = {**final_row["setting"].params(), "min_side": params["min_side"]}

    if args.csv:
        import csv

        out = Path(args.csv)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["cascades", "scale_factor", "min_neighbors", "secondary_min_neighbors", "equalize", "secondary",
                             "found", "miss", "extra_per_image", "noface_detections", "noface_images", "ms", "miss_all_training"])
            for r in rows:
                s = r["setting"]
                writer.writerow([s.cascades, s.scale_factor, s.min_neighbors, s.secondary_min_neighbors, s.equalize, s.secondary,
                                 f"{r['found']:.5f}", r["miss"], f"{r['extra']:.4f}", r["noface"], r["noface_images"], f"{r['ms']:.2f}",
                                 r.get("miss_full", "")])
        print(f"wrote {out}")

    shown = {k: params[k] for k in DEFAULT_PARAMS}
    print("\nChosen parameters:", shown)
    changed = {k: (DEFAULT_PARAMS[k], shown[k]) for k in DEFAULT_PARAMS if DEFAULT_PARAMS[k] != shown[k]}
    print(f"  NOTE: these differ from haar.DEFAULT_PARAMS (old, new): {changed}" if changed else "  (the same as haar.DEFAULT_PARAMS)")
    detector = HaarFaceDetector(**params)
    no_face_hits = {name: len(detector.detect(image)) for name, image in noface.items()}
    print("  detections on the no-face images:", {k: v for k, v in no_face_hits.items() if v} or "none")
    if not args.final:
        return 0
    print("\nChosen setting on the full splits:")
    for split in ("test", "training"):
        split_names, split_keypoints, split_images = load_split(data_dir, split, args.full_limit, lazy=True)
        print_final(f"{split} ({len(split_names)} images)", evaluate_detector(detector, split_names, split_keypoints, split_images))
    return 0


if __name__ == "__main__":
    sys.exit(main())
