"""Keypoint accuracy metrics, and evaluation of a model on the labelled test faces.

NME_io: mean point-to-point error divided by the distance between the outer eye corners (points 36 and 45).
NME_box: the same divided by the square root of the keypoint box's area. FR@t: the share of faces whose NME_io
exceeds t. AUC@0.08: area under the cumulative error curve up to 0.08, divided by 0.08 (1 is perfect).

    python evaluate.py --data ../shared/data --json outputs/eval.json            # the shipped model
    python evaluate.py --baseline mean                                           # mean shape in the true box
    python evaluate.py --mode pipeline                                           # real face detection
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from data_load import (
    LEFT_EYE_OUTER,
    RIGHT_EYE_OUTER,
    DataError,
    crop_matrix,
    crop_square_from_box,
    denormalize_keypoints,
    flip_permutation,
    haar_box_from_keypoints,
    invert_matrix,
    keypoint_box,
    read_image,
    read_keypoints_csv,
    resolve_data_dir,
    split_paths,
    transform_points,
    warp,
)
from models import ModelError, TorchRunner, make_runner

REPO_DIR = Path(__file__).resolve().parent
SHIPPED_MODEL = REPO_DIR / "saved_models" / "keypoints_fast.pt"


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


def face_crops(
    image: np.ndarray, boxes: np.ndarray, input_size: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The network's grayscale crops (N, S, S) in [0, 1] for face boxes, with each crop's 2 x 3 matrix."""
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    crops, matrices = [], []
    for box in boxes:
        matrix = crop_matrix(*crop_square_from_box(box), input_size)
        crops.append(warp(gray, matrix, input_size))
        matrices.append(matrix)
    return np.stack(crops).astype(np.float32) / 255.0, matrices


def predict_crops(model, crops: np.ndarray, flip_average: bool = False, batch_size: int = 256) -> np.ndarray:
    """Keypoints in crop pixels (N, K, 2) for grayscale crops (N, S, S) in [0, 1].

    ``model`` is a PyTorch model or a runner from ``models.make_runner``. With ``flip_average`` each crop is also
    predicted mirrored (in the same batch) and the two answers are averaged, left/right labels swapped back.
    """
    if flip_average:
        return predict_crops_with_flip_error(model, crops, batch_size)[0]
    runner = TorchRunner(model) if isinstance(model, torch.nn.Module) else model
    outputs = []
    for start in range(0, len(crops), batch_size):
        batch = np.ascontiguousarray(crops[start : start + batch_size], dtype=np.float32)[:, None]
        outputs.append(runner(batch).reshape(len(batch), -1, 2))
    return denormalize_keypoints(np.concatenate(outputs), crops.shape[-1])


def predict_crops_with_flip_error(model, crops: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Flip-averaged keypoints in crop pixels (N, K, 2), and each crop's flip error (N,).

    The flip error is the mean distance between the keypoints predicted on the crop and on its mirror image, as a
    fraction of the crop side. A face gives nearly the same answer both ways; a crop without a face does not, so
    the flip error doubles as a "this is a face" check (``pipeline.FLIP_ERROR_NO_FACE``, measured by
    ``benchmarks/flip_error.py``).
    """
    runner = TorchRunner(model) if isinstance(model, torch.nn.Module) else model
    size = crops.shape[-1]
    outputs, errors = [], []
    for start in range(0, len(crops), batch_size):
        batch = np.ascontiguousarray(crops[start : start + batch_size], dtype=np.float32)[:, None]
        n = len(batch)
        points = runner(np.ascontiguousarray(np.concatenate([batch, batch[..., ::-1]]))).reshape(2 * n, -1, 2)
        mirrored = points[n:, flip_permutation(points.shape[1])]
        # normalised x of a mirrored pixel: (size - 1 - x) -> -x - 2/size
        mirrored[..., 0] = -mirrored[..., 0] - 2.0 / size
        outputs.append((points[:n] + mirrored) / 2)
        errors.append(np.linalg.norm(points[:n] - mirrored, axis=-1).mean(axis=-1) / 2)  # normalised units span 2
    return denormalize_keypoints(np.concatenate(outputs), size), np.concatenate(errors)


def predict_in_boxes(
    model, images: list[np.ndarray], boxes: list[np.ndarray], flip_average: bool = False
) -> np.ndarray:
    """Keypoints in image pixels, one face box per image: (N, K, 2)."""
    crops, matrices = [], []
    for image, box in zip(images, boxes):
        crop, (matrix,) = face_crops(image, np.asarray([box]), model.input_size)
        crops.append(crop[0])
        matrices.append(matrix)
    points = predict_crops(model, np.stack(crops), flip_average)
    return np.stack([transform_points(p, invert_matrix(m)) for p, m in zip(points, matrices)])


# ---------------------------------------------------------------------------------------------------------
# Evaluation on a split
# ---------------------------------------------------------------------------------------------------------
def evaluate_model(
    model, data_dir: str | os.PathLike | None = None, split: str = "test", flip_average: bool = False
) -> tuple[dict, np.ndarray, list[str]]:
    """Metrics of ``model`` (a PyTorch model or a runner) on a split, each face framed from its keypoints'
    Haar-convention box."""
    csv_file, root_dir = split_paths(resolve_data_dir(data_dir), split)
    names, truth = read_keypoints_csv(csv_file)
    images = [read_image(root_dir / name) for name in names]
    boxes = [haar_box_from_keypoints(t) for t in truth]
    start = time.perf_counter()
    predicted = predict_in_boxes(model, images, boxes, flip_average)
    metrics = summarize(predicted, truth)
    metrics["seconds"] = time.perf_counter() - start
    return metrics, nme_interocular(predicted, truth), names


def evaluate_mean_baseline(data_dir: str | os.PathLike | None = None, split: str = "test") -> tuple[dict, np.ndarray, list[str]]:
    """The mean training shape placed in each face's true keypoint box."""
    directory = resolve_data_dir(data_dir)
    _, train = read_keypoints_csv(split_paths(directory, "training")[0])
    names, truth = read_keypoints_csv(split_paths(directory, split)[0])
    boxes = np.array([keypoint_box(t) for t in truth])
    predicted = place_in_boxes(mean_shape(train), boxes)
    return summarize(predicted, truth), nme_interocular(predicted, truth), names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="dataset folder (default: $FKP_DATA, else data/, downloaded on first use)")
    parser.add_argument("--model", default=str(SHIPPED_MODEL), help="model file (default: the shipped model)")
    parser.add_argument("--split", default="test", choices=["test", "training"])
    parser.add_argument("--baseline", choices=["mean"], help="evaluate a baseline instead of a model")
    parser.add_argument("--mode", default="box", choices=["box", "pipeline"],
                        help="box: crop from the keypoints' Haar-convention box (default); pipeline: detect faces first")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="do not average with the mirrored crop")
    parser.add_argument("--refine-steps", type=int, help="pipeline mode: re-crops from the keypoints (default: pipeline.REFINE_STEPS)")
    parser.add_argument("--json", help="write the metrics (and per-face errors) to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.baseline == "mean":
            metrics, per_face, names = evaluate_mean_baseline(args.data, args.split)
            metrics["predictor"] = "mean shape in the true keypoint box"
        elif args.mode == "pipeline":
            from pipeline import evaluate_pipeline

            steps = {} if args.refine_steps is None else {"refine_steps": args.refine_steps}
            metrics, per_face, names = evaluate_pipeline(args.model, args.data, args.split, flip_average=args.flip, **steps)
        else:
            runner = make_runner(args.model)
            metrics, per_face, names = evaluate_model(runner, args.data, args.split, flip_average=args.flip)
            metrics["predictor"] = (
                f"{runner.meta['architecture']} ({Path(args.model).name}, {type(runner).__name__}), "
                f"flip averaging {'on' if args.flip else 'off'}"
            )
    except (DataError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for key, value in metrics.items():
        print(f"{key:>16}: {value:.4f}" if isinstance(value, float) else f"{key:>16}: {value}")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        per_face_list = [{"name": n, "nme_io": float(e)} for n, e in zip(names, per_face)]
        out.write_text(json.dumps({**metrics, "per_face": per_face_list}, indent=1))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
