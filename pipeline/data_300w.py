"""Faces in the wild annotated in the 300-W layout: pictures with ``.pts`` files beside them.

300-W (Sagonas et al., "300 Faces in-the-Wild Challenge", ICCV-W 2013; IMAVIS 2016) annotates the 68 iBUG points
on photos from LFPW, HELEN, AFW and iBUG. Its data is for research and education only, like the course data; it is
never part of this repository: download it from the iBUG group's 300-W page (Imperial College London) and name the
folder with ``FKP_300W`` (or ``--data-300w``), e.g. ``FKP_300W=../shared/300w``.

A folder holds ``NAME.pts`` files, each beside its picture. An original photo may carry several annotated faces,
``NAME_1.pts``, ``NAME_2.pts``, ..., whose picture is ``NAME_1.jpg`` in some releases and ``NAME.jpg`` in others;
both are found. A ``.pts`` file is::

    version: 1
    n_points:  68
    {
    x0 y0
    ...
    }

with 1-based pixel coordinates (the centre of the top-left pixel is (1, 1)). ``read_pts`` returns 0-based ones,
the convention of every other array in this project. Coordinates refer to the stored pixels, so pictures are read
without applying an EXIF orientation tag.

The keypoints follow the 300-W labelling convention (``models.CONVENTIONS``), which places some points (the nose
bridge above all) differently from the course data.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from torch.utils.data import Dataset

import cv2

from data_load import REPO_DIR, DataError, cached_crops, crop_cache_file, cut_face_crops, read_image

DATA_300W_ENV_VAR = "FKP_300W"
NUM_POINTS = 68
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")

# The validation split (never trained on): VALIDATION_FRACTION of the photos of each folder, chosen by
# ``validation_photos`` (photos ordered by SHA-256 of "SEED/folder/photo", the first ones taken). The list it gives
# for the 2012 faces of the compact 300-W crops is written down in VALIDATION_LIST.
VALIDATION_FRACTION = 0.15
VALIDATION_SEED = 300
VALIDATION_LIST = REPO_DIR / "saved_models" / "300w_validation.txt"


def resolve_300w_dirs(data: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """The 300-W folders to read: ``data`` (one folder, several, or a string of folders joined by ``os.pathsep``),
    else ``$FKP_300W``. A folder that holds no ``.pts`` file but sub-folders that do stands for those sub-folders.

    Raises DataError (one line: what to set) when nothing is given or a folder does not exist.
    """
    if data is None:
        data = os.environ.get(DATA_300W_ENV_VAR)
        if not data:
            raise DataError(
                f"No 300-W folder given: download 300-W from the iBUG 300-W page and pass --data-300w DIR or set {DATA_300W_ENV_VAR}."
            )
    if isinstance(data, (str, os.PathLike)):
        data = [part for part in str(data).split(os.pathsep) if part]
    folders: list[Path] = []
    for item in data:
        folder = Path(item).expanduser()
        if not folder.is_dir():
            raise DataError(f"300-W folder {folder} does not exist: check --data-300w or {DATA_300W_ENV_VAR}.")
        if any(folder.glob("*.pts")):
            folders.append(folder)
        else:
            folders += sorted(child for child in folder.iterdir() if child.is_dir() and any(child.glob("*.pts")))
    if not folders:
        raise DataError(f"No .pts files in {', '.join(map(str, data))}: point {DATA_300W_ENV_VAR} at the 300-W folders.")
    return folders


def read_pts(path: str | os.PathLike, num_points: int = NUM_POINTS) -> np.ndarray:
    """The keypoints of a 300-W ``.pts`` file as a (num_points, 2) float32 array of 0-based pixel coordinates.

    Raises DataError naming the file for a wrong header, a wrong point count or unreadable numbers.
    """
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror}).") from None
    if len(lines) < 3 or not lines[0].startswith("version:") or not lines[1].startswith("n_points:") or lines[2] != "{":
        raise DataError(f"{path}: not a .pts file (expected 'version:', 'n_points:' and '{{' header lines).")
    try:
        declared = int(lines[1].split(":", 1)[1])
    except ValueError:
        raise DataError(f"{path}: unreadable point count {lines[1]!r}.") from None
    body = lines[3:-1] if lines[-1] == "}" else None
    if body is None:
        raise DataError(f"{path}: the point list does not end with '}}'.")
    if declared != num_points or len(body) != num_points:
        raise DataError(f"{path}: {len(body)} points (header says {declared}); expected {num_points}.")
    try:
        points = np.array([[float(v) for v in line.split()] for line in body], np.float32)
    except ValueError:
        raise DataError(f"{path}: a point line is not two numbers.") from None
    if points.shape != (num_points, 2) or not np.isfinite(points).all():
        raise DataError(f"{path}: every point line must hold two finite numbers x y.")
    return points - 1.0


def photo_of(stem: str) -> str:
    """The photo a face belongs to: ``NAME`` for ``NAME_1``, ``NAME_2``, ... (a suffix of 1-2 digits, as 300-W
    numbers the faces of one photo), the stem itself otherwise (``image_0001`` is a photo of its own)."""
    return re.sub(r"_\d{1,2}$", "", stem)


def picture_for(pts_path: Path) -> Path | None:
    """The picture beside a ``.pts`` file: ``NAME_1.jpg`` (or another picture suffix), else the photo's
    ``NAME.jpg``; None when there is none."""
    for stem in dict.fromkeys([pts_path.stem, photo_of(pts_path.stem)]):
        for suffix in PICTURE_SUFFIXES:
            candidate = pts_path.with_name(stem + suffix)
            if candidate.is_file():
                return candidate
    return None


@dataclass(frozen=True)
class Face300W:
    """One annotated face: its folder's name, its ``.pts`` stem, its photo, its picture and its (68, 2) keypoints."""

    folder: str
    name: str
    photo: str
    picture: Path
    keypoints: np.ndarray


def scan_folder(folder: str | os.PathLike, warn: Callable[[str], None] | None = None) -> list[Face300W]:
    """Every readable face of a folder, sorted by name. A ``.pts`` file that cannot be used (wrong header, wrong
    point count, no picture beside it) is reported in one line through ``warn`` (default: standard error) and
    skipped; the rest of the folder still loads."""
    folder = Path(folder)
    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    faces = []
    for pts_path in sorted(folder.glob("*.pts")):
        try:
            keypoints = read_pts(pts_path)
        except DataError as error:
            warn(f"{error} Skipped.")
            continue
        picture = picture_for(pts_path)
        if picture is None:
            warn(f"{pts_path}: no picture beside it (looked for {pts_path.stem}.jpg/.png and {photo_of(pts_path.stem)}.jpg/.png). Skipped.")
            continue
        faces.append(Face300W(folder.name, pts_path.stem, photo_of(pts_path.stem), picture, keypoints))
    return faces


def _split_key(seed: int, folder: str, photo: str) -> str:
    return hashlib.sha256(f"{seed}/{folder}/{photo}".encode()).hexdigest()


def validation_photos(faces: Iterable[Face300W], fraction: float = VALIDATION_FRACTION, seed: int = VALIDATION_SEED) -> set[tuple[str, str]]:
    """The held-out (folder, photo) pairs: in each folder, its photos ordered by SHA-256 of "seed/folder/photo",
    and the first ``round(fraction * photos)`` of them (at least one). Every face of a chosen photo is held out, so
    the faces of one photo never sit on both sides. The rule depends only on the names, never on file order."""
    by_folder: dict[str, set[str]] = {}
    for face in faces:
        by_folder.setdefault(face.folder, set()).add(face.photo)
    chosen = set()
    for folder, photos in by_folder.items():
        ordered = sorted(photos, key=lambda photo: _split_key(seed, folder, photo))
        chosen |= {(folder, photo) for photo in ordered[: max(1, round(fraction * len(ordered)))]}
    return chosen


class Faces300WDataset(Dataset):
    """Faces from one or more 300-W folders: ``{"image": H x W x 3 uint8 RGB, "keypoints": (68, 2) float32,
    "name": "folder/NAME"}`` per face, 0-based pixel coordinates of the stored picture, 300-W convention.

    ``split``: "all", "training" (never a held-out photo) or "validation" (``validation_photos``). ``transform``
    is applied to each sample, as in ``data_load.FacialKeypointsDataset``.
    """

    def __init__(
        self,
        folders: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        split: str = "all",
        transform: Callable[[dict], dict] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if split not in ("all", "training", "validation"):
            raise ValueError(f"split must be 'all', 'training' or 'validation', not {split!r}")
        self.folders = resolve_300w_dirs(folders)
        faces = [face for folder in self.folders for face in scan_folder(folder, warn)]
        if split != "all":
            held_out = validation_photos(faces)
            faces = [face for face in faces if ((face.folder, face.photo) in held_out) == (split == "validation")]
        self.faces = faces
        self.split = split
        self.transform = transform

    @property
    def names(self) -> list[str]:
        return [f"{face.folder}/{face.name}" for face in self.faces]

    @property
    def keypoints(self) -> np.ndarray:
        """(N, 68, 2) keypoints of every face."""
        return np.stack([face.keypoints for face in self.faces]) if self.faces else np.zeros((0, NUM_POINTS, 2), np.float32)

    @property
    def num_keypoints(self) -> int:
        return NUM_POINTS

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, index: int) -> dict:
        face = self.faces[index]
        sample = {"image": read_image(face.picture, as_stored=True), "keypoints": face.keypoints.copy(), "name": f"{face.folder}/{face.name}"}
        return self.transform(sample) if self.transform else sample


def load_300w_crops(
    split: str,
    input_size: int,
    folders: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """Context crops (``data_load.cut_face_crops``) of the 300-W faces of a split ("all", "training",
    "validation"), each framed from its keypoints' Haar-convention box as the course faces are; cached in
    ``.cache/`` and rebuilt when the ``.pts`` files change. Keypoints in the 300-W convention."""
    dataset = Faces300WDataset(folders, split)
    if not len(dataset):
        raise DataError(f"No 300-W faces in the {split} split of {', '.join(map(str, dataset.folders))}: check {DATA_300W_ENV_VAR}.")
    stamps = [f"{face.folder}/{face.name}:{face.picture.stat().st_mtime_ns}" for face in dataset.faces]
    key = f"{split}|{hashlib.sha256('|'.join(stamps).encode()).hexdigest()}"
    cache_file = crop_cache_file("300w", input_size, key, cache_dir)

    def read_gray(i: int) -> np.ndarray:
        return cv2.cvtColor(read_image(dataset.faces[i].picture, as_stored=True), cv2.COLOR_RGB2GRAY)

    return cached_crops(cache_file, lambda: cut_face_crops(read_gray, dataset.keypoints, dataset.names, input_size, progress=f"cutting 300-W {split} crops"))
