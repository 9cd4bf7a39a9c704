"""Placement tests for the face filters, on synthetic faces with known keypoints."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resources import artwork  # noqa: E402
import filters  # noqa: E402
from resources.artwork import face_keypoints, with_forehead  # noqa: E402

ROLLS = [-30, -15, 0, 12, 30]
WIDTHS = [90, 180, 320]


def eye_centres(keypoints: np.ndarray) -> np.ndarray:
    return np.stack([keypoints[36:42].mean(axis=0), keypoints[42:48].mean(axis=0)])


def direction_deg(vector: np.ndarray) -> float:
    return math.degrees(math.atan2(vector[1], vector[0]))


def angle_between_deg(a: np.ndarray, b: np.ndarray) -> float:
    return abs((direction_deg(a) - direction_deg(b) + 180) % 360 - 180)


def face_in_middle(width: float, roll: float, size: tuple[int, int] = (640, 560)) -> tuple[np.ndarray, np.ndarray]:
    """A plain black image and canonical keypoints placed in its middle."""
    image = np.zeros((size[1], size[0], 3), np.uint8)
    return image, face_keypoints((size[0] / 2, size[1] * 0.45), width, roll)


# ---------------------------------------------------------------------------------------------------------
# Sunglasses: the transform and the pixels
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("roll", ROLLS)
@pytest.mark.parametrize("width", WIDTHS)
def test_sunglasses_lens_centres_on_eye_centres(width: float, roll: float) -> None:
    _, keypoints = face_in_middle(width, roll)
    lenses, eyes = filters.sunglasses_lens_centres(keypoints), eye_centres(keypoints)
    assert np.linalg.norm(lenses - eyes, axis=1).max() < 3
    assert angle_between_deg(lenses[1] - lenses[0], keypoints[45] - keypoints[36]) < 2
    # The frame's scale follows the outer eye corners: twice as far apart, twice as big.
    matrix = filters.placement_transform("sunglasses", keypoints)
    bigger = filters.placement_transform("sunglasses", (keypoints - keypoints[36]) * 2 + keypoints[36])
    assert filters._scale_of(bigger) == pytest.approx(2 * filters._scale_of(matrix), rel=1e-9)


@pytest.mark.parametrize("roll", ROLLS)
@pytest.mark.parametrize("width", WIDTHS)
def test_sunglasses_rendered_lenses_on_eyes(width: float, roll: float) -> None:
    """On black, lens pixels are the blue-tinted ones (the frame is neutral): their centroids sit on the eyes."""
    image, keypoints = face_in_middle(width, roll)
    out = filters.sunglasses(image, keypoints).astype(int)
    blue = out[..., 2] - out[..., :2].max(axis=2) > 15
    ys, xs = np.nonzero(blue)
    pixels = np.stack([xs, ys], axis=1).astype(float)
    eyes = eye_centres(keypoints)
    middle, across = eyes.mean(axis=0), eyes[1] - eyes[0]
    right = (pixels - middle) @ across > 0
    centroids = np.stack([pixels[~right].mean(axis=0), pixels[right].mean(axis=0)])
    assert np.linalg.norm(centroids - eyes, axis=1).max() < 3
    assert angle_between_deg(centroids[1] - centroids[0], keypoints[45] - keypoints[36]) < 2
    assert right.sum() == pytest.approx((~right).sum(), rel=0.08)  # both lenses drawn, same size


def test_sunglasses_follow_uneven_faces() -> None:
    """With one eye set higher than the other the glasses roll with the eye line (least squares, not exact)."""
    _, keypoints = face_in_middle(200, 0)
    keypoints[42:48] += (0, -12)
    lenses, eyes = filters.sunglasses_lens_centres(keypoints), eye_centres(keypoints)
    assert np.linalg.norm(lenses - eyes, axis=1).max() < 4
    assert angle_between_deg(lenses[1] - lenses[0], eyes[1] - eyes[0]) < 2.5


# ---------------------------------------------------------------------------------------------------------
# Moustache and hat: anchors land on their keypoints, and the pixels are where they belong
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sunglasses", "moustache", "hat"])
@pytest.mark.parametrize("roll", ROLLS)
def test_anchors_land_on_their_keypoints(name: str, roll: float) -> None:
    _, keypoints = face_in_middle(220, roll)
    art = filters.load_artwork(name)
    placed = artwork.apply_matrix(filters.placement_transform(name, keypoints), art.anchors)
    assert np.abs(placed - art.target_points(keypoints)).max() < 0.5


def face_frame(keypoints: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points in the face's own frame: x along the jaw (0 to 16), y towards the chin, in face widths from point 33."""
    across = keypoints[16] - keypoints[0]
    width = float(np.linalg.norm(across))
    x_axis = across / width
    y_axis = np.array([-x_axis[1], x_axis[0]])
    return np.stack([(points - keypoints[33]) @ x_axis, (points - keypoints[33]) @ y_axis], axis=1) / width


@pytest.mark.parametrize("roll", [-25, 0, 20])
def test_moustache_sits_between_nose_and_lip(roll: float) -> None:
    image, keypoints = face_in_middle(220, roll)
    out = filters.moustache(image, keypoints)
    ys, xs = np.nonzero(out.max(axis=2) > 0)
    local = face_frame(keypoints, np.stack([xs, ys], axis=1).astype(float))
    centre = local.mean(axis=0)
    lip = face_frame(keypoints, keypoints[[51]])[0]
    assert abs(centre[0]) < 0.015  # centred on the face's midline
    assert 0 < centre[1] < lip[1]  # below the nose bottom (33), above the upper lip (51)
    mouth = face_frame(keypoints, keypoints[[48, 54]])
    assert local[:, 0].min() < mouth[0, 0] and local[:, 0].max() > mouth[1, 0]  # wider than the mouth


@pytest.mark.parametrize("roll", [-25, 0, 20])
def test_hat_sits_above_the_brows(roll: float) -> None:
    image, keypoints = face_in_middle(160, roll)
    out = filters.hat(image, keypoints)
    ys, xs = np.nonzero(out.max(axis=2) > 0)
    local = face_frame(keypoints, np.stack([xs, ys], axis=1).astype(float))
    brows = face_frame(keypoints, keypoints[17:27])
    assert local[:, 1].max() < brows[:, 1].min()  # all of it above the highest brow point
    assert abs(np.median(local[:, 0])) < 0.02
    assert local[:, 0].max() - local[:, 0].min() > 1.0  # the brim is wider than the face


@pytest.mark.parametrize("angle", [-30, 0, 45])
def test_place_artwork_takes_two_anchors_onto_their_targets(angle: float) -> None:
    """A 41 x 21 picture with two opaque dots: placed by them, rotated and scaled, the dots land on the targets."""
    overlay = np.zeros((21, 41, 4), np.uint8)
    anchors = np.array([(5.0, 10.0), (35.0, 10.0)])
    for x, y in anchors.astype(int):
        overlay[y - 1 : y + 2, x - 1 : x + 2] = 255
    theta = math.radians(angle)
    targets = np.array([(100.0, 80.0), (100 + 75 * math.cos(theta), 80 + 75 * math.sin(theta))])
    out = filters.place_artwork(np.zeros((200, 200, 3), np.uint8), overlay, anchors, targets)[..., 0].astype(float)
    for target in targets:
        x0, y0 = int(round(target[0])) - 6, int(round(target[1])) - 6
        window = out[y0 : y0 + 13, x0 : x0 + 13]
        ys, xs = np.mgrid[y0 : y0 + 13, x0 : x0 + 13]
        centroid = np.array([(xs * window).sum(), (ys * window).sum()]) / window.sum()
        assert np.linalg.norm(centroid - target) < 0.5
    assert out.sum() == pytest.approx(2 * 9 * 255 * 2.5**2, rel=0.05)  # nothing else drawn; area scales by 2.5^2


# ---------------------------------------------------------------------------------------------------------
# Borders: faces half or wholly outside the image
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(filters.FILTERS))
@pytest.mark.parametrize("centre", [(-60, 60), (10, 10), (300, 220), (160, 300)])
def test_filter_at_border_equals_padded_rendering(name: str, centre: tuple[float, float]) -> None:
    rng = np.random.default_rng(1)
    height, width, pad = 240, 320, 400
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    keypoints = face_keypoints(centre, 200, 12)
    before = image.copy()
    clipped = filters.apply_filter(image, keypoints, name)
    full = filters.apply_filter(padded, keypoints + pad, name)
    assert np.array_equal(image, before)  # the input is never modified
    assert clipped.shape == image.shape
    np.testing.assert_array_equal(clipped, full[pad : pad + height, pad : pad + width])


@pytest.mark.parametrize("name", list(filters.FILTERS))
def test_filter_on_face_outside_image_changes_nothing(name: str) -> None:
    image = np.full((120, 160, 3), 77, np.uint8)
    for centre in [(-500, 60), (80, 900), (2000, -2000)]:
        out = filters.apply_filter(image, face_keypoints(centre, 150, 5), name)
        assert out is not image
        np.testing.assert_array_equal(out, image)


# ---------------------------------------------------------------------------------------------------------
# Alpha blending
# ---------------------------------------------------------------------------------------------------------
def test_alpha_blend_half_transparent_pixel() -> None:
    background = np.full((4, 5, 3), 100, np.uint8)
    overlay = np.zeros((2, 2, 4), np.uint8)
    overlay[0, 0] = (200, 0, 51, 128)
    overlay[1, 1] = (10, 20, 30, 255)
    out = filters.alpha_blend(background, overlay, 1, 2)
    a = 128 / 255
    assert out[2, 1].tolist() == [round(a * 200 + (1 - a) * 100), round((1 - a) * 100), round(a * 51 + (1 - a) * 100)]
    assert out[2, 1].tolist() == [150, 50, 75]
    assert out[3, 2].tolist() == [10, 20, 30]  # opaque replaces
    changed = np.zeros((4, 5), bool)
    changed[2, 1] = changed[3, 2] = True
    assert (out[~changed] == 100).all()  # transparent pixels and everything else untouched
    assert (background == 100).all()


@pytest.mark.parametrize("x, y", [(-2, -1), (3, 2), (-3, 3), (4, -3), (5, 0), (0, 4), (-3, -3), (40, 40), (-40, 1)])
def test_alpha_blend_clips_at_borders(x: int, y: int) -> None:
    rng = np.random.default_rng(2)
    background = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    overlay = rng.integers(0, 256, (3, 3, 4), dtype=np.uint8)
    pad = 50
    big = np.pad(background, ((pad, pad), (pad, pad), (0, 0)))
    expected = filters.alpha_blend(big, overlay, x + pad, y + pad)[pad : pad + 4, pad : pad + 5]
    np.testing.assert_array_equal(filters.alpha_blend(background, overlay, x, y), expected)


# ---------------------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask_id", filters.MASK_IDS)
def test_mask_keypoints_map_onto_face_keypoints(mask_id: str) -> None:
    rng = np.random.default_rng(3)
    keypoints = face_keypoints((300, 260), 230, 17) + rng.normal(0, 1.0, (68, 2))  # not a pure similarity
    mapped = filters.mask_points_on_face(mask_id, keypoints)
    assert np.abs(mapped - keypoints).max() < 1
    mask = filters.load_mask(mask_id)
    centres = mask.points[mask.triangles].mean(axis=1)  # inside points move affinely with their triangle
    expected = with_forehead(keypoints)[mask.triangles].mean(axis=1)
    assert np.abs(filters.mask_points_on_face(mask_id, keypoints, centres) - expected).max() < 1e-6


@pytest.mark.parametrize("roll", [-30, 0, 20])
@pytest.mark.parametrize("width", [240, 320])
def test_rendered_mask_markers_land_on_face_keypoints(width: float, roll: float) -> None:
    """A mask with a small white marker at each keypoint: after warping, each marker is on its keypoint."""
    mask_points = np.round(face_keypoints((150, 140), 200, 0))
    rgba = np.zeros((340, 300, 4), np.uint8)
    interior = range(17, 68)  # the jaw lies on the warp's border, where a marker would be cut in half
    for x, y in mask_points[list(interior)].astype(int):
        rgba[y - 1 : y + 2, x - 1 : x + 2] = 255
    mask = filters.Mask(rgba, mask_points)
    keypoints = face_keypoints((330, 290), width, roll)
    out = filters.warp_mask(np.zeros((640, 660, 3), np.uint8), mask, keypoints)[..., 0].astype(float)
    for index in interior:
        cx, cy = keypoints[index]
        x0, y0 = int(round(cx)) - 3, int(round(cy)) - 3  # a 7 x 7 window: neighbours' markers stay out
        window = out[y0 : y0 + 7, x0 : x0 + 7]
        ys, xs = np.mgrid[y0 : y0 + 7, x0 : x0 + 7]
        assert window.sum() > 255, index
        centroid = np.array([(xs * window).sum(), (ys * window).sum()]) / window.sum()
        assert np.linalg.norm(centroid - keypoints[index]) < 1, index


def test_mask_triangulation_is_computed_once_and_covers_the_face() -> None:
    mask = filters.load_mask("tiger")
    assert filters.load_mask("tiger") is mask
    assert mask.triangles.shape[1] == 3 and len(mask.triangles) > 100
    assert set(np.unique(mask.triangles)) == set(range(len(mask.points)))


def test_face_mask_crop_with_a_pipeline() -> None:
    image, keypoints = artwork.synthetic_face((400, 420), width=180)
    box = (110.0, 60.0, 180.0, 220.0)
    pipeline = SimpleNamespace(detect=lambda img: [SimpleNamespace(box=box, keypoints=keypoints)])
    full = filters.face_mask(image, "skull", pipeline=pipeline)
    np.testing.assert_array_equal(full, filters.face_mask(image, "skull", keypoints))
    cropped = filters.face_mask(image, "skull", crop=True, pipeline=pipeline)
    x0, y0, x1, y1 = filters._crop_box(keypoints, box, image.shape)
    np.testing.assert_array_equal(cropped, full[y0:y1, x0:x1])
    assert x0 <= box[0] and y0 <= box[1] and x1 >= box[0] + box[2] and y1 >= box[1] + box[3]
    assert cropped.shape[0] < image.shape[0] and cropped.shape[1] < image.shape[1]
    nobody = SimpleNamespace(detect=lambda img: [])
    np.testing.assert_array_equal(filters.face_mask(image, "skull", crop=True, pipeline=nobody), image)


def test_face_mask_crop_with_keypoints_needs_no_pipeline() -> None:
    image, keypoints = artwork.synthetic_face((400, 420), width=150)
    cropped = filters.face_mask(image, "clown", keypoints, crop=True)
    extent = np.ptp(with_forehead(keypoints), axis=0)
    assert cropped.shape[1] >= extent[0] and cropped.shape[1] < image.shape[1]


# ---------------------------------------------------------------------------------------------------------
# The registry and errors
# ---------------------------------------------------------------------------------------------------------
def test_unknown_filter_lists_valid_names() -> None:
    image, keypoints = face_in_middle(100, 0, (200, 200))
    with pytest.raises(ValueError) as error:
        filters.apply_filter(image, keypoints, "monocle")
    message = str(error.value)
    assert "\n" not in message and "monocle" in message
    for name in filters.FILTERS:
        assert name in message
    with pytest.raises(ValueError, match="mask:gold"):
        filters.check_filter_name("gold")
    filters.check_filter_name("mask:gold")
    with pytest.raises(ValueError, match="tiger"):
        filters.face_mask(image, "dragon", keypoints)


def test_registry_has_the_filters() -> None:
    assert {"sunglasses", "moustache", "hat"} <= set(filters.FILTERS)
    assert len([name for name in filters.FILTERS if name.startswith("mask:")]) >= 5


def test_apply_filter_to_every_face() -> None:
    image = np.zeros((300, 600, 3), np.uint8)
    faces = [face_keypoints((150, 130), 160, -10), face_keypoints((450, 140), 140, 15)]
    expected = filters.sunglasses(filters.sunglasses(image, faces[0]), faces[1])
    np.testing.assert_array_equal(filters.apply_filter(image, faces, "sunglasses"), expected)
    np.testing.assert_array_equal(filters.apply_filter(image, np.stack(faces), "sunglasses"), expected)
    detected = [SimpleNamespace(box=None, keypoints=k) for k in faces]
    np.testing.assert_array_equal(filters.apply_filter(image, detected, "sunglasses"), expected)
    np.testing.assert_array_equal(filters.apply_filter(image, [], "sunglasses"), image)


def test_bad_inputs_raise_value_error() -> None:
    image, keypoints = face_in_middle(100, 0, (200, 200))
    with pytest.raises(ValueError):
        filters.sunglasses(image, keypoints[:5])
    with pytest.raises(ValueError):
        filters.sunglasses(image.astype(np.float32), keypoints)


# ---------------------------------------------------------------------------------------------------------
# Artwork files
# ---------------------------------------------------------------------------------------------------------
def test_missing_artwork_is_drawn_and_saved(tmp_path: Path) -> None:
    art = filters.load_artwork("moustache", tmp_path)
    png, meta = artwork.artwork_paths("moustache", tmp_path)
    assert png.exists() and meta.exists()
    assert art.rgba.shape[2] == 4 and art.rgba[..., 3].max() == 255 and art.rgba[..., 3].min() == 0
    filters.load_artwork.cache_clear()
    again = filters.load_artwork("moustache", tmp_path)  # read back from the files
    np.testing.assert_array_equal(again.rgba, art.rgba)
    np.testing.assert_allclose(again.anchors, art.anchors)


def test_canonical_face_is_symmetric_and_ordered() -> None:
    face = artwork.CANONICAL_FACE
    assert face.shape == (68, 2)
    flip = [16 - i for i in range(17)] + list(range(26, 16, -1)) + [27, 28, 29, 30] + list(range(35, 30, -1)) + [
        45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40] + list(range(54, 47, -1)) + list(range(59, 54, -1)) + list(
        range(64, 59, -1)) + [67, 66, 65]
    np.testing.assert_allclose(face[flip] * (-1, 1), face, atol=1e-12)
    assert face[36, 0] < face[39, 0] < face[42, 0] < face[45, 0]  # outer, inner, inner, outer
    assert face[8, 1] > face[57, 1] > face[51, 1] > face[33, 1] > face[30, 1] > face[27, 1] > face[19, 1]
