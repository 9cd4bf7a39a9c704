"""A saved keypoint model run by ONNX Runtime alone, without PyTorch: the main job and the web demo need no more.

A model is saved as ``NAME.pt`` (state dict plus metadata, ``models.save_model``) and exported beside it as
``NAME.onnx`` (``models.save_model_with_onnx``). The export carries the same metadata dict (without the export's
own hash, ``onnx_sha256``, which only the .pt can hold) as JSON in the ONNX model's ``metadata_props`` under
``META_KEY``, so that a machine without PyTorch knows the input size, keypoint count and output layout from the
.onnx alone. ``OutputLayout`` and ``ModelError`` live here for the same reason; ``models`` uses them as its own.
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resources.files import atomic_write

META_KEY = "facial_keypoints_meta"


class ModelError(RuntimeError):
    """A model file that cannot be used, told in one sentence that says what to do."""


# Labelling conventions of the 68 iBUG points. "300w": the 300-W benchmark's (dlib, face_alignment), point 27 at
# the level of the eyes; "course": the course dataset's (YouTube Faces frames), points 27-30 lower on the nose.
CONVENTIONS = ("300w", "course")


@dataclass(frozen=True)
class OutputLayout:
    """How a model's flat output row is laid out, the same for PyTorch and ONNX.

    For each labelling convention in ``conventions`` (the first is the model's default) come ``2 * num_keypoints``
    normalised coordinates (x0, y0, x1, y1, ..., in [-1, 1] of the input, see ``data_load.Normalize``); then, if
    ``face_score``, one face / no-face logit (positive: a face). A model saved without this information (the
    course's ``Net``, older files) has one convention, "course", and no face score.
    """

    num_keypoints: int = 68
    conventions: tuple[str, ...] = ("course",)
    face_score: bool = False
    flip_offsets: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        unknown = [c for c in self.conventions if c not in CONVENTIONS]
        if not self.conventions or unknown or len(set(self.conventions)) != len(self.conventions):
            raise ModelError(f"Conventions {list(self.conventions)} are not distinct names from {list(CONVENTIONS)}.")
        if self.flip_offsets and len(self.flip_offsets) != len(self.conventions):
            raise ModelError(f"{len(self.flip_offsets)} flip offsets for {len(self.conventions)} conventions: give one per convention.")

    def flip_offset(self, convention: str | None = None) -> float:
        """How far right of the mirror-symmetric position a convention's labels sit, in inter-ocular distances along
        the eye line (``flip_offsets``, learned in training; 0 when the model records none). Mirroring a face moves
        such an offset to the other side, so a mirrored prediction is moved back by twice it
        (``pipeline.inference.predict``, ``pipeline.trainer.flip_corrected``)."""
        if not self.flip_offsets:
            return 0.0
        return float(self.flip_offsets[self.conventions.index(self.resolve(convention))])

    @property
    def width(self) -> int:
        """Numbers per output row."""
        return 2 * self.num_keypoints * len(self.conventions) + int(self.face_score)

    def resolve(self, convention: str | None) -> str:
        """``convention``, or the default one for None; ModelError for one the model does not predict."""
        if convention is None:
            return self.conventions[0]
        if convention not in self.conventions:
            raise ModelError(f"This model predicts the {' and '.join(self.conventions)} convention(s), not {convention!r}.")
        return convention

    def keypoints(self, raw: Any, convention: str | None = None) -> Any:
        """(N, K, 2) normalised keypoints of one convention from raw (N, width) outputs (numpy or torch)."""
        index = self.conventions.index(self.resolve(convention))
        size = 2 * self.num_keypoints
        return raw[:, index * size : (index + 1) * size].reshape(-1, self.num_keypoints, 2)

    def face_logits(self, raw: Any) -> Any:
        """(N,) face logits from raw outputs, or None for a model without a face score."""
        return raw[:, -1] if self.face_score else None

    def as_meta(self) -> dict:
        meta = {"conventions": list(self.conventions), "face_score": self.face_score}
        return {**meta, "flip_offsets": [float(v) for v in self.flip_offsets]} if self.flip_offsets else meta

    @classmethod
    def from_meta(cls, meta: dict) -> "OutputLayout":
        return cls(
            int(meta["num_keypoints"]), tuple(meta.get("conventions", ["course"])), bool(meta.get("face_score", False)),
            tuple(float(v) for v in meta.get("flip_offsets", ())),
        )


def has_torch() -> bool:
    """Whether PyTorch can be imported here, found without importing it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except ValueError:  # a module object without a spec stands in for torch
        return True


def write_onnx_metadata(path: str | os.PathLike, meta: dict) -> None:
    """Store ``meta`` (plain JSON values; ``onnx_sha256`` left out) in the ONNX file at ``path``, atomically.

    Needs the ``onnx`` package (installed with the course, not with the light install)."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path))
    kept = [prop for prop in model.metadata_props if prop.key != META_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=META_KEY, value=json.dumps({k: v for k, v in meta.items() if k != "onnx_sha256"}, sort_keys=True))
    atomic_write(path, lambda tmp: onnx.save(model, tmp))


class OnnxRunner:
    """Runs an exported keypoint model with ONNX Runtime: several times faster than PyTorch for one small face.
    Raw outputs (N, ``layout.width``) as ``models.TorchRunner``'s."""

    def __init__(self, path: str | os.PathLike, layout: OutputLayout, input_size: int, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_size, self.num_keypoints, self.layout = input_size, layout.num_keypoints, layout

    def __call__(self, batch: "np.ndarray") -> "np.ndarray":
        return self.session.run(None, {"image": batch})[0]


def read_onnx_metadata(path: str | os.PathLike) -> dict | None:
    """The metadata dict stored in the ONNX file at ``path`` by ``write_onnx_metadata``, or None without one."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types for foreign or truncated files
        raise ModelError(f"{path} is corrupted or not an ONNX model ({type(error).__name__}): restore it.") from None
    text = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    return json.loads(text) if text else None


def export_metadata(path: str | os.PathLike, what: str) -> tuple[Path, dict | None]:
    """The ONNX export beside ``path`` (the same name, .onnx) and the metadata stored in it (None where it holds
    none); ModelError (one line) when the export is missing or onnxruntime is not installed. ``what`` names the
    export in the message ("model", "stage")."""
    onnx_path = Path(path).with_suffix(".onnx")
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path} does not exist, and without PyTorch only ONNX models run: install requirements.txt or export the {what}.")
    try:
        return onnx_path, read_onnx_metadata(onnx_path)
    except ImportError:
        raise ModelError("onnxruntime is not installed: `pip install onnxruntime`.") from None


def onnx_runner(path: str | os.PathLike, threads: int | None = None) -> OnnxRunner:
    """An ``OnnxRunner`` (with ``.meta``) for the model saved at ``path`` (its .pt or its .onnx), from the .onnx and
    the metadata in it alone: no PyTorch. ModelError when the .onnx is missing or carries no metadata."""
    onnx_path, meta = export_metadata(path, "model")
    if not meta or "input_size" not in meta or "num_keypoints" not in meta:
        raise ModelError(f"{onnx_path} carries no model metadata: export it again with `python -m models --export-onnx {Path(path).with_suffix('.pt')}`.")
    runner = OnnxRunner(onnx_path, OutputLayout.from_meta(meta), int(meta["input_size"]), threads)
    runner.meta = meta
    return runner
