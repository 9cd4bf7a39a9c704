"""The project's trainer: the recipes (presets) of the shipped keypoint models and the loop that trains them,
validating on people it never sees. (The course's own training loop is the one students write in notebook 2.)

    python train.py --preset cpu            # the fast model in about 15 minutes on a 2-core laptop CPU
    python train.py --preset full           # the course-only model (saved_models/keypoints_course.pt)
    python train.py --preset cpu --resume   # continue from runs/<preset>/last.pt
    python train.py --preset wild --data-300w ../shared/300w --onnx   # the shipped model: course data + 300-W photos

The course presets (``cpu``, ``full``) read the course data alone. The in-the-wild presets (``wild``,
``wild-cpu``) add the 300-W training faces (``--data-300w`` or ``$FKP_300W``; their validation photos are never
trained on) and pictures without faces (``no_faces``, training part), and train a model with a 300-W head, a
course head and a face score (``models.OutputLayout``): each face teaches the head of its own labelling convention,
and every crop, face or not, teaches the face score.

Each epoch writes ``runs/<name>/last.pt`` atomically (model, optimizer, schedule, history), so an interrupted
run loses at most one epoch; the final model goes to ``--out`` as a plain state dict with metadata.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from pipeline.data_300w import load_300w_crops, resolve_300w_dirs
from data_load import AugmentConfig, CropDataset, DataError, denormalize_keypoints, load_context_crops, mix_crops, split_by_person
from pipeline.evaluation import nme_interocular
from pipeline.inference import predict
from models import (
    CHECKPOINT_FORMAT,
    MODEL_NAMES,
    ModelError,
    OutputLayout,
    atomic_torch_save,
    build_model,
    model_metadata,
    output_layout,
    read_checkpoint,
    save_model,
    save_model_with_onnx,
)
from pipeline.no_faces import load_negative_crops
from pipeline.training import choose_device, make_loss, set_seed

REPO_DIR = Path(__file__).resolve().parents[1]


OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("onecycle", "cosine", "plateau")
LOSSES = ("wing", "smoothl1", "mse")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in checkpoints, so plain values only).

    Raises ValueError at creation when the model, optimizer, schedule or loss is not one this module knows.
    """

    model: str = "fast"
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # one of OPTIMIZERS
    schedule: str = "onecycle"  # one of SCHEDULES
    loss: str = "wing"  # one of LOSSES
    augment: dict = field(default_factory=lambda: dataclasses.asdict(AugmentConfig()))
    val_fraction: float = 0.1  # share of people held out for validation
    seed: int = 0
    limit: int | None = None  # use only this many training faces (quick runs and tests)
    # The output layout (models.OutputLayout) and what teaches it beyond the course faces:
    conventions: list = field(default_factory=lambda: ["course"])  # the first is the model's default
    face_score: bool = False  # a face / no-face logit, taught by pictures without faces (no_faces, training part)
    wild_repeat: int = 0  # each 300-W training face is seen this many times per epoch (0: course data alone)
    face_weight: float = 1.0  # weight of the face score's binary cross-entropy beside the keypoint loss
    init: str | None = None  # start from this saved model's weights (``initialize_from``) instead of random ones
    flip_offsets: bool = False  # learn each convention's flip offset (``FlipOffsets``) and correct mirrored crops by it
    face_score_refit: bool = False  # then refit the face score with turned faces as no faces (pipeline.face_score_refit)

    def __post_init__(self) -> None:
        for kind, value, known in (("model", self.model, MODEL_NAMES), ("optimizer", self.optimizer, OPTIMIZERS),
                                   ("schedule", self.schedule, SCHEDULES), ("loss", self.loss, LOSSES)):
            if value not in known:
                raise ValueError(f"Unknown {kind} {value!r}: choose one of {', '.join(known)}.")

    @property
    def input_size(self) -> int:
        from models import default_input_size

        return int(self.model_kwargs.get("input_size", default_input_size(self.model)))


# The course model's design and its light augmentation (see saved_models/README.md for what each choice bought); the
# shipped model is the same design on 128-px crops (WILD_MODEL): its backbone starts from the course model's, its
# dense layers (which see 8 x 8 cells instead of 7 x 7) the first from scratch.
FAST_MODEL = {"input_size": 112, "widths": (16, 32, 64, 128), "depths": (1, 1, 1), "head_channels": 32, "hidden": 384}
WILD_MODEL = {**FAST_MODEL, "input_size": 128}
# the same backbone and input, a pixel-in-pixel head with neighbour regression (PIPNet's 10 neighbours, 8 x 8 cells)
PIP_MODEL = {"input_size": 128, "widths": (16, 32, 64, 128), "depths": (1, 1, 1), "neighbours": 10}
FAST_AUGMENT = {"rotation": 8.0, "scale": 0.05, "shift": 0.03, "flip": 0.5, "brightness": 0.2, "contrast": 0.25}

PRESETS: dict[str, TrainConfig] = {
    # the recipe of saved_models/keypoints_course.pt, the course-only model the wild presets start from
    "full": TrainConfig(model="fast", model_kwargs=FAST_MODEL, augment=FAST_AUGMENT, epochs=120, batch_size=32, lr=3e-3),
    # the same, shortened to fit 15 minutes on a 2-core laptop CPU (11.3 min on the project's 2-core machine)
    "cpu": TrainConfig(model="fast", model_kwargs=FAST_MODEL, augment=FAST_AUGMENT, epochs=100, batch_size=32, lr=3e-3),
}
# The in-the-wild recipe starts from the course-only model ("full" preset, saved as saved_models/keypoints_course.pt)
# and fine-tunes it on the course faces, the 300-W training faces and pictures without faces. Stronger photo
# augmentation (PHOTO_AUGMENT: head roll, framing noise, light, blur, occlusion) was measured against the light one
# on the held-out 300-W faces and did not pay at this length (saved_models/README.md).
COURSE_MODEL = "saved_models/keypoints_course.pt"
# Presets whose command also trains the second, local stage on the model it has trained (pipeline/refinement.py,
# saved beside it as NAME.refine.pt), and for how many epochs.
SECOND_STAGE_EPOCHS = {"wild": 30}
PHOTO_AUGMENT = {**FAST_AUGMENT, "rotation": 20.0, "scale": 0.10, "shift": 0.05, "blur": 0.3, "illumination": 0.3, "occlusion": 0.3}
# Each convention's flip offset is learned (``FlipOffsets``): it removed the keypoints' mean offset along the eye line
# (held-out 300-W -0.0074 -> +0.0009 inter-ocular distances) and lowered every test set's error (saved_models/README.md).
# The face score is then refitted so that a face turned by 45 degrees or more is no face (pipeline/face_score_refit.py).
WILD = {"conventions": ["300w", "course"], "face_score": True, "wild_repeat": 2, "init": COURSE_MODEL, "flip_offsets": True,
        "face_score_refit": True}
PRESETS.update({
    # the recipe of saved_models/keypoints_fast.pt: course data + 300-W, a head per convention, a face score
    "wild": TrainConfig(model="fast", model_kwargs=WILD_MODEL, augment=FAST_AUGMENT, epochs=60, batch_size=32, lr=1e-3, **WILD),
    # the same fine-tuning shortened to fit 15 minutes on a 2-core laptop CPU, on the course model's 112-px crops: in 8
    # epochs a dense layer started from scratch for 128 px does not catch up (saved_models/README.md)
    "wild-cpu": TrainConfig(model="fast", model_kwargs=FAST_MODEL, augment=FAST_AUGMENT, epochs=8, batch_size=32, lr=1e-3, **WILD),
    # the wild recipe with a pixel-in-pixel head on the same backbone, as long (measured against it: saved_models/README.md)
    "wild-pip": TrainConfig(model="fast_pip", model_kwargs=PIP_MODEL, augment=FAST_AUGMENT, epochs=60, batch_size=32, lr=1e-3, **WILD),
})


# ---------------------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------------------
def flip_corrected(points: torch.Tensor, flipped: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Target keypoints (N, K, 2) of mirrored crops moved back to their convention's side.

    A convention whose labels sit ``b`` inter-ocular distances right of the mirror-symmetric position along the eye
    line (``resources.onnx_model.OutputLayout.flip_offset``) has them sit ``b`` to the left in a mirrored crop; adding
    ``2 b (p45 - p36)`` (the eye line of the mirrored, relabelled points) to the crops with ``flipped`` (N,) set puts
    them back on the right, so mirrored and unmirrored crops teach the same placement. ``offsets``: (N,) ``b`` of each
    crop's convention. Units: those of ``points``."""
    from data_load import LEFT_EYE_OUTER, RIGHT_EYE_OUTER

    eye_line = points[:, RIGHT_EYE_OUTER] - points[:, LEFT_EYE_OUTER]
    return points + (2 * offsets * flipped)[:, None, None] * eye_line[:, None, :]


class FlipOffsets(nn.Module):
    """Each convention's flip offset (``flip_corrected``), learned with the network when ``learn`` (else held at 0).

    Flip augmentation shows every face both ways; if a convention's labels sit off the face's mirror-symmetric
    position (the course's and 300-W's sit 0.01-0.03 inter-ocular distances to the right, measured in
    saved_models/README.md), the two ways contradict each other and a network that cannot tell them apart learns
    neither. With the mirrored targets moved by the learned offset, both agree, and the loss is lowest where the
    offset is the labels' own."""

    def __init__(self, conventions: int, learn: bool = True) -> None:
        super().__init__()
        self.values = nn.Parameter(torch.zeros(conventions), requires_grad=learn)

    def targets(self, keypoints: torch.Tensor, convention: torch.Tensor, flipped: torch.Tensor | None) -> torch.Tensor:
        """Flat targets (N, 2K) with the mirrored crops' moved back (see ``flip_corrected``); as they are without
        flip labels or without learning."""
        if flipped is None or not self.values.requires_grad:
            return keypoints
        points = keypoints.view(len(keypoints), -1, 2)
        return flip_corrected(points, flipped, self.values[convention]).flatten(1)


def unpack_target(target: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Flat keypoints (N, size), convention index (N,), face label (N,) and mirrored label (N,; None when the rows
    do not carry it) of target rows packed by ``training_target``; rows of keypoints alone are faces of convention 0."""
    n, device = len(target), target.device
    convention = target[:, size].long() if target.shape[1] > size else torch.zeros(n, dtype=torch.long, device=device)
    face = target[:, size + 1] if target.shape[1] > size + 1 else torch.ones(n, device=device)
    flipped = target[:, size + 2] if target.shape[1] > size + 2 else None
    return target[:, :size], convention, face, flipped


class LayoutLoss(nn.Module):
    """The loss of a model whose output follows an ``OutputLayout`` with several conventions and/or a face score.

    ``target`` rows are packed as ``training_target`` makes them: the 2K normalised keypoints, the index of their
    convention in the layout, the face label (1 a face, 0 none) and whether the crop was mirrored. Each face's
    keypoints are compared with its own convention's output by ``keypoint_loss``, mirrored crops' targets moved by
    the learned ``flip_offsets`` (``FlipOffsets``; ``learn_flip_offsets=False`` holds them at 0); crops without a face
    teach the keypoints nothing. The face logit adds ``face_weight`` x binary cross-entropy against the face label,
    over all crops.
    """

    def __init__(self, keypoint_loss: nn.Module, layout: OutputLayout, face_weight: float = 1.0, learn_flip_offsets: bool = True) -> None:
        super().__init__()
        self.keypoint_loss, self.layout, self.face_weight = keypoint_loss, layout, face_weight
        self.flip_offsets = FlipOffsets(len(layout.conventions), learn_flip_offsets)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        size = 2 * self.layout.num_keypoints
        keypoints, convention, face, flipped = unpack_target(target, size)
        keypoints = self.flip_offsets.targets(keypoints, convention, flipped)
        per_convention = output[:, : size * len(self.layout.conventions)].view(len(output), -1, size)
        chosen = per_convention[torch.arange(len(output), device=output.device), convention]
        is_face = face > 0.5
        loss = self.keypoint_loss(chosen[is_face], keypoints[is_face]) if is_face.any() else output.sum() * 0.0
        if self.layout.face_score:
            loss = loss + self.face_weight * nn.functional.binary_cross_entropy_with_logits(output[:, -1], face)
        return loss


class PipLoss(nn.Module):
    """The loss of a pixel-in-pixel model (``models.PipKeypointNet``) in training mode, for the same targets as
    ``LayoutLoss`` (flat keypoints, or with each crop's convention index, face label and mirrored label appended).

    For each face and keypoint of its convention: ``score_weight`` x the softmax cross-entropy of the cell scores
    against the cell that holds the true keypoint, plus ``keypoint_loss`` (the landmark loss of direct regression,
    Wing by default) of the keypoint placed at that true cell by its predicted offsets, so the offsets learn where
    inside the cell the keypoint lies (PIPNet's offset loss, with the landmark loss in place of L1); with neighbour
    regression, plus ``keypoint_loss`` of each of its neighbours placed from that same cell (PIPNet's neighbour
    loss). Mirrored crops' targets are moved by the learned flip offsets as in ``LayoutLoss``; the face logit is
    taught as there. With the cell term, the training loss of such a run is larger than its validation loss (the
    landmark loss of the decoded keypoints alone); the two are not comparable.
    """

    def __init__(
        self,
        keypoint_loss: nn.Module,
        layout: OutputLayout,
        grid: int,
        face_weight: float = 1.0,
        score_weight: float = 5.0,
        neighbour_index: torch.Tensor | None = None,
        learn_flip_offsets: bool = True,
    ) -> None:
        super().__init__()
        self.keypoint_loss, self.layout, self.grid = keypoint_loss, layout, grid
        self.face_weight, self.score_weight = face_weight, score_weight
        self.neighbour_index = neighbour_index  # (K, C) of the model (its buffer: set_neighbours updates it in place)
        self.flip_offsets = FlipOffsets(len(layout.conventions), learn_flip_offsets)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k, grid, n = self.layout.num_keypoints, self.grid, len(output)
        size = 2 * k
        keypoints, convention, face, flipped = unpack_target(target, size)
        keypoints = self.flip_offsets.targets(keypoints, convention, flipped)
        neighbours = 0 if self.neighbour_index is None else self.neighbour_index.shape[1]
        channels = 3 + 2 * neighbours
        maps = output[:, : len(self.layout.conventions) * channels * k * grid * grid].view(n, -1, channels, k, grid * grid)
        maps = maps[torch.arange(n, device=output.device), convention]  # (N, channels, K, cells): each face's own convention
        is_face = face > 0.5
        loss = output.sum() * 0.0
        if is_face.any():
            maps, points = maps[is_face], keypoints[is_face].view(-1, k, 2)
            in_cells = (points + 1) / 2 * grid  # keypoints in cell units from the top-left corner
            cells = in_cells.floor().clamp(0, grid - 1)
            index = (cells[..., 1] * grid + cells[..., 0]).long()  # (F, K)
            scores = maps[:, 0].reshape(-1, grid * grid)
            loss = loss + self.score_weight * nn.functional.cross_entropy(scores, index.flatten())
            at_true = maps.gather(-1, index[:, None, :, None].expand(-1, channels, -1, 1))[..., 0]  # (F, channels, K)
            offsets = at_true[:, 1:3].transpose(1, 2)  # (F, K, 2)
            placed = (cells + offsets) / grid * 2 - 1
            loss = loss + self.keypoint_loss(placed.flatten(1), points.flatten(1))
            if neighbours:
                offsets = torch.stack([at_true[:, 3 : 3 + neighbours], at_true[:, 3 + neighbours :]], dim=-1)  # (F, C, K, 2)
                placed = (cells[:, None] + offsets) / grid * 2 - 1
                truth = points[:, self.neighbour_index.T]  # (F, C, K, 2): where the m-th neighbour of each keypoint is
                loss = loss + self.keypoint_loss(placed.flatten(1), truth.flatten(1))
        if self.layout.face_score:
            loss = loss + self.face_weight * nn.functional.binary_cross_entropy_with_logits(output[:, -1], face)
        return loss


def make_training_loss(config: TrainConfig, layout: OutputLayout, model: nn.Module) -> nn.Module:
    """The loss a training step minimises: ``PipLoss`` for a pixel-in-pixel model, else ``config.loss`` alone for a
    course-only layout or inside ``LayoutLoss`` for any other."""
    keypoint_loss = make_loss(config.loss, config.input_size)
    if config.model == "fast_pip":
        return PipLoss(keypoint_loss, layout, model.grid, config.face_weight, neighbour_index=model.neighbour_index,
                       learn_flip_offsets=config.flip_offsets)
    if layout == OutputLayout():
        return keypoint_loss
    return LayoutLoss(keypoint_loss, layout, config.face_weight, learn_flip_offsets=config.flip_offsets)


def seed_worker(worker_id: int) -> None:
    """A DataLoader worker's augmentation draws from its own seed (which the loader draws from its generator, itself
    seeded per epoch), not from a copy of the main process's generator that every worker would share."""
    info = torch.utils.data.get_worker_info()
    info.dataset.rng = np.random.default_rng(info.seed)


def learned_flip_offsets(loss_fn: nn.Module) -> tuple[float, ...]:
    """The flip offsets a loss has learned (``FlipOffsets``), for the model's ``OutputLayout``; () for none."""
    offsets = getattr(loss_fn, "flip_offsets", None)
    if offsets is None or not offsets.values.requires_grad:
        return ()
    return tuple(round(float(v), 5) for v in offsets.values.detach().cpu())


def training_target(batch: dict) -> torch.Tensor:
    """The target rows of a batch: its flat keypoints (N, 2K), with each crop's convention index, face label and
    mirrored label appended (N, 2K + 3) when the batch carries them (crops from ``data_load.mix_crops``, see
    ``LayoutLoss``)."""
    target = batch["keypoints"].flatten(1)
    if "face" in batch:
        labels = [batch[key][:, None].to(target.dtype) for key in ("convention", "face", "flipped") if key in batch]
        target = torch.cat([target, *labels], dim=1)
    return target


def initialize_from(model: nn.Module, path: str | Path) -> list[str]:
    """Copy a saved model's weights (``models.read_checkpoint``; a relative ``path`` that does not exist is taken
    from the repository's folder) into ``model`` wherever the shapes agree, and
    return the names of the tensors copied. The output layer of a model with fewer conventions is spread over the
    new one: each convention of ``model`` takes the rows of the same convention in the saved model, or else of
    its default (first) one; a face-score row the saved model lacks keeps its fresh initialisation. Raises
    ModelError when the two share no tensor (another architecture)."""
    checkpoint = read_checkpoint(path if Path(path).exists() else REPO_DIR / path)
    saved_layout = OutputLayout.from_meta(checkpoint["meta"])
    layout, state, copied = output_layout(model), model.state_dict(), []
    for name, tensor in checkpoint["state_dict"].items():
        if name not in state:
            continue
        if state[name].shape == tensor.shape:
            state[name] = tensor.clone()
            copied.append(name)
        elif state[name].ndim >= 1 and tensor.shape[0] == saved_layout.width and state[name].shape[0] == layout.width and state[name].shape[1:] == tensor.shape[1:]:
            size = 2 * layout.num_keypoints
            for index, convention in enumerate(layout.conventions):
                source = saved_layout.conventions.index(convention) if convention in saved_layout.conventions else 0
                state[name][index * size : (index + 1) * size] = tensor[source * size : (source + 1) * size]
            if layout.face_score and saved_layout.face_score:
                state[name][-1] = tensor[-1]
            copied.append(name)
    if not copied:
        raise ModelError(f"{path} shares no weights with a {getattr(model, 'architecture', 'this')} model: start from a model of the same design.")
    model.load_state_dict(state)
    return copied


def make_optimizer(config: TrainConfig, model: nn.Module, loss_fn: nn.Module | None = None) -> torch.optim.Optimizer:
    """The optimizer of ``model``'s weights, and of the loss's own learned values (``FlipOffsets``: no weight decay)
    when ``loss_fn`` has any."""
    groups = [{"params": list(model.parameters())}]
    learned = [p for p in loss_fn.parameters() if p.requires_grad] if loss_fn is not None else []
    if learned:
        groups.append({"params": learned, "weight_decay": 0.0})
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    raise ValueError(f"Unknown optimizer {config.optimizer!r}: choose adamw or adam.")


def make_schedule(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.15
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
    raise ValueError(f"Unknown schedule {config.schedule!r}: choose onecycle, cosine or plateau.")


def train_one_epoch(model, loader, loss_fn, optimizer, schedule, device, progress: bool) -> float:
    """One pass over ``loader``; returns the mean training loss. Per-step schedules step here."""
    from tqdm import tqdm  # plain text: a notebook keeps its last state (a widget would be stored at 0 %)

    model.train()
    total, count = 0.0, 0
    for batch in tqdm(loader, desc="train", leave=False, disable=not progress):
        images = batch["image"].to(device, non_blocking=True)
        target = training_target(batch).to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), target)
        loss.backward()
        optimizer.step()
        if schedule is not None and not isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
            schedule.step()
        total += loss.item() * len(images)
        count += len(images)
    return total / max(count, 1)


@torch.no_grad()
def validate(model, crops: dict, indices: np.ndarray, input_size: int, loss_fn, device, convention: str | None = None) -> tuple[float, float]:
    """(loss, mean NME_io) on unaugmented validation crops, in eval mode, in ``convention`` (None: the model's
    default); ``loss_fn`` compares flat keypoints."""
    model.eval()
    dataset = CropDataset(crops, input_size, indices)
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])[:, 0].numpy()
    targets = torch.stack([dataset[i]["keypoints"] for i in range(len(dataset))])
    predicted = predict(model, images, convention).keypoints
    normalized = torch.from_numpy(predicted / (input_size / 2) - 1)
    loss = float(loss_fn(normalized.flatten(1), targets.flatten(1)))
    truth = denormalize_keypoints(targets.numpy(), input_size)
    return loss, float(nme_interocular(predicted, truth).mean())


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------
def train(
    config: TrainConfig,
    data_dir: str | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    data_300w: str | None = None,
    workers: int = 0,
) -> tuple[nn.Module, dict]:
    """Train per ``config``; returns the model and its history (per-epoch losses and validation NME; with 300-W
    data also ``val_300w_nme_io``, on the held-out 300-W faces). ``data_300w``: the 300-W folder(s) for presets that
    use them (default: ``$FKP_300W``). ``workers``: processes that augment the crops beside the training loop (0: the
    loop itself), for a GPU that would otherwise wait for them; each worker draws from its own seed, so a run is
    reproducible, and resumes exactly, with the same number of workers."""
    if config.wild_repeat:
        resolve_300w_dirs(data_300w)  # before any work: a missing 300-W folder is told at once
    set_seed(config.seed)
    device_ = choose_device(device)
    log(f"device: {device_}" + ("" if device_.type != "cpu" else f" ({torch.get_num_threads()} threads)"))
    input_size = config.input_size
    course = load_context_crops("training", input_size, data_dir)
    train_idx, val_idx = split_by_person(course["names"].tolist(), config.val_fraction, config.seed)
    if config.limit:
        train_idx = train_idx[: config.limit]
        val_idx = val_idx[: max(config.limit // 4, 1)] if len(val_idx) else val_idx
    log(f"faces: {len(train_idx)} training, {len(val_idx)} validation (held-out people)")
    layout = OutputLayout(68, tuple(config.conventions), config.face_score)
    crops, train_idx, wild_val = assemble_training_set(config, layout, course, train_idx, data_dir, data_300w, log)
    augment = AugmentConfig(**config.augment) if config.augment else None
    loader = DataLoader(
        CropDataset(crops, input_size, train_idx, augment, seed=config.seed),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(train_idx) > config.batch_size,
        generator=torch.Generator().manual_seed(config.seed),
        num_workers=workers,
        worker_init_fn=seed_worker if workers else None,
    )
    model = build_model(config.model, conventions=layout.conventions, face_score=layout.face_score, **config.model_kwargs)
    if config.init:
        log(f"starting from {config.init}: {len(initialize_from(model, config.init))} weight tensors copied")
    model = model.to(device_)
    if getattr(model, "neighbours", 0):
        faces = train_idx if "face" not in crops else train_idx[crops["face"][train_idx] > 0.5]
        model.set_neighbours(crops["keypoints"][faces].mean(axis=0))  # the mean face of the training crops
    keypoint_loss = make_loss(config.loss, input_size)
    loss_fn = make_training_loss(config, layout, model).to(device_)
    optimizer = make_optimizer(config, model, loss_fn)
    schedule = make_schedule(config, optimizer, len(loader))
    history: dict[str, list] = {"epoch": [], "train_loss": [], "val_loss": [], "val_nme_io": [], "seconds": []}
    if wild_val is not None:
        history["val_300w_nme_io"] = []
    start_epoch = 0
    run_dir = Path(run_dir) if run_dir else None
    checkpoint_file = run_dir / "last.pt" if run_dir else None
    if resume:
        if checkpoint_file is None or not checkpoint_file.is_file():
            raise ModelError(f"Nothing to resume: {checkpoint_file} does not exist; run without --resume first.")
        state = torch.load(checkpoint_file, map_location=device_, weights_only=True)
        if state.get("config") != dataclasses.asdict(config):
            raise ModelError(f"{checkpoint_file} was written with another configuration: use the same preset and options, or a new --run-dir.")
        model.load_state_dict(state["state_dict"])
        loss_fn.load_state_dict(state.get("loss", {}))
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, start_epoch = state["history"], state["epoch"]
        model.flip_offsets = learned_flip_offsets(loss_fn)
        log(f"resumed from {checkpoint_file} after epoch {start_epoch}")
    for epoch in range(start_epoch, config.epochs):
        # Every epoch draws its shuffle, augmentation and dropout from its own seed, so a resumed run
        # continues exactly as an uninterrupted one would.
        loader.generator.manual_seed(config.seed + epoch)
        loader.dataset.rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed + epoch)
        tic = time.perf_counter()
        train_loss = train_one_epoch(model, loader, loss_fn, optimizer, schedule, device_, progress)
        model.flip_offsets = learned_flip_offsets(loss_fn)
        course_convention = "course" if "course" in layout.conventions else None
        val_loss, val_nme = (
            validate(model, crops, val_idx, input_size, keypoint_loss, device_, course_convention) if len(val_idx) else (float("nan"),) * 2
        )
        if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
            schedule.step(val_loss if len(val_idx) else train_loss)
        for key, value in zip(history, (epoch + 1, train_loss, val_loss, val_nme, time.perf_counter() - tic)):
            history[key].append(value)
        line = f"epoch {epoch + 1:3d}/{config.epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  val NME_io {val_nme:.4f}"
        if wild_val is not None:
            history["val_300w_nme_io"].append(validate(model, wild_val, np.arange(len(wild_val["images"])), input_size, keypoint_loss, device_, "300w")[1])
            line += f"  held-out 300-W NME_io {history['val_300w_nme_io'][-1]:.4f}"
        if model.flip_offsets:
            line += "  flip offsets " + ", ".join(f"{c} {v:+.4f}" for c, v in zip(layout.conventions, model.flip_offsets))
        log(f"{line}  ({history['seconds'][-1]:.0f} s)")
        if checkpoint_file is not None:
            atomic_torch_save(
                {
                    "format": CHECKPOINT_FORMAT,
                    "meta": model_metadata(model),
                    "state_dict": model.state_dict(),
                    "loss": loss_fn.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "config": dataclasses.asdict(config),
                },
                checkpoint_file,
            )
    return model.cpu().eval(), history


def assemble_training_set(
    config: TrainConfig,
    layout: OutputLayout,
    course: dict,
    train_idx: np.ndarray,
    data_dir: str | None,
    data_300w: str | None,
    log: Callable[[str], None],
) -> tuple[dict, np.ndarray, dict | None]:
    """The crops to train on and the indices of one epoch, plus the held-out 300-W crops (None without 300-W).

    A course-only layout trains on the course crops as they are. Any other layout gets labelled crops
    (``data_load.mix_crops``): the course faces (course convention), each 300-W training face ``wild_repeat``
    times (300-W convention), and with a face score the training part of the pictures without faces. ``limit``
    caps each part. Missing 300-W data raises a one-line DataError naming ``--data-300w``.
    """
    if layout == OutputLayout():
        return course, train_idx, None
    if "course" not in layout.conventions:
        raise ValueError("A model trained on the course data needs the course convention among its conventions.")
    parts, indices, offset = [(course, layout.conventions.index("course"), True)], [train_idx], len(course["images"])
    wild_val = None
    if config.wild_repeat:
        if "300w" not in layout.conventions:
            raise ValueError("Training on 300-W faces needs the 300w convention among the model's conventions.")
        wild, wild_val = (load_300w_crops(split, config.input_size, data_300w) for split in ("training", "validation"))
        count = min(len(wild["images"]), config.limit or len(wild["images"]))
        parts.append((wild, layout.conventions.index("300w"), True))
        indices += [offset + np.arange(count)] * config.wild_repeat
        offset += len(wild["images"])
        log(f"300-W: {count} training faces, each seen {config.wild_repeat} times an epoch; {len(wild_val['images'])} held out")
    if layout.face_score:
        negatives = load_negative_crops("training", config.input_size, data_dir)
        count = min(len(negatives["images"]), config.limit or len(negatives["images"]))
        parts.append((negatives, 0, False))
        indices.append(offset + np.arange(count))
        log(f"pictures without faces: {count} crops of random boxes (training part)")
    return mix_crops(parts), np.concatenate(indices), wild_val


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--data", help="dataset folder (default: $FKP_DATA, else data/, downloaded on first use)")
    parser.add_argument("--data-300w", help="300-W folder for the wild presets (default: $FKP_300W)")
    parser.add_argument("--out", help="where to save the trained model (default: saved_models/student_<preset>.pt)")
    parser.add_argument("--run-dir", help="checkpoint folder (default: runs/<preset>)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last.pt")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--loss", choices=LOSSES)
    parser.add_argument("--val-fraction", type=float, help="share of people held out (0 trains on everyone)")
    parser.add_argument("--limit", type=int, help="train on this many faces only (a quick check)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--augment", type=parse_augment, metavar="KEY=VALUE,...",
                        help="change augmentation strengths of the preset, e.g. blur=0,occlusion=0 (see data_load.AugmentConfig)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--init", help="start from this saved model's weights (same design; its heads are spread over the new ones)")
    start.add_argument("--from-scratch", action="store_true", help="start from random weights, not from the preset's model to start from")
    parser.add_argument("--input-size", type=positive_int, help="the network's input side in pixels, for the fast models (default: the preset's)")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: its own choice; 1 is faster on a busy machine)")
    parser.add_argument("--second-stage-epochs", type=int,
                        help="then train the second, local stage (pipeline/refinement.py) for this many epochs on the trained model, "
                             "saved beside it as NAME.refine.pt (default: the preset's, 0 for none)")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes that augment crops beside the training loop, e.g. 4 with --device cuda (default: 0, none)")
    parser.add_argument("--flip-offsets", action=argparse.BooleanOptionalAction, default=None,
                        help="learn each convention's horizontal label offset and correct mirrored crops by it (default: the preset's)")
    parser.add_argument("--onnx", action="store_true", help="also export the trained model for ONNX Runtime (--out with .onnx), as the shipped model is")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def positive_int(text: str) -> int:
    """A whole number above zero, for argparse (which turns the ValueError into a one-line usage error)."""
    value = int(text)
    if value <= 0:
        raise ValueError(f"{value} is not above zero")
    return value


def parse_augment(text: str) -> dict[str, float]:
    """``"blur=0,rotation=15"`` as {"blur": 0.0, "rotation": 15.0}; argparse turns the ValueError for an unknown
    name or a non-number into a one-line usage error."""
    known = {f.name for f in dataclasses.fields(AugmentConfig)}
    values = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name.strip() not in known:
            raise ValueError(f"unknown augmentation {name.strip()!r}")
        values[name.strip()] = float(value)
    return values


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset named by ``args`` with the options given; ValueError (one line) for an input size the preset's
    model cannot take (every preset trains a fast model, whose input size can be set)."""
    overrides = {
        key: getattr(args, key)
        for key in ("epochs", "lr", "batch_size", "loss", "val_fraction", "limit", "seed", "init")
        if getattr(args, key) is not None
    }
    config = dataclasses.replace(PRESETS[args.preset], **overrides)
    if getattr(args, "flip_offsets", None) is not None:
        config = dataclasses.replace(config, flip_offsets=args.flip_offsets)
    if getattr(args, "from_scratch", False):
        config = dataclasses.replace(config, init=None)
    if getattr(args, "input_size", None):
        build_model(config.model, **{**config.model_kwargs, "input_size": args.input_size})  # a size the design cannot take is told now
        config = dataclasses.replace(config, model_kwargs={**config.model_kwargs, "input_size": args.input_size})
    if getattr(args, "augment", None):
        config = dataclasses.replace(config, augment={**config.augment, **args.augment})
    return config


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    out = Path(args.out) if args.out else REPO_DIR / "saved_models" / f"student_{args.preset}.pt"
    run_dir = Path(args.run_dir) if args.run_dir else REPO_DIR / "runs" / args.preset
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        tic = time.perf_counter()
        model, history = train(config, args.data, run_dir, args.resume, args.device, args.progress, data_300w=args.data_300w, workers=args.workers)
        minutes = (time.perf_counter() - tic) / 60
        val_nme = history["val_nme_io"][-1] if history["val_nme_io"] else float("nan")
        wild = {"val_nme_io_300w_held_out": history["val_300w_nme_io"][-1]} if history.get("val_300w_nme_io") else {}
        meta = dict(preset=args.preset, config=dataclasses.asdict(config), train_minutes=round(minutes, 2),
                    val_nme_io_held_out_people=val_nme, device=str(choose_device(args.device)), **wild)
        save_model(model, out, **meta)  # the trained model is kept first, whatever the export does
    except (DataError, ModelError, NotImplementedError) as error:  # NotImplementedError: a TODO not done
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.onnx:
        try:
            save_model_with_onnx(model, out, **meta)
        except Exception as error:  # the exporter raises many types; the model itself is saved already
            print(f"error: saved {out}, but its ONNX export failed ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                  f"try again with `python -m models --export-onnx {out}`.", file=sys.stderr)
            return 1
    (run_dir / "history.json").write_text(json.dumps(history))
    print(f"trained in {minutes:.1f} min; saved {out}")
    if config.face_score_refit:
        from pipeline import face_score_refit

        try:
            face_score_refit.refit_model_file(out, args.data, args.data_300w, limit=config.limit)
        except (DataError, ModelError) as error:
            print(f"error: {error} (the trained model is saved: `python -m pipeline.face_score_refit --model {out}` refits it)", file=sys.stderr)
            return 1
    epochs = SECOND_STAGE_EPOCHS.get(args.preset, 0) if args.second_stage_epochs is None else args.second_stage_epochs
    if epochs:
        from pipeline import refinement

        stage_args = ["--first-stage", str(out), "--epochs", str(epochs), "--run-dir", str(run_dir / "second_stage")]
        stage_args += [f"--{name}={value}" for name, value in (("data", args.data), ("data-300w", args.data_300w), ("threads", args.threads)) if value]
        return refinement.main(stage_args + (["--resume"] if args.resume and (run_dir / "second_stage" / "last.pt").is_file() else []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
