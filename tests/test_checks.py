"""Tests for checks: each check passes on the solutions and catches the usual mistakes with a message that says
what is wrong (stubs are covered in test_release.py). The notebooks' own solutions (the training functions of
notebook 2) are read from the notebooks, as course.expected reads them."""
from __future__ import annotations


import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from course import checks
from course.expected import notebook_solutions
import data_load
import filters
import models

# The solutions, before a test replaces them with a mistake.
ORIGINAL = {"Rescale": data_load.Rescale.__call__, "Normalize": data_load.Normalize.__call__, "CenterCrop": data_load.CenterCrop.__call__}
SOLUTIONS = notebook_solutions()
train_one_epoch, validate = SOLUTIONS["train_one_epoch"], SOLUTIONS["validate"]


def expect_failure(check, *args, match: str) -> None:
    with pytest.raises(AssertionError, match=match):
        check(*args)


def test_checks_pass_on_the_solutions(capsys):
    sample = checks._face_sample(300, 340)
    checks.check_rescale(sample)
    checks.check_random_crop(sample)
    checks.check_center_crop(sample)
    checks.check_normalize(sample)
    checks.check_transforms(112)
    checks.check_transforms(96)
    checks.check_net()
    checks.check_train_one_epoch(train_one_epoch)
    checks.check_validate(validate)
    checks.check_placement()
    printed = capsys.readouterr().out
    assert printed.count(checks.PASS) == 16 and "one step per batch from fresh gradients" in printed


def test_implemented_turns_stubs_and_errors_into_assertions():
    with pytest.raises(AssertionError, match=r"^Net is not implemented yet: fill in the TODO in models.py, then run this cell again.$"):
        with checks.implemented("Net", "models.py"):
            raise NotImplementedError("Net.__init__ in models.py: see the TODO above")
    with pytest.raises(AssertionError, match="Net raised RuntimeError: shapes do not match") as caught:
        with checks.implemented("Net", "models.py"):
            raise RuntimeError("shapes do not match")
    assert isinstance(caught.value.__cause__, RuntimeError), "the original error stays attached for its traceback"


def test_the_checks_hold_no_solution_only_stored_answers():
    # What the checks once computed themselves, each the answer to a TODO: the targets of the artwork, the gray
    # values and normalised keypoints of Normalize, one exact training step.
    source = open(checks.__file__, encoding="utf-8").read()
    for answer in ("keypoints[list(group)].mean(axis=0)", "RGB_TO_GRAY", "0.587", "(pixels - [w / 2, h / 2]) / [w / 2, h / 2]",
                   "reference_loss", "- 0.1 * r.grad"):
        assert answer not in source, answer
    assert checks.expected("normalize/image").shape == checks.stored_sample("sample")["image"].shape[:2]


# ---------------------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------------------
def test_rescale_that_forgets_the_keypoints_is_caught(monkeypatch):
    def image_only(self, sample):
        return {**ORIGINAL["Rescale"](self, sample), "keypoints": sample["keypoints"]}

    monkeypatch.setattr(data_load.Rescale, "__call__", image_only)
    expect_failure(checks.check_rescale, match="moves the keypoints .* px away from their pixels")


def test_rescale_that_swaps_height_and_width_is_caught(monkeypatch):
    def swapped(self, sample):
        size = self.output_size if isinstance(self.output_size, int) else self.output_size[::-1]
        return ORIGINAL["Rescale"](data_load.Rescale(size), sample)

    monkeypatch.setattr(data_load.Rescale, "__call__", swapped)
    expect_failure(checks.check_rescale, match=r"exactly 80 x 120 \(height, width\), got \(120, 80\)")


def test_rescale_without_the_half_pixel_shift_is_caught(monkeypatch):
    def corner_convention(self, sample):
        out = ORIGINAL["Rescale"](self, sample)
        h, w = sample["image"].shape[:2]
        new_h, new_w = out["image"].shape[:2]
        return {**out, "keypoints": sample["keypoints"] * np.array([new_w / w, new_h / h], np.float32)}

    monkeypatch.setattr(data_load.Rescale, "__call__", corner_convention)
    expect_failure(checks.check_rescale, match=r"x_new = \(x \+ 0.5\) \* new_w / w - 0.5")


def test_rescale_right_only_for_portrait_pictures_is_caught(monkeypatch):
    # The shorter side taken to be the width whatever the picture: right for portrait pictures only.
    def portrait_only(self, sample):
        if not isinstance(self.output_size, int):
            return ORIGINAL["Rescale"](self, sample)
        h, w = sample["image"].shape[:2]
        return ORIGINAL["Rescale"](data_load.Rescale((round(self.output_size * h / w), self.output_size)), sample)

    monkeypatch.setattr(data_load.Rescale, "__call__", portrait_only)
    expect_failure(checks.check_rescale, match=r"a landscape \(wider than tall\) picture of 150 x 170 should become 100 x 113")


def test_crop_that_forgets_the_keypoints_is_caught(monkeypatch):
    original = data_load.RandomCrop.__call__
    monkeypatch.setattr(data_load.RandomCrop, "__call__", lambda self, sample: {**original(self, sample), "keypoints": sample["keypoints"]})
    expect_failure(checks.check_random_crop, match="subtract the window's left edge from x")


def test_crop_that_is_not_random_is_caught(monkeypatch):
    def top_left(self, sample):
        new_h, new_w = self.output_size
        return {**sample, "image": sample["image"][:new_h, :new_w], "keypoints": sample["keypoints"]}

    monkeypatch.setattr(data_load.RandomCrop, "__call__", top_left)
    expect_failure(checks.check_random_crop, match="always cuts the same window")


def test_centre_crop_rounded_the_other_way_is_caught(monkeypatch):
    def rounded_up(self, sample):
        image = sample["image"]
        h, w = image.shape[:2]
        new_h, new_w = self.output_size
        top, left = -(-(h - new_h) // 2), -(-(w - new_w) // 2)
        return {**sample, "image": image[top : top + new_h, left : left + new_w], "keypoints": sample["keypoints"] - [left, top]}

    monkeypatch.setattr(data_load.CenterCrop, "__call__", rounded_up)
    expect_failure(checks.check_center_crop, match=r"top-left corner at \(\(h - new_h\) // 2, \(w - new_w\) // 2\); your keypoints are off by")


def test_centre_crop_that_is_random_is_caught(monkeypatch):
    monkeypatch.setattr(data_load.CenterCrop, "__call__", lambda self, sample: data_load.RandomCrop(self.output_size)(sample))
    expect_failure(checks.check_center_crop, match="must cut the same window every time")


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
    (lambda sample, out: sample["image"].mean(axis=2).astype(np.float32) / 255, r"Normalize changes the picture \(mean difference"),
])
def test_normalize_image_mistakes_are_caught_with_their_fix(monkeypatch, image, match):
    normalize_with(monkeypatch, image=image)
    expect_failure(checks.check_normalize, match=match)


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
    expect_failure(checks.check_normalize, match=match)


def transforms_with(monkeypatch, train=None, test=None) -> None:
    from torchvision.transforms import Compose

    if train is not None:
        monkeypatch.setattr(data_load, "train_transform", lambda size: Compose(train(size)))
    if test is not None:
        monkeypatch.setattr(data_load, "test_transform", lambda size: Compose(test(size)))


def test_a_random_test_pipeline_is_caught_when_its_first_two_windows_are_alike(monkeypatch):
    class Draws:
        """An rng whose ``integers`` gives these values in turn: RandomCrop's first windows alike by chance."""

        def __init__(self, values: list[int]) -> None:
            self.values = iter(values)

        def integers(self, low: int, high: int) -> int:
            return next(self.values)

    rng = Draws([3, 5] * 3 + [9, 1] * 10)  # the shape check, then the first two runs of the "every time" check
    transforms_with(monkeypatch, test=lambda s: [data_load.Rescale(126), data_load.RandomCrop(s, rng=rng), data_load.Normalize(), data_load.ToTensor()])
    expect_failure(checks.check_transforms, match="nothing random")


def test_a_training_pipeline_without_normalize_is_caught(monkeypatch):
    transforms_with(monkeypatch, train=lambda s: [data_load.Rescale(126), data_load.RandomCrop(s), data_load.ToTensor()])
    expect_failure(checks.check_transforms, match=r"train_transform\(112\) \(Rescale, RandomCrop, ToTensor\) has no Normalize: add")


def test_normalize_before_the_crop_is_caught(monkeypatch):
    transforms_with(monkeypatch, train=lambda s: [data_load.Rescale(126), data_load.Normalize(), data_load.RandomCrop(s), data_load.ToTensor()])
    expect_failure(checks.check_transforms, match="in train_transform\\(112\\), Normalize comes before RandomCrop")


def test_a_training_pipeline_that_is_not_random_is_caught(monkeypatch):
    transforms_with(monkeypatch, train=lambda s: [data_load.Rescale(126), data_load.CenterCrop(s), data_load.Normalize(), data_load.ToTensor()])
    expect_failure(checks.check_transforms, match="gives the same window every time: use RandomCrop")


def test_a_flip_that_forgets_the_keypoints_is_caught(monkeypatch):
    class ImageOnlyFlip:
        def __call__(self, sample):
            return {**sample, "image": np.ascontiguousarray(sample["image"][:, ::-1])}

    transforms_with(monkeypatch, train=lambda s: [data_load.Rescale(126), data_load.RandomCrop(s), ImageOnlyFlip(), data_load.Normalize(), data_load.ToTensor()])
    expect_failure(checks.check_transforms, match="train_transform moves keypoint 30 .* px away from its pixel")


@pytest.mark.parametrize("test, match", [
    (lambda s: [data_load.Rescale(s), data_load.Normalize(), data_load.ToTensor()], r"frames the face .* away from the pipeline's crop: Rescale the window to round\(112 \* WINDOW_MARGIN\) = 126"),
    (lambda s: [data_load.Rescale(126), data_load.RandomCrop(s), data_load.Normalize(), data_load.ToTensor()], "nothing random"),
])
def test_a_test_pipeline_unlike_the_pipelines_crop_is_caught(monkeypatch, test, match):
    transforms_with(monkeypatch, test=test)
    expect_failure(checks.check_transforms, match=match)


# ---------------------------------------------------------------------------------------------------------
# Net
# ---------------------------------------------------------------------------------------------------------
class WrongOutputs(models.Net):
    def __init__(self, num_keypoints: int = 68) -> None:
        super().__init__(num_keypoints)
        self.head[-1] = nn.Linear(self.head[-1].in_features, 100)


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
        input_size = 112

        def __init__(self, num_keypoints: int = 68) -> None:
            super().__init__()
            self.layers = nn.Sequential(nn.Flatten(), nn.Linear(112 * 112, 2 * num_keypoints))

        def forward(self, x):
            return self.layers(x)

    expect_failure(checks.check_net, Dense, match="Net has no nn.Conv2d layer")


def test_net_without_an_input_size_is_caught():
    class NoSize(models.Net):
        input_size = 224.5

    expect_failure(checks.check_net, NoSize, match="a whole number from 32 to 256")


# ---------------------------------------------------------------------------------------------------------
# The training functions of notebook 2
# ---------------------------------------------------------------------------------------------------------
def epoch_with(*calls: str, steps: int = 1, train_mode: bool = True, item: bool = True, target=None):
    """A training epoch that calls zero_grad, backward and step in the given order (step ``steps`` times)."""

    def epoch(model, loader, criterion, optimizer, device):
        if train_mode:
            model.train()
        total, count = 0.0, 0
        for batch in loader:
            keypoints = batch["keypoints"].flatten(1) if target is None else target(batch)
            loss = criterion(model(batch["image"]), keypoints)
            for call in calls:
                if call == "zero_grad":
                    optimizer.zero_grad()
                elif call == "backward":
                    loss.backward()
                else:
                    for _ in range(steps):
                        optimizer.step()
            total += loss.item() * len(batch["image"])
            count += len(batch["image"])
        return total / count if item else torch.tensor(total / count)

    return epoch


@pytest.mark.parametrize(
    "calls, match",
    [(("backward", "step"), "call optimizer.zero_grad\\(\\) before loss.backward\\(\\)"),
     (("zero_grad", "backward"), "optimizer.step\\(\\) is never called .*: call it after loss.backward\\(\\)"),
     (("zero_grad", "step"), "loss.backward\\(\\) is never called"),
     (("backward", "zero_grad", "step"), r"optimizer.zero_grad\(\) comes between loss.backward\(\) and optimizer.step\(\)")],
)
def test_training_steps_with_a_call_missing_or_misplaced_are_caught(calls, match):
    expect_failure(checks.check_train_one_epoch, epoch_with(*calls), match=match)


def test_two_optimizer_steps_per_batch_are_caught():
    expect_failure(checks.check_train_one_epoch, epoch_with("zero_grad", "backward", "step", steps=2),
                   match="one loss.backward\\(\\) and one optimizer.step\\(\\) per batch")


def test_an_epoch_in_evaluation_mode_is_caught():
    expect_failure(checks.check_train_one_epoch, epoch_with("zero_grad", "backward", "step", train_mode=False), match="call model.train\\(\\) first")


def test_a_loss_returned_as_a_tensor_is_told_to_use_item():
    expect_failure(checks.check_train_one_epoch, epoch_with("zero_grad", "backward", "step", item=False), match="as a plain number: add up loss.item")


def test_a_training_step_on_the_wrong_target_is_caught():
    expect_failure(checks.check_train_one_epoch, epoch_with("zero_grad", "backward", "step", target=lambda b: torch.zeros(len(b["image"]), 136)),
                   match="the loss of each batch is criterion\\(model\\(images\\), keypoints\\)")


def test_the_right_order_passes():
    checks.check_train_one_epoch(epoch_with("zero_grad", "backward", "step"))


def validation_with(eval_mode: bool = True, no_grad: bool = True, nme_of_first_batch: bool = False, steps: bool = False):
    def check_me(model, loader, criterion, device):
        if eval_mode:
            model.eval()
        total, errors = 0.0, []
        context = torch.no_grad() if no_grad else torch.enable_grad()
        with context:
            for batch in loader:
                output = model(batch["image"])
                loss = criterion(output, batch["keypoints"].flatten(1))
                if steps:
                    loss.backward()
                total += loss.item() * len(output)
                predicted = output.reshape(batch["keypoints"].shape).detach().numpy()
                from pipeline import evaluation

                errors.append(evaluation.nme_interocular(predicted, batch["keypoints"].numpy()))
        errors = np.concatenate(errors[:1] if nme_of_first_batch else errors)
        return total / (len(errors) if not nme_of_first_batch else 12), float(errors.mean())

    return check_me


def test_the_solution_of_validate_passes_and_mistakes_are_named():
    checks.check_validate(validation_with())
    expect_failure(checks.check_validate, validation_with(eval_mode=False), match="call model.eval\\(\\) first")
    expect_failure(checks.check_validate, validation_with(no_grad=False), match="inside torch.no_grad\\(\\)")
    expect_failure(checks.check_validate, validation_with(nme_of_first_batch=True), match="the mean over all faces")
    expect_failure(checks.check_validate, lambda *args: 0.5, match=r"should return two numbers, \(loss, NME_io\)")


def test_training_choices_pass_and_mistakes_are_named(capsys):
    net = models.build_model("net")
    batch = {"image": torch.rand(4, 1, 112, 112), "keypoints": torch.rand(4, 68, 2) * 2 - 1}
    criterion = nn.SmoothL1Loss(beta=0.02)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    checks.check_training_choices(criterion, optimizer, net, train_one_epoch, batch)
    assert "they learn a small batch" in capsys.readouterr().out
    other = models.build_model("net")
    expect_failure(checks.check_training_choices, criterion, torch.optim.Adam(other.parameters(), lr=1e-3), net, train_one_epoch, batch,
                   match="build it on net.parameters\\(\\)")
    expect_failure(checks.check_training_choices, criterion, torch.optim.Adam(net.parameters(), lr=5.0), net, train_one_epoch, batch,
                   match="far outside the usual range")
    expect_failure(checks.check_training_choices, criterion, torch.optim.SGD(net.parameters(), lr=1e-5), net, train_one_epoch, batch,
                   match="it should fall clearly: try another learning rate")
    expect_failure(checks.check_training_choices, lambda p, t: (p - t).abs().sum(dim=1), optimizer, net, train_one_epoch, batch,
                   match="should give one number")


# fit: the solution of the notebook, and versions of it with one mistake each
FIT_SOURCE = next(c for c in __import__("nbformat").read(checks.Path(checks.__file__).parents[1] / "2_Define_Train_Network.ipynb", as_version=4).cells
                  if c.metadata.get("nbgrader", {}).get("grade_id") == "fit").source


def fit_with(*replacements: tuple[str, str]):
    source = FIT_SOURCE
    for old, new in replacements:
        assert old in source, old
        source = source.replace(old, new)
    namespace = dict(SOLUTIONS)
    exec(source, namespace)
    return namespace["fit"]


def test_fit_passes_and_resumes(capsys):
    checks.check_fit(fit_with())
    assert "fit resumes from the checkpoint" in capsys.readouterr().out


@pytest.mark.parametrize("replacement, match", [
    (("        if val_nme < best:\n", "        if True:\n"), "only when the validation error improves"),
    (("    resumed = training.load_checkpoint(checkpoint_file, model, optimizer, schedule)\n", "    resumed = None\n"),
     "read the checkpoint first \\(training.load_checkpoint\\)"),
    (("            schedule.step()\n", "            pass\n"), "call schedule.step\\(\\) once an epoch"),
    (("        training.save_checkpoint(", "        (lambda *a, **k: None)("), "save a checkpoint after each epoch"),
    (("        start, history, best = resumed[\"epoch\"], resumed[\"history\"], resumed[\"best\"]\n",
      "        start, best = resumed[\"epoch\"], resumed[\"best\"]\n"), "go on with the history of the checkpoint"),
    (("        start, history, best = resumed[\"epoch\"], resumed[\"history\"], resumed[\"best\"]\n",
      "        start, history = resumed[\"epoch\"], resumed[\"history\"]\n"), "take the best error so far from the checkpoint too"),
])
def test_fit_mistakes_are_named(replacement, match):
    expect_failure(checks.check_fit, fit_with(replacement), match=match)


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
