"""The face score refitted on a trained model's frozen features, with turned faces among the crops without a face.

    python -m pipeline.face_score_refit --model saved_models/keypoints_fast.pt [--data DIR] [--data-300w DIR300W]

Why: the face score learns "face" from upright faces and "no face" from pictures without faces, so it never sees a
face the wrong way up. The wild model with flip offsets scored 63 % of the held-out people's faces and 76 % of the
held-out 300-W faces turned by 180 degrees as faces, and such faces read upright passed every check: the
pipeline's upright search kept the upside-down astronaut's face with its keypoints half a circle off (NME_io 1.01),
and the learned detector's pass a course face turned by 57 degrees, so the turned searches that read them right
never ran.

What: the logit is a linear read-out of the network's last features (``face_score_readout``). Those features are
computed once, frozen, for upright faces (positives: the course training faces without the held-out people and
the 300-W training faces, each turned by up to ``UPRIGHT_ROLL`` degrees, mirrored half the time, framed as in
training) and for crops without a face (negatives: the same faces turned by ``TURNED_MIN_ROLL`` to 360 -
``TURNED_MIN_ROLL`` degrees, and the training part of the pictures without faces, ``pipeline.no_faces``); the
logit's weights are fitted again (``fit_readout``): the faces keep their logits, the others go below ``-MARGIN``.
Nothing else changes: the keypoints are exactly the same. The pipeline scores a face on its last crop, which the
re-crops turn upright along the eye line (or the turned search's copy holds within 15 degrees of upright), so faces
turned between ``UPRIGHT_ROLL`` and ``TURNED_MIN_ROLL`` degrees teach nothing either way.

The wild presets of ``train.py`` run it after training (``TrainConfig.face_score_refit``).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from data_load import AugmentConfig, CropDataset, DataError, load_context_crops, split_by_person
from models import FastKeypointNet, ModelError, PipKeypointNet, load_model, model_metadata, output_layout, save_model, save_model_with_onnx
from pipeline.data_300w import load_300w_crops
from pipeline.inference import predict
from pipeline.no_faces import load_negative_crops

# Faces turned by up to this many degrees are faces (the pipeline scores a crop that is upright within about 20).
UPRIGHT_ROLL = 30.0
# Faces turned by this many degrees or more (either way) are not: a face read upright while it is not. From 60, a
# course face turned by 57 degrees, read upright by the learned detector's pass (its final crop still turned by
# about 52), kept a face score of 0.990 and was taken for a sure face (``benchmarks/pipeline_speed.py``).
TURNED_MIN_ROLL = 45.0
# The pull of the logit's weights towards the trained ones (``fit_readout``). Measured on the held-out people /
# held-out 300-W faces (``python -m pipeline.face_score_refit`` prints these shares): turned by 180 degrees, the share
# scored as faces (flip-averaged logit > 0) fell from 63 % / 76 % to 22 % / 26 % at 1e-3, 11 % / 10 % at 1e-4,
# 4.2 % / 5.9 % at 1e-5 and 4.2 % / 5.6 % at 1e-6; turned by 90 degrees from 2.1 % / 6.1 % to 0.3 % / 1.5 % at
# 1e-5. The upright faces kept 100 % / 99.7 % and their logits' 1st percentile (6.1 / 6.2 before, 5.9 / 6.0 at
# 1e-5), and the crops without a face of the measuring part went from 0.56 % to 0.14 % at every setting.
L2 = 1e-5
# The logit the crops without a face are pushed below (a face score of 0.12).
MARGIN = 2.0
FRAMING = AugmentConfig(rotation=UPRIGHT_ROLL, scale=0.05, shift=0.03, flip=0.5, brightness=0.2, contrast=0.25)
SEED = 0


def face_score_readout(model: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Linear, int]:
    """(features of a batch (N, 1, S, S) -> (N, D), the linear layer that gives the face logit, its output row).

    ModelError for a model without a face score or of another design."""
    if isinstance(model, FastKeypointNet) and output_layout(model).face_score:
        return (lambda x: model.head[:-1](model.features(x))), model.head[-1], model.head[-1].out_features - 1
    if isinstance(model, PipKeypointNet) and model.face is not None:
        return (lambda x: model.features(x).mean(dim=(2, 3))), model.face, 0
    raise ModelError("The face score refit needs a fast or fast_pip model with a face score (a wild preset's model).")


@torch.no_grad()
def features_of(model: nn.Module, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The frozen features (N, D) that the face logit reads, for crops (N, S, S) float32 in [0, 1]."""
    readout, _, _ = face_score_readout(model)
    model.eval()
    out = [readout(torch.from_numpy(np.ascontiguousarray(crops[i : i + batch_size, None]))) for i in range(0, len(crops), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def framed_crops(crops: dict[str, np.ndarray], input_size: int, augment: AugmentConfig | None, seed: int, indices: np.ndarray | None = None) -> np.ndarray:
    """Network inputs (N, S, S) from context crops (``data_load.CropDataset``), framed as in training when ``augment``."""
    dataset = CropDataset(crops, input_size, indices, augment, seed)
    return np.stack([dataset[i]["image"][0].numpy() for i in range(len(dataset))]) if len(dataset) else np.zeros((0, input_size, input_size), np.float32)


def quarter_turned(crops: np.ndarray, quarters: int) -> np.ndarray:
    """The crops (N, S, S) turned by ``quarters`` x 90 degrees (counter-clockwise) about their centre."""
    return np.ascontiguousarray(np.rot90(crops, quarters, axes=(1, 2)))


def fit_readout(
    features: np.ndarray, is_face: np.ndarray, start: tuple[np.ndarray, float], margin: float = MARGIN, l2: float = L2
) -> tuple[np.ndarray, float]:
    """Weights (D,) and bias of a linear logit on ``features`` (N, D), from ``start`` (weights, bias), that keeps
    each face's logit (``is_face`` (N,) True) where ``start`` puts it and pushes the others below ``-margin``:
    mean squared change of the faces' logits + mean softplus(logit + margin) of the others + ``l2`` |w - start's
    w|^2, minimised by L-BFGS (float64). Keeping the faces' logits keeps the scale on which the pipeline's face-score
    thresholds were measured."""
    x = torch.from_numpy(features.astype(np.float64))
    faces = torch.from_numpy(np.asarray(is_face, bool))
    origin = torch.from_numpy(np.asarray(start[0], np.float64))
    kept = (x[faces] @ origin + float(start[1])).detach()
    weights = origin.clone().requires_grad_(True)
    bias = torch.tensor([float(start[1])], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=1000, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = x @ weights + bias
        loss = ((logits[faces] - kept) ** 2).mean() + nn.functional.softplus(logits[~faces] + margin).mean()
        loss = loss + l2 * ((weights - origin) ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach().numpy(), float(bias.item())


@dataclass
class RefitSets:
    """Network inputs (N, S, S) of each kind: upright faces, turned faces, crops without a face."""

    faces: np.ndarray
    turned: np.ndarray
    no_faces: np.ndarray


def training_sets(input_size: int, data_dir: str | None, data_300w: str | None, val_fraction: float = 0.1, limit: int | None = None) -> RefitSets:
    """The refit's crops: the course training faces without the held-out people (``split_by_person`` as in
    training) and the 300-W training faces, once upright and once turned by ``TURNED_MIN_ROLL`` degrees or more (two
    framings), and the training part of the pictures without faces. ``limit`` caps each source (a quick check)."""
    course = load_context_crops("training", input_size, data_dir)
    train_idx, _ = split_by_person(course["names"].tolist(), val_fraction, SEED)
    wild = load_300w_crops("training", input_size, data_300w)
    negatives = load_negative_crops("training", input_size, data_dir)
    cap = (lambda n: np.arange(min(n, limit))) if limit else np.arange
    sources = [(course, train_idx[:limit] if limit else train_idx), (wild, cap(len(wild["images"])))]
    faces = np.concatenate([framed_crops(c, input_size, FRAMING, SEED + k, i) for k, (c, i) in enumerate(sources)])
    # rolls within 180 - TURNED_MIN_ROLL of 0, turned half a circle: TURNED_MIN_ROLL to 360 - TURNED_MIN_ROLL
    spread = dataclasses.replace(FRAMING, rotation=180.0 - TURNED_MIN_ROLL)
    turned = np.concatenate([framed_crops(c, input_size, spread, SEED + 10 + k, i) for k, (c, i) in enumerate(sources)])
    return RefitSets(faces, quarter_turned(turned, 2), framed_crops(negatives, input_size, FRAMING, SEED + 20, cap(len(negatives["images"]))))


def measuring_sets(input_size: int, data_dir: str | None, data_300w: str | None, val_fraction: float = 0.1) -> dict[str, RefitSets]:
    """Crops the refit never sees, framed as the pipeline frames them: the course's held-out people and the held-out
    300-W faces, upright and turned by 90 degrees either way and by 180 (``turned``: those three in turn), and the
    measuring part of the pictures without faces."""
    course = load_context_crops("training", input_size, data_dir)
    _, val_idx = split_by_person(course["names"].tolist(), val_fraction, SEED)
    wild = load_300w_crops("validation", input_size, data_300w)
    no_faces = framed_crops(load_negative_crops("measuring", input_size, data_dir), input_size, None, SEED)
    sets = {}
    for name, crops, indices in (("held-out people", course, val_idx), ("held-out 300-W", wild, None)):
        upright = framed_crops(crops, input_size, None, SEED, indices)
        sets[name] = RefitSets(upright, np.concatenate([quarter_turned(upright, q) for q in (1, 3, 2)]), no_faces)
    return sets


def accepted(model: nn.Module, crops: np.ndarray) -> float:
    """Share of crops whose face score (``pipeline.inference.predict``, flip-averaged as in the pipeline) is above 0.5."""
    if not len(crops):
        return float("nan")
    return float((predict(model, crops, flip_average=True).face_score > 0.5).mean())


def refit_face_score(model: nn.Module, sets: RefitSets, l2: float = L2) -> None:
    """Replace the face logit's weights of ``model`` (in place) by ``fit_readout``'s on ``sets``."""
    _, layer, row = face_score_readout(model)
    positives = np.concatenate([sets.faces, np.ascontiguousarray(sets.faces[:, :, ::-1])])
    negatives = np.concatenate([sets.turned, sets.no_faces])
    features = np.concatenate([features_of(model, positives), features_of(model, negatives)])
    is_face = np.r_[np.ones(len(positives), bool), np.zeros(len(negatives), bool)]
    start = (layer.weight[row].detach().double().numpy(), float(layer.bias[row].detach()))
    weights, bias = fit_readout(features, is_face, start, l2=l2)
    with torch.no_grad():
        layer.weight[row] = torch.from_numpy(weights).to(layer.weight.dtype)
        layer.bias[row] = bias


def report(model: nn.Module, sets: dict[str, RefitSets]) -> str:
    """One line per measuring set: the share of its upright faces, of those turned by 90 degrees (either way) and by
    180, and of the crops without a face, accepted as faces (percent)."""
    lines = []
    for name, s in sets.items():
        n = len(s.faces)
        quarter, half = accepted(model, s.turned[: 2 * n]), accepted(model, s.turned[2 * n :])
        lines.append(f"{name}: faces {100 * accepted(model, s.faces):.1f} %, turned by 90 degrees {100 * quarter:.1f} %, upside down {100 * half:.1f} %")
    some = next(iter(sets.values()), None)
    if some is not None:
        lines.append(f"pictures without faces (measuring part): {100 * accepted(model, some.no_faces):.2f} % of {len(some.no_faces)} crops")
    return "\n".join(lines)


def refit_model_file(
    model_path: str | Path, data_dir: str | None, data_300w: str | None, log: Callable[[str], None] = print,
    limit: int | None = None, out: str | Path | None = None,
) -> nn.Module:
    """Refit the face score of the model saved at ``model_path`` and save it (atomically) at ``out`` (None: over
    ``model_path``), with an ONNX export beside it when one sits beside ``model_path``, its metadata kept plus
    ``face_score_refit``; logs the measuring sets' shares before and after. ModelError for a model without a face
    score or one refitted already; DataError for missing data."""
    model, meta = load_model(model_path)
    face_score_readout(model)  # a clear error before any data is read
    if "face_score_refit" in meta:
        raise ModelError(f"{model_path}'s face score is refitted already: refit the model as it was trained (a second refit would move it again).")
    torch.manual_seed(SEED)
    measuring = measuring_sets(model.input_size, data_dir, data_300w)
    log("before the refit:\n" + report(model, measuring))
    sets = training_sets(model.input_size, data_dir, data_300w, limit=limit)
    log(f"refit on {len(sets.faces)} faces (and their mirror images), {len(sets.turned)} turned faces, {len(sets.no_faces)} crops without a face")
    refit_face_score(model, sets)
    log("after the refit:\n" + report(model, measuring))
    own = set(model_metadata(model)) | {"onnx_sha256"}  # written again by the save
    extra = {k: v for k, v in meta.items() if k not in own}
    extra["face_score_refit"] = {"upright_roll": UPRIGHT_ROLL, "turned_min_roll": TURNED_MIN_ROLL, "l2": L2, "faces": len(sets.faces)}
    out = Path(out or model_path)
    save = save_model_with_onnx if Path(model_path).with_suffix(".onnx").is_file() else save_model
    save(model, out, **extra)
    log(f"saved {out}")
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the model file to refit")
    parser.add_argument("--out", help="where to save the refitted model (default: over --model, with its ONNX export)")
    parser.add_argument("--data", help="course dataset folder (default: $FKP_DATA)")
    parser.add_argument("--data-300w", help="300-W folder (default: $FKP_300W)")
    parser.add_argument("--limit", type=int, help="use at most this many faces of each source (a quick check)")
    parser.add_argument("--threads", type=int, help="PyTorch threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        refit_model_file(args.model, args.data, args.data_300w, limit=args.limit, out=args.out)
    except (DataError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
