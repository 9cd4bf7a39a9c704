"""The checks after each TODO of the course: they say what is right, and what is wrong and where to look.

Each ``check_*`` function prints one line per check that passes and raises ``AssertionError`` with a hint at the
first one that fails. A notebook's check cell is a plain call (or a plain ``assert``), so nbgrader's autograder
can grade it: the cell passes when it raises nothing. Code that is still a stub raises ``NotImplementedError``;
the checks turn that into "... is not implemented yet" and name the place to fill in.

The functions look up the course code when they run (``data_load.Rescale``, ``models.Net``, ...), so after an
edit to a ``.py`` file the check sees the new code as soon as the module is reloaded (the notebooks turn on
``%autoreload``).
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Callable, Iterator

import numpy as np

PASS = "\N{CHECK MARK}"


def passed(message: str) -> None:
    """Report a check that passed."""
    print(f"  {PASS} {message}")


@contextlib.contextmanager
def implemented(what: str, where: str) -> Iterator[None]:
    """Run student code: a stub's NotImplementedError becomes "not implemented yet", any other error an
    AssertionError that says which part raised it (the original error stays attached for its traceback)."""
    try:
        yield
    except NotImplementedError:
        raise AssertionError(f"{what} is not implemented yet: fill in the TODO in {where}, then run this cell again.") from None
    except AssertionError:
        raise
    except Exception as error:
        raise AssertionError(f"{what} raised {type(error).__name__}: {error}") from error


def _face_sample(width: int = 150, height: int = 170, roll_deg: float = 8.0) -> dict:
    """A cartoon face (RGB uint8) with its 68 keypoints: the checks' own sample when none is given."""
    import cv2

    from resources import artwork

    keypoints = artwork.face_keypoints((width * 0.5, height * 0.45), 0.55 * width, roll_deg).astype(np.float32)
    image = np.full((height, width, 3), 90, np.uint8)
    outline = np.round(artwork.face_outline(keypoints.astype(np.float64))).astype(np.int32)
    cv2.fillPoly(image, [outline], (205, 170, 140))
    for start, stop in ((36, 42), (42, 48), (48, 60)):
        cv2.fillPoly(image, [np.round(keypoints[start:stop]).astype(np.int32)], (40, 30, 30))
    return {"image": image, "keypoints": keypoints, "name": "Check_Face_00.jpg"}


# ---------------------------------------------------------------------------------------------------------
# Notebook 1: the course transforms (data_load.py) and the transform pipeline
# ---------------------------------------------------------------------------------------------------------
def _marker(transform: Callable[[dict], dict], sample: dict, index: int = 30) -> float:
    from course import notebook_helpers as nh

    return nh.marker_offset(transform, sample, index=index)


def _turned(sample: dict) -> dict:
    """The sample transposed (rows become columns): a portrait picture becomes a landscape one and back."""
    image = np.ascontiguousarray(np.swapaxes(np.asarray(sample["image"]), 0, 1))
    return {**sample, "image": image, "keypoints": np.ascontiguousarray(np.asarray(sample["keypoints"])[:, ::-1])}


def _orientation(h: int, w: int) -> str:
    return "portrait (taller than wide)" if h > w else "landscape (wider than tall)" if w > h else "square"


def _check_rescale(sample: dict, where: str) -> None:
    """``Rescale`` on one picture: sizes for an int and a tuple, and keypoint 30 kept on its pixel."""
    import data_load

    h, w = sample["image"].shape[:2]
    kind = _orientation(h, w)
    with implemented("Rescale", f"{where} (Rescale.__call__)"):
        out = data_load.Rescale(100)(sample)
        exact = data_load.Rescale((80, 120))(sample)
    expected = (100, round(100 * w / h)) if w >= h else (round(100 * h / w), 100)
    got = out["image"].shape[:2]
    if min(got) != 100:
        longer = "width" if w >= h else "height"
        raise AssertionError(
            f"Rescale(100) should make the shorter side 100 px: a {kind} picture of {h} x {w} should become about "
            f"{expected[0]} x {expected[1]}, got {got[0]} x {got[1]}: for an int, compare h and w, set the shorter side "
            f"to output_size and scale the {longer} by the same factor")
    assert all(abs(g - e) <= 1 for g, e in zip(got, expected)), (
        f"Rescale(100) should keep the aspect ratio: a {kind} picture of {h} x {w} should become about "
        f"{expected[0]} x {expected[1]}, got {got[0]} x {got[1]}")
    assert exact["image"].shape[:2] == (80, 120), f"Rescale((80, 120)) should give exactly 80 x 120 (height, width), got {exact['image'].shape[:2]}"
    for label, transform in (("Rescale(100)", data_load.Rescale(100)), ("Rescale((80, 120))", data_load.Rescale((80, 120)))):
        offset = _marker(transform, sample)
        assert offset < 1.0, (
            f"{label} moves the keypoints of a {kind} picture {offset:.1f} px away from their pixels: scale x by "
            "new_w / w and y by new_h / h (with pixel centres at integer coordinates: x_new = (x + 0.5) * new_w / w - 0.5)")


# Luma weights of cv2.COLOR_RGB2GRAY (ITU-R BT.601), red to blue: what the course's gray values are.
RGB_TO_GRAY = np.array([0.299, 0.587, 0.114])


def _check_normalize(sample: dict, where: str) -> None:
    """``Normalize``: a 2-D float32 gray picture in [0, 1] (cv2.COLOR_RGB2GRAY / 255), keypoints in [-1, 1]."""
    import data_load

    h, w = sample["image"].shape[:2]
    with implemented("Normalize", f"{where} (Normalize.__call__)"):
        normalized = data_load.Normalize()(sample)
    image, keypoints = np.asarray(normalized["image"]), np.asarray(normalized["keypoints"])
    if image.shape == (h, w, 1):
        raise AssertionError(f"Normalize should give a 2-D gray image of {h} x {w}, got shape {image.shape}: drop the channel axis")
    assert image.shape == (h, w), (
        f"Normalize should give a gray image of {h} x {w}, got shape {image.shape}: convert with "
        "cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)")
    assert 0.0 <= image.min() and image.max() <= 1.0, (
        f"Normalize should give values in [0, 1], got {image.min():.2f} to {image.max():.2f}: divide the gray levels by 255")
    assert image.dtype == np.float32, (
        f"Normalize should give float32 values, got {image.dtype}: convert with .astype(np.float32) (dividing a uint8 "
        "array by 255 gives float64, which the network's float32 weights refuse)")
    rgb = np.asarray(sample["image"], np.float64)
    gray, bgr_gray = (rgb @ RGB_TO_GRAY, rgb @ RGB_TO_GRAY[::-1]) if rgb.ndim == 3 else (rgb, rgb)
    # Mean difference from the BT.601 gray, measured: cv2.COLOR_RGB2GRAY 0.00005 on the checks' own sample and 0.0008
    # on the first training picture (OpenCV's fixed-point rounding), COLOR_BGR2GRAY 0.013 and 0.009, the mean of the
    # three channels 0.006 and 0.012. Tolerance 0.003.
    error = float(np.abs(image - gray / 255).mean())
    if error > 0.003:
        bgr = float(np.abs(image - bgr_gray / 255).mean()) < 0.003
        raise AssertionError(
            "Normalize swaps red and blue: the pictures here are RGB, so convert with cv2.COLOR_RGB2GRAY, not COLOR_BGR2GRAY"
            if bgr else f"Normalize changes the picture (mean difference {error:.3f}): the gray values should be "
            "cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) / 255")
    _check_normalized_keypoints(np.asarray(sample["keypoints"], np.float64), keypoints, w, h)


def _check_normalized_keypoints(pixels: np.ndarray, keypoints: np.ndarray, w: int, h: int) -> None:
    """Keypoints of Normalize against (x - w/2) / (w/2), (y - h/2) / (h/2), with a hint for the usual mistakes."""
    expected = (pixels - [w / 2, h / 2]) / [w / 2, h / 2]
    assert keypoints.shape == expected.shape, f"Normalize should keep the {expected.shape} shape of the keypoints, got {keypoints.shape}"
    if np.allclose(keypoints, expected, atol=1e-3):
        return
    mistakes = (
        (pixels, "leaves the keypoints in pixels"),
        ((pixels - 100) / 50, "uses the fixed (x - 100) / 50 of the original course, which ignores the picture's size"),
        (pixels / [w, h], "maps the keypoints to [0, 1]: subtract the centre too"),
        ((pixels - [w / 2, h / 2]) / [w, h], "divides by the whole size: divide by half of it"),
        ((pixels - [h / 2, w / 2]) / [h / 2, w / 2], "swaps width and height: x goes with w, y with h"),
    )
    hint = next((text for values, text in mistakes if np.allclose(keypoints, values, atol=1e-3)), "")
    raise AssertionError(
        f"Normalize should map keypoints to [-1, 1] around the image centre: (x - w/2) / (w/2) and (y - h/2) / (h/2) "
        f"(data_load.normalize_keypoints){'; yours ' + hint if hint else ''}")


def check_course_transforms(sample: dict | None = None) -> None:
    """``Rescale``, ``RandomCrop`` and ``Normalize`` in data_load.py: sizes, value ranges, and keypoints that stay
    on their pixels (a magenta disk painted on the nose tip must end up where the transform says point 30 went),
    on a portrait and a landscape picture."""
    import data_load

    sample = sample if sample is not None else _face_sample()
    h, w = sample["image"].shape[:2]
    where = "data_load.py"

    for picture in (sample, _turned(sample)):
        _check_rescale(picture, where)
    passed("Rescale gives the right sizes (shorter side for an int, exactly (height, width) for a tuple), portrait "
           "and landscape, and keeps keypoint 30 on its pixel (< 1 px)")

    with implemented("RandomCrop", f"{where} (RandomCrop.__call__)"):
        window = (h - 12, w - 12)  # small margins, so the nose tip stays in every window
        crops = [data_load.RandomCrop(window, rng=np.random.default_rng(seed))(sample) for seed in range(6)]
        offsets = [_marker(data_load.RandomCrop(window, rng=np.random.default_rng(seed)), sample) for seed in range(6)]
        square = data_load.RandomCrop(min(h, w) - 12, rng=np.random.default_rng(0))(sample)
    assert all(c["image"].shape[:2] == window for c in crops), (
        f"RandomCrop({window}) should cut {window[0]} x {window[1]} windows (height, width), got {crops[0]['image'].shape[:2]}")
    assert square["image"].shape[:2] == (min(h, w) - 12,) * 2, "RandomCrop(n) with an int should cut an n x n square"
    assert max(offsets) < 1.0, (
        f"RandomCrop moves the keypoints up to {max(offsets):.1f} px away from their pixels: subtract the window's "
        "left edge from x and its top edge from y")
    corners = {tuple(np.round(c["keypoints"][0] - sample["keypoints"][0], 3)) for c in crops}
    assert len(corners) > 1, "RandomCrop always cuts the same window: draw its top-left corner at random with self.rng"
    passed("RandomCrop cuts windows of the right size, at random places, and keeps keypoint 30 on its pixel")

    _check_normalize(sample, where)
    passed("Normalize gives float32 gray values in [0, 1] and keypoints in [-1, 1] around the centre")


def _steps(transform: Callable[[dict], dict]) -> list[str]:
    """The class names of a Compose's transforms, in order; [] for anything else."""
    return [type(step).__name__ for step in getattr(transform, "transforms", [])]


def check_transform_pipeline(transform: Callable[[dict], dict], sample: dict | None = None) -> None:
    """The transform pipeline of notebook 1: a raw sample to a 1 x 224 x 224 tensor in [0, 1] and 68 x 2 keypoints
    in about [-1, 1]."""
    import torch

    sample = sample if sample is not None else _face_sample(300, 340)
    steps = _steps(transform)
    if steps and "Normalize" not in steps:
        raise AssertionError(f"the pipeline ({', '.join(steps)}) has no Normalize: add data_load.Normalize() after the crop, before ToTensor")
    later = [name for name in steps[steps.index("Normalize") + 1 :] if name in ("Rescale", "RandomCrop")] if steps else []
    assert not later, (
        f"Normalize comes before {later[0]} ({' -> '.join(steps)}): put it after Rescale and RandomCrop, which work "
        "in pixels, so it scales the keypoints of the final 224 x 224 picture")
    with implemented("data_transform", "the cell above (and the transforms in data_load.py)"):
        out = transform(sample)
    image, keypoints = out.get("image"), out.get("keypoints")
    assert isinstance(image, torch.Tensor) and isinstance(keypoints, torch.Tensor), (
        f"the pipeline should end with tensors (ToTensor), got {type(image).__name__} and {type(keypoints).__name__}")
    assert tuple(image.shape) == (1, 224, 224), f"the image must be a 1 x 224 x 224 tensor, got {tuple(image.shape)}"
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0, "the image values must be in [0, 1]: Normalize"
    assert tuple(keypoints.shape) == (68, 2), f"the keypoints must be a 68 x 2 tensor, got {tuple(keypoints.shape)}"
    assert float(keypoints.abs().max()) < 1.5, "the keypoints must be normalised to about [-1, 1]: Normalize"
    passed("data_transform gives a 1 x 224 x 224 image in [0, 1] and 68 x 2 keypoints in about [-1, 1]")


# ---------------------------------------------------------------------------------------------------------
# Notebook 2: the network (models.py), the training step (pipeline/training.py) and the configuration
# ---------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _flatten_hint() -> Iterator[None]:
    """Add the usual fix to the error of a Linear layer fed the wrong number of features."""
    try:
        yield
    except AssertionError as error:
        if "cannot be multiplied" not in str(error):
            raise
        raise AssertionError(
            f"{error}: flatten the feature maps with x.view(x.size(0), -1) before the first nn.Linear, and give that "
            "layer as many in_features as the flattened size (notebook_helpers.print_layer_shapes(net) shows it)"
        ) from error.__cause__


def check_net(net_class: type | None = None) -> None:
    """``Net`` in models.py: 136 outputs per image for any batch size, convolutional, every layer trained."""
    import torch
    import torch.nn as nn

    import models

    net_class = net_class or models.Net
    torch.manual_seed(0)
    with implemented("Net.__init__", "models.py"):
        net = net_class()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs, "Net has no nn.Conv2d layer: define the convolution stages in Net.__init__"
    assert convs[0].in_channels == 1, f"the first convolution should take 1 (gray) channel, not {convs[0].in_channels}"
    passed(f"Net builds, with {len(convs)} convolution layer(s) and {models.count_parameters(net):,} parameters")

    x = torch.rand(2, 1, 224, 224)
    with _flatten_hint(), implemented("Net.forward", "models.py"), torch.no_grad():
        out = net.eval()(x)
        single = net(x[:1])
    assert isinstance(out, torch.Tensor), f"Net.forward should return a tensor, got {type(out).__name__}"
    assert tuple(out.shape) == (2, 136), f"Net should output (N, 136), got {tuple(out.shape)}: check the last Linear layer"
    assert tuple(single.shape) == (1, 136), f"Net should output (1, 136) for one image, got {tuple(single.shape)}"
    assert torch.isfinite(out).all(), "Net outputs NaN or infinite values"
    assert (out < 0).any() and (out > 0).any(), (
        "Net's outputs all have the same sign: keypoints in [-1, 1] need both, so end with a plain nn.Linear, with "
        "no activation (ReLU, sigmoid) after it")
    assert torch.allclose(single, out[:1], atol=1e-4), "in eval mode an image's output must not depend on the rest of its batch"
    passed("Net maps N x 1 x 224 x 224 to N x 136, finite, for any batch size")

    with implemented("Net", "models.py"):
        five = net_class(num_keypoints=5).eval()(x[:1])
    assert tuple(five.shape) == (1, 10), f"Net(num_keypoints=5) should output 10 numbers, got {tuple(five.shape)}: use 2 * num_keypoints"
    passed("Net(num_keypoints=K) outputs 2 K numbers")

    net.train()
    net(x).sum().backward()
    untrained = [name for name, p in net.named_parameters() if p.grad is None]
    assert not untrained, f"no gradient reaches {', '.join(untrained[:4])}: is every layer defined in __init__ used in forward?"
    passed("gradients reach every layer")


def _record_calls(model: Any, optimizer: Any) -> list[str]:
    """A list that fills with "zero_grad" (of the optimizer or the model), "backward" and "step" as the training step
    calls them, in order."""
    calls: list[str] = []
    for owner, name in ((optimizer, "zero_grad"), (model, "zero_grad"), (optimizer, "step")):
        method = getattr(owner, name)

        def recorded(*args: Any, _method: Callable = method, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _method(*args, **kwargs)

        setattr(owner, name, recorded)
    first = next(model.parameters())
    first.register_hook(lambda grad: calls.append("backward"))  # once per backward pass through the model
    return calls


def _check_call_order(calls: list[str]) -> None:
    """zero_grad, backward, step for the one batch: name the call that is missing or out of place."""
    order = " -> ".join(calls) or "none of them"
    assert "backward" in calls, f"loss.backward() is never called (the calls were: {order}): the optimizer has no gradients to step with"
    assert "step" in calls, f"optimizer.step() is never called (the calls were: {order}): call it after loss.backward()"
    backward, step = calls.index("backward"), len(calls) - 1 - calls[::-1].index("step")
    assert "zero_grad" not in calls[backward:step], (
        f"optimizer.zero_grad() comes between loss.backward() and optimizer.step() ({order}), so the step finds no "
        "gradients: clear them first, in the order zero_grad, loss, backward, step")


def check_train_one_epoch(train_one_epoch: Callable[..., float] | None = None) -> None:
    """The core of ``train_one_epoch`` in pipeline/training.py: one step per batch (zero the gradients, loss of the model's
    output against the flattened targets, backpropagate, step), the mean loss returned, and a loss that falls on a
    tiny batch."""
    import torch
    import torch.nn as nn

    from pipeline import training

    train_one_epoch = train_one_epoch or training.train_one_epoch
    where = "pipeline/training.py (train_one_epoch)"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 136))
    batch = {"image": torch.rand(4, 1, 8, 8), "keypoints": torch.rand(4, 68, 2) * 2 - 1}
    loss_fn = nn.MSELoss()
    reference = copy.deepcopy(model)
    reference_loss = loss_fn(reference(batch["image"]), batch["keypoints"].flatten(1))
    reference_loss.backward()
    expected_loss = reference_loss.item()
    before = [p.detach().clone() for p in model.parameters()]
    stale = [torch.full_like(p, 0.5) for p in model.parameters()]  # gradients left over from an earlier step
    for p, grad in zip(model.parameters(), stale):
        p.grad = grad.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = _record_calls(model, optimizer)
    with implemented("train_one_epoch", where):
        loss = train_one_epoch(model, [batch], loss_fn, optimizer, None, "cpu", False)
    assert isinstance(loss, float) and math.isfinite(loss), (
        f"train_one_epoch should return the mean loss as a number (loss.item()), got {type(loss).__name__} {loss!r}")
    assert abs(loss - expected_loss) < 1e-5, (
        f"the loss should be loss_fn(model(images), target) before the step ({expected_loss:.5f}), got {loss:.5f}")
    passed("the loss is that of the model's output against the flattened keypoints")

    _check_call_order(calls)
    after = [p.detach() for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(after, before)), "the weights did not change: call loss.backward(), then optimizer.step()"
    one_step = [b - 0.1 * r.grad for b, r in zip(before, reference.parameters())]
    stale_step = [b - 0.1 * (r.grad + s) for b, r, s in zip(before, reference.parameters(), stale)]
    if all(torch.allclose(a, s, atol=1e-6) for a, s in zip(after, stale_step)):
        raise AssertionError("the step used gradients left over from an earlier batch: call optimizer.zero_grad() before loss.backward()")
    assert all(torch.allclose(a, o, atol=1e-6) for a, o in zip(after, one_step)), (
        "the weights changed, but not by one optimizer step on this batch's loss: zero the gradients, then "
        "loss.backward() and optimizer.step(), once per batch")
    passed("one optimizer step per batch, from fresh gradients")

    tiny = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 136))
    optimizer = torch.optim.Adam(tiny.parameters(), lr=1e-2)
    with implemented("train_one_epoch", where):
        losses = [train_one_epoch(tiny, [batch], loss_fn, optimizer, None, "cpu", False) for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0], f"on a tiny batch the loss should fall quickly: {losses[0]:.4f} -> {losses[-1]:.4f}"
    passed(f"the loss falls on a tiny batch: {losses[0]:.4f} -> {losses[-1]:.4f} in 15 epochs")


def check_course_config(config: Any) -> None:
    """The training configuration of notebook 2: the course's ``Net`` with sensible settings."""
    from pipeline import training

    assert isinstance(config, training.TrainConfig), f"config should be a training.TrainConfig, got {type(config).__name__}"
    assert config.model == "net", f"the course trains its own Net: model='net', not {config.model!r}"
    assert config.epochs >= 1 and config.batch_size >= 1, "epochs and batch_size must be at least 1"
    assert 0 < config.lr <= 0.1, f"a learning rate of {config.lr} is far outside the usual range (about 1e-4 to 1e-2)"
    for kind, value, known in (("optimizer", config.optimizer, training.OPTIMIZERS), ("loss", config.loss, training.LOSSES),
                               ("schedule", config.schedule, training.SCHEDULES)):
        assert value in known, f"unknown {kind} {value!r}: choose one of {', '.join(map(repr, known))}"
    passed(f"{config.model}, {config.epochs} epochs of batches of {config.batch_size}, {config.optimizer} at {config.lr:g}, "
           f"{config.schedule} schedule, {config.loss} loss")


def check_config_learns(config: Any, batch: dict, steps: int = 15) -> None:
    """The loss and optimizer chosen in ``config`` can learn: a fresh ``config.model`` trained with them for
    ``steps`` steps of ``training.train_one_epoch`` on one small ``batch`` (images N x 1 x S x S, keypoints N x K x 2 in
    [-1, 1]) must bring that batch's loss down: the mean of the last three steps' losses below 90 % of the first
    (memorising a batch is the easiest thing a network can do; dropout makes single steps noisy)."""
    import torch
    import torch.nn.functional as F

    import models
    from pipeline import training

    torch.manual_seed(0)
    model = models.build_model(config.model)
    images = batch["image"]
    if images.shape[-1] != model.input_size:  # the batch at the model's input size
        images = F.interpolate(images, size=(model.input_size, model.input_size), mode="bilinear", align_corners=False)
    small = {"image": images, "keypoints": batch["keypoints"]}
    loss_fn = training.make_loss(config.loss, model.input_size)
    optimizer = training.make_optimizer(config, model)
    with implemented("train_one_epoch", "pipeline/training.py (train_one_epoch)"):
        losses = [training.train_one_epoch(model, [small], loss_fn, optimizer, None, "cpu", False) for _ in range(steps)]
    assert all(math.isfinite(value) for value in losses), (
        f"the loss became NaN or infinite with {config.optimizer} at lr {config.lr:g}: the steps are too large, lower the learning rate")
    last = float(np.mean(losses[-3:]))
    assert last < 0.9 * losses[0], (
        f"with {config.optimizer} at lr {config.lr:g} and the {config.loss} loss, the loss of {len(images)} faces went from "
        f"{losses[0]:.4f} to {last:.4f} (mean of the last 3) in {steps} steps; it should fall clearly: try another "
        "learning rate (about 1e-3 is a common start for Adam)")
    passed(f"{config.optimizer} at lr {config.lr:g} with the {config.loss} loss learns a small batch: "
           f"{losses[0]:.4f} -> {last:.4f} in {steps} steps")


def _step_images(size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Two gray test pictures in [0, 1]: a horizontal edge (dark above, bright below) and a vertical one."""
    horizontal = np.zeros((size, size), np.float32)
    horizontal[size // 2 :] = 1.0
    return horizontal, np.ascontiguousarray(horizontal.T)


def check_edge_filter(kernel: Any, filtered: Any, gray: np.ndarray) -> None:
    """The edge filter of notebook 2: ``kernel`` (k x k, k odd) responds to horizontal edges, not to flat areas nor
    to vertical edges, and ``filtered`` is ``cv2.filter2D(gray, -1, kernel)`` (a correlation, as in a PyTorch
    convolution layer; compared away from the border, which each library pads its own way)."""
    import torch

    kernel = np.asarray(kernel, np.float32)
    assert kernel.ndim == 2 and kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1, (
        f"the kernel should be a square array with an odd side (3 x 3, 5 x 5), got shape {kernel.shape}")
    assert np.abs(kernel).sum() > 0, "the kernel is all zeros: it responds to nothing"
    assert abs(float(kernel.sum())) < 1e-3 * float(np.abs(kernel).sum()), (
        f"the kernel's weights sum to {kernel.sum():.3f}, so a flat area gives a response: make them sum to 0 "
        "(negative weights on one side, positive on the other)")
    horizontal, vertical = _step_images()
    k = kernel.shape[0] // 2
    response = {name: torch.nn.functional.conv2d(torch.from_numpy(image)[None, None], torch.from_numpy(kernel)[None, None])[0, 0].abs().max().item()
                for name, image in (("horizontal", horizontal), ("vertical", vertical))}
    assert response["horizontal"] > 3 * response["vertical"], (
        f"the kernel responds as much to a vertical edge ({response['vertical']:.2f}) as to a horizontal one "
        f"({response['horizontal']:.2f}): change the weights from top to bottom, and keep each row the same from left to right")
    passed(f"the kernel finds horizontal edges ({response['horizontal']:.2f}) and hardly vertical ones ({response['vertical']:.2f}); flat areas give 0")

    filtered = np.asarray(filtered, np.float32)
    assert filtered.shape == gray.shape, f"filtered should have the face's shape {gray.shape}, got {filtered.shape}: cv2.filter2D(gray, -1, kernel)"
    expected = torch.nn.functional.conv2d(torch.from_numpy(np.asarray(gray, np.float32))[None, None], torch.from_numpy(kernel)[None, None])[0, 0].numpy()
    inner = filtered[k : filtered.shape[0] - k, k : filtered.shape[1] - k]
    assert np.allclose(inner, expected, atol=1e-3), (
        "filtered is not the kernel's response on the gray face: apply cv2.filter2D(gray, -1, kernel) to the float "
        "image (ddepth -1 keeps float32; uint8 would cut negative responses to 0)")
    passed("filtered is cv2.filter2D of the face with your kernel, the same correlation as a PyTorch convolution")


# ---------------------------------------------------------------------------------------------------------
# Notebook 3: from a picture to keypoints
# ---------------------------------------------------------------------------------------------------------
def check_keypoints_by_hand(keypoints_by_hand: Callable[[np.ndarray], Any], pipe: Any, pictures: dict[str, np.ndarray]) -> None:
    """``keypoints_by_hand(picture)`` of notebook 3 gives, for every face the tuned detector finds (the notebook's
    ``detector``, ``pipe.thorough_detector``), the keypoints of one plain pass of ``pipe`` (no mirror, no re-crop)
    in the picture's pixels, to within 0.5 px."""
    import dataclasses

    single_pass = dataclasses.replace(pipe, flip_average=False, refine=False)
    for name, picture in pictures.items():
        boxes = [d.box for d in pipe.thorough_detector.detect(picture)]
        expected = single_pass.keypoints_for_boxes(picture, boxes)
        with implemented("keypoints_by_hand", "the cell above"):
            got = np.asarray(keypoints_by_hand(picture), np.float64)
        assert got.shape == expected.shape, (
            f"{name}: the detector finds {len(boxes)} face(s), so keypoints_by_hand should return shape {expected.shape}, "
            f"got {got.shape}: one (68, 2) array of (x, y) per detected face, stacked")
        if not len(boxes):
            continue
        offset = float(np.abs(got - expected).max())
        if offset >= 0.5 and got.max() <= pipe.input_size + 1 and expected.max() > pipe.input_size + 1:
            raise AssertionError(f"{name}: the keypoints are still in crop pixels (0 to {pipe.input_size}): map them back to "
                                 "the picture with the inverse of each crop's matrix")
        assert offset < 0.5, (
            f"{name}: your keypoints are up to {offset:.1f} px from the pipeline's: cut the crop from "
            "data_load.crop_square_from_box(box) at the model's input size, gray values / 255, and map back with the "
            "inverse of that crop's matrix")
        passed(f"{name}: {len(boxes)} face(s), keypoints within {offset:.3f} px of the pipeline's")


# ---------------------------------------------------------------------------------------------------------
# Notebook 4: placing artwork (filters.py)
# ---------------------------------------------------------------------------------------------------------
def check_placement() -> None:
    """``Artwork.target_points`` and ``placement_transform`` in filters.py: each anchor of the sunglasses, the
    moustache and the hat lands on its keypoints, on upright and rolled faces, with a similarity transform."""
    from resources import artwork
    import filters

    where = "filters.py"
    glasses = filters.load_artwork("sunglasses")
    keypoints = artwork.face_keypoints((200, 180), 220, 0) + np.random.default_rng(0).normal(0, 2, (68, 2))
    with implemented("Artwork.target_points", f"{where} (Artwork.target_points)"):
        targets = np.asarray(glasses.target_points(keypoints))
    expected = np.array([keypoints[list(group)].mean(axis=0) for group in glasses.targets])
    assert targets.shape == expected.shape, f"target_points should give one (x, y) per anchor, shape {expected.shape}, got {targets.shape}"
    assert np.allclose(targets, expected, atol=1e-6), "each target should be the mean of the keypoints of its group (self.targets)"
    passed("target_points averages each group of keypoints")

    for roll in (-20.0, 0.0, 25.0):
        face = artwork.face_keypoints((200, 180), 220, roll)
        for name in artwork.ACCESSORIES:
            art = filters.load_artwork(name)
            with implemented("placement_transform", f"{where} (placement_transform)"):
                matrix = np.asarray(filters.placement_transform(name, face), np.float64)
            assert matrix.shape == (2, 3), f"placement_transform should return a 2 x 3 matrix, got shape {matrix.shape}"
            (a, b, _), (c, d, _) = matrix
            assert abs(a - d) < 1e-6 and abs(b + c) < 1e-6 and a * d - b * c > 0, (
                f"the {name} matrix is not a similarity (it shears, stretches or mirrors): use filters.similarity_transform")
            placed = artwork.apply_matrix(matrix, art.anchors)
            error = float(np.abs(placed - art.target_points(face)).max())
            assert error < 0.5, (
                f"the {name} anchors land up to {error:.1f} px from their keypoints on a face rolled {roll:g} degrees: "
                "map the anchors (artwork pixels) onto the target points (image pixels), in that order")
    passed("the anchors of the sunglasses, the moustache and the hat land on their keypoints, upright and rolled")


def check_clown_nose(clown_nose: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
    """The clown's nose of notebook 4 on an upright and a rolled cartoon face: a red disk centred on the nose tip
    (30), 1.5 times as wide as the nostrils (31 to 35), turned with the face (its highlight stays at its upper left
    as the face sees it), and nothing else of the picture changed."""
    from resources import artwork

    for roll in (0.0, 25.0):
        keypoints = artwork.face_keypoints((200, 180), 220, roll)
        image = np.full((360, 400, 3), 90, np.uint8)
        with implemented("clown_nose", "the cell above"):
            out = clown_nose(image.copy(), keypoints)
        assert isinstance(out, np.ndarray) and out.shape == image.shape and out.dtype == np.uint8, (
            "a filter returns a new RGB uint8 image of the picture's size: return filters.place_artwork(...)")
        _check_nose_disk(out, image, keypoints, roll)
    passed("clown_nose centres a disk 1.5 times the nostrils' span on the nose tip, and turns it with the face")


def _check_nose_disk(out: np.ndarray, image: np.ndarray, keypoints: np.ndarray, roll: float) -> None:
    """Where, how big and how turned the disk that ``clown_nose`` drew is, against keypoints 30, 31 and 35."""
    changed = np.abs(out.astype(np.int32) - image).sum(axis=2) > 120
    assert changed.any(), "clown_nose draws nothing on the face: return filters.place_artwork(image, picture, anchors, targets)"
    ys, xs = np.nonzero(changed)
    centre = np.array([xs.mean(), ys.mean()])
    span = keypoints[35] - keypoints[31]
    expected = 1.5 * float(np.hypot(*span))
    diameter = 2 * float(np.sqrt(changed.sum() / np.pi))
    # Measured on the notebook's solution, upright and rolled 25 degrees: centre within 0.1 px of point 30, diameter
    # 1.009 times 1.5 x the span, highlight turned within 0.3 degrees. Mistakes: anchors at the picture's borders
    # instead of 4 px inside give 0.942, targets on the nostrils themselves 0.672, targets along the image's x axis a
    # turn of 25 degrees. Tolerances: 5 % of the width off centre, 3 % in width, 8 degrees.
    off = float(np.hypot(*(centre - keypoints[30])))
    assert off < 0.05 * expected, f"the nose is {off:.0f} px from the nose tip on a face rolled {roll:g} degrees: centre the targets on point 30"
    assert abs(diameter / expected - 1) < 0.03, (
        f"the nose is {diameter:.0f} px wide, it should be 1.5 times the nostrils' span ({expected:.0f} px): anchors on "
        "the disk's edges (4 px inside the picture), targets 1.5 x |point 35 - point 31| apart")
    highlight = changed & (out[..., 1] > 150)
    assert highlight.any(), "the nose's highlight is missing: place the picture clown_nose_picture() draws"
    ys, xs = np.nonzero(highlight)
    seen = np.degrees(np.arctan2(ys.mean() - centre[1], xs.mean() - centre[0]))
    wanted = np.degrees(np.arctan2(span[1], span[0])) - 135.0  # upper left of the face's own frame
    turn = (seen - wanted + 180.0) % 360.0 - 180.0
    if abs(turn) > 150:
        raise AssertionError("the nose is upside down: the disk's left edge goes to the target on the side of point 31")
    assert abs(turn) < 8.0, (
        f"the nose is turned {turn:.0f} degrees from the face rolled {roll:g} degrees: put the targets along the "
        "direction from point 31 to point 35, not along the image's x axis")
    rows, columns = np.indices(image.shape[:2])
    far = np.hypot(columns - keypoints[30, 0], rows - keypoints[30, 1]) > 0.5 * expected + 3
    assert (out[far] == image[far]).all(), "the filter must leave the rest of the picture alone"
