"""How well the flip error tells a face from something else: the measurement behind ``FLIP_ERROR_NO_FACE``.

    python benchmarks/flip_error.py --data ../shared/data [--limit 770]

The flip error of a crop (``inference.predict_crops_with_flip_error``) is how much the keypoints predicted on the
crop and on its mirror image disagree. It is measured the two ways the tracker uses it:

- following a face: the crop cut from the face's keypoints (one pass, as ``FaceTracker`` does every frame),
  against same-sized crops of the background of the same test pictures (what the tracker sees when the face
  has gone);
- accepting a new face: the crop of the detector's box after refinement (as for every new detection),
  against the detections of a loose Haar detector (minNeighbors 1) on pictures without faces, and random boxes
  on those pictures.

Printed: percentiles of each group, then for a few thresholds the share of faces rejected and of non-faces
accepted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.tune_detector import no_face_images  # noqa: E402
from data_load import haar_box_from_keypoints, read_image, read_keypoints_csv, resolve_data_dir, split_paths  # noqa: E402
from detector_architectures import HaarFaceDetector, box_iou, match_face  # noqa: E402
from pipeline.keypoint_pipeline import FLIP_ERROR_NO_FACE, KeypointPipeline  # noqa: E402

THRESHOLDS = (0.015, 0.02, 0.025, 0.03)


def background_box(face_box: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray | None:
    """A square box of about the face's size that hardly overlaps it (None if none was found in 50 tries)."""
    height, width = shape[:2]
    for _ in range(50):
        side = face_box[2] * rng.uniform(0.5, 1.0)
        box = np.array([rng.uniform(-side / 3, width - 2 * side / 3), rng.uniform(-side / 3, height - 2 * side / 3), side, side])
        if box_iou(box, face_box) < 0.1:
            return box
    return None


def measure(pipe: KeypointPipeline, data_dir: str | None, limit: int | None, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    csv_file, root_dir = split_paths(resolve_data_dir(data_dir), "test")
    names, truth = read_keypoints_csv(csv_file)
    groups: dict[str, list[float]] = {k: [] for k in ("followed face", "background", "detected face", "false detection", "random box")}
    for name, points in list(zip(names, truth))[:limit]:
        image = read_image(root_dir / name)
        face_box = haar_box_from_keypoints(points)
        groups["followed face"] += pipe.keypoints_and_flip_errors(image, [face_box], refine=False)[1].tolist()
        background = background_box(face_box, image.shape, rng)
        if background is not None:
            groups["background"] += pipe.keypoints_and_flip_errors(image, [background], refine=False)[1].tolist()
        detections = pipe.detector.detect(image)
        best = match_face(detections, points)
        if best is not None:
            groups["detected face"] += pipe.keypoints_and_flip_errors(image, [detections[best].box], refine=True)[1].tolist()
    loose = HaarFaceDetector(min_neighbors=1, secondary_min_neighbors=1)
    for image in no_face_images(seed).values():
        found = [d.box for d in loose.detect(image)]
        if found:
            groups["false detection"] += pipe.keypoints_and_flip_errors(image, found, refine=True)[1].tolist()
        height, width = image.shape[:2]
        sides = rng.uniform(40, 0.8 * min(height, width), 30)
        boxes = [[rng.uniform(0, width - s), rng.uniform(0, height - s), s, s] for s in sides]
        groups["random box"] += pipe.keypoints_and_flip_errors(image, boxes, refine=True)[1].tolist()
    return {k: np.asarray(v) for k, v in groups.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset folder (default: $FKP_DATA, else data/)")
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--limit", type=int, help="use only the first N test pictures")
    args = parser.parse_args(argv)
    pipe = KeypointPipeline.from_pretrained(args.model, threads=1)
    groups = measure(pipe, args.data, args.limit)
    print("flip error as a fraction of the crop side: percentiles 5 / 50 / 95 / 99")
    for name, values in groups.items():
        print(f"  {name:16s} n={len(values):4d}  " + " / ".join(f"{v:.4f}" for v in np.percentile(values, [5, 50, 95, 99])))
    faces = ("followed face", "detected face")
    print(f"threshold: faces rejected ({', '.join(faces)}) | non-faces accepted (background, false detection, random box)")
    for threshold in THRESHOLDS:
        rejected = " ".join(f"{(groups[k] > threshold).mean():6.1%}" for k in faces)
        accepted = " ".join(f"{(groups[k] <= threshold).mean():6.1%}" for k in groups if k not in faces)
        mark = "  <- FLIP_ERROR_NO_FACE" if np.isclose(threshold, FLIP_ERROR_NO_FACE) else ""
        print(f"  {threshold:.3f}: {rejected} | {accepted}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
