"""How the default path cuts a learned detection: upright along the roll the detector gives it, and again where
that crop fails the checks or is not sure (larger and higher, then along other rolls).

``learned_candidate`` gives a detection's first crop; ``retried_detections`` the detections to cut in each round of
its retries, which ``KeypointPipeline`` runs for at most ``LEARNED_RETRIES`` detections a picture. Boxes are in the
Haar convention (x, y, w, h, picture pixels); rolls in degrees, ``faces.face_roll``'s convention.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from data_load import compose_matrices
from detector_architectures import Detection
from detector_architectures.cnn import ROLL_BINS
from pipeline.faces import ALIGN_MIN_ROLL, Candidate, angle_between, detection_roll, turning_frame

# The learned detections whose crop fails the checks or is not sure that are cut again (``retried_detections``), the
# surest first and at most ``LEARNED_RETRIES`` of them, each in rounds that stop once it gives a sure face:
# - first its box ``REFRAMED_SIDE`` times larger and raised by ``REFRAMED_RISE`` times its side along its roll: the
#   detector's box sometimes sits low and tight on a face (the forehead cut off), and the keypoint crop then holds
#   no face for the network. Measured on the 303 held-out 300-W faces with the learned detector alone (no cascades,
#   ``python benchmarks/faces_in_the_wild.py`` with the cascades' search switched off, a scratch script): the boxes
#   of helen_trainset/2289530648_1 and lfpw_trainset/image_0334 gave face scores 0.07 and 0.08; 1.15 times larger
#   and raised by 0.1 of their side, 0.999 and 1.000 (raised alone, or larger alone, rescued one of the two);
# - then along the rolls of the detector's roll classes (45 degrees) either side of its own, then two classes away,
#   then the opposite roll (``RETRY_OFFSETS``): the roll is a class, often one off, and an upright face is sometimes
#   read upside down (helen_trainset/2058725932_1 at -180 degrees: face score 0.9995 when cut upright). Without them
#   the learned detector first, with no wider search, found the astronaut turned every 15 degrees 15 times of 24;
#   with one class either side 23, with two classes also the gray astronaut turned by 90 degrees (read upright: the
#   crop one class away gave keypoints 44 degrees from it, beyond ``ROLL_AGREEMENT``).
# With the learned detector alone (its fifth and sixth stages) the held-out 300-W faces found went from 297 to 300 of
# 303, with the same 1 false face on the 288 pictures without faces. The eighth stage finds the three faces above with
# their first crop or not at all; on the held-out faces, upright and turned by 90, 180 and 270 degrees, the retries
# bring back 69 faces that the first crops miss (lfpw_trainset/image_0486 upright, the rest turned). A detection
# whose own crop passed the checks without being sure is cut along the neighbouring classes only: its box and roll
# are about right, and the two new rounds for it took the 3024 x 3024 close-up of ``benchmarks/pipeline_speed.py``
# (a sure face and two unsure detections) from 91 to 108 ms; for the failed ones only, 95 ms. ``LEARNED_RETRIES`` is
# a bound, not a tuned value: at most 6 more crops each, 48 a picture, most of them stopped after their first pass by
# their face score (``EARLY_FACE_SCORE``).
LEARNED_RETRIES = 8
REFRAMED_SIDE = 1.15
REFRAMED_RISE = 0.1
RETRY_OFFSETS = (360.0 / ROLL_BINS, 720.0 / ROLL_BINS, 180.0)
NEIGHBOUR_OFFSETS = RETRY_OFFSETS[:2]  # the rounds of a detection whose own crop passed the checks, unsure


def retry_rolls(roll: float, offset: float, min_roll: float = ALIGN_MIN_ROLL) -> list[float]:
    """The rolls in degrees (-180 to 180) ``offset`` degrees either side of ``roll`` that a learned detection is
    cut along again when its own roll failed; one below ``min_roll`` is cut upright (``learned_candidate``), as 0; the opposite
    roll (``offset`` 180) is one roll."""
    wrapped = [angle_between(roll + side * offset, 0.0) for side in (-1, 1)]
    return list(dict.fromkeys(0.0 if abs(angle) < min_roll else angle for angle in wrapped))


def retried_detections(detection: Detection, attempt: int, failed: bool = True, min_roll: float = ALIGN_MIN_ROLL) -> list[Detection]:
    """The learned ``detection`` cut again in round ``attempt`` of its retries (``LEARNED_RETRIES``): round 0 its box
    ``REFRAMED_SIDE`` times larger and raised by ``REFRAMED_RISE`` times its side along the roll it is cut along
    (``reframed_box``, ``learned_candidate``); round k its roll changed by ``RETRY_OFFSETS[k - 1]`` degrees either way
    (``retry_rolls``). A detection whose own crop passed the checks without being sure (not ``failed``): its box is
    about right and its roll is not opposite, so only the rolls of the classes beside its own are cut
    (``NEIGHBOUR_OFFSETS``)."""
    roll = detection_roll(detection)
    if not failed and (attempt == 0 or RETRY_OFFSETS[attempt - 1] not in NEIGHBOUR_OFFSETS):
        return []
    if attempt == 0:
        return [replace(detection, box=reframed_box(detection.box, roll if abs(roll) >= min_roll else 0.0))]
    return [replace(detection, roll=turned) for turned in retry_rolls(roll, RETRY_OFFSETS[attempt - 1], min_roll)]


def reframed_box(box: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """A square box (x, y, w, h) ``REFRAMED_SIDE`` times the side of ``box``, about its centre moved up by
    ``REFRAMED_RISE`` times its side along a face rolled by ``roll`` degrees (``face_roll``'s convention)."""
    x, y, w, h = (float(v) for v in box)
    side, rise, angle = REFRAMED_SIDE * w, REFRAMED_RISE * w, np.radians(roll)
    cx, cy = x + w / 2 + rise * np.sin(angle), y + h / 2 - rise * np.cos(angle)
    return np.array([cx - side / 2, cy - side / 2, side, side], np.float32)


def learned_candidate(detection: Detection, frame: np.ndarray, min_roll: float = ALIGN_MIN_ROLL) -> Candidate:
    """A learned detection in a copy of the picture (``frame``: picture pixels to the copy's) as a ``Candidate``
    whose crop is cut upright along its roll (``detection_roll``) when that is at least ``min_roll``
    degrees: the frame turns the copy about the box's centre, which leaves the box (its upright square) in place."""
    roll = detection_roll(detection)
    if abs(roll) < min_roll:
        return Candidate(detection, frame)
    x, y, w, h = detection.box
    return Candidate(detection, compose_matrices(turning_frame((x + w / 2, y + h / 2), roll), frame))
