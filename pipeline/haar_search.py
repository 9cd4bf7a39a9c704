"""The Haar cascades' searches: what ``--detector haar`` runs first, and where the learned detector leaves doubt.

The cascades find upright, frontal faces in a limited range of sizes, so their search is several passes:

1. **fast pass** (``HaarSearch.search``): big faces first on a small working copy, then the smaller ones down to a
   quarter of the biggest face found (``SIZE_RATIO``);
2. **thorough search** (``HaarSearch.rechecked``): the cascades' thorough settings around the fast pass's weak or
   failed detections, or over the whole picture when it detected nothing;
3. **wider search** (``WiderSearch``, ``HaarSearch.searched_wider``): where no face is sure, the learned detector and
   the cascades look at a padded, equalised copy and at turned copies, and the network itself looks for close-ups
   (``grid_boxes``).

Every face they find goes through the pipeline's crops and checks (``KeypointPipeline.checked``). Each pass works on
a copy of bounded size and checks at most ``faces.MAX_DETECTIONS`` detections, the thorough search looks around at
most ``MAX_DOUBTS`` boxes and the network's search at most ``NETWORK_SEARCH_MAX_POSITIONS`` positions along a side:
the work is bounded by counts, never by the clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np

from data_load import compose_matrices, transform_points
from detector_architectures import THOROUGH_PARAMS, Detection, HaarFaceDetector
from detector_architectures.cnn import CNNFaceDetector
from detector_architectures.haar import suppress
from pipeline.faces import (
    LEARNED_MIN_SIDE,
    MAX_DETECTIONS,
    Candidate,
    Face,
    detection_roll,
    distinct_faces,
    face_quality,
    outside_faces,
    shifting_frame,
    surest,
    turning_frame,
    unframed_box,
)
from pipeline.inference import GrayPyramid, face_crops, layout_of, predict

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

# The wider search (``WiderSearch``) looks at copies of the picture turned by these angles in degrees (counter-
# clockwise): the upright search finds faces rolled by up to about 15-20 degrees either way, so steps of 30
# cover every roll from -105 to 105 degrees, and 180 the upside-down ones.
WIDER_ROLLS = (-30.0, 30.0, -60.0, 60.0, -90.0, 90.0, 180.0)

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
# small working copy (``HaarSearch.search``); the second pass looks for the smaller ones, up to
# ``COARSE_OVERLAP`` times that size (overlapping the first pass's range, since the cascade's scales are steps apart).
COARSE_FRACTION = 0.2
COARSE_OVERLAP = 1.25
# ... where the search would read more than this many working pixels; a smaller picture is searched in one pass
# (a 640 x 480 picture from 40-pixel faces: the second pass would cost nearly what one pass does).
SINGLE_PASS_PIXELS = 640 * 480

# Once a face of side S is found, the fast pass searches faces down to S / SIZE_RATIO only
# (``KeypointPipeline.size_ratio``; None: down to the detector's smallest face whatever it found).
SIZE_RATIO = 4.0


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


class HaarSearch:
    """The cascades' searches of a ``KeypointPipeline`` (``pipeline``), with its cascades (``detector``: the
    pipeline's own, or the learned detector's smallest face when it searches first) in their fast, thorough
    (``THOROUGH_PARAMS``) and wider (``WiderSearch.detector_params``) settings; its faces go through the pipeline's
    crops and checks. The pipeline's ``wider``, ``recheck`` and ``size_ratio`` say how far it searches."""

    def __init__(self, pipeline: Any, detector: HaarFaceDetector) -> None:
        self.pipeline = pipeline
        self.detector = detector
        self.wider_detector = HaarFaceDetector(**{**detector.params, **pipeline.wider.detector_params})
        self.thorough_detector = HaarFaceDetector(**{**detector.params, **THOROUGH_PARAMS})

    @property
    def wider(self) -> WiderSearch:
        return self.pipeline.wider

    @property
    def recheck(self) -> bool:
        return self.pipeline.recheck

    @property
    def size_ratio(self) -> float | None:
        return self.pipeline.size_ratio

    def search(self, pyramid: GrayPyramid) -> list[Face]:
        """The upright faces the Haar cascades find: the fast pass by face sizes (big faces first, then the smaller
        ones down to ``size_ratio``, ``COARSE_FRACTION``), and the thorough search where it leaves doubt."""
        gray = pyramid.picture
        smallest = self.detector.smallest_face(gray.shape)
        single = self.working_pixels(gray.shape, smallest) <= SINGLE_PASS_PIXELS
        coarse = smallest if single else max(smallest, COARSE_FRACTION * min(gray.shape))
        faces, doubtful, detected = self.fast_pass(pyramid, coarse, None)
        if smallest < coarse:
            if self.recheck and doubtful:  # a big face the fast pass was unsure of sets the size of the next pass too
                faces, doubtful = distinct_faces(faces + self.rechecked(pyramid, doubtful)), []
            if faces and self.size_ratio:
                smallest = max(smallest, max(float(face.box[2]) for face in faces) / self.size_ratio)
        if smallest < coarse:
            # the other cascades only where nothing was found and the search is small (they double its cost)
            secondary = not faces and self.working_pixels(gray.shape, smallest) <= SINGLE_PASS_PIXELS
            finer, more_doubtful, finer_detected = self.fast_pass(pyramid, smallest, coarse * COARSE_OVERLAP, secondary=secondary)
            faces, doubtful, detected = distinct_faces(faces + finer), doubtful + more_doubtful, detected or finer_detected
        doubtful = outside_faces(doubtful, faces)
        if self.recheck and (doubtful or not detected):
            faces = distinct_faces(faces + self.rechecked(pyramid, doubtful if detected else None))
        return faces

    def searched_wider(self, pyramid: GrayPyramid, faces: list[Face]) -> list[Face]:
        """``faces`` with those of the wider search where it is asked for (by default: no face passed its check)."""
        if self.wider.when == "always" or (self.wider.when == "if_unsure" and not any(self.sure(f) for f in faces)):
            # upright faces first, but an unsure one gives way to a sure face of the wider search in its place (an
            # upside-down face read upright, whose turned copy gives the true keypoints)
            faces = distinct_faces(sorted(faces + self.wider_faces(pyramid), key=lambda face: not self.sure(face)))
        return faces

    def working_pixels(self, shape: tuple[int, ...], min_face: float) -> float:
        """How many pixels the detector reads to search a picture of ``shape`` for faces of ``min_face`` pixels and
        more (its working picture's area)."""
        scale = min(self.detector.scale_for(min_face), 1.0)
        return shape[0] * shape[1] * scale * scale

    def search_copy(self, pyramid: GrayPyramid, min_face: float) -> tuple[np.ndarray, np.ndarray]:
        """The pyramid's copy that a search for faces of at least ``min_face`` pixels reads (at most twice the size
        the detector works at, ``working_face_size`` pixels for that face), and its frame."""
        return pyramid.level(self.detector.scale_for(min_face))

    def fast_pass(
        self, pyramid: GrayPyramid, low: float, high: float | None, **options: Any
    ) -> tuple[list[Face], list[np.ndarray], bool]:
        """One size range of the fast pass (faces of ``low`` to ``high`` pixels; None: no limit; ``options`` for the
        detector, e.g. ``secondary`` of ``HaarFaceDetector.detect``): the faces that pass the checks, the boxes
        (picture pixels) the thorough search should look around (Haar detections of at most ``SETTLED_MIN_SCORE``
        windows, or that failed the checks), and whether anything was detected."""
        copy, frame = self.search_copy(pyramid, low)
        scale = frame[0, 0]
        found = self.detector.detect(copy, low * scale, None if high is None else high * scale, **options)
        candidates = [Candidate(d, frame) for d in surest(found)]
        trusted = [c.detection.score > SETTLED_MIN_SCORE or not self.recheck for c in candidates]
        strong = [c for c, sure in zip(candidates, trusted) if sure]
        checked = self.pipeline.checked(pyramid, strong, search_roll=0.0)
        doubtful = [unframed_box(c.detection.box, frame) for c, sure in zip(candidates, trusted) if not sure]
        doubtful += [unframed_box(c.detection.box, frame) for c, face in zip(strong, checked) if face is None]
        return [face for face in checked if face is not None], doubtful, bool(candidates)

    def sure(self, face: Face) -> bool:
        """Whether a face passes the wider search's stricter flip-error check (without one: every face)."""
        limit = self.wider.max_flip_error
        return limit is None or face.flip_error is None or face.flip_error <= limit

    def rechecked(self, pyramid: GrayPyramid, doubtful: Sequence[np.ndarray] | None) -> list[Face]:
        """The faces the thorough upright search finds around the ``doubtful`` boxes (x, y, w, h, picture pixels):
        in each box's ``doubtful_regions``, faces of ``DOUBT_SIZES`` times its side, read from the pyramid's copy
        those sizes need (the ``MAX_DOUBTS`` largest boxes only, ``most_doubtful``); None: the whole picture, from
        the detector's smallest face or, in a big picture, from the face size a working picture of
        ``SINGLE_PASS_PIXELS`` holds."""
        gray = pyramid.picture
        if doubtful is None:  # faces of every size, but on a working picture of at most SINGLE_PASS_PIXELS
            smallest = self.detector.smallest_face(gray.shape)
            smallest *= max(1.0, np.sqrt(self.working_pixels(gray.shape, smallest) / SINGLE_PASS_PIXELS))
            copy, frame = self.search_copy(pyramid, smallest)
            found = [Candidate(d, frame) for d in surest(self.thorough_detector.detect(copy, smallest * frame[0, 0]))]
            return self.pipeline.checked_faces(pyramid, found, search_roll=0.0)
        found = []
        doubtful = most_doubtful(doubtful)
        for box, region in zip(doubtful, doubtful_regions(doubtful, gray.shape)):
            side = float(max(box[2], box[3]))
            low = max(DOUBT_SIZES[0] * side, self.detector.params["min_face_size"] or 0)
            copy, frame = self.search_copy(pyramid, low)
            (x0, y0), (x1, y1) = np.round(transform_points(np.array(region, np.float64).reshape(2, 2) - 0.5, frame) + 0.5).astype(int)
            cut = shifting_frame(-x0, -y0)
            scale = frame[0, 0]
            detections = self.thorough_detector.detect(copy[y0:y1, x0:x1], low * scale, DOUBT_SIZES[1] * side * scale)
            found += [Candidate(d, compose_matrices(cut, frame)) for d in detections]
        found = sorted(found, key=lambda c: -c.detection.score)[:MAX_DETECTIONS]
        return self.pipeline.checked_faces(pyramid, found, search_roll=0.0)

    def search_steps(self, pyramid: GrayPyramid) -> list[tuple[str, Any]]:
        """The ``wider`` search's steps in the order they run, each (name, function of no argument giving its
        ``Face``s): the padded (and equalised) copy upright, the network's search for close-ups, then the copy
        turned by each of ``wider.rolls``; with the learned detector (``WiderSearch.detector="cnn"``) its own
        padded and turned searches first (``learned_steps``), then the cascades' padded search and the network's
        search, named "cascades ...", which run only where the learned ones found nothing. All work on the picture
        shrunk to ``wider.max_side``."""
        gray = pyramid.picture
        long = max(gray.shape)
        small, shrink = pyramid.resized(1.0 if self.wider.max_side is None else self.wider.max_side / long)
        strict = self.wider.max_flip_error
        searched = self.searched(small)

        def upright() -> list[Face]:
            padded, pad_frame = padded_copy(small, self.wider.pad)
            padded_searched = self.searched(padded)
            frame = compose_matrices(pad_frame, shrink)
            return self.pipeline.checked_faces(pyramid, [Candidate(d, frame) for d in surest(self.wider_detector.detect(padded_searched))], strict)

        def turned(angle: float) -> list[Face]:
            copy, frame = turned_copy(searched, angle)
            frame = compose_matrices(frame, shrink)
            strong = [Candidate(d, frame) for d in surest(self.thorough_detector.detect(copy)) if d.score >= TURNED_MIN_SCORE]
            return self.pipeline.checked_faces(pyramid, strong, strict, search_roll=angle)

        cascades: list[tuple[str, Any]] = [("padded upright", upright), ("network", lambda: self.network_faces(pyramid, strict))]
        if self.wider.detector == "cnn":  # the cascades' padded, equalised search after the learned one (dark faces)
            return self.learned_steps(pyramid, small, shrink) + [("cascades " + name, step) for name, step in cascades]
        return cascades + [(f"turned {angle:g}", lambda angle=angle: turned(angle)) for angle in self.wider.rolls]

    def learned_steps(self, pyramid: GrayPyramid, small: np.ndarray, shrink: np.ndarray) -> list[tuple[str, Any]]:
        """``search_steps`` with the learned detector (``WiderSearch.detector="cnn"``): it searches the padded,
        equalised copy and each turned copy of ``small`` (the picture through the frame ``shrink``), and its faces must
        pass the wider search's flip check, lie along their search and, for a model with a face score, reach
        ``NETWORK_SEARCH_MIN_FACE_SCORE`` (the network search's rule: the learned detector proposes more boxes than
        the cascades, false ones among them)."""
        learned = self.pipeline.learned_detector
        searched = self.searched(small)
        smallest = LEARNED_MIN_SIDE * learned.params["min_face_size"] * shrink[0, 0]  # in the copy's pixels

        def step(copy: np.ndarray, frame: np.ndarray, roll: float) -> list[Face]:
            found = [Candidate(d, compose_matrices(frame, shrink)) for d in surest(learned.detect(copy)) if d.box[2] >= smallest]
            rolls = [roll + detection_roll(c.detection) for c in found]  # the copy's turn, and the face's in the copy
            faces = self.pipeline.checked_faces(pyramid, found, self.wider.max_flip_error, search_roll=rolls)
            return [f for f in faces if f.face_score is None or f.face_score >= NETWORK_SEARCH_MIN_FACE_SCORE]

        steps: list[tuple[str, Any]] = [("padded upright", lambda: step(*padded_copy(searched, self.wider.pad), 0.0))]
        steps += [(f"turned {angle:g}", lambda angle=angle: step(*turned_copy(searched, angle), angle)) for angle in self.wider.rolls]
        return steps

    def wider_faces(self, pyramid: GrayPyramid) -> list[Face]:
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

    def network_faces(
        self, pyramid: GrayPyramid, max_flip_error: float | None, min_face_score: float = NETWORK_SEARCH_MIN_FACE_SCORE
    ) -> list[Face]:
        """The close-ups the network finds on its own (``WiderSearch.network``, ``grid_boxes``) with a face score of
        at least ``min_face_score``: none for a model without a face score."""
        if not (self.wider.network and layout_of(self.pipeline.runner).face_score):
            return []
        boxes = grid_boxes(pyramid.picture.shape, self.detector.params["min_face_size"] or 0)
        if not len(boxes):
            return []
        scores = predict(self.pipeline.runner, face_crops(pyramid, boxes, self.pipeline.input_size)[0], self.pipeline.convention).face_score
        likely = [Detection(box, score) for box, score in zip(boxes, scores) if score >= 0.5]
        best = suppress(sorted(likely, key=lambda d: -d.score))[:NETWORK_SEARCH_CANDIDATES]
        found = self.pipeline.checked_faces(pyramid, [Candidate(d, np.eye(2, 3)) for d in best], max_flip_error)
        return [face for face in found if face.face_score is not None and face.face_score >= min_face_score]

    def searched(self, gray: np.ndarray) -> np.ndarray:
        return equalized(gray) if self.wider.equalize else gray


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


def default_wider(detector: HaarFaceDetector | CNNFaceDetector) -> WiderSearch:
    """The wider search a pipeline uses after ``detector`` unless told: none after the learned detector, which finds
    faces at every roll, size and light itself; where unsure (``WiderSearch()``) after the cascades, which find
    upright faces only. Measured with the learned detector first, without and with the wider search where unsure:
    the held-out 300-W faces (``benchmarks/faces_in_the_wild.py --split validation --no-faces``) 302 of 303 either
    way, with 1 false face on the 288 pictures without faces instead of 4 (the wider search's turned copies read
    background strips as faces); ``benchmarks/pipeline_speed.py`` 31 of 32 either way, no false face, median and
    worst 45 / 114 ms instead of 48 / 312 ms (the picture without faces 26 ms instead of 312)."""
    return WiderSearch(when="never") if isinstance(detector, CNNFaceDetector) else WiderSearch()


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
