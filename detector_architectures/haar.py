"""Face detection with OpenCV's shipped Haar cascades, giving boxes in the frontal-default convention.

The keypoint network is trained on crops framed by ``data_load.haar_box_from_keypoints``: the box that
``haarcascade_frontalface_default`` draws around a face (fitted on the training images). ``HaarFaceDetector``
returns boxes in exactly that convention, so the pipeline's crops match the training crops:

1. the image is turned to grayscale and brought to a working resolution, where its smallest face searched
   (``min_face_size`` pixels, or ``min_face_fraction`` of its shorter side where that is larger: a big photo's cost
   stays bounded) becomes ``working_face_size`` pixels; ``max_side`` can cap it further, and small pictures are
   enlarged to a shorter side of ``min_side`` (a face in a thumbnail is near the cascade's 20-24 pixel window, where
   it misses most faces); ``detect`` can also search one range of face sizes only;
2. each cascade in ``cascades`` runs once with ``minNeighbors=0``; its raw windows are grouped the way
   ``cv2.groupRectangles`` does it (``group_windows``), keeping groups of more than ``min_neighbors`` windows;
   ``profileface`` runs on the image and on its mirror, so it finds faces turned either way;
3. every other cascade's boxes are mapped onto the frontal-default convention by a fitted ``BoxCorrection``
   (scale and centre offset, ``BOX_CORRECTIONS``);
4. overlapping boxes are merged by non-maximum suppression in priority order: the first cascade's boxes first,
   so later cascades only add the faces the earlier ones missed.

``face_found`` is the one definition of "the labelled face was detected", shared by ``benchmarks/tune_detector.py``
and ``evaluate.py --mode pipeline``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np

# Chosen by ``benchmarks/tune_detector.py --limit 800`` (OpenCV 4.14, one thread). Stage 1 swept every cascade
# set (frontal default / alt / alt2 / alt_tree / profile, alone and default + others), scaleFactor 1.05 / 1.1 / 1.2,
# minNeighbors 2-6 for the first and for the other cascades, equalisation on / off, on 800 training images and 32
# pictures without faces, measuring faces found (``face_found``), extra detections per image, detections on the
# no-face pictures and ms per image; stage 2 recounted the misses of those settings on all 3462 training images.
# Rule: misses per image + false detections per image / 10, cheapest wins, ties to the fastest. Equalisation
# lost faces at every setting; alt_tree and profile alone found 59 % and 88 % at best. The pick: frontal default
# at minNeighbors 4 plus alt2 at 5, which misses 6 of 3462 training faces (default alone at 4: 17; with profile
# as well: 3, but 2.7x slower and more false detections), with 0.028 extra detections per image, 9 detections on
# the 32 no-face pictures (6 on the coins) and ~52 ms per ~200-pixel image. On the 770 test images: all found.
# Since then: the second cascade runs only where the first finds nothing ("if_empty", about half the time; the
# pipeline's checks and wider search follow), and the smallest face is set in pixels (40, searched at 40 pixels in
# the working picture). Measured with ``python evaluate.py --mode pipeline`` (770 test pictures): all found with
# working_face_size 40, "if_empty" or "always"; 769 with 32 (a smaller working picture), either way.
# Then, for speed, the scale step went from 1.1 to 1.25, which searches well under half the windows, and groups of
# more than 1 and 2 windows are kept, as a face now gathers fewer windows (the pipeline's face checks reject the
# extra false detections, and its thorough search looks again where this fast pass leaves doubt). Measured with
# ``benchmarks/detector_settings.py`` (the detector alone, one thread; faces found with ``face_found``): 768 of the
# 770 test faces (before: 769) in 7.4 ms a picture (before: 18.7 ms), 293 of the 303 held-out 300-W faces
# (before: 289), 6 detections on the 288 measuring pictures without faces (before: 1). With a scale step of 1.2 it
# found 769 and 296 faces in about 0.7 times the time of 1.1, which left a 640 x 480 picture 3 ms short of the
# pipeline's 40 ms aim. ``THOROUGH_PARAMS`` are the former settings, which the pipeline's thorough and wider
# searches use.
DEFAULT_PARAMS: dict = {
    "cascades": ("frontalface_default", "frontalface_alt2"),  # in priority order; "profileface" also runs mirrored
    "scale_factor": 1.25,  # cv2 scaleFactor: step between the scales searched
    "min_neighbors": 1,  # the first cascade keeps groups of more than this many raw windows
    "secondary_min_neighbors": 2,  # the same for the other cascades
    "secondary": "if_empty",  # "always": run every cascade; "if_empty": the others only when the first finds nothing
    "equalize": False,  # cv2.equalizeHist on the working image
    "min_face_size": 40,  # smallest face searched, in pixels of the input picture (None: down to the window)
    # ... and at least this fraction of the picture's shorter side, which bounds a big picture's cost: 76 px on
    # 4032 x 3024, where six 100-px faces of the astronaut are still found (0.03 lost some of them)
    "min_face_fraction": 0.025,
    "working_face_size": 40,  # the picture is shrunk until that smallest face is this many pixels, never below
    "min_side": 128,  # ... a shorter side of this many pixels; smaller pictures are enlarged to it ...
    "max_upscale": 4.0,  # ... by at most this factor
    "max_side": None,  # optional cap: bigger pictures are shrunk until their long side is at most this (faster,
    # but faces smaller than min_face_size x long side / max_side are then missed)
    "nms_iou": 0.3,  # a box overlapping a kept box by this IoU (or lying mostly inside it) is dropped
}

# The settings ``tune_detector.py`` chose: more than twice the scales and windows of ``DEFAULT_PARAMS``, stricter
# grouping.
THOROUGH_PARAMS: dict = {"scale_factor": 1.1, "min_neighbors": 4, "secondary_min_neighbors": 5}

CASCADES = ("frontalface_default", "frontalface_alt", "frontalface_alt2", "frontalface_alt_tree", "profileface")
PRIMARY = "frontalface_default"
# Raw windows closer than this (relative to their size) are grouped into one detection; cv2's GROUP_EPS.
GROUP_EPS = 0.2
# A box whose intersection with a kept box covers this share of the smaller box is a duplicate as well.
NMS_CONTAINED = 0.5


@dataclass
class Detection:
    """A face: ``box`` = (x, y, w, h) float pixels of the input image, frontal-default convention; higher ``score``
    is surer (the number of raw cascade windows merged into the box); ``cascade`` says which cascade found it.
    ``points``: where the detector gives them (the learned one), the face's five points (5, 2) in input pixels:
    right eye centre, left eye centre, nose tip, right and left mouth corner (the subject's sides, iBUG order);
    None for the cascades. ``roll``: where the detector gives it, the face's roll in degrees (the eye line's angle,
    y down: 0 upright, positive when the face leans clockwise as seen); None for the cascades, which find upright
    faces."""

    box: np.ndarray
    score: float
    cascade: str = PRIMARY
    points: np.ndarray | None = None
    roll: float | None = None

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float64).reshape(4)
        self.score = float(self.score)
        if self.points is not None:
            self.points = np.asarray(self.points, dtype=np.float64).reshape(5, 2)


# ---------------------------------------------------------------------------------------------------------
# Box geometry
# ---------------------------------------------------------------------------------------------------------
def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    inter = _intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def box_intersection_over_smaller(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection divided by the smaller box's area: 1 when one box lies inside the other."""
    smaller = min(a[2] * a[3], b[2] * b[3])
    return float(_intersection(a, b) / smaller) if smaller > 0 else 0.0


def _intersection(a: Sequence[float], b: Sequence[float]) -> float:
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return float(max(width, 0.0) * max(height, 0.0))


def mirror_box(box: Sequence[float], image_width: float) -> np.ndarray:
    """The box of the mirrored image (columns x <-> image_width - x)."""
    x, y, w, h = (float(v) for v in box)
    return np.array([image_width - x - w, y, w, h])


@dataclass(frozen=True)
class BoxCorrection:
    """Maps a cascade's box onto the frontal-default convention.

    The corrected box is a square of side ``scale * s`` centred ``(dx, dy) * s`` from the detected box's centre,
    with ``s`` = sqrt(w * h) of the detected box. It is defined in the cascade's own frame: for a cascade run on
    the mirrored image use ``mirrored()`` (dx changes sign).
    """

    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def apply(self, box: Sequence[float]) -> np.ndarray:
        x, y, w, h = (float(v) for v in box)
        s = float(np.sqrt(max(w * h, 0.0)))
        cx, cy = x + w / 2 + self.dx * s, y + h / 2 + self.dy * s
        side = self.scale * s
        return np.array([cx - side / 2, cy - side / 2, side, side])

    def mirrored(self) -> "BoxCorrection":
        return BoxCorrection(self.scale, -self.dx, self.dy)

    @classmethod
    def fit(cls, detected: np.ndarray, target: np.ndarray) -> "BoxCorrection":
        """The correction taking ``detected`` boxes (N x 4) to matching ``target`` boxes (N x 4): medians, so a few
        poor matches don't pull it."""
        detected, target = np.asarray(detected, np.float64).reshape(-1, 4), np.asarray(target, np.float64).reshape(-1, 4)
        if len(detected) == 0:
            return cls()
        s_d = np.sqrt(detected[:, 2] * detected[:, 3])
        s_t = np.sqrt(target[:, 2] * target[:, 3])
        centre_d = detected[:, :2] + detected[:, 2:] / 2
        centre_t = target[:, :2] + target[:, 2:] / 2
        offset = (centre_t - centre_d) / s_d[:, None]
        return cls(float(np.median(s_t / s_d)), float(np.median(offset[:, 0])), float(np.median(offset[:, 1])))


# Fitted by ``benchmarks/tune_detector.py`` on its 800 training images (scaleFactor 1.1, minNeighbors 3): each
# cascade's boxes that match a labelled face, against ``haar_box_from_keypoints`` of that face (medians; the
# profile cascade in its own frame, pooling detections on the image and on its mirror: 771 faces). The frontal
# default is the convention itself (its fit, scale 1.010 and offsets below 0.003, is within the noise: the
# spread of single boxes is about 0.09 of the side).
BOX_CORRECTIONS: dict[str, BoxCorrection] = {
    "frontalface_default": BoxCorrection(),
    "frontalface_alt": BoxCorrection(1.032, -0.002, 0.004),
    "frontalface_alt2": BoxCorrection(1.035, -0.002, 0.004),
    "frontalface_alt_tree": BoxCorrection(0.998, -0.011, 0.001),
    "profileface": BoxCorrection(0.894, -0.098, 0.024),
}


def box_convention_error(detected: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """How far a detected box falls from the target box, in units of the target's side s = sqrt(w * h):
    (centre x offset, centre y offset, side ratio)."""
    d, t = np.asarray(detected, np.float64), np.asarray(target, np.float64)
    s_d, s_t = np.sqrt(d[2] * d[3]), np.sqrt(t[2] * t[3])
    offset = (d[:2] + d[2:] / 2 - t[:2] - t[2:] / 2) / s_t
    return np.array([offset[0], offset[1], s_d / s_t])


# ---------------------------------------------------------------------------------------------------------
# Did we find the labelled face?
# ---------------------------------------------------------------------------------------------------------
MATCH_IOU = 0.3  # IoU with the keypoint-derived Haar box
MATCH_COVER = 0.5  # ... or: the intersection with the keypoint box covers this share of both boxes


def match_scores(box: Sequence[float], keypoints: np.ndarray) -> tuple[float, float]:
    """(IoU with the face's Haar-convention box ``haar_box_from_keypoints``, intersection with the keypoint box
    divided by the larger of the two areas) for a detection ``box`` and the face's keypoints (K x 2)."""
    from data_load import haar_box_from_keypoints, keypoint_box  # here, so detection alone needs no torch

    box = np.asarray(box, np.float64)
    keypoints = np.asarray(keypoints, np.float32)
    iou = box_iou(box, haar_box_from_keypoints(keypoints).astype(np.float64))
    kp_box = keypoint_box(keypoints).astype(np.float64)
    larger = max(box[2] * box[3], kp_box[2] * kp_box[3])
    cover = _intersection(box, kp_box) / larger if larger > 0 else 0.0
    return iou, cover


def match_face(detections: Iterable[Detection | Sequence[float]], keypoints: np.ndarray) -> int | None:
    """Index of the detection that is the labelled face, or None when no detection is.

    A detection matches when its IoU with ``haar_box_from_keypoints(keypoints)`` is at least ``MATCH_IOU`` (0.3),
    or when it overlaps the keypoint box so that the intersection covers at least ``MATCH_COVER`` (half) of both
    the detection and the keypoint box (this accepts a face found but framed in another convention). When several
    match, the face is the best-overlapping one: highest IoU with the Haar-convention box, then highest cover.
    """
    best, best_key = None, None
    for i, detection in enumerate(detections):
        box = detection.box if isinstance(detection, Detection) else detection
        iou, cover = match_scores(box, keypoints)
        if (iou >= MATCH_IOU or cover >= MATCH_COVER) and (best_key is None or (iou, cover) > best_key):
            best, best_key = i, (iou, cover)
    return best


def face_found(detections: Iterable[Detection | Sequence[float]], keypoints: np.ndarray) -> bool:
    """True when one of the detections is the face with these keypoints (see ``match_face``)."""
    return match_face(detections, keypoints) is not None


# ---------------------------------------------------------------------------------------------------------
# Grouping raw cascade windows
# ---------------------------------------------------------------------------------------------------------
def group_windows(
    rects: np.ndarray, weights: np.ndarray | None, min_neighbors: int, eps: float = GROUP_EPS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cv2.groupRectangles`` on raw detection windows, as ``detectMultiScale`` does it, with float mean boxes.

    Windows are joined when all four edges are within ``eps`` times their mean size; groups of at most
    ``min_neighbors`` windows are dropped, as are small groups inside bigger, stronger ones. Returns the boxes
    (M x 4 float), the number of windows in each group and the best level weight in each group.
    With ``min_neighbors`` = 0 the windows come back ungrouped, as in OpenCV.
    """
    rects = np.asarray(rects, np.float64).reshape(-1, 4)
    weights = np.zeros(len(rects)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    n = len(rects)
    if n == 0 or min_neighbors <= 0:
        return rects, np.ones(n), weights
    x, y, w, h = rects.T
    delta = eps * (np.minimum(w[:, None], w[None]) + np.minimum(h[:, None], h[None])) * 0.5
    similar = (
        (np.abs(x[:, None] - x[None]) <= delta)
        & (np.abs(y[:, None] - y[None]) <= delta)
        & (np.abs((x + w)[:, None] - (x + w)[None]) <= delta)
        & (np.abs((y + h)[:, None] - (y + h)[None]) <= delta)
    )
    # connected components: every window takes the smallest label among its neighbours until nothing changes
    labels = np.arange(n)
    while True:
        new = np.where(similar, labels[None, :], n).min(axis=1)
        new = new[new]
        if np.array_equal(new, labels):
            break
        labels = new
    _, group, counts = np.unique(labels, return_inverse=True, return_counts=True)
    m = len(counts)
    boxes = np.zeros((m, 4))
    np.add.at(boxes, group, rects)
    boxes /= counts[:, None]
    best_weight = np.full(m, -np.inf)
    np.maximum.at(best_weight, group, weights)

    strong = counts > min_neighbors
    rounded = np.round(boxes)  # OpenCV compares the rounded mean boxes
    keep = []
    for i in np.flatnonzero(strong):
        inside = False
        for j in np.flatnonzero(strong):
            if j == i:
                continue
            dx, dy = np.round(rounded[j, 2] * eps), np.round(rounded[j, 3] * eps)
            if (
                rounded[i, 0] >= rounded[j, 0] - dx
                and rounded[i, 1] >= rounded[j, 1] - dy
                and rounded[i, 0] + rounded[i, 2] <= rounded[j, 0] + rounded[j, 2] + dx
                and rounded[i, 1] + rounded[i, 3] <= rounded[j, 1] + rounded[j, 3] + dy
                and (counts[j] > max(3, counts[i]) or counts[i] < 3)
            ):
                inside = True
                break
        if not inside:
            keep.append(i)
    keep = np.asarray(keep, dtype=np.int64)
    return boxes[keep], counts[keep].astype(np.float64), best_weight[keep]


def suppress(detections: Sequence[Detection], iou: float = 0.3, contained: float = NMS_CONTAINED) -> list[Detection]:
    """Greedy non-maximum suppression in the given order (earlier wins): a detection is dropped when its IoU with
    a kept one is at least ``iou`` or their intersection covers ``contained`` of the smaller box."""
    kept: list[Detection] = []
    for detection in detections:
        if all(
            box_iou(detection.box, other.box) < iou and box_intersection_over_smaller(detection.box, other.box) < contained
            for other in kept
        ):
            kept.append(detection)
    return kept


# ---------------------------------------------------------------------------------------------------------
# The detector
# ---------------------------------------------------------------------------------------------------------
RawWindows = tuple[np.ndarray, np.ndarray]  # (N x 4 boxes in working-image pixels, N level weights)


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """Grayscale uint8 of an H x W, H x W x 1, RGB or RGBA image of uint8, uint16, float ([0, 1] or 0-255) or bool."""
    from data_load import to_uint8

    image = to_uint8(image)
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGBA2GRAY)
    raise ValueError(f"Expected an H x W, H x W x 3 or H x W x 4 image, got shape {image.shape}.")


def cascade_path(name: str) -> str:
    if name not in CASCADES:
        raise ValueError(f"Unknown cascade {name!r}; choose from {', '.join(CASCADES)}.")
    return f"{cv2.data.haarcascades}haarcascade_{name}.xml"


def load_cascade(name: str) -> cv2.CascadeClassifier:
    classifier = cv2.CascadeClassifier(cascade_path(name))
    if classifier.empty():
        raise RuntimeError(f"OpenCV could not load {cascade_path(name)}: reinstall opencv-python.")
    return classifier


@dataclass
class WorkingImage:
    """The grayscale image the cascades see, ``scale`` times the original, and the smallest face searched for
    (in working pixels; each cascade also stops at its own window size)."""

    gray: np.ndarray
    scale: float
    min_face: int
    original_shape: tuple[int, int]
    max_face: float | None = None


def smallest_face(short: int, params: dict) -> float:
    """The smallest face searched, in pixels, in a picture whose shorter side is ``short`` pixels: ``min_face_size``,
    or ``min_face_fraction`` of the shorter side where that is larger (0: no face size limit)."""
    return max(params["min_face_size"] or 0, params["min_face_fraction"] * short)


def working_scale(short: int, long: int, params: dict) -> float:
    """The factor from a picture with sides ``short`` <= ``long`` to the detector's working picture (see
    ``HaarFaceDetector.prepare``)."""
    scale = 1.0
    smallest = smallest_face(short, params)
    if smallest:
        scale = min(scale, params["working_face_size"] / smallest)
    if short * scale < params["min_side"]:
        scale = min(params["min_side"] / short, params["max_upscale"])
    if params["max_side"]:
        scale = min(scale, params["max_side"] / long)
    return scale


class HaarFaceDetector:
    """Finds faces with OpenCV's Haar cascades; ``detect(image)`` gives ``Detection``s, surest first.

    Keyword arguments override ``DEFAULT_PARAMS`` (same names). Not thread-safe: use one detector per thread.
    """

    def __init__(self, **params) -> None:
        unknown = set(params) - set(DEFAULT_PARAMS)
        if unknown:
            raise TypeError(f"Unknown detector parameter(s): {', '.join(sorted(unknown))}.")
        self.params = {**DEFAULT_PARAMS, **params}
        self.params["cascades"] = tuple(self.params["cascades"])
        if not self.params["cascades"]:
            raise ValueError("Give at least one cascade.")
        if self.params["secondary"] not in ("always", "if_empty"):
            raise ValueError("secondary must be 'always' or 'if_empty'.")
        self.classifiers = {name: load_cascade(name) for name in self.params["cascades"]}
        self.windows = {name: max(c.getOriginalWindowSize()) for name, c in self.classifiers.items()}

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.params.items() if DEFAULT_PARAMS.get(k) != v}
        return f"HaarFaceDetector({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def __call__(self, image: np.ndarray) -> list[Detection]:
        return self.detect(image)

    def smallest_face(self, shape: tuple[int, ...]) -> float:
        """The smallest face searched, in pixels, in a picture of ``shape`` (H, W, ...) (``smallest_face``)."""
        return smallest_face(min(shape[:2]), self.params)

    def scale_for(self, min_face: float) -> float:
        """The working / input scale at which faces of ``min_face`` pixels become ``working_face_size`` pixels."""
        return self.params["working_face_size"] / max(float(min_face), 1e-6)

    # -- the steps -------------------------------------------------------------------------------------------
    def prepare(self, image: np.ndarray, params: dict | None = None) -> WorkingImage | None:
        """The grayscale working image at the working scale (optionally equalised); None if it can't hold a face.

        The picture is shrunk so that its smallest face searched (``smallest_face``: ``min_face_size`` pixels, or
        ``min_face_fraction`` of the shorter side where that is larger) becomes ``working_face_size`` pixels (a
        little above the cascades' 20-24 pixel window, where they miss many faces), but never below a shorter
        side of ``min_side``; pictures smaller than that are enlarged to it, by at most ``max_upscale``. The time
        per picture so grows with its area over the smallest face's side squared: with ``min_face_fraction`` it is
        bounded whatever the picture's size, and ``max_side`` caps it too. Smaller faces (and faces smaller than
        the cascade's window) are not searched for. ``params`` overrides the detector's own (``detect``).
        """
        p = self.params if params is None else params
        if np.asarray(image).size == 0:
            return None
        gray = to_gray_uint8(image)
        height, width = gray.shape
        short, long = min(height, width), max(height, width)
        if short == 0:
            return None
        scale = working_scale(short, long, p)
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            scale = gray.shape[1] / width  # the exact factor after rounding
        if min(gray.shape) < min(self.windows.values()):
            return None
        if p["equalize"]:
            gray = cv2.equalizeHist(gray)
        min_face = int(round(smallest_face(short, p) * scale))
        return WorkingImage(gray, scale, min_face, (height, width))

    def raw_windows(self, working: WorkingImage, name: str, mirrored: bool = False) -> RawWindows:
        """Every window that passes the whole cascade (minNeighbors=0), in working-image pixels, of at least the
        working picture's smallest face and at most its ``max_face`` (when set)."""
        min_size = max(self.windows[name], working.min_face)
        max_size = 0 if working.max_face is None else int(np.ceil(working.max_face))
        if min_size > min(working.gray.shape) or (max_size and max_size < min_size):
            return np.zeros((0, 4)), np.zeros(0)
        gray = np.ascontiguousarray(working.gray[:, ::-1]) if mirrored else working.gray
        rects, _, weights = self.classifiers[name].detectMultiScale3(
            gray,
            scaleFactor=self.params["scale_factor"],
            minNeighbors=0,
            minSize=(min_size, min_size),
            maxSize=(max_size, max_size),
            outputRejectLevels=True,
        )
        rects = np.asarray(rects, np.float64).reshape(-1, 4)
        if mirrored and len(rects):
            rects[:, 0] = gray.shape[1] - rects[:, 0] - rects[:, 2]
        return rects, np.asarray(weights, np.float64).reshape(-1)

    def sources(self) -> list[tuple[str, bool]]:
        """(cascade, mirrored) runs in priority order; the profile cascade runs on the image and on its mirror."""
        runs = []
        for name in self.params["cascades"]:
            runs.append((name, False))
            if name == "profileface":
                runs.append((name, True))
        return runs

    def min_neighbors_for(self, name: str) -> int:
        return self.params["min_neighbors"] if name == self.params["cascades"][0] else self.params["secondary_min_neighbors"]

    def detections_of_run(
        self, raw: RawWindows, name: str, mirrored: bool, scale: float, min_neighbors: int | None = None
    ) -> list[Detection]:
        """One cascade run's raw windows grouped, mapped back to original pixels (``scale`` = working / original)
        and onto the frontal-default convention, surest first."""
        if min_neighbors is None:
            min_neighbors = self.min_neighbors_for(name)
        boxes, counts, _ = group_windows(*raw, min_neighbors)
        correction = BOX_CORRECTIONS.get(name, BoxCorrection())
        if mirrored:
            correction = correction.mirrored()
        label = f"{name}_mirrored" if mirrored else name
        found = [Detection(correction.apply(box / scale), count, label) for box, count in zip(boxes, counts)]
        return sorted(found, key=lambda d: -d.score)

    def merge(self, runs: Sequence[list[Detection]]) -> list[Detection]:
        """Non-maximum suppression over the runs' detections in priority order, then sorted surest first."""
        kept = suppress([d for run in runs for d in run], self.params["nms_iou"])
        return sorted(kept, key=lambda d: -d.score)

    def detect(
        self, image: np.ndarray, min_face_size: float | None = None, max_face_size: float | None = None, secondary: bool = True
    ) -> list[Detection]:
        """Faces in an RGB (or grayscale, or RGBA) image, as ``Detection``s in original pixels, surest first.

        ``min_face_size`` and ``max_face_size`` (pixels of ``image``) search only faces of that size range, at the
        resolution the smallest of them needs (``prepare``): a search around a detection looks for faces of about its
        size, at a fraction of the cost of a search from the detector's own smallest face. ``secondary=False`` runs
        the first cascade alone (a search of smaller faces where bigger ones were already found)."""
        params = self.params
        if min_face_size is not None:
            params = {**params, "min_face_size": float(min_face_size), "min_face_fraction": 0.0}
        working = self.prepare(image, params)
        if working is None:
            return []
        if max_face_size is not None:
            working.max_face = max_face_size * working.scale
        runs: list[list[Detection]] = []
        primary = self.params["cascades"][0]
        for name, mirrored in self.sources():
            if name != primary and (not secondary or (self.params["secondary"] == "if_empty" and any(runs))):
                break
            raw = self.raw_windows(working, name, mirrored)
            runs.append(self.detections_of_run(raw, name, mirrored, working.scale))
        return self.merge(runs)
