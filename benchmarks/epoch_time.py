"""Where the time of one training epoch goes, with the crop cache and without it.

    python benchmarks/epoch_time.py --data ../shared/data --data-300w ../shared/300w [--preset wild] [--steps 40]

An epoch of the in-the-wild presets reads the course training faces, the 300-W training faces (twice) and the
no-face crops. What does not change from one epoch to the next (decoding every picture and cutting a context crop
around each face) is done once and cached in ``.cache/`` (``data_load.cached_crops``); each epoch then only warps
the cached crops (augmentation) and runs the network. This script times, on one thread:

- cutting the crops from the pictures (what every epoch would cost without the cache), into a temporary folder;
- loading them from that cache (once per run);
- one epoch of augmented batches from the cached crops, without the network;
- ``--steps`` training steps of the preset's model and loss (forward, backward, optimizer), scaled to the
  epoch's number of batches.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from data_load import AugmentConfig, CropDataset, DataError, load_context_crops, split_by_person  # noqa: E402
from models import OutputLayout, build_model  # noqa: E402
from pipeline.data_300w import load_300w_crops  # noqa: E402
from pipeline.no_faces import load_negative_crops  # noqa: E402
from pipeline.trainer import PRESETS, assemble_training_set, make_optimizer, make_training_loss, training_target  # noqa: E402


def timed(function):
    tic = time.perf_counter()
    result = function()
    return result, time.perf_counter() - tic


def load_everything(config, data_dir: str | None, data_300w: str | None, cache_dir: str) -> float:
    """Seconds to get every crop set an epoch of the preset reads, through the cache in ``cache_dir``: cutting
    them from the pictures into an empty cache, loading them from a filled one."""
    size = config.input_size
    _, seconds = timed(lambda: load_context_crops("training", size, data_dir, cache_dir))
    if config.wild_repeat:
        seconds += timed(lambda: load_300w_crops("training", size, data_300w, cache_dir))[1]
    if config.face_score:
        seconds += timed(lambda: load_negative_crops("training", size, data_dir, cache_dir))[1]
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="course dataset folder (default: $FKP_DATA)")
    parser.add_argument("--data-300w", help="300-W folder (default: $FKP_300W)")
    parser.add_argument("--preset", default="wild", choices=sorted(PRESETS))
    parser.add_argument("--steps", type=lambda text: max(1, int(text)), default=40, help="training steps timed (default: 40)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = PRESETS[args.preset]
    try:
        with tempfile.TemporaryDirectory() as cache:
            cutting = load_everything(config, args.data, args.data_300w, cache)
            loading = load_everything(config, args.data, args.data_300w, cache)
        course = load_context_crops("training", config.input_size, args.data)
        train_idx, _ = split_by_person(course["names"].tolist(), config.val_fraction, config.seed)
        layout = OutputLayout(68, tuple(config.conventions), config.face_score)
        crops, indices, _ = assemble_training_set(config, layout, course, train_idx, args.data, args.data_300w, lambda line: None)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    loader = DataLoader(CropDataset(crops, config.input_size, indices, AugmentConfig(**config.augment), seed=0),
                        batch_size=config.batch_size, shuffle=True, drop_last=len(indices) > config.batch_size, generator=torch.Generator().manual_seed(0))
    kept, batch_count = [], 0  # the first batches are kept for timing the network; the rest only counted

    def draw_epoch() -> None:
        nonlocal batch_count
        for batch in loader:
            batch_count += 1
            if len(kept) < 3 + args.steps:
                kept.append(batch)

    _, data_seconds = timed(draw_epoch)
    model = build_model(config.model, conventions=layout.conventions, face_score=layout.face_score, **config.model_kwargs).train()
    loss_fn = make_training_loss(config, layout, model)
    optimizer = make_optimizer(config, model)

    def step(batch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(batch["image"]), training_target(batch)).backward()
        optimizer.step()

    for batch in kept[:3]:  # warm-up
        step(batch)
    chosen = kept[3:] or kept[: args.steps]  # a tiny set has fewer batches than the warm-up
    _, step_seconds = timed(lambda: [step(batch) for batch in chosen])
    compute = step_seconds / len(chosen) * batch_count
    print(f"preset {args.preset}: {len(indices)} crops an epoch, {batch_count} batches of {config.batch_size}, {config.input_size} px, 1 thread")
    print(f"  cutting the crops from the pictures: {cutting:6.1f} s  (every epoch without the cache)")
    print(f"  loading them from the cache:         {loading:6.1f} s  (once per run)")
    print(f"  augmented batches of one epoch:      {data_seconds:6.1f} s")
    print(f"  network, one epoch ({len(chosen)} steps timed): {compute:6.1f} s  ({1000 * step_seconds / len(chosen):.0f} ms a step)")
    print(f"epoch without the cache: {cutting + data_seconds + compute:.1f} s; with it: {data_seconds + compute:.1f} s "
          f"({(cutting + data_seconds + compute) / (data_seconds + compute):.2f} times faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
