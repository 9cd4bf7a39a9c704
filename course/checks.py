"""The checks after each TODO of the course: they say what is right, and what is wrong and where to look.

Each ``check_*`` function prints one line per check that passes and raises ``AssertionError`` with a hint at the
first one that fails. A notebook's check cell is a plain call (or a plain ``assert``), so nbgrader's autograder
can grade it: the cell passes when it raises nothing. Code that is still a stub raises ``NotImplementedError``;
the checks turn that into "... is not implemented yet" and name the place to fill in.

The checks hold no solution. Where one needs the right answer for a given input, it reads it from
``course/expected_values.npz``, computed from the instructors' solutions when the course is released; otherwise it
tests properties that any right answer has (a keypoint that stays on its pixel, a loss that falls, a model that is
in evaluation mode when it should be).

The functions look up the course code when they run (``data_load.Rescale``, ``models.Net``, ...), so after an
edit to a ``.py`` file the check sees the new code as soon as the module is reloaded (the notebooks turn on
``%autoreload``).
"""
from __future__ import annotations

import contextlib
import copy
import math
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

PASS = "\N{CHECK MARK}"
EXPECTED_FILE = Path(__file__).resolve().with_name("expected_values.npz")


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


@lru_cache(maxsize=1)
def _stored() -> dict[str, np.ndarray]:
    if not EXPECTED_FILE.is_file():
        raise AssertionError(f"{EXPECTED_FILE.name} is missing from course/: restore it from the course's repository.")
    with np.load(EXPECTED_FILE) as values:
        return {key: values[key] for key in values.files}


def expected(key: str) -> np.ndarray:
    """The stored value ``key`` of ``course/expected_values.npz`` (inputs of the checks and the answers of the
    instructors' solutions to them)."""
    values = _stored()
    if key not in values:
        raise AssertionError(f"{EXPECTED_FILE.name} has no {key!r}: restore it from the course's repository.")
    return values[key]


def stored_sample(name: str) -> dict:
    """A sample stored in the expected values: {"image", "keypoints", "name"}."""
    return {"image": expected(f"{name}/image").copy(), "keypoints": expected(f"{name}/keypoints").copy(), "name": f"Check_{name}_00.jpg"}


def _face_sample(width: int = 150, height: int = 170, roll_deg: float = 8.0) -> dict:
    """A cartoon face (RGB uint8) with its 68 keypoints: drawn for a check that needs a face and no stored answer."""
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
# Notebook 1: the course transforms (data_load.py) and the transform pipelines
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


def check_rescale(sample: dict | None = None) -> None:
    """``Rescale`` in data_load.py: the sizes (shorter side for an int, exactly (height, width) for a tuple) and the
    keypoints of the stored answers, on a portrait and a landscape picture; and keypoint 30 kept on its pixel (a
    magenta disk painted on it must end up where the transform says point 30 went), also on ``sample``."""
    import data_load

    where = "data_load.py (Rescale.__call__)"
    base = stored_sample("sample")
    for orientation, picture in (("portrait", base), ("landscape", _turned(base))):
        h, w = picture["image"].shape[:2]
        kind = _orientation(h, w)
        for label, size, key in (("Rescale(100)", 100, "int"), ("Rescale((80, 120))", (80, 120), "tuple")):
            with implemented("Rescale", where):
                out = data_load.Rescale(size)(picture)
            got = tuple(np.asarray(out["image"]).shape[:2])
            want = tuple(int(v) for v in expected(f"rescale/{orientation}/{key}/shape"))
            if key == "tuple":
                assert got == want, f"{label} should give exactly 80 x 120 (height, width), got {got}"
            elif min(got) != 100:
                longer = "width" if w >= h else "height"
                raise AssertionError(
                    f"{label} should make the shorter side 100 px: a {kind} picture of {h} x {w} should become "
                    f"{want[0]} x {want[1]}, got {got[0]} x {got[1]}: for an int, compare h and w, set the shorter side "
                    f"to output_size and scale the {longer} by the same factor")
            else:
                assert got == want, (f"{label} should keep the aspect ratio: a {kind} picture of {h} x {w} should become "
                                     f"{want[0]} x {want[1]}, got {got[0]} x {got[1]}")
            offset = _marker(data_load.Rescale(size), picture)
            error = float(np.abs(np.asarray(out["keypoints"], np.float64) - expected(f"rescale/{orientation}/{key}/keypoints")).max())
            assert error < 0.01 and offset < 1.0, (
                f"{label} moves the keypoints of a {kind} picture {max(error, offset):.2f} px away from their pixels: "
                "scale x by new_w / w and y by new_h / h, with pixel centres at integer coordinates: "
                "x_new = (x + 0.5) * new_w / w - 0.5")
    if sample is not None:
        for label, size in (("Rescale(100)", 100), ("Rescale((80, 120))", (80, 120))):
            offset = _marker(data_load.Rescale(size), sample)
            assert offset < 1.0, f"{label} moves keypoint 30 of the notebook's face {offset:.1f} px away from its pixel"
    passed("Rescale gives the right sizes (shorter side for an int, exactly (height, width) for a tuple), portrait "
           "and landscape, and keeps the keypoints on their pixels")


def check_random_crop(sample: dict | None = None) -> None:
    """``RandomCrop`` in data_load.py: windows of the asked size (int or (height, width)), at random places drawn
    with its ``rng``, with keypoint 30 kept on its pixel."""
    import data_load

    sample = sample if sample is not None else stored_sample("sample")
    h, w = sample["image"].shape[:2]
    where = "data_load.py (RandomCrop.__call__)"
    window = (h - 12, w - 12)  # small margins, so the nose tip stays in every window
    with implemented("RandomCrop", where):
        crops = [data_load.RandomCrop(window, rng=np.random.default_rng(seed))(sample) for seed in range(6)]
        offsets = [_marker(data_load.RandomCrop(window, rng=np.random.default_rng(seed)), sample) for seed in range(6)]
        square = data_load.RandomCrop(min(h, w) - 12, rng=np.random.default_rng(0))(sample)
    assert all(np.asarray(c["image"]).shape[:2] == window for c in crops), (
        f"RandomCrop({window}) should cut {window[0]} x {window[1]} windows (height, width), got {np.asarray(crops[0]['image']).shape[:2]}")
    assert np.asarray(square["image"]).shape[:2] == (min(h, w) - 12,) * 2, "RandomCrop(n) with an int should cut an n x n square"
    assert max(offsets) < 1.0, (
        f"RandomCrop moves the keypoints up to {max(offsets):.1f} px away from their pixels: subtract the window's "
        "left edge from x and its top edge from y")
    corners = {tuple(np.round(np.asarray(c["keypoints"])[0] - sample["keypoints"][0], 3)) for c in crops}
    assert len(corners) > 1, "RandomCrop always cuts the same window: draw its top-left corner at random with self.rng"
    passed("RandomCrop cuts windows of the right size, at random places, and keeps keypoint 30 on its pixel")


def check_center_crop(sample: dict | None = None) -> None:
    """``CenterCrop`` in data_load.py: the window in the middle (the stored answers, for even and odd margins),
    with keypoint 30 kept on its pixel."""
    import data_load

    base = stored_sample("sample")
    h, w = base["image"].shape[:2]
    where = "data_load.py (CenterCrop.__call__)"
    for key, size in (("even", (h - 12, w - 12)), ("odd", (h - 13, w - 11)), ("square", min(h, w) - 20)):
        with implemented("CenterCrop", where):
            out = data_load.CenterCrop(size)(base)
            again = data_load.CenterCrop(size)(base)
        got = tuple(np.asarray(out["image"]).shape[:2])
        want = tuple(int(v) for v in expected(f"center_crop/{key}/shape"))
        assert got == want, f"CenterCrop({size}) should cut a {want[0]} x {want[1]} window (height, width), got {got[0]} x {got[1]}"
        assert np.array_equal(np.asarray(out["keypoints"]), np.asarray(again["keypoints"])), "CenterCrop must cut the same window every time"
        shift = np.asarray(out["keypoints"], np.float64) - expected(f"center_crop/{key}/keypoints")
        assert np.abs(shift).max() < 1e-3, (
            f"CenterCrop({size}) of a {h} x {w} picture should put the window's top-left corner at "
            f"((h - new_h) // 2, (w - new_w) // 2); your keypoints are off by {np.round(shift.mean(axis=0), 2).tolist()} px (x, y)")
        offset = _marker(data_load.CenterCrop(size), base)
        assert offset < 1.0, f"CenterCrop moves keypoint 30 {offset:.1f} px away from its pixel: cut the image at the same window"
    if sample is not None:
        hs, ws = sample["image"].shape[:2]
        offset = _marker(data_load.CenterCrop((hs - 12, ws - 12)), sample)
        assert offset < 1.0, f"CenterCrop moves keypoint 30 of the notebook's face {offset:.1f} px away from its pixel"
    passed("CenterCrop cuts the middle window, the same every time, and keeps the keypoints on their pixels")


def check_normalize(sample: dict | None = None) -> None:
    """``Normalize`` in data_load.py: a 2-D float32 gray picture in [0, 1] and keypoints in [-1, 1] around the
    centre, as the stored answer for the same sample."""
    import data_load

    sample = stored_sample("sample")
    h, w = sample["image"].shape[:2]
    with implemented("Normalize", "data_load.py (Normalize.__call__)"):
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
    error = float(np.abs(image - expected("normalize/image")).mean())
    if error > 0.003:
        bgr = float(np.abs(image - expected("normalize/bgr_image")).mean()) < 0.003
        raise AssertionError(
            "Normalize swaps red and blue: the pictures here are RGB, so convert with cv2.COLOR_RGB2GRAY, not COLOR_BGR2GRAY"
            if bgr else f"Normalize changes the picture (mean difference {error:.3f} from the right gray values): the gray values "
            "should be cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) / 255")
    _check_normalized_keypoints(np.asarray(sample["keypoints"], np.float64), keypoints, w, h)
    passed("Normalize gives float32 gray values in [0, 1] and keypoints in [-1, 1] around the centre")


def _check_normalized_keypoints(pixels: np.ndarray, keypoints: np.ndarray, w: int, h: int) -> None:
    """Keypoints of Normalize against the stored answer, with a hint for the usual mistakes."""
    right = expected("normalize/keypoints")
    assert keypoints.shape == right.shape, f"Normalize should keep the {right.shape} shape of the keypoints, got {keypoints.shape}"
    if np.allclose(keypoints, right, atol=1e-3):
        return
    mistakes = (
        (pixels, "leaves the keypoints in pixels"),
        ((pixels - 100) / 50, "uses the fixed (x - 100) / 50 of the original course, which ignores the picture's size"),
        (pixels / [w, h], "maps the keypoints to [0, 1]: subtract the centre too"),
        (right / 2, "divides by the whole size: divide by half of it"),
        (expected("normalize/keypoints_swapped"), "swaps width and height: x goes with w, y with h"),
    )
    hint = next((text for values, text in mistakes if np.allclose(keypoints, values, atol=1e-3)), "")
    raise AssertionError(
        f"Normalize should map keypoints to [-1, 1] around the image centre: (x - w/2) / (w/2) and (y - h/2) / (h/2) "
        f"(data_load.normalize_keypoints){'; yours ' + hint if hint else ''}")


def _steps(transform: Callable[[dict], dict]) -> list[str]:
    """The class names of a Compose's transforms, in order; [] for anything else."""
    return [type(step).__name__ for step in getattr(transform, "transforms", [])]


def _bright_spot(image: np.ndarray) -> np.ndarray | None:
    """(x, y) centre of the bright pixels (above the middle of the value range) of a gray image that is dark
    elsewhere, or None when it is flat."""
    low, high = float(image.min()), float(image.max())
    if high - low < 0.1:
        return None
    ys, xs = np.nonzero(image > (low + high) / 2)
    return np.array([xs.mean(), ys.mean()])


def _check_pipeline_order(name: str, transform: Callable[[dict], dict]) -> None:
    steps = _steps(transform)
    if steps and "Normalize" not in steps:
        raise AssertionError(f"{name} ({', '.join(steps)}) has no Normalize: add data_load.Normalize() after the crop, before ToTensor")
    later = [step for step in steps[steps.index("Normalize") + 1 :] if step in ("Rescale", "RandomCrop", "CenterCrop", "RandomAffine",
                                                                                "RandomHorizontalFlip")] if steps else []
    assert not later, (
        f"in {name}, Normalize comes before {later[0]} ({' -> '.join(steps)}): put it after the transforms that work "
        "in pixels, so it scales the keypoints of the final picture")


def check_transforms(input_size: int = 112) -> None:
    """``train_transform`` and ``test_transform`` in data_load.py, on a face window: a 1 x S x S image tensor in
    [0, 1] and 68 x 2 keypoints in about [-1, 1]; the training one random, with every point still on its pixel (a
    bright disk painted on the nose tip follows point 30); the test one the stored answer (the middle S x S
    square of the rescaled window, exactly what the pipeline cuts)."""
    import torch

    import data_load

    where = "data_load.py"
    window = stored_sample("window")
    for name in ("train_transform", "test_transform"):
        with implemented(name, f"{where} ({name})"):
            transform = getattr(data_load, name)(input_size)
            out = transform(window)
        _check_pipeline_order(f"{name}({input_size})", transform)
        image, keypoints = out.get("image"), out.get("keypoints")
        assert isinstance(image, torch.Tensor) and isinstance(keypoints, torch.Tensor), (
            f"{name} should end with tensors (ToTensor), got {type(image).__name__} and {type(keypoints).__name__}")
        size = (1, input_size, input_size)
        assert tuple(image.shape) == size, f"{name}({input_size}) should give a 1 x {input_size} x {input_size} image, got {tuple(image.shape)}"
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0, f"{name}: the image values must be in [0, 1]: Normalize"
        assert tuple(keypoints.shape) == (68, 2), f"{name}: the keypoints must be a 68 x 2 tensor, got {tuple(keypoints.shape)}"
        assert float(keypoints.abs().max()) < 1.5, f"{name}: the keypoints must be normalised to about [-1, 1]: Normalize"

    # the training transform: random, and every point still on its pixel
    marked = stored_sample("window_marker")
    draws = []
    for _ in range(6):
        out = data_load.train_transform(input_size)(marked)
        spot = _bright_spot(out["image"][0].numpy())
        point = data_load.denormalize_keypoints(out["keypoints"].numpy(), input_size)[30]
        assert spot is not None, "train_transform loses the face: cut the random window from the rescaled window"
        offset = float(np.linalg.norm(spot - point))
        assert offset < 1.5, (
            f"train_transform moves keypoint 30 {offset:.1f} px away from its pixel: each of its steps must move the "
            "keypoints with the image")
        draws.append(tuple(np.round(point, 2)))
    assert len(set(draws)) > 1, "train_transform gives the same window every time: use RandomCrop (the face should move a little)"
    passed(f"train_transform({input_size}) gives a 1 x {input_size} x {input_size} image in [0, 1] and keypoints in [-1, 1], at random "
           "places, every point on its pixel")

    # the test transform: the stored answer, every time (six times: two random windows are alike once in a few hundred)
    out, *others = [data_load.test_transform(input_size)(window) for _ in range(6)]
    assert all(torch.equal(out["image"], o["image"]) and torch.equal(out["keypoints"], o["keypoints"]) for o in others), (
        "test_transform must give the same result every time: nothing random (CenterCrop, not RandomCrop)")
    key = f"pipelines/test/{input_size}"
    if f"{key}/keypoints" in _stored():
        shift = out["keypoints"].numpy() * input_size / 2 - expected(f"{key}/keypoints") * input_size / 2
        assert np.abs(shift).max() < 0.05, (
            f"test_transform({input_size}) frames the face {np.round(shift.mean(axis=0), 2).tolist()} px (x, y) away from "
            f"the pipeline's crop: Rescale the window to round({input_size} * WINDOW_MARGIN) = {round(input_size * data_load.WINDOW_MARGIN)} "
            f"px, then CenterCrop({input_size})")
        difference = float(np.abs(out["image"][0].numpy() - expected(f"{key}/image")).mean())
        assert difference < 0.01, (
            f"test_transform({input_size}) gives other gray values than expected (mean difference {difference:.3f}): "
            "Rescale, CenterCrop, Normalize, ToTensor, and no other change of the pixels")
    passed(f"test_transform({input_size}) cuts the middle {input_size} x {input_size} square, as the pipeline does, the same every time")


# ---------------------------------------------------------------------------------------------------------
# Notebook 2: the network (models.py), the training loop, the loss and the optimizer
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
    """``Net`` in models.py: an input size the pipeline can use, 136 outputs per image for any batch size,
    convolutional, every layer trained."""
    import torch
    import torch.nn as nn

    import models

    net_class = net_class or models.Net
    size = getattr(net_class, "input_size", None)
    assert isinstance(size, int) and 32 <= size <= 256, (
        f"Net.input_size should be the side of the square input in pixels, a whole number from 32 to 256 (the "
        f"reference design: 112), got {size!r}")
    torch.manual_seed(0)
    with implemented("Net.__init__", "models.py"):
        net = net_class()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs, "Net has no nn.Conv2d layer: define the convolution stages in Net.__init__"
    assert convs[0].in_channels == 1, f"the first convolution should take 1 (gray) channel, not {convs[0].in_channels}"
    passed(f"Net builds, with {len(convs)} convolution layer(s) and {models.count_parameters(net):,} parameters")

    x = torch.rand(2, 1, size, size)
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
    passed(f"Net maps N x 1 x {size} x {size} to N x 136, finite, for any batch size")

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


def _check_call_order(calls: list[str], batches: int) -> None:
    """For each of ``batches`` batches: zero_grad, backward, step; name the call that is missing or out of place."""
    order = " -> ".join(calls) or "none of them"
    assert "backward" in calls, f"loss.backward() is never called (the calls were: {order}): the optimizer has no gradients to step with"
    assert "step" in calls, f"optimizer.step() is never called (the calls were: {order}): call it after loss.backward()"
    assert calls.count("step") == batches and calls.count("backward") == batches, (
        f"for {batches} batches the calls were {order}: one loss.backward() and one optimizer.step() per batch")
    segment: list[str] = []
    for call in calls:
        segment.append(call)
        if call != "step":
            continue
        backward = len(segment) - 1 - segment[::-1].index("backward") if "backward" in segment else None
        assert backward is not None, f"an optimizer.step() comes before its loss.backward() ({order}): backward first, then step"
        assert "zero_grad" not in segment[backward:], (
            f"optimizer.zero_grad() comes between loss.backward() and optimizer.step() ({order}), so the step finds no "
            "gradients: clear them first, in the order zero_grad, loss, backward, step")
        segment = []


def _linear_model(prefix: str) -> Any:
    """The stored tiny model of a check: ``prefix``/weight and /bias of one nn.Linear(64, 136) after nn.Flatten."""
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 136))
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(expected(f"{prefix}/weight")))
        model[1].bias.copy_(torch.from_numpy(expected(f"{prefix}/bias")))
    return model


def _batches(prefix: str) -> list[dict]:
    """The stored batches of a check: {"image": N x 1 x 8 x 8, "keypoints": N x 68 x 2} each."""
    import torch

    images, keypoints = expected(f"{prefix}/images"), expected(f"{prefix}/keypoints")
    return [{"image": torch.from_numpy(i.copy()), "keypoints": torch.from_numpy(k.copy())} for i, k in zip(images, keypoints)]


def _mode_recorder(model: Any) -> list[tuple[bool, bool]]:
    """A list that fills with (the model's training flag, whether gradients are being recorded) at each forward pass."""
    import torch

    seen: list[tuple[bool, bool]] = []
    model.register_forward_hook(lambda module, inputs, output: seen.append((module.training, torch.is_grad_enabled())))
    return seen


def check_train_one_epoch(train_one_epoch: Callable[..., float]) -> None:
    """``train_one_epoch(model, loader, criterion, optimizer, device)`` of notebook 2 on a stored tiny model and two
    stored batches, with plain SGD: the model put in training mode, one step per batch (zero the gradients, the
    loss of the model's output against the flattened keypoints, backpropagate, step), the weights and the mean loss
    of the stored answer."""
    import torch
    import torch.nn as nn

    where = "the cell above"
    model = _linear_model("train_step").eval()  # the function must put it in training mode itself
    batches = _batches("train_step")
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)  # gradients left over from an earlier step
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = _record_calls(model, optimizer)
    seen = _mode_recorder(model)
    with implemented("train_one_epoch", where):
        loss = train_one_epoch(model, batches, nn.MSELoss(), optimizer, "cpu")
    if isinstance(loss, torch.Tensor):
        raise AssertionError("train_one_epoch should return the mean loss as a plain number: add up loss.item() (a tensor keeps the whole graph alive)")
    assert isinstance(loss, float) and math.isfinite(loss), f"train_one_epoch should return the mean loss as a number, got {type(loss).__name__} {loss!r}"
    assert seen, "train_one_epoch never calls the model: compute its output for each batch's images"
    assert all(training for training, _ in seen), (
        "train_one_epoch runs the model in evaluation mode: call model.train() first (dropout and batch "
        "normalisation behave differently while training)")
    _check_call_order(calls, len(batches))
    weight, bias = (p.detach().numpy() for p in model[1].parameters())
    if np.allclose(weight, expected("train_step/stale_weight"), atol=1e-5):
        raise AssertionError("the steps used gradients left over from earlier batches: call optimizer.zero_grad() before loss.backward()")
    right = abs(loss - float(expected("train_step/loss"))) < 1e-5
    assert right, (
        f"train_one_epoch returned {loss:.5f}; the mean of the batches' losses before their steps is "
        f"{float(expected('train_step/loss')):.5f}: the loss of each batch is criterion(model(images), keypoints) with the "
        "keypoints flattened to N x 136 like the output, and the epoch's loss the mean over its faces")
    assert np.allclose(weight, expected("train_step/weight_after"), atol=1e-5) and np.allclose(bias, expected("train_step/bias_after"), atol=1e-5), (
        "the weights changed, but not by one optimizer step per batch on that batch's loss: zero the gradients, then "
        "loss.backward() and optimizer.step(), once per batch")
    passed("train_one_epoch trains in training mode, one step per batch from fresh gradients, and returns the mean loss")


def check_validate(validate: Callable[..., tuple[float, float]]) -> None:
    """``validate(model, loader, criterion, device)`` of notebook 2 on a stored tiny model (with batch
    normalisation and dropout) and three stored batches: the mean loss and NME_io of the stored answer, in
    evaluation mode, without recording gradients, the model left unchanged."""
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 136))
    model.load_state_dict({name: torch.from_numpy(expected(f"validate/state/{name}").copy()) for name in model.state_dict()})
    model.train()  # the function must switch to evaluation mode itself
    before = {name: value.clone() for name, value in model.state_dict().items()}
    seen = _mode_recorder(model)
    with implemented("validate", "the cell above"):
        result = validate(model, _batches("validate"), nn.MSELoss(), "cpu")
    assert isinstance(result, (tuple, list)) and len(result) == 2, f"validate should return two numbers, (loss, NME_io), got {result!r}"
    loss, nme = result
    assert all(isinstance(v, float) for v in (loss, nme)), (
        f"validate should return plain numbers (float(...), .item()), got {type(loss).__name__} and {type(nme).__name__}")
    assert seen, "validate never calls the model"
    assert not any(training for training, _ in seen), (
        "validate runs the model in training mode: call model.eval() first (dropout would switch off random values, "
        "and batch normalisation would use and change the batch's statistics)")
    assert not any(grad for _, grad in seen), "validate records gradients: predict inside torch.no_grad(), validation needs none"
    changed = [name for name, value in model.state_dict().items() if not torch.equal(value, before[name])]
    assert not changed, f"validate changes the model ({', '.join(changed[:3])}): it must only measure it"
    want_loss, want_nme = float(expected("validate/loss")), float(expected("validate/nme"))
    assert abs(loss - want_loss) < 1e-5 * max(1.0, want_loss), (
        f"validate's loss is {loss:.5f}, the mean of the batches' losses is {want_loss:.5f}: criterion(model(images), "
        "keypoints flattened to N x 136), averaged over the faces")
    assert abs(nme - want_nme) < 1e-4, (
        f"validate's NME_io is {nme:.4f}, it should be {want_nme:.4f}: the mean over all faces of "
        "evaluation.nme_interocular(predicted, true), both N x 68 x 2 (in input pixels, or in [-1, 1]: NME does not "
        "depend on the scale)")
    passed(f"validate measures in evaluation mode without gradients: loss {loss:.4f}, NME_io {nme:.4f}")


def check_training_choices(criterion: Any, optimizer: Any, net: Any, train_one_epoch: Callable[..., float], batch: dict,
                           schedule: Any = None, steps: int = 15) -> None:
    """The loss, optimizer and schedule of notebook 2: ``criterion`` maps (N, 2K) predictions and targets to a
    number, zero when they agree; ``optimizer`` updates ``net``'s weights at a usual learning rate; ``schedule`` is
    None or a learning-rate schedule of that optimizer; and together they learn: a copy of ``net`` trained with the
    students' ``train_one_epoch`` for ``steps`` steps on one small ``batch`` brings its loss down (the mean of the
    last three below 90 % of the first: memorising a batch is the easiest thing a network can do)."""
    import torch

    target = torch.rand(4, 136) * 2 - 1
    with implemented("criterion", "the cell above"):
        same = criterion(target.clone().requires_grad_(), target)
        different = criterion((target + 0.1).requires_grad_(), target)
    assert isinstance(same, torch.Tensor) and same.dim() == 0, (
        f"criterion(prediction, target) should give one number (a 0-dimensional tensor), got {getattr(same, 'shape', same)}")
    assert same.item() < 1e-6 < different.item() and different.requires_grad, (
        "criterion should be 0 when the prediction equals the target, above 0 otherwise, and differentiable: a loss "
        "object such as nn.MSELoss(), nn.SmoothL1Loss(beta=0.02) or training.WingLoss(input_size)")
    assert isinstance(optimizer, torch.optim.Optimizer), f"optimizer should be a torch.optim optimizer, got {type(optimizer).__name__}"
    mine = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert mine == {id(p) for p in net.parameters()}, "the optimizer must update the weights of net: build it on net.parameters()"
    lr = float(optimizer.defaults.get("lr", 0.0))
    assert 1e-5 <= lr <= 0.1, f"a learning rate of {lr:g} is far outside the usual range (about 1e-4 to 1e-2; 1e-3 is a common start for Adam)"
    if schedule is not None:
        assert callable(getattr(schedule, "step", None)) and getattr(schedule, "optimizer", optimizer) is optimizer, (
            "schedule should be None or a schedule of this optimizer, such as torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)")
    passed(f"criterion {type(criterion).__name__}, optimizer {type(optimizer).__name__} at lr {lr:g}"
           + (f", schedule {type(schedule).__name__}" if schedule is not None else ", no schedule"))

    from pipeline import training

    torch.manual_seed(0)
    trial = copy.deepcopy(net)
    trial_optimizer = training.same_optimizer(optimizer, trial.parameters())
    with implemented("train_one_epoch", "its cell above"):
        losses = [train_one_epoch(trial, [batch], criterion, trial_optimizer, "cpu") for _ in range(steps)]
    assert all(math.isfinite(value) for value in losses), (
        f"the loss became NaN or infinite with {type(optimizer).__name__} at lr {lr:g}: the steps are too large, lower the learning rate")
    last = float(np.mean(losses[-3:]))
    assert last < 0.9 * losses[0], (
        f"with {type(optimizer).__name__} at lr {lr:g} and {type(criterion).__name__}, the loss of {len(batch['image'])} faces "
        f"went from {losses[0]:.4f} to {last:.4f} (mean of the last 3) in {steps} steps; it should fall clearly: try "
        "another learning rate (about 1e-3 is a common start for Adam)")
    passed(f"they learn a small batch: {losses[0]:.4f} -> {last:.4f} in {steps} steps")


class _CountingLoader:
    """Batches that count how many times they are gone through (an epoch each), like a DataLoader."""

    def __init__(self, batches: list[dict]) -> None:
        self.batches, self.passes = batches, 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict]:
        self.passes += 1
        return iter(self.batches)


def _tiny_faces(count: int, seed: int, size: int = 32) -> list[dict]:
    """Batches of 4 random 1 x size x size images with keypoints of cartoon faces normalised to [-1, 1]."""
    import torch

    from resources import artwork

    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        faces = [artwork.face_keypoints(rng.uniform(12, 20, 2), rng.uniform(14, 20), rng.uniform(-10, 10)) for _ in range(4)]
        keypoints = (np.stack(faces) - size / 2) / (size / 2)
        batches.append({"image": torch.from_numpy(rng.random((4, 1, size, size), dtype=np.float32)),
                        "keypoints": torch.from_numpy(keypoints.astype(np.float32))})
    return batches


@contextlib.contextmanager
def _recording(module: Any, name: str, calls: list) -> Iterator[None]:
    """Record each call of ``module.name`` (its keyword arguments) while the block runs, then restore it."""
    original = getattr(module, name)

    def recorded(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(*args, **kwargs)

    setattr(module, name, recorded)
    try:
        yield
    finally:
        setattr(module, name, original)


@contextlib.contextmanager
def _scripted_validation(fit: Callable[..., dict], errors: list[float]) -> Iterator[None]:
    """While the block runs, the ``validate`` that ``fit`` calls (a name of the notebook, ``fit.__globals__``) gives
    its real loss but the next NME_io of ``errors``, so that a check knows which epochs are the best."""
    namespace = getattr(fit, "__globals__", {})
    original = namespace.get("validate")
    if not callable(original):
        yield
        return

    def scripted(*args: Any, **kwargs: Any) -> tuple[float, float]:
        loss, _ = original(*args, **kwargs)
        return loss, errors.pop(0) if errors else 1.0

    namespace["validate"] = scripted
    try:
        yield
    finally:
        namespace["validate"] = original


def check_fit(fit: Callable[..., dict]) -> None:
    """``fit(model, train_loader, val_loader, criterion, optimizer, epochs, checkpoint_file, best_file, schedule,
    device)`` of notebook 2, on a tiny model and tiny loaders in a temporary folder, with the validation errors of
    the epochs set by the check (0.30, 0.35, then 0.32 after resuming): one pass over each loader an epoch, the
    schedule stepped each epoch, the history of every epoch, the model saved (``models.save_model``) exactly at the
    epochs whose validation NME_io beats all before, a checkpoint each epoch (``training.save_checkpoint``), and a
    second call that resumes where the first stopped, with the history and the best error so far."""
    import torch
    import torch.nn as nn

    import models
    from pipeline import training

    def setup(seed: int) -> tuple:
        torch.manual_seed(seed)
        model = models.build_model("fast", input_size=32, widths=(8, 16), depths=(0,), head_channels=4, hidden=32)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        return model, optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3)

    train_loader, val_loader = _CountingLoader(_tiny_faces(2, 0)), _CountingLoader(_tiny_faces(1, 1))
    keys = ("epoch", "train_loss", "val_loss", "val_nme_io")
    with tempfile.TemporaryDirectory() as folder:
        checkpoint_file, best_file = Path(folder) / "run" / "last.pt", Path(folder) / "best.pt"
        saves: list[dict] = []
        checkpoints: list[dict] = []
        model, optimizer, schedule = setup(0)
        with _recording(models, "save_model", saves), _recording(training, "save_checkpoint", checkpoints), \
                _scripted_validation(fit, [0.30, 0.35]), implemented("fit", "the cell above"):
            history = fit(model, train_loader, val_loader, nn.MSELoss(), optimizer, 2, checkpoint_file, best_file, schedule, "cpu")
        assert isinstance(history, dict) and all(key in history for key in keys), (
            'fit should return the history: a dict with the lists "epoch", "train_loss", "val_loss" and "val_nme_io"')
        assert all(len(history[key]) == 2 for key in keys), (
            f"after 2 epochs the history should hold 2 values of each, got {[len(history[k]) for k in keys]}")
        assert train_loader.passes == 2 and val_loader.passes == 2, (
            f"2 epochs should go through the training batches twice and the validation batches twice (train_one_epoch, "
            f"then validate, each epoch), got {train_loader.passes} and {val_loader.passes}")
        assert schedule.last_epoch == 2, (
            f"the schedule was stepped {schedule.last_epoch} times in 2 epochs: call schedule.step() once an epoch, after "
            "validation (when there is a schedule)")
        assert len(checkpoints) == 2 and checkpoint_file.is_file(), (
            f"fit should save a checkpoint after each epoch with training.save_checkpoint(checkpoint_file, model, "
            f"optimizer, schedule, epoch=..., history=..., best=...), got {len(checkpoints)} in 2 epochs")
        values = [float(v) for v in history["val_nme_io"]]
        best_epochs = [e + 1 for e in range(len(values)) if values[e] < min(values[:e], default=math.inf)]
        saved_epochs = [int(call.get("epoch", -1)) for call in saves]
        assert saved_epochs == best_epochs, (
            f"with validation NME_io {', '.join(f'{v:.4f}' for v in values)} the model should be saved after epoch(s) "
            f"{best_epochs} (each time it beats every epoch before), got saves after {saved_epochs or 'none'}: call "
            "models.save_model(model, best_file, epoch=epoch + 1, val_nme_io=...) only when the validation error improves")
        _, meta = models.load_model(best_file)
        assert abs(float(meta.get("val_nme_io", math.nan)) - min(values)) < 1e-6, (
            f"the saved model should carry the best validation NME_io ({min(values):.4f}), got {meta.get('val_nme_io')}")
        passed("fit trains and validates each epoch, steps the schedule, saves a checkpoint each epoch and the model at its best epochs")

        first = [float(v) for v in history["train_loss"]]
        model, optimizer, schedule = setup(1)  # as after a disconnect: everything made afresh
        saves.clear()
        with _recording(models, "save_model", saves), _scripted_validation(fit, [0.32]), implemented("fit", "the cell above"):
            resumed = fit(model, train_loader, val_loader, nn.MSELoss(), optimizer, 3, checkpoint_file, best_file, schedule, "cpu")
        assert train_loader.passes == 3, (
            f"asked for 3 epochs after a checkpoint of 2, fit went through the training batches {train_loader.passes - 2} "
            "more times, not 1: read the checkpoint first (training.load_checkpoint) and start after its epoch")
        assert isinstance(resumed, dict) and len(resumed.get("train_loss", [])) == 3 and [float(v) for v in resumed["train_loss"][:2]] == first, (
            "a resumed training should go on with the history of the checkpoint: take it (and the best error so far) "
            "from what training.load_checkpoint returns")
        assert not saves, (
            "after resuming, epoch 3 (validation NME_io 0.32) does not beat epoch 1 (0.30), yet the model was saved: take "
            "the best error so far from the checkpoint too")
        model, optimizer, schedule = setup(2)
        with implemented("fit", "the cell above"):
            fit(model, train_loader, val_loader, nn.MSELoss(), optimizer, 3, checkpoint_file, best_file, schedule, "cpu")
        assert train_loader.passes == 3, "with a checkpoint of all 3 epochs, fit should train no more"
    passed("fit resumes from the checkpoint: it trains only the epochs left, and keeps the history and the best error")


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
# Notebook 3: from a detected box to keypoints, by hand
# ---------------------------------------------------------------------------------------------------------
COURSE_MODEL = Path(__file__).resolve().parents[1] / "saved_models" / "keypoints_course.pt"


def _check_models() -> list[tuple[str, Any]]:
    """Two keypoint models the by-hand path must handle: the course model (112 px, trained) and a small random one
    of another input size with batch normalisation whose statistics differ from a batch's, both in training mode."""
    import torch

    import models

    course, _ = models.load_model(COURSE_MODEL)
    torch.manual_seed(0)
    small = models.build_model("fast", input_size=64, widths=(8, 16, 32), depths=(0, 0), head_channels=8, hidden=64)
    with torch.no_grad():
        for module in small.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return [("the course model (112 px)", course.train()), ("a small model of 64 px", small.train())]


def check_keypoints_from_boxes(keypoints_from_boxes: Callable[[np.ndarray, Any, Any], Any], picture: np.ndarray, boxes: Any) -> None:
    """``keypoints_from_boxes(picture, boxes, model)`` of notebook 3 gives, for each face box of ``picture``, the
    keypoints that the pipeline's one plain pass (``KeypointPipeline(runner=model, flip_average=False,
    refine=False)``) gives for the same boxes, in the picture's pixels, to within 0.5 px, for two models of
    different input sizes handed over in training mode; with the model in evaluation mode and no gradients
    recorded while it predicts; and a (0, 68, 2) array for no box."""
    import torch

    from pipeline.keypoint_pipeline import KeypointPipeline

    boxes = [np.asarray(box, np.float64) for box in boxes]
    assert boxes, "the check needs a picture with at least one detected face"
    height, width = picture.shape[:2]
    side = float(np.median([b[2] for b in boxes]))
    boxes = boxes + [np.array([width - 0.6 * side, height - 0.7 * side, side, side])]  # a face box over the corner: padding
    for label, model in _check_models():
        reference = KeypointPipeline(runner=copy.deepcopy(model).eval(), flip_average=False, refine=False)
        truth = reference.keypoints_for_boxes(picture, boxes)
        seen = _mode_recorder(model)
        with implemented("keypoints_from_boxes", "the cell above"):
            got = keypoints_from_boxes(picture, boxes, model)
            none = keypoints_from_boxes(picture, [], model)
        if isinstance(got, torch.Tensor):
            got = got.detach().cpu().numpy()
        got = np.asarray(got, np.float64)
        assert got.shape == truth.shape, (
            f"with {label} and {len(boxes)} boxes, keypoints_from_boxes should return shape {truth.shape} (one (68, 2) "
            f"array of (x, y) per box), got {got.shape}")
        assert np.asarray(none).shape == (0, 68, 2), f"with no box, keypoints_from_boxes should return shape (0, 68, 2), got {np.asarray(none).shape}"
        assert seen, f"keypoints_from_boxes never calls the model it is given ({label})"
        assert not any(training for training, _ in seen), (
            "the model predicts in training mode: call model.eval() first (batch normalisation would use the batch's "
            "statistics and dropout would switch off random values)")
        assert not any(grad for _, grad in seen), "the model predicts while recording gradients: predict inside torch.no_grad()"
        offset = float(np.abs(got - truth).max())
        size = model.input_size
        if offset >= 0.5 and np.abs(got).max() <= 1.5:
            raise AssertionError(f"{label}: the keypoints are still normalised to [-1, 1]: un-normalise them to the pixels of the {size} px crop")
        if offset >= 0.5 and got.min() >= -size * 0.5 and got.max() <= size * 1.5 and truth.max() > size * 1.5:
            raise AssertionError(f"{label}: the keypoints are still in the pixels of the {size} px crop: map them back to the picture")
        assert offset < 0.5, (
            f"{label}: your keypoints are up to {offset:.1f} px from the pipeline's for the same boxes: check each step "
            "against notebook 1 and the text above (the crop square, the model's input size, the gray values and their "
            "range, the layout of the batch, the un-normalising, the way back to the picture)")
        passed(f"{label}: {len(boxes)} boxes, keypoints within {offset:.3f} px of the pipeline's, predicted in evaluation mode without gradients")


# ---------------------------------------------------------------------------------------------------------
# Notebook 4: placing artwork (filters.py)
# ---------------------------------------------------------------------------------------------------------
PLACEMENT_ROLLS = (-20.0, 0.0, 25.0)


def check_placement() -> None:
    """``Artwork.target_points`` and ``placement_transform`` in filters.py: each anchor of the sunglasses, the
    moustache and the hat lands where the stored answer puts it, on upright and rolled faces, with a similarity
    transform."""
    from resources import artwork
    import filters

    where = "filters.py"
    glasses = filters.load_artwork("sunglasses")
    keypoints = expected("placement/keypoints")
    with implemented("Artwork.target_points", f"{where} (Artwork.target_points)"):
        targets = np.asarray(glasses.target_points(keypoints.copy()), np.float64)
    right = expected("placement/targets")
    assert targets.shape == right.shape, f"target_points should give one (x, y) per anchor, shape {right.shape}, got {targets.shape}"
    assert np.allclose(targets, right, atol=1e-6), "each target should be the mean of the keypoints of its group (self.targets)"
    passed("target_points averages each group of keypoints")

    for index, roll in enumerate(PLACEMENT_ROLLS):
        face = expected("placement/faces")[index]
        for name in artwork.ACCESSORIES:
            art = filters.load_artwork(name)
            with implemented("placement_transform", f"{where} (placement_transform)"):
                matrix = np.asarray(filters.placement_transform(name, face.copy()), np.float64)
            assert matrix.shape == (2, 3), f"placement_transform should return a 2 x 3 matrix, got shape {matrix.shape}"
            (a, b, _), (c, d, _) = matrix
            assert abs(a - d) < 1e-6 and abs(b + c) < 1e-6 and a * d - b * c > 0, (
                f"the {name} matrix is not a similarity (it shears, stretches or mirrors): use filters.similarity_transform")
            placed = artwork.apply_matrix(matrix, art.anchors)
            error = float(np.abs(placed - expected(f"placement/{name}")[index]).max())
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
