"""Train a keypoint model on the training split, validating on people it never sees.

    python train.py --preset cpu            # the fast model in about 15 minutes on a 2-core laptop CPU
    python train.py --preset full           # the recipe of the shipped model
    python train.py --preset course         # the course's Net on 224 x 224 inputs
    python train.py --preset cpu --resume   # continue from runs/<preset>/last.pt

Each epoch writes ``runs/<name>/last.pt`` atomically (model, optimizer, schedule, history), so an interrupted
run loses at most one epoch; the final model goes to ``--out`` as a plain state dict with metadata.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from data_load import AugmentConfig, CropDataset, DataError, load_context_crops, person_of
from data_load import denormalize_keypoints
from evaluate import nme_interocular
from inference import predict_crops
from models import CHECKPOINT_FORMAT, MODEL_NAMES, ModelError, atomic_torch_save, build_model, model_metadata, save_model

REPO_DIR = Path(__file__).resolve().parent


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

    def __post_init__(self) -> None:
        for kind, value, known in (("model", self.model, MODEL_NAMES), ("optimizer", self.optimizer, OPTIMIZERS),
                                   ("schedule", self.schedule, SCHEDULES), ("loss", self.loss, LOSSES)):
            if value not in known:
                raise ValueError(f"Unknown {kind} {value!r}: choose one of {', '.join(known)}.")

    @property
    def input_size(self) -> int:
        from models import DEFAULT_INPUT_SIZES

        return int(self.model_kwargs.get("input_size", DEFAULT_INPUT_SIZES[self.model]))


# The shipped model's design and its light augmentation (see saved_models/README.md for what each choice bought).
FAST_MODEL = {"input_size": 112, "widths": (16, 32, 64, 128), "depths": (1, 1, 1), "head_channels": 32, "hidden": 384}
FAST_AUGMENT = {"rotation": 8.0, "scale": 0.05, "shift": 0.03, "flip": 0.5, "brightness": 0.2, "contrast": 0.25}

PRESETS: dict[str, TrainConfig] = {
    # the recipe of saved_models/keypoints_fast.pt
    "full": TrainConfig(model="fast", model_kwargs=FAST_MODEL, augment=FAST_AUGMENT, epochs=120, batch_size=32, lr=3e-3),
    # the same, shortened to fit 15 minutes on a 2-core laptop CPU (11.3 min on the project's 2-core machine)
    "cpu": TrainConfig(model="fast", model_kwargs=FAST_MODEL, augment=FAST_AUGMENT, epochs=100, batch_size=32, lr=3e-3),
    # the course's Net on 224 x 224 crops
    "course": TrainConfig(model="net", epochs=20, batch_size=32, lr=1e-3, optimizer="adam", schedule="plateau", loss="smoothl1"),
}


# ---------------------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------------------
def choose_device(preferred: str | None = None) -> torch.device:
    """cuda if available, else mps (Apple), else cpu; ``preferred`` overrides."""
    if preferred:
        return torch.device(preferred)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class WingLoss(nn.Module):
    """Wing loss (Feng et al., 2018) on errors measured in input pixels: log-shaped for small errors, L1 for large."""

    def __init__(self, input_size: int, width: float = 10.0, curvature: float = 2.0) -> None:
        super().__init__()
        self.pixels_per_unit = input_size / 2
        self.width, self.curvature = width, curvature
        self.offset = width - width * math.log(1 + width / curvature)

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        error = (predicted - target).abs() * self.pixels_per_unit
        small = self.width * torch.log1p(error / self.curvature)
        return torch.where(error < self.width, small, error - self.offset).mean()


def make_loss(name: str, input_size: int) -> nn.Module:
    losses: dict[str, Callable[[], nn.Module]] = {
        "wing": lambda: WingLoss(input_size),
        "smoothl1": lambda: nn.SmoothL1Loss(beta=0.02),
        "mse": nn.MSELoss,
    }
    if name not in losses:
        raise ValueError(f"Unknown loss {name!r}: choose one of {', '.join(losses)}.")
    return losses[name]()


def split_by_person(names: list[str], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of training and validation faces, with every person entirely on one side."""
    persons = sorted({person_of(n) for n in names})
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * len(persons)))
    val_persons = set(rng.permutation(persons)[:n_val].tolist())
    is_val = np.array([person_of(n) in val_persons for n in names])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
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
        target = batch["keypoints"].to(device, non_blocking=True).flatten(1)
        # TODO (notebook 2): one training step on this batch: clear the old gradients, compute ``loss`` (``loss_fn`` of the
        # model's output for ``images`` against ``target``), backpropagate it, and let the optimizer update the
        # weights.
        ### BEGIN SOLUTION
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), target)
        loss.backward()
        optimizer.step()
        ### END SOLUTION
        if schedule is not None and not isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
            schedule.step()
        total += loss.item() * len(images)
        count += len(images)
    return total / max(count, 1)


@torch.no_grad()
def validate(model, crops: dict, indices: np.ndarray, input_size: int, loss_fn, device) -> tuple[float, float]:
    """(loss, mean NME_io) on unaugmented validation crops, in eval mode."""
    model.eval()
    dataset = CropDataset(crops, input_size, indices)
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])[:, 0].numpy()
    targets = torch.stack([dataset[i]["keypoints"] for i in range(len(dataset))])
    predicted = predict_crops(model, images)
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
) -> tuple[nn.Module, dict]:
    """Train per ``config``; returns the model and its history (per-epoch losses and validation NME)."""
    set_seed(config.seed)
    device_ = choose_device(device)
    log(f"device: {device_}" + ("" if device_.type != "cpu" else f" ({torch.get_num_threads()} threads)"))
    input_size = config.input_size
    crops = load_context_crops("training", input_size, data_dir)
    names = crops["names"].tolist()
    train_idx, val_idx = split_by_person(names, config.val_fraction, config.seed)
    if config.limit:
        train_idx = train_idx[: config.limit]
        val_idx = val_idx[: max(config.limit // 4, 1)] if len(val_idx) else val_idx
    log(f"faces: {len(train_idx)} training, {len(val_idx)} validation (held-out people)")
    augment = AugmentConfig(**config.augment) if config.augment else None
    loader = DataLoader(
        CropDataset(crops, input_size, train_idx, augment, seed=config.seed),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(train_idx) > config.batch_size,
        generator=torch.Generator().manual_seed(config.seed),
    )
    model = build_model(config.model, **config.model_kwargs).to(device_)
    loss_fn = make_loss(config.loss, input_size)
    optimizer = make_optimizer(config, model)
    schedule = make_schedule(config, optimizer, len(loader))
    history: dict[str, list] = {"epoch": [], "train_loss": [], "val_loss": [], "val_nme_io": [], "seconds": []}
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
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, start_epoch = state["history"], state["epoch"]
        log(f"resumed from {checkpoint_file} after epoch {start_epoch}")
    for epoch in range(start_epoch, config.epochs):
        # Every epoch draws its shuffle, augmentation and dropout from its own seed, so a resumed run
        # continues exactly as an uninterrupted one would.
        loader.generator.manual_seed(config.seed + epoch)
        loader.dataset.rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed + epoch)
        tic = time.perf_counter()
        train_loss = train_one_epoch(model, loader, loss_fn, optimizer, schedule, device_, progress)
        val_loss, val_nme = validate(model, crops, val_idx, input_size, loss_fn, device_) if len(val_idx) else (float("nan"),) * 2
        if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
            schedule.step(val_loss if len(val_idx) else train_loss)
        for key, value in zip(history, (epoch + 1, train_loss, val_loss, val_nme, time.perf_counter() - tic)):
            history[key].append(value)
        log(f"epoch {epoch + 1:3d}/{config.epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
            f"val NME_io {val_nme:.4f}  ({history['seconds'][-1]:.0f} s)")
        if checkpoint_file is not None:
            atomic_torch_save(
                {
                    "format": CHECKPOINT_FORMAT,
                    "meta": model_metadata(model),
                    "state_dict": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "config": dataclasses.asdict(config),
                },
                checkpoint_file,
            )
    return model.cpu().eval(), history


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--data", help="dataset folder (default: $FKP_DATA, else data/, downloaded on first use)")
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
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = {
        key: getattr(args, key)
        for key in ("epochs", "lr", "batch_size", "loss", "val_fraction", "limit", "seed")
        if getattr(args, key) is not None
    }
    return dataclasses.replace(PRESETS[args.preset], **overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    out = Path(args.out) if args.out else REPO_DIR / "saved_models" / f"student_{args.preset}.pt"
    run_dir = Path(args.run_dir) if args.run_dir else REPO_DIR / "runs" / args.preset
    try:
        tic = time.perf_counter()
        model, history = train(config, args.data, run_dir, args.resume, args.device, args.progress)
        minutes = (time.perf_counter() - tic) / 60
        val_nme = history["val_nme_io"][-1] if history["val_nme_io"] else float("nan")
        save_model(model, out, preset=args.preset, config=dataclasses.asdict(config), train_minutes=round(minutes, 2),
                   val_nme_io_held_out_people=val_nme, device=str(choose_device(args.device)))
    except (DataError, ModelError, NotImplementedError) as error:  # NotImplementedError: a TODO not done
        print(f"error: {error}", file=sys.stderr)
        return 1
    (run_dir / "history.json").write_text(json.dumps(history))
    print(f"trained in {minutes:.1f} min; saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
