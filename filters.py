"""Fun with keypoints: sunglasses, a moustache, a top hat and face masks placed from 68 facial keypoints.

Images are RGB uint8 arrays (H x W x 3) and keypoints (68, 2) float arrays of (x, y) pixels in iBUG order,
with pixel centres at integer coordinates (OpenCV's convention). Every function returns a new image.

* Accessories (sunglasses, moustache, hat) are RGBA pictures with anchor points; a least-squares similarity
  transform (scale, roll, shift) takes the anchors onto keypoints, the picture is resampled onto the part
  of the image it covers (an affine warp done with ``cv2.remap`` from absolute image coordinates, so the
  result never depends on where the image ends) and alpha-blended. A similarity keeps the artwork's
  proportions on any face.
* Masks are RGBA pictures painted on a face with known keypoints; they are warped piecewise-affinely over a
  Delaunay triangulation of the keypoints (plus forehead points, see ``resources.artwork.with_forehead``) so every
  part of the mask lands on the same part of the face, whatever the face's shape and expression.

The artwork is drawn by ``resources/artwork.py`` and read from ``images/``; a missing file is drawn and saved on first
use. ``python filters.py OUT_DIR`` writes a preview of every filter on a synthetic face.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from scipy.spatial import Delaunay

from resources import artwork
from resources.artwork import IMAGES_DIR, apply_matrix, with_forehead

Filter = Callable[[np.ndarray, np.ndarray], np.ndarray]
# Below this scale an artwork is first shrunk with area averaging: bilinear warping alone would alias.
_PRESCALE_BELOW = 0.7


# ---------------------------------------------------------------------------------------------------------
# Blending and warping
# ---------------------------------------------------------------------------------------------------------
def _check_image(image: np.ndarray) -> np.ndarray:
    """The image itself if it is RGB uint8 (H, W, 3); a clear ValueError otherwise, not a cryptic OpenCV one."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got {getattr(image, 'shape', type(image))}")
    return image


def _check_keypoints(keypoints: Any) -> np.ndarray:
    """Keypoints as a float64 (68, 2) array; ValueError for any other shape or for NaNs."""
    points = np.asarray(keypoints, dtype=np.float64)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise ValueError(f"expected 68 finite (x, y) keypoints, got an array of shape {points.shape}")
    return points


def premultiply(rgba: np.ndarray) -> np.ndarray:
    """Straight-alpha uint8 RGBA to premultiplied float32 RGBA in [0, 1].

    Warping premultiplied colours keeps transparent pixels from bleeding dark fringes into the edges.
    """
    out = rgba.astype(np.float32) / 255
    out[..., :3] *= out[..., 3:]
    return out


def _composite(background: np.ndarray, premultiplied: np.ndarray, x: int, y: int) -> np.ndarray:
    """A copy of ``background`` with a premultiplied layer blended at (x, y), clipped to the image."""
    out = background.copy()
    height, width = premultiplied.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + width, out.shape[1]), min(y + height, out.shape[0])
    if x1 <= x0 or y1 <= y0:
        return out
    layer = premultiplied[y0 - y : y1 - y, x0 - x : x1 - x]
    under = out[y0:y1, x0:x1].astype(np.float32)
    blended = layer[..., :3] * 255 + under * (1 - layer[..., 3:])
    out[y0:y1, x0:x1] = np.clip(np.floor(blended + 0.5), 0, 255).astype(np.uint8)
    return out


def alpha_blend(background: np.ndarray, overlay_rgba: np.ndarray, x: int, y: int) -> np.ndarray:
    """Blend a straight-alpha RGBA overlay with its top-left corner at (x, y): ``round(a*fg + (1-a)*bg)``.

    Any part of the overlay outside the image is ignored, so it may hang over the border or lie wholly
    outside (then the result equals the background).
    """
    _check_image(background)
    return _composite(background, premultiply(np.asarray(overlay_rgba, dtype=np.uint8)), int(x), int(y))


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity (scale, rotation, shift; no shear or mirroring) taking ``source`` onto ``target``.

    Two or more point pairs, (N, 2) each; exact for two. Returned as a 2 x 3 matrix. Written as complex
    numbers, the best map ``z -> a z + b`` has ``a = sum(conj(s) t) / sum(|s|^2)`` on centred points.
    """
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError("need two or more matching (x, y) points in source and target")
    s = source - source.mean(axis=0)
    t = target - target.mean(axis=0)
    zs, zt = s[:, 0] + 1j * s[:, 1], t[:, 0] + 1j * t[:, 1]
    norm = float(np.sum(np.abs(zs) ** 2))
    if norm < 1e-12:
        raise ValueError("the source points coincide: no transform is defined")
    a = np.sum(np.conj(zs) * zt) / norm
    linear = np.array([[a.real, -a.imag], [a.imag, a.real]])
    return np.hstack([linear, (target.mean(axis=0) - linear @ source.mean(axis=0))[:, None]])


def _prescaled(premultiplied: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Shrink a picture that will be drawn at ``scale`` < 1: the smaller picture and the 2 x 3 matrix from its
    pixels to the original's (identity-like when no shrinking is needed)."""
    height, width = premultiplied.shape[:2]
    if scale >= _PRESCALE_BELOW:
        return premultiplied, np.array([[1.0, 0, 0], [0, 1.0, 0]])
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    fx, fy = size[0] / width, size[1] / height
    small = cv2.resize(premultiplied, size, interpolation=cv2.INTER_AREA)
    return small, np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5]])


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2 x 3 matrix of ``outer`` after ``inner``."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def _scale_of(matrix: np.ndarray) -> float:
    """How much a 2 x 3 matrix scales lengths (on average over directions, exact for similarities)."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def _warp_and_blend(image: np.ndarray, premultiplied: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Warp a premultiplied picture by a 2 x 3 matrix (picture pixels to image pixels) and blend it.

    Only the part of the image the warped picture reaches is resampled, which also clips it to the image.
    The sampling positions come from absolute image coordinates (``cv2.remap``), so every pixel gets the
    same value whether or not the rest of the picture fits in the image.
    """
    picture, to_original = _prescaled(premultiplied, _scale_of(matrix))
    matrix = _compose(matrix, to_original)
    height, width = picture.shape[:2]
    corners = apply_matrix(matrix, np.array([[-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5], [width - 0.5, height - 0.5]]))
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 2, (image.shape[1], image.shape[0]))
    if x1 <= x0 or y1 <= y0:
        return image.copy()
    inverse = cv2.invertAffineTransform(matrix)
    xs, ys = np.arange(x0, x1, dtype=np.float64)[None, :], np.arange(y0, y1, dtype=np.float64)[:, None]
    map_x = (inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]).astype(np.float32)
    map_y = (inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]).astype(np.float32)
    layer = cv2.remap(picture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    return _composite(image, layer, int(x0), int(y0))


def warp_overlay(image: np.ndarray, overlay_rgba: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Warp a straight-alpha RGBA picture by a 2 x 3 affine ``matrix`` (picture to image pixels) and blend it."""
    return _warp_and_blend(_check_image(image), premultiply(overlay_rgba), np.asarray(matrix, np.float64))


def place_artwork(image: np.ndarray, overlay_rgba: np.ndarray, anchors: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Put an RGBA picture on the image so its ``anchors`` (picture pixels) land on ``targets`` (image pixels).

    The picture is scaled, rotated and shifted (the least-squares similarity for two or more pairs), never
    sheared, so it keeps its shape.
    """
    return warp_overlay(image, overlay_rgba, similarity_transform(anchors, targets))


# ---------------------------------------------------------------------------------------------------------
# Artwork files
# ---------------------------------------------------------------------------------------------------------
def _read_or_draw(name: str, directory: Path) -> tuple[np.ndarray, dict]:
    """Read an artwork's PNG + JSON; draw (and try to save) it when either is missing or unreadable."""
    png, meta_path = artwork.artwork_paths(name, directory)
    if png.exists() and meta_path.exists():
        bgra = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        if bgra is not None and bgra.ndim == 3 and bgra.shape[2] == 4:
            return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA), json.loads(meta_path.read_text())
    try:
        return artwork.write_artwork(name, directory)
    except OSError:  # a read-only checkout still works, it just draws again next time
        return artwork.draw(name)


@dataclass(frozen=True)
class Artwork:
    """An accessory picture with anchor points and the keypoint groups (averaged) the anchors go to."""

    rgba: np.ndarray
    premultiplied: np.ndarray
    anchors: np.ndarray
    targets: tuple[tuple[int, ...], ...]
    points: dict[str, np.ndarray]

    def target_points(self, keypoints: np.ndarray) -> np.ndarray:
        """Where the anchors go on a face: the mean of each keypoint group."""
        # TODO (notebook 4): one (x, y) per anchor: the mean of the keypoints listed in the anchor's group (``self.targets``
        # holds one tuple of keypoint indices per anchor), as an array of shape (number of anchors, 2).
        ### BEGIN SOLUTION
        return np.array([keypoints[list(group)].mean(axis=0) for group in self.targets])
        ### END SOLUTION


@lru_cache(maxsize=None)
def load_artwork(name: str, directory: Path = IMAGES_DIR) -> Artwork:
    """The accessory ``name`` ("sunglasses", "moustache" or "hat") from ``directory``."""
    if name not in artwork.ACCESSORIES:
        raise ValueError(f"unknown artwork {name!r}; known: {', '.join(artwork.ACCESSORIES)}")
    rgba, meta = _read_or_draw(name, Path(directory))
    return Artwork(rgba, premultiply(rgba), np.asarray(meta["anchors"], np.float64),
                   tuple(tuple(group) for group in meta["targets"]),
                   {key: np.asarray(value, np.float64) for key, value in meta.get("points", {}).items()})


class Mask:
    """A face-mask picture with its 68 keypoints, triangulated once (Delaunay over keypoints + forehead)."""

    def __init__(self, rgba: np.ndarray, keypoints: np.ndarray) -> None:
        self.rgba = rgba
        self.premultiplied = premultiply(rgba)
        self.keypoints = _check_keypoints(keypoints)
        self.points = with_forehead(self.keypoints)
        triangles = Delaunay(self.points).simplices
        a, b, c = (self.points[triangles[:, i]] for i in range(3))
        area = ((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]) / 2
        self.triangles = triangles[np.abs(area) > 1e-6]


@lru_cache(maxsize=None)
def load_mask(mask_id: str, directory: Path = IMAGES_DIR) -> Mask:
    """The mask ``mask_id`` (see ``MASK_IDS``) from ``directory``/masks."""
    if mask_id not in artwork.MASKS:
        raise ValueError(f"unknown mask {mask_id!r}; known masks: {', '.join(MASK_IDS)}")
    rgba, meta = _read_or_draw(f"mask:{mask_id}", Path(directory))
    return Mask(rgba, np.asarray(meta["keypoints"], np.float64))


MASK_IDS: tuple[str, ...] = tuple(artwork.MASKS)


# ---------------------------------------------------------------------------------------------------------
# Accessories
# ---------------------------------------------------------------------------------------------------------
def placement_transform(name: str, keypoints: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity taking accessory ``name``'s picture pixels onto the face with these keypoints."""
    # TODO (notebook 4): load the artwork (``load_artwork``), find where its anchors go on this face (its ``target_points`` of
    # the checked keypoints, ``_check_keypoints``) and return the least-squares similarity taking the anchors
    # onto those points (``similarity_transform``).
    ### BEGIN SOLUTION
    art = load_artwork(name)
    return similarity_transform(art.anchors, art.target_points(_check_keypoints(keypoints)))
    ### END SOLUTION


def _accessory(name: str, image: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Draw accessory ``name`` on the face: its cached picture warped by ``placement_transform``."""
    return _warp_and_blend(_check_image(image), load_artwork(name).premultiplied, placement_transform(name, keypoints))


def sunglasses_lens_centres(keypoints: np.ndarray) -> np.ndarray:
    """Image positions (2 x 2: image-left lens, then right) of the lens centres ``sunglasses`` draws."""
    return apply_matrix(placement_transform("sunglasses", keypoints), load_artwork("sunglasses").points["lens_centres"])


def sunglasses(image: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Tinted sunglasses: lens centres on the eye centres (means of 36-41 and 42-47), the frame as wide as
    the outer eye corners (36, 45) call for, rolled with the eye line."""
    return _accessory("sunglasses", image, keypoints)


def moustache(image: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """A curly handlebar moustache between the nose bottom (33) and the upper lip (51), as wide as the mouth
    corners (48, 54) call for and turned with them."""
    return _accessory("moustache", image, keypoints)


def hat(image: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """A top hat on the forehead, placed, sized and rolled from the brows (17-26) and the face's width (0, 16)."""
    return _accessory("hat", image, keypoints)


# ---------------------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------------------
def piecewise_affine_points(points: np.ndarray, source: np.ndarray, target: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Map points by the piecewise-affine warp taking triangles on ``source`` onto the same triangles on ``target``.

    Each point moves with the source triangle containing it (the nearest one, by barycentric coordinates,
    for points outside them all), exactly as ``warp_mask`` moves pixels.
    """
    points = np.atleast_2d(np.asarray(points, np.float64))
    a, b, c = (source[triangles[:, i]] for i in range(3))
    basis = np.stack([b - a, c - a], axis=2)  # (T, 2, 2): columns are the triangle's edges
    inverse = np.linalg.inv(basis)
    local = np.einsum("tij,ptj->pti", inverse, points[:, None, :] - a[None])  # (P, T, 2)
    bary = np.concatenate([1 - local.sum(axis=2, keepdims=True), local], axis=2)  # (P, T, 3)
    best = bary.min(axis=2).argmax(axis=1)
    weights = bary[np.arange(len(points)), best]  # (P, 3)
    return np.einsum("pk,pkj->pj", weights, target[triangles[best]])


def mask_points_on_face(mask_id: str, keypoints: np.ndarray, points: np.ndarray | None = None) -> np.ndarray:
    """Where points of mask ``mask_id``'s picture (default: its 68 keypoints) land on the face with ``keypoints``."""
    mask = load_mask(mask_id)
    points = mask.keypoints if points is None else points
    return piecewise_affine_points(points, mask.points, with_forehead(_check_keypoints(keypoints)), mask.triangles)


def _triangle_affine(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 x 3 affine matrix taking a triangle's corners onto another's (in float64, unlike OpenCV's)."""
    corners = np.hstack([source, np.ones((3, 1))])
    return np.linalg.solve(corners, target).T


def warp_mask(image: np.ndarray, mask: Mask, keypoints: np.ndarray) -> np.ndarray:
    """Warp a mask onto the face triangle by triangle and alpha-blend it.

    Each Delaunay triangle of the mask's points is warped with its own affine map (``cv2.warpAffine`` on the
    triangle's bounding rectangle) and kept inside the target triangle, building one premultiplied layer
    that is blended once, so neighbouring triangles meet without seams.
    """
    _check_image(image)
    target = with_forehead(_check_keypoints(keypoints))
    height, width = image.shape[:2]
    x0, y0 = np.maximum(np.floor(target.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(target.max(axis=0)).astype(int) + 2, (width, height))
    if x1 <= x0 or y1 <= y0:
        return image.copy()
    picture, to_original = _prescaled(mask.premultiplied, _scale_of(similarity_transform(mask.points, target)))
    source = apply_matrix(cv2.invertAffineTransform(to_original), mask.points)
    layer = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
    limit = np.array([picture.shape[1], picture.shape[0]])
    for triangle in mask.triangles:
        src, dst = source[triangle], target[triangle]
        # Work on the triangle's whole bounding box, then keep what falls in the image: the pixels drawn
        # never depend on where the image ends.
        lo = np.floor(dst.min(axis=0)).astype(int)
        hi = np.ceil(dst.max(axis=0)).astype(int) + 2
        clip_lo, clip_hi = np.maximum(lo, (x0, y0)), np.minimum(hi, (x1, y1))
        if np.any(clip_hi <= clip_lo):
            continue
        src_lo = np.maximum(np.floor(src.min(axis=0)).astype(int) - 2, 0)
        src_hi = np.minimum(np.ceil(src.max(axis=0)).astype(int) + 3, limit)
        patch = cv2.warpAffine(picture[src_lo[1] : src_hi[1], src_lo[0] : src_hi[0]], _triangle_affine(src - src_lo, dst - lo),
                               tuple(int(v) for v in hi - lo), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        inside = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.uint8)
        corners = np.round((dst - lo) * 16).astype(np.int32)
        cv2.fillConvexPoly(inside, corners, 1, cv2.LINE_8, shift=4)
        cv2.polylines(inside, [corners], True, 1, 1, cv2.LINE_8, shift=4)  # no pixel left between triangles
        window = (slice(clip_lo[1] - lo[1], clip_hi[1] - lo[1]), slice(clip_lo[0] - lo[0], clip_hi[0] - lo[0]))
        keep = inside[window] > 0
        layer[clip_lo[1] - y0 : clip_hi[1] - y0, clip_lo[0] - x0 : clip_hi[0] - x0][keep] = patch[window][keep]
    return _composite(image, layer, int(x0), int(y0))


def _crop_box(keypoints: np.ndarray, box: Any, shape: tuple[int, ...], margin: float = 0.1) -> tuple[int, int, int, int]:
    """The region (x0, y0, x1, y1) around a face, forehead and detector box included, with a margin."""
    points = with_forehead(keypoints)
    if box is not None:
        x, y, w, h = (float(v) for v in box)
        points = np.vstack([points, [(x, y), (x + w, y + h)]])
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = margin * float(max(hi - lo))
    x0, y0 = np.maximum(np.floor(lo - pad).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(hi + pad).astype(int) + 1, (shape[1], shape[0]))
    return int(x0), int(y0), int(max(x1, x0 + 1)), int(max(y1, y0 + 1))


def face_mask(image: np.ndarray, mask_id: str, keypoints: np.ndarray | None = None, crop: bool = False,
              pipeline: Any = None) -> np.ndarray:
    """Put mask ``mask_id`` (one of ``MASK_IDS``) on a face.

    With ``keypoints`` the mask goes on that face. Without, faces are found with ``pipeline.detect(image)``
    (objects with ``.box`` (x, y, w, h) and ``.keypoints`` (68, 2)); when no pipeline is given either, the
    project's ``pipeline.keypoint_pipeline.KeypointPipeline.from_pretrained()`` is loaded (imported only then), and every
    detected face gets the mask. ``crop=True`` returns only the region around the face (the largest one when
    several were detected), forehead included. With no face found the image comes back unchanged.
    """
    _check_image(image)
    mask = load_mask(mask_id)
    if keypoints is not None:
        faces: list[tuple[np.ndarray, Any]] = [(_check_keypoints(keypoints), None)]
    else:
        if pipeline is None:
            from pipeline.keypoint_pipeline import KeypointPipeline  # heavy (torch, weights): only when detection is needed

            pipeline = KeypointPipeline.from_pretrained()
        faces = [(_check_keypoints(face.keypoints), getattr(face, "box", None)) for face in pipeline.detect(image)]
    out = image.copy()
    for points, _ in faces:
        out = warp_mask(out, mask, points)
    if crop and faces:
        points, box = max(faces, key=lambda face: float(np.prod(np.ptp(face[0], axis=0))))
        x0, y0, x1, y1 = _crop_box(points, box, image.shape)
        out = out[y0:y1, x0:x1].copy()
    return out


# ---------------------------------------------------------------------------------------------------------
# The filter registry
# ---------------------------------------------------------------------------------------------------------
def _mask_filter(mask_id: str) -> Filter:
    """The ``f(image, keypoints)`` filter for one mask, for ``FILTERS``."""
    def apply(image: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        return face_mask(image, mask_id, keypoints)

    apply.__name__ = f"mask_{mask_id}"
    apply.__doc__ = f"The {mask_id} face mask."
    return apply


#: Filters by name, each ``f(image, keypoints) -> new image``; masks are named "mask:<id>".
FILTERS: dict[str, Filter] = {
    "sunglasses": sunglasses,
    "moustache": moustache,
    "hat": hat,
    **{f"mask:{mask_id}": _mask_filter(mask_id) for mask_id in MASK_IDS},
}


def _keypoint_sets(faces_or_keypoints: Any) -> list[np.ndarray]:
    """Keypoint arrays from one face or keypoint array, an (N, 68, 2) array, or a list of either."""
    if hasattr(faces_or_keypoints, "keypoints"):
        return [faces_or_keypoints.keypoints]
    try:
        array = np.asarray(faces_or_keypoints, dtype=np.float64)
    except (TypeError, ValueError):  # a list of face objects
        return [face.keypoints if hasattr(face, "keypoints") else face for face in faces_or_keypoints]
    if array.size == 0:
        return []
    if array.ndim == 2:
        return [array]
    if array.ndim == 3:
        return list(array)
    raise ValueError(f"expected keypoints of shape (68, 2) or (N, 68, 2), got {array.shape}")


def check_filter_name(name: str) -> None:
    """Raise ValueError, in one line listing the valid names, unless ``name`` is a key of ``FILTERS``."""
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; valid filters: {', '.join(FILTERS)}")


def apply_filter(image: np.ndarray, faces_or_keypoints: Any, name: str) -> np.ndarray:
    """Apply filter ``name`` (a key of ``FILTERS``) to every face; faces may be detected-face objects with
    ``.keypoints``, (68, 2) arrays or an (N, 68, 2) array. Raises ValueError naming the valid filters."""
    check_filter_name(name)
    out = _check_image(image).copy()
    for keypoints in _keypoint_sets(faces_or_keypoints):
        out = FILTERS[name](out, keypoints)
    return out


def write_previews(out_dir: Path) -> list[Path]:
    """Save every filter on a synthetic, slightly rolled face as ``<out_dir>/<name>.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    image, keypoints = artwork.synthetic_face((420, 480), width=220, roll_deg=-10)
    paths = [out_dir / "face.png"]
    cv2.imwrite(str(paths[0]), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    for name in FILTERS:
        paths.append(out_dir / f"{name.replace(':', '_')}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(apply_filter(image, keypoints, name), cv2.COLOR_RGB2BGR))
    return paths


if __name__ == "__main__":
    for path in write_previews(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/filter_previews")):
        print("wrote", path)
