"""How the course's labelling of the 68 points differs from 300-W's, measured through a model's predictions.

    python benchmarks/conventions.py --data-300w ../shared/300w [--model saved_models/keypoints_fast.pt]

No face carries both labellings, so the difference is measured as the mean signed error of a model's course
convention on the 300-W faces (framed from their keypoints' Haar-convention box, flip averaging on), per point, in
inter-ocular distances and in the face's own frame (x along the line from the outer corner of the image-left eye
to that of the image-right eye, y perpendicular, downwards). With a model trained on the course data alone this is
the convention difference plus the model's own bias on photos in the wild.

It then measures the simplest way to turn course keypoints into 300-W ones, a per-point correction: the mean
offsets of the 300-W training faces added to the predictions for the held-out 300-W faces (in the frame of the
predicted eye corners), and prints NME_io before and after. With ``--model`` a model that also predicts the 300-W
convention, its own NME_io is printed beside them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from pipeline.data_300w import Faces300WDataset  # noqa: E402
from data_load import LEFT_EYE_OUTER, RIGHT_EYE_OUTER, DataError, haar_box_from_keypoints, read_image  # noqa: E402
from pipeline.evaluation import REGIONS, nme_interocular  # noqa: E402
from pipeline.inference import SHIPPED_MODEL, predict_in_boxes  # noqa: E402
from models import ModelError, make_runner  # noqa: E402


def face_frames(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit x axes (N, 2) along the outer eye corners and inter-ocular distances (N,) of shapes (N, 68, 2)."""
    axis = keypoints[:, RIGHT_EYE_OUTER] - keypoints[:, LEFT_EYE_OUTER]
    distance = np.linalg.norm(axis, axis=-1)
    return axis / distance[:, None], distance


def to_face_frame(offsets: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Picture-pixel offsets (N, K, 2) in inter-ocular units of each face's frame (``face_frames`` of keypoints)."""
    x_axis, distance = face_frames(keypoints)
    y_axis = np.stack([-x_axis[:, 1], x_axis[:, 0]], axis=-1)
    return np.stack([(offsets * x_axis[:, None]).sum(-1), (offsets * y_axis[:, None]).sum(-1)], axis=-1) / distance[:, None, None]


def from_face_frame(offsets: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """The inverse of ``to_face_frame``: (K, 2) or (N, K, 2) face-frame offsets as picture pixels (N, K, 2)."""
    x_axis, distance = face_frames(keypoints)
    y_axis = np.stack([-x_axis[:, 1], x_axis[:, 0]], axis=-1)
    offsets = np.broadcast_to(offsets, keypoints.shape)
    return (offsets[..., :1] * x_axis[:, None] + offsets[..., 1:] * y_axis[:, None]) * distance[:, None, None]


def predictions(runner, split: str, folders, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, truth) keypoints in picture pixels of the 300-W faces of a split, flip averaging on."""
    dataset = Faces300WDataset(folders, split)
    truth = dataset.keypoints
    images = [read_image(face.picture) for face in dataset.faces]
    return predict_in_boxes(runner, images, [haar_box_from_keypoints(t) for t in truth], True, convention), truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-300w", help="300-W folder (default: $FKP_300W)")
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    args = parser.parse_args(argv)
    try:
        runner = make_runner(args.model)
        train_pred, train_truth = predictions(runner, "training", args.data_300w, "course")
        val_pred, val_truth = predictions(runner, "validation", args.data_300w, "course")
    except (DataError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    signed = to_face_frame(train_pred - train_truth, train_truth)
    mean, spread = signed.mean(axis=0), signed.std(axis=0) / np.sqrt(len(signed))
    print(f"course convention of {Path(args.model).name} on {len(signed)} 300-W training faces: mean signed error per point")
    print("(inter-ocular units, face frame: +x towards the image-right eye, +y down; +- one standard error)")
    for region, points in REGIONS.items():
        cells = [f"{k:2d}: {mean[k, 0]:+.3f} {mean[k, 1]:+.3f}" for k in points]
        print(f"  {region:>5}  " + "   ".join(cells))
    print(f"  largest standard error {spread.max():.4f}")
    for region, points in REGIONS.items():
        print(f"  {region:>5}: mean |offset| {np.linalg.norm(mean[list(points)], axis=-1).mean():.4f}")
    corrected = val_pred - from_face_frame(mean, val_pred)
    before, after = nme_interocular(val_pred, val_truth).mean(), nme_interocular(corrected, val_truth).mean()
    print(f"held-out 300-W faces ({len(val_truth)}): NME_io course convention {before:.4f}; "
          f"with the per-point correction {after:.4f}")
    if "300w" in runner.layout.conventions:
        own_pred, _ = predictions(runner, "validation", args.data_300w, "300w")
        print(f"held-out 300-W faces: NME_io of the model's own 300-W convention {nme_interocular(own_pred, val_truth).mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
