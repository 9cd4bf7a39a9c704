"""Video: keypoints for every frame, following each face from its last keypoints between detections.

    tracker = FaceTracker(KeypointPipeline.from_pretrained())
    for frame in frames:
        faces = tracker.update(frame)

``FaceTracker`` re-crops each followed face from its last keypoints (``KeypointPipeline.follow``), drops it when a
check fails, and runs a detector only to pick up new faces; its keypoints are smoothed with a One Euro filter.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from data_load import haar_box_from_keypoints, keypoint_box
from detector_architectures import THOROUGH_PARAMS, HaarFaceDetector, box_iou
from pipeline.faces import MAX_DETECTIONS, Face, as_rgb_image, surest
from pipeline.keypoint_pipeline import FLIP_ERROR_NO_FACE, KeypointPipeline

# A followed face whose keypoint box holds less detail than this (standard deviation of its gray levels) is lost.
# A flat region, such as a plain wall after the face has left, is symmetric, so the flip check cannot reject it.
# The 770 test faces: minimum 14.3, 1st percentile 17.5.
MIN_FACE_CONTRAST = 6.0


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


# The detector the tracker uses to look for new faces while it follows others: the tuned detector (the thorough
# settings, ``THOROUGH_PARAMS``), searching the frame at half size. On the 640 x 480 frames of
# benchmarks/video_fps.py (one thread) it takes 24 ms instead of 76 ms and finds the moving face in 27 % of the
# frames instead of 70 %, enough for a face that stays a while. While no face is followed, the pipeline's thorough
# detector searches every frame, so a face is picked up quickly. Looser grouping (minNeighbors 2) found the face in
# 58 % of the frames but put a second, false face on the astronaut portrait that passed the flip check.
VIDEO_DETECTOR = {**THOROUGH_PARAMS, "max_side": 320}

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
    face_score: float | None = None
    smoother: OneEuroFilter = field(default_factory=OneEuroFilter)


class FaceTracker:
    """Keypoints for every frame of a video at a fraction of the cost of detecting in each frame.

    Each frame, every followed face is re-cropped from its last keypoints (the crop the model knows best) and
    predicted again, then re-cropped from the new keypoints ``follow_steps`` times. It is lost when its crop fails
    the flip-error check, when its keypoint box jumps or shrinks implausibly, or when the box has lost all detail
    (``MIN_FACE_CONTRAST``). While no face is followed, the pipeline's detector with its thorough settings
    (``THOROUGH_PARAMS``) searches every frame; while faces
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

    def _is_face(self, flip_error: float, face_score: float) -> bool:
        """The pipeline's face score check (``MIN_FACE_SCORE``, for a model with a face score) and this tracker's
        flip-error check (NaN measures pass: they were not computed)."""
        min_score = self.pipeline.min_face_score
        if min_score is not None and face_score < min_score:
            return False
        return self.max_flip_error is None or not flip_error > self.max_flip_error

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
        previous = np.stack([t.keypoints for t in self.tracks])
        keypoints, flip_errors, face_scores = self.pipeline.follow(frame, previous, self.follow_steps)
        kept = []
        for track, points, flip_error, face_score in zip(self.tracks, keypoints, flip_errors, face_scores):
            if (
                self._plausible(track.keypoints, points)
                and self._is_face(flip_error, face_score)
                and face_contrast(frame, points) >= MIN_FACE_CONTRAST
            ):
                track.keypoints, track.box, track.flip_error = points, haar_box_from_keypoints(points), float(flip_error)
                track.face_score = float(face_score)
                kept.append(track)
        lost = len(kept) < len(self.tracks)
        self.tracks = kept
        return lost

    def _detect(self, frame: np.ndarray) -> None:
        """Start following the faces the detector finds that no track covers yet (if they pass the flip check)."""
        self.frames_since_detection = 0
        detector = self.detector if self.tracks else self.pipeline.cascades.thorough_detector
        room = MAX_DETECTIONS - len(self.tracks)  # at most MAX_DETECTIONS faces followed
        new = [d for d in surest(detector.detect(frame)) if all(box_iou(d.box, t.box) < 0.3 for t in self.tracks)][:room]
        if not new:
            return
        keypoints, flip_errors, face_scores = self.pipeline.predict_boxes(frame, [d.box for d in new], refine=True)
        for detection, points, flip_error, face_score in zip(new, keypoints, flip_errors, face_scores):
            if self._is_face(flip_error, face_score):
                self.tracks.append(Track(points, haar_box_from_keypoints(points), detection.score, float(flip_error), float(face_score)))

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
            face_score = None if track.face_score is None or np.isnan(track.face_score) else track.face_score
            faces.append(
                Face(track.box, points.astype(np.float32), track.score, flip_error, face_score, self.pipeline.convention, self.pipeline.model_name or None)
            )
        return faces


def face_contrast(image: np.ndarray, keypoints: np.ndarray) -> float:
    """Standard deviation of the gray levels inside the keypoints' box (0 when the box is outside the picture)."""
    x, y, w, h = np.round(keypoint_box(keypoints)).astype(int)
    region = image[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)]
    if region.size == 0:
        return 0.0
    return float(cv2.cvtColor(region, cv2.COLOR_RGB2GRAY).std())
