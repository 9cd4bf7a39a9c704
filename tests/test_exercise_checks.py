"""Tests for the checks of the exercises where students choose and write more themselves: the edge filter with
cv2.filter2D (notebook 2), and notebook 3's way from a face box to keypoints. Each check passes on a right answer
and names the fix for each common mistake."""
from __future__ import annotations

from pathlib import Path

import cv2
import nbformat
import numpy as np
import pytest
import torch

from course import checks
import data_load
from detector_architectures import THOROUGH_PARAMS, HaarFaceDetector
from pipeline import detect_cli


# ---------------------------------------------------------------------------------------------------------
# Notebook 2: the edge filter
# ---------------------------------------------------------------------------------------------------------
SOBEL_Y = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float32)


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    return cv2.cvtColor(checks._face_sample()["image"], cv2.COLOR_RGB2GRAY).astype(np.float32) / 255


def test_a_horizontal_edge_filter_applied_with_filter2d_passes(gray, capsys):
    checks.check_edge_filter(SOBEL_Y, cv2.filter2D(gray, -1, SOBEL_Y), gray)
    checks.check_edge_filter(-SOBEL_Y, cv2.filter2D(gray, -1, -SOBEL_Y), gray)  # bright above dark: also an edge filter
    assert capsys.readouterr().out.count("\N{CHECK MARK}") == 4


@pytest.mark.parametrize(
    "kernel, message",
    [
        (np.ones((3, 3), np.float32), "sum to 9.000, so a flat area gives a response: make them sum to 0"),
        (SOBEL_Y.T.copy(), "responds as much to a vertical edge"),
        (np.zeros((3, 3), np.float32), "all zeros"),
        (np.ones((2, 2), np.float32), "odd side"),
    ],
)
def test_a_kernel_that_is_no_horizontal_edge_filter_is_named(gray, kernel, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_edge_filter(kernel, cv2.filter2D(gray, -1, kernel), gray)


def test_a_response_that_is_not_filter2d_of_the_float_face_is_caught(gray):
    clipped = cv2.filter2D((gray * 255).astype(np.uint8), -1, SOBEL_Y).astype(np.float32) / 255  # negatives cut to 0
    with pytest.raises(AssertionError, match="uint8 would cut negative responses to 0"):
        checks.check_edge_filter(SOBEL_Y, clipped, gray)
    with pytest.raises(AssertionError, match="should have the face's shape"):
        checks.check_edge_filter(SOBEL_Y, cv2.filter2D(gray, -1, SOBEL_Y)[1:], gray)


# ---------------------------------------------------------------------------------------------------------
# Notebook 3: from a box to keypoints, by hand
# ---------------------------------------------------------------------------------------------------------
NOTEBOOK_3 = Path(__file__).resolve().parents[1] / "3_Facial_Keypoint_Detection_Complete_Pipeline.ipynb"


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, list]:
    photo = detect_cli.astronaut()
    return photo, [d.box for d in HaarFaceDetector(**THOROUGH_PARAMS).detect(photo)]


def by_hand(eval_mode: bool = True, no_grad: bool = True, map_back: bool = True, denormalize: bool = True, scale: float = data_load.CROP_SCALE,
            channels_last: bool = False):
    """The notebook's way from boxes to keypoints, or one of the usual mistakes in it."""

    def keypoints_from_boxes(picture, boxes, model):
        size = model.input_size
        gray = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
        crops, matrices = [], []
        for box in boxes:
            matrix = data_load.crop_matrix(*data_load.crop_square_from_box(box, scale=scale), size)
            crops.append(data_load.warp(gray, matrix, size).astype(np.float32) / 255)
            matrices.append(matrix)
        if not crops:
            return np.zeros((0, 68, 2), np.float32)
        batch = torch.from_numpy(np.stack(crops)[..., None] if channels_last else np.stack(crops)[:, None])
        if eval_mode:
            model.eval()
        with torch.no_grad() if no_grad else torch.enable_grad():
            output = model(batch).detach().numpy()
        points = data_load.denormalize_keypoints(output, size) if denormalize else output.reshape(-1, 68, 2)
        if not map_back:
            return points
        return np.stack([data_load.transform_points(p, data_load.invert_matrix(m)) for p, m in zip(points, matrices)])

    return keypoints_from_boxes


def test_the_notebooks_solution_is_the_one_tested_here():
    cell = next(c for c in nbformat.read(NOTEBOOK_3, as_version=4).cells if c.metadata.get("nbgrader", {}).get("grade_id") == "keypoints-from-boxes")
    namespace = {"np": np, "data_load": data_load}
    exec(cell.source, namespace)
    photo = detect_cli.astronaut()
    boxes = [d.box for d in HaarFaceDetector(**THOROUGH_PARAMS).detect(photo)]
    model = checks._check_models()[0][1]
    assert np.allclose(namespace["keypoints_from_boxes"](photo, boxes, model), by_hand()(photo, boxes, model), atol=1e-4)


def test_the_way_from_boxes_to_keypoints_matches_the_pipeline(astronaut, capsys):
    checks.check_keypoints_from_boxes(by_hand(), *astronaut)
    printed = capsys.readouterr().out
    assert "the course model (112 px): 2 boxes, keypoints within" in printed and "a small model of 64 px" in printed


@pytest.mark.parametrize("mistake, match", [
    (dict(eval_mode=False), r"call model.eval\(\) first"),
    (dict(no_grad=False), r"predict inside torch.no_grad\(\)"),
    (dict(map_back=False), "still in the pixels of the 112 px crop: map them back to the picture"),
    (dict(denormalize=False, map_back=False), r"still normalised to \[-1, 1\]: un-normalise them"),
    (dict(scale=1.2), "px from the pipeline's for the same boxes: check each step"),
    (dict(channels_last=True), "keypoints_from_boxes raised RuntimeError"),
])
def test_the_usual_mistakes_are_named(astronaut, mistake, match):
    with pytest.raises(AssertionError, match=match):
        checks.check_keypoints_from_boxes(by_hand(**mistake), *astronaut)


def test_one_array_per_box_and_an_empty_one_for_no_box_are_asked_for(astronaut):
    with pytest.raises(AssertionError, match=r"should return shape \(2, 68, 2\) \(one \(68, 2\) array of \(x, y\) per box\), got \(1, 68, 2\)"):
        checks.check_keypoints_from_boxes(lambda picture, boxes, model: by_hand()(picture, boxes, model)[:1], *astronaut)

    def no_empty(picture, boxes, model):
        return by_hand()(picture, boxes, model) if boxes else np.zeros((0,))

    with pytest.raises(AssertionError, match=r"with no box, keypoints_from_boxes should return shape \(0, 68, 2\)"):
        checks.check_keypoints_from_boxes(no_empty, *astronaut)


def test_a_stub_says_what_to_fill_in(astronaut):
    def stub(picture, boxes, model):
        raise NotImplementedError("write keypoints_from_boxes: see the TODO above")

    with pytest.raises(AssertionError, match="keypoints_from_boxes is not implemented yet: fill in the TODO in the cell above"):
        checks.check_keypoints_from_boxes(stub, *astronaut)
