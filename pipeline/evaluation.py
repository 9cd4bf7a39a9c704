"""Keypoint accuracy metrics, and evaluation of a model on the labelled test faces.

NME_io: mean point-to-point error divided by the distance between the outer eye corners (points 36 and 45).
NME_box: the same divided by the square root of the keypoint box's area. FR@t: the share of faces whose NME_io
exceeds t. AUC@0.08: area under the cumulative error curve up to 0.08, divided by 0.08 (1 is perfect).

    python evaluate.py --data ../shared/data --json outputs/eval.json            # the shipped model
    python evaluate.py --baseline mean                                           # mean shape in the true box
    python evaluate.py --mode pipeline                                           # real face detection
    python evaluate.py --dataset 300w --data ../shared/300w --json outputs/300w.json   # held-out 300-W faces
    # ... also prints the error by head pose (yaw_degrees, three bins) and draws the ten worst faces
    # into outputs/300w_worst_faces.png (--figure)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_load import (
    LEFT_EYE_OUTER,
    RIGHT_EYE_OUTER,
    DataError,
    crop_matrix,
    crop_square_from_box,
    haar_box_from_keypoints,
    keypoint_box,
    normalize_keypoints,
    read_image,
    read_keypoints_csv,
    resolve_data_dir,
    split_paths,
    spread_indices,
    transform_points,
)
from pipeline.data_300w import Faces300WDataset
from detector_architectures import DEFAULT_DETECTOR, DETECTORS, match_face
from pipeline.inference import REPO_DIR, SHIPPED_MODEL, predict_in_boxes
from models import CONVENTIONS, MeanFaceNet, ModelError, make_runner
from pipeline.keypoint_pipeline import REFINE_STEPS, KeypointPipeline
from pipeline.second_stage import companion_refiner

# The course dataset's labels follow the course's own convention (models.CONVENTIONS): every figure on it asks the
# model for that convention, whatever the model's default.
COURSE_CONVENTION = "course"
# 300-W faces are scored in the 300-W convention, the field's.
WILD_CONVENTION = "300w"
WORST_FACES_FIGURE = REPO_DIR / "outputs" / "300w_worst_faces.png"


# ---------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------
def point_errors(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Euclidean error of every point: (N, K)."""
    return np.linalg.norm(np.asarray(predicted, np.float64) - np.asarray(truth, np.float64), axis=-1)


def interocular_distance(truth: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners of 68-point shapes: (N,)."""
    truth = np.asarray(truth, np.float64)
    return np.linalg.norm(truth[:, LEFT_EYE_OUTER] - truth[:, RIGHT_EYE_OUTER], axis=-1)


def nme_interocular(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-face NME normalised by the outer eye corners: (N,)."""
    return point_errors(predicted, truth).mean(axis=1) / interocular_distance(truth)


def nme_box(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-face NME normalised by sqrt(width x height) of the true keypoint box: (N,)."""
    boxes = np.array([keypoint_box(t) for t in np.asarray(truth)], np.float64)
    return point_errors(predicted, truth).mean(axis=1) / np.sqrt(boxes[:, 2] * boxes[:, 3])


def failure_rate(errors: np.ndarray, threshold: float) -> float:
    """Share of faces whose error exceeds ``threshold``."""
    return float(np.mean(np.asarray(errors) > threshold))


def cumulative_error_curve(errors: np.ndarray, limit: float = 0.08, steps: int = 801) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds in [0, limit] and the share of faces with error at most each threshold."""
    thresholds = np.linspace(0.0, limit, steps)
    errors = np.sort(np.asarray(errors))
    return thresholds, np.searchsorted(errors, thresholds, side="right") / len(errors)


def auc(errors: np.ndarray, limit: float = 0.08) -> float:
    """Area under the cumulative error curve up to ``limit``, scaled to [0, 1]."""
    thresholds, fraction = cumulative_error_curve(errors, limit)
    return float(np.trapezoid(fraction, thresholds) / limit)


# The 68 iBUG points by face region (0-based, inclusive ranges as in the 300-W papers).
REGIONS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48), "mouth": range(48, 68)}


def region_errors(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean point error of each face region (``REGIONS``) in inter-ocular distances, over all faces."""
    errors = point_errors(predicted, truth) / interocular_distance(truth)[:, None]
    return {region: float(errors[:, list(points)].mean()) for region, points in REGIONS.items()}


# Head-pose bins of ``yaw_degrees`` (absolute yaw, degrees): near-frontal, turned, strongly turned.
YAW_BINS = ((0.0, 15.0), (15.0, 30.0), (30.0, 90.0))
JAW_ENDS = (0, 16)  # the jaw's ends at the level of the ears (iBUG 68 points)
NOSE_TIP = 30


def yaw_degrees(keypoints: np.ndarray) -> np.ndarray:
    """Head yaw estimated from 68-point shapes (N, 68, 2) in pixels, in degrees (N,); positive when the nose tip is
    nearer the picture-right end of the jaw.

    A cylinder model of the head: the nose tip seen at a share ``r`` of the way between the jaw's ends (points 0 and
    16, taken along the line through them so that head roll does not count) lies at ``asin(2 r - 1)`` from the
    camera axis. It needs no 3D face model and reads the pose from the labels themselves; it is a coarse estimate
    (frontal faces read within a few degrees of 0, a profile saturates near 90) meant for binning, not for
    measuring pose.
    """
    keypoints = np.asarray(keypoints, np.float64)
    left, right = keypoints[:, JAW_ENDS[0]], keypoints[:, JAW_ENDS[1]]
    axis = right - left
    share = np.einsum("ij,ij->i", keypoints[:, NOSE_TIP] - left, axis) / np.maximum(np.einsum("ij,ij->i", axis, axis), 1e-9)
    return np.degrees(np.arcsin(np.clip(2 * share - 1, -1.0, 1.0)))


def errors_by_yaw(per_face: np.ndarray, truth: np.ndarray, bins: tuple[tuple[float, float], ...] = YAW_BINS) -> dict[str, dict]:
    """Per-face NME_io (N,) grouped by the absolute yaw of the true shapes (``yaw_degrees``): for each bin
    ``"LOW-HIGH deg"`` its face count ``n``, ``nme_io`` (mean) and ``fr10`` (None for an empty bin)."""
    yaw = np.abs(yaw_degrees(truth))
    per_face = np.asarray(per_face, np.float64)
    result = {}
    for low, high in bins:
        inside = (yaw >= low) & ((yaw < high) if high < bins[-1][1] else (yaw <= high))
        chosen = per_face[inside]
        result[f"{low:.0f}-{high:.0f} deg"] = {
            "n": int(inside.sum()),
            "nme_io": float(chosen.mean()) if len(chosen) else None,
            "fr10": failure_rate(chosen, 0.10) if len(chosen) else None,
        }
    return result


def summarize(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """All metrics of predictions against ground truth, as plain floats."""
    per_face = nme_interocular(predicted, truth)
    return {
        "n": int(len(per_face)),
        "nme_io": float(per_face.mean()),
        "nme_io_median": float(np.median(per_face)),
        "nme_box": float(nme_box(predicted, truth).mean()),
        "fr08": failure_rate(per_face, 0.08),
        "fr10": failure_rate(per_face, 0.10),
        "auc08": auc(per_face, 0.08),
    }


def plot_cumulative_error(curves: dict[str, np.ndarray], limit: float = 0.08, ax=None):
    """Cumulative error curves (per-face NME_io arrays by label) on one matplotlib axis."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    for label, errors in curves.items():
        thresholds, fraction = cumulative_error_curve(errors, limit)
        ax.plot(thresholds, fraction, label=f"{label} (AUC {auc(errors, limit):.3f})")
    ax.set(xlabel="NME (outer eye corners)", ylabel="share of faces", xlim=(0, limit), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return ax


# ---------------------------------------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------------------------------------
def mean_shape(keypoints: np.ndarray) -> np.ndarray:
    """The mean of shapes each scaled to the unit square of its own keypoint box: (K, 2) in [0, 1]."""
    low = keypoints.min(axis=1, keepdims=True)
    high = keypoints.max(axis=1, keepdims=True)
    return ((keypoints - low) / (high - low)).mean(axis=0)


def place_in_boxes(shape: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """A unit-square shape stretched into each (x, y, w, h) box: (N, K, 2)."""
    boxes = np.asarray(boxes, np.float32)
    return boxes[:, None, :2] + shape[None] * boxes[:, None, 2:]


def mean_face_model(data_dir: str | os.PathLike | None = None, input_size: int = 96) -> MeanFaceNet:
    """A ``models.MeanFaceNet`` for crops of ``input_size`` px: the mean of the training faces' keypoints in their
    own crops (cut from the Haar-convention box of their keypoints, as in training), so it frames the mean face the
    way the pipeline's crops frame a face. Needs only the training CSV."""
    _, train = read_keypoints_csv(split_paths(resolve_data_dir(data_dir), "training")[0])
    in_crops = [
        transform_points(points, crop_matrix(*crop_square_from_box(haar_box_from_keypoints(points)), input_size))
        for points in train
    ]
    return MeanFaceNet(normalize_keypoints(np.mean(in_crops, axis=0), input_size), input_size)


# ---------------------------------------------------------------------------------------------------------
# Evaluation on a split
# ---------------------------------------------------------------------------------------------------------
def spread_subset(names: list[str], truth: np.ndarray, limit: int | None) -> tuple[list[str], np.ndarray]:
    """``limit`` faces spread evenly over a split (all of them for None), so that a quick run still sees most people."""
    keep = spread_indices(len(names), limit)
    return [names[i] for i in keep], truth[keep]


def evaluate_model(
    model, data_dir: str | os.PathLike | None = None, split: str = "test", flip_average: bool = False, refiner=None,
    limit: int | None = None,
) -> tuple[dict, np.ndarray, list[str]]:
    """Metrics of ``model`` (a PyTorch model or a runner) on a split of the course data (or on ``limit`` of its faces,
    spread over it: quick runs), each face framed from its keypoints' Haar-convention box, in the course's labelling
    convention; with a ``refiner`` (``pipeline.second_stage.Refiner``) its keypoints refined. Adds ``regions``, the
    mean error of each face region."""
    csv_file, root_dir = split_paths(resolve_data_dir(data_dir), split)
    names, truth = spread_subset(*read_keypoints_csv(csv_file), limit)
    images = [read_image(root_dir / name, as_stored=True) for name in names]
    boxes = [haar_box_from_keypoints(t) for t in truth]
    start = time.perf_counter()
    predicted = predict_in_boxes(model, images, boxes, flip_average, convention=COURSE_CONVENTION, refiner=refiner)
    metrics = summarize(predicted, truth)
    metrics["seconds"] = time.perf_counter() - start
    metrics["regions"] = region_errors(predicted, truth)
    return metrics, nme_interocular(predicted, truth), names


@dataclass
class FacePredictions:
    """Pictures, true and predicted keypoints of a set of faces: ``truth`` and ``predicted`` (N, 68, 2) in each
    picture's pixels, ``names`` (N,) and ``images`` (N grayscale or RGB uint8 arrays)."""

    names: list[str]
    images: list[np.ndarray]
    truth: np.ndarray
    predicted: np.ndarray


def evaluate_300w(
    model, folders=None, split: str = "validation", flip_average: bool = False, convention: str | None = WILD_CONVENTION, refiner=None
) -> tuple[dict, np.ndarray, list[str]]:
    """Metrics of ``model`` on the 300-W faces of a split (default: the held-out ones, ``data_300w``), each framed
    from its keypoints' Haar-convention box as the course test faces are, in the 300-W labelling convention
    (``convention`` to ask the model for another). Adds ``regions``, the mean error of each face region, and
    ``yaw``, the error by head pose (``errors_by_yaw``). ``refiner``: as in ``evaluate_model``."""
    metrics, per_face, faces = evaluate_300w_faces(model, folders, split, flip_average, convention, refiner)
    return metrics, per_face, faces.names


def evaluate_300w_faces(
    model, folders=None, split: str = "validation", flip_average: bool = False, convention: str | None = WILD_CONVENTION, refiner=None
) -> tuple[dict, np.ndarray, FacePredictions]:
    """``evaluate_300w``, also returning the faces and predictions themselves (for ``plot_worst_faces``)."""
    dataset = Faces300WDataset(folders, split)
    if not len(dataset):
        raise DataError(f"No 300-W faces in the {split} split of {', '.join(map(str, dataset.folders))}.")
    truth = dataset.keypoints
    images = [read_image(face.picture) for face in dataset.faces]
    boxes = [haar_box_from_keypoints(t) for t in truth]
    start = time.perf_counter()
    predicted = predict_in_boxes(model, images, boxes, flip_average, convention=convention, refiner=refiner)
    per_face = nme_interocular(predicted, truth)
    metrics = {
        **summarize(predicted, truth),
        "seconds": time.perf_counter() - start,
        "regions": region_errors(predicted, truth),
        "yaw": errors_by_yaw(per_face, truth),
    }
    return metrics, per_face, FacePredictions(dataset.names, images, truth, predicted)


def plot_worst_faces(faces: FacePredictions, per_face: np.ndarray, count: int = 10, columns: int = 5):
    """A matplotlib figure of the ``count`` faces with the largest per-face NME_io (worst first), each zoomed to
    its face (the true keypoint box, 1.4 times its side), true keypoints in green, predicted in red, titled with
    its name, NME_io and estimated yaw (``yaw_degrees``)."""
    import matplotlib.pyplot as plt

    order = np.argsort(per_face)[::-1][:count]
    rows = max(1, int(np.ceil(len(order) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 4.0 * rows), squeeze=False)
    yaw = yaw_degrees(faces.truth[order]) if len(order) else np.zeros(0)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i, face_yaw in zip(axes.flat, order, yaw):
        image, truth, predicted = faces.images[i], faces.truth[i], faces.predicted[i]
        x, y, w, h = keypoint_box(truth)
        side = 1.4 * max(w, h)
        cx, cy = x + w / 2, y + h / 2
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.scatter(truth[:, 0], truth[:, 1], s=6, c="lime", label="true")
        ax.scatter(predicted[:, 0], predicted[:, 1], s=6, c="red", label="predicted")
        ax.set(xlim=(cx - side / 2, cx + side / 2), ylim=(cy + side / 2, cy - side / 2))
        ax.set_title(f"{faces.names[i]}\nNME_io {per_face[i]:.3f}, yaw {face_yaw:+.0f} deg", fontsize=8)
    if len(order):
        axes.flat[0].legend(loc="lower left", fontsize=7)
    figure.suptitle(f"The {len(order)} worst of {len(per_face)} faces (green: true, red: predicted)")
    figure.tight_layout()
    return figure


def save_figure(figure, path: str | os.PathLike) -> Path:
    """Write a matplotlib figure to ``path`` (PNG) atomically: a complete file or the previous one, never half;
    the figure is closed. OSError (its folder cannot be made, ``path`` is a folder) leaves nothing behind."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a folder: name a .png file")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                figure.savefig(handle, dpi=110, format="png")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        plt.close(figure)
    return path


def evaluate_pipeline(
    model_path: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    flip_average: bool = True,
    refine: bool = True,
    refine_steps: int = REFINE_STEPS,
    detector: str = DEFAULT_DETECTOR,
    second_stage: str | os.PathLike | None = "auto",
    second_stage_rounds: int | None = None,
) -> tuple[dict, np.ndarray, list[str]]:
    """Run the pipeline (with the face ``detector`` named, ``detector_architectures.DETECTORS``) on the raw
    pictures, as a user would, and score the keypoints (course convention) of the face whose box overlaps the
    labelled face best (``match_face``).

    Keypoint metrics cover the faces found; ``detection_rate`` says how many that is. ``second_stage`` and
    ``second_stage_rounds``: the second, local stage (``pipeline.second_stage.companion_refiner``).
    """
    path = model_path or SHIPPED_MODEL
    pipe = KeypointPipeline.from_pretrained(
        path, detector, flip_average=flip_average, refine=refine, refine_steps=refine_steps, convention=COURSE_CONVENTION,
        second_stage=companion_refiner(path, second_stage, rounds=second_stage_rounds),
    )
    csv_file, root_dir = split_paths(resolve_data_dir(data_dir), split)
    names, truth = read_keypoints_csv(csv_file)
    found_names, predicted, found_truth = [], [], []
    start = time.perf_counter()
    for name, true_points in zip(names, truth):
        faces = pipe.detect(read_image(root_dir / name, as_stored=True))
        best = match_face([face.box for face in faces], true_points)
        if best is None:
            continue
        found_names.append(name)
        found_truth.append(true_points)
        predicted.append(faces[best].keypoints)
    seconds = time.perf_counter() - start
    if not predicted:
        raise DataError(f"No face was detected in the {len(names)} {split} pictures: check the detector and the data folder.")
    predicted_array, truth_array = np.stack(predicted), np.stack(found_truth)
    metrics = {"detection_rate": len(predicted) / len(names), **summarize(predicted_array, truth_array), "seconds": seconds}
    metrics["predictor"] = f"{detector} detector + {pipe.meta['architecture']} ({Path(path).name}){refined_by(pipe.second_stage)}"
    return metrics, nme_interocular(predicted_array, truth_array), found_names


def evaluate_mean_baseline(
    data_dir: str | os.PathLike | None = None, split: str = "test", limit: int | None = None
) -> tuple[dict, np.ndarray, list[str]]:
    """The mean training shape placed in each face's true keypoint box (on ``limit`` faces spread over the split,
    or all)."""
    directory = resolve_data_dir(data_dir)
    _, train = read_keypoints_csv(split_paths(directory, "training")[0])
    names, truth = spread_subset(*read_keypoints_csv(split_paths(directory, split)[0]), limit)
    boxes = np.array([keypoint_box(t) for t in truth])
    predicted = place_in_boxes(mean_shape(train), boxes)
    return summarize(predicted, truth), nme_interocular(predicted, truth), names


def refined_by(refiner) -> str:
    """", then <file> (N rounds)" for a refinement stage, "" for none: the end of a predictor's description."""
    if refiner is None:
        return ""
    return f", then {refiner.meta.get('file', 'the second stage')} ({refiner.rounds} round{'s' if refiner.rounds != 1 else ''})"


def positive_int(text: str) -> int:
    """A whole number above zero, for argparse (which turns the ValueError into a one-line usage error)."""
    value = int(text)
    if value <= 0:
        raise ValueError(f"{value} is not above zero")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="course", choices=["course", "300w"],
                        help="course: the course's labelled test faces (default); 300w: the held-out 300-W faces")
    parser.add_argument("--data", help="dataset folder (default: $FKP_DATA, or $FKP_300W for --dataset 300w)")
    parser.add_argument("--convention", choices=list(CONVENTIONS),
                        help="--dataset 300w: the convention asked of the model (default: 300w, the labels')")
    parser.add_argument("--model", default=str(SHIPPED_MODEL), help="model file (default: the shipped model)")
    parser.add_argument("--split", default="test", choices=["test", "training"])
    parser.add_argument("--baseline", choices=["mean"], help="evaluate a baseline instead of a model")
    parser.add_argument("--mode", default="box", choices=["box", "pipeline"],
                        help="box: crop from the keypoints' Haar-convention box (default); pipeline: detect faces first")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="do not average with the mirrored crop")
    parser.add_argument("--refine-steps", type=int, help="pipeline mode: re-crops from the keypoints (default: keypoint_pipeline.REFINE_STEPS)")
    parser.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR, help=f"pipeline mode: the face detector (default: {DEFAULT_DETECTOR})")
    parser.add_argument("--second-stage", default="auto",
                        help="the second, local stage (pipeline/second_stage.py): 'auto' (default) for the model's own NAME.refine.pt when "
                             "there is one, 'none', or its file")
    parser.add_argument("--second-stage-rounds", type=positive_int, help="rounds of the second stage (default: the number its file records)")
    parser.add_argument("--json", help="write the metrics (and per-face errors) to this JSON file")
    parser.add_argument("--figure", default=str(WORST_FACES_FIGURE),
                        help="--dataset 300w: draw the ten worst faces into this PNG (default: outputs/300w_worst_faces.png in the repository; '' for none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.dataset != "300w" or args.baseline:
        args.figure = ""  # the worst-faces figure is drawn for the 300-W faces only
    if args.json and args.figure and Path(args.json).resolve() == Path(args.figure).resolve():
        print("error: --json and --figure name the same file: give them different paths.", file=sys.stderr)
        return 1
    worst = None  # the faces to draw in --figure
    try:
        if args.baseline == "mean":
            metrics, per_face, names = evaluate_mean_baseline(args.data, args.split)
            metrics["predictor"] = "mean shape in the true keypoint box"
        elif args.dataset == "300w":
            runner = make_runner(args.model)
            refiner = companion_refiner(args.model, args.second_stage, rounds=args.second_stage_rounds)
            metrics, per_face, faces = evaluate_300w_faces(runner, args.data, flip_average=args.flip, convention=args.convention or WILD_CONVENTION,
                                                           refiner=refiner)
            names = faces.names
            metrics["predictor"] = (
                f"{runner.meta['architecture']} ({Path(args.model).name}, {type(runner).__name__}), "
                f"{args.convention or WILD_CONVENTION} convention, flip averaging {'on' if args.flip else 'off'}{refined_by(refiner)}"
            )
            if args.figure:
                worst = (faces, per_face)
        elif args.mode == "pipeline":
            steps = {} if args.refine_steps is None else {"refine_steps": args.refine_steps}
            metrics, per_face, names = evaluate_pipeline(args.model, args.data, args.split, flip_average=args.flip, detector=args.detector,
                                                         second_stage=args.second_stage, second_stage_rounds=args.second_stage_rounds, **steps)
        else:
            runner = make_runner(args.model)
            refiner = companion_refiner(args.model, args.second_stage, rounds=args.second_stage_rounds)
            metrics, per_face, names = evaluate_model(runner, args.data, args.split, flip_average=args.flip, refiner=refiner)
            metrics["predictor"] = (
                f"{runner.meta['architecture']} ({Path(args.model).name}, {type(runner).__name__}), "
                f"flip averaging {'on' if args.flip else 'off'}{refined_by(refiner)}"
            )
    except (DataError, ModelError, NotImplementedError, ValueError) as error:  # NotImplementedError: a TODO not done
        print(f"error: {error}", file=sys.stderr)
        return 1
    for key, value in metrics.items():
        if key == "yaw":
            value = "; ".join(
                f"{name}: {b['n']} faces, NME_io {b['nme_io']:.4f}, FR@0.10 {100 * b['fr10']:.1f} %" if b["n"] else f"{name}: no faces"
                for name, b in value.items()
            )
        elif isinstance(value, dict):
            value = ", ".join(f"{name} {error:.4f}" for name, error in value.items())
        print(f"{key:>16}: {value:.4f}" if isinstance(value, float) else f"{key:>16}: {value}")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        per_face_list = [{"name": n, "nme_io": float(e)} for n, e in zip(names, per_face)]
        out.write_text(json.dumps({**metrics, "per_face": per_face_list}, indent=1))
        print(f"wrote {out}")
    if worst is not None:
        try:
            print(f"wrote the {min(10, len(worst[1]))} worst faces to {save_figure(plot_worst_faces(*worst), args.figure)}")
        except OSError as error:
            print(f"error: the figure could not be written ({error}): pass another --figure path, or --figure '' for none.", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
