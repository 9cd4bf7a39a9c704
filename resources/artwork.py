"""Procedural artwork for the face filters: sunglasses, moustache, top hat and face masks, all drawn here.

Everything is drawn in *face units* on a canonical 68-point face (iBUG order, 0-based) whose jaw is one unit
wide (point 0 at x = -0.5, point 16 at x = +0.5), eye level at y = 0 and y pointing down like image rows.
Drawing in face units means each picture knows exactly where the face's keypoints fall on it, so the
anchors that place it on a real face are just the canonical keypoints mapped into the picture.

Shapes are rasterised ``SUPERSAMPLE`` times larger with OpenCV's anti-aliased fills and strokes, composited
with premultiplied alpha and reduced with area averaging, which gives smooth edges and clean alpha.

Run ``python -m resources.artwork`` to (re)write every PNG and JSON file under ``images/``; ``filters.py`` also writes
a missing file on first use, so a fresh clone needs no generated files.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

IMAGES_DIR = Path(__file__).resolve().parents[1] / "images"
SUPERSAMPLE = 3
Color = tuple[float, float, float]

# ---------------------------------------------------------------------------------------------------------
# The canonical face
# ---------------------------------------------------------------------------------------------------------
_JAW = [(-0.5 * np.cos(np.pi * i / 16), 0.84 * np.sin(np.pi * i / 16)) for i in range(17)]
_BROW_LEFT = [(-0.41, -0.09), (-0.34, -0.135), (-0.26, -0.15), (-0.18, -0.14), (-0.10, -0.11)]
_NOSE = [(0.0, -0.01), (0.0, 0.087), (0.0, 0.174), (0.0, 0.262),
         (-0.10, 0.32), (-0.05, 0.34), (0.0, 0.355), (0.05, 0.34), (0.10, 0.32)]
_EYE_LEFT = [(-0.30, 0.01), (-0.25, -0.02), (-0.19, -0.02), (-0.135, 0.01), (-0.19, 0.03), (-0.25, 0.03)]
_MOUTH = [(-0.19, 0.48), (-0.12, 0.445), (-0.05, 0.43), (0.0, 0.44), (0.05, 0.43), (0.12, 0.445), (0.19, 0.48),
          (0.12, 0.53), (0.055, 0.56), (0.0, 0.565), (-0.055, 0.56), (-0.12, 0.53),
          (-0.16, 0.48), (-0.05, 0.465), (0.0, 0.468), (0.05, 0.465), (0.16, 0.48),
          (0.05, 0.495), (0.0, 0.498), (-0.05, 0.495)]


def _mirror(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points reflected across the face's midline (x = 0)."""
    return [(-x, y) for x, y in points]


# Right brow runs inner to outer (22-26); right eye starts at its inner corner (42) and goes over the top.
_BROW_RIGHT = _mirror(_BROW_LEFT[::-1])
_EYE_RIGHT = _mirror([_EYE_LEFT[i] for i in (3, 2, 1, 0, 5, 4)])

#: A symmetric frontal face in face units, derived by hand from typical facial proportions (68 x 2).
CANONICAL_FACE = np.array(_JAW + _BROW_LEFT + _BROW_RIGHT + _NOSE + _EYE_LEFT + _EYE_RIGHT + _MOUTH, dtype=np.float64)

LEFT_EYE = list(range(36, 42))
RIGHT_EYE = list(range(42, 48))
# Forehead points in the face's own frame: origin at the brows' centre, x along the jaw (point 0 to 16), y from
# the brows' centre towards the chin. They trace a dome over the brows on the canonical face.
_DOME = np.deg2rad(np.linspace(165, 15, 10))
FOREHEAD_FRAME = np.stack([0.49 * np.cos(_DOME), -(0.38 * np.sin(_DOME) - 0.005) / 0.965], axis=1)


def with_forehead(keypoints: np.ndarray) -> np.ndarray:
    """The 68 keypoints followed by 10 forehead points over the brows, left to right (78 x 2).

    The 68 points stop at the brows, so a mask warped over them alone would leave the forehead bare. The
    forehead points are an affine combination of keypoints (see ``FOREHEAD_FRAME``), so they follow the face
    exactly under any affine transform and are defined the same way on mask pictures and on real faces.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    middle = keypoints[17:27].mean(axis=0)
    across, down = keypoints[16] - keypoints[0], keypoints[8] - middle
    return np.vstack([keypoints, middle + FOREHEAD_FRAME[:, :1] * across + FOREHEAD_FRAME[:, 1:] * down])


def face_outline(keypoints: np.ndarray) -> np.ndarray:
    """A smooth closed outline of the face and forehead through the jaw and forehead points."""
    extended = with_forehead(keypoints)
    return smooth(np.vstack([extended[:17], extended[68:][::-1]]), closed=True)


def similarity_matrix(center: Sequence[float], scale: float, angle_deg: float) -> np.ndarray:
    """2 x 3 matrix taking face units to pixels: ``scale`` pixels per unit, rotated, face origin at ``center``."""
    angle = np.deg2rad(angle_deg)
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, center[0]], [s, c, center[1]]], dtype=np.float64)


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 affine matrix to (..., 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def face_keypoints(center: Sequence[float], width: float, roll_deg: float = 0.0) -> np.ndarray:
    """The canonical face with a jaw ``width`` pixels wide, rolled by ``roll_deg``, eye level centred at ``center``."""
    return apply_matrix(similarity_matrix(center, width, roll_deg), CANONICAL_FACE)


# ---------------------------------------------------------------------------------------------------------
# Curves
# ---------------------------------------------------------------------------------------------------------
def smooth(points: np.ndarray, closed: bool = False, samples: int = 10) -> np.ndarray:
    """A Catmull-Rom spline through ``points``: smooth outlines that still pass through the keypoints."""
    p = np.asarray(points, dtype=np.float64)
    if closed:
        p = np.vstack([p[-1:], p, p[:2]])
    else:
        p = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    t = np.linspace(0, 1, samples, endpoint=False)[:, None]
    pieces = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        pieces.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                             + (3 * p1 - p0 - 3 * p2 + p3) * t**3))
    if not closed:
        pieces.append(p[-2][None])
    return np.vstack(pieces)


def ellipse(center: Sequence[float], rx: float, ry: float, angle_deg: float = 0.0, n: int = 72,
            power: float = 2.0) -> np.ndarray:
    """Points of an ellipse (``power`` > 2 gives a rounded rectangle, a superellipse)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = rx * np.sign(c) * np.abs(c) ** (2 / power)
    y = ry * np.sign(s) * np.abs(s) ** (2 / power)
    a = np.deg2rad(angle_deg)
    return np.stack([center[0] + x * np.cos(a) - y * np.sin(a), center[1] + x * np.sin(a) + y * np.cos(a)], axis=1)


def bezier(p0: Sequence[float], p1: Sequence[float], p2: Sequence[float], p3: Sequence[float], n: int = 40) -> np.ndarray:
    """Points of a cubic Bezier curve."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2, p3 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2, p3))
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def ribbon(centerline: np.ndarray, widths: Sequence[float] | np.ndarray) -> np.ndarray:
    """A closed polygon around a centre line whose width varies along it (tapered strokes, stripes, curls)."""
    line = np.asarray(centerline, dtype=np.float64)
    widths = np.broadcast_to(np.asarray(widths, dtype=np.float64), (len(line),))
    tangent = np.gradient(line, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-12)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1) * (widths[:, None] / 2)
    return np.vstack([line + normal, (line - normal)[::-1]])


def taper(n: int, start: float, peak: float, end: float, peak_at: float = 0.35) -> np.ndarray:
    """Widths along a stroke: ``start`` rising smoothly to ``peak`` at ``peak_at`` then falling to ``end``."""
    t = np.linspace(0, 1, n)
    rise = start + (peak - start) * np.sin(np.pi / 2 * np.clip(t / peak_at, 0, 1))
    fall = end + (peak - end) * np.cos(np.pi / 2 * np.clip((t - peak_at) / (1 - peak_at), 0, 1))
    return np.where(t < peak_at, rise, fall)


def polygon_centroid(polygon: np.ndarray) -> np.ndarray:
    """Area centroid of a simple polygon."""
    x, y = polygon[:, 0], polygon[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2
    return np.array([((x + xn) * cross).sum(), ((y + yn) * cross).sum()]) / (6 * area)


# ---------------------------------------------------------------------------------------------------------
# The canvas
# ---------------------------------------------------------------------------------------------------------
class Canvas:
    """A supersampled premultiplied-RGBA canvas that takes coordinates in face units.

    ``face_to_px`` maps face units to pixels of the final picture (pixel centres at integers). Coverage maps
    (float H x W in [0, 1]) come from ``fill`` and ``stroke``; ``paint`` composites a colour (or a per-pixel
    colour array) through a coverage map with the "over" operator and ``erase`` cuts holes.
    """

    def __init__(self, size: tuple[int, int], face_to_px: np.ndarray, background: Color | None = None,
                 supersample: int = SUPERSAMPLE) -> None:
        self.size = size
        self.ss = supersample
        self.face_to_px = np.asarray(face_to_px, dtype=np.float64)
        width, height = size[0] * supersample, size[1] * supersample
        self.matrix = np.asarray(face_to_px, dtype=np.float64) * supersample
        self.matrix[:, 2] += (supersample - 1) / 2
        self.px_per_unit = float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))
        inverse = cv2.invertAffineTransform(self.matrix)
        xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
        #: Face-unit coordinates of every supersampled pixel, for gradients and per-pixel colours.
        self.u = (inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]).astype(np.float32)
        self.v = (inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]).astype(np.float32)
        self.alpha = np.zeros((height, width), np.float32)
        self.color = np.zeros((height, width, 3), np.float32)  # premultiplied, 0-1
        if background is not None:
            self.alpha[:] = 1
            self.color[:] = np.asarray(background, np.float32) / 255

    def _px(self, points: np.ndarray) -> np.ndarray:
        """Face units to supersampled pixels as OpenCV fixed-point integers (for ``shift=4`` drawing)."""
        return np.round(apply_matrix(self.matrix, points) * 16).astype(np.int32)  # 4 fractional bits

    def fill(self, *polygons: np.ndarray) -> np.ndarray:
        """Coverage of the union of filled polygons."""
        mask = np.zeros(self.alpha.shape, np.uint8)
        for polygon in polygons:
            cv2.fillPoly(mask, [self._px(polygon)], 255, cv2.LINE_AA, shift=4)
        return mask.astype(np.float32) / 255

    def stroke(self, line: np.ndarray, width: float, closed: bool = False) -> np.ndarray:
        """Coverage of a round-capped stroke ``width`` face units wide."""
        mask = np.zeros(self.alpha.shape, np.uint8)
        thickness = max(1, int(round(width * self.px_per_unit)))
        cv2.polylines(mask, [self._px(line)], closed, 255, thickness, cv2.LINE_AA, shift=4)
        return mask.astype(np.float32) / 255

    def blur(self, coverage: np.ndarray, sigma: float) -> np.ndarray:
        """Soften a coverage map by a Gaussian ``sigma`` face units wide."""
        return cv2.GaussianBlur(coverage, (0, 0), max(sigma * self.px_per_unit, 0.5))

    def edge(self, coverage: np.ndarray, width: float) -> np.ndarray:
        """The inner rim of a coverage map, ``width`` face units wide (outlines a union of shapes as one)."""
        radius = max(1, int(round(width * self.px_per_unit)))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        return np.clip(coverage - cv2.erode(coverage, kernel), 0, 1)

    def linear(self, p0: Sequence[float], p1: Sequence[float], c0: Color, c1: Color) -> np.ndarray:
        """Colours (H x W x 3, 0-255) of a linear gradient from ``c0`` at ``p0`` to ``c1`` at ``p1``."""
        d = np.asarray(p1, np.float64) - np.asarray(p0, np.float64)
        t = ((self.u - p0[0]) * d[0] + (self.v - p0[1]) * d[1]) / float(d @ d)
        return self.mix(c0, c1, t)

    def radial(self, center: Sequence[float], radius: float, c0: Color, c1: Color, aspect: float = 1.0) -> np.ndarray:
        """Colours of a radial gradient, ``c0`` at the centre to ``c1`` at ``radius`` (``aspect`` stretches y)."""
        t = np.sqrt((self.u - center[0]) ** 2 + ((self.v - center[1]) / aspect) ** 2) / radius
        return self.mix(c0, c1, t)

    @staticmethod
    def mix(c0: Color, c1: Color, t: np.ndarray) -> np.ndarray:
        """Per-pixel blend of two colours by ``t`` (clipped to [0, 1])."""
        t = np.clip(t, 0, 1)[..., None].astype(np.float32)
        return np.asarray(c0, np.float32) * (1 - t) + np.asarray(c1, np.float32) * t

    def paint(self, coverage: np.ndarray, color: Color | np.ndarray, opacity: float | np.ndarray = 1.0) -> None:
        """Composite ``color`` (0-255) over the canvas through ``coverage`` times ``opacity``."""
        a = np.clip(coverage * opacity, 0, 1).astype(np.float32)
        rgb = np.broadcast_to(np.asarray(color, np.float32) / 255, self.color.shape)
        self.color = rgb * a[..., None] + self.color * (1 - a[..., None])
        self.alpha = a + self.alpha * (1 - a)

    def erase(self, coverage: np.ndarray) -> None:
        """Cut a (soft) hole: what is under ``coverage`` becomes transparent."""
        keep = np.clip(1 - coverage, 0, 1).astype(np.float32)
        self.color *= keep[..., None]
        self.alpha *= keep

    def premultiplied(self) -> np.ndarray:
        """The picture at its final size, premultiplied float RGBA in [0, 1]."""
        stacked = np.dstack([self.color, self.alpha])
        return cv2.resize(stacked, self.size, interpolation=cv2.INTER_AREA)

    def rgba(self) -> np.ndarray:
        """The picture at its final size as straight-alpha uint8 RGBA."""
        small = self.premultiplied()
        alpha = small[..., 3:]
        rgb = np.where(alpha > 1e-6, small[..., :3] / np.maximum(alpha, 1e-6), 0)
        return np.clip(np.rint(np.dstack([rgb, alpha]) * 255), 0, 255).astype(np.uint8)

    def rgb(self) -> np.ndarray:
        """The picture at its final size as uint8 RGB (for opaque canvases)."""
        return self.rgba()[..., :3]


def _canvas_for(x_range: tuple[float, float], y_range: tuple[float, float], px_per_unit: float) -> Canvas:
    """A transparent canvas showing the given face-unit window, with a small margin."""
    width = int(np.ceil((x_range[1] - x_range[0]) * px_per_unit)) + 4
    height = int(np.ceil((y_range[1] - y_range[0]) * px_per_unit)) + 4
    matrix = np.array([[px_per_unit, 0, 2 - x_range[0] * px_per_unit], [0, px_per_unit, 2 - y_range[0] * px_per_unit]])
    return Canvas((width, height), matrix)


# ---------------------------------------------------------------------------------------------------------
# Accessories: each returns the RGBA picture and its metadata (anchors, keypoint groups they go to)
# ---------------------------------------------------------------------------------------------------------
def _anchor_meta(canvas: Canvas, groups: list[list[int]], **points: np.ndarray) -> dict:
    """Anchors = canonical positions of the keypoint groups (group means) in picture pixels."""
    face_points = np.array([CANONICAL_FACE[g].mean(axis=0) for g in groups])
    meta = {"anchors": apply_matrix(canvas.face_to_px, face_points).round(3).tolist(), "targets": groups}
    meta["points"] = {name: apply_matrix(canvas.face_to_px, p).round(3).tolist() for name, p in points.items()}
    return meta


def _lens(side: int) -> np.ndarray:
    """A wayfarer-style lens outline whose area centroid is the eye centre (side -1: image left, +1: right)."""
    pts = ellipse((0, 0), 0.138, 0.1, power=2.8, n=120)
    x, y = pts[:, 0], pts[:, 1]
    x = x * np.where(y > 0, 1 - 0.16 * y / 0.1, 1.0)  # narrower at the bottom
    y = y - 0.024 * np.clip(x * side / 0.138, 0, 1) * (y < 0)  # outer top corner swept up
    pts = np.stack([x, y], axis=1)
    eye = CANONICAL_FACE[LEFT_EYE if side < 0 else RIGHT_EYE].mean(axis=0)
    return pts - polygon_centroid(pts) + eye


def draw_sunglasses() -> tuple[np.ndarray, dict]:
    """Blue-tinted wayfarers: graded half-transparent glass, reflections, a glossy frame, bridge and hinges."""
    canvas = _canvas_for((-0.56, 0.56), (-0.2, 0.18), 420)
    lenses = [_lens(-1), _lens(1)]
    frame_dark, frame_light = (16, 16, 20), (120, 122, 135)
    for side, lens in zip((-1, 1), lenses):  # temples behind the frame
        top = lens[np.argmin(lens[:, 1] - 0.5 * side * lens[:, 0])]
        arm = bezier(top + (-0.01 * side, 0.012), top + (0.06 * side, 0.0), (0.46 * side, -0.045), (0.52 * side, -0.03))
        canvas.paint(canvas.fill(ribbon(arm, taper(len(arm), 0.03, 0.03, 0.018))), frame_dark)
    glass = canvas.fill(*lenses)
    canvas.paint(glass, canvas.linear((0, -0.1), (0, 0.11), (14, 22, 64), (60, 100, 160)),
                 canvas.linear((0, -0.1), (0, 0.11), (242,) * 3, (180,) * 3)[..., 0] / 255)
    for dx, width, opacity in ((-0.045, 0.05, 0.32), (0.0, 0.018, 0.22)):
        band = np.array([(-0.2, 0.25), (-0.2 + width, 0.25), (0.2 + width, -0.25), (0.2, -0.25)]) + (dx, 0)
        shine = canvas.fill(*(band + lens.mean(axis=0) - (0.03, 0.0) for lens in lenses))
        canvas.paint(shine * glass, (255, 255, 255), opacity)
    rims = np.maximum(*(canvas.stroke(lens, 0.028, closed=True) for lens in lenses))
    canvas.paint(rims, frame_dark)
    left_top, right_top = (lens[lens[:, 1] < -0.02] for lens in lenses)
    bridge = bezier((-0.1, -0.045), (-0.05, -0.085), (0.05, -0.085), (0.1, -0.045))
    canvas.paint(canvas.stroke(bridge, 0.022), frame_dark)
    shine_line = np.maximum(canvas.stroke(left_top + (0, -0.004), 0.005), canvas.stroke(right_top + (0, -0.004), 0.005))
    canvas.paint(np.maximum(shine_line, canvas.stroke(bridge + (0, -0.005), 0.004)), frame_light, 0.75)
    for lens, side in zip(lenses, (-1, 1)):
        hinge = lens[np.argmin(lens[:, 1] - 0.5 * side * lens[:, 0])]
        canvas.paint(canvas.fill(ellipse(hinge, 0.01, 0.01)), canvas.radial(hinge - (0.003, 0.003), 0.012, (235, 235, 240), (120, 120, 130)))
    centres = np.array([polygon_centroid(lens) for lens in lenses])
    return canvas.rgba(), _anchor_meta(canvas, [[36], [45], LEFT_EYE, RIGHT_EYE], lens_centres=centres)


def draw_moustache() -> tuple[np.ndarray, dict]:
    """A waxed handlebar moustache: two tapered halves that curl up into spirals, with hair strokes."""
    canvas = _canvas_for((-0.38, 0.38), (0.27, 0.49), 420)
    halves = []
    for side in (-1, 1):
        knots = np.array([(-0.03, 0.371), (0.0, 0.372), (0.07, 0.378), (0.15, 0.405), (0.22, 0.42), (0.28, 0.405), (0.318, 0.37),
                          (0.315, 0.33), (0.29, 0.315), (0.267, 0.327), (0.268, 0.347), (0.282, 0.352)])
        line = smooth(knots * (side, 1), samples=14)
        halves.append((line, ribbon(line, taper(len(line), 0.062, 0.082, 0.007, peak_at=0.24))))
    body = canvas.fill(*(outline for _, outline in halves))
    canvas.paint(body, canvas.linear((0, 0.35), (0, 0.44), (40, 24, 14), (92, 58, 34)))
    rng = np.random.default_rng(7)
    for line, _ in halves:
        widths = taper(len(line), 0.062, 0.082, 0.007, peak_at=0.24)
        tangent = np.gradient(line, axis=0)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        for offset in rng.uniform(-0.38, 0.38, 16):
            start, stop = sorted(rng.integers(0, int(len(line) * 0.85), 2))
            if stop - start > 6:
                hair = line[start:stop] + normal[start:stop] * (offset * widths[start:stop, None])
                canvas.paint(canvas.stroke(hair, 0.0035) * body, (150, 105, 68), 0.45)
        upper = line + normal * (0.3 * widths[:, None])
        canvas.paint(canvas.blur(canvas.stroke(upper[: int(len(line) * 0.7)], 0.007), 0.004) * body, (190, 150, 110), 0.5)
    canvas.paint(canvas.edge(body, 0.004), (25, 14, 8), 0.6)
    return canvas.rgba(), _anchor_meta(canvas, [[33], [48], [54], [51]])


def draw_hat() -> tuple[np.ndarray, dict]:
    """A silk top hat with a red band, sitting on the forehead above the brows."""
    canvas = _canvas_for((-0.76, 0.76), (-1.3, -0.22), 330)
    brim_y, top_y = -0.34, -1.15
    black, sheen = (22, 22, 28), (95, 95, 110)
    brim = ellipse((0, brim_y), 0.72, 0.105, n=160)
    canvas.paint(canvas.fill(brim), canvas.radial((-0.14, brim_y - 0.03), 0.72, (70, 70, 82), black, aspect=0.2))
    bottom = ellipse((0, brim_y - 0.035), 0.47, 0.06, n=160)
    front = bottom[bottom[:, 1] >= brim_y - 0.035]
    front = front[np.argsort(-front[:, 0])]  # right to left along the lower half
    crown = np.vstack([front, [(-0.5, top_y)], [(0.5, top_y)]])
    shade = np.exp(-((canvas.u + 0.19) / 0.15) ** 2) * 0.75 + np.exp(-((canvas.u - 0.35) / 0.07) ** 2) * 0.25
    crown_colour = Canvas.mix(black, sheen, shade)
    crown_cov = canvas.fill(crown)
    canvas.paint(crown_cov, crown_colour)
    band_top = front + (0, -0.14)
    band = np.vstack([front, band_top[::-1] * (1.01, 1)])
    band_colour = Canvas.mix((110, 10, 22), (215, 45, 55), shade)
    canvas.paint(canvas.fill(band) * crown_cov, band_colour)
    canvas.paint(canvas.stroke(band_top, 0.008) * crown_cov, (60, 5, 12), 0.7)
    lid = ellipse((0, top_y), 0.5, 0.06, n=160)
    canvas.paint(canvas.fill(lid), canvas.radial((-0.12, top_y), 0.5, (60, 60, 72), (14, 14, 18), aspect=0.15))
    canvas.paint(canvas.stroke(lid[lid[:, 1] >= top_y], 0.006), sheen, 0.8)
    canvas.paint(canvas.stroke(brim[brim[:, 1] >= brim_y], 0.01), (110, 110, 125), 0.7)
    return canvas.rgba(), _anchor_meta(canvas, [[i] for i in list(range(17, 27)) + [0, 16]])


ACCESSORIES: dict[str, Callable[[], tuple[np.ndarray, dict]]] = {
    "sunglasses": draw_sunglasses,
    "moustache": draw_moustache,
    "hat": draw_hat,
}


# ---------------------------------------------------------------------------------------------------------
# Masks: painted onto the canonical face; their 68 keypoints are the canonical face in picture pixels
# ---------------------------------------------------------------------------------------------------------
MASK_PX_PER_UNIT = 380
_F = CANONICAL_FACE
_EYE_CENTRES = (_F[LEFT_EYE].mean(axis=0), _F[RIGHT_EYE].mean(axis=0))


def _mask_canvas() -> tuple[Canvas, np.ndarray]:
    """A canvas around the whole canonical face and the coverage of the face (forehead included)."""
    canvas = _canvas_for((-0.58, 0.58), (-0.56, 0.9), MASK_PX_PER_UNIT)
    return canvas, canvas.fill(face_outline(_F))


def _eye_outlines(grow: float = 1.35) -> list[np.ndarray]:
    """Smooth outlines of both eyes, enlarged ``grow`` times around their centres."""
    return [smooth((_F[idx] - _F[idx].mean(0)) * grow + _F[idx].mean(0), closed=True) for idx in (LEFT_EYE, RIGHT_EYE)]


def _eye_hole(canvas: Canvas, grow: float = 1.35, soft: float = 0.006) -> np.ndarray:
    """Soft coverage of both eyes, enlarged: erased so the wearer's own eyes show through."""
    return canvas.blur(canvas.fill(*_eye_outlines(grow)), soft)


def _mask_meta(canvas: Canvas) -> dict:
    """A mask's metadata: its 68 keypoints in picture pixels."""
    return {"keypoints": apply_matrix(canvas.face_to_px, _F).round(3).tolist()}


def _stripe(points: Sequence[tuple[float, float]], width: float) -> np.ndarray:
    """A stripe that is widest near its start and ends in a point."""
    line = smooth(np.array(points, np.float64), samples=12)
    return ribbon(line, taper(len(line), width * 0.6, width, 0.0, peak_at=0.3))


def draw_tiger() -> tuple[np.ndarray, dict]:
    """Orange fur with white muzzle and brows, black stripes, a nose pad and whisker spots."""
    canvas, face = _mask_canvas()
    soft_face = canvas.blur(face, 0.01)
    canvas.paint(soft_face, canvas.radial((0, 0.05), 0.75, (252, 160, 45), (205, 80, 10), aspect=1.3), 0.93)
    white = canvas.fill(ellipse((-0.1, 0.44), 0.14, 0.1), ellipse((0.1, 0.44), 0.14, 0.1),
                        ellipse((0, 0.62), 0.2, 0.16), ellipse((-0.21, -0.07), 0.1, 0.045, -8),
                        ellipse((0.21, -0.07), 0.1, 0.045, 8), ellipse((-0.3, 0.14), 0.1, 0.07, 20),
                        ellipse((0.3, 0.14), 0.1, 0.07, -20))
    canvas.paint(canvas.blur(white, 0.025) * face, (255, 248, 235), 0.95)
    stripes = [[(0, -0.5), (0.0, -0.4), (0.0, -0.28)], [(0.11, -0.5), (0.1, -0.41), (0.075, -0.31)],
               [(0.24, -0.47), (0.2, -0.39), (0.15, -0.33)], [(0.36, -0.4), (0.3, -0.33), (0.25, -0.28)],
               [(0.52, -0.1), (0.44, -0.07), (0.38, -0.03)], [(0.52, 0.05), (0.44, 0.07), (0.37, 0.1)],
               [(0.52, 0.22), (0.43, 0.23), (0.35, 0.27)], [(0.48, 0.42), (0.4, 0.43), (0.33, 0.47)],
               [(0.36, 0.68), (0.3, 0.65), (0.25, 0.63)]]
    shapes = []
    for s in stripes:
        shapes.append(_stripe(s, 0.055))
        if s[0][0] != 0:
            shapes.append(_stripe([(-x, y) for x, y in s], 0.055))
    canvas.paint(canvas.fill(*shapes) * face, (20, 14, 10), 0.95)
    nose = smooth(np.array([(-0.075, 0.27), (0.075, 0.27), (0.02, 0.335), (-0.02, 0.335)]), closed=True)
    canvas.paint(canvas.fill(nose), canvas.radial((0, 0.28), 0.08, (90, 60, 60), (25, 18, 18)))
    canvas.paint(canvas.stroke(np.array([(0, 0.33), (0, 0.4), (-0.06, 0.44)]), 0.012), (25, 18, 18))
    canvas.paint(canvas.stroke(np.array([(0, 0.4), (0.06, 0.44)]), 0.012), (25, 18, 18))
    spots = [ellipse((sx * x, y), 0.009, 0.009) for sx in (-1, 1) for x, y in ((0.08, 0.42), (0.13, 0.41), (0.1, 0.46), (0.15, 0.455))]
    canvas.paint(canvas.fill(*spots), (40, 28, 22))
    eyes = _eye_outlines(1.45)
    canvas.erase(_eye_hole(canvas, 1.45))
    canvas.paint(np.maximum(*(canvas.stroke(e, 0.016, closed=True) for e in eyes)), (15, 10, 8))
    return canvas.rgba(), _mask_meta(canvas)


def draw_skull() -> tuple[np.ndarray, dict]:
    """Bone-white face paint with dark sockets, a nasal cavity, cheek hollows and a row of teeth."""
    canvas, face = _mask_canvas()
    canvas.paint(canvas.blur(face, 0.012), canvas.radial((0, -0.05), 0.8, (246, 243, 232), (175, 170, 160), aspect=1.25), 0.95)
    hollows = canvas.fill(ellipse((-0.32, 0.36), 0.1, 0.17, 12), ellipse((0.32, 0.36), 0.1, 0.17, -12),
                          ellipse((-0.4, -0.22), 0.06, 0.14), ellipse((0.4, -0.22), 0.06, 0.14))
    canvas.paint(canvas.blur(hollows, 0.04) * face, (95, 92, 88), 0.55)
    sockets = canvas.fill(*(ellipse(c, 0.15, 0.12, n=90) for c in _EYE_CENTRES))
    canvas.paint(canvas.blur(sockets, 0.018), (12, 10, 12))
    cavity = smooth(np.array([(0, 0.17), (0.035, 0.25), (0.075, 0.31), (0.04, 0.345), (0, 0.32),
                              (-0.04, 0.345), (-0.075, 0.31), (-0.035, 0.25)]), closed=True)
    canvas.paint(canvas.fill(cavity), (15, 12, 14))
    mouth = np.vstack([_F[48:55] * (1.18, 1) + (0, -0.02), _F[54:60] * (1.18, 1) + (0, 0.03), (_F[48] * (1.18, 1))[None]])
    mouth_cov = canvas.fill(smooth(mouth[:-1], closed=True))
    canvas.paint(mouth_cov, (25, 20, 20))
    gap = 0.478
    for row, (y0, y1) in enumerate(((0.405, gap - 0.004), (gap + 0.004, 0.6))):
        for i in range(8):
            x0, x1 = -0.2 + i * 0.05 + 0.004, -0.2 + (i + 1) * 0.05 - 0.004
            tooth = ellipse(((x0 + x1) / 2, (y0 + y1) / 2), (x1 - x0) / 2, (y1 - y0) / 2, power=3.5)
            canvas.paint(canvas.fill(tooth) * mouth_cov, canvas.linear((0, y0), (0, y1), (250, 246, 232), (205, 198, 180)))
    crack = np.array([(0.06, -0.52), (0.09, -0.44), (0.06, -0.4), (0.11, -0.33), (0.09, -0.27)])
    canvas.paint(canvas.stroke(crack, 0.007) * face, (40, 36, 36), 0.9)
    canvas.erase(_eye_hole(canvas, 1.1, 0.01) * 0.85)
    return canvas.rgba(), _mask_meta(canvas)


def draw_robot() -> tuple[np.ndarray, dict]:
    """Brushed-steel plates with rivets, a glowing cyan visor and a speaker-grille mouth."""
    canvas, face = _mask_canvas()
    steel = canvas.linear((0, -0.5), (0, 0.85), (205, 212, 222), (95, 102, 115))
    brushed = (np.sin(canvas.v * 900 + np.sin(canvas.u * 40) * 2) * 4)[..., None]
    canvas.paint(face, np.clip(steel + brushed, 0, 255))
    seams = [np.array([(0, -0.55), (0, -0.1)]), smooth(np.array([(-0.5, 0.12), (-0.3, 0.2), (-0.18, 0.33), (-0.25, 0.7)])),
             smooth(np.array([(0.5, 0.12), (0.3, 0.2), (0.18, 0.33), (0.25, 0.7)])), np.array([(-0.55, -0.2), (0.55, -0.2)])]
    for seam in seams:
        canvas.paint(canvas.stroke(seam, 0.008) * face, (45, 48, 55), 0.9)
        canvas.paint(canvas.stroke(seam + (0.006, 0.006), 0.004) * face, (235, 238, 245), 0.6)
    rivets = [(x, -0.25) for x in (-0.3, -0.1, 0.1, 0.3)] + [(sx * 0.37, 0.3) for sx in (-1, 1)] + [(sx * 0.3, 0.55) for sx in (-1, 1)]
    for c in rivets:
        canvas.paint(canvas.fill(ellipse(c, 0.016, 0.016)), canvas.radial((c[0] - 0.006, c[1] - 0.006), 0.02, (250, 250, 255), (80, 85, 95)))
    visor = ellipse((0, 0.005), 0.38, 0.085, power=4, n=120)
    canvas.paint(canvas.fill(visor), canvas.linear((0, -0.08), (0, 0.09), (10, 14, 22), (28, 40, 52)), 0.97)
    canvas.paint(canvas.stroke(visor, 0.014, closed=True), (60, 65, 75))
    glow = canvas.fill(*(ellipse(c, 0.07, 0.035) for c in _EYE_CENTRES))
    canvas.paint(canvas.blur(glow, 0.03) * canvas.fill(visor), (40, 220, 255), 0.85)
    canvas.paint(glow, canvas.radial((0, 0.008), 0.3, (235, 255, 255), (70, 230, 255), aspect=0.3))
    grille = ellipse((0, 0.5), 0.21, 0.085, power=4, n=120)
    canvas.paint(canvas.fill(grille), (30, 33, 40))
    canvas.paint(canvas.stroke(grille, 0.012, closed=True), (150, 155, 165))
    for y in np.linspace(0.44, 0.56, 5):
        canvas.paint(canvas.stroke(np.array([(-0.17, y), (0.17, y)]), 0.012) * canvas.fill(grille), (120, 220, 240), 0.55)
    vent = ellipse((0, 0.29), 0.07, 0.04, power=4)
    canvas.paint(canvas.fill(vent), (45, 48, 55))
    for x in (-0.035, 0, 0.035):
        canvas.paint(canvas.stroke(np.array([(x, 0.27), (x, 0.31)]), 0.01), (150, 155, 165))
    return canvas.rgba(), _mask_meta(canvas)


def draw_clown() -> tuple[np.ndarray, dict]:
    """White face paint, blue diamond eyes, arched brows, a shiny red nose, rosy cheeks and a big smile."""
    canvas, face = _mask_canvas()
    canvas.paint(canvas.blur(face, 0.03) * face, (252, 250, 246), 0.93)
    for c in _EYE_CENTRES:
        diamond = np.array([(c[0], -0.22), (c[0] + 0.12, c[1]), (c[0], 0.2), (c[0] - 0.12, c[1])])
        canvas.paint(canvas.fill(smooth(diamond, closed=True, samples=3)), (40, 90, 220), 0.92)
        canvas.paint(canvas.stroke(bezier((c[0] - 0.12, -0.2), (c[0] - 0.06, -0.33), (c[0] + 0.06, -0.33), (c[0] + 0.12, -0.2)), 0.018), (20, 20, 30))
    canvas.paint(canvas.blur(canvas.fill(ellipse((-0.31, 0.3), 0.075, 0.065), ellipse((0.31, 0.3), 0.075, 0.065)), 0.03), (245, 90, 120), 0.7)
    smile = np.array([(-0.3, 0.37), (-0.15, 0.44), (0, 0.44), (0.15, 0.44), (0.3, 0.37), (0.26, 0.48),
                      (0.13, 0.6), (0, 0.625), (-0.13, 0.6), (-0.26, 0.48)])
    lips = smooth(smile, closed=True)
    canvas.paint(canvas.fill(lips), canvas.radial((0, 0.46), 0.3, (235, 30, 40), (160, 10, 20), aspect=0.6))
    canvas.paint(canvas.stroke(lips, 0.01, closed=True), (110, 5, 15))
    canvas.paint(canvas.stroke(smooth(np.array([(-0.26, 0.43), (-0.12, 0.49), (0, 0.5), (0.12, 0.49), (0.26, 0.43)])), 0.012), (90, 0, 10))
    nose = ellipse((0, 0.25), 0.085, 0.08)
    canvas.paint(canvas.blur(canvas.fill(ellipse((0.01, 0.28), 0.085, 0.07)), 0.015), (0, 0, 0), 0.3)
    canvas.paint(canvas.fill(nose), canvas.radial((-0.025, 0.225), 0.11, (255, 90, 80), (185, 10, 15)))
    canvas.paint(canvas.blur(canvas.fill(ellipse((-0.03, 0.215), 0.022, 0.015, -30)), 0.005), (255, 255, 255), 0.85)
    canvas.erase(_eye_hole(canvas, 1.25))
    canvas.paint(np.maximum(*(canvas.stroke(e, 0.012, closed=True) for e in _eye_outlines(1.25))), (15, 15, 40))
    return canvas.rgba(), _mask_meta(canvas)


def draw_zebra() -> tuple[np.ndarray, dict]:
    """White with bold black chevrons and a dark muzzle."""
    canvas, face = _mask_canvas()
    canvas.paint(canvas.blur(face, 0.01), (245, 244, 238), 0.95)
    stripes = []
    for y in np.arange(-0.52, -0.15, 0.075):  # chevrons over the forehead, pointing down at the middle
        stripes.append(ribbon(smooth(np.array([(-0.6, y - 0.12), (-0.25, y - 0.03), (0, y + 0.04), (0.25, y - 0.03), (0.6, y - 0.12)])), 0.032))
    for y in np.arange(-0.06, 0.7, 0.085):  # cheek stripes sweeping in from the sides
        for side in (-1, 1):
            line = smooth(np.array([(0.62 * side, y - 0.06), (0.42 * side, y), (0.26 * side, y + 0.04)]), samples=12)
            stripes.append(ribbon(line, taper(len(line), 0.04, 0.04, 0.0, 0.5)))
    for y in (0.06, 0.13, 0.2):  # nose bridge
        stripes.append(ribbon(np.array([(-0.07, y - 0.01), (0, y + 0.01), (0.07, y - 0.01)]), 0.022))
    canvas.paint(canvas.fill(*stripes) * face * (1 - canvas.blur(canvas.fill(*(ellipse(c, 0.12, 0.09) for c in _EYE_CENTRES)), 0.01)), (15, 15, 15))
    muzzle = smooth(np.array([(0, 0.2), (0.11, 0.27), (0.21, 0.42), (0.2, 0.58), (0.1, 0.66), (0, 0.68),
                              (-0.1, 0.66), (-0.2, 0.58), (-0.21, 0.42), (-0.11, 0.27)]), closed=True)
    canvas.paint(canvas.blur(canvas.fill(muzzle), 0.008) * face, canvas.linear((0, 0.22), (0, 0.62), (95, 90, 94), (28, 26, 30)), 0.92)
    canvas.paint(canvas.fill(ellipse((-0.05, 0.33), 0.025, 0.015, 20), ellipse((0.05, 0.33), 0.025, 0.015, -20)), (5, 5, 5))
    canvas.erase(_eye_hole(canvas, 1.3))
    canvas.paint(np.maximum(*(canvas.stroke(e, 0.012, closed=True) for e in _eye_outlines(1.3))), (10, 10, 10))
    return canvas.rgba(), _mask_meta(canvas)


def draw_gold() -> tuple[np.ndarray, dict]:
    """A gold Venetian masquerade half mask with filigree, a jewel and sparkles."""
    canvas, _ = _mask_canvas()
    knots = np.array([(0.0, -0.16), (0.16, -0.25), (0.36, -0.26), (0.5, -0.16), (0.47, 0.03), (0.33, 0.13),
                      (0.17, 0.12), (0.06, 0.19), (-0.06, 0.19), (-0.17, 0.12), (-0.33, 0.13), (-0.47, 0.03),
                      (-0.5, -0.16), (-0.36, -0.26), (-0.16, -0.25)])
    outline = smooth(knots, closed=True)
    shape = canvas.fill(outline)
    gold = canvas.linear((-0.3, -0.25), (0.3, 0.2), (255, 226, 120), (170, 110, 25))
    gleam = np.exp(-((canvas.u * 0.8 + canvas.v + 0.05) / 0.06) ** 2)[..., None]
    canvas.paint(shape, np.clip(gold + gleam * 80, 0, 255))
    for side in (-1, 1):
        curl = np.array([(0.22, -0.2), (0.34, -0.22), (0.43, -0.15), (0.42, -0.07), (0.36, -0.06), (0.35, -0.11), (0.38, -0.12)])
        canvas.paint(canvas.stroke(smooth(curl * (side, 1)), 0.008), (120, 75, 10), 0.9)
        swirl = np.array([(0.08, 0.13), (0.2, 0.09), (0.33, 0.1), (0.42, 0.04), (0.4, -0.0)])
        canvas.paint(canvas.stroke(smooth(swirl * (side, 1)), 0.007), (120, 75, 10), 0.9)
    canvas.paint(canvas.stroke(outline, 0.012, closed=True), (120, 75, 10))
    canvas.paint(canvas.stroke(outline, 0.004, closed=True), (255, 240, 170), 0.8)
    jewel = ellipse((0, -0.1), 0.03, 0.04)
    canvas.paint(canvas.fill(jewel), canvas.radial((-0.01, -0.115), 0.045, (255, 120, 150), (150, 0, 40)))
    canvas.paint(canvas.stroke(jewel, 0.008, closed=True), (200, 150, 40))
    eyes = _eye_outlines(1.6)
    canvas.paint(np.maximum(*(canvas.stroke(e, 0.03, closed=True) for e in eyes)), (110, 70, 10))
    canvas.erase(_eye_hole(canvas, 1.6, 0.004))
    canvas.paint(np.maximum(*(canvas.stroke(e, 0.006, closed=True) for e in _eye_outlines(1.78))), (255, 235, 160), 0.8)
    for c in ((-0.4, -0.2), (0.28, -0.21), (0.44, 0.0), (-0.2, 0.11)):
        star = np.array([(0, -1), (0.2, -0.2), (1, 0), (0.2, 0.2), (0, 1), (-0.2, 0.2), (-1, 0), (-0.2, -0.2)]) * 0.022 + c
        canvas.paint(canvas.fill(star), (255, 255, 245), 0.9)
    return canvas.rgba(), _mask_meta(canvas)


MASKS: dict[str, Callable[[], tuple[np.ndarray, dict]]] = {
    "tiger": draw_tiger,
    "skull": draw_skull,
    "robot": draw_robot,
    "clown": draw_clown,
    "zebra": draw_zebra,
    "gold": draw_gold,
}


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------
def artwork_paths(name: str, directory: Path = IMAGES_DIR) -> tuple[Path, Path]:
    """PNG and JSON paths of an accessory (``"hat"``) or a mask (``"mask:tiger"``)."""
    if name.startswith("mask:"):
        stem = Path(directory) / "masks" / name.split(":", 1)[1]
    else:
        stem = Path(directory) / name
    return stem.with_suffix(".png"), stem.with_suffix(".json")


def draw(name: str) -> tuple[np.ndarray, dict]:
    """Draw an accessory (``"hat"``) or a mask (``"mask:tiger"``): RGBA picture and metadata."""
    if name.startswith("mask:"):
        return MASKS[name.split(":", 1)[1]]()
    return ACCESSORIES[name]()


def write_artwork(name: str, directory: Path = IMAGES_DIR) -> tuple[np.ndarray, dict]:
    """Draw an artwork and save it as PNG + JSON under ``directory``; return what was drawn."""
    rgba, meta = draw(name)
    png, meta_path = artwork_paths(name, directory)
    png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(png), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)):
        raise OSError(f"could not write {png}")
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return rgba, meta


def all_names() -> list[str]:
    """Every artwork name: the accessories, then ``mask:<id>`` for each mask."""
    return list(ACCESSORIES) + [f"mask:{mask_id}" for mask_id in MASKS]


# ---------------------------------------------------------------------------------------------------------
# Synthetic faces, for previews and tests
# ---------------------------------------------------------------------------------------------------------
def synthetic_face(size: tuple[int, int] = (480, 480), center: Sequence[float] | None = None, width: float = 220,
                   roll_deg: float = 0.0, background: Color = (200, 215, 230)) -> tuple[np.ndarray, np.ndarray]:
    """A cartoon face drawn on the canonical keypoints: (RGB uint8 image, its 68 x 2 keypoints)."""
    if center is None:
        center = (size[0] / 2, size[1] * 0.42)
    matrix = similarity_matrix(center, width, roll_deg)
    canvas = Canvas(size, matrix, background=background, supersample=2)
    skin, skin_dark = (240, 200, 170), (205, 150, 120)
    canvas.paint(canvas.fill(ellipse((0, -0.25), 0.6, 0.55)), (75, 50, 35))  # hair
    canvas.paint(canvas.fill(np.array([(-0.16, 0.6), (0.16, 0.6), (0.2, 1.4), (-0.2, 1.4)])), skin_dark)  # neck
    canvas.paint(canvas.fill(ellipse((-0.5, 0.12), 0.06, 0.12), ellipse((0.5, 0.12), 0.06, 0.12)), skin_dark)
    canvas.paint(canvas.fill(face_outline(_F)), canvas.radial((0, 0.1), 0.8, skin, skin_dark, aspect=1.3))
    canvas.paint(canvas.fill(ellipse((0, -0.55), 0.52, 0.13)), (75, 50, 35))  # fringe
    for idx in (LEFT_EYE, RIGHT_EYE):
        eye = smooth(_F[idx], closed=True)
        white = canvas.fill(eye)
        canvas.paint(white, (250, 250, 250))
        canvas.paint(canvas.fill(ellipse(_F[idx].mean(0), 0.028, 0.028)) * white, (70, 110, 60))
        canvas.paint(canvas.fill(ellipse(_F[idx].mean(0), 0.012, 0.012)) * white, (10, 10, 10))
        canvas.paint(canvas.stroke(eye, 0.006, closed=True), (60, 40, 30))
    for brow in (_F[17:22], _F[22:27]):
        canvas.paint(canvas.stroke(smooth(brow), 0.025), (75, 50, 35))
    canvas.paint(canvas.stroke(smooth(_F[[31, 32, 33, 34, 35]]), 0.01), (170, 110, 90))
    canvas.paint(canvas.stroke(smooth(_F[[27, 28, 29, 30]] + (0.02, 0)), 0.008), (215, 165, 135))
    canvas.paint(canvas.fill(smooth(_F[48:60], closed=True)), (200, 90, 95))
    canvas.paint(canvas.stroke(smooth(_F[[60, 61, 62, 63, 64]]), 0.008), (120, 40, 45))
    return canvas.rgb(), apply_matrix(matrix, _F)


def main() -> None:
    """Command line: redraw every artwork file."""
    parser = argparse.ArgumentParser(description="Draw every filter artwork into PNG + JSON files.")
    parser.add_argument("--out", type=Path, default=IMAGES_DIR, help="output folder (default: images/)")
    args = parser.parse_args()
    for name in all_names():
        write_artwork(name, args.out)
        print("wrote", artwork_paths(name, args.out)[0])


if __name__ == "__main__":
    main()
