"""Running a keypoint network on face crops: the one place where pictures meet the model.

Both the pipeline (``pipeline/keypoint_pipeline.py``) and evaluation (``pipeline/evaluation.py``) predict through these functions, so a face is
cut, normalised and read back the same way everywhere:

    crops, matrices = face_crops(picture, boxes, runner.input_size)     # (N, S, S) grayscale in [0, 1]
    result = predict(runner, crops, convention="300w", flip_average=True)
    result.keypoints   # (N, 68, 2) in crop pixels; map back with data_load.transform_points(p, invert_matrix(m))

A model's raw output holds keypoints in one or more labelling conventions and, optionally, a face score
(``models.OutputLayout``); ``convention=None`` means the model's default one.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from data_load import (
    LEFT_EYE_OUTER,
    NUM_KEYPOINTS,
    RIGHT_EYE_OUTER,
    compose_matrices,
    crop_matrix,
    crop_square_from_box,
    denormalize_keypoints,
    flip_permutation,
    invert_matrix,
    transform_points,
    warp,
)
from resources.onnx_model import ModelError, OutputLayout, has_torch, onnx_runner

REPO_DIR = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = REPO_DIR / "saved_models" / "keypoints_fast.pt"


def load_runner(path: str | os.PathLike, backend: str = "auto", threads: int | None = None) -> Any:
    """A runner (with ``.meta``) for the model saved at ``path``: ``models.make_runner`` where PyTorch is
    installed; without it, ONNX Runtime on the .onnx beside ``path`` and the metadata it carries
    (``resources.onnx_model``), so that the main job and the web demo never import PyTorch there."""
    if has_torch():
        from models import make_runner

        return make_runner(path, backend=backend, threads=threads)
    if backend == "torch":
        raise ModelError("PyTorch is not installed: install requirements.txt, or use the onnx backend.")
    return onnx_runner(path, threads)


def as_runner(model: Any) -> Any:
    """A runner (``models.make_runner``) as it is, a PyTorch model wrapped in a ``TorchRunner``."""
    torch = sys.modules.get("torch")  # a PyTorch model exists only where PyTorch was imported
    if torch is not None and isinstance(model, torch.nn.Module):
        from models import TorchRunner

        return TorchRunner(model)
    return model


def layout_of(model: Any) -> OutputLayout:
    """The output layout of a runner or PyTorch model (the course's one convention when it says nothing)."""
    layout = getattr(as_runner(model), "layout", None)
    return layout if layout is not None else OutputLayout(int(getattr(model, "num_keypoints", 68)))


def face_crops(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]] | np.ndarray,
    input_size: int,
    frames: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The network's grayscale crops (N, S, S) float32 in [0, 1] for face boxes (x, y, w, h) in the Haar
    detector's convention, with each crop's 2 x 3 matrix from picture pixels to crop pixels.

    ``frames`` (one 2 x 3 matrix per box, picture pixels to the frame's) gives each box in its own frame, e.g. a
    copy of the picture turned so that the face is upright; None: the picture's own pixels.
    """
    matrices = crop_matrices(boxes, input_size, frames)
    return cut_crops(image, matrices, input_size), matrices


def scaling_frame(from_shape: tuple[int, ...], to_shape: tuple[int, ...]) -> np.ndarray:
    """2 x 3 matrix from the pixels of a picture of ``from_shape`` to those of its resized copy of ``to_shape``
    (pixel centres kept: x' + 0.5 = s (x + 0.5))."""
    sx, sy = to_shape[1] / from_shape[1], to_shape[0] / from_shape[0]
    return np.array([[sx, 0.0, 0.5 * (sx - 1)], [0.0, sy, 0.5 * (sy - 1)]])


class GrayPyramid:
    """A gray picture and its halvings (area averaging), each made when first needed, so that every search of a
    ``detect`` call reads a copy at most twice the size its smallest face needs, not the picture at full size, and
    every crop of a big face is cut from a copy a few times finer than the crop, not from the picture.

    ``level(scale)`` gives the smallest copy at least ``scale`` times the picture's size, and the frame (2 x 3) from
    picture pixels to that copy's; ``resized(scale)`` the copy resized to exactly that scale; ``source(step,
    finest)`` the copy to sample every ``step`` picture pixels from."""

    def __init__(self, gray: np.ndarray) -> None:
        self.levels = [gray]

    @property
    def picture(self) -> np.ndarray:
        return self.levels[0]

    def level(self, scale: float) -> tuple[np.ndarray, np.ndarray]:
        height, width = self.picture.shape[:2]
        index = 0
        while (index + 1) < 16 and scale <= 0.5 ** (index + 1) and min(height, width) * 0.5 ** (index + 1) >= 2:
            index += 1
            if index == len(self.levels):
                last = self.levels[-1]
                self.levels.append(cv2.resize(last, (max(1, last.shape[1] // 2), max(1, last.shape[0] // 2)), interpolation=cv2.INTER_AREA))
        copy = self.levels[index]
        return copy, scaling_frame(self.picture.shape, copy.shape)

    def resized(self, scale: float) -> tuple[np.ndarray, np.ndarray]:
        if scale >= 1.0:
            return self.picture, np.eye(2, 3)
        copy, _ = self.level(scale)
        height, width = self.picture.shape[:2]
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if (copy.shape[1], copy.shape[0]) != size:
            copy = cv2.resize(copy, size, interpolation=cv2.INTER_AREA)
        return copy, scaling_frame(self.picture.shape, copy.shape)

    def source(self, step: float, finest: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
        """The smallest copy on which samples ``step`` picture pixels apart are still at least ``finest`` copy pixels
        apart, and its frame (2 x 3, picture pixels to the copy's); halvings it needs are made here (``level``). The
        sampler's own area averaging (``data_load.warp``: by a whole factor where the step is 2 or more;
        ``second_stage.PatchGeometry.cut``: where it is 4 or more) then reduces a few hundred pixels, not the
        millions a close-up's face covers in a 12-megapixel photo (4 ms a crop there, one thread). The searches
        have made the first halvings of a big picture already; the further ones cost a quarter, a sixteenth, ... of
        the first. Measured on ``benchmarks/pipeline_speed.py``'s close-ups (a scratch script timing ``cut_crops``
        and the second stage, one thread) against the copies the searches had made only: where the face is 0.6 of a
        4032 x 3024 photo's height, its crops took 1.7 against 2.9 ms; 0.8 of a 2448 x 3264 one, 1.3 against 2.3 ms
        and the second stage 1.2 against 1.9 ms; smaller faces the same. Faces too small for any copy are sampled
        from the picture."""
        if step * 0.5 < finest:
            return self.picture, np.eye(2, 3)
        return self.level(finest / step)


def crop_matrices(
    boxes: Sequence[Sequence[float]] | np.ndarray, input_size: int, frames: Sequence[np.ndarray] | None = None
) -> list[np.ndarray]:
    """The 2 x 3 matrices from picture pixels to the crops (side ``input_size``) of face boxes (x, y, w, h, Haar
    convention) given in their ``frames`` (see ``face_crops``)."""
    matrices = [crop_matrix(*crop_square_from_box(box), input_size) for box in boxes]
    if frames is not None:
        matrices = [compose_matrices(matrix, frame) for matrix, frame in zip(matrices, frames)]
    return matrices


def cut_crops(image: np.ndarray | GrayPyramid, matrices: Sequence[np.ndarray], input_size: int) -> np.ndarray:
    """Grayscale crops (N, S, S) float32 in [0, 1] of a picture (gray or RGB, or a ``GrayPyramid``, whose copies
    the crops of big faces are cut from) through 2 x 3 ``matrices`` (picture pixels to crop pixels)."""
    if not len(matrices):
        return np.zeros((0, input_size, input_size), np.float32)
    if isinstance(image, GrayPyramid):
        crops = []
        for matrix in matrices:
            copy, frame = image.source(1.0 / max(np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))), 1e-9))
            crops.append(warp(copy, compose_matrices(matrix, invert_matrix(frame)), input_size))
        return np.stack(crops).astype(np.float32) / 255.0
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return np.stack([warp(gray, matrix, input_size) for matrix in matrices]).astype(np.float32) / 255.0


def crop_shift(before: np.ndarray, after: np.ndarray, input_size: int) -> float:
    """How far apart two crops of side ``input_size`` are in the picture: the largest distance between matching
    corners of their squares (picture pixels, through the inverses of the 2 x 3 matrices ``before`` and ``after``),
    as a fraction of the first square's side."""
    corners = np.array([[0.0, 0.0], [input_size, 0.0], [0.0, input_size], [input_size, input_size]])
    a, b = transform_points(corners, invert_matrix(before)), transform_points(corners, invert_matrix(after))
    side = np.linalg.norm(a[1] - a[0])
    return float(np.linalg.norm(a - b, axis=1).max() / max(side, 1e-9))


@dataclass
class CropPredictions:
    """What the network says of N crops of side S.

    ``keypoints``: (N, K, 2) in crop pixels, in ``convention``; ``flip_error``: (N,) mean distance between the
    keypoints of the crop and of its mirror image as a fraction of the crop side, always in the model's default
    convention, so that the face check means the same whatever convention is asked for (NaN without flip
    averaging);
    ``face_score``: (N,) probability in [0, 1] that the crop holds a face (NaN for a model without a face score).
    """

    keypoints: np.ndarray
    flip_error: np.ndarray
    face_score: np.ndarray
    convention: str


def _mirrored(keypoints: np.ndarray, size: int, flip_offset: float = 0.0) -> np.ndarray:
    """Normalised keypoints predicted on mirrored crops, mapped back to the crops: x of pixel S - 1 - x is -x - 2/S,
    and left/right labels swap (``data_load.flip_permutation``). A convention whose labels sit ``flip_offset``
    inter-ocular distances right of the mirror-symmetric position (``resources.onnx_model.OutputLayout.flip_offset``) comes back
    that far on the left, so the points move by twice it along their eye line (``pipeline.trainer.flip_corrected``)."""
    back = keypoints[:, flip_permutation(keypoints.shape[1])]
    back[..., 0] = -back[..., 0] - 2.0 / size
    if flip_offset and back.shape[1] == NUM_KEYPOINTS:
        back = back + 2 * flip_offset * (back[:, RIGHT_EYE_OUTER] - back[:, LEFT_EYE_OUTER])[:, None, :]
    return back


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def predict(
    model: Any, crops: np.ndarray, convention: str | None = None, flip_average: bool = False, batch_size: int = 256,
    screen: np.ndarray | None = None,
) -> CropPredictions:
    """Keypoints, flip errors and face scores for grayscale crops (N, S, S) in [0, 1].

    ``model`` is a PyTorch model or a runner from ``models.make_runner``; ``convention`` one the model predicts
    (None: its default, ``models.ModelError`` otherwise). With ``flip_average`` each crop is also predicted
    mirrored, left/right labels swapped back with ``data_load.flip_permutation``, and the two answers averaged;
    the face score then averages the two logits. The flip error comes with it: a face gives nearly the same answer
    both ways, most crops without a face do not.

    ``screen`` (N,; NaN: none), with ``flip_average``: a crop whose face score unmirrored is below its value is
    not predicted mirrored (half the cost of a crop that holds no face): its keypoints and face score are the
    unmirrored ones and its flip error is NaN. A model without a face score screens nothing.
    """
    runner, layout = as_runner(model), layout_of(model)
    convention = layout.resolve(convention)
    size = crops.shape[-1]
    points, errors, logits = [], [], []
    for start in range(0, len(crops), batch_size):
        batch = np.ascontiguousarray(crops[start : start + batch_size], dtype=np.float32)[:, None]
        n = len(batch)
        if not flip_average:
            raw = np.asarray(runner(batch), np.float32).reshape(n, -1)
            face = layout.face_logits(raw)
            points.append(np.array(layout.keypoints(raw, convention)))
            errors.append(np.full(n, np.nan))
            logits.append(face if face is not None else np.full(n, np.nan))
            continue
        limits = None if screen is None else np.asarray(screen, np.float64)[start : start + n]
        if limits is None or np.isnan(limits).all():
            raw = np.asarray(runner(np.ascontiguousarray(np.concatenate([batch, batch[..., ::-1]]))), np.float32).reshape(2 * n, -1)
            plain, mirror, kept = raw[:n], raw[n:], np.arange(n)
            face = layout.face_logits(plain)
        else:
            plain = np.asarray(runner(batch), np.float32).reshape(n, -1)
            face = layout.face_logits(plain)
            kept = np.arange(n) if face is None else np.flatnonzero(~(_sigmoid(face) < limits))
            mirror = np.asarray(runner(np.ascontiguousarray(batch[kept, ..., ::-1])), np.float32).reshape(len(kept), -1) if len(kept) else plain[:0]
        keypoints = np.array(layout.keypoints(plain, convention))
        error = np.full(n, np.nan)
        logit = face.astype(np.float64) if face is not None else np.full(n, np.nan)
        if len(kept):
            keypoints[kept] = (keypoints[kept] + _mirrored(np.array(layout.keypoints(mirror, convention)), size, layout.flip_offset(convention))) / 2
            # the face check: measured on the default convention whatever the convention asked for
            default = np.array(layout.keypoints(plain[kept], None))
            back = _mirrored(np.array(layout.keypoints(mirror, None)), size, layout.flip_offset(None))
            error[kept] = np.linalg.norm(default - back, axis=-1).mean(axis=-1) / 2  # units span 2
            if face is not None:
                logit[kept] = (face[kept] + layout.face_logits(mirror)) / 2
        points.append(keypoints)
        errors.append(error)
        logits.append(logit)
    if not points:
        k = layout.num_keypoints
        return CropPredictions(np.zeros((0, k, 2), np.float32), np.zeros(0), np.zeros(0), convention)
    return CropPredictions(
        denormalize_keypoints(np.concatenate(points), size), np.concatenate(errors), _sigmoid(np.concatenate(logits)), convention
    )


def predict_crops(model: Any, crops: np.ndarray, flip_average: bool = False, convention: str | None = None, batch_size: int = 256) -> np.ndarray:
    """Keypoints in crop pixels (N, K, 2) for grayscale crops (N, S, S) in [0, 1] (see ``predict``)."""
    return predict(model, crops, convention, flip_average, batch_size).keypoints


def predict_crops_with_flip_error(model: Any, crops: np.ndarray, convention: str | None = None, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Flip-averaged keypoints in crop pixels (N, K, 2) and each crop's flip error (N,) (see ``predict``)."""
    result = predict(model, crops, convention, True, batch_size)
    return result.keypoints, result.flip_error


def predict_in_boxes(
    model: Any, images: list[np.ndarray], boxes: list[np.ndarray], flip_average: bool = False, convention: str | None = None,
    refiner: Any = None,
) -> np.ndarray:
    """Keypoints in picture pixels (N, K, 2), one face box (Haar convention) per picture; with a ``refiner``
    (``pipeline.second_stage.Refiner``) the keypoints are then refined on each picture (its recorded rounds)."""
    runner = as_runner(model)
    crops, matrices = [], []
    for image, box in zip(images, boxes):
        crop, (matrix,) = face_crops(image, np.asarray([box]), runner.input_size)
        crops.append(crop[0])
        matrices.append(matrix)
    points = predict_crops(runner, np.stack(crops), flip_average, convention)
    keypoints = np.stack([transform_points(p, invert_matrix(m)) for p, m in zip(points, matrices)])
    if refiner is not None:
        keypoints = refiner.refine_pictures(images, keypoints, layout_of(model).resolve(convention))
    return keypoints
