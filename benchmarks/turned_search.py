"""Choosing how strong a detection of the wider search's turned passes must be, on training pictures only.

    python benchmarks/turned_search.py --data ../shared/data [--backgrounds 600]

For each picture of the training part of the pictures without faces (``no_faces``) and each turn of
``pipeline.haar_search.WIDER_ROLLS``, every detection of the turned copy (the wider search's detector and equalisation) goes
through the same checks as in ``HaarSearch.wider_faces`` (the face checks, the wider search's flip check,
the eye line along the turn) but without the minimum number of windows; the faces that pass are false faces. It
prints how many remain at each minimum (``TURNED_MIN_SCORE`` is the one the pipeline uses).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from data_load import DataError  # noqa: E402
from pipeline.no_faces import no_face_pictures  # noqa: E402
from pipeline.faces import Candidate  # noqa: E402
from pipeline.haar_search import TURNED_MIN_SCORE, turned_copy  # noqa: E402
from pipeline.inference import GrayPyramid  # noqa: E402
from pipeline.keypoint_pipeline import KeypointPipeline  # noqa: E402

MINIMUMS = (4, 6, 8, 10, 12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="course dataset folder, for the background pictures (default: $FKP_DATA or data/)")
    parser.add_argument("--backgrounds", type=int, default=600, help="course backgrounds among the pictures without faces")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    pipe = KeypointPipeline.from_pretrained(threads=1)
    try:
        empty = no_face_pictures("training", args.data, args.backgrounds)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    scores = []  # the number of windows of every false face of the turned passes
    for _, picture in empty:
        gray = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
        searched = pipe.cascades.searched(gray)
        for angle in pipe.wider.rolls:
            turned, frame = turned_copy(searched, angle)
            candidates = [Candidate(d, frame) for d in pipe.cascades.thorough_detector.detect(turned)]
            scores += [face.score for face in pipe.checked_faces(GrayPyramid(gray), candidates, pipe.wider.max_flip_error, search_roll=angle)]
    scores = np.array(scores)
    print(f"{len(empty)} training pictures without faces, turns {pipe.wider.rolls}; the pipeline uses {TURNED_MIN_SCORE}")
    for minimum in MINIMUMS:
        print(f"at least {minimum:>2} windows: {int((scores >= minimum).sum())} false faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
