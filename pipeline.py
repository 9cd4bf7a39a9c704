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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from data_load import (
    DataError,
    haar_box_from_keypoints,
    invert_matrix,
    read_image,
    read_keypoints_csv,
    resolve_data_dir,
    split_paths,
    to_rgb_uint8,
    transform_points,
)
from detector_architectures import HaarFaceDetector, box_iou, match_face
from evaluate import SHIPPED_MODEL, face_crops, nme_interocular, predict_crops, summarize
from models import ModelError, TorchRunner, make_runner

MAX_PIXELS = 100_000_000  # refuse pictures larger than this (about 10000 x 10000): they are almost surely a mistake


@dataclass
class Face:
    """One face: its detector box (x, y, w, h), its (68, 2) keypoints in picture pixels, the detector's score."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float | None = None


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
    ``flip_average`` also predicts each face mirrored and averages; ``refine`` re-crops each face from its first
    keypoints and predicts again.
    """

    runner: Any
    detector: HaarFaceDetector = field(default_factory=HaarFaceDetector)
    flip_average: bool = True
    refine: bool = True

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
        if runner.num_keypoints != 68:
            raise ModelError(f"{path} predicts {runner.num_keypoints} keypoints; the pipeline needs a 68-point model.")
        return cls(runner, detector or HaarFaceDetector(), **options)

    def __post_init__(self) -> None:
        if isinstance(self.runner, torch.nn.Module):
            self.runner = TorchRunner(self.runner)

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
        image = as_rgb_image(image)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, self.runner.num_keypoints, 2), np.float32)
        keypoints = self._predict(image, boxes)
        if self.refine if refine is None else refine:
            keypoints = self._predict(image, np.array([haar_box_from_keypoints(k) for k in keypoints]))
        return keypoints

    def keypoints_for_box(self, image: np.ndarray | str | os.PathLike, box: Sequence[float]) -> np.ndarray:
        """(68, 2) keypoints for one face box (x, y, w, h) in the Haar detector's convention."""
        return self.keypoints_for_boxes(image, [box])[0]

    def detect(self, image: np.ndarray | str | os.PathLike) -> list[Face]:
        """Every face in the picture with its keypoints; an empty list when there is none."""
        image = as_rgb_image(image)
        detections = self.detector.detect(image)
        keypoints = self.keypoints_for_boxes(image, [d.box for d in detections])
        return [Face(d.box, k, d.score) for d, k in zip(detections, keypoints)]

    def _predict(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        crops, matrices = face_crops(image, boxes, self.input_size)
        points = predict_crops(self.runner, crops, self.flip_average)
        return np.stack([transform_points(p, invert_matrix(m)) for p, m in zip(points, matrices)])


def evaluate_pipeline(
    model_path: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    flip_average: bool = True,
    refine: bool = True,
) -> tuple[dict, np.ndarray, list[str]]:
    """Detect faces on the raw pictures and score the keypoints of the best-overlapping detection.

    Keypoint metrics cover the faces found; ``detection_rate`` says how many that is.
    """
    pipe = KeypointPipeline.from_pretrained(model_path, flip_average=flip_average, refine=refine)
    csv_file, root_dir = split_paths(resolve_data_dir(data_dir), split)
    names, truth = read_keypoints_csv(csv_file)
    found_names, predicted, found_truth = [], [], []
    start = time.perf_counter()
    for name, true_points in zip(names, truth):
        image = read_image(root_dir / name)
        detections = pipe.detector.detect(image)
        best = match_face(detections, true_points)
        if best is None:
            continue
        found_names.append(name)
        found_truth.append(true_points)
        predicted.append(pipe.keypoints_for_box(image, detections[best].box))
    seconds = time.perf_counter() - start
    if not predicted:
        raise DataError(f"No face was detected in the {len(names)} {split} pictures: check the detector and the data folder.")
    predicted_array, truth_array = np.stack(predicted), np.stack(found_truth)
    metrics = {"detection_rate": len(predicted) / len(names), **summarize(predicted_array, truth_array), "seconds": seconds}
    metrics["predictor"] = f"Haar detector + {pipe.meta['architecture']} ({Path(model_path or SHIPPED_MODEL).name})"
    return metrics, nme_interocular(predicted_array, truth_array), found_names


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


@dataclass
class Track:
    keypoints: np.ndarray
    box: np.ndarray
    score: float | None
    smoother: OneEuroFilter = field(default_factory=OneEuroFilter)


class FaceTracker:
    """Keypoints for every frame of a video at a fraction of the cost of detecting in each frame.

    Between detections each face is re-cropped from its last keypoints (the crop the model knows best); the
    detector runs again every ``redetect_every`` frames, when a face is lost (its new keypoint box jumps or
    shrinks implausibly), or when there is no face yet. Keypoints are smoothed with a One Euro filter.
    """

    def __init__(self, pipeline: KeypointPipeline, redetect_every: int = 15, fps: float = 30.0, smooth: bool = True) -> None:
        self.pipeline = pipeline
        self.redetect_every = redetect_every
        self.dt = 1.0 / fps
        self.smooth = smooth
        self.tracks: list[Track] = []
        self.frames_since_detection = 0

    def _detect(self, frame: np.ndarray) -> None:
        """Replace the tracks by fresh detections; a face that overlaps an old track keeps its smoother."""
        faces = self.pipeline.detect(frame)
        tracks = []
        for face in faces:
            overlaps = [box_iou(face.box, haar_box_from_keypoints(t.keypoints)) for t in self.tracks]
            best = int(np.argmax(overlaps)) if overlaps else -1
            smoother = self.tracks[best].smoother if best >= 0 and overlaps[best] > 0.3 else OneEuroFilter()
            tracks.append(Track(face.keypoints, face.box, face.score, smoother))
        self.tracks = tracks
        self.frames_since_detection = 0

    @staticmethod
    def _plausible(previous: np.ndarray, current: np.ndarray) -> bool:
        before, after = haar_box_from_keypoints(previous), haar_box_from_keypoints(current)
        scale = after[2] / max(before[2], 1e-6)
        shift = np.hypot(*(after[:2] + after[2:] / 2 - before[:2] - before[2:] / 2)) / max(before[2], 1e-6)
        return 0.7 < scale < 1.4 and shift < 0.35

    def update(self, frame: np.ndarray) -> list[Face]:
        """The faces of the next frame (RGB uint8)."""
        frame = as_rgb_image(frame)
        if not self.tracks or self.frames_since_detection >= self.redetect_every:
            self._detect(frame)
        else:
            boxes = [haar_box_from_keypoints(t.keypoints) for t in self.tracks]
            keypoints = self.pipeline.keypoints_for_boxes(frame, boxes, refine=False)
            if all(self._plausible(t.keypoints, k) for t, k in zip(self.tracks, keypoints)):
                for track, points, box in zip(self.tracks, keypoints, boxes):
                    track.keypoints, track.box = points, box
                self.frames_since_detection += 1
            else:
                self._detect(frame)
        faces = []
        for track in self.tracks:
            points = track.smoother(track.keypoints, self.dt) if self.smooth else track.keypoints
            faces.append(Face(track.box, points.astype(np.float32), track.score))
        return faces
