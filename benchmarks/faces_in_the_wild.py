"""How many annotated faces in the wild the pipeline finds, and how many false faces it puts on pictures without faces.

    FKP_300W=../shared/300w python benchmarks/faces_in_the_wild.py --data ../shared/data [--split validation]
        [--model saved_models/keypoints_fast.pt] [--limit N] [--no-faces] [--detector cnn|haar] [--enlarge 10]

Faces: every annotated face of the 300-W folders (``data_300w.Faces300WDataset``; ``--split validation`` for the
held-out photos), each run through ``KeypointPipeline.detect`` with the default settings; a face is found when
one of the pipeline's faces is it (``detector_architectures.face_found``: the same rule as ``evaluate.py --mode
pipeline``). Reported per folder, with the misses' names. ``--no-faces`` also counts the faces the pipeline
returns on the measuring part of ``no_faces.no_face_pictures`` (false faces per picture). ``--enlarge F`` hands
each 300-W picture in enlarged F times (bilinear, its keypoints moved with it): the same faces at the resolution of
a phone photo's close-up, whose crops the pipeline cuts from its copies of the picture. The NME_io of the faces
found (each against the pipeline face nearest its keypoints) is printed too.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.data_300w import Faces300WDataset  # noqa: E402
from data_load import DataError  # noqa: E402
from detector_architectures import face_found  # noqa: E402
from pipeline.evaluation import nme_interocular  # noqa: E402
from pipeline.no_faces import no_face_pictures  # noqa: E402
from detector_architectures import DEFAULT_DETECTOR, DETECTORS  # noqa: E402
from pipeline.keypoint_pipeline import KeypointPipeline  # noqa: E402


def enlarged(image: np.ndarray, keypoints: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """A picture enlarged ``factor`` times (bilinear) and its keypoints moved with it (pixel centres kept)."""
    if factor == 1:
        return image, keypoints
    bigger = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    return bigger, (keypoints.astype(np.float64) + 0.5) * factor - 0.5


def count_found(
    pipe: KeypointPipeline, dataset: Faces300WDataset, limit: int | None, factor: float = 1.0
) -> tuple[Counter, Counter, list[str], list[float]]:
    """(faces per folder, faces found per folder, names of the missed faces, NME_io of each face found)."""
    total, found, missed, errors = Counter(), Counter(), [], []
    for i in range(len(dataset) if limit is None else min(limit, len(dataset))):
        sample = dataset[i]
        picture, truth = enlarged(sample["image"], sample["keypoints"], factor)
        folder = sample["name"].split("/")[0]
        total[folder] += 1
        faces = pipe.detect(picture)
        if face_found([f.box for f in faces], truth):
            found[folder] += 1
            errors.append(min(float(nme_interocular(f.keypoints[None], truth[None])[0]) for f in faces))
        else:
            missed.append(sample["name"])
    return total, found, missed, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-300w", help="300-W folder(s) (default: $FKP_300W)")
    parser.add_argument("--data", help="course dataset folder, for the background pictures (default: $FKP_DATA or data/)")
    parser.add_argument("--split", default="all", choices=["all", "training", "validation"])
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--limit", type=int, help="only the first N faces")
    parser.add_argument("--no-faces", action="store_true", help="also count false faces on pictures without faces")
    parser.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR, help=f"face detector (default: {DEFAULT_DETECTOR})")
    parser.add_argument("--enlarge", type=float, default=1.0, help="enlarge each 300-W picture this many times first")
    args = parser.parse_args(argv)
    if not args.enlarge > 0:
        parser.error("--enlarge must be a positive factor, e.g. 10")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        pipe = KeypointPipeline.from_pretrained(args.model, detector=args.detector, threads=1)
        dataset = Faces300WDataset(args.data_300w, split=args.split)
        tic = time.perf_counter()
        total, found, missed, errors = count_found(pipe, dataset, args.limit, args.enlarge)
        seconds = time.perf_counter() - tic
        for folder in sorted(total):
            print(f"{folder:<16} {found[folder]:>5} / {total[folder]:<5} found  {100 * found[folder] / total[folder]:5.1f} %")
        n = sum(total.values())
        print(f"{'all (' + args.split + ')':<16} {sum(found.values()):>5} / {n:<5} found  {100 * sum(found.values()) / n:5.1f} %"
              f"  ({1000 * seconds / n:.0f} ms per picture)")
        print("missed:", " ".join(missed[:40]) + (" ..." if len(missed) > 40 else ""))
        if errors:
            print(f"NME_io of the faces found: {np.mean(errors):.4f} (median {np.median(errors):.4f}), "
                  f"failure rate at 0.10 {100 * np.mean(np.array(errors) > 0.10):.2f} %")
        if args.no_faces:
            pictures = no_face_pictures("measuring", args.data)
            false = {name: len(pipe.detect(picture)) for name, picture in pictures}
            print(f"false faces on {len(pictures)} pictures without faces: {sum(false.values())} "
                  f"({sum(false.values()) / len(pictures):.3f} per picture): "
                  + ", ".join(f"{name} {k}" for name, k in false.items() if k))
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
