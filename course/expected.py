"""The values the course's checks compare students' answers with, computed from the instructors' solutions.

    python -m course.expected          # writes course/expected_values.npz

The checks (``course/checks.py``) go into the students' release without any solution in them. Where a check needs
the right answer for a given input, it reads it from ``course/expected_values.npz``, which this module computes by
running this repository's solutions: the solution regions of the modules (``data_load.py``, ``filters.py``) and the
solution cells of the notebooks (notebook 2's ``train_one_epoch`` and ``validate``). The file also holds the
inputs those answers belong to (a drawn face, a face window, tiny models and batches), so a check needs nothing
else. Run this module again whenever a solution or a check's input changes; a test checks that the stored values
still equal what the solutions give. The students' release leaves this module out (``course.release``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from course.checks import EXPECTED_FILE, PLACEMENT_ROLLS, _face_sample, _turned

REPO_DIR = Path(__file__).resolve().parents[1]
# The notebook solution cells whose answers are stored, by grade_id, and the notebook that holds them.
NOTEBOOK_SOLUTIONS = {"train-one-epoch": "2_Define_Train_Network.ipynb", "validate": "2_Define_Train_Network.ipynb"}
# Input sizes whose test transform is stored (notebook 1 checks the reference design's, 112).
TEST_TRANSFORM_SIZES = (64, 96, 112, 128)


def notebook_solutions(grade_ids: tuple[str, ...] = tuple(NOTEBOOK_SOLUTIONS)) -> dict[str, Any]:
    """The names the notebooks' solution cells ``grade_ids`` define, run in one namespace with the modules the
    notebooks import."""
    import nbformat
    import torch

    import data_load
    import models
    from pipeline import evaluation, training

    namespace: dict[str, Any] = {"np": np, "torch": torch, "nn": torch.nn, "data_load": data_load, "models": models,
                                 "evaluation": evaluation, "training": training}
    exec("import time", namespace)
    for grade_id in grade_ids:
        cells = nbformat.read(REPO_DIR / NOTEBOOK_SOLUTIONS[grade_id], as_version=4).cells
        source = next(c.source for c in cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
        exec(compile(source, f"{NOTEBOOK_SOLUTIONS[grade_id]}:{grade_id}", "exec"), namespace)
    return namespace


def _transforms() -> dict[str, np.ndarray]:
    """Notebook 1: the drawn face, the face windows, and the answers of Rescale, CenterCrop, Normalize and
    test_transform for them."""
    import cv2

    import data_load

    values: dict[str, np.ndarray] = {}
    sample = _face_sample()
    values["sample/image"], values["sample/keypoints"] = sample["image"], sample["keypoints"]
    for orientation, picture in (("portrait", sample), ("landscape", _turned(sample))):
        for key, size in (("int", 100), ("tuple", (80, 120))):
            out = data_load.Rescale(size)(picture)
            values[f"rescale/{orientation}/{key}/shape"] = np.array(out["image"].shape[:2])
            values[f"rescale/{orientation}/{key}/keypoints"] = np.asarray(out["keypoints"], np.float32)
    h, w = sample["image"].shape[:2]
    for key, size in (("even", (h - 12, w - 12)), ("odd", (h - 13, w - 11)), ("square", min(h, w) - 20)):
        out = data_load.CenterCrop(size)(sample)
        values[f"center_crop/{key}/shape"] = np.array(out["image"].shape[:2])
        values[f"center_crop/{key}/keypoints"] = np.asarray(out["keypoints"], np.float32)
    normalized = data_load.Normalize()(sample)
    values["normalize/image"] = normalized["image"]
    values["normalize/keypoints"] = normalized["keypoints"]
    values["normalize/bgr_image"] = cv2.cvtColor(sample["image"], cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
    values["normalize/keypoints_swapped"] = ((sample["keypoints"] - [h / 2, w / 2]) / [h / 2, w / 2]).astype(np.float32)

    size = data_load.WINDOW_SIZE
    window = _face_sample(size, size, roll_deg=5.0)
    values["window/image"], values["window/keypoints"] = window["image"], window["keypoints"]
    marked = np.zeros_like(window["image"])
    x, y = window["keypoints"][30]
    cv2.circle(marked, (int(round(x * 16)), int(round(y * 16))), 4 * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    values["window_marker/image"], values["window_marker/keypoints"] = marked, window["keypoints"]
    for input_size in TEST_TRANSFORM_SIZES:
        out = data_load.test_transform(input_size)(window)
        values[f"pipelines/test/{input_size}/image"] = out["image"][0].numpy()
        values[f"pipelines/test/{input_size}/keypoints"] = out["keypoints"].numpy()
    return values


def _training(solutions: dict[str, Any]) -> dict[str, np.ndarray]:
    """Notebook 2: a tiny linear model and two batches, and what the solution's ``train_one_epoch`` makes of them
    with SGD (and what forgetting ``zero_grad`` would); a tiny model with batch normalisation and dropout, three
    batches of faces, and what the solution's ``validate`` measures."""
    import torch
    import torch.nn as nn

    from resources import artwork

    values: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(25)
    values["train_step/weight"] = (rng.normal(0, 0.05, (136, 64))).astype(np.float32)
    values["train_step/bias"] = (rng.normal(0, 0.05, 136)).astype(np.float32)
    values["train_step/images"] = rng.random((2, 4, 1, 8, 8), dtype=np.float32)
    values["train_step/keypoints"] = rng.uniform(-1, 1, (2, 4, 68, 2)).astype(np.float32)

    def linear() -> nn.Module:
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 136))
        with torch.no_grad():
            model[1].weight.copy_(torch.from_numpy(values["train_step/weight"]))
            model[1].bias.copy_(torch.from_numpy(values["train_step/bias"]))
        for p in model.parameters():
            p.grad = torch.full_like(p, 0.5)
        return model

    batches = [{"image": torch.from_numpy(i), "keypoints": torch.from_numpy(k)}
               for i, k in zip(values["train_step/images"], values["train_step/keypoints"])]
    model = linear()
    loss = solutions["train_one_epoch"](model, batches, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1), "cpu")
    values["train_step/loss"] = np.array(loss)
    values["train_step/weight_after"] = model[1].weight.detach().numpy().copy()
    values["train_step/bias_after"] = model[1].bias.detach().numpy().copy()
    stale = linear()  # the usual mistake: no zero_grad, so the steps add up old gradients
    optimizer = torch.optim.SGD(stale.parameters(), lr=0.1)
    for batch in batches:
        nn.functional.mse_loss(stale(batch["image"]), batch["keypoints"].flatten(1)).backward()
        optimizer.step()
    values["train_step/stale_weight"] = stale[1].weight.detach().numpy().copy()

    torch.manual_seed(25)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 136))
    with torch.no_grad():
        model[2].running_mean.uniform_(-0.3, 0.3)
        model[2].running_var.uniform_(0.5, 2.0)
    for name, value in model.state_dict().items():
        values[f"validate/state/{name}"] = value.numpy().copy()
    faces = [[artwork.face_keypoints(rng.uniform(3.5, 4.5, 2), rng.uniform(4, 5), rng.uniform(-10, 10)) for _ in range(4)] for _ in range(3)]
    values["validate/images"] = rng.random((3, 4, 1, 8, 8), dtype=np.float32)
    values["validate/keypoints"] = ((np.array(faces) - 4.0) / 4.0).astype(np.float32)
    batches = [{"image": torch.from_numpy(i), "keypoints": torch.from_numpy(k)}
               for i, k in zip(values["validate/images"], values["validate/keypoints"])]
    loss, nme = solutions["validate"](model, batches, nn.MSELoss(), "cpu")
    values["validate/loss"], values["validate/nme"] = np.array(loss), np.array(nme)
    return values


def _placement() -> dict[str, np.ndarray]:
    """Notebook 4: a noisy face and where the solution's ``target_points`` puts the sunglasses' anchors on it; upright
    and rolled faces and where each accessory's anchors go on them."""
    import filters
    from resources import artwork

    values: dict[str, np.ndarray] = {}
    keypoints = artwork.face_keypoints((200, 180), 220, 0) + np.random.default_rng(0).normal(0, 2, (68, 2))
    values["placement/keypoints"] = keypoints
    values["placement/targets"] = np.asarray(filters.load_artwork("sunglasses").target_points(keypoints), np.float64)
    faces = np.stack([artwork.face_keypoints((200, 180), 220, roll) for roll in PLACEMENT_ROLLS])
    values["placement/faces"] = faces
    for name in artwork.ACCESSORIES:
        art = filters.load_artwork(name)
        values[f"placement/{name}"] = np.stack([np.asarray(art.target_points(face), np.float64) for face in faces])
    return values


def compute() -> dict[str, np.ndarray]:
    """Every stored value, computed from the solutions now."""
    return {**_transforms(), **_training(notebook_solutions()), **_placement()}


def write(values: dict[str, np.ndarray], path: Path = EXPECTED_FILE) -> Path:
    """Save ``values`` to ``path`` (compressed .npz), atomically: a complete file or the previous one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **values)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def differences(stored: dict[str, np.ndarray], computed: dict[str, np.ndarray], tolerance: float = 1e-5) -> list[str]:
    """The keys whose stored and computed values differ (beyond ``tolerance``), or that only one side has."""
    problems = sorted(set(stored) ^ set(computed))
    for key in sorted(set(stored) & set(computed)):
        a, b = np.asarray(stored[key]), np.asarray(computed[key])
        close: Callable[[], bool] = lambda: np.allclose(a.astype(np.float64), b.astype(np.float64), atol=tolerance, rtol=tolerance)
        if a.shape != b.shape or not close():
            problems.append(key)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether the stored values are up to date")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    computed = compute()
    if args.check:
        with np.load(EXPECTED_FILE) as stored:
            problems = differences({key: stored[key] for key in stored.files}, computed)
        print("up to date" if not problems else f"out of date: {', '.join(problems[:8])}; run python -m course.expected")
        return int(bool(problems))
    print(f"wrote {write(computed)}: {len(computed)} values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
