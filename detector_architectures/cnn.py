"""A small learned face detector: one fully convolutional pass over a downscaled grayscale picture.

The method is CenterNet's (Zhou, Wang and Krähenbühl, "Objects as Points", arXiv:1904.07850, 2019): every face is
a point, the centre of its box. The network gives, on a grid of stride ``STRIDE`` (8) over its input,

* a face-centre heatmap (one logit per cell; its sigmoid peaks at 1 on the cell holding a face's centre),
* the box size at that cell, as ``log(side / SIZE_UNIT)`` with the side in input pixels (the box is a square),
* the sub-cell offset of the centre, in cells (0-1 right / down of the cell's top-left corner),
* the face's five points (eye centres, nose tip, mouth corners: ``five_points``) as offsets from the centre in
  units of the side, in the style of RetinaFace (Deng et al., "RetinaFace: Single-shot Multi-level Face
  Localisation in the Wild", CVPR 2020) and YuNet. With the roll class below they give the face's roll, so its
  keypoint crop can be cut upright along it in one step (how often the roll is right: the model card),
* the face's roll as one of ``ROLL_BINS`` classes (bins of 45 degrees): which way up the face is, a class rather
  than a regression because a face turned half way round looks much like an upright one, and a regression between
  the two lands between them. The points' eye line gives the roll within the bin (``roll_of``).

Faces are the local maxima of the heatmap (a 3 x 3 max-pool keeps a cell only where it equals its neighbourhood's
maximum, CenterNet's NMS), then overlapping boxes are suppressed. The backbone follows the small mobile detectors
(BlazeFace: Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs",
arXiv:1907.05047, 2019; YuNet: Wu, Peng and Yu, "YuNet: A Tiny Millisecond-level Face Detector", 2023):
depthwise-separable convolutions (MobileNet: Howard et al., arXiv:1704.04861) down to stride 32, and a
feature-pyramid top-down path (Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017) back to
stride 8, where the outputs are read (YuNet's finest stride). CenterNet reads stride 4, as this network did until its
seventh training stage; read at stride 8 it takes 7.4 instead of 13.9 ms on 1088 x 800 (the model card).

Boxes are in the Haar convention of this project: the square ``data_load.haar_box_from_keypoints`` gives for a
face's 68 keypoints (the box ``haarcascade_frontalface_default`` draws), so the keypoint network's crops are framed
as in training. For a rolled face the box is that of the face turned upright, turned back about its centre: its
centre and side, drawn as an upright square. ``pipeline/detector_training.py`` trains the network on synthesised
pictures; see its docstring.

Coordinates: pixel centres at integer coordinates (the centre of the top-left pixel is (0, 0)), as the keypoints.
A box (x, y, w, h) spans x .. x + w. The working picture is the input resized by ``scale`` (working / input);
a working coordinate u is the input coordinate (u + 0.5) / scale - 0.5.

    detector = CNNFaceDetector()                 # saved_models/face_detector.onnx, ONNX Runtime, 1 thread
    faces = detector.detect(rgb_or_gray_array)   # [Detection(box=(x, y, w, h), score=0.81, cascade="cnn"), ...]
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from detector_architectures.haar import BoxCorrection, Detection, box_iou, to_gray_uint8
from detector_architectures.haar import smallest_face as haar_smallest_face

REPO_DIR = Path(__file__).resolve().parents[1]
DEFAULT_ONNX = REPO_DIR / "saved_models" / "face_detector.onnx"
DEFAULT_WEIGHTS = REPO_DIR / "saved_models" / "face_detector.pt"

STRIDE = 8  # working pixels per output cell: one cell is 8 x 8 working pixels (4 until the detector's seventh stage)
STRIDES = (4, 8)  # the output strides build_network offers: the top-down path ends at the stage of this stride
SIZE_UNIT = 16.0  # the size output is log(side / SIZE_UNIT), side in working pixels
PAD_TO = 32  # the working picture is padded (border replicated) to a multiple of the deepest stride
# The network's sizes: the smallest face it finds reliably and the largest it was trained on, in working pixels.
NET_MIN_FACE = 20.0
NET_MAX_FACE = 200.0
# A picture whose working short side exceeds COARSE_TRIGGER could hold a face bigger than NET_MAX_FACE there: it is
# searched a second time at a short side of COARSE_SIDE (a few per cent of the first pass's cost) for the big faces.
COARSE_SIDE = 160
COARSE_TRIGGER = 200
# Backbone widths: the stem (stride 2), then stages at strides 4, 8, 16, 32; FPN_WIDTH in the top-down path.
WIDTHS = (16, 24, 48, 64, 96)
DEPTHS = (1, 2, 3, 3)  # depthwise-separable blocks per stage (the first strided)
FPN_WIDTH = 32
HEAT_PRIOR_BIAS = -2.19  # CenterNet's initial heatmap bias: sigmoid = 0.1
DETECTOR_NAME = "cnn"  # the Detection.cascade label
POINT_COUNT = 5  # the five points: right eye, left eye, nose tip, right and left mouth corner (the subject's sides)
# The 68-point (iBUG) indices each of the five points averages: the eye contours' means, the nose tip, the corners.
FIVE_POINT_INDICES = (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,))
# The five points of a mirrored face: right and left swap.
FIVE_POINT_MIRROR = (1, 0, 2, 4, 3)
ROLL_BINS = 8  # roll classes: bin k is centred on k * 360 / ROLL_BINS degrees (the eye line's angle, y down)

DEFAULT_PARAMS: dict[str, Any] = {
    "min_face_size": 40,  # smallest face searched, input pixels: the picture is resized so it becomes NET_MIN_FACE
    "min_face_fraction": 0.025,  # ... and at least this fraction of the shorter side, as the Haar detector's
    "max_side": 1344,  # the working picture's long side is at most this (bounded cost; smaller faces are then lost)
    "min_side": 160,  # ... and its short side at least this, when that takes no more than max_upscale
    "max_upscale": 2.0,  # the picture is never enlarged by more than this
    # peaks below this probability are not faces: at 0.35 the stride-8 network gives the measuring pictures without
    # faces as many detections as the stride-4 one did at 0.3 (131 against 130; the model card)
    "score_threshold": 0.35,
    "nms_iou": 0.3,  # a box overlapping a surer one by this IoU is dropped
    "max_faces": 100,  # at most this many detections (the surest)
}


# ---------------------------------------------------------------------------------------------------------
# The network (PyTorch; imported only when training or without ONNX Runtime)
# ---------------------------------------------------------------------------------------------------------
def five_points(keypoints: np.ndarray) -> np.ndarray:
    """The five points (5, 2) of a face's 68 iBUG keypoints (68, 2), same units: the means of the right and left
    eye contours, the nose tip (30), the right (48) and left (54) mouth corners."""
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, 2)
    return np.stack([keypoints[list(indices)].mean(axis=0) for indices in FIVE_POINT_INDICES])


def eye_line_angle(points: np.ndarray) -> np.ndarray:
    """The roll in degrees, in [-180, 180), of five-point sets (..., 5, 2): the angle of the line from the right eye
    to the left eye with y pointing down (0 upright, positive when the face leans clockwise as seen)."""
    points = np.asarray(points, np.float64)
    vector = points[..., 1, :] - points[..., 0, :]
    return (np.degrees(np.arctan2(vector[..., 1], vector[..., 0])) + 180.0) % 360.0 - 180.0


def roll_bin(angle: float | np.ndarray, bins: int = ROLL_BINS) -> np.ndarray:
    """The roll class (0 .. bins - 1) of an angle in degrees: the nearest bin centre k * 360 / bins."""
    return np.round(np.asarray(angle, np.float64) / (360.0 / bins)).astype(np.int64) % bins


def roll_of(points: np.ndarray, bins: np.ndarray, count: int = ROLL_BINS) -> np.ndarray:
    """Rolls (M,) in degrees from the points (M, 5, 2) and the roll classes (M,): the points' eye line where it lies
    in the class's bin (give or take half a bin), else the bin's centre (the points are then unsure of the turn)."""
    width = 360.0 / count
    centre = bins.astype(np.float64) * width
    line = eye_line_angle(points)
    off = (line - centre + 180.0) % 360.0 - 180.0
    return np.where(np.abs(off) <= width, line, (centre + 180.0) % 360.0 - 180.0)


def build_network(
    widths: Sequence[int] = WIDTHS, depths: Sequence[int] = DEPTHS, fpn_width: int = FPN_WIDTH, points: int = POINT_COUNT,
    roll_bins: int = ROLL_BINS, stride: int = STRIDE,
):
    """The detector network as a ``torch.nn.Module``.

    Input: (N, 1, H, W) float grayscale on the 0-255 scale, H and W multiples of 32. Output:
    (N, 4 + 2 * points + roll_bins, H/stride, W/stride), ``stride`` one of ``STRIDES``: channel 0 the heatmap
    logit, 1 the log size (``log(side / SIZE_UNIT)``, side in input pixels), 2-3 the centre's offset (x, y) within
    its cell, in cells, then the ``points`` points' offsets (x, y) from the box centre in units of the side
    (``five_points``' order), then the logits of the ``roll_bins`` roll classes (``roll_bin``). Every convolution is
    followed by BatchNorm and ReLU except the last. ValueError for another stride.
    """
    import torch
    from torch import nn

    if stride not in STRIDES:
        raise ValueError(f"The detector reads its outputs at a stride of {' or '.join(map(str, STRIDES))}, not {stride}.")
    first = STRIDES.index(stride)  # the first stage the top-down path reaches: stage i has stride 4 * 2**i

    def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )

    class SeparableBlock(nn.Module):
        """Depthwise k x k then pointwise 1 x 1 (MobileNet); residual when the shape is kept."""

        def __init__(self, cin: int, cout: int, stride: int, kernel: int) -> None:
            super().__init__()
            self.body = nn.Sequential(conv_bn(cin, cin, kernel, stride, groups=cin), conv_bn(cin, cout, 1))
            self.residual = stride == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.body(x)
            return x + y if self.residual else y

    class FaceCenterNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = conv_bn(1, widths[0], 3, 2)
            stages = []
            for i, depth in enumerate(depths):
                kernel = 3 if i < 2 else 5  # wider receptive field where the map is coarse
                blocks = [SeparableBlock(widths[i], widths[i + 1], 2, kernel)]
                blocks += [SeparableBlock(widths[i + 1], widths[i + 1], 1, kernel) for _ in range(depth - 1)]
                stages.append(nn.Sequential(*blocks))
            self.stages = nn.ModuleList(stages)
            self.lateral = nn.ModuleList([conv_bn(w, fpn_width, 1) for w in widths[1 + first :]])
            self.smooth = nn.ModuleList([SeparableBlock(fpn_width, fpn_width, 1, 3) for _ in widths[1 + first : -1]])
            self.head = nn.Sequential(SeparableBlock(fpn_width, fpn_width, 1, 3), nn.Conv2d(fpn_width, 4 + 2 * points + roll_bins, 1))
            with torch.no_grad():
                self.head[-1].bias.zero_()
                self.head[-1].bias[0] = HEAT_PRIOR_BIAS
                self.head[-1].bias[1] = float(np.log(48.0 / SIZE_UNIT))
                self.head[-1].bias[2:4] = 0.5

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem((x - 127.5) / 64.0)
            features = []
            for stage in self.stages:
                x = stage(x)
                features.append(x)
            features = features[first:]
            top = self.lateral[-1](features[-1])
            for i in range(len(features) - 2, -1, -1):
                top = nn.functional.interpolate(top, scale_factor=2.0, mode="nearest") + self.lateral[i](features[i])
                top = self.smooth[i](top)
            return self.head(top)

    return FaceCenterNet()


def stride_of(state_dict: dict, widths: Sequence[int] = WIDTHS) -> int:
    """The output stride (``STRIDES``) of a ``build_network`` state dict: its top-down path has one lateral layer per
    stage from the stage of that stride up."""
    levels = sum(name.startswith("lateral.") and name.endswith(".0.weight") for name in state_dict)
    return STRIDES[len(widths) - 1 - levels]


def weights_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file (the ONNX export records the .pt it came from in the .pt's metadata)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------------------
def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def output_layout(channels: int) -> tuple[int, int]:
    """(points, roll classes) of a model from its output channels: 4 (a model of before the points: none) or
    4 + 2 * POINT_COUNT + ROLL_BINS. Raises ValueError for any other count."""
    layouts = {4: (0, 0), 4 + 2 * POINT_COUNT + ROLL_BINS: (POINT_COUNT, ROLL_BINS)}
    if channels not in layouts:
        raise ValueError(f"A face detector model gives 4 or {4 + 2 * POINT_COUNT + ROLL_BINS} maps, not {channels}.")
    return layouts[channels]


def decode(
    output: np.ndarray, score_threshold: float, max_faces: int = 100, stride: int = STRIDE
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Peaks of one output map (``output_layout``, h, w) as (boxes (M, 4) x, y, side, side in working pixels;
    scores (M,); the points (M, 5, 2) in working pixels; the rolls (M,) in degrees, ``roll_of``), surest first; points
    and rolls None for a model without them. A cell is a peak when its probability is the maximum of its 3 x 3
    neighbourhood (CenterNet's max-pool NMS) and at least ``score_threshold``. ``stride``: working pixels per cell."""
    heat = sigmoid(output[0].astype(np.float32))
    pooled = cv2.dilate(heat, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0.0)
    ys, xs = np.nonzero((heat >= pooled) & (heat >= score_threshold))
    scores = heat[ys, xs]
    order = np.argsort(-scores, kind="stable")[:max_faces]
    ys, xs, scores = ys[order], xs[order], scores[order]
    side = SIZE_UNIT * np.exp(np.clip(output[1, ys, xs], -4, 6))
    cx = (xs + output[2, ys, xs]) * stride
    cy = (ys + output[3, ys, xs]) * stride
    boxes = np.stack([cx - side / 2, cy - side / 2, side, side], axis=1) if len(scores) else np.zeros((0, 4))
    count, bins = output_layout(output.shape[0])
    points = rolls = None
    if count:
        offsets = output[4 : 4 + 2 * count, ys, xs].T.reshape(len(scores), count, 2).astype(np.float64)
        points = np.stack([cx, cy], axis=1)[:, None, :] + offsets * side[:, None, None]
        classes = np.argmax(output[4 + 2 * count : 4 + 2 * count + bins, ys, xs], axis=0)
        rolls = roll_of(points, classes, bins)
    return boxes.astype(np.float64), scores.astype(np.float64), points, rolls


def suppress_boxes(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression: indices kept, surest first (boxes (M, 4) x, y, w, h)."""
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(box_iou(boxes[i], boxes[j]) < iou for j in kept):
            kept.append(int(i))
    return kept


def working_scale(height: int, width: int, params: dict) -> float:
    """Working / input scale: a face of ``min_face_size`` input pixels (or ``min_face_fraction`` of the shorter side,
    where that is larger) becomes ``NET_MIN_FACE`` working pixels, but the short side is kept at ``min_side`` or more
    (small pictures keep their detail), the long side at ``max_side`` or less, and the picture is enlarged by at
    most ``max_upscale``."""
    short, long = min(height, width), max(height, width)
    smallest = max(float(params["min_face_size"] or NET_MIN_FACE), params.get("min_face_fraction", 0.0) * short, 1.0)
    scale = NET_MIN_FACE / smallest
    scale = max(scale, params["min_side"] / short)
    scale = min(scale, params["max_side"] / long, params["max_upscale"])
    return float(scale)


# ---------------------------------------------------------------------------------------------------------
# The detector
# ---------------------------------------------------------------------------------------------------------
class CNNFaceDetector:
    """Finds faces with the learned detector; ``detect(image)`` gives ``Detection``s, surest first.

    Args:
        model: an ``.onnx`` file (run with ONNX Runtime) or a ``.pt`` file (PyTorch: a dict with ``state_dict`` and
            ``metadata``); default ``saved_models/face_detector.onnx``, else ``face_detector.pt`` when ONNX Runtime
            is missing.
        threads: intra-op threads of the runtime (1 for measuring). With PyTorch it sets ``torch.set_num_threads``,
            which is process-wide.
        min_face_size: smallest face searched, in input pixels (default 40). The picture is resized so that this
            size becomes ``NET_MIN_FACE`` (20) working pixels; smaller sizes cost more (quadratically).
        min_face_fraction: ... or this fraction of the picture's shorter side, where that is larger (default 0.025,
            as the Haar detector's: 76 px on 4032 x 3024, a working picture of 1067 x 800).
        max_side: cap on the working picture's long side (default 1344): the cost of any picture is at most that of a
            1344 x 1008 one, and on a picture of long side L faces below ``NET_MIN_FACE * L / max_side`` input pixels
            are missed. Where the
            working picture's short side exceeds COARSE_TRIGGER (200), a second pass at a short side of
            COARSE_SIDE (160) finds the faces too big for the first (close-ups), at a few per cent of its cost.
        min_side, max_upscale: small pictures are enlarged to a short side of ``min_side`` by at most ``max_upscale``.
        score_threshold: smallest peak probability kept, in [0, 1] (default 0.35).
        nms_iou: boxes overlapping a surer box by this IoU are dropped. max_faces: at most this many faces.

    ``points`` and ``roll_bins`` say what the model gives beside the boxes (0: nothing; a model with roll classes
    finds faces at any roll and gives each its ``roll``). The model file's ``box_correction`` (scale, dx, dy;
    ``haar.BoxCorrection``), fitted on training pictures by
    ``pipeline/detector_training.py``, maps the network's boxes onto the Haar convention (the network draws them a few
    per cent too small); it is applied after the suppression.

    Not thread-safe: use one detector per thread.
    """

    def __init__(self, model: str | os.PathLike | None = None, threads: int = 1, **params: Any) -> None:
        unknown = set(params) - set(DEFAULT_PARAMS)
        if unknown:
            raise TypeError(f"Unknown detector parameter(s): {', '.join(sorted(unknown))}.")
        self.params = {**DEFAULT_PARAMS, **params}
        if not 0.0 <= float(self.params["score_threshold"]) <= 1.0:
            raise ValueError("score_threshold must lie in [0, 1].")
        if self.params["max_side"] < PAD_TO:
            raise ValueError(f"max_side must be at least {PAD_TO}.")
        self.threads = int(threads)
        self._session = None
        self._torch_net = None
        path = Path(model) if model is not None else None
        if path is None:
            path = DEFAULT_ONNX if DEFAULT_ONNX.is_file() and _has_onnxruntime() else DEFAULT_WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(f"No face detector model at {path}: train one with `python -m pipeline.detector_training`.")
        self.model_path = path
        if path.suffix == ".onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._input_name = self._session.get_inputs()[0].name
            correction = self._session.get_modelmeta().custom_metadata_map.get("box_correction")
            self.box_correction = BoxCorrection(*json.loads(correction)) if correction else BoxCorrection()
            self.backend = "onnxruntime"
            self.points, self.roll_bins = output_layout(int(self._session.get_outputs()[0].shape[1]))
        else:
            import torch

            if self.threads > 0:
                torch.set_num_threads(self.threads)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            meta = checkpoint.get("metadata", {})
            widths = tuple(meta.get("widths", WIDTHS))
            net = build_network(widths, tuple(meta.get("depths", DEPTHS)), int(meta.get("fpn_width", FPN_WIDTH)),
                                int(meta.get("points", 0)), int(meta.get("roll_bins", 0)), stride_of(checkpoint["state_dict"], widths))
            net.load_state_dict(checkpoint["state_dict"])
            self._torch_net = net.eval()
            self.box_correction = BoxCorrection(*meta.get("box_correction", (1.0, 0.0, 0.0)))
            self.backend = "torch"
            self.points, self.roll_bins = int(meta.get("points", 0)), int(meta.get("roll_bins", 0))

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.params.items() if DEFAULT_PARAMS.get(k) != v}
        args = [f"model={str(self.model_path)!r}"] + [f"{k}={v!r}" for k, v in changed.items()]
        return f"CNNFaceDetector({', '.join(args)})"

    def __call__(self, image: np.ndarray) -> list[Detection]:
        return self.detect(image)

    # -- the steps -------------------------------------------------------------------------------------------
    def prepare(self, image: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, float] | None:
        """(working picture: H' x W' uint8 gray, padded to multiples of 32 by replicating its border; scale =
        working / input), or None for an empty picture. ``scale`` defaults to ``working_scale``."""
        image = np.asarray(image)
        if image.size == 0 or image.ndim < 2 or min(image.shape[:2]) == 0:
            return None
        gray = to_gray_uint8(image)
        return self._resize(gray, working_scale(*gray.shape, self.params) if scale is None else scale)

    @staticmethod
    def _resize(gray: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
        """The picture resized by ``scale`` and padded; (working picture, exact scale). Reductions go through exact
        halvings (2 x 2 means, OpenCV's fast path) down to less than twice the working size, then one bilinear
        resize, whose two-tap filter at a ratio of 0.5-1 follows the halvings' averaging closely; an odd last row
        or column is dropped before a halving, which keeps the coordinate mapping. A last area resize instead, from
        up to four times the working size, took 5 ms from 2016 x 1512 to 1067 x 800 and 15 ms from 4032 x 3024
        (one thread), against 1.3 ms bilinear; with the detector's fifth stage both found the same faces in every
        set of ``benchmarks/learned_detector.py`` (the counts: ``saved_models/face_detector.md``)."""
        height, width = gray.shape
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        covered = np.array([width, height], np.float64)  # input pixels the current picture spans
        factor = 1
        while gray.shape[1] >= 2 * target[0] and gray.shape[0] >= 2 * target[1]:
            h2, w2 = gray.shape[0] // 2 * 2, gray.shape[1] // 2 * 2
            gray = cv2.resize(gray[:h2, :w2], (w2 // 2, h2 // 2), interpolation=cv2.INTER_AREA)
            factor *= 2
            covered = np.array([gray.shape[1], gray.shape[0]], np.float64) * factor
        if target != (gray.shape[1], gray.shape[0]):
            gray = cv2.resize(gray, target, interpolation=cv2.INTER_LINEAR)
        scale_x, scale_y = target[0] / covered[0], target[1] / covered[1]
        size = target
        pad_h, pad_w = -size[1] % PAD_TO, -size[0] % PAD_TO
        if pad_h or pad_w:
            gray = cv2.copyMakeBorder(gray, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        return gray, float(np.sqrt(scale_x * scale_y))

    def levels(self, height: int, width: int, params: dict | None = None) -> list[tuple[float, float, float]]:
        """The passes over a picture of height x width: (scale, smallest and largest face side kept in working
        pixels).
        The first pass is at ``working_scale``; where its short side exceeds COARSE_TRIGGER, a second pass at a
        short side of COARSE_SIDE finds the faces too big for the first (the first keeps faces up to NET_MAX_FACE)."""
        scale = working_scale(height, width, self.params if params is None else params)
        short = min(height, width)
        if short * scale <= COARSE_TRIGGER:
            return [(scale, 0.0, np.inf)]
        return [(scale, 0.0, NET_MAX_FACE), (COARSE_SIDE / short, NET_MIN_FACE * 0.8, np.inf)]

    def run_network(self, working: np.ndarray) -> np.ndarray:
        """The network's raw output (``output_layout``, H'/s, W'/s) for a working picture (H' x W' uint8), s the
        model's stride (``STRIDES``: the working picture's height over the output's)."""
        batch = working.astype(np.float32)[None, None]
        if self._session is not None:
            return self._session.run(None, {self._input_name: batch})[0][0]
        import torch

        with torch.inference_mode():
            return self._torch_net(torch.from_numpy(batch)).numpy()[0]

    def smallest_face(self, shape: tuple[int, ...]) -> float:
        """The smallest face searched, in pixels, in a picture of ``shape`` (H, W, ...): ``NET_MIN_FACE`` working
        pixels, which is ``asked_face``, or more where ``max_side`` shrinks the picture further, or less where a small
        picture is enlarged for its detail (``min_side``)."""
        return NET_MIN_FACE / working_scale(shape[0], shape[1], self.params)

    def asked_face(self, shape: tuple[int, ...]) -> float:
        """The smallest face asked for, in pixels, in a picture of ``shape`` (H, W, ...): ``min_face_size``, or
        ``min_face_fraction`` of the shorter side where that is larger (0 where neither is set), as the cascades
        search (``haar.smallest_face``)."""
        return float(haar_smallest_face(min(shape[:2]), self.params))

    def scale_for(self, min_face: float) -> float:
        """The working / input scale at which faces of ``min_face`` pixels become ``NET_MIN_FACE`` working pixels."""
        return NET_MIN_FACE / max(float(min_face), 1e-6)

    def detect(self, image: np.ndarray, min_face_size: float | None = None, max_face_size: float | None = None) -> list[Detection]:
        """Faces in an RGB, grayscale or RGBA picture (H x W [x C], uint8, uint16 or float) as ``Detection``s:
        ``box`` (x, y, w, h) float input pixels in the Haar convention (a square), ``score`` the heatmap peak's
        probability in [0, 1], ``points`` the five points (5, 2) in input pixels and ``roll`` the face's roll in
        degrees (None for a model without them), surest first. ``min_face_size`` and ``max_face_size`` (input pixels) search that
        size range only (the first at the resolution it needs, still capped by ``max_side``). An empty picture gives
        []; a picture of another shape (H x W x 2) raises ValueError."""
        image = np.asarray(image)
        if image.size == 0 or image.ndim < 2 or min(image.shape[:2]) == 0:
            return []
        gray = to_gray_uint8(image)
        p = self.params if min_face_size is None else {**self.params, "min_face_size": float(min_face_size), "min_face_fraction": 0.0}
        all_boxes, all_scores, all_points, all_rolls = [], [], [], []
        source, source_scale = gray, 1.0  # each pass resizes the previous pass's (smaller) picture
        for scale, smallest, largest in self.levels(*gray.shape, params=p):
            if max_face_size is not None and smallest > max_face_size * scale:
                continue
            working, relative = self._resize(source, scale / source_scale)
            scale = source_scale * relative
            source, source_scale = working[: round(source.shape[0] * relative), : round(source.shape[1] * relative)], scale
            output = self.run_network(working)
            boxes, scores, points, rolls = decode(output, float(p["score_threshold"]), int(p["max_faces"]) * 4, working.shape[0] // output.shape[1])
            keep = (boxes[:, 2] >= smallest) & (boxes[:, 2] <= min(largest, np.inf if max_face_size is None else max_face_size * scale))
            boxes, scores = boxes[keep], scores[keep]
            # working -> input pixels: centres through (u + 0.5) / scale - 0.5, sides / scale
            centres = (boxes[:, :2] + boxes[:, 2:] / 2 + 0.5) / scale - 0.5
            sides = boxes[:, 2:3] / scale
            all_boxes.append(np.hstack([centres - sides / 2, sides, sides]))
            all_scores.append(scores)
            all_points.append(None if points is None else (points[keep] + 0.5) / scale - 0.5)
            all_rolls.append(None if rolls is None else rolls[keep])
        boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
        if not len(scores):
            return []
        points = None if all_points[0] is None else np.concatenate(all_points)
        rolls = None if all_rolls[0] is None else np.concatenate(all_rolls)
        keep = suppress_boxes(boxes, scores, float(p["nms_iou"]))[: int(p["max_faces"])]
        return [Detection(self.box_correction.apply(boxes[i]), float(scores[i]), DETECTOR_NAME,
                          None if points is None else points[i], None if rolls is None else float(rolls[i])) for i in keep]


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
