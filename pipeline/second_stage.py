"""The second, local stage at run time: patches of the picture cut around the first stage's keypoints, region by
region, and the network that refines them run by ONNX Runtime (or PyTorch, where installed).

This module needs neither PyTorch nor the training code, so the light install (requirements-light.txt) runs the
second stage too; the network, its training and its export are in ``pipeline.refinement``, which describes the
method.

    refiner = Refiner.from_file("saved_models/keypoints_fast.refine.pt")      # ONNX Runtime when its export is beside it
    better = refiner.refine(gray_picture, keypoints, convention="300w")   # (N, 68, 2) picture pixels -> the same
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from data_load import compose_matrices, invert_matrix, normalize_keypoints
from pipeline.inference import GrayPyramid
from resources.files import file_sha256
from resources.onnx_model import ModelError, export_metadata, has_torch

REFINEMENT_FORMAT = "facial-keypoints-refinement/1"
NUM_KEYPOINTS = 68
LEFT_EYE, RIGHT_EYE = range(36, 42), range(42, 48)


PATCH_SIZE = 32  # every region's patch is PATCH_SIZE x PATCH_SIZE pixels, stretched over its own width and height


@dataclass(frozen=True)
class Region:
    """A face region the second stage refines: its keypoints (iBUG 0-based) and its patch's width and height in eye
    distances ``d`` (between the eye centres), along and across the eye line."""

    name: str
    points: tuple[int, ...]
    size: tuple[float, float]


# Sizes: twice the 99th percentile of the region's points' distance from their centre, along and across the eye
# line, plus a margin of 0.15 d on each side (measured on the 1709 300-W and 3462 course training faces). At
# PATCH_SIZE = 32 that is 15-57 patch pixels per d; the labelled faces have d of about 30 px (inter-ocular
# distances of 40-45 px), so the eyes are read above the pictures' own resolution and the jaw a little below it.
REGIONS: tuple[Region, ...] = (
    Region("jaw_0", (0, 1, 2, 3, 4), (0.96, 2.08)),
    Region("jaw_1", (4, 5, 6, 7, 8), (2.09, 1.52)),
    Region("jaw_2", (8, 9, 10, 11, 12), (2.14, 1.53)),
    Region("jaw_3", (12, 13, 14, 15, 16), (1.00, 2.08)),
    Region("brow_left", (17, 18, 19, 20, 21), (1.44, 0.81)),
    Region("brow_right", (22, 23, 24, 25, 26), (1.44, 0.81)),
    Region("nose", tuple(range(27, 36)), (1.04, 1.81)),
    Region("eye_left", tuple(range(36, 42)), (0.88, 0.56)),
    Region("eye_right", tuple(range(42, 48)), (0.88, 0.56)),
    Region("mouth", tuple(range(48, 68)), (1.69, 1.08)),
)


# ---------------------------------------------------------------------------------------------------------
# Geometry: the patches of a face
# ---------------------------------------------------------------------------------------------------------
def eye_frame(keypoints: np.ndarray) -> tuple[float, float]:
    """The roll (degrees, positive when the face leans clockwise as seen, picture y down) and the distance ``d``
    between the eye centres (points 36-41 and 42-47) of a (68, 2) shape in pixels."""
    left, right = keypoints[list(LEFT_EYE)].mean(axis=0), keypoints[list(RIGHT_EYE)].mean(axis=0)
    dx, dy = float(right[0] - left[0]), float(right[1] - left[1])
    return math.degrees(math.atan2(dy, dx)), max(math.hypot(dx, dy), 1e-6)


class PatchGeometry:
    """Where a list of regions' patches lie for a face shape, and the way between picture and patch pixels.

    Patches are turned so that the eye line is level, each region's width and height (in eye distances ``d``)
    stretched over ``size`` pixels, the mean of the region's current points at the patch's middle ((size - 1) / 2:
    pixel centres at whole numbers). Every method works on all regions at once: the tables it needs are made here.
    ``most``: the points per region in the network's rows (default: the most any region has)."""

    def __init__(self, regions: Sequence[Region] = REGIONS, size: int = PATCH_SIZE, most: int | None = None) -> None:
        self.regions, self.size = tuple(regions), size
        count, most = len(self.regions), most or max(len(r.points) for r in self.regions)
        rows = np.zeros((count + 2, NUM_KEYPOINTS))  # each region's centre, then the two eye centres
        self.index = np.zeros((count, most), np.int64)
        self.used = np.zeros((count, most, 1))
        gather = np.zeros((NUM_KEYPOINTS, count * most))
        for r, region in enumerate(self.regions):
            rows[r, list(region.points)] = 1.0 / len(region.points)
            self.index[r, : len(region.points)] = region.points
            self.used[r, : len(region.points)] = 1.0
            gather[list(region.points), r * most + np.arange(len(region.points))] = 1.0
        rows[count, list(LEFT_EYE)] = rows[count + 1, list(RIGHT_EYE)] = 1.0 / len(LEFT_EYE)
        self.rows, self.most = rows, most
        self.uncovered = gather.sum(axis=1) == 0
        self.gather = gather / np.maximum(gather.sum(axis=1, keepdims=True), 1.0)  # the mean of the answers a point gets
        self.pixels_per_d = size / np.array([r.size for r in self.regions], np.float64)  # (R, 2): along, across
        u, v = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
        self.u, self.v = u[None], v[None]

    def matrices(self, keypoints: np.ndarray) -> np.ndarray:
        """(R, 2, 3) matrices from picture pixels to each region's patch for a (68, 2) shape in pixels."""
        centres = self.rows @ np.asarray(keypoints, np.float64)
        dx, dy = centres[-1] - centres[-2]
        distance = max(math.hypot(dx, dy), 1e-6)
        cos, sin = dx / distance, dy / distance
        linear = (self.pixels_per_d / distance)[:, :, None] * np.array([[cos, sin], [-sin, cos]])  # rows scaled: (R, 2, 2)
        shift = (self.size - 1) / 2 - (linear * centres[:-2, None, :]).sum(axis=2)
        return np.concatenate([linear, shift[:, :, None]], axis=2)

    @staticmethod
    def inverse(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (R, 2, 2) linear part and (R, 2) offset of the matrices from patch pixels back to picture pixels."""
        a, b, c, d = matrices[:, 0, 0], matrices[:, 0, 1], matrices[:, 1, 0], matrices[:, 1, 1]
        determinant = a * d - b * c
        inverse = np.empty((len(matrices), 2, 2))
        inverse[:, 0, 0], inverse[:, 0, 1], inverse[:, 1, 0], inverse[:, 1, 1] = d / determinant, -b / determinant, -c / determinant, a / determinant
        return inverse, -(inverse * matrices[:, None, :, 2]).sum(axis=2)

    def cut(self, gray: np.ndarray | GrayPyramid, matrices: np.ndarray) -> np.ndarray:
        """(R, size, size) float32 patches in [0, 1] of a grayscale uint8 picture, in one bilinear ``cv2.remap`` with
        the picture's border replicated. Where the patches are more than twice coarser than the picture (a big face
        in a big photo), the region they cover is first reduced by a whole factor with area averaging, so they are
        not aliased; given a ``GrayPyramid``, that region is read from its copy at least four times finer than the
        patches (``GrayPyramid.source``)."""
        inverse, origin = self.inverse(matrices)
        step = float(np.sqrt((inverse**2).sum(axis=1)).min())  # the finest step between patch pixels, in picture pixels
        if isinstance(gray, GrayPyramid):
            gray, frame = gray.source(step, finest=4.0)
            matrices = np.stack([compose_matrices(m, invert_matrix(frame)) for m in matrices])
            inverse, origin = self.inverse(matrices)
            step = float(np.sqrt((inverse**2).sum(axis=1)).min())
        factor = int(step / 2) if step >= 4 else 1
        source = gray
        if factor >= 2:
            ends = np.array([[0, 0], [self.size, 0], [0, self.size], [self.size, self.size]], np.float64)
            corners = (origin[:, None, :] + ends @ inverse.transpose(0, 2, 1)).reshape(-1, 2)
            low = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 2 * factor, 0)
            high = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 2 * factor, np.array(gray.shape[1::-1]))
            columns, rows = (high - low) // factor
            if columns >= 2 and rows >= 2:
                region = gray[low[1] : low[1] + rows * factor, low[0] : low[0] + columns * factor]
                source = cv2.resize(region, (int(columns), int(rows)), interpolation=cv2.INTER_AREA)
                # pixel u of the reduced region is pixel low + factor u + (factor - 1) / 2 of the picture
                inverse, origin = inverse / factor, (origin - low - (factor - 1) / 2) / factor
        inverse, origin = inverse.astype(np.float32)[:, :, :, None, None], origin.astype(np.float32)[:, :, None, None]
        map_x = inverse[:, 0, 0] * self.u + inverse[:, 0, 1] * self.v + origin[:, 0]
        map_y = inverse[:, 1, 0] * self.u + inverse[:, 1, 1] * self.v + origin[:, 1]
        patches = cv2.remap(source, map_x.reshape(-1, self.size), map_y.reshape(-1, self.size), cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
        return patches.reshape(len(matrices), self.size, self.size).astype(np.float32) * np.float32(1 / 255.0)

    def points(self, keypoints: np.ndarray, matrices: np.ndarray) -> np.ndarray:
        """A (68, 2) shape's points in each region's patch, normalised to [-1, 1] (``data_load.normalize_keypoints``),
        as the network's (R, 2 M) rows: x0, y0, x1, ..., zero past a region's points."""
        chosen = np.asarray(keypoints, np.float64)[self.index]  # (R, M, 2)
        moved = (matrices[:, None, :, :2] * chosen[:, :, None, :]).sum(axis=3) + matrices[:, None, :, 2]
        half = self.size / 2
        return (((moved - half) / half) * self.used).reshape(len(self.regions), -1).astype(np.float32)

    def shape(self, output: np.ndarray, matrices: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        """A (68, 2) shape in picture pixels from one face's (R, 2 M) rows of normalised points (padding ignored): the
        mean where regions share a point, the ``previous`` shape's point where no region has it."""
        inverse, origin = self.inverse(matrices)
        points = (np.asarray(output, np.float64)[:, : 2 * self.most].reshape(len(self.regions), -1, 2) + 1) * (self.size / 2)
        picture = (inverse[:, None, :, :] * points[:, :, None, :]).sum(axis=3) + origin[:, None, :]
        result = self.gather @ picture.reshape(-1, 2)
        if previous is not None and self.uncovered.any():
            result[self.uncovered] = previous[self.uncovered]
        return result.astype(np.float32)


@functools.lru_cache(maxsize=8)
def _geometry(regions: tuple[Region, ...], size: int) -> PatchGeometry:
    return PatchGeometry(regions, size)


def patch_matrices(keypoints: np.ndarray, regions: Sequence[Region] = REGIONS, size: int = PATCH_SIZE) -> np.ndarray:
    """``PatchGeometry.matrices``: (R, 2, 3) matrices from picture pixels to each region's patch."""
    return _geometry(tuple(regions), size).matrices(keypoints)


def cut_patches(gray: np.ndarray, matrices: np.ndarray, size: int = PATCH_SIZE) -> np.ndarray:
    """``PatchGeometry.cut``: (R, size, size) float32 patches in [0, 1] of a grayscale picture through ``matrices``."""
    return _geometry(REGIONS[:1], size).cut(gray, matrices)


def to_patches(points: np.ndarray, matrices: np.ndarray, regions: Sequence[Region] = REGIONS, size: int = PATCH_SIZE) -> list[np.ndarray]:
    """Each region's (n, 2) points of a (68, 2) shape, normalised to [-1, 1] of its patch."""
    return [normalize_keypoints(points[list(r.points)] @ m[:, :2].T + m[:, 2], size) for r, m in zip(regions, matrices)]


def patch_points(points: np.ndarray, matrices: np.ndarray, regions: Sequence[Region] = REGIONS, size: int = PATCH_SIZE) -> np.ndarray:
    """``PatchGeometry.points``: ``to_patches`` as the network's (R, 2 M) rows."""
    return _geometry(tuple(regions), size).points(points, matrices)


def from_patches(output: np.ndarray, matrices: np.ndarray, regions: Sequence[Region] = REGIONS, size: int = PATCH_SIZE,
                 previous: np.ndarray | None = None) -> np.ndarray:
    """``PatchGeometry.shape``: a (68, 2) shape in picture pixels from one face's (R, 2 M) network rows."""
    return _geometry(tuple(regions), size).shape(output, matrices, previous)


# ---------------------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------------------


def region_metadata(regions: Sequence[Region]) -> list[dict]:
    return [{"name": r.name, "points": list(r.points), "size": list(r.size)} for r in regions]


def regions_from_metadata(items: Sequence[dict]) -> tuple[Region, ...]:
    return tuple(Region(item["name"], tuple(item["points"]), tuple(item["size"])) for item in items)


def has_training_code() -> bool:
    """Whether ``pipeline.refinement`` (the network in PyTorch, its training and export) is here: the course's
    students' copy leaves it out, and then the second stage runs from its ONNX export alone."""
    import importlib.util

    return importlib.util.find_spec("pipeline.refinement") is not None


@dataclass(frozen=True)
class StageDesign:
    """What running a refinement network needs to know of it, read from its metadata: its regions, conventions,
    patch size (pixels) and numbers per region and convention (2 M)."""

    regions: tuple[Region, ...]
    conventions: tuple[str, ...]
    size: int
    outputs: int


# ---------------------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------------------
class Refiner:
    """Refines 68-point shapes in picture pixels with a ``pipeline.refinement.RefinementNet`` run by PyTorch or ONNX
    Runtime.

    ``rounds``: how many times the patches are cut again from the last answer and refined (see the model card for
    what each round bought)."""

    def __init__(self, model: Any, meta: dict | None = None, onnx_path: str | Path | None = None,
                 threads: int | None = None, rounds: int = 1) -> None:
        """``model``: a ``pipeline.refinement.RefinementNet``, or, with ``onnx_path``, anything with its design
        (``regions``, ``conventions``, ``size``, ``outputs``: ``StageDesign``)."""
        self.regions, self.conventions, self.size = tuple(model.regions), tuple(model.conventions), model.size
        self.geometry = PatchGeometry(self.regions, self.size, model.outputs // 2)
        self.meta, self.rounds, self.session = dict(meta or {}), rounds, None
        if onnx_path is not None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
            self.input_names = [item.name for item in self.session.get_inputs()]
            self.model = None
        else:
            import copy

            from models import fuse_for_inference

            self.model = fuse_for_inference(copy.deepcopy(model).eval())

    @classmethod
    def from_file(cls, path: str | Path, backend: str = "auto", threads: int | None = None, rounds: int | None = None) -> "Refiner":
        """The refinement stage saved at ``path``; ONNX Runtime (``backend`` "auto" or "onnx") when its export sits
        beside it with the recorded hash and onnxruntime is installed, else PyTorch. Without PyTorch or without
        ``pipeline.refinement`` (``has_training_code``), the export alone, from the metadata it carries (``from_onnx``). ``rounds``: None for the number recorded in the file
        (``meta["rounds"]``, else 1)."""
        if not has_torch() or not has_training_code():
            if backend == "torch":
                raise ModelError("The second stage runs on PyTorch only where PyTorch and pipeline/refinement.py are installed: use the onnx backend.")
            return cls.from_onnx(path, threads, rounds)
        import torch

        from pipeline.refinement import load_refinement

        model, meta = load_refinement(path)
        onnx_path = Path(path).with_suffix(".onnx")
        fresh = onnx_path.is_file() and meta.get("onnx_sha256") == file_sha256(onnx_path)
        if backend == "onnx" and not fresh:
            raise ModelError(f"{onnx_path} is missing or was not exported from {Path(path).name}: train or export it again.")
        use_onnx = backend in ("auto", "onnx") and fresh
        if use_onnx:
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                if backend == "onnx":
                    raise ModelError("onnxruntime is not installed: `pip install onnxruntime`, or use the torch backend.") from None
                use_onnx = False
        if not use_onnx and threads:
            torch.set_num_threads(threads)
        chosen_rounds = int(meta.get("rounds", 1)) if rounds is None else rounds
        return cls(model, {**meta, "file": Path(path).name}, onnx_path if use_onnx else None, threads, chosen_rounds)

    @classmethod
    def from_onnx(cls, path: str | Path, threads: int | None = None, rounds: int | None = None) -> "Refiner":
        """The refinement stage saved at ``path`` (its .refine.pt or .refine.onnx) run from its ONNX export and the
        metadata stored in it (``resources.onnx_model.write_onnx_metadata``) alone: no PyTorch."""
        onnx_path, meta = export_metadata(path, "stage")
        try:
            options = meta["net_options"]
            design = StageDesign(regions_from_metadata(meta["regions"]), tuple(meta["conventions"]), int(options["size"]), int(options["outputs"]))
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{onnx_path} carries no refinement metadata: train it again with `python -m pipeline.refinement`.") from None
        chosen_rounds = int(meta.get("rounds", 1)) if rounds is None else rounds
        return cls(design, {**meta, "file": Path(path).with_suffix(".pt").name}, onnx_path, threads, chosen_rounds)

    def run(self, patches: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(N, R, conventions, 2 M) outputs for (N, R, S, S) float32 patches cut around (N, R, 2 M) points."""
        if self.session is not None:
            feeds = {"patches": patches, "given": points}
            return self.session.run(None, {name: feeds[name] for name in self.input_names})[0]
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(patches), torch.from_numpy(points)).numpy()

    def refine(self, gray: np.ndarray | GrayPyramid, keypoints: np.ndarray, convention: str = "300w", rounds: int | None = None) -> np.ndarray:
        """Refined (N, 68, 2) shapes in picture pixels for (N, 68, 2) shapes in the same ``convention``
        (``models.CONVENTIONS``) on a grayscale uint8 picture (or a ``GrayPyramid`` of one, whose copies the patches
        of big faces are cut from); ``rounds`` (None: the refiner's) passes."""
        if convention not in self.conventions:
            raise ModelError(f"This refinement stage knows the {' and '.join(self.conventions)} convention(s), not {convention!r}.")
        shapes = np.array(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 2)
        index = self.conventions.index(convention)
        for _ in range(self.rounds if rounds is None else rounds):
            if not len(shapes):
                break
            geometry = self.geometry
            matrices = [geometry.matrices(shape) for shape in shapes]
            patches = np.stack([geometry.cut(gray, m) for m in matrices])
            given = np.stack([geometry.points(shape, m) for shape, m in zip(shapes, matrices)])
            output = np.asarray(self.run(patches, given))[:, :, index]
            shapes = np.stack([geometry.shape(row, m, shape) for row, m, shape in zip(output, matrices, shapes)])
        return shapes

    def refine_pictures(self, pictures: Sequence[np.ndarray], keypoints: np.ndarray, convention: str = "300w", rounds: int | None = None) -> np.ndarray:
        """``refine`` for one face per picture (gray or RGB uint8): (N, 68, 2)."""
        out = []
        for picture, shape in zip(pictures, keypoints):
            gray = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY) if picture.ndim == 3 else picture
            out.append(self.refine(gray, shape[None], convention, rounds)[0])
        return np.stack(out) if out else np.zeros((0, NUM_KEYPOINTS, 2), np.float32)


def refinement_file(model_path: str | Path) -> Path:
    """Where a first-stage model's refinement stage is kept: ``NAME.refine.pt`` beside ``NAME.pt``."""
    path = Path(model_path)
    return path.with_name(f"{path.stem}.refine.pt")


def companion_refiner(model_path: str | Path, refiner: str | Path | None = "auto", backend: str = "auto",
                      threads: int | None = None, rounds: int | None = None) -> "Refiner | None":
    """The refinement stage to run after a first-stage model: ``refiner`` "auto" for the model's own
    (``refinement_file``) when it exists, None or "none" for none, else the file it names (ModelError when that
    file cannot be used)."""
    if refiner is None or str(refiner) == "none":
        return None
    path = refinement_file(model_path) if str(refiner) == "auto" else Path(refiner)
    if str(refiner) == "auto" and not path.is_file():
        return None
    return Refiner.from_file(path, backend, threads, rounds)
