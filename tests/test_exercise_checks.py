"""Tests for the checks of the exercises where students choose and write more themselves: the training choice
of notebook 2 (the loss falls on a small batch), the edge filter with cv2.filter2D, and notebook 3's way from a
picture to keypoints. Each check passes on a right answer and names the fix for each common mistake."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from course import checks
import data_load
from pipeline import detect_cli
from pipeline import inference
from pipeline import training
from pipeline.keypoint_pipeline import KeypointPipeline


# ---------------------------------------------------------------------------------------------------------
# Notebook 2: the loss and the optimizer
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def four_faces() -> dict:
    """Four cartoon faces, rolled differently, as the network's 224 px inputs."""
    transform = data_load.FaceCrop(224)
    samples = []
    for roll in (-10, 0, 8, 15):
        face = checks._face_sample(300, 340, roll)
        samples.append(data_load.ToTensor()(data_load.Normalize()(transform(face))))
    return data_load.collate_samples(samples)


def test_a_sensible_choice_learns_the_small_batch(four_faces, capsys):
    config = training.TrainConfig(model="net", lr=1e-3, optimizer="adam", schedule="plateau", loss="smoothl1")
    checks.check_config_learns(config, four_faces)
    assert "learns a small batch" in capsys.readouterr().out


def test_a_learning_rate_far_too_small_is_caught_with_the_fix(four_faces):
    config = training.TrainConfig(model="net", lr=1e-9, optimizer="adam", schedule="plateau", loss="mse")
    with pytest.raises(AssertionError, match="should fall clearly: try another learning rate"):
        checks.check_config_learns(config, four_faces)


def test_the_batch_is_resized_to_the_chosen_model(four_faces, capsys):
    config = training.TrainConfig(model="fast", lr=3e-3, optimizer="adamw", schedule="onecycle", loss="mse")
    checks.check_config_learns(config, four_faces)
    assert "adamw" in capsys.readouterr().out


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
# Notebook 3: from a picture to keypoints
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipe() -> KeypointPipeline:
    return KeypointPipeline.from_pretrained(backend="torch", threads=1)


def by_hand(pipe: KeypointPipeline, map_back: bool = True, scale: float = data_load.CROP_SCALE):
    def keypoints_by_hand(picture: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
        crops, matrices = [], []
        for detection in pipe.thorough_detector.detect(picture):
            matrix = data_load.crop_matrix(*data_load.crop_square_from_box(detection.box, scale=scale), pipe.input_size)
            crops.append(data_load.warp(gray, matrix, pipe.input_size).astype(np.float32) / 255)
            matrices.append(matrix)
        points = inference.predict_crops(pipe.runner, np.stack(crops), convention=pipe.convention)
        if not map_back:
            return points
        return np.stack([data_load.transform_points(p, data_load.invert_matrix(m)) for p, m in zip(points, matrices)])

    return keypoints_by_hand


def test_the_loop_from_detection_to_keypoints_matches_the_pipeline(pipe, capsys):
    checks.check_keypoints_by_hand(by_hand(pipe), pipe, {"astronaut": detect_cli.astronaut()})
    assert "astronaut: 1 face(s), keypoints within" in capsys.readouterr().out


def test_keypoints_left_in_crop_pixels_are_named(pipe):
    with pytest.raises(AssertionError, match="still in crop pixels"):
        checks.check_keypoints_by_hand(by_hand(pipe, map_back=False), pipe, {"astronaut": detect_cli.astronaut()})


def test_a_crop_framed_unlike_training_is_caught(pipe):
    with pytest.raises(AssertionError, match="px from the pipeline's: cut the crop from"):
        checks.check_keypoints_by_hand(by_hand(pipe, scale=1.2), pipe, {"astronaut": detect_cli.astronaut()})


def test_one_array_per_face_is_asked_for(pipe):
    with pytest.raises(AssertionError, match=r"should return shape \(1, 68, 2\)"):
        checks.check_keypoints_by_hand(lambda picture: by_hand(pipe)(picture)[0], pipe, {"astronaut": detect_cli.astronaut()})


def test_a_stub_says_what_to_fill_in(pipe):
    def stub(picture):
        raise NotImplementedError("write keypoints_by_hand: see the TODO above")

    with pytest.raises(AssertionError, match="keypoints_by_hand is not implemented yet: fill in the TODO in the cell above"):
        checks.check_keypoints_by_hand(stub, dataclasses.replace(pipe), {"astronaut": detect_cli.astronaut()})

