"""The complete pipeline: any picture -> every face -> 68 keypoints per face.

    pipe = KeypointPipeline.from_pretrained()
    for face in pipe.detect("photo.png"):
        print(face.box, face.keypoints.shape, face.score)

By default the path is four steps:

1. **detect**: our learned detector (``detector_architectures.cnn``) gives each face a box, five points and a roll;
2. **crop**: each box becomes the square, padded crop the model was trained on (``data_load.crop_square_from_box``),
   cut upright along the face's roll (``learned_candidate``; a roll that proves wrong is tried one and two classes
   either side, ``retry_rolls``);
3. **keypoints**: all faces of a picture go through the network as one batch, with their mirror images, and each face
   is re-cropped from its keypoints (upright along its eye line) until its crop stops moving; the keypoints are
   mapped back to the picture's pixels;
4. **checks**: flip error, face score and, for a face cut along a roll, that its keypoints lie along it.

Where the learned detector leaves doubt, the Haar cascades search upright around its doubtful faces or, with no sure
face, over the whole picture. ``--detector haar`` (``from_pretrained(detector="haar")``) puts the cascades first,
and where they find no sure face a wider search (``WiderSearch``) looks at padded, equalised and turned copies of
the picture.

Cost: every search reads a copy of the picture at the resolution its face sizes need (``GrayPyramid``): big faces
first on a small copy, smaller ones only down to a quarter of the biggest face found (``SIZE_RATIO``) and to 2.5 % of
the picture's shorter side (``detector_architectures.DEFAULT_PARAMS["min_face_fraction"]``), searches around a doubtful
detection for faces of about its size, the wider search on a copy of at most ``WIDER_MAX_SIDE`` pixels; the crops and
the second stage's patches of a big face are cut from the finest of those copies that is still a few times finer
than they are (``GrayPyramid.source``), not from the photo. A call's
work is bounded by counts, never by the clock, so a picture gives the same faces on an idle and on a busy machine:
a fixed list of searches, each on a copy of bounded size and checking at most ``MAX_DETECTIONS`` detections, the
thorough search around at most ``MAX_DOUBTS`` doubtful detections a pass, the network's search on at most
``NETWORK_SEARCH_MAX_POSITIONS`` box positions along a side, the crops along other rolls for at most
``LEARNED_RETRIES`` learned detections, and at most ``REFINE_STEPS`` re-crops a face.

Frames: a face found in a turned or padded copy carries a 2 x 3 matrix from picture pixels to that copy's pixels
(its *frame*); its box is given in the frame, and crops are cut through the frame, so the network always sees an
upright face.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from data_load import (
    DataError,
    compose_matrices,
    haar_box_from_keypoints,
    invert_matrix,
    keypoint_box,
    read_image,
    to_rgb_uint8,
    transform_points,
)
from detector_architectures import DEFAULT_DETECTOR, THOROUGH_PARAMS, Detection, HaarFaceDetector, box_iou, make_detector
from detector_architectures.cnn import DETECTOR_NAME as LEARNED_NAME
from detector_architectures.cnn import ROLL_BINS, CNNFaceDetector, eye_line_angle, five_points
from detector_architectures.haar import box_intersection_over_smaller, suppress
from pipeline.inference import (
    SHIPPED_MODEL,
    GrayPyramid,
    as_runner,
    crop_matrices,
    crop_shift,
    cut_crops,
    face_crops,
    layout_of,
    load_runner,
    predict,
)
from pipeline.second_stage import Refiner, companion_refiner
from resources.onnx_model import ModelError

MAX_PIXELS = 100_000_000  # refuse pictures larger than this (about 10000 x 10000): they are almost surely a mistake

# A crop whose flip error (``inference.predict``: how much the keypoints predicted on the crop
# and on its mirror disagree, as a fraction of the crop side) exceeds this holds no face. Measured by
# ``benchmarks/flip_error.py`` with the shipped model: on the 770 test faces the flip error is at most 0.018 in
# 99 % of them (median 0.008), and none exceeds 0.025, whether cropped from the keypoints or from the detector
# after re-cropping; 0.025 rejects two thirds of background crops of the same pictures and of random boxes on
# pictures without faces, and half of the false detections of a loose detector there (0.020 would reject 0.5 %
# of faces).
FLIP_ERROR_NO_FACE = 0.025

# How many times at most ``refine`` re-crops a face from its keypoints and predicts again, and when it stops sooner.
# The network, trained on crops framed from true keypoints, under-reacts to a badly framed crop, so each re-crop
# moves it closer; a face stops once its next crop would lie within ``REFINE_TOLERANCE`` of the crop's side of its
# last one (``inference.crop_shift``: the network would see nearly the same crop). Measured by
# ``python benchmarks/keypoint_passes.py`` on the detector's boxes of the course test faces / held-out 300-W faces
# (flip averaging on, NME_io, network passes per face): 0 re-crops 0.0607 / 0.0587; 1, 2, 3 re-crops 0.0499 / 0.0492,
# 0.0464 / 0.0459, 0.0450 / 0.0439 (4 passes); 3 with a tolerance of 0.01 0.0451 / 0.0440 (3.2 passes), 0.02 0.0455 /
# 0.0445 (2.7), 0.04 0.0489 / 0.0468 (2.0); 5 with 0.01 0.0439 / 0.0423 (3.4 passes), 6 with 0.01 0.0437 / 0.0423
# (3.5). Five at most, stopping at 0.01: more accurate than three every time, in fewer passes.
REFINE_STEPS = 5

# A face stops being re-cropped once its next crop would lie within this fraction of the crop's side of its last one
# (``KeypointPipeline.refine_tolerance``, ``inference.crop_shift``; 0: always ``REFINE_STEPS`` re-crops).
REFINE_TOLERANCE = 0.01

# A crop whose face score (the model's probability that it holds a face, ``inference.predict``) is below this holds
# no face; models without a face score are judged by the flip error alone, models with one by both. Measured with
# an interim model of the course + 300-W training (one thread, crops from the true keypoints): face scores of
# 0.816 or more on 193 course test faces (every 4th) and 0.818 or more on the 303 held-out 300-W faces; the false
# faces of the cases (the space-shuttle model of the astronaut at 260 x 260, the upside-down astronaut)
# 0.34-0.42, and the detections of a loose detector (minNeighbors 2) on the 288 measuring pictures without
# faces 0.32 in the median, up to 0.78, none of those above 0.5 with a flip error within FLIP_ERROR_NO_FACE.
# 0.5, the decision boundary of the probability, keeps every face; measure again for each new model.
MIN_FACE_SCORE = 0.5

# The wider search looks at many more windows than the upright one (padded, equalised, turned copies), so more
# false detections reach the checks; there a face must pass a stricter flip-error check. Measured by
# ``benchmarks/flip_error.py`` with the shipped model: 99 % of the 770 test faces have a flip error of at most 0.018.
# The same check, with ``LEARNED_MIN_FACE_SCORE``, keeps a doubtful face of the learned detector that the cascades do
# not find (``KeypointPipeline.learned_confirmed``): two held-out 300-W faces (a head bent down, a face near profile:
# face scores 0.999 and 0.9996, flip errors 0.0144 and 0.0145) are kept; a background read as a face (face score 0.53,
# flip error 0.024; ``benchmarks/faces_in_the_wild.py``) and a patch on the astronaut's suit at 256 x 256 (0.87,
# 0.014) are not.
WIDER_MAX_FLIP_ERROR = 0.018

# The detector of the wider search's upright pass: the pipeline's own with the thorough settings
# (``detector_architectures.THOROUGH_PARAMS``: a finer scale step, stricter grouping), the profile cascade added
# (turned heads, on the picture and its mirror) and every cascade run. Measured with ``benchmarks/faces_in_the_wild.py
# --split validation --no-faces`` (shipped model): 295 of the 303 held-out 300-W faces found and 4 false faces on
# the 288 measuring pictures without faces, as many as before the wider search existed (which found 288); looser
# grouping (more than 3 windows instead of 4 and 5) found the same faces with 7 false faces.
WIDER_DETECTOR = {
    **THOROUGH_PARAMS,
    "cascades": ("frontalface_default", "frontalface_alt2", "profileface"),
    "secondary": "always",
}

# Faces whose eye line is tilted by at least this many degrees are cut upright along the eye line before each
# re-crop (turned heads, phones held sideways); straighter faces are cut as the network was trained, unturned.
ALIGN_MIN_ROLL = 20.0

# The wider search (``WiderSearch``) looks at copies of the picture turned by these angles in degrees (counter-
# clockwise): the upright search finds faces rolled by up to about 15-20 degrees either way, so steps of 30
# cover every roll from -105 to 105 degrees, and 180 the upside-down ones.
WIDER_ROLLS = (-30.0, 30.0, -60.0, 60.0, -90.0, 90.0, 180.0)

# A face found in a turned copy of the picture is upright there: its eye line must lie within this many degrees of
# the turn, which rejects most false faces of the turned searches (their keypoints fall at random angles). The
# fast upright pass and the thorough search around its doubts hold to it too (turn 0): around the fast pass's weak
# detections on the upside-down astronaut, the thorough search found her face, whose eye-line re-crops then gave
# keypoints turned half a circle but mirrored (NME_io 1.04); the turned search by 180 degrees gets them right.
ROLL_AGREEMENT = 30.0

# A detection in a turned copy of the picture must merge at least this many cascade windows (its score). On the
# astronaut turned by -90, -60, 45, 60, 90 and 180 degrees, the face's best detection merged 22-44 windows, the
# false detections of the turned searches 5-17 (the stronger of them fail the flip-error or roll check). The
# course test face turned by 60 degrees of ``benchmarks/pipeline_speed.py``, smaller and blurrier, merged 11. On the
# 613 training pictures without faces (``python benchmarks/turned_search.py``), the turned searches kept 2 / 2 / 2 /
# 1 / 1 false faces with a minimum of 4 / 6 / 8 / 10 / 12 windows.
TURNED_MIN_SCORE = 10

# The fast pass's detections that merged at most this many windows are not trusted alone: the thorough search
# looks again around them (and around detections that failed the checks), in a region ``DOUBT_REGION`` times
# their side (faces in a group stand side by side), and its faces are kept (``doubtful_regions``). Of the fast
# pass's detections of the 770 test faces, 5.8 % merged at most 5 windows (median 19); of the 303 held-out 300-W
# faces, 12.9 % (median 20). Trusted alone, such detections gave a course face of the 3-face picture of
# ``benchmarks/pipeline_speed.py`` keypoints beside it (5 windows, NME_io 0.32) that passed both checks, and with
# a scale step of 1.2 the upside-down astronaut read upright (3 windows). Without the thorough search the fast
# pass loses three of the 770 test faces: Frank_Keating_40 (its one detection, of 4 windows, fails the checks),
# Yuri_Fedotov_41 and William_McDonough_01 (no detection). Three times the side: with a scale step of 1.2,
# Ed_Smart_51, cheek to cheek with a girl whom the fast pass found weakly while it missed him, needed it (twice
# her side cut his face off).
SETTLED_MIN_SCORE = 5
DOUBT_REGION = 3.0
# ... around at most ``MAX_DOUBTS`` of them in each of its two passes (the big faces' pass, then the smaller faces'),
# the largest first (``most_doubtful``): each look costs about the same whatever the face's size (its region is read
# at the resolution its face sizes need), so this bounds the thorough search's cost by a count. Measured (one thread,
# busy machine): ``benchmarks/pipeline_speed.py``'s pictures had at most 3 doubtful boxes a pass and 330 phone and
# camera photos (0.1-12 megapixels) at most 6; a group of 24 heads of 90 px on 1080 x 720 had 18, 48 on 1440 x 1080
# had 36, about 9 ms a look (0.29 s and 0.57 s a picture in all); at most 8 looks found 8 of their faces, 32 looks 18
# and 32.
MAX_DOUBTS = 32
# ... and it looks there for faces of ``DOUBT_SIZES`` times the doubtful detection's side (its neighbour in a group, or
# the same face framed better), at the resolution the smallest of them needs, not from the detector's smallest face.
DOUBT_SIZES = (0.5, 2.0)

# The wider search's network search for close-ups (``grid_boxes``, ``WiderSearch.network``): the model's face score
# on square boxes whose side is each of these fractions of the picture's shorter side (and at least the smallest face
# searched for), placed a quarter of their side apart; the ``NETWORK_SEARCH_CANDIDATES`` best boxes that do not
# overlap (face score at least 0.5) are refined and checked like detections, and kept with a face score of at least
# ``NETWORK_SEARCH_MIN_FACE_SCORE``. On the 160 x 160 pictures of 300-W that is 94 boxes, about 90 ms on one thread.
NETWORK_SEARCH_SIDES = (0.35, 0.5, 0.7, 1.0)
NETWORK_SEARCH_STEP = 0.25
NETWORK_SEARCH_CANDIDATES = 8
# ... and at most this many box positions along each side of the picture for each box side: on a picture longer than
# about 2.1 : 1 (a panorama, a strip) they are spread evenly instead of a quarter of the side apart, so the grid holds
# at most 8 + 5 + 2 + 1 rows of 20 boxes (320) whatever the picture's shape; 94 boxes on a square picture, 141 on 4 : 3
# and 209 on 16 : 9, as before (a 100 x 10000 strip: 160 instead of 5518).
NETWORK_SEARCH_MAX_POSITIONS = 20
# Chosen on the training parts only, with the shipped model (``python benchmarks/network_search.py``): on the 613
# training pictures without faces of ``no_faces`` (13 scikit-image pictures, 600 course backgrounds) the network
# search alone kept 3 / 1 / 1 / 0 / 0 false faces at 0.9 / 0.95 / 0.97 / 0.98 / 0.99 (5 / 2 / 2 / 0 / 0 with the
# pipeline's flip check instead of the wider search's), and found 100 / 100 / 99.6 / 99.3 / 98.9 % of every 6th
# 300-W training face. 0.98 is the lowest threshold without a false face.
NETWORK_SEARCH_MIN_FACE_SCORE = 0.98

# The detector that searches the wider search's copies (``WiderSearch.detector``): "haar" or "cnn". Measured with
# the shipped models, one thread, while another job ran: ``benchmarks/faces_in_the_wild.py --split validation
# --no-faces`` 302 of 303 held-out 300-W faces and 1 false face on the 288 pictures without faces in 12 ms a picture
# with "cnn" (the cascades' search after it included), 302 and 2 false faces in 22 ms with "haar"; the astronaut
# turned by every 15 degrees from -90 to 90 and by 180 found every time either way,
# in 0.2-0.4 s a picture with "cnn" against 1.7-2.5 s with "haar".
WIDER_DETECTOR_NAME = "cnn"

# The long side, in pixels, of the picture's copy that the wider search works on (``WiderSearch.max_side``): a
# 640 x 480 picture is searched as it is, a 12-megapixel one for faces of at least a sixteenth of its long side.
WIDER_MAX_SIDE = 640

# The fast pass looks for big faces first, those of at least this fraction of the picture's shorter side, on a
# small working copy (``KeypointPipeline._cascade_search``); the second pass looks for the smaller ones, up to
# ``COARSE_OVERLAP`` times that size (overlapping the first pass's range, since the cascade's scales are steps apart).
COARSE_FRACTION = 0.2
COARSE_OVERLAP = 1.25
# ... where the search would read more than this many working pixels; a smaller picture is searched in one pass
# (a 640 x 480 picture from 40-pixel faces: the second pass would cost nearly what one pass does).
SINGLE_PASS_PIXELS = 640 * 480

# Once a face of side S is found, the fast pass searches faces down to S / SIZE_RATIO only
# (``KeypointPipeline.size_ratio``; None: down to the detector's smallest face whatever it found).
SIZE_RATIO = 4.0

# A box of the learned detector whose first crop's face score is below this is not re-cropped: it fails the checks.
# Measured (``inference.predict``, flip averaging, shipped model) on every 3rd course test face and the 303 held-out
# 300-W faces with the detector's box: no face that passes the checks after re-cropping scores below 0.3 on its
# first crop (1 % below 0.54), while 1148 of the learned detector's 1229 boxes (score 0.1 or more) on every 4th
# training picture without faces score below 0.1. The Haar detections are always re-cropped: 2 of their 549 faces
# scored below 0.05 on the first crop and passed after re-cropping.
EARLY_FACE_SCORE = 0.1

# The learned detector enlarges a small picture, and then proposes faces smaller than the smallest face asked for
# (12-pixel "faces" on a 66 x 325 strip without faces); its boxes below this fraction of that size are dropped.
LEARNED_MIN_SIDE = 0.8

# A face of the learned detector is kept without the cascades' search when its face score reaches this (and its flip
# error is within ``LEARNED_MAX_FLIP_ERROR``); ``KeypointPipeline.learned_sure``. In ``benchmarks/pipeline_speed.py``
# the learned detector's true faces scored 0.994-0.997, while its readings of part of a turned face (60 and 45
# degrees) scored 0.981 and passed the flip check: at 0.98 they were kept as false faces (30 of 32 faces found, 2
# false); at 0.99 the cascades and the wider search take over there (31 of 32, none false).
LEARNED_MIN_FACE_SCORE = 0.99

# ... and its flip error is at most this: the 99th percentile of the course test faces' flip error with the shipped
# model (``python benchmarks/flip_error.py``: 0.0135 followed, 0.0136 detected). The astronaut turned upside down was
# read upright with a face score of 0.9975 and a flip error of 0.0178, within the wider search's 0.018: kept as a sure
# face, it stopped the searches that find her the right way up. A face above it is not lost: it is a doubt
# (``KeypointPipeline._learned_pass``).
LEARNED_MAX_FLIP_ERROR = 0.0136

# The learned detections whose crop fails the checks or is not sure that are cut again along other rolls
# (``KeypointPipeline._learned_pass``), and those rolls: one of the detector's roll classes (45 degrees) either side
# of its own, then two for those still without a sure face; at most four more crops each, so a picture's extra work
# is bounded. Without them the learned detector first, with no wider search, found the astronaut turned every 15
# degrees 15 times of 24; with one class either side 23, with two classes also the gray astronaut turned by 90 degrees
# (read upright: the crop one class away gave keypoints 44 degrees from it, beyond ``ROLL_AGREEMENT``).
# ``LEARNED_RETRIES`` is a bound, not a tuned value: at most 32 more crops a picture, most of them stopped after their
# first pass by their face score (``EARLY_FACE_SCORE``); on the pictures of ``benchmarks/pipeline_speed.py`` at most
# two detections a picture were cut again.
LEARNED_RETRIES = 8
RETRY_OFFSETS = (360.0 / ROLL_BINS, 720.0 / ROLL_BINS)

# With the learned detector first, the cascades also search a picture whose search reads at most this many working
# pixels (a 320 x 240 picture from 40-pixel faces: a few milliseconds), whatever the learned detector found, so
# that the faces it misses there are found as before.
CASCADES_TOO_PIXELS = 320 * 240

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
class WiderSearch:
    """How the pipeline searches again where the fast upright search finds no face.

    ``when``: "if_unsure" (default: only when no face passed the stricter ``max_flip_error`` check, so also where
    the only faces found are doubtful ones, which are kept as well), "always" (every picture, which also finds
    a turned face beside upright ones, at several times the cost) or "never". The picture is padded by ``pad``
    times its shorter side on every side (replicated border: faces cut by the border, close-ups) and, with
    ``equalize``, its contrast is equalised locally (CLAHE: dark and backlit faces); the detector then searches it
    upright, and the (equalised) picture turned by each angle in ``rolls``. With ``network`` (and a model with a face
    score) it also looks for close-ups, faces of at least a third of the picture, with the network itself
    (``grid_boxes``): the faces the Haar cascades miss most (turned, covered, cut by the border).
    ``detector`` says which detector searches the copies: "cnn" (default, ``WIDER_DETECTOR_NAME``: the learned
    detector, a few milliseconds a copy, then the cascades' padded search where it found nothing, ``search_steps``)
    or "haar". The cascades' upright pass uses the pipeline's cascades with ``detector_params`` changed
    (``WIDER_DETECTOR``: the thorough settings and the profile cascade), their turned ones the thorough
    settings (``detector_architectures.THOROUGH_PARAMS``). Its faces must also pass the
    stricter ``max_flip_error`` (None: the pipeline's own check only). Its copies are made of the picture shrunk so
    that its long side is at most ``max_side`` pixels (``WIDER_MAX_SIDE``; None: full size), so their cost is
    bounded whatever the picture's size: it then finds faces of at least the detector's smallest face in that
    copy (40 pixels of a 640-pixel copy: a sixteenth of the long side); the keypoints' crops are still cut at the
    crop's full resolution (``GrayPyramid.source``).
    """

    when: str = "if_unsure"
    pad: float = 0.25
    equalize: bool = True
    rolls: tuple[float, ...] = WIDER_ROLLS
    network: bool = True
    max_flip_error: float | None = WIDER_MAX_FLIP_ERROR
    detector_params: dict = field(default_factory=lambda: dict(WIDER_DETECTOR))
    max_side: int | None = WIDER_MAX_SIDE
    detector: str = WIDER_DETECTOR_NAME

    def __post_init__(self) -> None:
        if self.when not in ("if_unsure", "always", "never"):
            raise ValueError(f"WiderSearch.when must be 'if_unsure', 'always' or 'never', not {self.when!r}.")
        if self.detector not in ("haar", "cnn"):
            raise ValueError(f"WiderSearch.detector must be 'haar' or 'cnn', not {self.detector!r}.")


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


def padded_copy(image: np.ndarray, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """The picture with ``pad`` times its shorter side added on every side by replicating its border, and the frame
    (2 x 3) from picture pixels to the copy's."""
    margin = int(round(pad * min(image.shape[:2])))
    padded = cv2.copyMakeBorder(image, margin, margin, margin, margin, cv2.BORDER_REPLICATE)
    return padded, shifting_frame(margin, margin)


def turned_copy(image: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The picture turned by ``angle`` degrees counter-clockwise about its centre on a canvas that holds all of it
    (replicated border), and the frame (2 x 3) from picture pixels to the copy's."""
    height, width = image.shape[:2]
    frame = turning_frame(((width - 1) / 2, (height - 1) / 2), angle)
    cos, sin = abs(frame[0, 0]), abs(frame[0, 1])
    size = (int(np.ceil(width * cos + height * sin)), int(np.ceil(width * sin + height * cos)))
    frame[:, 2] += np.array([(size[0] - width) / 2, (size[1] - height) / 2])
    return cv2.warpAffine(image, frame, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), frame


def equalized(gray: np.ndarray) -> np.ndarray:
    """Local contrast equalisation (CLAHE, 8 x 8 tiles, clip limit 2: OpenCV's usual setting) of a gray picture."""
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray)


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


@dataclass
class KeypointPipeline:
    """Face detector + keypoint model.

    ``runner`` is a model runner (``models.make_runner``: ONNX Runtime or PyTorch) or a PyTorch model;
    ``convention`` is the labelling convention of the keypoints (``models.CONVENTIONS``; None: the model's
    default); ``flip_average`` also predicts each face mirrored and averages; ``refine`` re-crops each face from its
    keypoints (upright along its eye line when it is tilted by ``align_min_roll`` degrees or more) and predicts
    again, ``refine_steps`` times. A detection is kept as a face when it passes the checks: ``max_flip_error``
    drops crops whose flip error is larger (it needs the mirrored pass of ``flip_average``), ``min_face_score``
    drops crops whose face score is lower (for a model with a face score); None switches a check off. ``wider``
    says where to search again, harder (``WiderSearch``: padded, equalised and turned copies of the picture); None:
    the detector's own default (``default_wider``: none after the learned detector, which finds turned faces
    itself; where unsure after the cascades).
    Before that, ``recheck`` searches the picture upright again with the detector's thorough settings
    (``detector_architectures.THOROUGH_PARAMS``) where the fast pass leaves doubt: around its weak detections
    (``SETTLED_MIN_SCORE``) and those that failed the checks, or everywhere when it detected nothing.
    ``detector``: a ``HaarFaceDetector`` (the cascades search first) or a ``CNNFaceDetector`` (the learned detector
    searches first; its faces are kept when they are sure, ``learned_sure``, the cascades search around its doubtful
    ones, and the whole picture where none is sure). ``refine_tolerance``: a face stops being re-cropped once its
    next crop would lie within this fraction of the crop's side of its last one (``REFINE_TOLERANCE``; 0: always
    ``refine_steps``).
    ``size_ratio``: once a face of side S is found, smaller faces are searched down to S / ``size_ratio`` only
    (``SIZE_RATIO``; None: down to the detector's smallest face). A call's work is bounded by counts, not by the
    clock (module docstring): the same picture gives the same faces whatever the machine's load.
    """

    runner: Any
    detector: HaarFaceDetector | CNNFaceDetector = field(default_factory=HaarFaceDetector)
    flip_average: bool = True
    refine: bool = True
    refine_steps: int = REFINE_STEPS
    refine_tolerance: float = REFINE_TOLERANCE
    max_flip_error: float | None = FLIP_ERROR_NO_FACE
    convention: str | None = None
    min_face_score: float | None = MIN_FACE_SCORE
    align_min_roll: float = ALIGN_MIN_ROLL
    wider: WiderSearch | None = None
    recheck: bool = True
    size_ratio: float | None = SIZE_RATIO
    second_stage: Any = None  # a pipeline.second_stage.Refiner: refines every face's keypoints once its re-crops stop

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike | None = None,
        detector: str | HaarFaceDetector | CNNFaceDetector = DEFAULT_DETECTOR,
        backend: str = "auto",
        threads: int | None = None,
        min_face_size: int | None = None,
        second_stage: Any = "auto",
        **options: Any,
    ) -> "KeypointPipeline":
        """The shipped model from ``saved_models/`` (or the model file at ``path``) with a face detector.

        ``detector``: "cnn" (the learned detector, ``detector_architectures.cnn``), "haar" (OpenCV's cascades,
        ``detector_architectures.haar``) or a detector object; ``backend``: "auto" (ONNX Runtime when available, else
        PyTorch), "onnx" or "torch"; ``threads`` caps the CPU threads the models use; ``min_face_size`` is the
        smallest face searched for, in pixels, in every picture (default: 40, or 2.5 % of a big picture's shorter
        side, which bounds its cost: ``HaarFaceDetector.prepare``, ``CNNFaceDetector``); smaller is slower, by the
        square of the ratio (on a 4032 x 3024 photo 40 pixels against the default 76: about 3.6 times the search).
        ``second_stage``: the second, local stage (``pipeline.second_stage``): "auto" for the model's own
        (``NAME.refine.pt`` beside it) when there is one, None for none, its file, or a ``Refiner``.
        """
        runner = load_runner(path or SHIPPED_MODEL, backend=backend, threads=threads)
        if not isinstance(second_stage, Refiner):
            second_stage = companion_refiner(path or SHIPPED_MODEL, second_stage, backend, threads)
        runner.meta = {**runner.meta, "file": Path(path or SHIPPED_MODEL).name}
        if runner.num_keypoints != 68:
            raise ModelError(f"{path} predicts {runner.num_keypoints} keypoints; the pipeline needs a 68-point model.")
        if isinstance(detector, str):
            detector = make_detector(detector, min_face_size, threads)
        return cls(runner, detector, second_stage=second_stage, **options)

    def __post_init__(self) -> None:
        self.runner = as_runner(self.runner)
        self.convention = layout_of(self.runner).resolve(self.convention)
        if isinstance(self.detector, HaarFaceDetector):
            self.cascade_detector = self.detector
        else:  # the learned detector first; the cascades, from the same smallest face, where it is unsure
            sizes = {key: self.detector.params[key] for key in ("min_face_size", "min_face_fraction")}
            self.cascade_detector = HaarFaceDetector(**sizes)
        if self.wider is None:
            self.wider = default_wider(self.detector)
        self.wider_detector = HaarFaceDetector(**{**self.cascade_detector.params, **self.wider.detector_params})
        self.thorough_detector = HaarFaceDetector(**{**self.cascade_detector.params, **THOROUGH_PARAMS})

    @property
    def model_name(self) -> str:
        """The model file's name ("" for a model object)."""
        return str(self.meta.get("file", ""))

    @property
    def input_size(self) -> int:
        return self.runner.input_size

    @property
    def meta(self) -> dict:
        return getattr(self.runner, "meta", {"architecture": type(self.runner).__name__})

    def keypoints_for_boxes(
        self, image: np.ndarray | str | os.PathLike, boxes: Sequence[Sequence[float]], refine: bool | None = None
    ) -> np.ndarray:
        """(N, 68, 2) keypoints for N face boxes in the Haar detector's convention, in one batch.

        ``refine`` overrides the pipeline's setting (the tracker's boxes already come from keypoints).
        """
        return self.keypoints_and_flip_errors(image, boxes, refine)[0]

    def keypoints_for_box(self, image: np.ndarray | str | os.PathLike, box: Sequence[float]) -> np.ndarray:
        """(68, 2) keypoints for one face box (x, y, w, h) in the Haar detector's convention."""
        return self.keypoints_for_boxes(image, [box])[0]

    def keypoints_and_flip_errors(
        self,
        image: np.ndarray | str | os.PathLike,
        boxes: Sequence[Sequence[float]],
        refine: bool | None = None,
        refine_steps: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``keypoints_for_boxes`` and the flip error of each face's last crop (NaN without flip averaging);
        ``refine_steps`` overrides the pipeline's number of re-crops."""
        keypoints, flip_errors, _ = self.predict_boxes(image, boxes, refine, refine_steps)
        return keypoints, flip_errors

    def predict_boxes(
        self,
        image: np.ndarray | str | os.PathLike,
        boxes: Sequence[Sequence[float]],
        refine: bool | None = None,
        refine_steps: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, 68, 2) keypoints in picture pixels for N upright boxes, with the flip error (N,) and the face score
        (N,) of each face's last crop (NaN where the pipeline or the model does not compute them)."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        steps = (self.refine_steps if refine_steps is None else refine_steps) if (self.refine if refine is None else refine) else 0
        return self._predict_in_frames(GrayPyramid(self._gray(image)), boxes, [np.eye(2, 3)] * len(boxes), steps)

    def follow(
        self, image: np.ndarray | str | os.PathLike, keypoints: np.ndarray, steps: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keypoints (N, 68, 2), flip errors and face scores for faces whose keypoints were (N, 68, 2) a moment
        ago (the previous video frame): each is re-cropped from them as in ``refine``, then ``steps`` more times."""
        pyramid = GrayPyramid(self._gray(image))
        if len(keypoints) == 0:
            return self._predict_in_frames(pyramid, np.zeros((0, 4), np.float32), [], 0)
        boxes, frames = zip(*(aligned_frame(k, self.align_min_roll) for k in keypoints))
        return self._predict_in_frames(pyramid, np.stack(boxes), list(frames), steps)

    def detect(self, image: np.ndarray | str | os.PathLike) -> list[Face]:
        """Every face in the picture with its keypoints; an empty list when there is none.

        With the learned detector (the default) it searches first and, in a picture that is not small
        (``CASCADES_TOO_PIXELS``), its sure faces are kept with what the cascades' thorough search finds around its
        doubtful ones (``_learned_pass``). With no sure face, or in a small picture, the cascades search the whole
        picture, and a doubtful face that is nearly sure (``learned_confirmed``) is kept where they find none. With
        the cascades as the pipeline's detector, they search the picture upright with their fast settings, then again
        with their thorough ones where that leaves doubt (``recheck``). The ``wider`` search follows where it is asked
        for (``default_wider``: by default only after the cascades, when no face passed its stricter check)."""
        image = as_rgb_image(image)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        pyramid = GrayPyramid(gray)
        if not isinstance(self.detector, CNNFaceDetector):
            return self._searched_wider(pyramid, self._cascade_search(pyramid))
        sure, doubtful = self._learned_pass(pyramid)
        cheap = self._working_pixels(gray.shape, self.cascade_detector.smallest_face(gray.shape)) <= CASCADES_TOO_PIXELS
        if sure and not cheap and self.wider.when != "always":
            return distinct_faces(sure + self._rechecked(pyramid, [face.box for face in doubtful])) if doubtful else sure
        confirmed = [face for face in doubtful if self.learned_confirmed(face)]
        return self._searched_wider(pyramid, distinct_faces(sure + self._cascade_search(pyramid) + confirmed))

    def _learned_pass(self, pyramid: GrayPyramid) -> tuple[list[Face], list[Face]]:
        """The faces the learned detector finds that pass the checks and are sure (``learned_sure``), and those that
        pass them but are not sure (the doubtful ones), without those lying inside a sure face (``outside_faces``).
        Beside a sure face, the cascades' thorough search looks around each doubtful one (``_rechecked``); with no sure
        face, they search the whole picture. Measured with ``benchmarks/pipeline_speed.py`` (one thread): a badge on the
        astronaut's suit read as a face (face score 0.94) beside her sure face in the 3024 x 3024 close-up, and a face
        turned by 45 degrees beside four sure ones in the 1920 x 1080 group, sent both pictures to the whole-picture
        search: 196 and 193 ms against 103 and 100 ms with the search around the doubt, the same faces found. Two
        detections of one face count once (``distinct_faces``, the better kept): a part of a sure face read as a face
        of its own (a box a third of its side inside a close-up's face, face score 0.89) is no doubt (the 4288 x 2848
        close-up: 198-200 ms with the cascades, 105-107 ms without).

        The detector's roll is a class of 45 degrees, often one class off (``saved_models/face_detector.md``), so a
        detection whose crop fails the checks or is not sure is cut again along the rolls of the classes beside its
        own, then two classes away (``retry_rolls``, ``RETRY_OFFSETS``), for the ``LEARNED_RETRIES`` surest such
        detections that do not lie inside a sure face (a part of it, ``outside_faces``: the crops along other rolls of
        a part of the face took the 4288 x 2848 close-up of ``benchmarks/pipeline_speed.py`` from 62 to 125 ms)."""
        smallest = self.detector.smallest_face(pyramid.picture.shape)
        copy, frame = pyramid.level(self.detector.scale_for(smallest))
        found = [d for d in surest(self.detector.detect(copy, smallest * frame[0, 0]))
                 if d.box[2] >= LEARNED_MIN_SIDE * smallest * frame[0, 0]]
        checked = self._checked_along(pyramid, found, frame)
        unsure = [d for d, face in zip(found, checked) if face is None or not self.learned_sure(face)]
        for offset in RETRY_OFFSETS:  # one class either side, then two, for the detections still without a sure face
            sure_so_far = [face for face in checked if face is not None and self.learned_sure(face)]
            unsure = [d for d in unsure if outside_faces([unframed_box(d.box, frame)], sure_so_far)][:LEARNED_RETRIES]
            again = [(d, replace(d, roll=roll)) for d in unsure for roll in retry_rolls(detection_roll(d), offset, self.align_min_roll)]
            faces = self._checked_along(pyramid, [turned for _, turned in again], frame)
            settled = {id(d) for (d, _), face in zip(again, faces) if face is not None and self.learned_sure(face)}
            unsure = [d for d in unsure if id(d) not in settled]
            checked += faces
        faces = distinct_faces(sorted((face for face in checked if face is not None), key=face_quality))
        sure, doubtful = [], []
        for face in faces:
            (sure if self.learned_sure(face) else doubtful).append(face)
        return sure, [face for face in doubtful if outside_faces([face.box], sure)]

    def learned_confirmed(self, face: Face) -> bool:
        """Whether a doubtful face of the learned detector is kept where the cascades find no face: it passes the wider
        search's flip check (``WIDER_MAX_FLIP_ERROR``, looser than ``LEARNED_MAX_FLIP_ERROR``) and, for a model with a
        face score, reaches ``LEARNED_MIN_FACE_SCORE``."""
        return self._sure(face) and (face.face_score is None or face.face_score >= LEARNED_MIN_FACE_SCORE)

    def _checked_along(self, pyramid: GrayPyramid, detections: Sequence[Detection], frame: np.ndarray) -> list[Face | None]:
        """``_checked`` for learned detections in a copy of the picture (``frame``), each cut along its roll
        (``learned_candidate``), whose keypoints must lie along it."""
        candidates = [learned_candidate(d, frame, self.align_min_roll) for d in detections]
        return self._checked(pyramid, candidates, search_roll=[detection_roll(d) for d in detections])

    def learned_sure(self, face: Face) -> bool:
        """Whether a face of the learned detector is kept without the cascades' search: its flip error is at most
        ``LEARNED_MAX_FLIP_ERROR`` and, for a model with a face score, its score reaches ``LEARNED_MIN_FACE_SCORE``."""
        flip_ok = face.flip_error is None or face.flip_error <= LEARNED_MAX_FLIP_ERROR
        return flip_ok and (face.face_score is None or face.face_score >= LEARNED_MIN_FACE_SCORE)

    def _cascade_search(self, pyramid: GrayPyramid) -> list[Face]:
        """The upright faces the Haar cascades find: the fast pass by face sizes (big faces first, then the smaller
        ones down to ``size_ratio``, ``COARSE_FRACTION``), and the thorough search where it leaves doubt."""
        gray = pyramid.picture
        smallest = self.cascade_detector.smallest_face(gray.shape)
        single = self._working_pixels(gray.shape, smallest) <= SINGLE_PASS_PIXELS
        coarse = smallest if single else max(smallest, COARSE_FRACTION * min(gray.shape))
        faces, doubtful, detected = self._fast_pass(pyramid, coarse, None)
        if smallest < coarse:
            if self.recheck and doubtful:  # a big face the fast pass was unsure of sets the size of the next pass too
                faces, doubtful = distinct_faces(faces + self._rechecked(pyramid, doubtful)), []
            if faces and self.size_ratio:
                smallest = max(smallest, max(float(face.box[2]) for face in faces) / self.size_ratio)
        if smallest < coarse:
            # the other cascades only where nothing was found and the search is small (they double its cost)
            secondary = not faces and self._working_pixels(gray.shape, smallest) <= SINGLE_PASS_PIXELS
            finer, more_doubtful, finer_detected = self._fast_pass(pyramid, smallest, coarse * COARSE_OVERLAP, secondary=secondary)
            faces, doubtful, detected = distinct_faces(faces + finer), doubtful + more_doubtful, detected or finer_detected
        doubtful = outside_faces(doubtful, faces)
        if self.recheck and (doubtful or not detected):
            faces = distinct_faces(faces + self._rechecked(pyramid, doubtful if detected else None))
        return faces

    def _searched_wider(self, pyramid: GrayPyramid, faces: list[Face]) -> list[Face]:
        """``faces`` with those of the wider search where it is asked for (by default: no face passed its check)."""
        if self.wider.when == "always" or (self.wider.when == "if_unsure" and not any(self._sure(f) for f in faces)):
            # upright faces first, but an unsure one gives way to a sure face of the wider search in its place (an
            # upside-down face read upright, whose turned copy gives the true keypoints)
            faces = distinct_faces(sorted(faces + self._wider_faces(pyramid), key=lambda face: not self._sure(face)))
        return faces

    def _working_pixels(self, shape: tuple[int, ...], min_face: float) -> float:
        """How many pixels the detector reads to search a picture of ``shape`` for faces of ``min_face`` pixels and
        more (its working picture's area)."""
        scale = min(self.cascade_detector.scale_for(min_face), 1.0)
        return shape[0] * shape[1] * scale * scale

    def _search_copy(self, pyramid: GrayPyramid, min_face: float) -> tuple[np.ndarray, np.ndarray]:
        """The pyramid's copy that a search for faces of at least ``min_face`` pixels reads (at most twice the size
        the detector works at, ``working_face_size`` pixels for that face), and its frame."""
        return pyramid.level(self.cascade_detector.scale_for(min_face))

    def _fast_pass(
        self, pyramid: GrayPyramid, low: float, high: float | None, **options: Any
    ) -> tuple[list[Face], list[np.ndarray], bool]:
        """One size range of the fast pass (faces of ``low`` to ``high`` pixels; None: no limit; ``options`` for the
        detector, e.g. ``secondary`` of ``HaarFaceDetector.detect``): the faces that pass the checks, the boxes
        (picture pixels) the thorough search should look around (Haar detections of at most ``SETTLED_MIN_SCORE``
        windows, or that failed the checks), and whether anything was detected."""
        copy, frame = self._search_copy(pyramid, low)
        scale = frame[0, 0]
        found = self.cascade_detector.detect(copy, low * scale, None if high is None else high * scale, **options)
        candidates = [Candidate(d, frame) for d in surest(found)]
        trusted = [c.detection.score > SETTLED_MIN_SCORE or not self.recheck for c in candidates]
        strong = [c for c, sure in zip(candidates, trusted) if sure]
        checked = self._checked(pyramid, strong, search_roll=0.0)
        doubtful = [unframed_box(c.detection.box, frame) for c, sure in zip(candidates, trusted) if not sure]
        doubtful += [unframed_box(c.detection.box, frame) for c, face in zip(strong, checked) if face is None]
        return [face for face in checked if face is not None], doubtful, bool(candidates)

    def is_face(self, flip_error: float, face_score: float) -> bool:
        """The checks a detection passes to be kept as a face (NaN measures pass: they were not computed)."""
        if self.min_face_score is not None and face_score < self.min_face_score:
            return False
        return self.max_flip_error is None or not self.flip_average or not flip_error > self.max_flip_error

    def _sure(self, face: Face) -> bool:
        """Whether a face passes the wider search's stricter flip-error check (without one: every face)."""
        limit = self.wider.max_flip_error
        return limit is None or face.flip_error is None or face.flip_error <= limit

    def _rechecked(self, pyramid: GrayPyramid, doubtful: Sequence[np.ndarray] | None) -> list[Face]:
        """The faces the thorough upright search finds around the ``doubtful`` boxes (x, y, w, h, picture pixels):
        in each box's ``doubtful_regions``, faces of ``DOUBT_SIZES`` times its side, read from the pyramid's copy
        those sizes need (the ``MAX_DOUBTS`` largest boxes only, ``most_doubtful``); None: the whole picture, from
        the detector's smallest face or, in a big picture, from the face size a working picture of
        ``SINGLE_PASS_PIXELS`` holds."""
        gray = pyramid.picture
        if doubtful is None:  # faces of every size, but on a working picture of at most SINGLE_PASS_PIXELS
            smallest = self.cascade_detector.smallest_face(gray.shape)
            smallest *= max(1.0, np.sqrt(self._working_pixels(gray.shape, smallest) / SINGLE_PASS_PIXELS))
            copy, frame = self._search_copy(pyramid, smallest)
            found = [Candidate(d, frame) for d in surest(self.thorough_detector.detect(copy, smallest * frame[0, 0]))]
            return self._faces(pyramid, found, search_roll=0.0)
        found = []
        doubtful = most_doubtful(doubtful)
        for box, region in zip(doubtful, doubtful_regions(doubtful, gray.shape)):
            side = float(max(box[2], box[3]))
            low = max(DOUBT_SIZES[0] * side, self.cascade_detector.params["min_face_size"] or 0)
            copy, frame = self._search_copy(pyramid, low)
            (x0, y0), (x1, y1) = np.round(transform_points(np.array(region, np.float64).reshape(2, 2) - 0.5, frame) + 0.5).astype(int)
            cut = shifting_frame(-x0, -y0)
            scale = frame[0, 0]
            detections = self.thorough_detector.detect(copy[y0:y1, x0:x1], low * scale, DOUBT_SIZES[1] * side * scale)
            found += [Candidate(d, compose_matrices(cut, frame)) for d in detections]
        found = sorted(found, key=lambda c: -c.detection.score)[:MAX_DETECTIONS]
        return self._faces(pyramid, found, search_roll=0.0)

    def search_steps(self, pyramid: GrayPyramid) -> list[tuple[str, Any]]:
        """The ``wider`` search's steps in the order they run, each (name, function of no argument giving its
        ``Face``s): the padded (and equalised) copy upright, the network's search for close-ups, then the copy
        turned by each of ``wider.rolls``; with the learned detector (``WiderSearch.detector="cnn"``) its own
        padded and turned searches first (``_learned_steps``), then the cascades' padded search and the network's
        search, named "cascades ...", which run only where the learned ones found nothing. All work on the picture
        shrunk to ``wider.max_side``."""
        gray = pyramid.picture
        long = max(gray.shape)
        small, shrink = pyramid.resized(1.0 if self.wider.max_side is None else self.wider.max_side / long)
        strict = self.wider.max_flip_error
        searched = self._searched(small)

        def upright() -> list[Face]:
            padded, pad_frame = padded_copy(small, self.wider.pad)
            padded_searched = self._searched(padded)
            frame = compose_matrices(pad_frame, shrink)
            return self._faces(pyramid, [Candidate(d, frame) for d in surest(self.wider_detector.detect(padded_searched))], strict)

        def turned(angle: float) -> list[Face]:
            copy, frame = turned_copy(searched, angle)
            frame = compose_matrices(frame, shrink)
            strong = [Candidate(d, frame) for d in surest(self.thorough_detector.detect(copy)) if d.score >= TURNED_MIN_SCORE]
            return self._faces(pyramid, strong, strict, search_roll=angle)

        cascades: list[tuple[str, Any]] = [("padded upright", upright), ("network", lambda: self._network_faces(pyramid, strict))]
        if self.wider.detector == "cnn":  # the cascades' padded, equalised search after the learned one (dark faces)
            return self._learned_steps(pyramid, small, shrink) + [("cascades " + name, step) for name, step in cascades]
        return cascades + [(f"turned {angle:g}", lambda angle=angle: turned(angle)) for angle in self.wider.rolls]

    def _learned_steps(self, pyramid: GrayPyramid, small: np.ndarray, shrink: np.ndarray) -> list[tuple[str, Any]]:
        """``search_steps`` with the learned detector (``WiderSearch.detector="cnn"``): it searches the padded,
        equalised copy and each turned copy of ``small`` (the picture through the frame ``shrink``), and its faces must
        pass the wider search's flip check, lie along their search and, for a model with a face score, reach
        ``NETWORK_SEARCH_MIN_FACE_SCORE`` (the network search's rule: the learned detector proposes more boxes than
        the cascades, false ones among them)."""
        learned = self.learned_detector
        searched = self._searched(small)
        smallest = LEARNED_MIN_SIDE * learned.params["min_face_size"] * shrink[0, 0]  # in the copy's pixels

        def step(copy: np.ndarray, frame: np.ndarray, roll: float) -> list[Face]:
            found = [Candidate(d, compose_matrices(frame, shrink)) for d in surest(learned.detect(copy)) if d.box[2] >= smallest]
            rolls = [roll + detection_roll(c.detection) for c in found]  # the copy's turn, and the face's in the copy
            faces = self._faces(pyramid, found, self.wider.max_flip_error, search_roll=rolls)
            return [f for f in faces if f.face_score is None or f.face_score >= NETWORK_SEARCH_MIN_FACE_SCORE]

        steps: list[tuple[str, Any]] = [("padded upright", lambda: step(*padded_copy(searched, self.wider.pad), 0.0))]
        steps += [(f"turned {angle:g}", lambda angle=angle: step(*turned_copy(searched, angle), angle)) for angle in self.wider.rolls]
        return steps

    @property
    def learned_detector(self) -> CNNFaceDetector:
        """The learned face detector: the pipeline's own when it is one, else one loaded when first needed."""
        if isinstance(self.detector, CNNFaceDetector):
            return self.detector
        if getattr(self, "_learned", None) is None:
            self._learned = CNNFaceDetector()
        return self._learned

    def _wider_faces(self, pyramid: GrayPyramid) -> list[Face]:
        """The faces of the ``wider`` search (``search_steps``, all of them; the cascades' steps only where the
        learned ones found nothing). A face
        found turned must be a strong detection (``TURNED_MIN_SCORE``) and lie along its search (eye line
        within ``ROLL_AGREEMENT`` degrees of the turn); where several searches find one face, the best one by
        ``face_quality`` wins."""
        faces: list[Face] = []
        for name, step in self.search_steps(pyramid):
            if faces and name.startswith("cascades "):
                break
            faces += step()
        return distinct_faces(sorted(faces, key=face_quality))

    def _network_faces(
        self, pyramid: GrayPyramid, max_flip_error: float | None, min_face_score: float = NETWORK_SEARCH_MIN_FACE_SCORE
    ) -> list[Face]:
        """The close-ups the network finds on its own (``WiderSearch.network``, ``grid_boxes``) with a face score of
        at least ``min_face_score``: none for a model without a face score."""
        if not (self.wider.network and layout_of(self.runner).face_score):
            return []
        boxes = grid_boxes(pyramid.picture.shape, self.cascade_detector.params["min_face_size"] or 0)
        if not len(boxes):
            return []
        scores = predict(self.runner, face_crops(pyramid, boxes, self.input_size)[0], self.convention).face_score
        likely = [Detection(box, score) for box, score in zip(boxes, scores) if score >= 0.5]
        best = suppress(sorted(likely, key=lambda d: -d.score))[:NETWORK_SEARCH_CANDIDATES]
        found = self._faces(pyramid, [Candidate(d, np.eye(2, 3)) for d in best], max_flip_error)
        return [face for face in found if face.face_score is not None and face.face_score >= min_face_score]

    def _searched(self, gray: np.ndarray) -> np.ndarray:
        return equalized(gray) if self.wider.equalize else gray

    def _faces(
        self, pyramid: GrayPyramid, candidates: Sequence[Candidate], max_flip_error: float | None = None,
        search_roll: float | Sequence[float] | None = None,
    ) -> list[Face]:
        """The candidates that pass the checks (and a flip error of at most ``max_flip_error``, when given; and an eye
        line within ``ROLL_AGREEMENT`` degrees of ``search_roll``, when given: the turn of the searched copy, or one
        roll per candidate, ``detection_roll``), as ``Face``s with refined keypoints in picture pixels."""
        return [face for face in self._checked(pyramid, candidates, max_flip_error, search_roll) if face is not None]

    def _checked(
        self, pyramid: GrayPyramid, candidates: Sequence[Candidate], max_flip_error: float | None = None,
        search_roll: float | Sequence[float] | None = None,
    ) -> list[Face | None]:
        """``_faces``, one entry per candidate: its ``Face``, or None where it failed the checks."""
        if not candidates:
            return []
        rolls = search_roll if isinstance(search_roll, Sequence) else [search_roll] * len(candidates)
        boxes = np.stack([c.detection.box for c in candidates]).astype(np.float32)
        steps = self.refine_steps if self.refine else 0
        # the learned detector's boxes: most of its false ones are told apart by their first crop alone
        early = np.array([EARLY_FACE_SCORE if c.detection.cascade == LEARNED_NAME else np.nan for c in candidates])
        keypoints, flip_errors, face_scores = self._predict_in_frames(pyramid, boxes, [c.frame for c in candidates], steps, early)
        faces: list[Face | None] = []
        for candidate, points, flip_error, face_score, roll in zip(candidates, keypoints, flip_errors, face_scores, rolls):
            passed = (
                self.is_face(flip_error, face_score)
                and not (max_flip_error is not None and flip_error > max_flip_error)
                and (roll is None or abs(angle_between(face_roll(points), roll)) <= ROLL_AGREEMENT)
            )
            faces.append(self._face(picture_box(candidate, points), points, candidate.detection.score, flip_error, face_score) if passed else None)
        return faces

    def _face(self, box: np.ndarray, keypoints: np.ndarray, score: float | None, flip_error: float, face_score: float) -> Face:
        """A ``Face`` named with this pipeline's convention and model (NaN measures become None)."""
        return Face(
            box,
            keypoints,
            score,
            None if np.isnan(flip_error) else float(flip_error),
            None if np.isnan(face_score) else float(face_score),
            self.convention,
            self.model_name or None,
        )

    def _gray(self, image: np.ndarray | str | os.PathLike) -> np.ndarray:
        image = as_rgb_image(image)
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)

    def _predict_in_frames(
        self, pyramid: GrayPyramid, boxes: np.ndarray, frames: Sequence[np.ndarray], steps: int, early_face_score: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict for boxes given in their frames, then re-crop each face from its keypoints up to ``steps`` times:
        a face stops once its next crop would lie within ``refine_tolerance`` of its last (``inference.crop_shift``),
        since the network would see nearly the same crop again. A box whose first crop's face score is below its
        ``early_face_score`` (N,; NaN: none) is not re-cropped (its first answer is returned)."""
        if len(boxes) == 0:
            return np.zeros((0, self.runner.num_keypoints, 2), np.float32), np.zeros(0), np.zeros(0)
        matrices = crop_matrices(boxes, self.input_size, frames)
        keypoints, flip_errors, face_scores = self._predict(pyramid, matrices)
        active = np.arange(len(boxes)) if early_face_score is None else np.flatnonzero(~(face_scores < early_face_score))
        for _ in range(steps if len(active) else 0):
            boxes, frames = zip(*(aligned_frame(keypoints[i], self.align_min_roll) for i in active))
            following = crop_matrices(boxes, self.input_size, frames)
            moving = [j for j, (i, matrix) in enumerate(zip(active, following))
                      if crop_shift(matrices[i], matrix, self.input_size) >= self.refine_tolerance]
            if not moving:
                break
            active = active[moving]
            for i, j in zip(active, moving):
                matrices[i] = following[j]
            keypoints[active], flip_errors[active], face_scores[active] = self._predict(pyramid, [matrices[i] for i in active])
        if self.second_stage is not None:
            keypoints = self.second_stage.refine(pyramid, keypoints, self.convention)
        return keypoints, flip_errors, face_scores

    def _predict(self, pyramid: GrayPyramid, matrices: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keypoints (N, 68, 2) in picture pixels, flip errors and face scores (N,) for crops through ``matrices``
        (cut from the pyramid's copies where the face is big, ``GrayPyramid.source``)."""
        result = predict(self.runner, cut_crops(pyramid, matrices, self.input_size), self.convention, self.flip_average)
        keypoints = np.stack([transform_points(p, invert_matrix(m)) for p, m in zip(result.keypoints, matrices)])
        return keypoints, result.flip_error, result.face_score


def detection_roll(detection: Detection) -> float:
    """The roll in degrees (``face_roll``'s convention) the detector gives a face (the learned detector: from its roll
    class and five points, ``cnn.roll_of``), 0 where it gives none (the cascades search upright)."""
    return 0.0 if detection.roll is None else float(detection.roll)


def retry_rolls(roll: float, offset: float, min_roll: float = ALIGN_MIN_ROLL) -> list[float]:
    """The two rolls in degrees (-180 to 180) ``offset`` degrees either side of ``roll`` that a learned detection is
    cut along again when its own roll failed; one below ``min_roll`` is cut upright (``learned_candidate``), as 0."""
    wrapped = [angle_between(roll + side * offset, 0.0) for side in (-1, 1)]
    return [0.0 if abs(angle) < min_roll else angle for angle in wrapped]


def default_wider(detector: HaarFaceDetector | CNNFaceDetector) -> WiderSearch:
    """The wider search a pipeline uses after ``detector`` unless told: none after the learned detector, which finds
    faces at every roll, size and light itself; where unsure (``WiderSearch()``) after the cascades, which find
    upright faces only. Measured with the learned detector first, without and with the wider search where unsure:
    the held-out 300-W faces (``benchmarks/faces_in_the_wild.py --split validation --no-faces``) 302 of 303 either
    way, with 1 false face on the 288 pictures without faces instead of 4 (the wider search's turned copies read
    background strips as faces); ``benchmarks/pipeline_speed.py`` 31 of 32 either way, no false face, median and
    worst 45 / 114 ms instead of 48 / 312 ms (the picture without faces 26 ms instead of 312)."""
    return WiderSearch(when="never") if isinstance(detector, CNNFaceDetector) else WiderSearch()


def learned_candidate(detection: Detection, frame: np.ndarray, min_roll: float = ALIGN_MIN_ROLL) -> Candidate:
    """A learned detection in a copy of the picture (``frame``: picture pixels to the copy's) as a ``Candidate``
    whose crop is cut upright along its roll (``detection_roll``) when that is at least ``min_roll``
    degrees: the frame turns the copy about the box's centre, which leaves the box (its upright square) in place."""
    roll = detection_roll(detection)
    if abs(roll) < min_roll:
        return Candidate(detection, frame)
    x, y, w, h = detection.box
    return Candidate(detection, compose_matrices(turning_frame((x + w / 2, y + h / 2), roll), frame))


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


def grid_boxes(shape: tuple[int, ...], min_side: float = 0.0) -> np.ndarray:
    """Square boxes (N, 4) as (x, y, w, h) over a picture of ``shape``, inside it: sides of ``NETWORK_SEARCH_SIDES``
    times its shorter side (those of at least ``min_side`` pixels), ``NETWORK_SEARCH_STEP`` times the side apart, at
    most ``NETWORK_SEARCH_MAX_POSITIONS`` along a side (then spread evenly over it)."""
    height, width = shape[:2]
    boxes = []
    for fraction in NETWORK_SEARCH_SIDES:
        side = fraction * min(height, width)
        if side < min_side:
            continue
        ys, xs = (grid_positions(length - side, NETWORK_SEARCH_STEP * side) for length in (height, width))
        boxes += [(x, y, side, side) for y in ys for x in xs]
    return np.array(boxes, np.float32).reshape(-1, 4)


def grid_positions(span: float, step: float) -> np.ndarray:
    """Positions 0, ``step``, 2 ``step``, ... up to ``span`` (pixels), or ``NETWORK_SEARCH_MAX_POSITIONS`` of them
    spread evenly from 0 to ``span`` where there would be more."""
    positions = np.arange(0.0, span + 1e-6, step)
    if len(positions) > NETWORK_SEARCH_MAX_POSITIONS:
        positions = np.linspace(0.0, span, NETWORK_SEARCH_MAX_POSITIONS)
    return positions


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


def most_doubtful(boxes: Sequence[np.ndarray], count: int | None = None) -> list[np.ndarray]:
    """The ``count`` (None: ``MAX_DOUBTS``) largest doubtful ``boxes`` (x, y, w, h), largest first (ties in the given
    order)."""
    return sorted(boxes, key=lambda box: -float(max(box[2], box[3])))[: MAX_DOUBTS if count is None else count]


def doubtful_regions(boxes: Sequence[np.ndarray], shape: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """The regions (x0, y0, x1, y1) of a picture of ``shape`` that the thorough search looks at again around
    doubtful detections ``boxes`` (x, y, w, h): ``DOUBT_REGION`` times each box's side about its centre, cut to the
    picture."""
    height, width = shape[:2]
    regions = []
    for x, y, w, h in boxes:
        cx, cy, half = x + w / 2, y + h / 2, DOUBT_REGION * max(w, h) / 2
        regions.append((max(int(cx - half), 0), max(int(cy - half), 0), min(int(np.ceil(cx + half)), width), min(int(np.ceil(cy + half)), height)))
    return regions


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
