"""The second, local stage: keypoints refined from patches of the picture itself, region by region.

The first stage (``models.FastKeypointNet``) reads the whole face from one 128-px crop. This stage takes its keypoints
and, for each face region, cuts a small patch from the picture at its own resolution, placed on the region's
current keypoints and turned upright along the eye line, and a small network per region says where the region's
keypoints lie in its patch. Run again from its own answer, it is a cascade (Sun, Wang and Tang, "Deep
Convolutional Network Cascade for Facial Point Detection", CVPR 2013; the principle of dlib's regression-tree
cascade, Kazemi and Sullivan, CVPR 2014: local appearance, indexed by the current shape).

    refiner = Refiner.from_file("saved_models/keypoints_fast.refine.pt")      # ONNX Runtime when its export is beside it
    better = refiner.refine(gray_picture, keypoints, convention="300w")   # (N, 68, 2) picture pixels -> the same

Regions (``REGIONS``): the jaw in four overlapping runs of five points, each brow, the nose, each eye, the mouth;
a point in two regions (jaw points 4, 8, 12) gets the mean of both answers. Patch geometry is in units of the
distance between the eye centres (``d``, about 0.73 inter-ocular distances) and fixed per region; each patch covers
its region's points on 99 % of the training faces plus a margin of 0.15 d for the first stage's error.

Training (``python -m pipeline.refinement --first-stage saved_models/keypoints_fast.pt``): the first stage's own
predictions on the training faces (course training faces except the held-out people, 300-W training faces), made on
crops whose framing is jittered so that their errors are as large as on new faces, are the starting shapes; the
held-out people of the course data measure each epoch. Never the course test set or the held-out 300-W faces.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn

from data_load import invert_matrix, transform_points, warp
from models import CONVENTIONS, ModelError, atomic_torch_save, init_kaiming, read_checkpoint, write_onnx_metadata
from resources.files import atomic_write, file_sha256
from pipeline.second_stage import (
    NUM_KEYPOINTS,
    PATCH_SIZE,
    REFINEMENT_FORMAT,
    REGIONS,
    PatchGeometry,
    Refiner,
    Region,
    eye_frame,
    refinement_file,
    region_metadata,
    regions_from_metadata,
)


class RefinementNet(nn.Module):
    """One small CNN per region, run side by side as grouped convolutions (one group per region, so each region has
    its own weights and the whole stage is a handful of operations).

    Per region: a strided 3x3 stem, a strided 3x3 conv and a residual 3x3 conv at a quarter of the patch, a 1x1 conv
    to ``head_channels``, a dense layer (a conv as large as the map) of ``hidden`` units, and for each convention the
    region's points normalised to [-1, 1] of its patch (``data_load.normalize_keypoints``). ``forward``: patches (N, R,
    S, S) in [0, 1] and the points the patches were cut around (N, R, 2 M, ``patch_points``) -> (N, R, conventions,
    2 M), M the most points of a region; a region with fewer points uses the first 2 n numbers of its row (x0, y0,
    x1, y1, ...). With ``residual`` (the cascade's form) the dense layer also reads the points it was given and the
    network answers with their corrections: it starts from the first stage's shape and moves it where the patch
    shows it should be; without, it places the points from the patch alone.
    """

    def __init__(
        self, regions: Sequence[Region] = REGIONS, conventions: Sequence[str] = ("300w", "course"), size: int = PATCH_SIZE,
        widths: tuple[int, int] = (16, 32), head_channels: int = 8, hidden: int = 64, residual: bool = False,
        outputs: int | None = None,
    ) -> None:
        super().__init__()
        self.regions, self.conventions, self.size, self.residual_points = tuple(regions), tuple(conventions), size, residual
        groups, (w0, w1) = len(self.regions), widths
        self.outputs = outputs or 2 * max(len(r.points) for r in self.regions)  # numbers per region and convention
        self.net_options = {"size": size, "widths": list(widths), "head_channels": head_channels, "hidden": hidden, "residual": residual,
                            "outputs": self.outputs}

        def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(groups * cin, groups * cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                                 nn.BatchNorm2d(groups * cout))

        self.stem = nn.Sequential(conv(1, w0, 3, 2), nn.ReLU(inplace=True), conv(w0, w1, 3, 2), nn.ReLU(inplace=True))
        self.residual = conv(w1, w1, 3)
        self.reduce = nn.Sequential(conv(w1, head_channels, 1), nn.ReLU(inplace=True))
        self.dense = nn.Sequential(nn.Conv2d(groups * head_channels, groups * hidden, size // 4, groups=groups))
        # the points given, read by the dense layer too (a 1 x 1 conv per region on its 2 M numbers)
        self.given = nn.Conv2d(groups * self.outputs, groups * hidden, 1, groups=groups, bias=False) if residual else None
        self.out = nn.Conv2d(groups * hidden, groups * len(self.conventions) * self.outputs, 1, groups=groups)
        init_kaiming(self)
        nn.init.normal_(self.out.weight, std=1e-3)
        if residual:
            nn.init.zeros_(self.out.bias)

    def forward(self, patches: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        x = self.stem(patches)
        x = torch.relu(x + self.residual(x))
        x = self.dense(self.reduce(x))
        if self.given is not None:
            x = x + self.given(points.reshape(-1, len(self.regions) * self.outputs, 1, 1))
        x = self.out(torch.relu(x)).reshape(-1, len(self.regions), len(self.conventions), self.outputs)
        if self.given is not None:
            x = x + points[:, :, None, :]
        return x


def subset(model: RefinementNet, names: Sequence[str]) -> RefinementNet:
    """The part of a trained network that refines the regions ``names``: each region's weights are its own groups,
    so the part computes exactly what the whole does for them (``Refiner`` then keeps the first stage's points
    elsewhere). ValueError for a region the network does not have."""
    known = [region.name for region in model.regions]
    missing = [name for name in names if name not in known]
    if missing:
        raise ValueError(f"The network refines {', '.join(known)}, not {', '.join(missing)}.")
    chosen = [known.index(name) for name in names]
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in model.net_options.items()}
    part = RefinementNet([model.regions[r] for r in chosen], model.conventions, **options)
    groups = len(model.regions)
    state = {}
    for name, tensor in model.state_dict().items():
        if tensor.ndim == 0:  # BatchNorm's batch counter
            state[name] = tensor.clone()
            continue
        per_group = tensor.shape[0] // groups
        state[name] = torch.cat([tensor[r * per_group : (r + 1) * per_group] for r in chosen]).clone()
    part.load_state_dict(state)
    return part.eval()


def save_refinement(model: RefinementNet, path: str | Path, onnx: bool = True, **extra: Any) -> None:
    """Write the refinement stage (state dict and metadata, atomically), and its ONNX export beside it (same name,
    .onnx), recorded by its SHA-256 in the metadata as the first stage's is."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**extra, "regions": region_metadata(model.regions), "conventions": list(model.conventions), "net_options": model.net_options}
    meta.pop("onnx_sha256", None)
    if onnx:
        onnx_path = path.with_suffix(".onnx")
        export_refinement_onnx(model, onnx_path)
        write_onnx_metadata(onnx_path, meta)  # so that the light install runs it without PyTorch
        meta["onnx_sha256"] = file_sha256(onnx_path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": REFINEMENT_FORMAT, "meta": meta, "state_dict": state}, path)


def load_refinement(path: str | Path) -> tuple[RefinementNet, dict]:
    """The refinement network saved at ``path`` (eval mode) and its metadata; ModelError (one line) otherwise."""
    path = Path(path)
    checkpoint = read_checkpoint(path, REFINEMENT_FORMAT, "refinement stage", "train it with `python -m pipeline.refinement`")
    meta = checkpoint.get("meta", {})
    try:
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in meta.get("net_options", {}).items()}
        model = RefinementNet(regions_from_metadata(meta["regions"]), meta["conventions"], **options)
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, ValueError, RuntimeError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{path} does not match its design ({first_line}): retrain or restore it.") from None
    return model.eval(), meta


def export_refinement_onnx(model: RefinementNet, path: str | Path) -> None:
    """Export the network (BatchNorm folded) with inputs ``patches`` (N, R, S, S) and ``given`` (N, R, 2 M) and output
    ``points``, variable N, written atomically (a network that does not read the given points has no such input)."""
    import copy
    import warnings

    from models import fuse_for_inference

    fused = fuse_for_inference(copy.deepcopy(model).cpu())
    dummy = (torch.zeros(1, len(model.regions), model.size, model.size), torch.zeros(1, len(model.regions), model.outputs))

    def export(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(fused, dummy, tmp, dynamo=False, input_names=["patches", "given"], output_names=["points"],
                              dynamic_axes={"patches": {0: "batch"}, "given": {0: "batch"}, "points": {0: "batch"}})

    atomic_write(path, export)


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------
@dataclass
class RefineConfig:
    """A training run of the refinement stage (stored in its checkpoints, so plain values only)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    jitters: int = 4  # first-stage predictions per training face, each from a crop framed with random jitter
    framing: tuple = (0.06, 0.08, 8.0)  # that jitter: shift (share of the box side), scale (share), roll (degrees)
    residual_scale: tuple = (0.6, 1.6)  # the first stage's residual on a face is scaled by a factor drawn from this
    small_share: float = 0.3  # ... or, for this share of the samples, from (0, 0.5): the second round's starting errors
    brightness: float = 0.2
    contrast: float = 0.25
    val_fraction: float = 0.1  # the course data's held-out people (the first stage's own split)
    wild_val_fraction: float = 0.15  # 300-W training photos the second stage does not train on, to measure it
    limit: int | None = None  # this many faces per source (quick runs and tests)
    regions: tuple = ()  # the names of the REGIONS refined (empty: all); the others keep the first stage's points
    residual: bool = True  # the network corrects the points it is given (RefinementNet), rather than placing them afresh
    size: int = PATCH_SIZE
    widths: tuple = (16, 32)
    head_channels: int = 8
    hidden: int = 64


@dataclass
class FaceSet:
    """Faces to train or measure on: grayscale pictures, true (N, 68, 2) shapes, each face's convention index and
    the first stage's predictions (N, J, 68, 2), all in picture pixels."""

    pictures: list
    truth: np.ndarray
    convention: np.ndarray
    start: np.ndarray


def chosen_regions(names: Sequence[str] = ()) -> tuple[Region, ...]:
    """The ``REGIONS`` named (all for none); ValueError naming the known ones for a name that is not one."""
    known = {region.name: region for region in REGIONS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"Unknown region(s) {', '.join(unknown)}: choose from {', '.join(known)}.")
    return tuple(known[name] for name in names) if names else REGIONS


def d_units(points: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-face mean point-to-point distance in eye distances ``d`` of the true shapes: (N,)."""
    distance = np.array([eye_frame(t)[1] for t in truth])
    return np.linalg.norm(points - truth, axis=-1).mean(axis=-1) / distance


def first_stage_predictions(runner: Any, pictures: Sequence[np.ndarray], truth: np.ndarray, convention: str,
                            jitters: int, framing: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """The first stage's flip-averaged keypoints (N, J, 68, 2) in picture pixels, from crops framed by each face's
    keypoint box (``data_load.haar_box_from_keypoints``, as evaluation frames faces) moved, scaled and turned at
    random (``framing``: shift, scale, roll); J = ``jitters``, 0 for the unjittered framing alone (J = 1)."""
    from data_load import crop_matrix, crop_square_from_box, haar_box_from_keypoints
    from pipeline.inference import predict

    size, out = runner.input_size, []
    for picture, shape in zip(pictures, truth):
        cx, cy, side = crop_square_from_box(haar_box_from_keypoints(shape))
        matrices = []
        for _ in range(max(jitters, 1)):
            if jitters:
                shift, scale, roll = framing
                dx, dy = rng.uniform(-shift, shift, 2) * side
                matrix = crop_matrix(cx + dx, cy + dy, side * rng.uniform(1 - scale, 1 + scale), size, rng.uniform(-roll, roll))
            else:
                matrix = crop_matrix(cx, cy, side, size)
            matrices.append(matrix)
        crops = np.stack([warp(picture, m, size) for m in matrices]).astype(np.float32) / 255.0
        points = predict(runner, crops, convention, flip_average=True).keypoints
        out.append(np.stack([transform_points(p, invert_matrix(m)) for p, m in zip(points, matrices)]))
    return np.stack(out) if out else np.zeros((0, max(jitters, 1), NUM_KEYPOINTS, 2), np.float32)


def load_face_sets(runner: Any, config: RefineConfig, data_dir: str | None, data_300w: str | None,
                   log: Callable[[str], None] = print) -> tuple[FaceSet, FaceSet, FaceSet]:
    """The training faces (course training faces but the held-out people, 300-W training faces but a share of their
    photos) with jittered first-stage starts; the course's held-out people with the first stage's plain predictions;
    and that share of the 300-W training photos (``wild_val_fraction``, chosen as ``data_300w.validation_photos``
    chooses, with another seed) with jittered starts (the first stage learned from them, so its plain predictions
    there are better than on new faces). Never the held-out 300-W faces."""
    from data_load import read_image, read_keypoints_csv, resolve_data_dir, split_paths
    from pipeline.data_300w import VALIDATION_SEED, Faces300WDataset, validation_photos
    from data_load import split_by_person

    rng = np.random.default_rng(config.seed)
    csv_file, root = split_paths(resolve_data_dir(data_dir), "training")
    names, course_truth = read_keypoints_csv(csv_file)
    train_idx, val_idx = split_by_person(list(names), config.val_fraction, config.seed)
    if config.limit:
        train_idx, val_idx = train_idx[: config.limit], val_idx[: max(config.limit // 4, 1)]

    def gray(path: Path) -> np.ndarray:
        return cv2.cvtColor(read_image(path, as_stored=True), cv2.COLOR_RGB2GRAY)

    course_pictures = {i: gray(root / names[i]) for i in np.concatenate([train_idx, val_idx])}
    wild = Faces300WDataset(data_300w, "training")
    wild_faces = wild.faces[: config.limit] if config.limit else wild.faces
    measured = validation_photos(wild_faces, config.wild_val_fraction, VALIDATION_SEED + 1) if config.wild_val_fraction else set()
    wild_val_faces = [face for face in wild_faces if (face.folder, face.photo) in measured]
    wild_faces = [face for face in wild_faces if (face.folder, face.photo) not in measured]
    wild_pictures = [gray(face.picture) for face in wild_faces]
    wild_truth = np.stack([face.keypoints for face in wild_faces])
    wild_val_pictures = [gray(face.picture) for face in wild_val_faces]
    wild_val_truth = np.stack([face.keypoints for face in wild_val_faces]) if wild_val_faces else np.zeros((0, NUM_KEYPOINTS, 2), np.float32)
    course_index, wild_index = CONVENTIONS.index("course"), CONVENTIONS.index("300w")
    val_pictures = [course_pictures[i] for i in val_idx]
    tic = time.perf_counter()

    def predict_starts() -> dict[str, np.ndarray]:
        course = first_stage_predictions(runner, [course_pictures[i] for i in train_idx], course_truth[train_idx], "course",
                                         config.jitters, config.framing, rng)
        wild_starts = first_stage_predictions(runner, wild_pictures, wild_truth, "300w", config.jitters, config.framing, rng)
        held_out = first_stage_predictions(runner, val_pictures, course_truth[val_idx], "course", 0, config.framing, rng)
        wild_measured = first_stage_predictions(runner, wild_val_pictures, wild_val_truth, "300w", 1, config.framing, rng)
        return {"training": np.concatenate([course, wild_starts]).astype(np.float32), "validation": held_out.astype(np.float32),
                "wild_validation": wild_measured.astype(np.float32)}

    identity = getattr(runner, "meta", {}).get("onnx_sha256")  # the first stage's export: its predictions are cached
    if identity:
        from data_load import cached_crops, crop_cache_file

        key = (f"{identity}|{config.seed}|{config.jitters}|{list(config.framing)}|{config.val_fraction}|{config.wild_val_fraction}|"
               f"{config.limit}|{csv_file.stat().st_size}|{len(wild_faces)}")
        starts = cached_crops(crop_cache_file("refine-starts", runner.input_size, key), predict_starts)
    else:
        starts = predict_starts()
    training = FaceSet(
        [course_pictures[i] for i in train_idx] + wild_pictures,
        np.concatenate([course_truth[train_idx], wild_truth]).astype(np.float32),
        np.array([course_index] * len(train_idx) + [wild_index] * len(wild_pictures)),
        starts["training"],
    )
    validation = FaceSet(val_pictures, course_truth[val_idx].astype(np.float32), np.full(len(val_idx), course_index), starts["validation"])
    wild_validation = FaceSet(wild_val_pictures, wild_val_truth.astype(np.float32), np.full(len(wild_val_faces), wild_index),
                              starts["wild_validation"])

    def error(faces: FaceSet) -> str:
        return f"{d_units(faces.start[:, 0], faces.truth).mean():.4f} d" if len(faces.truth) else "none"

    log(f"faces: {len(training.truth)} training ({len(train_idx)} course, {len(wild_pictures)} 300-W), measured on {len(val_idx)} held-out "
        f"people and {len(wild_val_faces)} 300-W training faces; first-stage starts in {time.perf_counter() - tic:.0f} s: error "
        f"{error(training)} on the training faces (jittered framing), {error(validation)} on the held-out people, {error(wild_validation)} "
        f"on those 300-W faces (jittered)")
    return training, validation, wild_validation


class PatchDataset(torch.utils.data.Dataset):
    """Training samples: a face's patches cut around a perturbed first-stage shape, and the true points in them.

    The start is one of the face's first-stage predictions with its residual scaled (``RefineConfig``), so the
    network learns from errors of the size and kind the first stage makes. Item: patches (R, S, S), the start's
    points and the true points (R, 2 M, ``patch_points``), the convention index, and the weights (R, 2 M):
    normalised units to eye distances ``d`` on a region's points, 0 past them."""

    def __init__(self, faces: FaceSet, config: RefineConfig, regions: Sequence[Region] = REGIONS, augment: bool = True) -> None:
        self.faces, self.config, self.regions, self.augment = faces, config, tuple(regions), augment
        self.geometry = PatchGeometry(self.regions, config.size)
        self.rng = np.random.default_rng(config.seed)
        self.outputs = 2 * max(len(r.points) for r in self.regions)
        self.weights = np.zeros((len(self.regions), self.outputs), np.float32)
        for r, region in enumerate(self.regions):  # half the patch side, in d, along x and across y
            self.weights[r, : 2 * len(region.points)] = np.tile([region.size[0] / 2, region.size[1] / 2], len(region.points))

    def __len__(self) -> int:
        return len(self.faces.truth)

    def start_shape(self, index: int) -> np.ndarray:
        truth, starts = self.faces.truth[index], self.faces.start[index]
        if not self.augment:
            return starts[0]
        c, rng = self.config, self.rng
        low, high = (0.0, 0.5) if rng.random() < c.small_share else c.residual_scale
        return truth + rng.uniform(low, high) * (starts[rng.integers(len(starts))] - truth)

    def __getitem__(self, index: int):
        start = self.start_shape(index)
        matrices = self.geometry.matrices(start)
        patches = self.geometry.cut(self.faces.pictures[index], matrices)
        if self.augment:
            gain = self.rng.uniform(1 - self.config.contrast, 1 + self.config.contrast)
            bias = self.rng.uniform(-self.config.brightness, self.config.brightness)
            mean = patches.mean(axis=(1, 2), keepdims=True)
            patches = np.clip((patches - mean) * gain + mean + bias, 0, 1).astype(np.float32)
        targets = self.geometry.points(self.faces.truth[index], matrices)
        given = self.geometry.points(start, matrices)
        return (torch.from_numpy(patches), torch.from_numpy(given), torch.from_numpy(targets), int(self.faces.convention[index]),
                torch.from_numpy(self.weights))


def wing(error: torch.Tensor, width: float = 0.28, curvature: float = 0.055) -> torch.Tensor:
    """Wing loss (Feng et al., 2018) of absolute errors in eye distances d, elementwise; the first stage's Wing of
    w = 10 px, e = 2 px in its 128-px crop, where d is about 36 px."""
    offset = width - width * math.log(1 + width / curvature)
    return torch.where(error < width, width * torch.log1p(error / curvature), error - offset)


def refinement_loss(output: torch.Tensor, targets: torch.Tensor, conventions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean Wing loss in eye distances of each face's own convention's outputs (N, R, C, 2 M) against targets
    (N, R, 2 M), over the numbers that are points (``weights`` > 0)."""
    chosen = output[torch.arange(len(output)), :, conventions]  # (N, R, 2 M)
    used = weights > 0
    return wing((chosen - targets).abs()[used] * weights[used]).mean()


def measure(refiner: Refiner, faces: FaceSet, rounds: int = 2) -> list[float]:
    """Mean error in d of the starts (``faces.start[:, 0]``) and after each round of refinement."""
    convention = CONVENTIONS[int(faces.convention[0])] if len(faces.convention) else "course"
    shapes = faces.start[:, 0].copy()
    errors = [float(d_units(shapes, faces.truth).mean())]
    for _ in range(rounds):
        shapes = np.stack([refiner.refine(picture, shape[None], convention, 1)[0] for picture, shape in zip(faces.pictures, shapes)])
        errors.append(float(d_units(shapes, faces.truth).mean()))
    return errors


def region_errors(refiner: Refiner, faces: FaceSet) -> dict[str, tuple[float, float]]:
    """Each region's mean point error in d on ``faces``: (first stage, after one round of refinement)."""
    convention = CONVENTIONS[int(faces.convention[0])]
    start = faces.start[:, 0]
    refined = np.stack([refiner.refine(picture, shape[None], convention, 1)[0] for picture, shape in zip(faces.pictures, start)])
    distance = np.array([eye_frame(t)[1] for t in faces.truth])[:, None]
    before = np.linalg.norm(start - faces.truth, axis=-1) / distance
    after = np.linalg.norm(refined - faces.truth, axis=-1) / distance
    return {r.name: (float(before[:, list(r.points)].mean()), float(after[:, list(r.points)].mean())) for r in refiner.regions}


def regions_that_pay(model: RefinementNet, sets: dict[str, FaceSet], log: Callable[[str], None] = print) -> tuple[RefinementNet, dict]:
    """The part of ``model`` (``subset``) for the regions whose points one round brings closer to the truth on every
    one of the measuring ``sets`` (name: faces; empty ones are skipped), and each set's (first stage, refined) error
    in d of each region."""
    errors = {name: region_errors(Refiner(model), faces) for name, faces in sets.items() if faces is None or len(faces.truth)}
    paying = [r.name for r in model.regions if all(e[r.name][1] < e[r.name][0] for e in errors.values())]
    for name, measured in errors.items():
        log(f"regions ({name}, error in d, first stage -> one round): " + ", ".join(
            f"{region} {before:.4f} -> {after:.4f}{'' if region in paying else ' (not kept)'}" for region, (before, after) in measured.items()))
    if not paying:
        raise ModelError("The second stage brings no region closer to the truth on its measuring faces: nothing to keep.")
    return (model if len(paying) == len(model.regions) else subset(model, paying)), errors


def train_refinement(
    runner: Any, config: RefineConfig, data_dir: str | None = None, data_300w: str | None = None,
    run_dir: str | Path | None = None, resume: bool = False, log: Callable[[str], None] = print,
    faces: tuple[FaceSet, FaceSet, FaceSet] | None = None,
) -> tuple[RefinementNet, dict]:
    """Train the refinement stage for the first stage ``runner`` (``models.make_runner``); returns the network (eval
    mode) and its history. Each epoch writes ``run_dir/last.pt`` (network, optimizer, schedule, history); with
    ``resume`` a run continues from it exactly as it would have gone on."""
    torch.manual_seed(config.seed)
    training, validation, _ = faces or load_face_sets(runner, config, data_dir, data_300w, log)
    regions = chosen_regions(config.regions)
    model = RefinementNet(regions, CONVENTIONS, config.size, tuple(config.widths), config.head_channels, config.hidden, config.residual)
    dataset = PatchDataset(training, config, regions)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=len(dataset) > config.batch_size,
                                         generator=torch.Generator().manual_seed(config.seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=len(loader), pct_start=0.15)
    history: dict[str, list] = {"epoch": [], "train_loss": [], "val_start": [], "val_round1": [], "val_round2": [], "seconds": []}
    start_epoch, checkpoint = 0, Path(run_dir) / "last.pt" if run_dir else None
    if resume:
        if checkpoint is None or not checkpoint.is_file():
            raise ModelError(f"Nothing to resume: {checkpoint} does not exist; run without --resume first.")
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if state.get("config") != dataclasses.asdict(config):
            raise ModelError(f"{checkpoint} was written with another configuration: use the same options, or a new --run-dir.")
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, start_epoch = state["history"], state["epoch"]
        log(f"resumed from {checkpoint} after epoch {start_epoch}")
    for epoch in range(start_epoch, config.epochs):
        loader.generator.manual_seed(config.seed + epoch)
        dataset.rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed + epoch)
        tic, total, count = time.perf_counter(), 0.0, 0
        model.train()
        for patches, given, targets, conventions, weights in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = refinement_loss(model(patches, given), targets, conventions, weights)
            loss.backward()
            optimizer.step()
            schedule.step()
            total, count = total + loss.item() * len(targets), count + len(targets)
        model.eval()
        errors = measure(Refiner(model), validation) if len(validation.truth) else [float("nan")] * 3
        for key, value in zip(history, (epoch + 1, total / max(count, 1), *errors, time.perf_counter() - tic)):
            history[key].append(value)
        log(f"epoch {epoch + 1:3d}/{config.epochs}  train loss {history['train_loss'][-1]:.4f}  held-out people (d): "
            f"first stage {errors[0]:.4f}, 1 round {errors[1]:.4f}, 2 rounds {errors[2]:.4f}  ({history['seconds'][-1]:.0f} s)")
        if checkpoint is not None:
            atomic_torch_save({"format": REFINEMENT_FORMAT + "-run", "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "schedule": schedule.state_dict(), "epoch": epoch + 1, "history": history,
                               "config": dataclasses.asdict(config)}, checkpoint)
    return model.eval(), history


def main(argv: list[str] | None = None) -> int:
    from data_load import DataError as _DataError
    from models import make_runner
    from pipeline.inference import SHIPPED_MODEL

    parser = argparse.ArgumentParser(description="Train the second, local stage for a first-stage keypoint model.")
    parser.add_argument("--first-stage", default=str(SHIPPED_MODEL), help="the first stage's model file (default: the shipped model)")
    parser.add_argument("--out", help="where to save it (default: beside the first stage, NAME.refine.pt, with its ONNX export)")
    parser.add_argument("--data", help="course dataset folder (default: $FKP_DATA)")
    parser.add_argument("--data-300w", help="300-W folder (default: $FKP_300W)")
    parser.add_argument("--run-dir", help="checkpoint folder (default: runs/refine)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's last.pt")
    parser.add_argument("--epochs", type=int, default=RefineConfig.epochs)
    parser.add_argument("--rounds", type=int, default=1, help="refinement rounds the saved stage runs by default (recorded in its metadata)")
    parser.add_argument("--patch-size", type=int, default=RefineConfig.size, help=f"patch side in pixels (default: {RefineConfig.size})")
    parser.add_argument("--regions", help=f"comma-separated regions to refine (default: all of {', '.join(r.name for r in REGIONS)})")
    parser.add_argument("--limit", type=int, help="this many faces per source (a quick check)")
    parser.add_argument("--all-regions", action="store_true",
                        help="keep every region (default: only those one round brings closer to the truth on the held-out people)")
    parser.add_argument("--select", metavar="STAGE_PT", help="do not train: keep the paying regions of this saved stage, written to --out")
    parser.add_argument("--threads", type=int, help="CPU threads (1 is faster on a busy machine)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    if args.patch_size % 4:
        parser.error(f"--patch-size must be a multiple of 4 (the network halves it twice), not {args.patch_size}")
    names = tuple(filter(None, (args.regions or "").split(",")))
    try:
        chosen_regions(names)
    except ValueError as error:
        parser.error(str(error))
    config = RefineConfig(epochs=args.epochs, limit=args.limit, size=args.patch_size, regions=names)
    out = Path(args.out) if args.out else refinement_file(args.first_stage)
    run_dir = Path(args.run_dir) if args.run_dir else Path(__file__).resolve().parents[1] / "runs" / "refine"
    try:
        runner = make_runner(args.first_stage, threads=args.threads)
        if args.select:
            model, meta = load_refinement(args.select)
            _, people, wild_faces = load_face_sets(runner, RefineConfig(**{**meta.get("config", {}), "limit": args.limit}), args.data, args.data_300w)
            model, errors = regions_that_pay(model, {"held-out people": people, "300-W training faces": wild_faces})
            save_refinement(model, Path(args.out) if args.out else Path(args.select), **{**meta, "rounds": args.rounds, "region_errors_d": errors})
            print(f"kept {', '.join(r.name for r in model.regions)}; saved {Path(args.out) if args.out else Path(args.select)}")
            return 0
        tic = time.perf_counter()
        faces = load_face_sets(runner, config, args.data, args.data_300w)
        model, history = train_refinement(runner, config, args.data, args.data_300w, run_dir, args.resume, faces=faces)
        minutes = (time.perf_counter() - tic) / 60
        errors = {}
        if not args.all_regions and (len(faces[1].truth) or len(faces[2].truth)):
            model, errors = regions_that_pay(model, {"held-out people": faces[1], "300-W training faces not trained on": faces[2]})
        save_refinement(model, out, first_stage=Path(args.first_stage).name, first_stage_sha256=file_sha256(args.first_stage),
                        rounds=args.rounds, config=dataclasses.asdict(config), train_minutes=round(minutes, 2),
                        val_held_out_people_d=history["val_round1"][-1] if history["val_round1"] else None, region_errors_d=errors)
    except (_DataError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    (run_dir / "history.json").write_text(json.dumps(history))
    print(f"trained in {minutes:.1f} min; saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
