"""The pictures without faces: two parts that never share a picture, and background regions clear of the face."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline import no_faces


def test_parts_share_no_picture_and_hold_no_person():
    training, measuring = (set(no_faces.SKIMAGE_PARTS[p]) for p in ("training", "measuring"))
    assert not training & measuring
    assert not (training | measuring) & {"astronaut", "camera", "lfw_subset"}


def test_skimage_pictures_are_rgb_uint8():
    pictures = no_faces.skimage_pictures("measuring")
    assert len(pictures) == len(no_faces.SKIMAGE_PARTS["measuring"])
    for name, image in pictures:
        assert name.startswith("skimage:") and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_background_region_keeps_clear_of_the_face():
    keypoints = np.array([[100.0, 50.0], [200.0, 150.0]])  # box x 100-200, y 50-150
    x, y, w, h = no_faces.background_region((300, 400, 3), keypoints)
    # the face grown by 25 % spans x 75-225: the widest clear strip is the right one, x 225-400
    assert (x, y, w, h) == (225, 0, 175, 300)
    # a face at x 80-180, y 50-150 in a 260 x 190 picture leaves strips of 55, 55, 25 and 15 px: none is used
    assert no_faces.background_region((190, 260, 3), np.array([[80.0, 50.0], [180.0, 150.0]])) is None


def test_unknown_part_is_refused():
    with pytest.raises(ValueError, match="training"):
        no_faces.no_face_pictures("validation", backgrounds=0)


def test_background_pictures_come_from_the_part_split(tiny_dataset):
    pictures = no_faces.background_pictures("measuring", tiny_dataset)
    assert all(name.startswith("background:") for name, _ in pictures)
    assert all(min(image.shape[:2]) >= no_faces.MIN_REGION_SIDE for _, image in pictures)
