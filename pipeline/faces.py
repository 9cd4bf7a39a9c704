"""What the pipeline's searches share: a ``Face``, a detection in a copy of the picture (``Candidate``), the geometry
of rolls and frames, and the rules that tell one face from two.

Frames: a face found in a turned, padded or resized copy of the picture carries a 2 x 3 matrix from picture pixels to
that copy's pixels (its *frame*); its box is given in the frame, and crops are cut through the frame, so the network
always sees an upright face. Angles are in degrees; a roll is positive when the face leans clockwise as seen (picture
y pointing down).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from data_load import (
    DataError,
    haar_box_from_keypoints,
    invert_matrix,
    keypoint_box,
    read_image,
    to_rgb_uint8,
    transform_points,
)
from detector_architectures import Detection, box_iou
from detector_architectures.cnn import DETECTOR_NAME as LEARNED_NAME
from detector_architectures.cnn import eye_line_angle, five_points
from detector_architectures.haar import box_intersection_over_smaller

MAX_PIXELS = 100_000_000  # refuse pictures larger than this (about 10000 x 10000): they are almost surely a mistake

# Faces whose eye line is tilted by at least this many degrees are cut upright along the eye line before each
# re-crop (turned heads, phones held sideways); straighter faces are cut as the network was trained, unturned.
ALIGN_MIN_ROLL = 20.0

# The learned detector enlarges a small picture for its detail, and then proposes faces smaller than the smallest
# face asked for (``CNNFaceDetector.asked_face``, 40 pixels by default; the cascades never look below it): 12-pixel
# "faces" on a 66 x 325 strip without faces, and a 26-pixel logo on a 75 x 227 strip (Andy_Roddick_21 of the measuring
# pictures without faces) that the keypoint network took for a face turned by 90 degrees (face score 0.994, flip
# error 0.015). Its boxes below this fraction of that size are dropped. The course faces' boxes are 38 pixels and more.
LEARNED_MIN_SIDE = 0.8

# Two final faces are one when their keypoint boxes overlap by this IoU (the same face found upright and turned), or
# when the smaller box lies this much inside the other: a face turned by 60 degrees of ``benchmarks/pipeline_speed.py``
# was also read upright, from part of it, in a copy turned less (a box 0.6 times its side, inside it).
SAME_FACE_IOU = 0.4
SAME_FACE_CONTAINED = 0.5
# Two final faces read the opposite way round (eye lines more than 90 degrees apart) are one when the smaller
# keypoint box lies this much inside the other: the upside-down astronaut, found in the copy turned by 180 degrees,
# was also read upright in the copy turned by 30, in a box a third inside hers (intersection over the smaller 0.33).
OPPOSITE_FACE_CONTAINED = 0.2

# Each search of a call (and each detection of the video tracker) checks at most this many of its detections, the
# surest first (``surest``): each costs up to 1 + ``REFINE_STEPS`` network passes, so this bounds a call's network
# work by a count. It is the learned detector's own cap (``detector_architectures.cnn``, ``max_faces``); the
# pictures measured for ``MAX_DOUBTS`` gave at most 38 detections a picture, all its searches together.
MAX_DETECTIONS = 100


@dataclass
class Face:
    """One face: its detector box (x, y, w, h), its (68, 2) keypoints in picture pixels, the detector's score (the
    cascade windows merged; for a face of the wider search's network search, the face score of its grid box), the
    flip error of its crop (small for a real face, see ``FLIP_ERROR_NO_FACE``; None without flip averaging), the
    model's face score (probability of a face; None for a model without one), the labelling convention of the
    keypoints (``models.CONVENTIONS``) and the name of the model file that predicted them."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float | None = None
    flip_error: float | None = None
    face_score: float | None = None
    convention: str | None = None
    model: str | None = None


@dataclass
class Candidate:
    """A detection in a turned or padded copy of the picture: ``detection.box`` is in the copy's pixels and
    ``frame`` (2 x 3) maps picture pixels onto the copy's."""

    detection: Detection
    frame: np.ndarray


def angle_between(a: float, b: float) -> float:
    """The signed difference a - b of two angles in degrees, in [-180, 180)."""
    return float((a - b + 180.0) % 360.0 - 180.0)


def face_roll(keypoints: np.ndarray) -> float:
    """The roll of a face in degrees, in [-180, 180): the eye line of its five points (``cnn.eye_line_angle``: from
    the centre of points 36-41 to that of 42-47, picture y pointing down), so positive when the face leans clockwise
    as seen, the same measure as the learned detector's roll."""
    return float(eye_line_angle(five_points(keypoints)))


def turning_frame(centre: Sequence[float], angle: float) -> np.ndarray:
    """2 x 3 matrix turning picture pixels by ``angle`` degrees counter-clockwise (as seen) about ``centre``."""
    return cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), 1.0)


def shifting_frame(dx: float, dy: float) -> np.ndarray:
    """2 x 3 matrix moving picture pixels by (``dx``, ``dy``): the frame of a padded copy or of a cut-out region."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def aligned_frame(keypoints: np.ndarray, min_roll: float = ALIGN_MIN_ROLL) -> tuple[np.ndarray, np.ndarray]:
    """The face box (Haar convention) and frame (2 x 3, picture pixels -> frame pixels) to re-crop a face from its
    keypoints: upright along its eye line when its roll is at least ``min_roll`` degrees, else the picture's own."""
    roll = face_roll(keypoints)
    frame = turning_frame(keypoints.mean(axis=0), roll) if abs(roll) >= min_roll else np.eye(2, 3)
    return haar_box_from_keypoints(transform_points(keypoints, frame)), frame


def as_rgb_image(image: np.ndarray | str | os.PathLike) -> np.ndarray:
    """An RGB uint8 picture from an array (gray, RGB, RGBA, 16-bit) or a file path."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise DataError(f"Expected a picture as an H x W (x 3 or 4) array, got shape {image.shape}: pass an image.")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise DataError(f"The picture is {image.shape[1]} x {image.shape[0]} pixels, too large: resize it below 10000 x 10000.")
    return to_rgb_uint8(image)


def detection_roll(detection: Detection) -> float:
    """The roll in degrees (``face_roll``'s convention) the detector gives a face (the learned detector: from its roll
    class and five points, ``cnn.roll_of``), 0 where it gives none (the cascades search upright)."""
    return 0.0 if detection.roll is None else float(detection.roll)


def picture_box(candidate: Candidate, keypoints: np.ndarray) -> np.ndarray:
    """A face's box (x, y, w, h) in picture pixels: the cascades' own box when they searched the picture unturned
    (possibly padded, resized or cut to a region), else the Haar-convention box of the face's keypoints (the learned
    detector's boxes are rougher than the keypoints it leads to)."""
    frame = candidate.frame
    unturned = abs(frame[0, 1]) < 1e-9 and abs(frame[1, 0]) < 1e-9 and frame[0, 0] > 0 and frame[1, 1] > 0
    if unturned and candidate.detection.cascade != LEARNED_NAME:
        return unframed_box(candidate.detection.box, frame)
    return haar_box_from_keypoints(keypoints).astype(np.float64)


def unframed_box(box: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """A box (x, y, w, h) of an unturned frame (a shifted, resized copy: ``frame`` 2 x 3 without rotation, picture
    pixels to the copy's) in picture pixels. Box corners are pixel edges, half a pixel from the centres."""
    x, y, w, h = (float(v) for v in box)
    left, top = transform_points(np.array([[x - 0.5, y - 0.5]]), invert_matrix(frame))[0] + 0.5
    return np.array([left, top, w / frame[0, 0], h / frame[1, 1]], np.float64)


def surest(detections: Sequence[Detection], count: int | None = None) -> list[Detection]:
    """The ``count`` (None: ``MAX_DETECTIONS``) highest-scored ``detections``, surest first (ties in the given order)."""
    return sorted(detections, key=lambda d: -d.score)[: MAX_DETECTIONS if count is None else count]


def outside_faces(boxes: Sequence[np.ndarray], faces: Sequence[Face]) -> list[np.ndarray]:
    """The doubtful ``boxes`` (x, y, w, h) that do not lie mostly inside a face found (``SAME_FACE_CONTAINED`` of the
    box inside the face's keypoint box): those are a part of that face read as a face, whose thorough search would
    find the face again. Measured: a close-up's second fast pass fires on a part of its face (the 4288 x 2848
    close-up of ``benchmarks/pipeline_speed.py``: 411 px inside its 1115-px face), and the thorough search around it
    cost 45 of its 105 ms."""
    found = [keypoint_box(face.keypoints) for face in faces]

    def inside(box: np.ndarray, face: np.ndarray) -> bool:
        return box[2] * box[3] <= face[2] * face[3] and box_intersection_over_smaller(box, face) >= SAME_FACE_CONTAINED

    return [box for box in boxes if not any(inside(box, face) for face in found)]


def face_quality(face: Face) -> tuple[float, float]:
    """A sort key, best face first: the highest face score (when the model gives one), then the lowest flip error."""
    return (-(face.face_score or 0.0), face.flip_error if face.flip_error is not None else 0.0)


def distinct_faces(faces: Sequence[Face]) -> list[Face]:
    """The faces in order, without later ones whose keypoint box overlaps an earlier one's by ``SAME_FACE_IOU`` or
    lies mostly inside it (``SAME_FACE_CONTAINED`` of the smaller box), or, read the opposite way round, lies
    ``OPPOSITE_FACE_CONTAINED`` inside it."""
    kept: list[Face] = []
    for face in faces:
        box, roll = keypoint_box(face.keypoints), face_roll(face.keypoints)
        if all(not same_face(box, roll, keypoint_box(k.keypoints), face_roll(k.keypoints)) for k in kept):
            kept.append(face)
    return kept


def same_face(box: np.ndarray, roll: float, other: np.ndarray, other_roll: float) -> bool:
    """Whether two faces' keypoint boxes (x, y, w, h) and rolls (degrees, ``face_roll``) are one face (see
    ``distinct_faces``)."""
    inside = box_intersection_over_smaller(box, other)
    if abs(angle_between(roll, other_roll)) > 90.0:
        return inside >= OPPOSITE_FACE_CONTAINED
    return box_iou(box, other) >= SAME_FACE_IOU or inside >= SAME_FACE_CONTAINED
