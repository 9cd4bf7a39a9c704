"""Keypoint regression networks, and saving/loading them with their metadata.

Every model maps a ``N x 1 x S x S`` grayscale batch in [0, 1] to ``N x 2K`` keypoints normalised to [-1, 1]
relative to the input (see ``data_load.Normalize``); ``build_model`` creates one by name and
``save_model``/``load_model`` store a plain state dict plus a small metadata dict.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F

from resources.files import atomic_write, file_sha256
from resources.onnx_model import CONVENTIONS, ModelError, OnnxRunner, OutputLayout, write_onnx_metadata  # noqa: F401

CHECKPOINT_FORMAT = "facial-keypoints-model/1"
NORMALIZATION = "grayscale/255; keypoints (px - S/2) / (S/2) for an S x S input"


def output_layout(model: Any) -> OutputLayout:
    """The layout of a model built by ``build_model`` (or any module with ``num_keypoints``)."""
    return OutputLayout(
        int(getattr(model, "num_keypoints", 68)), tuple(getattr(model, "conventions", ("course",))), bool(getattr(model, "face_score", False)),
        tuple(getattr(model, "flip_offsets", ())),
    )


def init_kaiming(module: nn.Module) -> None:
    """Kaiming-normal weights for conv/linear layers feeding ReLUs, zero biases."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def init_weights(module: nn.Module) -> None:
    """``init_kaiming``, then the weights of the module's last ``nn.Linear`` (its output layer) near zero (normal, std
    1e-3): every first prediction then sits near the middle of the crop, so the first errors, and the first steps, stay
    moderate. Measured on notebook 2's reference design: with its output layer started like the others, its first
    predictions were far off and it slid within a few epochs into predicting the same face for every picture."""
    init_kaiming(module)
    linears = [layer for layer in module.modules() if isinstance(layer, nn.Linear)]
    if linears:
        nn.init.normal_(linears[-1].weight, std=1e-3)


class Net(nn.Module):
    """Your keypoint network (notebook 2): a batch of gray face crops ``N x 1 x S x S`` in [0, 1], S =
    ``input_size``, to ``N x 2K`` numbers, the K keypoints' (x, y) normalised to [-1, 1] of the crop
    (``data_load.Normalize``). Notebook 2 gives a reference design and the time budget it must fit."""

    # TODO (notebook 2): the side S of your network's square input, in pixels (the reference design: 112). With
    # ``data_load.train_transform(S)`` the training faces come at this size, and the pipeline cuts faces at it.
    input_size = 112

    def __init__(self, num_keypoints: int = 68) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        # TODO (notebook 2): define your layers. ``self.features``: convolution stages (nn.Conv2d, nn.BatchNorm2d,
        # nn.ReLU, strides or nn.MaxPool2d, ...) that turn the 1 x S x S input into a small stack of feature maps; ``self.head``:
        # nn.Flatten and nn.Linear layers (and perhaps nn.Dropout) down to 2 * num_keypoints outputs, with nothing
        # after the last nn.Linear. Finish with ``init_weights(self)``.
        ### BEGIN SOLUTION
        def conv(channels_in: int, channels_out: int, stride: int = 1, kernel: int = 3) -> list[nn.Module]:
            """Convolution (stride 2 halves the side), batch normalisation, ReLU."""
            return [nn.Conv2d(channels_in, channels_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(channels_out),
                    nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(1, 16, stride=2),  # 16 x 56 x 56 for a 112 px input
            *conv(16, 32, stride=2), *conv(32, 32),  # 32 x 28 x 28
            *conv(32, 64, stride=2), *conv(64, 64),  # 64 x 14 x 14
            *conv(64, 128, stride=2), *conv(128, 128),  # 128 x 7 x 7
            *conv(128, 32, kernel=1),  # 32 x 7 x 7: each place's 128 channels mixed into 32
        )
        side = self.input_size // 16
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * side * side, 384), nn.ReLU(inplace=True), nn.Linear(384, 2 * num_keypoints))
        init_weights(self)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # TODO (notebook 2): return the N x (2 * num_keypoints) output for the N x 1 x S x S batch ``x``.
        ### BEGIN SOLUTION
        return self.head(self.features(x))
        ### END SOLUTION


class MeanFaceNet(nn.Module):
    """A stand-in that ignores the picture: every crop gets the same keypoints, the mean face as the training
    crops frame it (``pipeline.evaluation.mean_face_model`` computes it). It needs no training, so it can stand in for a model
    not trained yet; any trained network should beat it.

    ``mean_points``: (K, 2) normalised coordinates in [-1, 1] of the crop (``data_load.Normalize``).
    """

    def __init__(self, mean_points: Any, input_size: int = 96) -> None:
        super().__init__()
        points = torch.as_tensor(np.asarray(mean_points, np.float32)).reshape(1, -1)
        self.points = nn.Parameter(points, requires_grad=False)
        self.input_size, self.num_keypoints = int(input_size), points.shape[1] // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) crops -> (N, 2 K): the same row for every crop."""
        return self.points.expand(x.shape[0], -1)


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, kernel: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class ResidualConv(nn.Module):
    """A 3x3 conv + BatchNorm with an identity shortcut, then ReLU: depth at the cost of one conv.

    ``separable`` splits the conv into depthwise 3x3 and pointwise 1x1 (MobileNet's trick), for about a ninth of
    the arithmetic.
    """

    def __init__(self, channels: int, separable: bool = False) -> None:
        super().__init__()
        if separable:
            self.conv = nn.Sequential(
                nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels, channels, 1, bias=False),
                nn.BatchNorm2d(channels),
            )
        else:
            self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv(x), inplace=True)


def fast_backbone(widths: tuple[int, ...], depths: tuple[int, ...], separable: bool = False) -> list[nn.Module]:
    """The fast models' layers: a strided 3x3 conv stem to ``widths[0]`` channels, then per later width a strided
    3x3 conv and ``depth`` residual convs; the output has ``widths[-1]`` channels at 1 / 2**len(widths) of the input."""
    layers: list[nn.Module] = [ConvBNReLU(1, widths[0], stride=2)]
    for in_ch, out_ch, depth in zip(widths[:-1], widths[1:], depths):
        layers.append(ConvBNReLU(in_ch, out_ch, stride=2))
        layers += [ResidualConv(out_ch, separable) for _ in range(depth)]
    return layers


class FastKeypointNet(nn.Module):
    """The compact model we ship: a small residual CNN with a spatial regression head.

    Each stage halves the resolution with a strided 3x3 conv and refines with ``depth`` residual convs. The head
    keeps the final feature map's layout (flatten, not global pooling): where a feature fires tells where a
    keypoint is.
    """

    def __init__(
        self,
        num_keypoints: int = 68,
        input_size: int = 96,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        depths: tuple[int, ...] = (1, 1, 1),
        head_channels: int = 32,
        hidden: int = 256,
        separable: bool = False,
        outputs: int | None = None,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.features = nn.Sequential(*fast_backbone(widths, depths, separable), ConvBNReLU(widths[-1], head_channels, kernel=1))
        grid = input_size // 2 ** len(widths)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(head_channels * grid * grid, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, outputs or 2 * num_keypoints),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class HeatmapKeypointNet(nn.Module):
    """A compact model with an integral (soft-argmax) head: heatmaps at 1/4 of the input resolution.

    The backbone is ``FastKeypointNet``'s (strided 3x3 convs, one residual conv per stage); a small feature
    pyramid brings the deepest, most semantic features back to 1/4 resolution, where a 1x1 conv scores every cell
    for every keypoint. A softmax over the cells turns each keypoint's scores into a probability map, and the
    keypoint is the map's expected position (Sun et al., 2018, "Integral Human Pose Regression"): sub-pixel,
    differentiable, and trained with the same coordinate losses as direct regression.
    """

    def __init__(
        self, num_keypoints: int = 68, input_size: int = 96, widths: tuple[int, ...] = (16, 32, 64, 128), pyramid: int = 32
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.stem = ConvBNReLU(1, widths[0], stride=2)
        self.stages = nn.ModuleList(
            nn.Sequential(ConvBNReLU(in_ch, out_ch, stride=2), ResidualConv(out_ch)) for in_ch, out_ch in zip(widths[:-1], widths[1:])
        )
        self.lateral = nn.ModuleList(nn.Conv2d(width, pyramid, 1) for width in widths[1:])
        self.smooth = ConvBNReLU(pyramid, pyramid)
        self.heatmaps = nn.Conv2d(pyramid, num_keypoints, 1)
        init_kaiming(self)
        nn.init.normal_(self.heatmaps.weight, std=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        stage_outputs = []
        for stage in self.stages:
            x = stage(x)
            stage_outputs.append(x)
        top = self.lateral[-1](stage_outputs[-1])
        for lateral, features in zip(reversed(self.lateral[:-1]), reversed(stage_outputs[:-1])):
            top = F.interpolate(top, scale_factor=2, mode="nearest") + lateral(features)
        scores = self.heatmaps(self.smooth(top))
        n, k, height, width = scores.shape
        probabilities = torch.softmax(scores.flatten(2), dim=-1).view(n, k, height, width)
        # centres of the heatmap cells in normalised input coordinates (-1 left/top edge, +1 right/bottom edge)
        xs = (torch.arange(width, device=x.device, dtype=scores.dtype) + 0.5) / width * 2 - 1
        ys = (torch.arange(height, device=x.device, dtype=scores.dtype) + 0.5) / height * 2 - 1
        keypoint_x = (probabilities.sum(dim=2) * xs).sum(dim=-1)
        keypoint_y = (probabilities.sum(dim=3) * ys).sum(dim=-1)
        return torch.stack([keypoint_x, keypoint_y], dim=-1).flatten(1)


class PipKeypointNet(nn.Module):
    """``FastKeypointNet``'s backbone with a pixel-in-pixel head (PIPNet: Jin, Liao and Shao, 2021, "Pixel-in-Pixel
    Net: Towards Efficient Facial Landmark Detection in the Wild"), with or without its neighbour regression.

    On the last feature map (input / 16: 8 x 8 cells for 128 px), a 1x1 conv gives, for each convention and
    keypoint, a score per cell and the keypoint's x and y offset inside that cell (in cells, from the cell's top-left
    corner); with ``neighbours`` = C > 0, also the x and y offsets, from the same cell, of the C keypoints nearest to
    it in the mean face (``neighbour_index``, set from the training faces by ``set_neighbours``). In eval mode the
    output is the ``OutputLayout`` row every model gives: each keypoint at its best-scoring cell plus that cell's
    offsets, averaged with where its neighbours' best cells place it (PIPNet's neighbour regression: a keypoint
    whose own cell is wrong is outvoted), normalised to [-1, 1]; then the face logit (a linear layer on the averaged
    last features). In training mode it is the raw head instead, flat: the (conventions, 3 + 2 C, K, H, W) maps
    followed by the face logit, which ``pipeline.trainer.PipLoss`` reads.
    """

    def __init__(
        self,
        num_keypoints: int = 68,
        input_size: int = 112,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        depths: tuple[int, ...] = (1, 1, 1),
        conventions: tuple[str, ...] = ("course",),
        face_score: bool = False,
        neighbours: int = 0,
    ) -> None:
        super().__init__()
        self.input_size, self.num_keypoints, self.neighbours = input_size, num_keypoints, neighbours
        self.features = nn.Sequential(*fast_backbone(widths, depths))  # FastKeypointNet's layers by name, less its 1x1 conv
        self.grid = input_size // 2 ** len(widths)
        self.num_conventions = len(conventions)
        self.maps = nn.Conv2d(widths[-1], self.num_conventions * (3 + 2 * neighbours) * num_keypoints, 1)
        self.face = nn.Linear(widths[-1], 1) if face_score else None
        # (K, C) keypoints each keypoint's cell also places, and the (K, K (1 + C)) matrix that averages every
        # keypoint's own place with the places its neighbours give it; saved with the weights
        self.register_buffer("neighbour_index", torch.zeros(num_keypoints, neighbours, dtype=torch.long))
        self.register_buffer("neighbour_average", torch.zeros(num_keypoints, num_keypoints * (1 + neighbours)))
        index = torch.arange(num_keypoints)[:, None] + torch.arange(1, neighbours + 1)[None]  # until set: the next keypoints
        self.set_neighbour_index(torch.remainder(index, num_keypoints))
        init_kaiming(self)
        nn.init.normal_(self.maps.weight, std=1e-3)

    def set_neighbours(self, mean_shape: Any) -> None:
        """Each keypoint's neighbours: the ``neighbours`` keypoints nearest to it in ``mean_shape`` (K, 2)."""
        shape = torch.as_tensor(np.asarray(mean_shape, np.float32)).reshape(self.num_keypoints, 2)
        distance = torch.cdist(shape, shape)
        distance.fill_diagonal_(float("inf"))
        self.set_neighbour_index(distance.argsort(dim=1)[:, : self.neighbours])

    def set_neighbour_index(self, index: torch.Tensor) -> None:
        """Set ``neighbour_index`` (K, C) and the averaging matrix it implies."""
        k, c = self.num_keypoints, self.neighbours
        average = torch.zeros(k, k * (1 + c))
        average[torch.arange(k), torch.arange(k)] = 1.0  # each keypoint's own place
        for m in range(c):
            average[index[:, m], k * (1 + m) + torch.arange(k)] = 1.0  # keypoint j's place as keypoint k's neighbour
        self.neighbour_index.copy_(index)
        self.neighbour_average.copy_(average / average.sum(dim=1, keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        grid, pooled, k = self.grid, features.mean(dim=(2, 3)), self.num_keypoints
        face = self.face(pooled) if self.face is not None else pooled[:, :0]  # (N, 1), or (N, 0) without a face score
        if self.training:
            return torch.cat([self.maps(features).flatten(1), face], dim=1)
        # Inference reads the offsets at each keypoint's best cell only: the 1x1 conv's score rows over every cell,
        # then its offset rows at the K best cells (the same numbers as the whole map there, at a tenth of the cost).
        conventions, channels, n = self.num_conventions, 3 + 2 * self.neighbours, self.neighbours
        weight = self.maps.weight.reshape(conventions, channels, k, -1)  # (C, channels, K, D)
        bias = self.maps.bias.reshape(conventions, channels, k)
        cells = features.flatten(2)  # (N, D, G)
        scores = torch.matmul(weight[:, 0].reshape(conventions * k, -1), cells)  # (N, C K, G); the bias cannot move the argmax
        best = scores.argmax(dim=-1)  # (N, C K): the best cell of each keypoint
        at_best = cells.transpose(1, 2).gather(1, best[..., None].expand(-1, -1, cells.shape[1]))  # (N, C K, D)
        offsets_weight = weight[:, 1:].permute(0, 2, 3, 1).reshape(conventions * k, -1, channels - 1)  # (C K, D, channels - 1)
        offsets = torch.matmul(at_best[:, :, None], offsets_weight)[:, :, 0]  # (N, C K, channels - 1)
        offsets = (offsets + bias[:, 1:].permute(0, 2, 1).reshape(conventions * k, channels - 1)).reshape(-1, conventions, k, channels - 1)
        offsets = offsets.transpose(2, 3)  # (N, C, channels - 1, K): x, y, the neighbours' x (n), their y (n)
        best = best.reshape(-1, conventions, k)
        cell_x = torch.remainder(best, grid).to(offsets.dtype)[:, :, None]  # (N, C, 1, K)
        cell_y = torch.div(best, grid, rounding_mode="floor").to(offsets.dtype)[:, :, None]
        # every place given to a keypoint: its own (1 row), then as each keypoint's m-th neighbour (n rows)
        xs = torch.cat([cell_x + offsets[:, :, 0:1], cell_x + offsets[:, :, 2 : 2 + n]], dim=2).flatten(2)  # (N, C, K (1 + n))
        ys = torch.cat([cell_y + offsets[:, :, 1:2], cell_y + offsets[:, :, 2 + n :]], dim=2).flatten(2)
        points = torch.stack([xs @ self.neighbour_average.T, ys @ self.neighbour_average.T], dim=-1) / grid * 2 - 1  # (N, C, K, 2)
        return torch.cat([points.flatten(1), face], dim=1)


# ---------------------------------------------------------------------------------------------------------
# torchvision backbones for transfer learning
# ---------------------------------------------------------------------------------------------------------
def _grayscale_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A copy of a 3-channel input conv that takes 1 channel; pretrained RGB filters are summed."""
    gray = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        gray.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            gray.bias.copy_(conv.bias)
    return gray


def _torchvision_backbone(name: str, num_keypoints: int, pretrained: bool) -> nn.Module:
    import torchvision.models as tvm

    constructors = {"resnet18": tvm.resnet18, "mobilenet_v2": tvm.mobilenet_v2, "efficientnet_b0": tvm.efficientnet_b0}
    weights = "DEFAULT" if pretrained else None
    try:
        model = constructors[name](weights=weights)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad cached file raises RuntimeError
        warnings.warn(
            f"ImageNet weights for {name} could not be fetched ({type(error).__name__}); training from scratch instead "
            "(pass pretrained=False to silence this).",
            stacklevel=3,
        )
        model = constructors[name](weights=None)
    outputs = 2 * num_keypoints
    if name == "resnet18":
        model.conv1 = _grayscale_conv(model.conv1)
        model.fc = nn.Linear(model.fc.in_features, outputs)
    else:
        model.features[0][0] = _grayscale_conv(model.features[0][0])
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, outputs)
    return model


MODEL_NAMES = ("net", "fast", "fast_heatmap", "fast_pip", "resnet18", "mobilenet_v2", "efficientnet_b0")
# The input side of each design in pixels; the course's ``Net`` says its own (``Net.input_size``).
DEFAULT_INPUT_SIZES = {"fast": 96, "fast_heatmap": 96, "fast_pip": 112, "resnet18": 224, "mobilenet_v2": 224, "efficientnet_b0": 224}
FAST_MODELS = ("fast", "fast_heatmap", "fast_pip")  # the compact models whose input size, widths and depths can be set


def default_input_size(name: str) -> int:
    """The input side in pixels of the design ``name`` (MODEL_NAMES) built without options."""
    return int(Net.input_size) if name == "net" else DEFAULT_INPUT_SIZES[name]
LAYOUT_MODELS = ("fast", "fast_pip")  # the models that can predict several conventions and a face score


def build_model(
    name: str,
    num_keypoints: int = 68,
    pretrained: bool = False,
    conventions: tuple[str, ...] | list[str] = ("course",),
    face_score: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Create a model by name (see MODEL_NAMES). ``pretrained`` applies to the torchvision backbones only.

    ``conventions`` and ``face_score`` set the output layout (``OutputLayout``); only the ``LAYOUT_MODELS`` offer
    more than the course's one convention without a face score. The returned model carries ``model.architecture``,
    ``model.input_size``, ``model.model_kwargs``, ``model.conventions`` and ``model.face_score`` so that
    ``save_model`` can record how to rebuild it.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"Unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}.")
    layout = OutputLayout(num_keypoints, tuple(conventions), face_score)
    if name not in LAYOUT_MODELS and layout != OutputLayout(num_keypoints):
        raise ValueError(f"Model {name!r} predicts the course convention only: several conventions or a face score need one of {', '.join(LAYOUT_MODELS)}.")
    if name not in FAST_MODELS and kwargs:
        raise ValueError(
            f"Model {name!r} has a fixed design ({default_input_size(name)} px input): options {sorted(kwargs)} apply to the fast models only."
        )
    widths = kwargs.get("widths", (16, 32, 64, 128))
    stride = 2 ** len(widths)
    if name in FAST_MODELS and int(kwargs.get("input_size", DEFAULT_INPUT_SIZES[name])) % stride:
        raise ValueError(f"Model {name!r} with {len(widths)} stages needs an input size that is a multiple of {stride} px, "
                         f"not {kwargs['input_size']}: for example {stride * round(kwargs['input_size'] / stride) or stride}.")
    if name == "net":
        model: nn.Module = Net(num_keypoints)
    elif name == "fast":
        model = FastKeypointNet(num_keypoints, outputs=layout.width, **kwargs)
    elif name == "fast_heatmap":
        model = HeatmapKeypointNet(num_keypoints, **kwargs)
    elif name == "fast_pip":
        model = PipKeypointNet(num_keypoints, conventions=layout.conventions, face_score=layout.face_score, **kwargs)
    else:
        model = _torchvision_backbone(name, num_keypoints, pretrained)
    model.architecture = name
    model.input_size = int(kwargs.get("input_size", default_input_size(name)))
    model.num_keypoints = num_keypoints
    model.conventions, model.face_score = layout.conventions, layout.face_score
    model.flip_offsets = ()  # learned in training (OutputLayout.flip_offsets), read back from a saved model's metadata
    model.model_kwargs = dict(kwargs)
    return model


# ---------------------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------------------
def model_metadata(model: nn.Module, **extra: Any) -> dict:
    """What it takes to rebuild and use ``model``, plus any extra plain values (metrics, recipe)."""
    return {
        "architecture": model.architecture,
        "input_size": model.input_size,
        "num_keypoints": model.num_keypoints,
        "model_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in model.model_kwargs.items()},
        **output_layout(model).as_meta(),
        "normalization": NORMALIZATION,
        **extra,
    }


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file beside ``path``, then rename (``resources.onnx_model.atomic_write``): a crash
    never leaves a half-written file."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_model(model: nn.Module, path: str | os.PathLike, **extra: Any) -> None:
    """Write the state dict and metadata (architecture, input size, keypoint count, normalisation, extras)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": CHECKPOINT_FORMAT, "meta": model_metadata(model, **extra), "state_dict": state}, path)


def read_checkpoint(
    path: str | os.PathLike,
    expected_format: str = CHECKPOINT_FORMAT,
    kind: str = "model",
    make_one: str = "run notebook 2 (its training saves `saved_models/student_net.pt`)",
) -> dict:
    """Load a checkpoint dict safely (weights_only) and check that it is ``expected_format``; ModelError (one line
    naming the ``kind`` of file, and ``make_one``, how to make a missing one) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{kind.capitalize()} file {path} does not exist: {make_one} or pass the right path.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise ModelError(f"{kind.capitalize()} file {path} is corrupted or not a {kind} ({type(error).__name__}): retrain or restore it.") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != expected_format:
        raise ModelError(f"{path} is not a {kind} saved by this project (expected format {expected_format}).")
    return checkpoint


def load_model(
    path: str | os.PathLike, num_keypoints: int | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model saved at ``path``, in eval mode on ``device``; returns (model, metadata)."""
    checkpoint = read_checkpoint(path)
    meta = checkpoint.get("meta")
    if not isinstance(meta, dict) or "architecture" not in meta or "num_keypoints" not in meta:
        raise ModelError(f"{path} has no usable metadata (architecture, keypoint count): retrain or restore it.")
    if num_keypoints is not None and meta["num_keypoints"] != num_keypoints:
        raise ModelError(f"{path} predicts {meta['num_keypoints']} keypoints, not {num_keypoints}: use a matching model.")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("model_kwargs", {}).items()}
    try:
        layout = OutputLayout.from_meta(meta)
        model = build_model(meta["architecture"], meta["num_keypoints"], conventions=layout.conventions, face_score=layout.face_score, **kwargs)
        model.load_state_dict(checkpoint["state_dict"])
        model.flip_offsets = layout.flip_offsets
    except (KeyError, ValueError, RuntimeError, TypeError, ModelError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{path} does not match its architecture ({first_line}): retrain or restore it.") from None
    return model.to(device).eval(), meta


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """Fold BatchNorm into the preceding conv (eval mode only) for faster CPU inference."""
    model = model.eval()
    for module in model.modules():
        children = list(module.named_children())
        for (name_a, a), (name_b, b) in zip(children, children[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                setattr(module, name_a, torch.nn.utils.fusion.fuse_conv_bn_eval(a, b))
                setattr(module, name_b, nn.Identity())
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------
# Fast CPU inference: the same network exported to ONNX and run by ONNX Runtime
# ---------------------------------------------------------------------------------------------------------
def export_onnx(model: nn.Module, path: str | os.PathLike) -> None:
    """Export ``model`` (BatchNorm folded) with a variable batch size, written atomically beside its .pt file."""
    import copy

    fused = fuse_for_inference(copy.deepcopy(model).cpu())
    dummy = torch.zeros(1, 1, model.input_size, model.input_size)

    def export(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                fused, dummy, tmp, dynamo=False, input_names=["image"], output_names=["outputs"],
                dynamic_axes={"image": {0: "batch"}, "outputs": {0: "batch"}},
            )

    atomic_write(path, export)


def save_model_with_onnx(model: nn.Module, path: str | os.PathLike, **extra: Any) -> None:
    """``save_model`` plus an ONNX export beside it (same name, .onnx), recorded by its hash in the metadata; the
    export carries the metadata too (``resources.onnx_model``), so that it runs without PyTorch."""
    onnx_path = Path(path).with_suffix(".onnx")
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, onnx_path)
    write_onnx_metadata(onnx_path, model_metadata(model, **extra))
    save_model(model, path, onnx_sha256=file_sha256(onnx_path), **extra)


class TorchRunner:
    """Runs a PyTorch keypoint model on float32 numpy batches (N, 1, S, S) -> raw outputs (N, ``layout.width``)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        self.input_size, self.num_keypoints = model.input_size, model.num_keypoints
        self.layout = output_layout(model)
        self.device = next(model.parameters()).device

    def __call__(self, batch: "np.ndarray") -> "np.ndarray":
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()


def make_runner(model_or_path: nn.Module | str | os.PathLike, backend: str = "auto", threads: int | None = None):
    """A runner for a model object or a saved .pt file (then with ``.meta``); ``auto`` uses ONNX Runtime when
    the .onnx exported with the .pt sits beside it and onnxruntime is installed, else PyTorch."""
    if isinstance(model_or_path, nn.Module):
        return TorchRunner(model_or_path)
    path = Path(model_or_path)
    model, meta = load_model(path)
    onnx_path = path.with_suffix(".onnx")
    fresh = onnx_path.is_file() and meta.get("onnx_sha256") == file_sha256(onnx_path)
    if backend == "onnx" and not fresh:
        raise ModelError(f"{onnx_path} is missing or was not exported from {path.name}: run `python -m models --export-onnx {path}`.")
    runner: TorchRunner | OnnxRunner | None = None
    if backend in ("auto", "onnx") and fresh:
        try:
            runner = OnnxRunner(onnx_path, output_layout(model), model.input_size, threads)
        except ImportError:
            if backend == "onnx":
                raise ModelError("onnxruntime is not installed: `pip install onnxruntime`, or use the torch backend.") from None
    if runner is None:
        if threads:
            torch.set_num_threads(threads)
        runner = TorchRunner(fuse_for_inference(model))
    runner.meta = meta
    return runner


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Model file utilities.")
    parser.add_argument("--export-onnx", metavar="MODEL_PT", required=True, help="write MODEL.onnx beside a saved model")
    args = parser.parse_args()
    try:
        loaded, loaded_meta = load_model(args.export_onnx)
        extras = {k: v for k, v in loaded_meta.items() if k not in model_metadata(loaded) and k != "onnx_sha256"}
        save_model_with_onnx(loaded, args.export_onnx, **extras)
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {Path(args.export_onnx).with_suffix('.onnx')}")
