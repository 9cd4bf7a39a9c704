"""Pictures without faces: negatives to train the face score on, and a separate set to count false faces on.

Two sources, each divided into a "training" part and a "measuring" part that never share a picture:

* **scikit-image's sample pictures without people** (bundled with the package, no download): objects, animals,
  textures, text, microscopy, astronomy. ``SKIMAGE_PARTS`` lists which name goes where. The astronaut, the
  cameraman and the LFW faces hold people and are in neither part.
* **Background regions of the course pictures**: for each picture, the largest strip beside, above or below its
  face that keeps clear of the face (the keypoint box grown by ``FACE_MARGIN`` on each side), when it is at least
  ``MIN_REGION_SIDE`` pixels on its short side. Training pictures give the training part, test pictures the
  measuring part.

    pictures = no_face_pictures("measuring", data_dir)     # [(name, H x W x 3 uint8 RGB), ...]
    crops = load_negative_crops("training", 112, data_dir)  # context crops of random boxes, to train the face score
"""
from __future__ import annotations

import os
import warnings
from typing import Callable

import numpy as np

import cv2

from data_load import (
    cached_crops,
    crop_cache_file,
    cut_face_crops,
    keypoint_box,
    read_image,
    read_keypoints_csv,
    resolve_data_dir,
    split_paths,
    to_rgb_uint8,
)

# Which bundled scikit-image picture belongs to which part (none holds a person).
SKIMAGE_PARTS: dict[str, tuple[str, ...]] = {
    "training": (
        "brick", "cell", "checkerboard", "clock", "coins", "colorwheel", "grass", "horse", "immunohistochemistry",
        "moon", "page", "retina", "shepp_logan_phantom",
    ),
    "measuring": (
        "binary_blobs", "cat", "chelsea", "coffee", "gravel", "hubble_deep_field", "logo", "microaneurysms", "rocket",
        "stereo_motorcycle", "text",
    ),
}
PART_SPLITS = {"training": "training", "measuring": "test"}  # course split whose backgrounds go to each part
FACE_MARGIN = 0.25  # the keypoint box grown by this share of its size on every side is kept clear
MIN_REGION_SIDE = 64  # background strips narrower than this (pixels) are not used
# Random face boxes on pictures without faces: how many per scikit-image picture and per background region, and
# their smallest side in pixels (the largest is the picture's short side).
BOXES_PER_SKIMAGE_PICTURE = 40
BOXES_PER_BACKGROUND = 1
MIN_BOX_SIDE = 40


def _check_part(part: str) -> None:
    if part not in SKIMAGE_PARTS:
        raise ValueError(f"part must be 'training' or 'measuring', not {part!r}")


def skimage_pictures(part: str) -> list[tuple[str, np.ndarray]]:
    """The scikit-image pictures of a part as (name, H x W x 3 uint8 RGB)."""
    import skimage.data

    _check_part(part)
    pictures = []
    for name in SKIMAGE_PARTS[part]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = getattr(skimage.data, name)()
        if isinstance(image, tuple):  # stereo pairs: the left view
            image = image[0]
        pictures.append((f"skimage:{name}", to_rgb_uint8(np.asarray(image))))
    return pictures


def background_region(image_shape: tuple[int, ...], keypoints: np.ndarray, margin: float = FACE_MARGIN) -> tuple[int, int, int, int] | None:
    """The largest of the four strips (left, right, above, below) of a picture that keep clear of the face, as
    (x, y, w, h) in pixels, or None when none is ``MIN_REGION_SIDE`` pixels on its short side."""
    height, width = image_shape[:2]
    x, y, w, h = keypoint_box(keypoints)
    left, right = int(np.floor(x - margin * w)), int(np.ceil(x + w + margin * w))
    top, bottom = int(np.floor(y - margin * h)), int(np.ceil(y + h + margin * h))
    strips = [
        (0, 0, left, height),
        (right, 0, width - right, height),
        (0, 0, width, top),
        (0, bottom, width, height - bottom),
    ]
    strips = [s for s in strips if min(s[2], s[3]) >= MIN_REGION_SIDE]
    return max(strips, key=lambda s: s[2] * s[3]) if strips else None


def background_pictures(part: str, data_dir: str | os.PathLike | None = None, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """Background regions of the course pictures of a part (training pictures for "training", test pictures for
    "measuring"), as (name, RGB uint8), in the CSV's order; ``limit`` keeps the first ones."""
    _check_part(part)
    csv_file, root_dir = split_paths(resolve_data_dir(data_dir), PART_SPLITS[part])
    names, keypoints = read_keypoints_csv(csv_file)
    pictures = []
    for name, points in zip(names, keypoints):
        image = read_image(root_dir / name, as_stored=True)
        region = background_region(image.shape, points)
        if region is None:
            continue
        x, y, w, h = region
        pictures.append((f"background:{name}", np.ascontiguousarray(image[y : y + h, x : x + w])))
        if limit is not None and len(pictures) >= limit:
            break
    return pictures


def no_face_pictures(
    part: str, data_dir: str | os.PathLike | None = None, backgrounds: int | None = None, log: Callable[[str], None] | None = None
) -> list[tuple[str, np.ndarray]]:
    """Every picture of a part: the scikit-image pictures, then up to ``backgrounds`` background regions of the
    course pictures (None: all; 0: none, which needs no dataset)."""
    pictures = skimage_pictures(part)
    if backgrounds != 0:
        pictures += background_pictures(part, data_dir, backgrounds)
    if log:
        log(f"{len(pictures)} pictures without faces ({part})")
    return pictures


def random_boxes(shape: tuple[int, ...], count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` square boxes (x, y, w, h) inside a picture of ``shape``, sides log-uniform between MIN_BOX_SIDE
    and the picture's short side: where a detector could report a face."""
    height, width = shape[:2]
    largest = min(height, width)
    sides = np.exp(rng.uniform(np.log(min(MIN_BOX_SIDE, largest)), np.log(largest), size=count))
    xs, ys = rng.uniform(0, 1, size=count) * (width - sides), rng.uniform(0, 1, size=count) * (height - sides)
    return np.stack([xs, ys, sides, sides], axis=1).astype(np.float32)


def negative_crops(pictures: list[tuple[str, np.ndarray]], input_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Context crops (``data_load.cut_face_crops``) of random boxes on pictures without faces: BOXES_PER_SKIMAGE_PICTURE
    per scikit-image picture, BOXES_PER_BACKGROUND per background region. Their keypoints are zeros (no face)."""
    rng = np.random.default_rng(seed)
    grays, boxes, names = [], [], []
    for name, picture in pictures:
        count = BOXES_PER_SKIMAGE_PICTURE if name.startswith("skimage:") else BOXES_PER_BACKGROUND
        gray = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
        for box in random_boxes(gray.shape, count, rng):
            grays.append(gray)
            boxes.append(box)
            names.append(name)
    keypoints = np.zeros((len(names), 68, 2), np.float32)
    return cut_face_crops(grays.__getitem__, keypoints, names, input_size, np.array(boxes))


def load_negative_crops(part: str, input_size: int, data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """``negative_crops`` of every picture of a part (``no_face_pictures``), cached in ``.cache/`` and rebuilt
    when the course's CSV of that part changes."""
    _check_part(part)
    csv_file = split_paths(resolve_data_dir(data_dir), PART_SPLITS[part])[0]
    stat = csv_file.stat()
    key = f"{part}|{csv_file.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|{SKIMAGE_PARTS[part]}|{BOXES_PER_SKIMAGE_PICTURE}|{BOXES_PER_BACKGROUND}|{MIN_BOX_SIDE}|{FACE_MARGIN}|{MIN_REGION_SIDE}"
    cache_file = crop_cache_file(f"noface-{part}", input_size, key, cache_dir)
    return cached_crops(cache_file, lambda: negative_crops(no_face_pictures(part, data_dir), input_size))
