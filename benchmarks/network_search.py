"""Choosing the face-score threshold of the wider search's network search, on the training parts only.

    FKP_300W=../shared/300w python benchmarks/network_search.py --data ../shared/data [--backgrounds 600] [--every 6]

Runs the network search alone (``HaarSearch.network_faces``: the face score on ``pipeline.haar_search.grid_boxes``, the
best boxes refined and checked) with every threshold switched off, on the training part of the pictures without
faces (``no_faces``: scikit-image pictures and up to ``--backgrounds`` course backgrounds) and on every
``--every``-th 300-W training face. For each threshold it prints the false faces kept, under the wider search's
flip check and under the pipeline's own, and the share of faces found (``face_found``). The measuring part and
the held-out 300-W photos stay out of the choice (``benchmarks/faces_in_the_wild.py`` counts those).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline import haar_search, keypoint_pipeline  # noqa: E402
from pipeline.inference import GrayPyramid  # noqa: E402
from pipeline.data_300w import Faces300WDataset  # noqa: E402
from data_load import DataError  # noqa: E402
from detector_architectures import face_found  # noqa: E402
from pipeline.no_faces import no_face_pictures  # noqa: E402

THRESHOLDS = (0.5, 0.9, 0.95, 0.97, 0.98, 0.99)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="course dataset folder, for the background pictures (default: $FKP_DATA or data/)")
    parser.add_argument("--data-300w", help="300-W folder(s) (default: $FKP_300W)")
    parser.add_argument("--backgrounds", type=int, default=600, help="course backgrounds among the pictures without faces")
    parser.add_argument("--every", type=int, default=6, help="use every N-th 300-W training face")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    pipe = keypoint_pipeline.KeypointPipeline.from_pretrained(threads=1, max_flip_error=None, min_face_score=None)
    try:
        empty = no_face_pictures("training", args.data, args.backgrounds)
        wild = Faces300WDataset(args.data_300w, split="training")
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    false = []  # (flip error, face score) of every face kept on a picture without faces
    for _, picture in empty:
        false += [(f.flip_error, f.face_score) for f in pipe.cascades.network_faces(GrayPyramid(cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)), None, 0.0)]
    best = []  # the highest face score of a face found on the labelled face, 0 when none was
    for i in range(0, len(wild), args.every):
        sample = wild[i]
        faces = pipe.cascades.network_faces(GrayPyramid(cv2.cvtColor(sample["image"], cv2.COLOR_RGB2GRAY)), None, 0.0)
        best.append(max([f.face_score for f in faces if face_found([f.box], sample["keypoints"])], default=0.0))
    errors, scores = np.array(false).reshape(-1, 2).T
    best_scores = np.array(best)
    strict, own = haar_search.WIDER_MAX_FLIP_ERROR, keypoint_pipeline.FLIP_ERROR_NO_FACE
    print(f"{len(empty)} training pictures without faces, {len(best_scores)} 300-W training faces")
    print(f"{'threshold':>9}  {f'false faces (flip <= {strict})':>28}  {f'false faces (flip <= {own})':>28}  {'faces found':>11}")
    for threshold in THRESHOLDS:
        kept = scores >= threshold
        print(f"{threshold:>9}  {int((kept & (errors <= strict)).sum()):>28}  {int((kept & (errors <= own)).sum()):>28}  "
              f"{100 * (best_scores >= threshold).mean():>10.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
