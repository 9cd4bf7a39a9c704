"""Tests for models: building every architecture, saving/loading with metadata, failures, BatchNorm fusion."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import models
from models import (
    CHECKPOINT_FORMAT,
    MODEL_NAMES,
    ModelError,
    build_model,
    count_parameters,
    default_input_size,
    fuse_for_inference,
    load_model,
    save_model,
)

# A fast model small enough that saving, loading and fusing take milliseconds.
SMALL = {"input_size": 32, "widths": (8, 16, 24, 32), "depths": (1, 1, 1), "head_channels": 8, "hidden": 32}


def assert_one_line(message: str, *must_contain: str) -> None:
    assert message.strip() and "\n" not in message.strip(), f"not one line: {message!r}"
    for text in must_contain:
        assert text in message, f"{text!r} not in {message!r}"


def batch(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so that fusion and loading are really tested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_builds_and_maps_a_batch_to_136_values(name):
    torch.manual_seed(0)
    model = build_model(name, pretrained=False)
    assert model.architecture == name
    assert model.input_size == default_input_size(name)
    assert model.num_keypoints == 68
    size = model.input_size
    model.eval()
    with torch.no_grad():
        out = model(batch(2, size))
    assert out.shape == (2, 136) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert count_parameters(model) > 0


@pytest.mark.parametrize("name", ["net", "fast", "resnet18"])
def test_five_keypoints_give_ten_outputs(name):
    model = build_model(name, num_keypoints=5)
    assert model.num_keypoints == 5
    model.eval()
    with torch.no_grad():
        assert model(batch(2, model.input_size)).shape == (2, 10)


def test_fast_model_in_train_mode_and_custom_size():
    model = build_model("fast", **SMALL)
    assert model.input_size == 32
    model.train()
    out = model(batch(3, 32))
    assert out.shape == (3, 136)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_model_name_raises_value_error():
    with pytest.raises(ValueError) as info:
        build_model("alexnet")
    assert_one_line(str(info.value), "alexnet", "fast")


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("fast", **SMALL)
    randomize_batchnorm(model)
    model.eval()
    path = tmp_path / "models" / "small.pt"  # the folder is created
    save_model(model, path, preset="test", val_nme_io=0.05)
    loaded, meta = load_model(path)
    assert not loaded.training
    x = batch(4, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta["architecture"] == "fast"
    assert meta["input_size"] == 32 and loaded.input_size == 32
    assert meta["num_keypoints"] == 68 and loaded.num_keypoints == 68
    assert meta["model_kwargs"]["widths"] == [8, 16, 24, 32]
    assert loaded.model_kwargs["widths"] == (8, 16, 24, 32)  # tuples come back as tuples
    assert meta["normalization"] == models.NORMALIZATION
    assert meta["preset"] == "test" and meta["val_nme_io"] == 0.05
    assert load_model(path, num_keypoints=68)[1]["architecture"] == "fast"
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["format"] == CHECKPOINT_FORMAT
    assert all(t.device.type == "cpu" for t in checkpoint["state_dict"].values())


def test_save_load_round_trip_of_the_course_net(tmp_path):
    name = "net"
    torch.manual_seed(1)
    model = build_model(name, num_keypoints=5)
    randomize_batchnorm(model)
    model.eval()
    save_model(model, tmp_path / "m.pt")
    loaded, meta = load_model(tmp_path / "m.pt", num_keypoints=5)
    x = batch(2, model.input_size)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta["architecture"] == name and meta["num_keypoints"] == 5


def test_save_is_atomic_and_overwrites(tmp_path):
    model = build_model("fast", **SMALL)
    path = tmp_path / "model.pt"
    save_model(model, path)
    save_model(model, path)  # overwriting is fine
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by everyone, as a plain file would be (not mkstemp's 0600)


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    model = build_model("fast", **SMALL)
    path = tmp_path / "model.pt"
    save_model(model, path, version=1)
    before = path.read_bytes()

    def half_write_then_crash(obj, target, *args, **kwargs):
        Path(target).write_bytes(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(models.torch, "save", half_write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, path, version=2)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]
    monkeypatch.undo()
    assert load_model(path)[1]["version"] == 1


@pytest.fixture
def saved(tmp_path) -> Path:
    path = tmp_path / "good.pt"
    save_model(build_model("fast", **SMALL), path)
    return path


def test_load_missing_file(tmp_path):
    path = tmp_path / "nothing_here.pt"
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert_one_line(str(info.value), "nothing_here.pt")


@pytest.mark.parametrize("damage", ["truncated", "random_bytes", "empty", "text", "other_pickle", "directory"])
def test_load_damaged_files(saved, tmp_path, damage):
    path = tmp_path / f"damaged_{damage}.pt"
    data = saved.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random_bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "text":
        path.write_text("not a model\n")
    elif damage == "other_pickle":
        torch.save({"weights": torch.zeros(3)}, path)  # a torch file, but not this project's format
    elif damage == "directory":
        path.mkdir()
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert_one_line(str(info.value), path.name)


@pytest.mark.parametrize("architecture", ["net", "resnet18", "no_such_net"])
def test_load_state_dict_of_another_architecture(saved, tmp_path, architecture):
    checkpoint = torch.load(saved, weights_only=True)
    checkpoint["meta"]["architecture"] = architecture
    path = tmp_path / "mislabelled.pt"
    torch.save(checkpoint, path)
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert_one_line(str(info.value), path.name)


def test_load_with_missing_weights(saved, tmp_path):
    checkpoint = torch.load(saved, weights_only=True)
    checkpoint["state_dict"].pop(next(iter(checkpoint["state_dict"])))
    path = tmp_path / "incomplete.pt"
    torch.save(checkpoint, path)
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert_one_line(str(info.value), path.name)


def test_load_with_the_wrong_keypoint_count(saved):
    with pytest.raises(ModelError) as info:
        load_model(saved, num_keypoints=5)
    assert_one_line(str(info.value), saved.name, "68", "5")


def test_load_checkpoint_without_metadata(saved, tmp_path):
    checkpoint = torch.load(saved, weights_only=True)
    del checkpoint["meta"]
    path = tmp_path / "no_meta.pt"
    torch.save(checkpoint, path)
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert_one_line(str(info.value), path.name)


@pytest.mark.parametrize("name", ["fast", "net", "resnet18", "mobilenet_v2", "efficientnet_b0"])
def test_fuse_for_inference_keeps_outputs(name):
    torch.manual_seed(0)
    kwargs = SMALL if name == "fast" else {}
    model = build_model(name, **kwargs)
    randomize_batchnorm(model)
    model.eval()
    x = batch(2, model.input_size)
    with torch.no_grad():
        expected = model(x)
        batchnorms_before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        fused = fuse_for_inference(model)
        got = fused(x)
    assert not fused.training
    assert sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules()) < max(batchnorms_before, 1)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_fuse_removes_every_conv_batchnorm_pair_of_the_fast_model():
    model = build_model("fast", **SMALL, separable=True)
    randomize_batchnorm(model)
    x = batch(2, 32)
    with torch.no_grad():
        expected = model.eval()(x)
        fused = fuse_for_inference(model)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
        torch.testing.assert_close(fused(x), expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------------------
# The pixel-in-pixel head
# ---------------------------------------------------------------------------------------------------------
def pip_maps_for(points: torch.Tensor, grid: int, conventions: int = 1, score: float = 10.0) -> torch.Tensor:
    """Raw head maps (N, conventions * 3 * K, grid, grid) whose best cells and offsets place each keypoint at
    ``points`` (N, K, 2, normalised)."""
    n, k = points.shape[:2]
    in_cells = (points + 1) / 2 * grid
    cells = in_cells.floor().clamp(0, grid - 1)
    maps = torch.zeros(n, conventions, 3, k, grid * grid)
    index = (cells[..., 1] * grid + cells[..., 0]).long()
    for c in range(conventions):
        maps[:, c, 0].scatter_(-1, index[..., None], score)
        maps[:, c, 1].scatter_(-1, index[..., None], (in_cells - cells)[..., 0:1])
        maps[:, c, 2].scatter_(-1, index[..., None], (in_cells - cells)[..., 1:2])
    return maps.view(n, -1, grid, grid)


class CellFeatures(nn.Module):
    """Stands in for a backbone: feature d of cell d is 1, every other 0, so the head's 1x1 conv with weight column d
    set to a map's values at cell d (no bias) gives that map exactly."""

    def __init__(self, channels: int, grid: int) -> None:
        super().__init__()
        self.register_buffer("cells", torch.eye(channels, grid * grid).view(1, channels, grid, grid))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cells.expand(len(x), -1, -1, -1)


def run_pip_head(model: nn.Module, maps: torch.Tensor) -> torch.Tensor:
    """The eval-mode output (N, 273) of a pixel-in-pixel model whose head gives ``maps`` (N, channels, grid, grid)."""
    grid = model.grid
    model.features = CellFeatures(model.maps.in_channels, grid)
    model.eval()
    rows = []
    with torch.no_grad():
        for one in maps:
            model.maps.weight.zero_()
            model.maps.weight[:, : grid * grid, 0, 0] = one.flatten(1)
            model.maps.bias.zero_()
            rows.append(model(batch(1, model.input_size)))
    return torch.cat(rows)


def test_pip_head_decodes_the_best_cell_plus_its_offsets():
    model = build_model("fast_pip", conventions=("300w", "course"), face_score=True, input_size=32)
    assert model.grid == 2
    points = torch.rand(3, 68, 2) * 1.8 - 0.9
    out = run_pip_head(model, pip_maps_for(points, model.grid, conventions=2))
    assert out.shape == (3, 273)
    torch.testing.assert_close(out[:, :136], points.flatten(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 136:272], points.flatten(1), atol=1e-5, rtol=0)
    # one map set by hand: keypoint 0's best cell is row 1, column 0 of the 2 x 2 grid, a quarter of a cell right
    # of its left edge and half a cell down, so it lies at (0.25, 1.5) cells: (-0.75, 0.5) normalised
    maps = torch.zeros(1, 2 * 3 * 68, 2, 2)
    maps[0, 0, 1, 0], maps[0, 68, 1, 0], maps[0, 136, 1, 0] = 5.0, 0.25, 0.5
    torch.testing.assert_close(run_pip_head(model, maps)[0, :2], torch.tensor([-0.75, 0.5]))


def test_pip_inference_reads_the_whole_maps_at_the_best_cells():
    """Inference computes the offsets at each keypoint's best cell only; that gives what decoding the head's whole
    maps gives (PIPNet's decoding: the best cell plus its offsets, averaged with the neighbours' votes)."""
    torch.manual_seed(0)
    model = build_model("fast_pip", conventions=("300w", "course"), face_score=True, input_size=64, neighbours=4)
    model.set_neighbours(torch.rand(68, 2))
    randomize_batchnorm(model)
    with torch.no_grad():
        torch.nn.init.normal_(model.maps.weight, std=0.5)
        torch.nn.init.normal_(model.maps.bias, std=0.5)
    x = batch(5, 64)
    model.eval()
    with torch.no_grad():
        out = model(x)
        grid, k, n = model.grid, 68, model.neighbours
        maps = model.maps(model.features(x)).reshape(5, 2, 3 + 2 * n, k, grid * grid)
        best = maps[:, :, 0].argmax(dim=-1)  # (N, C, K)
        at_best = maps.gather(-1, best[:, :, None, :, None].expand(-1, -1, 3 + 2 * n, -1, -1))[..., 0]  # (N, C, channels, K)
        cell_x, cell_y = (best % grid).float(), (best // grid).float()
        expected = torch.zeros(5, 2, k, 2)
        for j in range(k):  # keypoint j's own place, and the places its neighbours' best cells give it
            votes = [torch.stack([cell_x[:, :, j] + at_best[:, :, 1, j], cell_y[:, :, j] + at_best[:, :, 2, j]], -1)]
            for i in range(k):
                for m in range(n):
                    if model.neighbour_index[i, m] == j:
                        votes.append(torch.stack([cell_x[:, :, i] + at_best[:, :, 3 + m, i], cell_y[:, :, i] + at_best[:, :, 3 + n + m, i]], -1))
            expected[:, :, j] = torch.stack(votes).mean(0) / grid * 2 - 1
    torch.testing.assert_close(out[:, :272], expected.flatten(1), atol=1e-5, rtol=0)


def test_pip_model_in_train_mode_gives_its_raw_head_and_learns_through_it():
    from pipeline.trainer import PipLoss
    from pipeline.training import make_loss
    from models import OutputLayout

    torch.manual_seed(0)
    model = build_model("fast_pip", input_size=32)
    model.train()
    out = model(batch(4, 32))
    assert out.shape == (4, 3 * 68 * model.grid**2)
    loss_fn = PipLoss(make_loss("wing", 32), OutputLayout(), model.grid)
    target = torch.rand(4, 136) * 1.8 - 0.9
    loss = loss_fn(out, target)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    perfect = pip_maps_for(target.view(4, 68, 2), model.grid, score=30.0).flatten(1)  # sure of the right cells, right offsets
    assert loss_fn(perfect, target).item() < 0.05 < loss.item()


def test_pip_model_exports_to_onnx_with_the_same_keypoints(tmp_path):
    pytest.importorskip("onnxruntime")
    from models import OnnxRunner, TorchRunner, export_onnx, output_layout

    torch.manual_seed(0)
    model = build_model("fast_pip", conventions=("300w", "course"), face_score=True, input_size=48)
    randomize_batchnorm(model)
    with torch.no_grad():
        torch.nn.init.normal_(model.maps.weight, std=0.5)
    model.eval()
    export_onnx(model, tmp_path / "pip.onnx")
    x = batch(3, 48).numpy()
    expected = TorchRunner(model)(x)
    got = OnnxRunner(tmp_path / "pip.onnx", output_layout(model), 48)(x)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_the_shipped_model_gives_the_same_keypoints_in_pytorch_and_onnx_runtime():
    pytest.importorskip("onnxruntime")
    import cv2
    from skimage import data as sample_pictures

    from pipeline.inference import SHIPPED_MODEL, predict, predict_in_boxes

    onnx, torch_runner = models.make_runner(SHIPPED_MODEL, backend="onnx"), models.make_runner(SHIPPED_MODEL, backend="torch")
    assert type(onnx).__name__ == "OnnxRunner" and type(torch_runner).__name__ == "TorchRunner"
    face = cv2.cvtColor(sample_pictures.astronaut(), cv2.COLOR_RGB2GRAY)
    boxes = [np.array([165.0, 80.0, 140.0, 140.0]), np.array([150.0, 70.0, 180.0, 170.0]), np.array([0.0, 300.0, 200.0, 200.0])]
    for convention in models.output_layout(onnx).conventions:
        a = predict_in_boxes(onnx, [face] * 3, boxes, flip_average=True, convention=convention)
        b = predict_in_boxes(torch_runner, [face] * 3, boxes, flip_average=True, convention=convention)
        assert np.abs(a - b).max() < 0.1  # pixels of the picture
    crops = np.random.default_rng(0).uniform(0, 1, (4, onnx.input_size, onnx.input_size)).astype(np.float32)
    np.testing.assert_allclose(predict(onnx, crops).face_score, predict(torch_runner, crops).face_score, atol=1e-3)
