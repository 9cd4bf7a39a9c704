"""The complete pipeline: any picture -> every face -> 68 keypoints per face.

    pipe = KeypointPipeline.from_pretrained()
    for face in pipe.detect("photo.png"):
        print(face.box, face.keypoints.shape, face.score)

By default the path is four steps:

1. **detect**: our learned detector (``detector_architectures.cnn``) gives each face a box, five points and a roll;
2. **crop**: each box becomes the square, padded crop the model was trained on (``data_load.crop_square_from_box``),
   cut upright along the face's roll (``learned_crops.learned_candidate``); a crop that fails is cut again, framed
   higher and larger, then along other rolls (``learned_crops.retried_detections``);
3. **keypoints**: all faces of a picture go through the network as one batch, with their mirror images, and each face
   is re-cropped from its keypoints (upright along its eye line) until its crop stops moving; the keypoints are
   mapped back to the picture's pixels;
4. **checks**: flip error, face score and, for a face cut along a roll, that its keypoints lie along it.

Where the learned detector finds no sure face, the Haar cascades search the picture upright as well
(``haar_search.HaarSearch``). ``--detector haar`` (``from_pretrained(detector="haar")``) puts the cascades first, and
where they find no sure face a wider search (``haar_search.WiderSearch``) looks at padded, equalised and turned
copies of the picture.

Cost: every search reads a copy of the picture at the resolution its face sizes need (``GrayPyramid``), and the
crops and the second stage's patches of a big face are cut from the smallest halving of the picture that is still a
few times finer than they are (``GrayPyramid.source``), not from the photo; a learned detection's first crop is
predicted mirrored only where it may hold a face (``SCREEN_FACE_SCORE``), and the second stage refines the faces
that pass the checks only. A call's work is bounded by counts, never by the
clock, so a picture gives the same faces on an idle and on a busy machine: the learned detector gives at most
``faces.MAX_DETECTIONS`` boxes, at most ``LEARNED_RETRIES`` of them are cut again, each at most ``REFINE_STEPS``
times re-cropped, and the cascades' searches have bounds of their own (``haar_search``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from data_load import invert_matrix, transform_points
from detector_architectures import DEFAULT_DETECTOR, Detection, HaarFaceDetector, make_detector
from detector_architectures.cnn import DETECTOR_NAME as LEARNED_NAME
from detector_architectures.cnn import CNNFaceDetector
from pipeline.faces import (
    ALIGN_MIN_ROLL,
    LEARNED_MIN_SIDE,
    Candidate,
    Face,
    aligned_frame,
    angle_between,
    as_rgb_image,
    detection_roll,
    distinct_faces,
    face_quality,
    face_roll,
    outside_faces,
    picture_box,
    surest,
    unframed_box,
)
from pipeline.haar_search import SIZE_RATIO, WIDER_MAX_FLIP_ERROR, HaarSearch, WiderSearch, default_wider
from pipeline.inference import (
    SHIPPED_MODEL,
    GrayPyramid,
    as_runner,
    crop_matrices,
    crop_shift,
    cut_crops,
    layout_of,
    load_runner,
    predict,
)
from pipeline.learned_crops import LEARNED_RETRIES, RETRY_OFFSETS, learned_candidate, retried_detections
from pipeline.second_stage import Refiner, companion_refiner
from resources.onnx_model import ModelError


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

# A face found in a turned copy of the picture is upright there: its eye line must lie within this many degrees of
# the turn, which rejects most false faces of the turned searches (their keypoints fall at random angles). The
# fast upright pass and the thorough search around its doubts hold to it too (turn 0): around the fast pass's weak
# detections on the upside-down astronaut, the thorough search found her face, whose eye-line re-crops then gave
# keypoints turned half a circle but mirrored (NME_io 1.04); the turned search by 180 degrees gets them right.
ROLL_AGREEMENT = 30.0

# A box of the learned detector whose first crop's face score is below this is not re-cropped: it fails the checks.
# Measured (``inference.predict``, flip averaging, shipped model) on every 3rd course test face and the 303 held-out
# 300-W faces with the detector's box: no face that passes the checks after re-cropping scores below 0.3 on its
# first crop (1 % below 0.54), while 1148 of the learned detector's 1229 boxes (score 0.1 or more) on every 4th
# training picture without faces score below 0.1. The Haar detections are always re-cropped: 2 of their 549 faces
# scored below 0.05 on the first crop and passed after re-cropping.
EARLY_FACE_SCORE = 0.1

# The first crop of a learned detection is predicted mirrored only where its face score unmirrored reaches this;
# below it the crop fails the checks at half the cost (``inference.predict``'s screen). Measured with a scratch script
# on the learned detections' first crops, retries included, in ``evaluate.py --mode pipeline``'s course test
# pictures, the held-out 300-W faces, the 288 measuring pictures without faces, the astronaut turned every 15 degrees
# and ``benchmarks/pipeline_speed.py``'s pictures: no crop that passed the checks scored below 0.039 unmirrored
# (300-W 0.052, turned astronaut 0.21; on the pictures without faces, where every face is false, 0.025), while 85-94 %
# of the crops that failed scored below 0.02. The faces found are the same in each of those sets.
SCREEN_FACE_SCORE = 0.02

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


@dataclass
class KeypointPipeline:
    """Face detector + keypoint model.

    ``runner`` is a model runner (``models.make_runner``: ONNX Runtime or PyTorch) or a PyTorch model;
    ``convention`` is the labelling convention of the keypoints (``models.CONVENTIONS``; None: the model's
    default); ``flip_average`` also predicts each face mirrored and averages; ``refine`` re-crops each face from its
    keypoints (upright along its eye line when it is tilted by ``align_min_roll`` degrees or more) and predicts
    again, ``refine_steps`` times. A detection is kept as a face when it passes the checks: ``max_flip_error``
    drops crops whose flip error is larger (it needs the mirrored pass of ``flip_average``), ``min_face_score``
    drops crops whose face score is lower (for a model with a face score); None switches a check off.
    ``detector``: a ``CNNFaceDetector`` (the learned detector searches first; its faces are kept when they are sure,
    ``learned_sure``, with its nearly sure doubtful ones; the cascades search the picture where none is sure) or
    a ``HaarFaceDetector`` (the cascades search first). ``refine_tolerance``: a face stops being re-cropped once its
    next crop would lie within this fraction of the crop's side of its last one (``REFINE_TOLERANCE``; 0: always
    ``refine_steps``). The cascades' searches (``haar_search.HaarSearch``, ``cascades``) follow ``wider`` (where to
    search again, harder: ``WiderSearch``; None: ``default_wider``, none after the learned detector), ``recheck``
    (their thorough search where their fast pass leaves doubt) and ``size_ratio`` (once a face of side S is found,
    smaller faces are searched down to S / ``size_ratio`` only; None: down to the smallest face). A call's work is
    bounded by counts, not by the clock (module docstring): the same picture gives the same faces whatever the
    machine's load.
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
        if self.wider is None:
            self.wider = default_wider(self.detector)
        if isinstance(self.detector, HaarFaceDetector):
            cascades = self.detector
        else:  # the learned detector first; the cascades, from the same smallest face, where it is unsure
            cascades = HaarFaceDetector(**{key: self.detector.params[key] for key in ("min_face_size", "min_face_fraction")})
        self.cascades = HaarSearch(self, cascades)

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

        With the learned detector (the default) it searches first (``_learned_pass``), and its sure faces are kept
        with its doubtful faces that are nearly sure (``learned_confirmed``). With no sure face, the cascades search the
        whole picture as well. (They also searched every small picture, for a face beside a sure one that the
        detector's sixth stage scored below its threshold: Ed_Smart_51 of the course test pictures, 0.22. Its eighth
        stage scores it 0.37; without that search ``python evaluate.py --mode pipeline`` finds all 770 faces and
        ``benchmarks/faces_in_the_wild.py --split validation --no-faces`` the same 302 of 303 with the same false
        face, in 8 ms a picture instead of 20.) With
        the cascades as the pipeline's detector, they search the picture upright with their fast settings, then again
        with their thorough ones where that leaves doubt (``recheck``). The ``wider`` search follows where it is asked
        for (``default_wider``: by default only after the cascades, when no face passed its stricter check)."""
        pyramid = GrayPyramid(self._gray(image))
        if not isinstance(self.detector, CNNFaceDetector):
            return self.cascades.searched_wider(pyramid, self.cascades.search(pyramid))
        sure, doubtful = self._learned_pass(pyramid)
        confirmed = [face for face in doubtful if self.learned_confirmed(face)]
        if sure and self.wider.when != "always":
            return distinct_faces(sure + confirmed)
        return self.cascades.searched_wider(pyramid, distinct_faces(sure + self.cascades.search(pyramid) + confirmed))

    def _learned_pass(self, pyramid: GrayPyramid) -> tuple[list[Face], list[Face]]:
        """The faces the learned detector finds that pass the checks and are sure (``learned_sure``), and those that
        pass them but are not sure (the doubtful ones), without those lying inside a sure face (``outside_faces``).
        Beside a sure face no other search follows (``detect``). The cascades' thorough search used to look around
        each doubtful face there; once failed crops were cut again (``retried_detections``) it found no face that the
        learned pass missed in ``benchmarks/pipeline_speed.py``, ``benchmarks/faces_in_the_wild.py --split validation
        --no-faces`` or ``evaluate.py --mode pipeline`` (the same 31 of 32, 302 of 303 and 770 of 770 faces, no false
        face more), and it cost the 3024 x 3024 close-up 95 against 71 ms (a badge on the astronaut's suit read as a
        face, face score 0.57) and the 1920 x 1080 group 79 against 78 ms. Two detections of one face count once
        (``distinct_faces``, the better kept): a part of a sure face read as a face of its own (a box a third of its
        side inside a close-up's face, face score 0.89) is no doubt.

        A detection whose crop fails the checks or is not sure is cut again (``retried_detections``), round by round,
        for the ``LEARNED_RETRIES`` surest such detections that do not lie inside a sure face (a part of it,
        ``outside_faces``: the crops along other rolls of a part of the face took the 4288 x 2848 close-up of
        ``benchmarks/pipeline_speed.py`` from 62 to 125 ms)."""
        smallest = self.detector.smallest_face(pyramid.picture.shape)
        least = LEARNED_MIN_SIDE * max(smallest, self.detector.asked_face(pyramid.picture.shape))
        copy, frame = pyramid.level(self.detector.scale_for(smallest))
        found = [d for d in surest(self.detector.detect(copy, smallest * frame[0, 0])) if d.box[2] >= least * frame[0, 0]]
        checked = self._checked_along(pyramid, found, frame)
        unsure = [d for d, face in zip(found, checked) if face is None or not self.learned_sure(face)]
        failed = {id(d) for d, face in zip(found, checked) if face is None}
        for attempt in range(1 + len(RETRY_OFFSETS)):  # until each detection gives a sure face, or its rounds run out
            sure_so_far = [face for face in checked if face is not None and self.learned_sure(face)]
            unsure = [d for d in unsure if outside_faces([unframed_box(d.box, frame)], sure_so_far)][:LEARNED_RETRIES]
            again = [(d, other) for d in unsure for other in retried_detections(d, attempt, id(d) in failed, self.align_min_roll)]
            faces = self._checked_along(pyramid, [other for _, other in again], frame)
            settled = {id(d) for (d, _), face in zip(again, faces) if face is not None and self.learned_sure(face)}
            unsure = [d for d in unsure if id(d) not in settled]
            checked += faces
        faces = distinct_faces(sorted((face for face in checked if face is not None), key=face_quality))
        sure, doubtful = [], []
        for face in faces:
            (sure if self.learned_sure(face) else doubtful).append(face)
        return sure, [face for face in doubtful if outside_faces([face.box], sure)]

    def learned_confirmed(self, face: Face) -> bool:
        """Whether a doubtful face of the learned detector is kept where the cascades find no face: its flip error is
        within the wider search's limit (``WIDER_MAX_FLIP_ERROR``, looser than ``LEARNED_MAX_FLIP_ERROR``) and, for a
        model with a face score, it reaches ``LEARNED_MIN_FACE_SCORE``."""
        return learned_within(face, WIDER_MAX_FLIP_ERROR)

    def _checked_along(self, pyramid: GrayPyramid, detections: Sequence[Detection], frame: np.ndarray) -> list[Face | None]:
        """``checked`` for learned detections in a copy of the picture (``frame``), each cut along its roll
        (``learned_candidate``), whose keypoints must lie along it."""
        candidates = [learned_candidate(d, frame, self.align_min_roll) for d in detections]
        return self.checked(pyramid, candidates, search_roll=[detection_roll(d) for d in detections])

    def learned_sure(self, face: Face) -> bool:
        """Whether a face of the learned detector is kept without the cascades' search: its flip error is at most
        ``LEARNED_MAX_FLIP_ERROR`` and, for a model with a face score, its score reaches ``LEARNED_MIN_FACE_SCORE``."""
        return learned_within(face, LEARNED_MAX_FLIP_ERROR)

    def is_face(self, flip_error: float, face_score: float) -> bool:
        """The checks a detection passes to be kept as a face (NaN measures pass: they were not computed)."""
        if self.min_face_score is not None and face_score < self.min_face_score:
            return False
        return self.max_flip_error is None or not self.flip_average or not flip_error > self.max_flip_error

    @property
    def learned_detector(self) -> CNNFaceDetector:
        """The learned face detector: the pipeline's own when it is one, else one loaded when first needed."""
        if isinstance(self.detector, CNNFaceDetector):
            return self.detector
        if getattr(self, "_learned", None) is None:
            self._learned = CNNFaceDetector()
        return self._learned

    def checked_faces(
        self, pyramid: GrayPyramid, candidates: Sequence[Candidate], max_flip_error: float | None = None,
        search_roll: float | Sequence[float] | None = None,
    ) -> list[Face]:
        """The candidates that pass the checks (and a flip error of at most ``max_flip_error``, when given; and an eye
        line within ``ROLL_AGREEMENT`` degrees of ``search_roll``, when given: the turn of the searched copy, or one
        roll per candidate, ``detection_roll``), as ``Face``s with refined keypoints in picture pixels."""
        return [face for face in self.checked(pyramid, candidates, max_flip_error, search_roll) if face is not None]

    def checked(
        self, pyramid: GrayPyramid, candidates: Sequence[Candidate], max_flip_error: float | None = None,
        search_roll: float | Sequence[float] | None = None,
    ) -> list[Face | None]:
        """``checked_faces``, one entry per candidate: its ``Face``, or None where it failed the checks."""
        if not candidates:
            return []
        rolls = search_roll if isinstance(search_roll, Sequence) else [search_roll] * len(candidates)
        boxes = np.stack([c.detection.box for c in candidates]).astype(np.float32)
        steps = self.refine_steps if self.refine else 0
        # the learned detector's boxes: most of its false ones are told apart by their first crop alone
        early = np.array([EARLY_FACE_SCORE if c.detection.cascade == LEARNED_NAME else np.nan for c in candidates])
        keypoints, flip_errors, face_scores = self._predict_in_frames(pyramid, boxes, [c.frame for c in candidates], steps, early, faces_only=True)
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
        self, pyramid: GrayPyramid, boxes: np.ndarray, frames: Sequence[np.ndarray], steps: int, early_face_score: np.ndarray | None = None,
        faces_only: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict for boxes given in their frames, then re-crop each face from its keypoints up to ``steps`` times:
        a face stops once its next crop would lie within ``refine_tolerance`` of its last (``inference.crop_shift``),
        since the network would see nearly the same crop again. A box whose first crop's face score is below its
        ``early_face_score`` (N,; NaN: none) is not re-cropped (its first answer is returned); its first crop is
        predicted mirrored only where its face score unmirrored reaches ``SCREEN_FACE_SCORE`` (``inference.predict``'s
        screen). The second stage then refines every box's keypoints, or with ``faces_only`` those of the boxes that
        pass ``is_face`` only (``checked`` drops the others: in a group photo most crops are failed detections and
        their retries)."""
        if len(boxes) == 0:
            return np.zeros((0, self.runner.num_keypoints, 2), np.float32), np.zeros(0), np.zeros(0)
        matrices = crop_matrices(boxes, self.input_size, frames)
        screen = None
        if early_face_score is not None and self.min_face_score is not None:  # a screened crop then fails the checks
            screen = np.where(np.isnan(early_face_score), np.nan, SCREEN_FACE_SCORE)
        keypoints, flip_errors, face_scores = self._predict(pyramid, matrices, screen)
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
            chosen = [i for i in range(len(keypoints)) if not faces_only or self.is_face(flip_errors[i], face_scores[i])]
            if chosen:
                keypoints[chosen] = self.second_stage.refine(pyramid, keypoints[chosen], self.convention)
        return keypoints, flip_errors, face_scores

    def _predict(
        self, pyramid: GrayPyramid, matrices: Sequence[np.ndarray], screen: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keypoints (N, 68, 2) in picture pixels, flip errors and face scores (N,) for crops through ``matrices``
        (cut from the pyramid's copies where the face is big, ``GrayPyramid.source``); ``screen``: see
        ``inference.predict``."""
        crops = cut_crops(pyramid, matrices, self.input_size)
        result = predict(self.runner, crops, self.convention, self.flip_average, screen=screen)
        keypoints = np.stack([transform_points(p, invert_matrix(m)) for p, m in zip(result.keypoints, matrices)])
        return keypoints, result.flip_error, result.face_score


def learned_within(face: Face, max_flip_error: float) -> bool:
    """Whether a face's flip error is at most ``max_flip_error`` and, for a model with a face score, its face score
    reaches ``LEARNED_MIN_FACE_SCORE`` (unmeasured checks pass)."""
    flip_ok = face.flip_error is None or face.flip_error <= max_flip_error
    return flip_ok and (face.face_score is None or face.face_score >= LEARNED_MIN_FACE_SCORE)
