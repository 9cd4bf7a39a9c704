"""Tests for checks: each check passes on the solutions and catches the usual mistakes with a message that says
what is wrong (stubs are covered in test_release.py)."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from course import checks
import data_load
import filters
import models
from pipeline import training

# The solutions, before a test replaces them with a mistake.
ORIGINAL = {"Rescale": data_load.Rescale.__call__, "Normalize": data_load.Normalize.__call__}


def expect_failure(check, *args, match: str) -> None:
    with pytest.raises(AssertionError, match=match):
        check(*args)


def test_checks_pass_on_the_solutions(capsys):
    checks.check_course_transforms()
    checks.check_net()
    checks.check_train_one_epoch()
    checks.check_placement()
    checks.check_course_config(training.PRESETS["course"])
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


def test_rescale_right_only_for_portrait_pictures_is_caught(monkeypatch):
    # The shorter side taken to be the width whatever the picture: right for portrait pictures only.
    def portrait_only(self, sample):
        if not isinstance(self.output_size, int):
            return ORIGINAL["Rescale"](self, sample)
        h, w = sample["image"].shape[:2]
        return ORIGINAL["Rescale"](data_load.Rescale((round(self.output_size * h / w), self.output_size)), sample)

    monkeypatch.setattr(data_load.Rescale, "__call__", portrait_only)
    expect_failure(checks.check_course_transforms, match=r"a landscape \(wider than tall\) picture of 150 x 170 should become about 100 x 113")


def normalize_with(monkeypatch, **changes) -> None:
    """Replace the image or keypoints of Normalize's output by functions of the input sample."""
    def changed(self, sample):
        out = ORIGINAL["Normalize"](self, sample)
        return {**out, **{key: change(sample, out) for key, change in changes.items()}}

    monkeypatch.setattr(data_load.Normalize, "__call__", changed)


@pytest.mark.parametrize("image, match", [
    (lambda sample, out: out["image"] * 255, r"values in \[0, 1\], got 33.00 to 177.00: divide the gray levels by 255"),
    (lambda sample, out: out["image"].astype(np.float64), "got float64: convert with .astype\\(np.float32\\)"),
    (lambda sample, out: cv2.cvtColor(sample["image"], cv2.COLOR_BGR2GRAY).astype(np.float32) / 255,
     "swaps red and blue: .* convert with cv2.COLOR_RGB2GRAY, not COLOR_BGR2GRAY"),
    (lambda sample, out: sample["image"].astype(np.float32) / 255, r"got shape \(170, 150, 3\): convert with cv2.cvtColor"),
    (lambda sample, out: out["image"][:, :, None], r"2-D gray image of 170 x 150, got shape \(170, 150, 1\): drop the channel axis"),
    (lambda sample, out: 1 - out["image"], r"Normalize changes the picture .*cv2.cvtColor\(image, cv2.COLOR_RGB2GRAY\) / 255"),
])
def test_normalize_image_mistakes_are_caught_with_their_fix(monkeypatch, image, match):
    normalize_with(monkeypatch, image=image)
    expect_failure(checks.check_course_transforms, match=match)


@pytest.mark.parametrize("keypoints, match", [
    (lambda sample, out: sample["keypoints"], "yours leaves the keypoints in pixels"),
    (lambda sample, out: (sample["keypoints"] - 100) / 50, r"yours uses the fixed \(x - 100\) / 50"),
    (lambda sample, out: sample["keypoints"] / [150, 170], r"yours maps the keypoints to \[0, 1\]"),
    (lambda sample, out: (sample["keypoints"] - [75, 85]) / [150, 170], "yours divides by the whole size"),
    (lambda sample, out: (sample["keypoints"] - [85, 75]) / [85, 75], "yours swaps width and height"),
    (lambda sample, out: out["keypoints"] * 1.1, r"to \[-1, 1\] around the image centre: \(x - w/2\) / \(w/2\)"),
])
def test_normalize_keypoint_mistakes_are_caught_with_their_fix(monkeypatch, keypoints, match):
    normalize_with(monkeypatch, keypoints=keypoints)
    expect_failure(checks.check_course_transforms, match=match)


def test_pipeline_without_normalize_is_caught():
    from torchvision.transforms import Compose

    no_normalize = Compose([data_load.Rescale(250), data_load.RandomCrop(224), data_load.ToTensor()])
    expect_failure(checks.check_transform_pipeline, no_normalize, match=r"\(Rescale, RandomCrop, ToTensor\) has no Normalize: add")


@pytest.mark.parametrize("early", ["Rescale", "RandomCrop"])
def test_pipeline_with_normalize_before_a_crop_or_rescale_is_caught(early):
    from torchvision.transforms import Compose

    steps = {"Rescale": data_load.Rescale(250), "RandomCrop": data_load.RandomCrop(224)}
    order = [steps["Rescale"], data_load.Normalize(), steps["RandomCrop"], data_load.ToTensor()] if early == "RandomCrop" else [
        data_load.Normalize(), steps["Rescale"], steps["RandomCrop"], data_load.ToTensor()]
    expect_failure(checks.check_transform_pipeline, Compose(order), match=f"Normalize comes before {early} .*: put it after Rescale and RandomCrop")


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


class ColourInput(models.Net):
    def __init__(self, num_keypoints: int = 68) -> None:
        super().__init__(num_keypoints)
        first = self.features[0]
        self.features[0] = nn.Conv2d(3, first.out_channels, first.kernel_size, first.stride, first.padding)


class ReluOutput(models.Net):
    def forward(self, x):
        return torch.relu(super().forward(x))


class Unflattened(models.Net):
    def forward(self, x):
        return self.head[1:](self.features(x))  # the head's nn.Flatten left out


def test_net_whose_first_convolution_takes_colour_is_caught():
    expect_failure(checks.check_net, ColourInput, match=r"the first convolution should take 1 \(gray\) channel, not 3")


def test_net_with_an_activation_after_the_last_layer_is_caught():
    expect_failure(checks.check_net, ReluOutput, match="all have the same sign: .* no activation")


def test_net_without_flattening_is_told_to_flatten():
    expect_failure(checks.check_net, Unflattened, match=r"cannot be multiplied.*: flatten the feature maps with x.view\(x.size\(0\), -1\)")


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
     (("step",), "optimizer.step\\(\\) is never called .*: call it after loss.backward\\(\\)"),
     (("backward",), "loss.backward\\(\\) is never called")],
)
def test_training_steps_with_a_missing_call_are_caught(left_out, match):
    expect_failure(checks.check_train_one_epoch, step_without(*left_out), match=match)


def step_in_order(*calls: str, steps: int = 1):
    """A training epoch that calls zero_grad, backward and step in the given order (step ``steps`` times)."""

    def epoch(model, loader, loss_fn, optimizer, schedule, device, progress):
        model.train()
        total = 0.0
        for batch in loader:
            loss = loss_fn(model(batch["image"]), batch["keypoints"].flatten(1))
            for call in calls:
                if call == "zero_grad":
                    optimizer.zero_grad()
                elif call == "backward":
                    loss.backward()
                else:
                    for _ in range(steps):
                        optimizer.step()
            total += loss.item()
        return total / len(loader)

    return epoch


def test_zero_grad_between_backward_and_step_is_told_the_order():
    expect_failure(checks.check_train_one_epoch, step_in_order("backward", "zero_grad", "step"),
                   match=r"optimizer.zero_grad\(\) comes between loss.backward\(\) and optimizer.step\(\) \(backward -> zero_grad -> step\)")


def test_two_optimizer_steps_per_batch_are_caught():
    expect_failure(checks.check_train_one_epoch, step_in_order("zero_grad", "backward", "step", steps=2),
                   match="not by one optimizer step on this batch's loss: .* once per batch")


def test_a_loss_returned_as_a_tensor_is_told_to_use_item():
    def tensor_loss(model, loader, loss_fn, optimizer, schedule, device, progress):
        step_in_order("zero_grad", "backward", "step")(model, loader, loss_fn, optimizer, schedule, device, progress)
        return torch.tensor(0.5)

    expect_failure(checks.check_train_one_epoch, tensor_loss, match=r"as a number \(loss.item\(\)\), got Tensor")


def test_the_right_order_passes_whichever_zero_grad_is_used():
    checks.check_train_one_epoch(step_in_order("zero_grad", "backward", "step"))


def test_a_training_step_on_the_wrong_target_is_caught():
    def unflattened(model, loader, loss_fn, optimizer, schedule, device, progress):
        for batch in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(batch["image"]), torch.zeros(len(batch["image"]), 136))
            loss.backward()
            optimizer.step()
        return loss.item()

    expect_failure(checks.check_train_one_epoch, unflattened, match="the loss should be loss_fn\\(model\\(images\\), target\\)")


def test_config_with_an_unknown_name_set_after_creation_is_caught():
    config = dataclasses.replace(training.PRESETS["course"])
    config.optimizer = "sgd"
    expect_failure(checks.check_course_config, config, match="unknown optimizer 'sgd': choose one of 'adamw', 'adam'")


def test_config_for_another_model_is_caught():
    expect_failure(checks.check_course_config, training.PRESETS["cpu"], match="model='net', not 'fast'")
    expect_failure(checks.check_course_config, dataclasses.replace(training.PRESETS["course"], lr=3.0), match="far outside")


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


# ---------------------------------------------------------------------------------------------------------
# The clown's nose of notebook 4 (its solution lives in the notebook: this is the same code)
# ---------------------------------------------------------------------------------------------------------
def clown_nose_picture(size: int = 120) -> np.ndarray:
    picture = np.zeros((size, size, 4), np.uint8)
    centre, radius = size // 2, size // 2 - 4
    cv2.circle(picture, (centre, centre), radius, (215, 25, 35, 255), -1, cv2.LINE_AA)
    cv2.circle(picture, (centre - radius // 3, centre - radius // 3), radius // 4, (255, 190, 190, 255), -1, cv2.LINE_AA)
    return picture


def clown_nose_with(width: float = 1.5, inset: float = 4.0, turned: bool = True, swapped: bool = False, shift=(0.0, 0.0)):
    """The notebook's clown_nose, or one of the usual mistakes in it."""

    def clown_nose(image, keypoints):
        picture = clown_nose_picture()
        size = picture.shape[0]
        anchors = np.array([[inset, size / 2], [size - inset, size / 2]])
        span = keypoints[35] - keypoints[31]
        if not turned:
            span = np.array([np.hypot(*span), 0.0])
        half = width / 2 * span
        targets = np.array([keypoints[30] - half, keypoints[30] + half]) + shift
        return filters.place_artwork(image, picture, anchors, targets[::-1] if swapped else targets)

    return clown_nose


def test_clown_nose_check_passes_on_the_solution(capsys):
    checks.check_clown_nose(clown_nose_with())
    assert "turns it with the face" in capsys.readouterr().out


@pytest.mark.parametrize("mistake, match", [
    (dict(width=1.0), r"the nose is 44 px wide, it should be 1.5 times the nostrils' span \(66 px\)"),
    (dict(inset=0.0), r"the nose is 62 px wide, it should be 1.5 times"),
    (dict(turned=False), "turned -25 degrees from the face rolled 25 degrees: put the targets along the direction from point 31 to point 35"),
    (dict(swapped=True), "upside down"),
    (dict(shift=(6.0, 0.0)), "6 px from the nose tip .*: centre the targets on point 30"),
])
def test_clown_nose_mistakes_are_caught_with_their_fix(mistake, match):
    expect_failure(checks.check_clown_nose, clown_nose_with(**mistake), match=match)


def test_clown_nose_that_paints_elsewhere_or_returns_nothing_is_caught():
    def also_a_corner(image, keypoints):
        out = clown_nose_with()(image, keypoints)
        out[:5, :5] = 0
        return out

    expect_failure(checks.check_clown_nose, also_a_corner, match="leave the rest of the picture alone")
    expect_failure(checks.check_clown_nose, lambda image, keypoints: None, match="returns a new RGB uint8 image")
    expect_failure(checks.check_clown_nose, lambda image, keypoints: image, match="draws nothing on the face")
