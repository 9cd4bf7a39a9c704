"""Faces turned in the picture's plane: how many the pipeline finds at each roll, and how many it reads the right way.

    python benchmarks/turned_faces.py [--every 15] [--data-300w ../shared/300w --limit 30] [--detector cnn|haar]

Each picture is turned about its centre by every ``--every`` degrees from -180 (its border replicated, as a photo
taken with the camera tilted), and handed to ``KeypointPipeline.detect`` with the default settings: the astronaut
(``skimage.data.astronaut()``, public domain; its 68 keypoints are the pipeline's own on the upright picture), and
with ``--data-300w`` the first ``--limit`` held-out 300-W faces (``data_300w.Faces300WDataset``, split validation;
their labels). A face is found when one of the pipeline's faces is it (``detector_architectures.face_found`` on the
turned keypoints), and read the right way when the nearest one's NME_io is at most 0.10 (a face read upside down
is found, with an NME_io near 1). Printed: per roll, the faces found and read the right way; then the totals and
the rolls where a face was missed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import learned_detector  # noqa: E402
from data_load import DataError, transform_points  # noqa: E402
from detector_architectures import DEFAULT_DETECTOR, DETECTORS, face_found  # noqa: E402
from pipeline.data_300w import Faces300WDataset  # noqa: E402
from pipeline.evaluation import nme_interocular  # noqa: E402
from pipeline.keypoint_pipeline import KeypointPipeline  # noqa: E402

READ_RIGHT_NME = 0.10  # the failure threshold of FR@0.10


def turned(picture: np.ndarray, keypoints: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The picture turned by ``angle`` degrees (counter-clockwise as seen) about its centre, its border replicated,
    and its keypoints (K, 2) moved with it."""
    moved, matrix = learned_detector.turned(picture, angle)
    return moved, transform_points(keypoints, matrix)


def judged(pipe: KeypointPipeline, picture: np.ndarray, truth: np.ndarray) -> tuple[bool, bool]:
    """(found, read the right way) for the face with keypoints ``truth`` in ``picture``."""
    faces = pipe.detect(picture)
    if not face_found([face.box for face in faces], truth):
        return False, False
    error = min(float(nme_interocular(face.keypoints[None], truth[None])[0]) for face in faces)
    return True, error <= READ_RIGHT_NME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=15.0, help="degrees between rolls (default 15)")
    parser.add_argument("--data-300w", help="300-W folder(s): also turn the first --limit held-out faces (default: astronaut only)")
    parser.add_argument("--limit", type=int, default=30, help="held-out 300-W faces turned (default 30)")
    parser.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR)
    args = parser.parse_args(argv)
    if not 0 < args.every <= 360:
        parser.error("--every must be between 0 and 360 degrees")
    cv2.setNumThreads(1)
    pipe = KeypointPipeline.from_pretrained(detector=args.detector, threads=1)
    from skimage import data

    astronaut = data.astronaut()
    upright = pipe.detect(astronaut)
    if len(upright) != 1:
        print(f"error: the upright astronaut gave {len(upright)} faces, not 1", file=sys.stderr)
        return 1
    faces = [("astronaut", astronaut, upright[0].keypoints)]
    if args.data_300w:
        try:
            wild = Faces300WDataset(args.data_300w, split="validation")
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        samples = (wild[i] for i in range(min(args.limit, len(wild))))
        faces += [(sample["name"], sample["image"], sample["keypoints"]) for sample in samples]
    rolls = np.arange(-180.0, 180.0, args.every)
    print(f"{args.detector} detector first; {len(faces)} face(s) turned every {args.every:g} degrees; found / read the right way (NME_io <= {READ_RIGHT_NME})")
    found_total = right_total = 0
    missed: dict[str, list[float]] = {}
    for roll in rolls:
        found = right = 0
        for name, picture, keypoints in faces:
            is_found, is_right = judged(pipe, *turned(picture, keypoints, float(roll)))
            found, right = found + is_found, right + is_right
            if not is_found:
                missed.setdefault(name, []).append(float(roll))
        found_total, right_total = found_total + found, right_total + right
        print(f"{roll:7.1f} deg: {found:4d} / {len(faces)} found, {right:4d} read the right way", flush=True)
    count = len(rolls) * len(faces)
    print(f"all: {found_total} / {count} found, {right_total} read the right way")
    for name, angles in missed.items():
        print(f"missed: {name} at {', '.join(f'{a:g}' for a in angles)} degrees")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
