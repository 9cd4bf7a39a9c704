"""The complete pipeline: any picture -> every face -> 68 keypoints per face.

    pipe = KeypointPipeline.from_pretrained()
    for face in pipe.detect("photo.png"):
        print(face.box, face.keypoints.shape, face.score)

Faces are found by the Haar detector in ``detector_architectures``; each face box becomes the same square,
padded crop the model was trained on (``data_load.crop_square_from_box``), all faces of a picture go through
the network as one batch, and the keypoints are mapped back to the picture's pixels.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from data_load import DataError, haar_box_from_keypoints, invert_matrix, keypoint_box, read_image, to_rgb_uint8, transform_points
from detector_architectures import HaarFaceDetector, box_iou
from inference import SHIPPED_MODEL, face_crops, layout_of, predict
from models import ModelError, TorchRunner, make_runner

MAX_PIXELS = 100_000_000  # refuse pictures larger than this (about 10000 x 10000): they are almost surely a mistake

# A crop whose flip error (``inference.predict``: how much the keypoints predicted on the crop
# and on its mirror disagree, as a fraction of the crop side) exceeds this holds no face. Measured by
# ``benchmarks/flip_error.py`` with the shipped model: on the 770 test faces the flip error is at most 0.018 in
# 99 % of them (median 0.008), and none exceeds 0.025, whether cropped from the keypoints or from the detector
# after re-cropping; 0.025 rejects two thirds of background crops of the same pictures and of random boxes on
# pictures without faces, and half of the false detections of a loose detector there (0.020 would reject 0.5 %
# of faces).
FLIP_ERROR_NO_FACE = 0.025

# How many times ``refine`` re-crops a face from its keypoints and predicts again. The network, trained on crops
# framed from true keypoints, under-reacts to a badly framed crop, so each re-crop moves it closer. Measured on the
# 770 test pictures (``python evaluate.py --mode pipeline --refine-steps N``, flip averaging on): NME_io 0.0598
# without re-cropping, then 0.0494 / 0.0459 / 0.0445 / 0.0440 / 0.0437 after 1-5 re-crops. Three keep most of the
# gain; each costs one more pass per face (two with flip averaging), small beside the detector's time.
REFINE_STEPS = 3

# A followed face whose keypoint box holds less detail than this (standard deviation of its gray levels) is lost.
# A flat region, such as a plain wall after the face has left, is symmetric, so the flip check cannot reject it.
# The 770 test faces: minimum 14.3, 1st percentile 17.5.
MIN_FACE_CONTRAST = 6.0


@dataclass
class Face:
    """One face: its detector box (x, y, w, h), its (68, 2) keypoints in picture pixels, the detector's score, the
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
    keypoints and predicts again, ``refine_steps`` times; ``max_flip_error`` drops detections whose crop fails the
    flip-error check (many false detections, hardly ever a face), None keeps them all; it needs the mirrored pass
    of ``flip_average`` and does nothing without it.
    """

    runner: Any
    detector: HaarFaceDetector = field(default_factory=HaarFaceDetector)
    flip_average: bool = True
    refine: bool = True
    refine_steps: int = REFINE_STEPS
    max_flip_error: float | None = FLIP_ERROR_NO_FACE
    convention: str | None = None

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike | None = None,
        detector: HaarFaceDetector | None = None,
        backend: str = "auto",
        threads: int | None = None,
        **options: Any,
    ) -> "KeypointPipeline":
        """The shipped model from ``saved_models/`` (or the model file at ``path``) with the Haar detector.

        ``backend``: "auto" (ONNX Runtime when available, else PyTorch), "onnx" or "torch"; ``threads`` caps
        the CPU threads the model uses.
        """
        runner = make_runner(path or SHIPPED_MODEL, backend=backend, threads=threads)
        runner.meta = {**runner.meta, "file": Path(path or SHIPPED_MODEL).name}
        if runner.num_keypoints != 68:
            raise ModelError(f"{path} predicts {runner.num_keypoints} keypoints; the pipeline needs a 68-point model.")
        return cls(runner, detector or HaarFaceDetector(), **options)

    def __post_init__(self) -> None:
        if isinstance(self.runner, torch.nn.Module):
            self.runner = TorchRunner(self.runner)
        self.convention = layout_of(self.runner).resolve(self.convention)

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
        """(N, 68, 2) keypoints in picture pixels for N boxes, with the flip error (N,) and the face score (N,) of
        each face's last crop (NaN where the pipeline or the model does not compute them)."""
        image = as_rgb_image(image)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, self.runner.num_keypoints, 2), np.float32), np.zeros(0), np.zeros(0)
        result = self._predict(image, boxes)
        if self.refine if refine is None else refine:
            for _ in range(self.refine_steps if refine_steps is None else refine_steps):
                result = self._predict(image, np.array([haar_box_from_keypoints(k) for k in result[0]]))
        return result

    def detect(self, image: np.ndarray | str | os.PathLike) -> list[Face]:
        """Every face in the picture with its keypoints; an empty list when there is none."""
        image = as_rgb_image(image)
        detections = self.detector.detect(image)
        keypoints, flip_errors, face_scores = self.predict_boxes(image, [d.box for d in detections])
        faces = [
            self._face(d.box, k, d.score, e, s) for d, k, e, s in zip(detections, keypoints, flip_errors, face_scores)
        ]
        if self.max_flip_error is not None and self.flip_average:
            faces = [f for f in faces if f.flip_error <= self.max_flip_error]
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

    def _predict(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        crops, matrices = face_crops(image, boxes, self.input_size)
        result = predict(self.runner, crops, self.convention, self.flip_average)
        keypoints = np.stack([transform_points(p, invert_matrix(m)) for p, m in zip(result.keypoints, matrices)])
        return keypoints, result.flip_error, result.face_score


def face_contrast(image: np.ndarray, keypoints: np.ndarray) -> float:
    """Standard deviation of the gray levels inside the keypoints' box (0 when the box is outside the picture)."""
    x, y, w, h = np.round(keypoint_box(keypoints)).astype(int)
    region = image[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)]
    if region.size == 0:
        return 0.0
    return float(cv2.cvtColor(region, cv2.COLOR_RGB2GRAY).std())


# ---------------------------------------------------------------------------------------------------------
# Moving pictures: follow faces between detections
# ---------------------------------------------------------------------------------------------------------
class OneEuroFilter:
    """Adaptive low-pass filter (Casiez et al., 2012): smooths jitter when still, follows quickly when moving."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5, derivative_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.derivative_cutoff = min_cutoff, beta, derivative_cutoff
        self.value: np.ndarray | None = None
        self.derivative: np.ndarray | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, value: np.ndarray, dt: float) -> np.ndarray:
        if self.value is None:
            self.value, self.derivative = value.copy(), np.zeros_like(value)
            return value
        derivative = (value - self.value) / dt
        a_d = self._alpha(self.derivative_cutoff, dt)
        self.derivative = a_d * derivative + (1 - a_d) * self.derivative
        cutoff = self.min_cutoff + self.beta * np.abs(self.derivative)
        a = self._alpha(cutoff, dt)
        self.value = a * value + (1 - a) * self.value
        return self.value


# The detector the tracker uses to look for new faces while it follows others: the tuned detector, searching the
# frame at half size. On the 640 x 480 frames of benchmarks/video_fps.py (one thread) it takes 24 ms instead of
# 76 ms and finds the moving face in 27 % of the frames instead of 70 %, enough for a face that stays a while.
# While no face is followed, the pipeline's own detector searches every frame, so a face is picked up quickly.
# Looser grouping (minNeighbors 2) found the face in 58 % of the frames but put a second, false face on the
# astronaut portrait that passed the flip check.
VIDEO_DETECTOR = {"max_side": 320}

# How many times a followed face is re-cropped from the keypoints just predicted, after the crop from the previous
# frame's keypoints: the network under-reacts to a face that has moved within its crop, so one pass lags behind
# a moving face. Measured with the video of benchmarks/video_fps.py (one thread, NME_io against the moved ground
# truth), 0 / 1 / 2 / 3 re-crops: 300 frames, 0.0638 / 0.0597 / 0.0594 / 0.0594 at 3.8 / 5.2 / 6.8 / 8.2 ms per
# frame; the same motion squeezed into 60 frames, 0.131 / 0.145 / 0.095 / 0.104 with the face kept in
# 73 / 77 / 83 / 88 % of the frames.
FOLLOW_STEPS = 2


@dataclass
class Track:
    keypoints: np.ndarray
    box: np.ndarray
    score: float | None
    flip_error: float | None = None
    smoother: OneEuroFilter = field(default_factory=OneEuroFilter)


class FaceTracker:
    """Keypoints for every frame of a video at a fraction of the cost of detecting in each frame.

    Each frame, every followed face is re-cropped from its last keypoints (the crop the model knows best) and
    predicted again, then re-cropped from the new keypoints ``follow_steps`` times. It is lost when its crop fails
    the flip-error check, when its keypoint box jumps or shrinks implausibly, or when the box has lost all detail
    (``MIN_FACE_CONTRAST``). While no face is followed, the pipeline's detector searches every frame; while faces
    are followed, the cheaper ``detector`` (by default ``VIDEO_DETECTOR``) looks for new ones every
    ``redetect_every`` frames and as soon as a face is lost. A face the detector misses for a while (turned,
    tilted) is still followed. New faces must pass the flip-error check too. Keypoints are smoothed with a One
    Euro filter.
    """

    def __init__(
        self,
        pipeline: KeypointPipeline,
        redetect_every: int = 15,
        fps: float = 30.0,
        smooth: bool = True,
        detector: HaarFaceDetector | None = None,
        max_flip_error: float | None = FLIP_ERROR_NO_FACE,
        follow_steps: int = FOLLOW_STEPS,
    ) -> None:
        self.pipeline = pipeline
        self.follow_steps = follow_steps
        self.detector = detector or HaarFaceDetector(**VIDEO_DETECTOR)
        self.redetect_every = redetect_every
        self.dt = 1.0 / fps
        self.smooth = smooth
        self.max_flip_error = max_flip_error
        self.tracks: list[Track] = []
        self.frames_since_detection = 0

    def _is_face(self, flip_error: float) -> bool:
        return self.max_flip_error is None or np.isnan(flip_error) or flip_error <= self.max_flip_error

    @staticmethod
    def _plausible(previous: np.ndarray, current: np.ndarray) -> bool:
        before, after = haar_box_from_keypoints(previous), haar_box_from_keypoints(current)
        scale = after[2] / max(before[2], 1e-6)
        shift = np.hypot(*(after[:2] + after[2:] / 2 - before[:2] - before[2:] / 2)) / max(before[2], 1e-6)
        return 0.7 < scale < 1.4 and shift < 0.35

    def _follow(self, frame: np.ndarray) -> bool:
        """Re-crop every followed face from its last keypoints and predict again; returns True if one was lost."""
        if not self.tracks:
            return False
        boxes = [haar_box_from_keypoints(t.keypoints) for t in self.tracks]
        keypoints, flip_errors = self.pipeline.keypoints_and_flip_errors(
            frame, boxes, refine=True, refine_steps=self.follow_steps
        )
        kept = []
        for track, points, flip_error in zip(self.tracks, keypoints, flip_errors):
            if (
                self._plausible(track.keypoints, points)
                and self._is_face(flip_error)
                and face_contrast(frame, points) >= MIN_FACE_CONTRAST
            ):
                track.keypoints, track.box, track.flip_error = points, haar_box_from_keypoints(points), float(flip_error)
                kept.append(track)
        lost = len(kept) < len(self.tracks)
        self.tracks = kept
        return lost

    def _detect(self, frame: np.ndarray) -> None:
        """Start following the faces the detector finds that no track covers yet (if they pass the flip check)."""
        self.frames_since_detection = 0
        detector = self.detector if self.tracks else self.pipeline.detector
        new = [d for d in detector.detect(frame) if all(box_iou(d.box, t.box) < 0.3 for t in self.tracks)]
        if not new:
            return
        keypoints, flip_errors = self.pipeline.keypoints_and_flip_errors(frame, [d.box for d in new], refine=True)
        for detection, points, flip_error in zip(new, keypoints, flip_errors):
            if self._is_face(flip_error):
                self.tracks.append(Track(points, haar_box_from_keypoints(points), detection.score, float(flip_error)))

    def update(self, frame: np.ndarray) -> list[Face]:
        """The faces of the next frame (RGB uint8)."""
        frame = as_rgb_image(frame)
        lost = self._follow(frame)
        self.frames_since_detection += 1
        if lost or not self.tracks or self.frames_since_detection >= self.redetect_every:
            self._detect(frame)
        faces = []
        for track in self.tracks:
            points = track.smoother(track.keypoints, self.dt) if self.smooth else track.keypoints
            flip_error = None if track.flip_error is None or np.isnan(track.flip_error) else track.flip_error
            faces.append(
                Face(track.box, points.astype(np.float32), track.score, flip_error, None, self.pipeline.convention, self.pipeline.model_name or None)
            )
        return faces
