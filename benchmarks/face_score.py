"""How well a model's learned face score tells face crops from crops without a face, per crop.

    python benchmarks/face_score.py --data ../shared/data --data-300w ../shared/300w [--model saved_models/keypoints_fast.pt]

Faces: the course test faces and the held-out 300-W faces, each framed from its keypoints' Haar-convention box (as
``pipeline/evaluation.py`` frames them). No faces: the random boxes on the *measuring* part of the pictures without faces
(``no_faces.load_negative_crops("measuring")``, never trained on). Every crop goes through ``inference.predict``
with flip averaging, so the score is the mean of the crop's and its mirror image's logits. The flip error of the
same crops is printed beside it for comparison.

Printed: percentiles of the face score per group, the area under the ROC curve (faces against no faces), and for a
few thresholds the share of faces lost and of no-face crops accepted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from pipeline.data_300w import load_300w_crops  # noqa: E402
from data_load import CropDataset, DataError, load_context_crops  # noqa: E402
from pipeline.inference import SHIPPED_MODEL, predict  # noqa: E402
from models import ModelError, make_runner  # noqa: E402
from pipeline.no_faces import load_negative_crops  # noqa: E402

THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)


def network_crops(crops: dict, input_size: int, limit: int | None) -> np.ndarray:
    """The unaugmented network inputs (N, S, S) of a context crop set (the pipeline's crops)."""
    dataset = CropDataset(crops, input_size, np.arange(min(len(crops["images"]), limit or len(crops["images"]))))
    return np.stack([dataset[i]["image"][0].numpy() for i in range(len(dataset))])


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half): the ROC AUC."""
    scores = np.concatenate([positives, negatives])
    ranks = np.argsort(np.argsort(scores, kind="stable"), kind="stable") + 1.0
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = len(positives), len(negatives)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="course dataset folder (default: $FKP_DATA)")
    parser.add_argument("--data-300w", help="300-W folder (default: $FKP_300W)")
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    parser.add_argument("--limit", type=int, help="at most this many crops per group")
    args = parser.parse_args(argv)
    try:
        runner = make_runner(args.model)
        if not runner.layout.face_score:
            raise ModelError(f"{Path(args.model).name} has no face score: train one with `python train.py --preset wild`.")
        size = runner.input_size
        groups = {
            "course test faces": network_crops(load_context_crops("test", size, args.data), size, args.limit),
            "held-out 300-W faces": network_crops(load_300w_crops("validation", size, args.data_300w), size, args.limit),
            "no face (measuring)": network_crops(load_negative_crops("measuring", size, args.data), size, args.limit),
        }
    except (DataError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    results = {name: predict(runner, crops, flip_average=True) for name, crops in groups.items()}
    print(f"face score of {Path(args.model).name} (flip-averaged logits), per crop")
    print(f"{'group':>22} {'n':>5}   score p1 / p5 / p50 / p95 / p99        flip error p50 / p95")
    for name, result in results.items():
        p = np.percentile(result.face_score, [1, 5, 50, 95, 99])
        f = np.percentile(result.flip_error, [50, 95])
        print(f"{name:>22} {len(result.face_score):5d}   {' / '.join(f'{v:.3f}' for v in p)}   {f[0]:.4f} / {f[1]:.4f}")
    negatives = results["no face (measuring)"]
    for name in ("course test faces", "held-out 300-W faces"):
        positives = results[name]
        print(f"ROC AUC, {name} against no face: face score {roc_auc(positives.face_score, negatives.face_score):.4f}, "
              f"flip error {roc_auc(-positives.flip_error, -negatives.flip_error):.4f}")
    print(f"{'threshold':>10}  faces lost: course test / 300-W   no-face crops accepted")
    for threshold in THRESHOLDS:
        lost = [np.mean(results[n].face_score < threshold) for n in ("course test faces", "held-out 300-W faces")]
        accepted = np.mean(negatives.face_score >= threshold)
        print(f"{threshold:>10.2f}  {100 * lost[0]:10.2f} % / {100 * lost[1]:5.2f} %   {100 * accepted:10.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
