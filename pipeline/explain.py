"""A look inside a keypoint network: what its layers compute (feature maps), which cells of a layer one keypoint
is read from (Grad-CAM adapted to regression), and which parts of the picture move it (occlusion, with Captum).

Both work on any PyTorch model of this project (``models.build_model``) and on one face crop, given as a
grayscale ``S x S`` array or tensor in [0, 1] (also ``1 x S x S`` or ``1 x 1 x S x S``), cut as in training
(``inference.face_crops``). Layers are named as in ``model.named_modules()`` ("features.0", "features.4", ...) or
passed as the modules themselves. The model is left as it was found: same mode, same weights, no gradients kept.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models import OutputLayout, output_layout

# Grad-CAM needs a feature map fine enough to tell an eye from a nose: at least this many cells a side.
MIN_CAM_CELLS = 12


def _as_batch(image: Any, model: nn.Module) -> torch.Tensor:
    """A ``1 x 1 x S x S`` float tensor on the model's device from an (S, S), (1, S, S) or (1, 1, S, S) image."""
    x = image.detach() if isinstance(image, torch.Tensor) else torch.from_numpy(np.asarray(image, np.float32))
    while x.dim() < 4:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 1:
        raise ValueError(f"expected one grayscale image (S x S, 1 x S x S or 1 x 1 x S x S), got shape {tuple(x.shape)}")
    device = next(model.parameters()).device
    return x.to(device=device, dtype=torch.float32)


def _named_layers(model: nn.Module, layers: Sequence[nn.Module | str] | nn.Module | str) -> dict[str, nn.Module]:
    """{name: module} for layers given by name or as modules of ``model``; ValueError for anything else."""
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    by_name = dict(model.named_modules())
    name_of = {id(module): name for name, module in by_name.items()}
    resolved = {}
    for layer in layers:
        if isinstance(layer, str):
            if layer not in by_name or not layer:
                known = ", ".join(name for name in by_name if name.count(".") <= 1 and name)
                raise ValueError(f"the model has no layer {layer!r}; some of its layers: {known}")
            resolved[layer] = by_name[layer]
        elif isinstance(layer, nn.Module) and id(layer) in name_of and name_of[id(layer)]:
            resolved[name_of[id(layer)]] = layer
        else:
            raise ValueError(f"{type(layer).__name__} is not a layer of this model: pass a module of the model or its name")
    return resolved


@contextlib.contextmanager
def _explaining(model: nn.Module) -> Iterator[None]:
    """Eval mode and no in-place activations while explaining (an in-place ReLU after a hooked layer would
    overwrite the activations we keep); the model's mode and flags are restored afterwards."""
    was_training = model.training
    in_place = [module for module in model.modules() if getattr(module, "inplace", None) is True]
    try:
        model.eval()
        for module in in_place:
            module.inplace = False
        yield
    finally:
        for module in in_place:
            module.inplace = True
        model.train(was_training)


def _keypoints(model: nn.Module, raw: torch.Tensor, convention: str | None) -> torch.Tensor:
    """(N, K, 2) normalised keypoints of ``convention`` from the model's raw (N, width) output: the layout the model
    declares (``models.output_layout``), or for a plain module without ``num_keypoints``, (x, y) pairs throughout."""
    layout = output_layout(model) if hasattr(model, "num_keypoints") else OutputLayout(raw.shape[1] // 2)
    return layout.keypoints(raw, convention)


def layer_outputs(model: nn.Module, input_size: int | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape) of every named module, in the order their forward passes finish, for a zero input."""
    size = input_size or model.input_size
    rows: list[tuple[str, tuple[int, ...]]] = []
    hooks = []
    for name, module in model.named_modules():
        if name:
            hooks.append(module.register_forward_hook(
                lambda _m, _i, output, name=name: rows.append((name, tuple(output.shape))) if isinstance(output, torch.Tensor) else None
            ))
    try:
        with _explaining(model), torch.no_grad():
            model(torch.zeros(1, 1, size, size, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return rows


def default_layer(model: nn.Module, min_cells: int = MIN_CAM_CELLS) -> str:
    """The layer Grad-CAM uses by default: the deepest one whose output is still at least ``min_cells`` a side.

    Deeper layers see more of the face and carry more meaning, but a coarse map cannot say which part of the face
    matters: a map of 6 x 6 cells on a crop of about 100 px has cells as large as an eye. ``layer_grid`` tells a
    layer's size (it depends on the model's input size: read it, do not assume it).
    """
    candidates = [name for name, shape in layer_outputs(model) if len(shape) == 4 and min(shape[2:]) >= min_cells]
    if not candidates:
        raise ValueError(f"no layer of the model keeps a {min_cells} x {min_cells} feature map: pass a layer explicitly")
    return candidates[-1]


def layer_grid(model: nn.Module, layer: str | None = None) -> str:
    """The size of a layer's feature map as "h x w" cells (``layer`` defaults to ``default_layer(model)``)."""
    name = layer or default_layer(model)
    shapes = dict(layer_outputs(model))
    if name not in shapes or len(shapes[name]) != 4:
        raise ValueError(f"layer {name!r} gives no C x h x w feature map")
    return f"{shapes[name][2]} x {shapes[name][3]}"


def feature_maps(model: nn.Module, image: Any, layers: Sequence[nn.Module | str] | nn.Module | str) -> dict[str, np.ndarray]:
    """What the given layers compute for one face crop: {layer name: C x h x w array}, in eval mode."""
    named = _named_layers(model, layers)
    x = _as_batch(image, model)
    found: dict[str, torch.Tensor] = {}
    hooks = [module.register_forward_hook(lambda _m, _i, output, name=name: found.__setitem__(name, output.detach()))
             for name, module in named.items()]
    try:
        with _explaining(model), torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: found[name][0].cpu().numpy() for name in named}


def grad_cam(model: nn.Module, image: Any, keypoint_index: int, layer: nn.Module | str | None = None,
             convention: str | None = None) -> np.ndarray:
    """Which cells of ``layer`` the prediction of keypoint ``keypoint_index`` is assembled from: an ``S x S`` heat map
    in [0, 1] over the crop.

    Not where the evidence lies in the picture: each cell of a deep layer sees much of the face, and a network with
    a dense head can read a point mostly from cells over another part of the face. Measure it for a model with
    ``benchmarks/grad_cam_peaks.py`` (for the 112 px ``keypoints_fast.pt``, over 100 test faces, the maps of points
    30, 36, 48 and 8 peaked within a quarter of the inter-ocular distance of their own point on 13-26 % of the
    faces); ``occlusion_map`` measures the picture's influence instead.

    Grad-CAM (Selvaraju et al., 2017) explains a *class score*: it weights each channel of a layer's activations
    ``A`` by the spatial mean of the score's gradient, sums the channels and keeps the positive part. A keypoint
    regressor differs in two ways, and we adapt both:

    * **The target.** A keypoint is two numbers, (x, y), and their sign tells a direction, not evidence: a larger
      x is not "more eye corner", so backpropagating x (or x + y) and keeping the positive part would show only
      what pushes the point to the right. We explain x and y separately and take, at every location, the length
      of the (x, y) vector of that location's contributions: how far the evidence there moves the predicted
      point, in whatever direction.
    * **The channel weights.** Averaging the gradient over the map is exact only for networks that average-pool
      the map before their head. Our models flatten it (where a feature fires tells where a keypoint is), so the
      gradient at each location differs and averaging throws that away; in practice it points at the wrong part
      of the face. We multiply gradient and activation location by location instead (HiResCAM, Draelos and
      Carin, 2020): for a network ending in a linear layer over the flattened map, these contributions add up to
      the predicted coordinate (less the bias), so the map shows each location's share of the prediction.

    The map, at the layer's resolution, is resized bilinearly to the crop and scaled to [0, 1]. ``layer`` defaults
    to ``default_layer(model)``. ``convention``: which of the model's keypoint conventions to explain, for a model
    that predicts several (``models.OutputLayout``; None: its default; ``models.ModelError`` for one it lacks);
    the face score, if any, is left out.
    """
    name, module = next(iter(_named_layers(model, default_layer(model) if layer is None else layer).items()))
    x = _as_batch(image, model).requires_grad_(True)  # so the graph exists even if the weights are frozen
    kept: dict[str, torch.Tensor] = {}
    hook = module.register_forward_hook(lambda _m, _i, output: kept.__setitem__("activation", output))
    try:
        with _explaining(model), torch.enable_grad():
            points = _keypoints(model, model(x), convention)[0]  # (K, 2), normalised
            if not 0 <= keypoint_index < len(points):
                raise ValueError(f"keypoint_index must be in 0..{len(points) - 1}, got {keypoint_index}")
            activation = kept.get("activation")
            if activation is None or activation.dim() != 4:
                raise ValueError(f"layer {name!r} gives no C x h x w feature map: choose a convolutional layer")
            grad_x, = torch.autograd.grad(points[keypoint_index, 0], activation, retain_graph=True)
            grad_y, = torch.autograd.grad(points[keypoint_index, 1], activation)
    finally:
        hook.remove()
    activation = activation.detach()
    contributions = torch.stack([(grad_x * activation).sum(dim=1), (grad_y * activation).sum(dim=1)])  # 2 x 1 x h x w
    heat = contributions.norm(dim=0)[None]  # 1 x 1 x h x w, as interpolate wants it
    heat = F.interpolate(heat, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[0, 0]
    heat = heat - heat.min()
    peak = float(heat.max())
    return (heat / peak if peak > 0 else heat).cpu().numpy().astype(np.float32)


def occlusion_map(model: nn.Module, image: Any, keypoint_index: int, window: int | None = None, stride: int | None = None,
                  convention: str | None = None) -> np.ndarray:
    """Which pixels move keypoint ``keypoint_index``: an ``S x S`` map in [0, 1] over the crop, by occlusion.

    A ``window x window`` patch of the crop's mean gray slides over the crop in steps of ``stride`` pixels; at
    each place the map records how far (in crop pixels) the predicted point moves from where the whole crop puts
    it, averaged over the patches that cover a pixel, then scaled to [0, 1]. It is Captum's ``Occlusion``
    (Zeiler and Fergus, 2014) with a regression target: the distance the point moves, in whatever direction.
    Unlike Grad-CAM it needs no layer and no gradient, and it measures an actual change of the prediction; it is
    coarse (the window's size) and slower (one forward pass per place, batched). Defaults: a window of an eighth
    of the crop, a stride of half the window. ``convention`` as in ``grad_cam``.
    """
    from captum.attr import Occlusion

    x = _as_batch(image, model)
    size = x.shape[-1]
    window = window or max(2, size // 8)
    stride = stride or max(1, window // 2)
    with _explaining(model), torch.no_grad():
        reference = _keypoints(model, model(x), convention)[0, keypoint_index]

        def moved(batch: torch.Tensor) -> torch.Tensor:  # minus the distance moved, in crop pixels: (N,)
            points = _keypoints(model, model(batch), convention)[:, keypoint_index]
            return -(points - reference).norm(dim=-1) * size / 2

        attribution = Occlusion(moved).attribute(x, sliding_window_shapes=(1, window, window), strides=(1, stride, stride),
                                                 baselines=float(x.mean()), perturbations_per_eval=64)[0, 0]
    heat = attribution.clamp(min=0)
    peak = float(heat.max())
    return (heat / peak if peak > 0 else heat).cpu().numpy().astype(np.float32)
