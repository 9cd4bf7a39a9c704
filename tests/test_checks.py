"""Tests for checks: each check passes on the solutions and catches the usual mistakes with a message that says
what is wrong (stubs are covered in test_release.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn

import checks
import data_load
import filters
import models
import train


def expect_failure(check, *args, match: str) -> None:
    with pytest.raises(AssertionError, match=match):
        check(*args)


def test_checks_pass_on_the_solutions(capsys):
    checks.check_course_transforms()
    checks.check_net()
    checks.check_train_one_epoch()
    checks.check_placement()
    checks.check_course_config(train.PRESETS["course"])
    from torchvision.transforms import Compose

    pipeline = Compose([data_load.Rescale(250), data_load.RandomCrop(224), data_load.Normalize(), data_load.ToTensor()])
    checks.check_transform_pipeline(pipeline)
    printed = capsys.readouterr().out
    assert printed.count(checks.PASS) >= 14 and "the loss falls on a tiny batch" in printed


def test_implemented_turns_stubs_and_errors_into_assertions():
    with pytest.raises(AssertionError, match=r"^Net is not implemented yet: fill in the TODO in models.py, then run this cell again.$"):
        with checks.implemented("Net", "models.py"):
            raise NotImplementedError("Net.__init__ in models.py: see the TODO above")
    with pytest.raises(AssertionError, match="Net raised RuntimeError: shapes do not match") as caught:
        with checks.implemented("Net", "models.py"):
            raise RuntimeError("shapes do not match")
    assert isinstance(caught.value.__cause__, RuntimeError), "the original error stays attached for its traceback"


# ---------------------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------------------
def test_rescale_that_forgets_the_keypoints_is_caught(monkeypatch):
    original = data_load.Rescale.__call__

    def image_only(self, sample):
        return {**original(self, sample), "keypoints": sample["keypoints"]}

    monkeypatch.setattr(data_load.Rescale, "__call__", image_only)
    expect_failure(checks.check_course_transforms, match="moves the keypoints .* px away from their pixels")


def test_rescale_that_swaps_height_and_width_is_caught(monkeypatch):
    original = data_load.Rescale.__call__

    def swapped(self, sample):
        size = self.output_size if isinstance(self.output_size, int) else self.output_size[::-1]
        return original(data_load.Rescale(size), sample)

    monkeypatch.setattr(data_load.Rescale, "__call__", swapped)
    expect_failure(checks.check_course_transforms, match=r"exactly 80 x 120 \(height, width\), got \(120, 80\)")


def test_crop_that_forgets_the_keypoints_is_caught(monkeypatch):
    original = data_load.RandomCrop.__call__
    monkeypatch.setattr(data_load.RandomCrop, "__call__", lambda self, sample: {**original(self, sample), "keypoints": sample["keypoints"]})
    expect_failure(checks.check_course_transforms, match="subtract the window's left edge from x")


def test_crop_that_is_not_random_is_caught(monkeypatch):
    def top_left(self, sample):
        new_h, new_w = self.output_size
        return {**sample, "image": sample["image"][:new_h, :new_w], "keypoints": sample["keypoints"]}

    monkeypatch.setattr(data_load.RandomCrop, "__call__", top_left)
    expect_failure(checks.check_course_transforms, match="always cuts the same window")


def test_normalize_without_scaling_is_caught(monkeypatch):
    original = data_load.Normalize.__call__
    monkeypatch.setattr(data_load.Normalize, "__call__", lambda self, sample: {**original(self, sample), "image": original(self, sample)["image"] * 255})
    expect_failure(checks.check_course_transforms, match=r"float32 values in \[0, 1\].*divide by 255")


def test_pipeline_without_normalize_is_caught():
    from torchvision.transforms import Compose

    no_normalize = Compose([data_load.Rescale(250), data_load.RandomCrop(224), data_load.ToTensor()])
    expect_failure(checks.check_transform_pipeline, no_normalize, match=r"must be a 1 x 224 x 224 tensor, got \(3, 224, 224\)")


# ---------------------------------------------------------------------------------------------------------
# Net and the training step
# ---------------------------------------------------------------------------------------------------------
class WrongOutputs(models.Net):
    def __init__(self, num_keypoints: int = 68) -> None:
        super().__init__(num_keypoints)
        self.head[-1] = nn.Linear(512, 100)


class UnusedLayer(models.Net):
    def __init__(self, num_keypoints: int = 68) -> None:
        super().__init__(num_keypoints)
        self.extra = nn.Linear(3, 3)


def test_net_with_the_wrong_output_size_is_caught():
    expect_failure(checks.check_net, WrongOutputs, match=r"Net should output \(N, 136\), got \(2, 100\): check the last Linear layer")


def test_net_with_an_unused_layer_is_caught():
    expect_failure(checks.check_net, UnusedLayer, match="no gradient reaches extra.weight, extra.bias")


def test_net_without_convolutions_is_caught():
    class Dense(nn.Module):
        def __init__(self, num_keypoints: int = 68) -> None:
            super().__init__()
            self.layers = nn.Sequential(nn.Flatten(), nn.Linear(224 * 224, 2 * num_keypoints))

        def forward(self, x):
            return self.layers(x)

    expect_failure(checks.check_net, Dense, match="Net has no nn.Conv2d layer")


def step_without(*left_out: str):
    """A training epoch that leaves out some of zero_grad, backward and step."""

    def epoch(model, loader, loss_fn, optimizer, schedule, device, progress):
        model.train()
        total = 0.0
        for batch in loader:
            if "zero_grad" not in left_out:
                optimizer.zero_grad()
            loss = loss_fn(model(batch["image"]), batch["keypoints"].flatten(1))
            if "backward" not in left_out:
                loss.backward()
            if "step" not in left_out:
                optimizer.step()
            total += loss.item()
        return total / len(loader)

    return epoch


@pytest.mark.parametrize(
    "left_out, match",
    [(("zero_grad",), "call optimizer.zero_grad\\(\\) before loss.backward\\(\\)"),
     (("step",), "the weights did not change"),
     (("backward",), "the weights did not change")],
)
def test_training_steps_with_a_missing_call_are_caught(left_out, match):
    expect_failure(checks.check_train_one_epoch, step_without(*left_out), match=match)


def test_a_training_step_on_the_wrong_target_is_caught():
    def unflattened(model, loader, loss_fn, optimizer, schedule, device, progress):
        for batch in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(batch["image"]), torch.zeros(len(batch["image"]), 136))
            loss.backward()
            optimizer.step()
        return loss.item()

    expect_failure(checks.check_train_one_epoch, unflattened, match="the loss should be loss_fn\\(model\\(images\\), target\\)")


def test_config_for_another_model_is_caught():
    expect_failure(checks.check_course_config, train.PRESETS["cpu"], match="model='net', not 'fast'")
    expect_failure(checks.check_course_config, dataclasses.replace(train.PRESETS["course"], lr=3.0), match="far outside")


# ---------------------------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------------------------
def test_placement_with_anchors_and_targets_swapped_is_caught(monkeypatch):
    def swapped(name, keypoints):
        art = filters.load_artwork(name)
        return filters.similarity_transform(art.target_points(np.asarray(keypoints)), art.anchors)

    monkeypatch.setattr(filters, "placement_transform", swapped)
    expect_failure(checks.check_placement, match="land up to .* px from their keypoints")


def test_placement_that_stretches_is_caught(monkeypatch):
    def affine(name, keypoints):
        import cv2

        art = filters.load_artwork(name)
        matrix, _ = cv2.estimateAffine2D(art.anchors, art.target_points(np.asarray(keypoints)))
        return matrix * [[1.1, 1, 1], [1, 1, 1]]

    monkeypatch.setattr(filters, "placement_transform", affine)
    expect_failure(checks.check_placement, match="is not a similarity")


def test_target_points_of_the_first_keypoint_only_is_caught(monkeypatch):
    monkeypatch.setattr(filters.Artwork, "target_points", lambda self, keypoints: np.array([keypoints[group[0]] for group in self.targets]))
    expect_failure(checks.check_placement, match="the mean of the keypoints of its group")
