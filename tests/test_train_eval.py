"""Tests for evaluate (metrics, baselines, prediction geometry) and train (loss, splits, the loop, resuming)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import data_load
from pipeline import evaluation
from pipeline import inference
from pipeline import trainer
from pipeline import training
from conftest import MEAN_SHAPE_68, TINY_TEST, face_keypoints
from data_load import keypoint_box
from pipeline.evaluation import (
    auc,
    cumulative_error_curve,
    failure_rate,
    interocular_distance,
    mean_shape,
    nme_box,
    nme_interocular,
    place_in_boxes,
    summarize,
)
from models import MODEL_NAMES, ModelError, build_model, load_model
from data_load import split_by_person
from pipeline.trainer import TrainConfig
from pipeline.training import WingLoss


def assert_one_line(message: str, *must_contain: str) -> None:
    assert message.strip() and "\n" not in message.strip(), f"not one line: {message!r}"
    for text in must_contain:
        assert text in message, f"{text!r} not in {message!r}"


def faces() -> np.ndarray:
    """Three plausible 68-point faces of different sizes: (3, 68, 2)."""
    return np.stack([face_keypoints(box) for box in [(20, 30, 100, 110), (5, 8, 40, 44), (60, 10, 150, 140)]])


def shifted(truth: np.ndarray, fraction: float, angle_degrees: float = 30.0) -> np.ndarray:
    """Every point moved by ``fraction`` of its face's interocular distance, in one direction."""
    direction = np.array([np.cos(np.radians(angle_degrees)), np.sin(np.radians(angle_degrees))])
    return truth + (fraction * interocular_distance(truth))[:, None, None] * direction


# ---------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------
def test_perfect_prediction():
    truth = faces()
    metrics = summarize(truth.copy(), truth)
    assert metrics["n"] == 3
    assert metrics["nme_io"] == 0 and metrics["nme_io_median"] == 0 and metrics["nme_box"] == 0
    assert metrics["fr08"] == 0 and metrics["fr10"] == 0
    assert metrics["auc08"] == pytest.approx(1.0)


def test_interocular_distance_uses_the_outer_eye_corners():
    truth = faces()
    expected = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=-1)
    np.testing.assert_allclose(interocular_distance(truth), expected)
    assert (interocular_distance(truth) > 0).all()


@pytest.mark.parametrize("angle", [0.0, 30.0, 200.0])
def test_shift_of_five_percent_of_the_interocular_distance(angle):
    truth = faces()
    predicted = shifted(truth, 0.05, angle)
    np.testing.assert_allclose(nme_interocular(predicted, truth), 0.05, rtol=1e-6)
    metrics = summarize(predicted, truth)
    assert metrics["nme_io"] == pytest.approx(0.05, rel=1e-6)
    assert metrics["nme_io_median"] == pytest.approx(0.05, rel=1e-6)
    assert metrics["fr10"] == 0 and metrics["fr08"] == 0
    assert metrics["auc08"] == pytest.approx((0.08 - 0.05) / 0.08, abs=0.01)


def test_shift_of_twelve_percent_fails():
    truth = faces()
    metrics = summarize(shifted(truth, 0.12), truth)
    assert metrics["nme_io"] == pytest.approx(0.12, rel=1e-6)
    assert metrics["fr10"] == 1 and metrics["fr08"] == 1
    assert metrics["auc08"] == pytest.approx(0.0, abs=1e-9)


def test_mixed_failures():
    truth = faces()
    predicted = np.concatenate([shifted(truth[:1], 0.02), shifted(truth[1:2], 0.09), shifted(truth[2:], 0.2)])
    metrics = summarize(predicted, truth)
    assert metrics["fr08"] == pytest.approx(2 / 3) and metrics["fr10"] == pytest.approx(1 / 3)
    assert metrics["nme_io_median"] == pytest.approx(0.09, rel=1e-6)
    assert metrics["nme_io"] == pytest.approx((0.02 + 0.09 + 0.2) / 3, rel=1e-6)


def test_auc_and_failure_rate():
    # 801 thresholds 0.0001 apart: every face at 0.04 gives 0.5 plus half a step of the trapezoid rule
    assert auc(np.full(10, 0.04)) == pytest.approx(0.5 + 0.5 * 0.0001 / 0.08, abs=1e-9)
    assert summarize(faces(), faces())["auc08"] == pytest.approx(1.0) and len(cumulative_error_curve(np.zeros(1))[0]) == 801
    assert auc(np.zeros(4)) == pytest.approx(1.0)
    assert auc(np.full(4, 0.5)) == pytest.approx(0.0)
    assert auc(np.array([0.0, 1.0])) == pytest.approx(0.5, abs=0.01)
    assert auc(np.full(3, 0.02), limit=0.04) == pytest.approx(0.5, abs=0.01)
    assert failure_rate(np.array([0.05, 0.1, 0.2, 0.3]), 0.1) == pytest.approx(0.5)  # "exceeds": 0.1 itself passes
    thresholds, share = cumulative_error_curve(np.array([0.01, 0.03, 0.05, 0.2]))
    assert thresholds[0] == 0 and thresholds[-1] == pytest.approx(0.08)
    assert (np.diff(share) >= 0).all() and share[0] == 0 and share[-1] == pytest.approx(0.75)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_nme_interocular_divides_by_the_true_eye_corners_for_scaled_predictions(factor):
    # A prediction scaled about the face's centre has other eye corners than the truth: the divisor stays the
    # truth's. Every point i is off by |factor - 1| |p_i - centre|.
    truth = faces()
    centre = truth.mean(axis=1, keepdims=True)
    predicted = centre + factor * (truth - centre)
    expected = abs(factor - 1) * np.linalg.norm(truth - centre, axis=-1).mean(axis=1) / interocular_distance(truth)
    np.testing.assert_allclose(nme_interocular(predicted, truth), expected, rtol=1e-6)
    assert summarize(predicted, truth)["nme_io"] == pytest.approx(expected.mean(), rel=1e-6)


def test_nme_box_divides_by_the_true_keypoint_box():
    truth = faces()
    predicted = truth + np.array([3.0, 4.0])  # 5 px on every point
    boxes = np.array([keypoint_box(t) for t in truth])
    np.testing.assert_allclose(nme_box(predicted, truth), 5.0 / np.sqrt(boxes[:, 2] * boxes[:, 3]), rtol=1e-5)
    # the box is the truth's, not the prediction's: shrinking the prediction changes nothing in the divisor
    squeezed = truth.mean(axis=1, keepdims=True) + 0.5 * (truth - truth.mean(axis=1, keepdims=True))
    expected = np.linalg.norm(squeezed - truth, axis=-1).mean(axis=1) / np.sqrt(boxes[:, 2] * boxes[:, 3])
    np.testing.assert_allclose(nme_box(squeezed, truth), expected, rtol=1e-5)


def test_mean_shape_and_place_in_boxes():
    rng = np.random.default_rng(0)
    truth = np.stack([face_keypoints((x, y, w, w * 1.1)) for x, y, w in rng.uniform([0, 0, 30], [50, 50, 120], size=(6, 3))])
    truth += rng.normal(0, 1.0, truth.shape).astype(np.float32)
    shape = mean_shape(truth)
    assert shape.shape == (68, 2)
    assert shape.min() >= 0 and shape.max() <= 1
    np.testing.assert_allclose(shape, MEAN_SHAPE_68, atol=0.05)
    boxes = np.array([[10, 20, 100, 80], [0, 0, 30, 60], [-5, 7, 12, 12]], np.float32)
    placed = place_in_boxes(shape, boxes)
    assert placed.shape == (3, 68, 2)
    for points, (x, y, w, h) in zip(placed, boxes):
        assert (points[:, 0] >= x - 1e-4).all() and (points[:, 0] <= x + w + 1e-4).all()
        assert (points[:, 1] >= y - 1e-4).all() and (points[:, 1] <= y + h + 1e-4).all()
    # a shape spanning the unit square fills its box exactly
    unit = np.zeros((68, 2), np.float32)
    unit[1] = (1, 1)
    np.testing.assert_allclose(keypoint_box(place_in_boxes(unit, boxes[:1])[0]), boxes[0], atol=1e-4)


def test_mean_baseline_on_real_data(real_data_dir, tmp_path, capsys):
    out = tmp_path / "out" / "baseline.json"
    assert evaluation.main(["--data", str(real_data_dir), "--baseline", "mean", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in ("n", "nme_io", "nme_io_median", "fr10", "auc08"):
        assert key in result
    assert result["n"] == 770
    # measured by `python evaluate.py --baseline mean`: 0.1969 (0.1925 when divided by the predicted eye corners)
    assert result["nme_io"] == pytest.approx(0.1969, abs=5e-4)
    assert len(result["per_face"]) == 770 and {"name", "nme_io"} <= set(result["per_face"][0])
    assert "nme_io" in capsys.readouterr().out


def test_mean_baseline_with_fkp_data(real_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FKP_DATA", str(real_data_dir))
    out = tmp_path / "baseline.json"
    assert evaluation.main(["--baseline", "mean", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["nme_io"] == pytest.approx(0.1969, abs=5e-4)  # measured, see above


def test_mean_baseline_on_the_tiny_dataset(tiny_dataset, tmp_path):
    out = tmp_path / "baseline.json"
    assert evaluation.main(["--data", str(tiny_dataset), "--baseline", "mean", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == sum(TINY_TEST.values())
    assert {"n", "nme_io", "nme_io_median", "fr10", "auc08", "per_face"} <= set(result)
    assert 0 < result["nme_io"] < 0.1  # the fake faces are all the mean shape plus a little noise


def test_evaluate_main_reports_bad_paths_in_one_line(tmp_path, tiny_dataset, capsys):
    missing = tmp_path / "no_data"
    assert evaluation.main(["--data", str(missing), "--baseline", "mean"]) == 1
    err = capsys.readouterr().err
    assert_one_line(err, str(missing))
    missing_model = tmp_path / "no_model.pt"
    assert evaluation.main(["--data", str(tiny_dataset), "--model", str(missing_model)]) == 1
    assert_one_line(capsys.readouterr().err, missing_model.name)


# ---------------------------------------------------------------------------------------------------------
# Prediction geometry: crop pixels <-> network outputs <-> image pixels
# ---------------------------------------------------------------------------------------------------------
class BrightestPixelNet(nn.Module):
    """A stand-in network that puts every keypoint on the brightest pixel, in normalised units."""

    def __init__(self, input_size: int, num_keypoints: int = 68) -> None:
        super().__init__()
        self.input_size, self.num_keypoints = input_size, num_keypoints
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        index = x.flatten(1).argmax(dim=1)
        xy = torch.stack([index % w, index // w], dim=1).float()
        normalized = (xy - torch.tensor([w / 2, h / 2])) / torch.tensor([w / 2, h / 2])
        return normalized[:, None, :].expand(n, self.num_keypoints, 2).reshape(n, -1) + 0 * self.dummy


@pytest.mark.parametrize("flip_average", [False, True])
def test_predict_crops_returns_crop_pixels(flip_average):
    crops = np.zeros((3, 48, 48), np.float32)
    spots = [(5, 7), (40, 30), (24, 24)]
    for crop, (x, y) in zip(crops, spots):
        crop[y, x] = 1.0
    points = inference.predict_crops(BrightestPixelNet(48), crops, flip_average=flip_average)
    assert points.shape == (3, 68, 2)
    for p, spot in zip(points, spots):
        np.testing.assert_allclose(p, np.broadcast_to(spot, (68, 2)), atol=1e-4)


def test_predict_in_boxes_maps_back_to_image_pixels():
    rng = np.random.default_rng(0)
    images, boxes, spots = [], [], []
    for _ in range(3):
        image = np.zeros((120, 140, 3), np.uint8)
        box = np.array([rng.uniform(20, 50), rng.uniform(10, 30), 50, 50], np.float32)
        cx, cy, side = data_load.crop_square_from_box(box)
        spot = np.round([cx + rng.uniform(-0.2, 0.2) * side, cy + rng.uniform(-0.2, 0.2) * side]).astype(int)
        image[spot[1] - 1 : spot[1] + 2, spot[0] - 1 : spot[0] + 2] = 255  # a 3 x 3 blob
        images.append(image), boxes.append(box), spots.append(spot)
    for flip_average in (False, True):
        points = inference.predict_in_boxes(BrightestPixelNet(64), images, boxes, flip_average)
        assert points.shape == (3, 68, 2)
        for p, spot in zip(points, spots):
            assert np.abs(p - spot).max() <= 1.5


# ---------------------------------------------------------------------------------------------------------
# Training pieces
# ---------------------------------------------------------------------------------------------------------
def check_split(names: list[str], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    train_idx, val_idx = split_by_person(names, val_fraction, seed)
    assert len(set(train_idx.tolist()) & set(val_idx.tolist())) == 0
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(len(names)))
    train_people = {data_load.person_of(names[i]) for i in train_idx}
    val_people = {data_load.person_of(names[i]) for i in val_idx}
    assert not train_people & val_people, f"people on both sides: {train_people & val_people}"
    return train_idx, val_idx


def test_split_by_person_synthetic_names():
    rng = np.random.default_rng(0)
    names = [f"Person_{p}_Name_{k:02d}.jpg" for p in range(40) for k in range(int(rng.integers(1, 6)))]
    rng.shuffle(names)
    for seed in range(3):
        train_idx, val_idx = check_split(names, 0.25, seed)
        assert len({data_load.person_of(names[i]) for i in val_idx}) == 10
    a = split_by_person(names, 0.25, 0)
    assert all(np.array_equal(x, y) for x, y in zip(a, split_by_person(names, 0.25, 0)))  # seeded
    assert not np.array_equal(a[1], split_by_person(names, 0.25, 1)[1])
    assert len(split_by_person(names, 0.0, 0)[1]) == 0


def test_split_by_person_real_names(real_data_dir):
    names, _ = data_load.read_keypoints_csv(real_data_dir / "training_frames_keypoints.csv")
    train_idx, val_idx = check_split(names, 0.1, 0)
    assert 0.03 * len(names) < len(val_idx) < 0.2 * len(names)


def test_split_by_person_tiny_names(tiny_data):
    train_idx, val_idx = check_split(tiny_data.training_names, 0.34, 0)
    assert len(val_idx) == 4  # one of the three people, four faces each


def test_wing_loss():
    loss = WingLoss(input_size=96)
    target = torch.zeros(1, 136)
    assert float(loss(target, target)) == 0.0
    pixels = torch.tensor([0.0, 0.5, 1, 2, 5, 9.9, 10, 10.1, 20, 48])
    values = [float(loss(target + p / 48, target)) for p in pixels]
    assert values[0] == 0
    assert all(b > a for a, b in zip(values, values[1:])), values
    # continuous where the log part meets the linear part (width 10 px)
    assert values[6] == pytest.approx(10 * np.log(1 + 10 / 2), rel=1e-5)
    assert float(loss(target + 10.001 / 48, target)) == pytest.approx(values[6], abs=1e-2)
    assert float(loss(target - 5 / 48, target)) == pytest.approx(values[4], rel=1e-6)  # symmetric
    prediction = torch.full((2, 136), 0.1, requires_grad=True)
    loss(prediction, target.expand(2, 136)).backward()
    assert (prediction.grad > 0).all()


def test_make_loss():
    assert isinstance(training.make_loss("wing", 96), WingLoss)
    assert isinstance(training.make_loss("mse", 96), nn.MSELoss)
    assert isinstance(training.make_loss("smoothl1", 96), nn.SmoothL1Loss)
    with pytest.raises(ValueError):
        training.make_loss("l7", 96)


@pytest.mark.parametrize("name", sorted(trainer.PRESETS))
def test_every_preset_builds_its_optimizer_schedule_and_loss(name):
    config = trainer.PRESETS[name]
    assert config.model in MODEL_NAMES and config.input_size > 0
    model = nn.Linear(4, 2)
    optimizer = trainer.make_optimizer(config, model)
    assert type(optimizer).__name__.lower() == config.optimizer and optimizer.defaults["lr"] == config.lr
    schedule = trainer.make_schedule(config, optimizer, steps_per_epoch=5)
    kinds = {"onecycle": "OneCycleLR", "cosine": "CosineAnnealingLR", "plateau": "ReduceLROnPlateau"}
    assert type(schedule).__name__ == kinds[config.schedule]
    assert float(training.make_loss(config.loss, config.input_size)(torch.zeros(2, 4), torch.ones(2, 4))) > 0
    assert dataclasses.asdict(config) == dataclasses.asdict(TrainConfig(**dataclasses.asdict(config)))


@pytest.mark.parametrize("field_name, value", [("model", "resnet99"), ("optimizer", "sgd"), ("schedule", "step"), ("loss", "l7")])
def test_a_config_with_an_unknown_name_is_refused_in_one_line(field_name, value):
    with pytest.raises(ValueError) as info:
        dataclasses.replace(trainer.PRESETS["cpu"], **{field_name: value})
    assert_one_line(str(info.value), f"Unknown {field_name} {value!r}: choose one of")


def test_load_context_crops_caches_in_the_given_folder(tiny_data, tmp_path, monkeypatch):
    cache = tmp_path / "my_cache"
    crops = data_load.load_context_crops("training", 32, tiny_data.path, cache_dir=cache)
    assert crops["images"].shape == (12, data_load.context_size(32), data_load.context_size(32))
    assert crops["names"].tolist() == tiny_data.training_names
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"

    def no_cutting(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(data_load, "cut_context_crops", no_cutting)
    again = data_load.load_context_crops("training", 32, tiny_data.path, cache_dir=cache)
    for key in ("images", "keypoints", "names"):
        np.testing.assert_array_equal(again[key], crops[key])


# ---------------------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------------------
SMALL_FAST = {"input_size": 32, "widths": (8, 16, 24, 32), "head_channels": 8, "hidden": 32}


def small_config(**overrides) -> TrainConfig:
    """A 2-epoch run of a tiny fast model that takes well under a second on the tiny dataset."""
    settings = dict(
        model="fast", model_kwargs=dict(SMALL_FAST), epochs=2, batch_size=4, lr=1e-2, schedule="cosine",
        val_fraction=0.34, limit=64, seed=0,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def quiet(message: str) -> None:
    pass


def test_two_epochs_lower_the_loss_and_write_last_pt(tiny_data, tmp_path, isolated_cache):
    config = small_config()
    run_dir = tmp_path / "run"
    crops = data_load.load_context_crops("training", 32, tiny_data.path, cache_dir=tmp_path / "c")
    train_idx, val_idx = split_by_person(crops["names"].tolist(), config.val_fraction, config.seed)
    loss_fn = training.make_loss(config.loss, 32)
    torch.manual_seed(config.seed)
    untrained = build_model("fast", **SMALL_FAST)
    loss_before, _ = trainer.validate(untrained, crops, train_idx, 32, loss_fn, "cpu")

    log: list[str] = []
    model, history = trainer.train(config, str(tiny_data.path), run_dir, progress=False, log=log.append)
    assert history["epoch"] == [1, 2]
    assert history["train_loss"][1] < history["train_loss"][0]
    assert all(np.isfinite(history["val_loss"])) and all(0 < v < 1 for v in history["val_nme_io"])
    loss_after, _ = trainer.validate(model, crops, train_idx, 32, loss_fn, "cpu")
    assert loss_after < 0.9 * loss_before
    assert not model.training
    assert any(line.startswith(f"faces: {len(train_idx)} training, {len(val_idx)} validation") for line in log)
    assert sum(line.startswith("epoch") for line in log) == 2

    last = run_dir / "last.pt"
    assert last.is_file()
    assert sorted(p.name for p in run_dir.iterdir()) == ["last.pt"]  # atomic: no temporaries left
    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 2 and state["history"] == history
    assert state["config"] == dataclasses.asdict(config)
    loaded, meta = load_model(last)  # the run checkpoint is also a loadable model
    assert meta["architecture"] == "fast" and meta["input_size"] == 32
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert list(isolated_cache.iterdir())  # crops were cached under tmp_path, not in the repository


def test_training_is_reproducible_with_the_seed(tiny_dataset, tmp_path, isolated_cache):
    _, first = trainer.train(small_config(), str(tiny_dataset), tmp_path / "a", progress=False, log=quiet)
    _, second = trainer.train(small_config(), str(tiny_dataset), tmp_path / "b", progress=False, log=quiet)
    assert first["train_loss"] == second["train_loss"] and first["val_loss"] == second["val_loss"]


def test_limit_restricts_the_training_faces(tiny_dataset, tmp_path, isolated_cache):
    log: list[str] = []
    config = small_config(epochs=1, limit=3, val_fraction=0.0, augment={})
    _, history = trainer.train(config, str(tiny_dataset), None, progress=False, log=log.append)
    assert any(line.startswith("faces: 3 training, 0 validation") for line in log)
    assert history["epoch"] == [1] and np.isnan(history["val_loss"][0])


class Interrupt(Exception):
    pass


ORIGINAL_TRAIN_ONE_EPOCH = trainer.train_one_epoch


def interrupt_on_call(monkeypatch, call: int) -> dict:
    """Make train_one_epoch raise on its ``call``-th call (1-based; 0: never); returns the call counter."""
    original = ORIGINAL_TRAIN_ONE_EPOCH
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise Interrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", wrapper)
    return calls


def test_resume_continues_an_interrupted_run(tiny_dataset, tmp_path, isolated_cache, monkeypatch):
    config = small_config(epochs=3)
    run_dir = tmp_path / "run"
    interrupt_on_call(monkeypatch, 2)
    with pytest.raises(Interrupt):
        trainer.train(config, str(tiny_dataset), run_dir, progress=False, log=quiet)
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    first_loss = state["history"]["train_loss"][0]

    calls = interrupt_on_call(monkeypatch, 0)  # count only
    log: list[str] = []
    _, history = trainer.train(config, str(tiny_dataset), run_dir, resume=True, progress=False, log=log.append)
    assert calls["n"] == 2  # epochs 2 and 3 only
    assert history["epoch"] == [1, 2, 3]
    assert history["train_loss"][0] == first_loss
    assert any("resumed" in line and "epoch 1" in line for line in log)
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 3


def test_an_interrupted_checkpoint_write_leaves_the_previous_last_pt_whole(tiny_dataset, tmp_path, isolated_cache, monkeypatch):
    # The second epoch's checkpoint write is cut off half-way (a crash, a full disk): the first epoch's stays.
    real_save, calls = torch.save, {"n": 0}

    def torn_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] < 2:
            return real_save(obj, f, *args, **kwargs)
        if hasattr(f, "write"):
            f.write(b"PK\x03\x04 half a checkpoint")
        else:
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise Interrupt

    monkeypatch.setattr(torch, "save", torn_save)
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupt):
        trainer.train(small_config(epochs=3), str(tiny_dataset), run_dir, progress=False, log=quiet)
    assert calls["n"] == 2
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 1
    assert [p.name for p in run_dir.iterdir()] == ["last.pt"]


def test_resume_of_a_finished_run_returns_its_history(tiny_dataset, tmp_path, isolated_cache, monkeypatch):
    config = small_config()
    run_dir = tmp_path / "run"
    model, history = trainer.train(config, str(tiny_dataset), run_dir, progress=False, log=quiet)

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(trainer, "train_one_epoch", must_not_train)
    resumed, resumed_history = trainer.train(config, str(tiny_dataset), run_dir, resume=True, progress=False, log=quiet)
    assert resumed_history == history
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(resumed(x), model(x))


def test_resume_refuses_a_missing_or_different_run(tiny_dataset, tmp_path, isolated_cache):
    with pytest.raises(ModelError) as info:
        trainer.train(small_config(), str(tiny_dataset), tmp_path / "empty_run", resume=True, progress=False, log=quiet)
    assert_one_line(str(info.value), "last.pt")
    run_dir = tmp_path / "run"
    trainer.train(small_config(epochs=1), str(tiny_dataset), run_dir, progress=False, log=quiet)
    with pytest.raises(ModelError) as info:
        trainer.train(small_config(epochs=1, lr=5e-3), str(tiny_dataset), run_dir, resume=True, progress=False, log=quiet)
    assert_one_line(str(info.value), "last.pt")


def test_resumed_run_matches_the_uninterrupted_run(tiny_dataset, tmp_path, isolated_cache, monkeypatch):
    config = small_config(epochs=2)
    _, straight = trainer.train(config, str(tiny_dataset), tmp_path / "straight", progress=False, log=quiet)
    interrupt_on_call(monkeypatch, 2)
    with pytest.raises(Interrupt):
        trainer.train(config, str(tiny_dataset), tmp_path / "broken", progress=False, log=quiet)
    monkeypatch.setattr(trainer, "train_one_epoch", ORIGINAL_TRAIN_ONE_EPOCH)  # (undo() would also drop isolated_cache)
    _, resumed = trainer.train(config, str(tiny_dataset), tmp_path / "broken", resume=True, progress=False, log=quiet)
    np.testing.assert_allclose(resumed["train_loss"], straight["train_loss"], rtol=1e-5)


def test_main_with_a_missing_data_folder(tmp_path, capsys):
    missing = tmp_path / "no_such_data"
    code = trainer.main(["--data", str(missing), "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "m.pt"), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert_one_line(err, str(missing))
    assert err.startswith("error:")
    assert not (tmp_path / "m.pt").exists()


def test_main_trains_saves_and_evaluates(tiny_dataset, tmp_path, isolated_cache, capsys):
    out, run_dir = tmp_path / "models" / "student.pt", tmp_path / "run"
    argv = ["--data", str(tiny_dataset), "--out", str(out), "--run-dir", str(run_dir), "--epochs", "1",
            "--batch-size", "4", "--limit", "8", "--no-progress"]
    assert trainer.main(argv) == 0
    model, meta = load_model(out)
    assert meta["preset"] == "cpu" and meta["config"]["epochs"] == 1 and meta["config"]["limit"] == 8
    assert "val_nme_io_held_out_people" in meta
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1]
    assert "saved" in capsys.readouterr().out
    report = tmp_path / "eval.json"
    assert evaluation.main(["--data", str(tiny_dataset), "--model", str(out), "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["n"] == sum(TINY_TEST.values()) and np.isfinite(result["nme_io"])


def test_main_with_onnx_saves_an_export_that_the_pipeline_runs(tiny_dataset, tmp_path, isolated_cache):
    pytest.importorskip("onnxruntime")
    from models import make_runner

    out = tmp_path / "models" / "student.pt"
    argv = ["--data", str(tiny_dataset), "--out", str(out), "--run-dir", str(tmp_path / "run"), "--epochs", "1",
            "--batch-size", "4", "--limit", "8", "--no-progress", "--onnx"]
    assert trainer.main(argv) == 0
    runner = make_runner(out, backend="onnx")  # refuses an export that does not belong to the .pt file
    assert type(runner).__name__ == "OnnxRunner" and runner.meta["preset"] == "cpu"


def test_the_mean_face_stands_in_for_an_untrained_model(tiny_dataset):
    from pipeline.keypoint_pipeline import KeypointPipeline

    model = evaluation.mean_face_model(tiny_dataset, input_size=64)
    crops = np.random.default_rng(0).uniform(0, 1, (3, 64, 64)).astype(np.float32)
    points = inference.predict_crops(model, crops)
    assert points.shape == (3, 68, 2) and np.allclose(points[0], points[1]) and np.allclose(points[0], points[2])
    assert list(model.parameters()) and not any(p.requires_grad for p in model.parameters())
    # the mean face in the crops it frames: close to each training face's own keypoints in its crop
    _, train_keypoints = data_load.read_keypoints_csv(data_load.split_paths(tiny_dataset, "training")[0])
    in_crops = [data_load.transform_points(k, data_load.crop_matrix(*data_load.crop_square_from_box(data_load.haar_box_from_keypoints(k)), 64))
                for k in train_keypoints]
    assert np.allclose(points[0], np.mean(in_crops, axis=0), atol=0.05)
    pipe = KeypointPipeline(runner=model)
    assert pipe.keypoints_for_boxes(np.zeros((100, 100, 3), np.uint8), [[20, 20, 50, 50]]).shape == (1, 68, 2)
