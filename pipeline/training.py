"""What the course's training (notebook 2) uses besides the students' own code: seeds, the device, the Wing loss,
checkpoints that survive a disconnect, and what a planned training will cost.

The training itself (one epoch, validation, the epochs that keep the best one) is what students write in notebook 2;
these helpers hold only what is not the lesson. Nothing here runs a training step: ``estimate_training_time`` times
the students' own ``train_one_epoch``.
"""
from __future__ import annotations

import copy
import inspect
import itertools
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from models import atomic_torch_save

REPO_DIR = Path(__file__).resolve().parents[1]
LOSSES = ("wing", "smoothl1", "mse")
CHECKPOINT_FORMAT = "facial-keypoints-checkpoint/1"
# The course asks for a network that trains in this many minutes on 2 CPU cores (notebook 2 says why).
BUDGET_MINUTES = 15.0
# How many times faster than a 2-core CPU a GPU such as Colab's T4 runs the network's part of a training step, for
# the course's small networks: an estimate, not a measurement (see ``TrainingTime``).
GPU_SPEEDUP = 10.0


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
    """Seed Python's, NumPy's and PyTorch's random numbers (the transforms draw from NumPy's, ``data_load.seeded_rng``)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class WingLoss(nn.Module):
    """Wing loss (Feng et al., 2018, "Wing Loss for Robust Facial Landmark Localisation with Convolutional Neural
    Networks") between predicted and true keypoints normalised to [-1, 1] of an ``input_size`` px input, any shape.

    Errors are measured in input pixels: ``width * log(1 + error / curvature)`` below ``width`` (10 px), where it
    pulls hardest on small errors, and ``error - C`` (L1, C making the two meet) beyond. Returns the mean.
    """

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
    """The loss named ``name`` (one of LOSSES) for keypoints normalised to [-1, 1] of an ``input_size`` px input:
    ``WingLoss``, ``nn.SmoothL1Loss(beta=0.02)`` (0.02 units: about 1 px of a 112 px input) or ``nn.MSELoss``."""
    losses: dict[str, Callable[[], nn.Module]] = {
        "wing": lambda: WingLoss(input_size),
        "smoothl1": lambda: nn.SmoothL1Loss(beta=0.02),
        "mse": nn.MSELoss,
    }
    if name not in losses:
        raise ValueError(f"Unknown loss {name!r}: choose one of {', '.join(losses)}.")
    return losses[name]()


# ---------------------------------------------------------------------------------------------------------
# Checkpoints: a training that resumes after a disconnect
# ---------------------------------------------------------------------------------------------------------
# Counters a learning-rate schedule's state holds besides its settings: they change as it steps.
SCHEDULE_COUNTERS = ("last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "best", "num_bad_epochs",
                     "cooldown_counter", "_is_initial", "_initial_step")


def _plain(value: Any) -> Any:
    """``value`` as plain Python (numbers, strings, lists, dicts) for a checkpoint read with weights_only."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)


def training_setup(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any = None) -> dict:
    """What a checkpoint must match to be resumed: the network's weight names and shapes, the optimizer's kind and
    settings (``optimizer.defaults``: the learning rate it was made with, not the one a schedule has moved it to),
    and the schedule's kind and settings (its counters left out)."""
    settings = {}
    if schedule is not None:
        settings = {k: v for k, v in schedule.state_dict().items() if k not in SCHEDULE_COUNTERS and not callable(v)}
    return _plain({
        "weights": [[name, list(tensor.shape)] for name, tensor in model.state_dict().items()],
        "optimizer": [type(optimizer).__name__, optimizer.defaults],
        "schedule": [type(schedule).__name__ if schedule is not None else None, settings],
    })


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any = None, **state: Any) -> None:
    """Write everything a training needs to go on after a disconnect to ``path``, atomically (a crash leaves the
    previous checkpoint whole): the weights, the optimizer's and the schedule's states, what they were made as
    (``training_setup``) and ``state`` (plain values: the epoch, the history, the best validation error, ...)."""
    atomic_torch_save({
        "format": CHECKPOINT_FORMAT,
        "setup": training_setup(model, optimizer, schedule),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict() if schedule is not None else None,
        "state": _plain(state),
    }, path)


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any = None) -> dict | None:
    """Restore a checkpoint of ``save_checkpoint`` into ``model``, ``optimizer`` and ``schedule`` (made afresh, as
    for a new training) and return the ``state`` it was saved with; None when there is none to resume.

    A checkpoint saved for another network, optimizer or schedule (``training_setup``), or unreadable, is not
    resumed: it is renamed ``<name>.<time>.old`` (nothing saved is lost), one line says so, and None is returned,
    so the training starts afresh.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        readable = isinstance(checkpoint, dict) and checkpoint.get("format") == CHECKPOINT_FORMAT
    except Exception:  # torch raises many types for truncated or foreign files
        readable = False
    if readable and checkpoint["setup"] == training_setup(model, optimizer, schedule):
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if schedule is not None:
            schedule.load_state_dict(checkpoint["schedule"])
        return checkpoint["state"]
    kept = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.old")
    path.replace(kept)
    reason = "was saved for another network, optimizer or schedule" if readable else "is not a checkpoint of this course"
    print(f"{path} {reason}: starting afresh (it is kept as {kept.name}).")
    return None


# ---------------------------------------------------------------------------------------------------------
# What a training will cost
# ---------------------------------------------------------------------------------------------------------
def same_optimizer(optimizer: torch.optim.Optimizer, parameters: Any) -> torch.optim.Optimizer:
    """A new optimizer of ``optimizer``'s kind and settings (its ``defaults`` that its constructor takes) for other
    ``parameters``: to train a copy of a network the way the original will be trained."""
    accepted = inspect.signature(type(optimizer).__init__).parameters
    return type(optimizer)(parameters, **{key: value for key, value in optimizer.defaults.items() if key in accepted})


@dataclass
class TrainingTime:
    """What ``estimate_training_time`` measured, per batch in seconds, and what it makes of a whole training.

    ``data``: drawing one training batch (reading and transforming its faces, on the CPU); ``network``: one batch
    of the students' ``train_one_epoch`` on those batches (forward, loss, backward, update, on ``device``);
    ``validation``: one validation batch of ``validate``. ``threads``: the CPU threads PyTorch trains with, the faster
    of those tried (``thread_seconds``: the network's time per batch with each). On a GPU such as Colab's T4, the
    network's part is taken to run ``GPU_SPEEDUP`` (10) times faster than on 2 CPU cores and the data's part as fast
    as here (Colab gives a T4 two CPU cores). That factor is an estimate, not a measurement: NVIDIA gives the T4 8.1
    TFLOPS in float32 (T4 datasheet), 40 to 80 times the peak of a 2-core laptop CPU, but networks this small keep a
    GPU far from its peak, so the course counts on about a tenth of the CPU time.
    """

    data: float
    network: float
    validation: float
    train_batches: int
    val_batches: int
    epochs: int
    device: str
    threads: int
    thread_seconds: dict = field(default_factory=dict)

    @property
    def epoch_seconds(self) -> float:
        return self.train_batches * (self.data + self.network) + self.val_batches * self.validation

    @property
    def minutes(self) -> float:
        """The planned epochs here, in minutes."""
        return self.epochs * self.epoch_seconds / 60

    @property
    def gpu_minutes(self) -> float:
        """The planned epochs on a GPU such as Colab's T4, in minutes (estimated from a CPU measurement)."""
        if self.device != "cpu":
            return self.minutes
        network = self.train_batches * self.network + self.val_batches * self.validation
        return self.epochs * (self.train_batches * self.data + network / GPU_SPEEDUP) / 60

    def report(self, budget_minutes: float = BUDGET_MINUTES) -> str:
        """What the numbers mean for the planned training, in a few lines."""
        where = f"{self.device}, {self.threads} CPU thread(s)" if self.device == "cpu" else self.device
        lines = []
        if len(self.thread_seconds) > 1:
            tried = ", ".join(f"{threads} thread(s) {1000 * seconds:.0f} ms" for threads, seconds in sorted(self.thread_seconds.items()))
            lines.append(f"a training batch with {tried}: training uses {self.threads} (on a busy machine, threads wait on each other)")
        lines += [
            f"one batch: {1000 * self.data:.0f} ms to prepare, {1000 * self.network:.0f} ms to train on ({where}); "
            f"one epoch: {self.train_batches} training and {self.val_batches} validation batches, about {self.epoch_seconds:.0f} s",
            f"{self.epochs} epochs: about {self.minutes:.1f} min here",
        ]
        if self.device == "cpu":
            lines.append(f"on a GPU such as Colab's T4: about {self.gpu_minutes:.1f} min (the network's part about "
                         f"{GPU_SPEEDUP:g} times faster, the data's part as here)")
            if self.minutes <= budget_minutes:
                lines.append(f"within the budget of {budget_minutes:g} min on a CPU")
            else:
                lines.append(f"over the budget of {budget_minutes:g} min on a CPU: fewer epochs, a smaller input or fewer "
                             "channels, or a GPU (on Colab: Runtime > Change runtime type > T4 GPU)")
        return "\n".join(lines)


def estimate_training_time(
    train_one_epoch: Callable[..., float],
    model: nn.Module,
    train_loader: Any,
    criterion: Callable,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    device: str | torch.device = "cpu",
    validate: Callable[..., Any] | None = None,
    val_loader: Any = None,
    batches: int = 4,
    choose_threads: bool = True,
) -> TrainingTime:
    """Time the students' ``train_one_epoch(model, loader, criterion, optimizer, device)`` (and ``validate(model,
    loader, criterion, device)``) on ``batches`` batches of the loaders, after one batch to warm up, and scale to
    ``epochs`` epochs of ``len(loader)`` batches (see ``TrainingTime``).

    On a CPU with ``choose_threads``, the training step is timed with PyTorch's thread count and with one thread, and
    the faster is kept (``torch.set_num_threads``): on a machine busy with other work, several threads wait on each
    other and can run many times slower than one (measured on the course's shared 2-core machine: 2.8 to 12 times).
    It trains copies: ``model`` and ``optimizer`` are left as they were (``same_optimizer`` steps the copy). The
    first batch of a loader is drawn outside the timing.
    """
    device = torch.device(device)
    trial = copy.deepcopy(model).to(device)
    trial_optimizer = same_optimizer(optimizer, trial.parameters())

    def draw(loader: Any, count: int) -> tuple[list, float]:
        iterator = iter(loader)
        first = [next(iterator)]
        tic = time.perf_counter()
        more = list(itertools.islice(iterator, count))
        return first + more, (time.perf_counter() - tic) / max(len(more), 1)

    def step_seconds(batches_: list) -> float:
        train_one_epoch(trial, batches_[:1], criterion, trial_optimizer, device)  # warm-up
        tic = time.perf_counter()
        train_one_epoch(trial, batches_[1:], criterion, trial_optimizer, device)
        return (time.perf_counter() - tic) / max(len(batches_) - 1, 1)

    train_batches, data = draw(train_loader, batches)
    thread_seconds = {torch.get_num_threads(): step_seconds(train_batches)}
    if device.type == "cpu" and choose_threads and torch.get_num_threads() > 1:
        default = torch.get_num_threads()
        torch.set_num_threads(1)
        thread_seconds[1] = step_seconds(train_batches)
        torch.set_num_threads(1 if thread_seconds[1] < thread_seconds[default] else default)
    network = thread_seconds[torch.get_num_threads()]
    validation, val_count = 0.0, 0
    if validate is not None and val_loader is not None:
        val_batches, val_data = draw(val_loader, batches)
        tic = time.perf_counter()
        validate(trial, val_batches[1:] or val_batches, criterion, device)
        validation = val_data + (time.perf_counter() - tic) / max(len(val_batches) - 1, 1)
        val_count = len(val_loader)
    return TrainingTime(data, network, validation, len(train_loader), val_count, int(epochs), device.type, torch.get_num_threads(),
                        thread_seconds)
