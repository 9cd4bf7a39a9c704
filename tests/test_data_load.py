"""Tests for data_load: finding and reading the data, keypoint geometry, and the transforms."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import data_load
from conftest import MEAN_SHAPE_68, TINY_TEST, TINY_TRAINING, face_keypoints, write_keypoints_csv, write_png
from data_load import (
    FLIP_PERMUTATION_68,
    HAAR_OFFSET,
    HAAR_SIDE,
    AugmentConfig,
    CropDataset,
    DataError,
    FaceCrop,
    FacialKeypointsDataset,
    Normalize,
    RandomAffine,
    RandomCrop,
    RandomHorizontalFlip,
    Rescale,
    ToTensor,
    cut_context_crops,
    denormalize_keypoints,
    five_point_landmarks,
    flip_keypoints,
    haar_box_from_keypoints,
    nose_tip,
    person_of,
    read_image,
    read_keypoints_csv,
    resolve_data_dir,
)


def assert_one_line(message: str, *must_contain: str) -> None:
    assert message.strip(), "empty message"
    assert "\n" not in message.strip(), f"message spans several lines: {message!r}"
    for text in must_contain:
        assert text in message, f"{text!r} not in {message!r}"


# ---------------------------------------------------------------------------------------------------------
# The flip permutation
# ---------------------------------------------------------------------------------------------------------
def test_flip_permutation_is_an_involution_of_0_to_67():
    perm = FLIP_PERMUTATION_68
    assert perm.shape == (68,)
    assert sorted(perm.tolist()) == list(range(68))
    assert np.array_equal(perm[perm], np.arange(68))


@pytest.mark.parametrize("a, b", [(36, 45), (39, 42), (0, 16), (48, 54), (17, 26), (31, 35), (60, 64), (8, 8), (30, 30), (27, 27), (51, 51), (57, 57)])
def test_flip_permutation_pairs(a, b):
    assert FLIP_PERMUTATION_68[a] == b
    assert FLIP_PERMUTATION_68[b] == a


# The 300-W / iBUG 68-point markup (https://ibug.doc.ic.ac.uk/resources/facial-point-annotations/), 1-based as
# in its figure: each point and the point that takes its place on the mirrored face. Points on the vertical
# axis (nose bridge 28-31, nose tip 34, the middle of the lips and the chin 9) are their own mirror.
MIRROR_PAIRS_300W = (
    [(i, 18 - i) for i in range(1, 9)]  # jaw 1-17, chin 9
    + [(18 + i, 27 - i) for i in range(5)]  # brows 18-22 <-> 27-23
    + [(32, 36), (33, 35)]  # nostrils
    + [(37, 46), (38, 45), (39, 44), (40, 43), (41, 48), (42, 47)]  # eyes: outer and inner corners, upper, lower lids
    + [(49, 55), (50, 54), (51, 53), (60, 56), (59, 57)]  # outer lips: corners, upper, lower
    + [(61, 65), (62, 64), (68, 66)]  # inner lips: corners, upper, lower
)
SELF_MIRRORED_300W = (9, 28, 29, 30, 31, 34, 52, 58, 63, 67)


def test_flip_permutation_follows_the_300w_markup():
    expected = np.arange(68)
    for a, b in MIRROR_PAIRS_300W:
        expected[a - 1], expected[b - 1] = b - 1, a - 1
    assert len(MIRROR_PAIRS_300W) * 2 + len(SELF_MIRRORED_300W) == 68
    assert sorted({p for pair in MIRROR_PAIRS_300W for p in pair} | set(SELF_MIRRORED_300W)) == list(range(1, 69))
    wrong = {i: (int(FLIP_PERMUTATION_68[i]), int(expected[i])) for i in range(68) if FLIP_PERMUTATION_68[i] != expected[i]}
    assert not wrong, f"point: (mirror in FLIP_PERMUTATION_68, mirror in the 300-W markup), 0-based: {wrong}"


def test_flip_permutation_mirrors_the_canonical_face():
    # artwork.CANONICAL_FACE is symmetric about x = 0 by construction: mirrored and relabelled, it is itself.
    from resources import artwork

    face = artwork.CANONICAL_FACE
    np.testing.assert_allclose(face[FLIP_PERMUTATION_68] * (-1, 1), face, atol=1e-9)


def test_flip_permutation_mirrors_the_mean_shape():
    # Mirroring the mean training face about its own vertical axis and relabelling gives back the mean face, up to
    # the face's own asymmetry. Measured: at most 0.031 (the chin, point 8: the mean face leans), mean 0.014 of the
    # box; the upper and lower eyelids swapped give 0.049 at most. Tolerance 0.035.
    shape = MEAN_SHAPE_68
    axis = (shape[:, 0] + shape[FLIP_PERMUTATION_68, 0]).mean() / 2
    mirrored = shape[FLIP_PERMUTATION_68].copy()
    mirrored[:, 0] = 2 * axis - mirrored[:, 0]
    assert np.linalg.norm(mirrored - shape, axis=1).max() < 0.035


def test_flip_keypoints_twice_is_identity():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, size=(68, 2)).astype(np.float32)
    once = flip_keypoints(points, 100)
    assert not np.allclose(once, points)
    assert np.allclose(once[:, 0], 99 - points[FLIP_PERMUTATION_68, 0])
    np.testing.assert_allclose(flip_keypoints(once, 100), points, atol=1e-5)
    batch = rng.uniform(0, 50, size=(3, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(flip_keypoints(flip_keypoints(batch, 50), 50), batch, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# Every transform keeps keypoints on the pixels they mark
# ---------------------------------------------------------------------------------------------------------
DOT_INDICES = (0, 8, 16, 19, 30, 36, 45, 48, 54, 62)
IMAGE_H, IMAGE_W = 220, 200
FACE_BOX = (60.0, 66.0, 80.0, 84.0)  # x, y, w, h: the face sits in the middle, away from the borders
# Pixels between the blob's centre and the transformed keypoint. Correct transforms stay within ~0.16 px here;
# a half-pixel convention slip (e.g. Rescale scaling x instead of x + 0.5) is off by >= 0.45 px, a flip about
# ``width`` instead of ``width - 1`` by 1 px. (The brightest pixel itself must be within 1.5 px.)
TOLERANCE = 0.3


def face_points() -> np.ndarray:
    return face_keypoints(FACE_BOX)


def dot_image(height: int, width: int, centre: np.ndarray, sigma: float = 1.6) -> np.ndarray:
    """A dark RGB image with one bright Gaussian blob centred at ``centre`` (x, y), pixel centres at integers."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    blob = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma**2))
    gray = np.round(10 + 245 * blob).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def bright_spot(image) -> tuple[np.ndarray, np.ndarray]:
    """(argmax pixel, intensity-weighted centroid of the blob around it) as (x, y)."""
    if isinstance(image, torch.Tensor):
        image = image.numpy()
    gray = np.asarray(image, np.float64)
    if gray.ndim == 3:
        gray = gray[0] if gray.shape[0] in (1, 3) and gray.shape[2] not in (1, 3) else gray.mean(axis=2)
    iy, ix = np.unravel_index(np.argmax(gray), gray.shape)
    y0, y1, x0, x1 = max(iy - 4, 0), min(iy + 5, gray.shape[0]), max(ix - 4, 0), min(ix + 5, gray.shape[1])
    window = gray[y0:y1, x0:x1] - np.median(gray)
    window = np.where(window > 0.2 * window.max(), window, 0.0)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    centroid = np.array([(xx * window).sum(), (yy * window).sum()]) / window.sum()
    return np.array([ix, iy], np.float64), centroid


def assert_dot_at(image, expected_xy, context: str = "") -> None:
    peak, centroid = bright_spot(image)
    expected_xy = np.asarray(expected_xy, np.float64)
    h, w = (image.shape[-2:] if isinstance(image, torch.Tensor) else np.asarray(image).shape[:2])
    assert 2 <= expected_xy[0] <= w - 3 and 2 <= expected_xy[1] <= h - 3, f"{context}: keypoint {expected_xy} left the {w}x{h} image"
    assert np.linalg.norm(peak - expected_xy) <= 1.5, f"{context}: brightest pixel {peak}, keypoint {expected_xy}"
    assert np.linalg.norm(centroid - expected_xy) <= TOLERANCE, f"{context}: blob centre {centroid}, keypoint {expected_xy}"


def dot_samples():
    points = face_points()
    for j in DOT_INDICES:
        yield j, {"image": dot_image(IMAGE_H, IMAGE_W, points[j]), "keypoints": points.copy(), "name": f"dot_{j}.jpg"}


TRANSFORMS = {
    "rescale_int_down": lambda: Rescale(55),
    "rescale_int_up": lambda: Rescale(260),
    "rescale_tuple": lambda: Rescale((150, 96)),
    "random_crop": lambda: RandomCrop((170, 160), rng=np.random.default_rng(0)),
    "random_affine": lambda: RandomAffine(rotation=170, scale=0.2, shift=0.05, rng=np.random.default_rng(0)),
    "face_crop": lambda: FaceCrop(96),
    "face_crop_augment_no_flip": lambda: FaceCrop(
        96, AugmentConfig(rotation=40, scale=0.15, shift=0.06, flip=0.0), rng=np.random.default_rng(0)
    ),
    "face_crop_augment_no_jitter": lambda: FaceCrop(
        112, AugmentConfig(rotation=30, flip=0.0, brightness=0.0, contrast=0.0), rng=np.random.default_rng(1)
    ),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transform_keeps_keypoints_on_their_pixels(name):
    for j, sample in dot_samples():
        out = TRANSFORMS[name]()(sample)  # a fresh transform (same seed) per image
        assert out["keypoints"].shape == (68, 2)
        assert out["image"].dtype == np.uint8
        assert_dot_at(out["image"], out["keypoints"][j], f"{name}, point {j}")


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandomHorizontalFlip(p=1.0, rng=np.random.default_rng(0)),
        lambda: FaceCrop(96, AugmentConfig(rotation=25, flip=1.0), rng=np.random.default_rng(0)),
        lambda: FaceCrop(96, AugmentConfig(rotation=0, scale=0, shift=0, flip=1.0, brightness=0, contrast=0)),
    ],
    ids=["random_horizontal_flip", "face_crop_augment_flip", "face_crop_flip_only"],
)
def test_flipping_transforms_move_and_relabel_keypoints(make):
    # After a mirror, the dot drawn at point j is where the mirrored face's point FLIP_PERMUTATION_68[j] is.
    for j, sample in dot_samples():
        out = make()(sample)
        assert_dot_at(out["image"], out["keypoints"][FLIP_PERMUTATION_68[j]], f"point {j}")


def test_face_crop_flip_mirrors_the_unflipped_crop():
    sample = next(iter(dot_samples()))[1]
    plain = FaceCrop(96)(sample)
    flipped = FaceCrop(96, AugmentConfig(rotation=0, scale=0, shift=0, flip=1.0, brightness=0, contrast=0))(sample)
    np.testing.assert_array_equal(flipped["image"], plain["image"][:, ::-1])
    np.testing.assert_allclose(flipped["keypoints"], flip_keypoints(plain["keypoints"], 96), atol=1e-3)


def test_random_horizontal_flip_p0_keeps_the_sample():
    sample = next(iter(dot_samples()))[1]
    out = RandomHorizontalFlip(p=0.0)(sample)
    np.testing.assert_array_equal(out["image"], sample["image"])
    np.testing.assert_array_equal(out["keypoints"], sample["keypoints"])


def test_rescale_sizes():
    image = np.zeros((100, 50, 3), np.uint8)
    sample = {"image": image, "keypoints": np.zeros((68, 2), np.float32)}
    assert Rescale(30)(sample)["image"].shape == (60, 30, 3)  # the shorter side becomes 30
    assert Rescale(200)({**sample, "image": np.zeros((50, 100, 3), np.uint8)})["image"].shape == (200, 400, 3)
    assert Rescale((40, 70))(sample)["image"].shape == (40, 70, 3)  # (height, width)


def test_random_crop_size_and_error():
    sample = {"image": np.zeros((100, 80, 3), np.uint8), "keypoints": np.zeros((3, 2), np.float32)}
    out = RandomCrop(50, rng=np.random.default_rng(0))(sample)
    assert out["image"].shape == (50, 50, 3)
    with pytest.raises(ValueError):
        RandomCrop(90)(sample)


def build_dot_dataset(root: Path) -> FacialKeypointsDataset:
    """One image per dot index, the dot at that keypoint, written like the real data (PNG named .jpg)."""
    (root / "training").mkdir(parents=True)
    names, points = [], face_points()
    for j in DOT_INDICES:
        name = f"Dot_Person_{j:02d}.jpg"
        write_png(root / "training" / name, dot_image(IMAGE_H, IMAGE_W, points[j], sigma=2.2))
        names.append(name)
    write_keypoints_csv(root / "training_frames_keypoints.csv", names, np.repeat(points[None], len(names), axis=0))
    return FacialKeypointsDataset(root / "training_frames_keypoints.csv", root / "training")


@pytest.mark.parametrize(
    "augment, expect_flip",
    [
        (None, False),
        (AugmentConfig(rotation=30, scale=0.1, shift=0.05, flip=0.0), False),
        (AugmentConfig(rotation=30, scale=0.1, shift=0.05, flip=1.0), True),
        (AugmentConfig(rotation=30, flip=0.0, brightness=0.0, contrast=0.0), False),
    ],
    ids=["plain", "augment", "augment_flip", "augment_no_jitter"],
)
def test_crop_dataset_keeps_keypoints_on_their_pixels(tmp_path, augment, expect_flip):
    dataset = build_dot_dataset(tmp_path / "dots")
    input_size = 64
    crops = cut_context_crops(dataset, input_size)
    assert crops["images"].shape == (len(DOT_INDICES), data_load.context_size(input_size), data_load.context_size(input_size))
    assert crops["images"].dtype == np.uint8
    # the cached context crops already keep the dots on their keypoints
    for i, j in enumerate(DOT_INDICES):
        assert_dot_at(crops["images"][i], crops["keypoints"][i, j], f"context crop, point {j}")
    crop_dataset = CropDataset(crops, input_size, augment=augment, seed=0)
    assert len(crop_dataset) == len(DOT_INDICES)
    for i, j in enumerate(DOT_INDICES):
        item = crop_dataset[i]
        assert item["image"].shape == (1, input_size, input_size)
        assert item["image"].dtype == torch.float32
        assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
        assert item["keypoints"].shape == (68, 2)
        pixels = denormalize_keypoints(item["keypoints"], input_size)
        k = FLIP_PERMUTATION_68[j] if expect_flip else j
        assert_dot_at(item["image"][0], pixels[k], f"CropDataset, point {j}")


def test_crop_dataset_without_augment_matches_face_crop(tmp_path):
    """The cached route gives the pipeline's crop: same keypoints, nearly the same pixels."""
    dataset = build_dot_dataset(tmp_path / "dots")
    input_size = 64
    crops = cut_context_crops(dataset, input_size)
    crop_dataset = CropDataset(crops, input_size)
    face_crop = FaceCrop(input_size)
    for i in range(len(dataset)):
        direct = face_crop(dataset[i])
        item = crop_dataset[i]
        np.testing.assert_allclose(denormalize_keypoints(item["keypoints"], input_size), direct["keypoints"], atol=1e-3)
        direct_gray = cv2.cvtColor(direct["image"], cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
        assert np.abs(item["image"][0].numpy() - direct_gray).mean() < 0.02


# ---------------------------------------------------------------------------------------------------------
# Normalize and ToTensor
# ---------------------------------------------------------------------------------------------------------
def test_normalize_grayscale_and_keypoint_scaling():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    image[0, 0] = (255, 255, 255)
    image[0, 1] = (0, 0, 0)
    image[0, 2] = (255, 0, 0)
    keypoints = np.array([[0, 0], [30, 20], [60, 40], [15, 35]], np.float32)
    out = Normalize()({"image": image, "keypoints": keypoints, "name": "x.jpg"})
    gray = out["image"]
    assert gray.shape == (40, 60) and gray.dtype == np.float32
    assert 0.0 <= gray.min() and gray.max() <= 1.0
    assert gray[0, 0] == pytest.approx(1.0) and gray[0, 1] == pytest.approx(0.0)
    assert gray[0, 2] == pytest.approx(0.299, abs=0.01)  # luma of pure red: RGB order honoured
    assert out["keypoints"].dtype == np.float32
    expected = (keypoints - np.array([30, 20])) / np.array([30, 20])
    np.testing.assert_allclose(out["keypoints"], expected, atol=1e-6)
    np.testing.assert_allclose(out["keypoints"][1], [0, 0])
    np.testing.assert_allclose(denormalize_keypoints(out["keypoints"], (60, 40)), keypoints, atol=1e-4)
    assert out["name"] == "x.jpg"


def test_denormalize_inverts_normalize_for_arrays_and_tensors():
    points = np.random.default_rng(1).uniform(0, 96, size=(5, 68, 2)).astype(np.float32)
    normalized = data_load.normalize_keypoints(points, 96)
    np.testing.assert_allclose(denormalize_keypoints(normalized, 96), points, atol=1e-4)
    np.testing.assert_allclose(denormalize_keypoints(torch.from_numpy(normalized), 96), points, atol=1e-4)
    np.testing.assert_allclose(data_load.normalize_keypoints([[0, 0], [96, 96]], 96), [[-1, -1], [1, 1]])
    rect = data_load.normalize_keypoints([[0, 0], [60, 40]], (60, 40))  # (width, height)
    np.testing.assert_allclose(rect, [[-1, -1], [1, 1]])


def test_denormalize_accepts_flat_model_outputs():
    points = np.random.default_rng(1).uniform(0, 96, size=(5, 68, 2)).astype(np.float32)
    flat = data_load.normalize_keypoints(points, 96).reshape(5, 136)  # what a model returns
    np.testing.assert_allclose(denormalize_keypoints(flat, 96), points, atol=1e-4)
    # a batch of batches (..., 2K) keeps its leading axes
    np.testing.assert_allclose(denormalize_keypoints(flat.reshape(5, 1, 136), 96), points[:, None], atol=1e-4)


def test_to_tensor_shapes_and_dtypes():
    gray = np.random.default_rng(0).random((32, 24), dtype=np.float32)
    out = ToTensor()({"image": gray, "keypoints": np.zeros((68, 2), np.float64), "name": "a"})
    assert isinstance(out["image"], torch.Tensor) and out["image"].shape == (1, 32, 24)
    assert out["image"].dtype == torch.float32
    assert torch.equal(out["image"][0], torch.from_numpy(gray))
    assert out["keypoints"].shape == (68, 2) and out["keypoints"].dtype == torch.float32
    color = np.zeros((10, 12, 3), np.float32)
    color[..., 2] = 1
    out = ToTensor()({"image": color, "keypoints": np.zeros((5, 2))})
    assert out["image"].shape == (3, 10, 12) and float(out["image"][2].min()) == 1.0


def test_course_pipeline_on_a_real_layout_sample(tiny_dataset):
    from torchvision.transforms import Compose

    transform = Compose([Rescale(100), RandomCrop(96, rng=np.random.default_rng(0)), Normalize(), ToTensor()])
    dataset = FacialKeypointsDataset(tiny_dataset / "training_frames_keypoints.csv", tiny_dataset / "training", transform)
    sample = dataset[0]
    assert sample["image"].shape == (1, 96, 96) and sample["image"].dtype == torch.float32
    assert sample["keypoints"].shape == (68, 2) and sample["keypoints"].dtype == torch.float32
    assert float(sample["keypoints"].abs().max()) < 1.5
    batch = data_load.collate_samples([dataset[0], dataset[1]])
    assert batch["image"].shape == (2, 1, 96, 96) and batch["name"] == dataset.names[:2]


# ---------------------------------------------------------------------------------------------------------
# Reading images: decoded by content, always H x W x 3 uint8 RGB
# ---------------------------------------------------------------------------------------------------------
def encode(array: np.ndarray, ext: str = ".png", params=()) -> bytes:
    ok, data = cv2.imencode(ext, array, list(params))
    assert ok
    return data.tobytes()


def test_read_image_rgba_png_named_jpg(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:, :10, 0] = 255  # red band
    rgba[:, 10:20, 1] = 255  # green band
    rgba[:, 20:, 2] = 255  # blue band
    rgba[0, 0, 3] = 0  # a transparent pixel is still decoded
    path = tmp_path / "Some_Person_00.jpg"
    write_png(path, rgba)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = read_image(path)
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    assert image[5, 5].tolist() == [255, 0, 0]
    assert image[5, 15].tolist() == [0, 255, 0]
    assert image[5, 25].tolist() == [0, 0, 255]


def test_read_image_grayscale_png(tmp_path):
    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (7, 1))
    path = tmp_path / "gray.jpg"
    path.write_bytes(encode(gray))
    image = read_image(path)
    assert image.shape == (7, 25, 3) and image.dtype == np.uint8
    assert np.array_equal(image[..., 0], gray) and np.array_equal(image[..., 1], gray) and np.array_equal(image[..., 2], gray)


def test_read_image_16_bit_png(tmp_path):
    bgr16 = np.zeros((6, 8, 3), np.uint16)
    bgr16[..., 2] = 65535  # red in OpenCV's BGR order
    bgr16[:, 4:, 1] = 257 * 100
    path = tmp_path / "deep.png"
    path.write_bytes(encode(bgr16))
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (6, 8, 3)
    assert image[0, 0].tolist() == [255, 0, 0]
    assert image[0, 7].tolist() == [255, 100, 0]


def test_read_image_real_jpeg(tmp_path):
    bgr = np.zeros((32, 32, 3), np.uint8)
    bgr[...] = (40, 60, 220)  # reddish, in BGR
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(bgr, ".jpg", (cv2.IMWRITE_JPEG_QUALITY, 95)))
    assert path.read_bytes()[:2] == b"\xff\xd8"
    image = read_image(path)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert np.abs(image[16, 16].astype(int) - [220, 60, 40]).max() <= 4


def test_to_rgb_uint8_conversions():
    assert data_load.to_rgb_uint8(np.full((2, 2), 1.0, np.float32)).tolist() == [[[255] * 3] * 2] * 2
    assert data_load.to_rgb_uint8(np.ones((2, 2, 1), bool))[0, 0].tolist() == [255, 255, 255]
    rgba = np.zeros((1, 1, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    assert data_load.to_rgb_uint8(rgba)[0, 0].tolist() == [255, 0, 0]
    with pytest.raises(ValueError):
        data_load.to_rgb_uint8(np.zeros((2, 2, 5), np.uint8))


@pytest.mark.parametrize("content", ["empty", "text", "truncated_png", "truncated_jpeg", "directory", "missing"])
def test_read_image_unreadable_files_raise_data_error(tmp_path, content):
    path = tmp_path / f"Broken_Face_{content}.jpg"
    png = encode(np.full((40, 40, 4), 200, np.uint8))
    jpeg = encode(np.full((40, 40, 3), 200, np.uint8), ".jpg")
    if content == "empty":
        path.write_bytes(b"")
    elif content == "text":
        path.write_text("name,x,y\nthis is not an image\n")
    elif content == "truncated_png":
        path.write_bytes(png[: len(png) // 2])
    elif content == "truncated_jpeg":
        path.write_bytes(jpeg[: len(jpeg) // 2])
    elif content == "directory":
        path.mkdir()
    with pytest.raises(DataError) as info:
        read_image(path)
    assert_one_line(str(info.value), path.name)


# ---------------------------------------------------------------------------------------------------------
# Reading keypoint CSVs
# ---------------------------------------------------------------------------------------------------------
HEADER4 = ",0,1,2,3\n"


BAD_CSVS = {
    "odd_columns": ",0,1,2\na.jpg,1,2,3\nb.jpg,4,5,6\n",
    "name_only": ",\na.jpg,\n",
    "nan": HEADER4 + "a.jpg,1,2,3,4\nb.jpg,1,,3,4\n",
    "nan_literal": HEADER4 + "a.jpg,1,2,3,4\nb.jpg,1,NaN,3,4\n",
    "non_numeric": HEADER4 + "a.jpg,1,2,3,4\nb.jpg,1,two,3,4\n",
    "empty": "",
    "header_only": HEADER4,
    "ragged_row": HEADER4 + "a.jpg,1,2,3,4\nb.jpg,1,2,3,4,5,6\n",
}


@pytest.mark.parametrize(
    "kind",
    list(BAD_CSVS),
)
def test_read_keypoints_csv_bad_files_raise_data_error(tmp_path, kind):
    path = tmp_path / f"keypoints_{kind}.csv"
    path.write_text(BAD_CSVS[kind])
    with pytest.raises(DataError) as info:
        read_keypoints_csv(path)
    assert_one_line(str(info.value), path.name)


def test_read_keypoints_csv_binary_and_missing_files(tmp_path):
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b",0,1\n\xff\xfe\x00\x81a.jpg,1,2\n")
    with pytest.raises(DataError) as info:
        read_keypoints_csv(binary)
    assert_one_line(str(info.value), binary.name)
    missing = tmp_path / "missing.csv"
    with pytest.raises(DataError) as info:
        read_keypoints_csv(missing)
    assert_one_line(str(info.value), missing.name)


def test_read_keypoints_csv_values(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text(HEADER4 + "a_00.jpg,1,2,3,4\nb_01.jpg,5.5,6,7,8\n")
    names, keypoints = read_keypoints_csv(path)
    assert names == ["a_00.jpg", "b_01.jpg"]
    assert keypoints.dtype == np.float32 and keypoints.shape == (2, 2, 2)
    np.testing.assert_array_equal(keypoints[1], [[5.5, 6], [7, 8]])


def test_dataset_with_five_keypoints(tmp_path):
    root = tmp_path / "five"
    (root / "training").mkdir(parents=True)
    points = five_point_landmarks(face_keypoints((20, 25, 40, 42)))
    names = ["Five_Points_00.jpg", "Five_Points_01.jpg"]
    for name in names:
        write_png(root / "training" / name, np.zeros((80, 90, 4), np.uint8))
    write_keypoints_csv(root / "training_frames_keypoints.csv", names, np.stack([points, points + 1]))
    dataset = FacialKeypointsDataset(root / "training_frames_keypoints.csv", root / "training")
    assert dataset.num_keypoints == 5 and len(dataset) == 2
    sample = dataset[1]
    assert sample["keypoints"].shape == (5, 2)
    np.testing.assert_allclose(sample["keypoints"], points + 1, atol=0.06)
    assert sample["image"].shape == (80, 90, 3)
    # the face crop and flips work for 5 points too (eyes and mouth corners swap)
    out = FaceCrop(64, AugmentConfig(rotation=0, scale=0, shift=0, flip=1.0, brightness=0, contrast=0))(sample)
    assert out["keypoints"].shape == (5, 2)
    assert out["keypoints"][0, 0] < out["keypoints"][1, 0]  # image-left eye is still first after the flip


# ---------------------------------------------------------------------------------------------------------
# Finding the data
# ---------------------------------------------------------------------------------------------------------
def test_resolve_data_dir_env_var_missing_folder(tmp_path, monkeypatch):
    missing = tmp_path / "no_such_folder"
    monkeypatch.setenv("FKP_DATA", str(missing))
    with pytest.raises(DataError) as info:
        resolve_data_dir()
    assert_one_line(str(info.value), str(missing), "FKP_DATA")
    assert not missing.exists()


def test_resolve_data_dir_env_var_folder_without_csvs(tmp_path, monkeypatch):
    folder = tmp_path / "half"
    (folder / "training").mkdir(parents=True)
    (folder / "test").mkdir()
    monkeypatch.setenv("FKP_DATA", str(folder))
    with pytest.raises(DataError) as info:
        resolve_data_dir()
    assert_one_line(str(info.value), str(folder), "training_frames_keypoints.csv", "test_frames_keypoints.csv")


def test_resolve_data_dir_env_var_and_argument(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("FKP_DATA", str(tiny_dataset))
    assert resolve_data_dir() == tiny_dataset
    monkeypatch.setenv("FKP_DATA", str(tmp_path / "elsewhere"))
    assert resolve_data_dir(tiny_dataset) == tiny_dataset  # the argument wins over the variable
    assert resolve_data_dir(str(tiny_dataset)) == tiny_dataset


def test_resolve_data_dir_without_download(tmp_path, monkeypatch):
    monkeypatch.delenv("FKP_DATA", raising=False)
    monkeypatch.setattr(data_load, "DEFAULT_DATA_DIR", tmp_path / "data")
    with pytest.raises(DataError) as info:
        resolve_data_dir(download=False)
    assert_one_line(str(info.value), "FKP_DATA")
    assert not (tmp_path / "data").exists()


def test_dataset_missing_image_folder_and_image(tiny_dataset):
    with pytest.raises(DataError) as info:
        FacialKeypointsDataset(tiny_dataset / "training_frames_keypoints.csv", tiny_dataset / "nope")
    assert_one_line(str(info.value), "nope")
    first = FacialKeypointsDataset(tiny_dataset / "training_frames_keypoints.csv", tiny_dataset / "training").names[0]
    (tiny_dataset / "training" / first).unlink()
    dataset = FacialKeypointsDataset(tiny_dataset / "training_frames_keypoints.csv", tiny_dataset / "training")
    with pytest.raises(DataError) as info:
        dataset[0]
    assert_one_line(str(info.value), first)


# ---------------------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------------------
def test_real_dataset_sizes_and_samples(real_data_dir):
    train = FacialKeypointsDataset.from_split("training", real_data_dir)
    test = FacialKeypointsDataset.from_split("test", real_data_dir)
    assert len(train) == 3462 and len(test) == 770
    assert train.num_keypoints == 68 and test.num_keypoints == 68
    for dataset in (train, test):
        sample = dataset[0]
        image = sample["image"]
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert sample["keypoints"].shape == (68, 2) and sample["keypoints"].dtype == np.float32
        assert sample["name"] == dataset.names[0]
        h, w = image.shape[:2]
        assert (sample["keypoints"] > -5).all() and (sample["keypoints"][:, 0] < w + 5).all() and (sample["keypoints"][:, 1] < h + 5).all()
    assert len(set(train.persons)) < len(train)  # several faces per person


def test_tiny_dataset_like_the_real_one(tiny_data):
    root = tiny_data.path
    header = (root / "training_frames_keypoints.csv").read_text().splitlines()[0]
    assert header == "," + ",".join(str(i) for i in range(136))
    train = FacialKeypointsDataset.from_split("training", root)
    test = FacialKeypointsDataset.from_split("test", root)
    assert len(train) == sum(TINY_TRAINING.values()) and len(test) == sum(TINY_TEST.values())
    assert sorted(set(train.persons)) == sorted(TINY_TRAINING)
    sample = train[3]
    assert sample["image"].dtype == np.uint8 and sample["image"].ndim == 3 and sample["image"].shape[2] == 3
    assert sample["keypoints"].shape == (68, 2)
    np.testing.assert_allclose(sample["keypoints"], tiny_data.training_keypoints[3], atol=0.06)
    assert (root / "training" / train.names[0]).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError):
        FacialKeypointsDataset.from_split("validation", root)
    subset = FacialKeypointsDataset(root / "training_frames_keypoints.csv", root / "training", indices=[5, 1])
    assert subset.names == [train.names[5], train.names[1]]
    np.testing.assert_array_equal(subset.keypoints[0], train.keypoints[5])


# ---------------------------------------------------------------------------------------------------------
# Derived keypoints and geometry
# ---------------------------------------------------------------------------------------------------------
def test_five_point_landmarks_and_nose_tip():
    points = face_keypoints((10, 20, 100, 120))
    five = five_point_landmarks(points)
    assert five.shape == (5, 2)
    np.testing.assert_allclose(five[0], points[36:42].mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(five[1], points[42:48].mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(five[2], points[30])
    np.testing.assert_allclose(five[3], points[48])
    np.testing.assert_allclose(five[4], points[54])
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]  # image-left first
    batch = np.stack([points, points + 5])
    assert five_point_landmarks(batch).shape == (2, 5, 2)
    np.testing.assert_allclose(five_point_landmarks(batch)[1], five + 5, atol=1e-4)
    np.testing.assert_allclose(nose_tip(points), points[30])
    assert nose_tip(batch).shape == (2, 2)


@pytest.mark.parametrize(
    "name, person",
    [
        ("Abdel_Aziz_Al-Hakim_00.jpg", "Abdel_Aziz_Al-Hakim"),
        ("Luis_Fonsi_21.jpg", "Luis_Fonsi"),
        ("training/John_Doe_3.png", "John_Doe"),
        ("Madonna.jpg", "Madonna"),
        ("Face_Without_Number_x.jpg", "Face_Without_Number_x"),
    ],
)
def test_person_of(name, person):
    assert person_of(name) == person


@pytest.mark.parametrize("box, expected", [
    ((10, 20, 40, 80), (30, 60 + 0.16 * 80, 1.5 * 80)),  # a tall box: the side follows the height
    ((10, 20, 80, 40), (50, 40 + 0.16 * 80, 1.5 * 80)),  # a wide box: the side follows the width
    ((0, 0, 50, 50), (25, 25 + 0.16 * 50, 1.5 * 50)),
])
def test_crop_square_from_box_covers_the_longer_side(box, expected):
    assert data_load.crop_square_from_box(box) == pytest.approx(expected)
    cx, cy, side = data_load.crop_square_from_box(box, scale=1.0, shift=0.0)
    assert (cx, cy, side) == pytest.approx((box[0] + box[2] / 2, box[1] + box[3] / 2, max(box[2:])))


def test_crop_matrix_rotates_scales_and_mirrors_about_the_square_centre():
    # OpenCV's convention (getRotationMatrix2D): a positive angle turns the picture counter-clockwise as shown, y down.
    centre_right = np.array([[60.0 + 10.0, 40.0]])  # 10 px right of the square's centre (60, 40)
    matrix = data_load.crop_matrix(60, 40, 50, 100, angle=90)
    np.testing.assert_allclose(data_load.transform_points(centre_right, matrix), [[50, 50 - 20]], atol=1e-4)
    np.testing.assert_allclose(data_load.transform_points(centre_right, data_load.crop_matrix(60, 40, 50, 100)), [[70, 50]], atol=1e-4)
    flipped = data_load.crop_matrix(60, 40, 50, 100, flip=True)
    np.testing.assert_allclose(data_load.transform_points(centre_right, flipped), [[99 - 70, 50]], atol=1e-4)


def test_face_crop_of_a_tall_box_keeps_the_whole_box():
    # A box twice as tall as wide: the crop must hold all of it, so its corners land inside the 100 x 100 output.
    points = np.array([[20, 10], [60, 10], [20, 90], [60, 90]], np.float32)
    sample = {"image": np.zeros((120, 100, 3), np.uint8), "keypoints": points, "box": np.array([20, 10, 40, 80], np.float32)}
    out = FaceCrop(100)(sample)["keypoints"]
    assert out.min() >= 0 and out.max() <= 100
    assert out[:, 1].max() - out[:, 1].min() == pytest.approx(80 * 100 / (1.5 * 80), rel=1e-4)


def test_haar_box_from_keypoints_geometry():
    points = np.array([[10, 20], [110, 20], [10, 84], [110, 84], [60, 50]], np.float32)  # box 100 x 64 at (10, 20)
    x, y, w, h = haar_box_from_keypoints(points)
    s = np.sqrt(100 * 64)
    assert w == pytest.approx(HAAR_SIDE * s, rel=1e-5) and h == pytest.approx(w)
    assert x + w / 2 == pytest.approx(60 + HAAR_OFFSET[0] * s, abs=1e-3)
    assert y + h / 2 == pytest.approx(52 + HAAR_OFFSET[1] * s, abs=1e-3)
    # shifting the points shifts the box; scaling them scales its side
    shifted = haar_box_from_keypoints(points + [7, -3])
    np.testing.assert_allclose(shifted, [x + 7, y - 3, w, h], atol=1e-3)
    assert haar_box_from_keypoints(points * 2)[2] == pytest.approx(2 * w, rel=1e-5)


def test_augment_config_is_plain_data():
    config = AugmentConfig()
    assert dataclasses.asdict(config)["flip"] == 0.5
    assert AugmentConfig(**dataclasses.asdict(config)) == config


def test_resolve_data_dir_default_folder_is_fetched_when_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("FKP_DATA", raising=False)
    monkeypatch.setattr(data_load, "DEFAULT_DATA_DIR", tmp_path / "data")
    asked = []
    monkeypatch.setattr(data_load, "ensure_dataset", lambda target: asked.append(target) or target)
    with pytest.raises(DataError):  # the stub "downloads" nothing, so the folder check still fails
        resolve_data_dir()
    assert asked == [tmp_path / "data"]


def test_random_transforms_repeat_after_the_same_seed_and_differ_after_another():
    from pipeline import training

    sample = {"image": np.zeros((300, 260, 3), np.uint8), "keypoints": face_keypoints((40, 60, 180, 200))}

    def draws(seed: int) -> list[np.ndarray]:
        training.set_seed(seed)
        transforms = [RandomCrop(200), data_load.RandomAffine(), data_load.FaceCrop(96, augment=data_load.AugmentConfig())]
        return [t(sample)["keypoints"] for t in transforms for _ in range(2)]

    first, again, other = draws(1), draws(1), draws(2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again)), "the same seed must give the same windows and warps"
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_two_processes_building_one_crop_cache_both_succeed(tmp_path, monkeypatch):
    """Two trainings started at once build the same cache file: each writes its own temporary, so the one that
    finishes second neither fails nor leaves a stray file (both used one fixed temporary name before, and the
    second rename failed with FileNotFoundError)."""
    cache_file = tmp_path / "crops_training_128_0123456789ab.npz"
    first, second = {"keypoints": np.zeros((2, 68, 2), np.float32)}, {"keypoints": np.ones((2, 68, 2), np.float32)}
    real_savez = np.savez_compressed
    calls = []

    def savez_while_the_other_finishes(file, **arrays):
        real_savez(file, **arrays)
        calls.append(file)
        if len(calls) == 1:  # the other process writes and renames its copy while this one is between the two steps
            assert data_load.cached_crops(cache_file, lambda: second)["keypoints"].max() == 1

    monkeypatch.setattr(data_load.np, "savez_compressed", savez_while_the_other_finishes)
    crops = data_load.cached_crops(cache_file, lambda: first)
    assert crops["keypoints"].max() == 0 and len(calls) == 2
    monkeypatch.setattr(data_load.np, "savez_compressed", real_savez)
    assert data_load.cached_crops(cache_file, lambda: pytest.fail("the cache should be read"))["keypoints"].shape == (2, 68, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [cache_file.name]
