"""Data for facial keypoint detection: finding the dataset, reading it, and transforming samples.

A sample is a dict ``{"image": H x W x 3 uint8 RGB array, "keypoints": K x 2 float32 array (x, y) in pixels,
"name": file name}``. The transforms below take and return such dicts, so they chain with
``torchvision.transforms.Compose`` exactly like the course's transforms.

Scaling, once and for all: images enter as uint8 0-255 RGB. ``Normalize`` turns them into float32
grayscale in [0, 1] and maps keypoints to ``(pts - c) / c`` with ``c`` the image centre, so a keypoint on
the border of the network input is at -1 or +1. ``denormalize_keypoints`` undoes it.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

try:
    import torch
    from torch.utils.data import Dataset
except ImportError:  # the light install (requirements-light.txt): pictures and keypoints only, no datasets
    torch = None
    Dataset = object

from resources.download import DATA_ENV_VAR, DataError, ensure_dataset
from resources.files import atomic_write

REPO_DIR = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = REPO_DIR / "data"
CACHE_ENV_VAR = "FKP_CACHE"  # where the cut face crops are cached (default: .cache/ in the repository)
NUM_KEYPOINTS = 68

# 0-based iBUG 68-point left/right permutation: point i of a mirrored face is point FLIP_PERMUTATION_68[i].
FLIP_PERMUTATION_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + list(range(35, 30, -1))  # nostrils
    + [45, 44, 43, 42, 47, 46]  # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]  # left eye <- right eye
    + list(range(54, 47, -1))  # outer lips, top
    + list(range(59, 54, -1))  # outer lips, bottom
    + list(range(64, 59, -1))  # inner lips, top
    + [67, 66, 65],  # inner lips, bottom
    dtype=np.int64,
)

# Outer eye corners, used to normalise errors (NME_io).
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45

# The Haar detector's face box, as fitted on the training images where the cascade finds the face:
# with s = sqrt(area of the keypoint box), a square of side HAAR_SIDE * s centred HAAR_OFFSET * s from the
# keypoint box's centre.
HAAR_SIDE = 1.18
HAAR_OFFSET = (-0.006, -0.187)
# The network's crop around a Haar box: a square CROP_SCALE times the box's side, whose centre lies
# CROP_SHIFT box sides below the box's centre (Haar boxes sit high: they miss the chin).
CROP_SCALE = 1.5
CROP_SHIFT = 0.16


def seeded_rng() -> np.random.Generator:
    """A new NumPy generator seeded from NumPy's global random state: the random transforms' default, so that
    ``np.random.seed`` (``pipeline.training.set_seed``) makes every draw repeat from run to run. An unseeded
    ``np.random.default_rng()`` would draw differently each time."""
    return np.random.default_rng(np.random.randint(0, 2**31 - 1))


# ---------------------------------------------------------------------------------------------------------
# Finding and reading the data
# ---------------------------------------------------------------------------------------------------------
def resolve_data_dir(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the dataset folder: the argument, else $FKP_DATA, else ``data/`` (downloaded on first use)."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV_VAR) or None
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        check_data_dir(path)
        return path
    if not _looks_like_data_dir(DEFAULT_DATA_DIR):
        if not download:
            raise DataError(
                f"No dataset in {DEFAULT_DATA_DIR}: run `python -m resources.download` or set {DATA_ENV_VAR} to the data folder."
            )
        ensure_dataset(DEFAULT_DATA_DIR)
    check_data_dir(DEFAULT_DATA_DIR)
    return DEFAULT_DATA_DIR


def _looks_like_data_dir(path: Path) -> bool:
    return (path / "training_frames_keypoints.csv").is_file() and (path / "training").is_dir()


def check_data_dir(path: Path) -> None:
    """Raise a one-sentence DataError unless ``path`` holds the two CSVs and the two image folders."""
    if not path.is_dir():
        raise DataError(f"Data folder {path} does not exist: set {DATA_ENV_VAR} or pass the folder that holds training/ and test/.")
    missing = [
        name
        for name in ("training", "test", "training_frames_keypoints.csv", "test_frames_keypoints.csv")
        if not (path / name).exists()
    ]
    if missing:
        raise DataError(
            f"Data folder {path} lacks {', '.join(missing)}: point {DATA_ENV_VAR} at the extracted dataset or run `python -m resources.download`."
        )


def split_paths(data_dir: Path, split: str) -> tuple[Path, Path]:
    """(csv file, image folder) of the 'training' or 'test' split."""
    if split not in ("training", "test"):
        raise ValueError(f"split must be 'training' or 'test', not {split!r}")
    return data_dir / f"{split}_frames_keypoints.csv", data_dir / split


EXIF_ORIENTATION = 0x0112  # the EXIF tag that says how to turn the stored pixels for display
FLOAT_UNIT_RANGE_MAX = 2.0  # see to_uint8: the brightest value a float picture on the [0, 1] scale may hold


# What ``read_image`` reads: what OpenCV decodes, and HEIC/HEIF (iPhones' default) through pillow-heif.
READABLE_FORMATS = "JPEG, PNG, HEIC/HEIF, WebP, BMP, TIFF, GIF or PNM"
# Formats told by their first bytes (their specifications' signatures), so that a file that cannot be read is named
# for what it is: a damaged picture of a readable format, or a valid picture of a format that is not read.
SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"8BPS", "Photoshop (PSD)"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
)
# The brands of an ISO base media file (``ftyp`` box, ISO/IEC 14496-12) that say HEIF (ISO/IEC 23008-12) or AVIF.
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}
OPENCV_FORMATS = {"JPEG", "PNG", "GIF", "BMP", "TIFF", "WebP", "PNM"}


def picture_format(data: np.ndarray | bytes) -> str | None:
    """The format of an encoded picture, told by its first bytes: "JPEG", "PNG", "HEIF", "AVIF", "WebP", ... (the
    names of ``SIGNATURES``, "PNM" for P1-P7 headers); None when the bytes match none of them."""
    head = bytes(np.asarray(data, dtype=np.uint8)[:32]) if not isinstance(data, bytes) else data[:32]
    if head[4:8] == b"ftyp":
        major = head[8:12]
        if major in AVIF_BRANDS:
            return "AVIF"
        if major in HEIF_BRANDS:
            return "HEIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if len(head) > 2 and head[0:1] == b"P" and head[1:2] in b"1234567" and head[2:3].isspace():
        return "PNM"
    return next((name for signature, name in SIGNATURES if head.startswith(signature)), None)


def read_image(path: str | os.PathLike, as_stored: bool = False) -> np.ndarray:
    """Read any image file as an H x W x 3 uint8 RGB array, decoding by content rather than by extension.

    The dataset's ``.jpg`` files are really RGBA PNGs; 16-bit, grayscale and palette images are handled too. The
    picture is turned the way a viewer shows it: phones store a photo as the sensor saw it and record how to turn
    it in the EXIF orientation tag (0x0112, values 1-8; TIFF 6.0 / EXIF 2.3), which is applied here.
    ``as_stored=True`` returns the stored pixels instead: readers of annotated data use it, since keypoint files
    give coordinates in the stored pixels. HEIC/HEIF files (``read_heif``) are always turned for display.

    Raises DataError (one line) for a file that cannot be read: missing, empty, damaged, or of a format that is not
    read (the message names the formats that are, ``READABLE_FORMATS``).
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DataError(f"Cannot read image {path}: {error.strerror}.") from None
    if data.size == 0:
        raise DataError(f"{path} is empty: replace or remove the file.")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        kind = picture_format(data)
        if kind == "HEIF":
            return read_heif(path, data)
        if kind in OPENCV_FORMATS:
            raise DataError(f"{path} is a damaged {kind} file that cannot be decoded: replace or remove the file.")
        if kind is not None:
            raise DataError(f"{path} is in the {kind} format, which this tool does not read: convert it to {READABLE_FORMATS}.")
        raise DataError(f"{path} is not a picture in a format this tool reads ({READABLE_FORMATS}): replace or remove the file.")
    image = to_rgb_uint8(image, bgr=True)
    return image if as_stored else apply_exif_orientation(image, exif_orientation(data))


def read_heif(path: Path, data: np.ndarray) -> np.ndarray:
    """A HEIC/HEIF picture's encoded bytes as an H x W x 3 uint8 RGB array, through pillow-heif (libheif).

    The picture comes turned for display: HEIF records the turn in its own rotation and mirror properties (``irot``,
    ``imir``, ISO/IEC 23008-12), which libheif applies, and pillow-heif resets the EXIF orientation tag that repeats
    them (an iPhone writes both), so it is not applied twice. 10- and 12-bit pictures are read as 8-bit."""
    try:
        import pillow_heif
    except ImportError:
        raise DataError(f"{path} is a HEIC/HEIF picture: install pillow-heif to read it (pip install pillow-heif).") from None
    try:
        image = np.asarray(pillow_heif.open_heif(io.BytesIO(data.tobytes()), convert_hdr_to_8bit=True))
    except (ValueError, RuntimeError, OSError, EOFError) as error:
        raise DataError(f"{path} is a damaged HEIC/HEIF file ({str(error).splitlines()[0] if str(error) else 'no picture'}): replace or remove the file.") from None
    return to_rgb_uint8(image)


def exif_orientation(data: np.ndarray) -> int:
    """The EXIF orientation tag (1-8) of an encoded picture's bytes; 1 (as stored) when it has none."""
    try:
        with Image.open(io.BytesIO(data.tobytes())) as picture:
            value = picture.getexif().get(EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return 1
    return int(value) if value in range(1, 9) else 1


def apply_exif_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels (H x W x ...) turned for display by an EXIF orientation value (EXIF 2.3, tag 0x0112):
    1 as stored, 2 mirrored, 3 turned 180 degrees, 4 flipped upside down, 5 transposed, 6 turned 90 degrees
    clockwise, 7 transverse, 8 turned 90 degrees counter-clockwise. Values outside 1-8 leave it as stored."""
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, -1)[::-1],
        8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return image if turned is None else np.ascontiguousarray(turned(image))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Pixel values of uint8, uint16, float or bool as uint8 0-255; a single channel squeezed.

    Float pictures: a picture whose largest finite value is at most ``FLOAT_UNIT_RANGE_MAX`` (2.0) is taken to be
    on the [0, 1] scale and multiplied by 255 (interpolation such as bicubic or Lanczos resizing overshoots 1.0 a
    little at edges: 1.10 on the astronaut enlarged by 1.25); anything brighter is taken to be on the 0-255 scale.
    A 0-255 picture whose values all stay at or below 2 is black either way. NaN becomes black, infinity white
    (neither counts in the decision), and values are clipped to 0-255.
    """
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = (image / 257.0).round().astype(np.uint8)
    elif image.dtype.kind == "f":
        finite = image[np.isfinite(image)]
        scale = 255.0 if finite.size == 0 or float(finite.max()) <= FLOAT_UNIT_RANGE_MAX else 1.0
        image = np.nan_to_num(image.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        image = np.clip(np.clip(image, 0.0, 255.0) * scale, 0, 255).round().astype(np.uint8)
    elif image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return image


def to_rgb_uint8(image: np.ndarray, bgr: bool = False) -> np.ndarray:
    """Convert a grayscale, RGB(A) or BGR(A) array of uint8/uint16/float to H x W x 3 uint8 RGB."""
    image = to_uint8(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"Expected an H x W, H x W x 3 or H x W x 4 image, got shape {image.shape}.")
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else np.ascontiguousarray(image)


def read_keypoints_csv(csv_file: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a keypoint CSV (image name, then x0, y0, x1, y1, ...) into names and an N x K x 2 float32 array."""
    csv_file = Path(csv_file)
    try:
        frame = pd.read_csv(csv_file)
    except FileNotFoundError:
        raise DataError(f"Keypoint file {csv_file} does not exist: check the data folder.") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        reason = " ".join(str(error).split())
        raise DataError(f"{csv_file} is not a keypoint CSV ({reason}): restore the file from the dataset.") from None
    if len(frame) == 0:
        raise DataError(f"{csv_file} has no rows: restore the file from the dataset.")
    n_values = frame.shape[1] - 1
    if n_values < 2 or n_values % 2:
        raise DataError(
            f"{csv_file} has {frame.shape[1]} columns; expected an image name and an even number of coordinates (x0, y0, ...)."
        )
    try:
        values = frame.iloc[:, 1:].to_numpy(dtype=np.float32)
    except ValueError:
        raise DataError(f"{csv_file} has non-numeric coordinates: fix or restore the file.") from None
    bad_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad_rows.size:
        raise DataError(
            f"{csv_file} has missing or non-numeric coordinates in row {bad_rows[0] + 2} (and {bad_rows.size - 1} more): fix or drop those rows."
        )
    names = frame.iloc[:, 0].astype(str).tolist()
    return names, values.reshape(len(frame), -1, 2)


def person_of(image_name: str) -> str:
    """The person in a file named like ``Person_Name_NN.jpg``."""
    stem = Path(image_name).stem
    head, _, tail = stem.rpartition("_")
    return head if head and tail.isdigit() else stem


class FacialKeypointsDataset(Dataset):
    """Images and their keypoints from a CSV (name, x0, y0, ..., x(K-1), y(K-1)); any K works."""

    def __init__(
        self,
        csv_file: str | os.PathLike,
        root_dir: str | os.PathLike,
        transform: Callable[[dict], dict] | None = None,
        indices: Sequence[int] | None = None,
    ) -> None:
        self.csv_file = Path(csv_file)
        self.root_dir = Path(root_dir)
        if not self.root_dir.is_dir():
            raise DataError(f"Image folder {self.root_dir} does not exist: check the data folder setting ({DATA_ENV_VAR}).")
        names, keypoints = read_keypoints_csv(self.csv_file)
        if indices is not None:
            names = [names[i] for i in indices]
            keypoints = keypoints[np.asarray(indices, dtype=np.int64)]
        self.names = names
        self.keypoints = keypoints
        self.transform = transform

    @classmethod
    def from_split(
        cls, split: str, data_dir: str | os.PathLike | None = None, transform: Callable[[dict], dict] | None = None
    ) -> "FacialKeypointsDataset":
        """The 'training' or 'test' split of the dataset found by ``resolve_data_dir``."""
        csv_file, root_dir = split_paths(resolve_data_dir(data_dir), split)
        return cls(csv_file, root_dir, transform)

    @property
    def num_keypoints(self) -> int:
        return self.keypoints.shape[1]

    @property
    def persons(self) -> list[str]:
        return [person_of(name) for name in self.names]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        sample = {
            "image": read_image(self.root_dir / name, as_stored=True),
            "keypoints": self.keypoints[index].copy(),
            "name": name,
        }
        return self.transform(sample) if self.transform else sample


# ---------------------------------------------------------------------------------------------------------
# Derived keypoint sets
# ---------------------------------------------------------------------------------------------------------
def five_point_landmarks(keypoints: np.ndarray) -> np.ndarray:
    """Eye centres (subject's right then left, as image left then right), nose tip, mouth corners: (..., 5, 2)."""
    keypoints = np.asarray(keypoints, dtype=np.float32)
    return np.stack(
        [
            keypoints[..., 36:42, :].mean(axis=-2),
            keypoints[..., 42:48, :].mean(axis=-2),
            keypoints[..., 30, :],
            keypoints[..., 48, :],
            keypoints[..., 54, :],
        ],
        axis=-2,
    )


def nose_tip(keypoints: np.ndarray) -> np.ndarray:
    """The nose tip (point 30) of 68-point keypoints: (..., 2)."""
    return np.asarray(keypoints, dtype=np.float32)[..., 30, :]


# ---------------------------------------------------------------------------------------------------------
# Geometry shared by training and the pipeline
# ---------------------------------------------------------------------------------------------------------
def keypoint_box(keypoints: np.ndarray) -> np.ndarray:
    """Bounding box (x, y, w, h) of keypoints."""
    low, high = keypoints.min(axis=0), keypoints.max(axis=0)
    return np.array([low[0], low[1], high[0] - low[0], high[1] - low[1]], dtype=np.float32)


def haar_box_from_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """The face box (x, y, w, h) a Haar cascade would give for a face with these keypoints (see HAAR_SIDE)."""
    x, y, w, h = keypoint_box(keypoints)
    s = float(np.sqrt(max(w * h, 1e-6)))
    side = HAAR_SIDE * s
    cx, cy = x + w / 2 + HAAR_OFFSET[0] * s, y + h / 2 + HAAR_OFFSET[1] * s
    return np.array([cx - side / 2, cy - side / 2, side, side], dtype=np.float32)


def crop_square_from_box(box: Sequence[float], scale: float = CROP_SCALE, shift: float = CROP_SHIFT) -> tuple[float, float, float]:
    """Centre x, centre y and side of the square the network sees for a face box (x, y, w, h)."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h)
    return x + w / 2, y + h / 2 + shift * side, scale * side


def crop_matrix(
    center_x: float, center_y: float, side: float, output_size: int, angle: float = 0.0, flip: bool = False
) -> np.ndarray:
    """2 x 3 affine matrix mapping the square (centre, side), rotated by ``angle`` degrees, onto an output image."""
    scale = output_size / side
    matrix = cv2.getRotationMatrix2D((center_x, center_y), angle, scale)
    matrix[:, 2] += np.array([output_size / 2 - center_x, output_size / 2 - center_y])
    if flip:
        matrix = np.array([[-1.0, 0.0, output_size - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([matrix, [0.0, 0.0, 1.0]])
    return matrix.astype(np.float64)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 affine matrix to (..., 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def compose_matrices(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2 x 3 affine matrix applying ``inner`` then ``outer``."""
    return (np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]]))[:2]


def warp(image: np.ndarray, matrix: np.ndarray, output_size: int | tuple[int, int]) -> np.ndarray:
    """Warp with bilinear sampling and replicated borders, so crops beyond the image stay natural-looking.

    When the warp shrinks by more than 2x (a big face in a big photo), the covered region is first reduced by
    an integer factor with area averaging, so the result is not aliased.
    """
    width, height = (output_size, output_size) if isinstance(output_size, int) else output_size
    matrix = np.asarray(matrix, dtype=np.float64)
    factor = int(1.0 / max(np.sqrt(abs(np.linalg.det(matrix[:, :2]))), 1e-9))
    if factor >= 2:
        corners = transform_points(np.array([[0, 0], [width, 0], [0, height], [width, height]]), invert_matrix(matrix))
        margin = 2 * factor
        x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - margin, 0)
        x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + margin, image.shape[1::-1])
        columns, rows = (x1 - x0) // factor, (y1 - y0) // factor
        if columns >= 2 and rows >= 2:
            region = image[y0 : y0 + rows * factor, x0 : x0 + columns * factor]
            image = cv2.resize(region, (columns, rows), interpolation=cv2.INTER_AREA)
            # pixel (u, v) of the reduced region is pixel (x0 + factor u + (factor - 1) / 2, ...) of the original
            offset = (factor - 1) / 2
            reduce = np.array([[factor, 0, x0 + offset], [0, factor, y0 + offset], [0, 0, 1]], dtype=np.float64)
            matrix = matrix @ reduce
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def normalize_keypoints(keypoints: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Pixels of a size x size input to about [-1, 1]: (pts - size/2) / (size/2), so 0 -> -1 and size -> 1."""
    width, height = (size, size) if isinstance(size, int) else size
    half = np.array([width / 2, height / 2], dtype=np.float32)
    return ((np.asarray(keypoints, dtype=np.float32) - half) / half).astype(np.float32)


def denormalize_keypoints(keypoints: np.ndarray | torch.Tensor, size: int | tuple[int, int]) -> np.ndarray:
    """Undo ``normalize_keypoints``; flat model outputs (..., 2K) become (..., K, 2)."""
    if torch is not None and isinstance(keypoints, torch.Tensor):
        keypoints = keypoints.detach().cpu().numpy()
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.shape[-1] != 2:
        keypoints = keypoints.reshape(*keypoints.shape[:-1], -1, 2)
    width, height = (size, size) if isinstance(size, int) else size
    half = np.array([width / 2, height / 2], dtype=np.float32)
    return keypoints * half + half


# ---------------------------------------------------------------------------------------------------------
# The course transforms
# ---------------------------------------------------------------------------------------------------------
class Rescale:
    """Resize so the shorter side is ``output_size`` (int), or to exactly (height, width) (tuple)."""

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        self.output_size = output_size

    def __call__(self, sample: dict) -> dict:
        image, keypoints = sample["image"], sample["keypoints"]
        h, w = image.shape[:2]
        # TODO (notebook 1): resize ``image`` to new_h x new_w (the shorter side becomes ``output_size`` for an int, keeping the
        # aspect ratio; exactly (height, width) for a tuple) with cv2.resize, and scale the keypoints to match.
        # Pixel centres sit at integer coordinates, so x_new = (x + 0.5) * new_w / w - 0.5, and likewise y.
        ### BEGIN SOLUTION
        if isinstance(self.output_size, int):
            if h > w:
                new_h, new_w = self.output_size * h / w, self.output_size
            else:
                new_h, new_w = self.output_size, self.output_size * w / h
        else:
            new_h, new_w = self.output_size
        new_h, new_w = int(round(new_h)), int(round(new_w))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if new_w < w else cv2.INTER_LINEAR)
        # pixel centres: x_new + 0.5 = (x + 0.5) * new_w / w, as cv2.resize samples
        keypoints = (keypoints + 0.5) * np.array([new_w / w, new_h / h], dtype=np.float32) - 0.5
        ### END SOLUTION
        return {**sample, "image": image, "keypoints": keypoints}


class RandomCrop:
    """Cut a random ``output_size`` window (int for a square, or (height, width))."""

    def __init__(self, output_size: int | tuple[int, int], rng: np.random.Generator | None = None) -> None:
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        self.rng = rng or seeded_rng()

    def __call__(self, sample: dict) -> dict:
        image, keypoints = sample["image"], sample["keypoints"]
        h, w = image.shape[:2]
        new_h, new_w = self.output_size
        if new_h > h or new_w > w:
            raise ValueError(f"RandomCrop of {new_h}x{new_w} is larger than the {h}x{w} image: Rescale first.")
        # TODO (notebook 1): draw the window's top-left corner (top, left) at random with ``self.rng.integers``, cut the
        # new_h x new_w window out of ``image``, and move the keypoints by the same offset.
        ### BEGIN SOLUTION
        top = int(self.rng.integers(0, h - new_h + 1))
        left = int(self.rng.integers(0, w - new_w + 1))
        image = image[top : top + new_h, left : left + new_w]
        keypoints = keypoints - np.array([left, top], dtype=np.float32)
        ### END SOLUTION
        return {**sample, "image": image, "keypoints": keypoints}


class CenterCrop:
    """Cut the ``output_size`` window (int for a square, or (height, width)) in the middle of the image: the
    test-time twin of ``RandomCrop``. Its top-left corner is at ``((h - new_h) // 2, (w - new_w) // 2)``, so the
    centre crop of a face window (``FaceWindows``) is the pipeline's crop of that face."""

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    def __call__(self, sample: dict) -> dict:
        image, keypoints = sample["image"], sample["keypoints"]
        h, w = image.shape[:2]
        new_h, new_w = self.output_size
        if new_h > h or new_w > w:
            raise ValueError(f"CenterCrop of {new_h}x{new_w} is larger than the {h}x{w} image: Rescale first.")
        # TODO (notebook 1): cut the new_h x new_w window in the middle of ``image``, its top-left corner at
        # ((h - new_h) // 2, (w - new_w) // 2), and move the keypoints by the same offset.
        ### BEGIN SOLUTION
        top, left = (h - new_h) // 2, (w - new_w) // 2
        image = image[top : top + new_h, left : left + new_w]
        keypoints = keypoints - np.array([left, top], dtype=np.float32)
        ### END SOLUTION
        return {**sample, "image": image, "keypoints": keypoints}


class Normalize:
    """RGB uint8 -> grayscale float32 in [0, 1]; keypoints -> [-1, 1] relative to the image (see module doc)."""

    def __call__(self, sample: dict) -> dict:
        image, keypoints = sample["image"], sample["keypoints"]
        # TODO (notebook 1): ``gray``: the image in gray levels (cv2.cvtColor with cv2.COLOR_RGB2GRAY for an RGB image), as
        # float32 in [0, 1]; ``keypoints``: mapped to [-1, 1] around the image centre (``normalize_keypoints``).
        ### BEGIN SOLUTION
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        gray = gray.astype(np.float32) / 255.0
        keypoints = normalize_keypoints(keypoints, (gray.shape[1], gray.shape[0]))
        ### END SOLUTION
        return {**sample, "image": gray, "keypoints": keypoints}


class ToTensor:
    """H x W (x C) float array -> C x H x W tensor; keypoints -> K x 2 float tensor."""

    def __call__(self, sample: dict) -> dict:
        image = np.asarray(sample["image"], dtype=np.float32)
        if image.ndim == 2:
            image = image[:, :, None]
        return {
            **sample,
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "keypoints": torch.from_numpy(np.asarray(sample["keypoints"], dtype=np.float32)),
        }


# ---------------------------------------------------------------------------------------------------------
# Augmentation and the face crop
# ---------------------------------------------------------------------------------------------------------
@dataclass
class AugmentConfig:
    """Strength of the random augmentation; all zeros gives the plain crop."""

    rotation: float = 15.0  # degrees, uniform in [-rotation, rotation]
    scale: float = 0.10  # relative, uniform in [1 - scale, 1 + scale]
    shift: float = 0.06  # fraction of the crop side, uniform in [-shift, shift] on each axis
    flip: float = 0.5  # probability of a horizontal flip
    brightness: float = 0.25  # added, uniform in [-brightness, brightness] x 255
    contrast: float = 0.3  # multiplied, uniform in [1 - contrast, 1 + contrast]
    # What photos in the wild show and video frames rarely do (all off by default; ``photo_effects``):
    blur: float = 0.0  # probability of a Gaussian blur, sigma uniform in [0.3, BLUR_SIGMA] input pixels
    illumination: float = 0.0  # light from one side: a ramp of up to +-illumination x 255, and gamma in exp(+-illumination)
    occlusion: float = 0.0  # probability of a flat or noisy rectangle, OCCLUSION_SIDES of the crop a side


BLUR_SIGMA = 1.5
OCCLUSION_SIDES = (0.15, 0.45)


def photo_effects(crop: np.ndarray, augment: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Uneven light, blur and an occluding rectangle on a float32 grayscale crop in [0, 1] (same shape, clipped to
    [0, 1]); keypoints are unchanged. Each effect is drawn with ``augment``'s strength or probability."""
    size = crop.shape[0]
    if augment.illumination:
        gamma = float(np.exp(rng.uniform(-augment.illumination, augment.illumination)))
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * np.linspace(-1, 1, size)[None, :] + np.sin(angle) * np.linspace(-1, 1, size)[:, None]
        crop = np.clip(crop, 0, 1) ** gamma + rng.uniform(0, augment.illumination) * ramp.astype(np.float32)
    if augment.blur and rng.random() < augment.blur:
        crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(0.3, BLUR_SIGMA))
    if augment.occlusion and rng.random() < augment.occlusion:
        w, h = (rng.uniform(*OCCLUSION_SIDES, size=2) * size).astype(int)
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        fill = rng.uniform(0, 1) + (rng.normal(0, 0.1, size=(h, w)) if rng.random() < 0.5 else 0.0)
        crop = crop.copy()
        crop[y : y + h, x : x + w] = fill
    return np.clip(crop, 0, 1).astype(np.float32)


def flip_keypoints(keypoints: np.ndarray, width: float, permutation: np.ndarray | None = None) -> np.ndarray:
    """Mirror keypoints in an image ``width`` pixels wide (pixel i <-> width-1-i) and swap left/right labels."""
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if permutation is None:
        permutation = flip_permutation(keypoints.shape[-2])
    flipped = keypoints[..., permutation, :].copy()
    flipped[..., 0] = (width - 1) - flipped[..., 0]
    return flipped


def flip_permutation(num_keypoints: int) -> np.ndarray:
    """The left/right permutation for 68 points; the identity for other sets whose symmetry we don't know."""
    if num_keypoints == NUM_KEYPOINTS:
        return FLIP_PERMUTATION_68
    if num_keypoints == 5:
        return np.array([1, 0, 2, 4, 3])
    return np.arange(num_keypoints)


class RandomHorizontalFlip:
    """Mirror the image with probability ``p``, swapping left and right keypoints."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        self.p = p
        self.rng = rng or seeded_rng()

    def __call__(self, sample: dict) -> dict:
        if self.rng.random() >= self.p:
            return sample
        image = np.ascontiguousarray(sample["image"][:, ::-1])
        return {**sample, "image": image, "keypoints": flip_keypoints(sample["keypoints"], image.shape[1])}


class RandomAffine:
    """Random rotation, scale and shift about the image centre, as one warp (borders replicated)."""

    def __init__(
        self, rotation: float = 15.0, scale: float = 0.1, shift: float = 0.06, rng: np.random.Generator | None = None
    ) -> None:
        self.rotation, self.scale, self.shift = rotation, scale, shift
        self.rng = rng or seeded_rng()

    def __call__(self, sample: dict) -> dict:
        image = sample["image"]
        h, w = image.shape[:2]
        angle = self.rng.uniform(-self.rotation, self.rotation)
        zoom = self.rng.uniform(1 - self.scale, 1 + self.scale)
        dx, dy = self.rng.uniform(-self.shift, self.shift, size=2) * np.array([w, h])
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom)
        matrix[:, 2] += (dx, dy)
        return {**sample, "image": warp(image, matrix, (w, h)), "keypoints": transform_points(sample["keypoints"], matrix)}


class ColorJitter:
    """Random brightness and contrast on uint8 or [0, 1] float images; keypoints untouched."""

    def __init__(self, brightness: float = 0.25, contrast: float = 0.3, rng: np.random.Generator | None = None) -> None:
        self.brightness, self.contrast = brightness, contrast
        self.rng = rng or seeded_rng()

    def __call__(self, sample: dict) -> dict:
        image = sample["image"]
        full_scale = 255.0 if image.dtype == np.uint8 else 1.0
        gain = self.rng.uniform(1 - self.contrast, 1 + self.contrast)
        bias = self.rng.uniform(-self.brightness, self.brightness) * full_scale
        mean = float(image.mean())
        jittered = (image.astype(np.float32) - mean) * gain + mean + bias
        jittered = np.clip(jittered, 0, full_scale).astype(image.dtype)
        return {**sample, "image": jittered}


class FaceCrop:
    """Cut the square the network sees around the face, exactly as the pipeline will at inference.

    The face box is the Haar-convention box derived from the keypoints (or ``sample["box"]`` if present); the
    crop is ``CROP_SCALE`` times its side, shifted down by ``CROP_SHIFT``, and padded by replicating the image
    border where it leaves the picture. With ``augment`` it also applies random rotation, scale, shift and flip
    in the same single warp, so no pixels are lost to intermediate crops.
    """

    def __init__(
        self, output_size: int = 224, augment: AugmentConfig | None = None, rng: np.random.Generator | None = None
    ) -> None:
        self.output_size = output_size
        self.augment = augment
        self.rng = rng or seeded_rng()

    def __call__(self, sample: dict) -> dict:
        keypoints = sample["keypoints"]
        box = sample.get("box")
        if box is None:
            box = haar_box_from_keypoints(keypoints)
        cx, cy, side = crop_square_from_box(box)
        angle, flip = 0.0, False
        if self.augment is not None:
            a = self.augment
            angle = self.rng.uniform(-a.rotation, a.rotation)
            side /= self.rng.uniform(1 - a.scale, 1 + a.scale)
            cx, cy = np.array([cx, cy]) + self.rng.uniform(-a.shift, a.shift, size=2) * side
            flip = self.rng.random() < a.flip
        matrix = crop_matrix(cx, cy, side, self.output_size, angle, flip)
        image = warp(sample["image"], matrix, self.output_size)
        keypoints = transform_points(keypoints, matrix)
        if flip:
            keypoints = keypoints[flip_permutation(keypoints.shape[0])]
        out = {**sample, "image": image, "keypoints": keypoints, "matrix": matrix}
        if self.augment is not None and (self.augment.brightness or self.augment.contrast):
            out = ColorJitter(self.augment.brightness, self.augment.contrast, self.rng)(out)
        return out


def collate_samples(samples: list[dict]) -> dict:
    """Stack tensors; keep names and matrices as lists (the DataLoader's collate_fn)."""
    batch: dict = {}
    for key in samples[0]:
        values = [sample[key] for sample in samples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch


# ---------------------------------------------------------------------------------------------------------
# Pre-cut face crops: decode every image once, then augment small grayscale arrays (fast on a CPU)
# ---------------------------------------------------------------------------------------------------------
CONTEXT_FACTOR = 2.0  # the cached square is this many times the network's crop, leaving room to augment
CONTEXT_DENSITY = 1.25  # cached pixels per network-input pixel
CACHE_VERSION = 2  # bump when the way crops are cut changes


def context_size(input_size: int) -> int:
    return int(round(CONTEXT_FACTOR * CONTEXT_DENSITY * input_size))


def cut_face_crops(
    read_gray: Callable[[int], np.ndarray],
    keypoints: np.ndarray,
    names: Sequence[str],
    input_size: int,
    boxes: np.ndarray | None = None,
    progress: str | None = None,
) -> dict[str, np.ndarray]:
    """Context crops (the network's crop square x CONTEXT_FACTOR, ``context_size(input_size)`` pixels a side,
    uint8 grayscale) around N faces, with their keypoints (N, K, 2) in the crops' pixels.

    ``read_gray(i)`` gives picture i as an H x W uint8 array; each face is framed from the Haar-convention box of
    its keypoints, or from ``boxes[i]`` (x, y, w, h) when given (faces without keypoints, e.g. negatives).
    ``progress`` is a progress-bar title (None: silent).
    """
    size = context_size(input_size)
    keypoints = np.asarray(keypoints, np.float32)
    images = np.empty((len(names), size, size), dtype=np.uint8)
    moved = np.empty_like(keypoints)
    indices = range(len(names))
    if progress:
        from tqdm import tqdm  # plain text: a notebook keeps its last state (a widget would be stored at 0 %)

        indices = tqdm(indices, desc=progress)
    for i in indices:
        box = boxes[i] if boxes is not None else haar_box_from_keypoints(keypoints[i])
        cx, cy, side = crop_square_from_box(box)
        matrix = crop_matrix(cx, cy, side * CONTEXT_FACTOR, size)
        images[i] = warp(read_gray(i), matrix, size)
        moved[i] = transform_points(keypoints[i], matrix)
    return {"images": images, "keypoints": moved, "names": np.array(list(names))}


def cut_context_crops(dataset: FacialKeypointsDataset, input_size: int, progress: bool = False) -> dict[str, np.ndarray]:
    """Grayscale context crops around every face of a course dataset (see ``cut_face_crops``)."""

    def read_gray(i: int) -> np.ndarray:
        return cv2.cvtColor(read_image(dataset.root_dir / dataset.names[i], as_stored=True), cv2.COLOR_RGB2GRAY)

    title = f"cutting face crops from {dataset.root_dir.name}" if progress else None
    return cut_face_crops(read_gray, dataset.keypoints, dataset.names, input_size, progress=title)


def crop_cache_file(kind: str, input_size: int, key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache file of one set of context crops: ``.cache/crops_<kind>_<size>_<hash>.npz`` (in ``cache_dir``, else
    the folder named by $FKP_CACHE, else ``.cache/`` in the repository); ``key`` says what the crops depend on
    (source files, their sizes and times), and the crop geometry is added to it."""
    import hashlib

    key = f"{key}|{CONTEXT_FACTOR}|{CONTEXT_DENSITY}|{CROP_SCALE}|{CROP_SHIFT}|{CACHE_VERSION}"
    cache_dir = Path(cache_dir) if cache_dir else Path(os.environ.get(CACHE_ENV_VAR) or REPO_DIR / ".cache")
    return cache_dir / f"crops_{kind}_{input_size}_{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"


def cached_crops(cache_file: Path, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays stored in ``cache_file``, else ``build()``'s, saved there first (compressed, written atomically)."""
    if cache_file.is_file():
        with np.load(cache_file) as cached:
            return {key: cached[key] for key in cached.files}
    crops = build()

    def save(temporary: str) -> None:
        with open(temporary, "wb") as file:  # a file object: np.savez would add ".npz" to a name
            np.savez_compressed(file, **crops)

    atomic_write(cache_file, save)  # a temporary of its own: two processes may build the same cache at once
    return crops


def load_context_crops(
    split: str, input_size: int, data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
) -> dict[str, np.ndarray]:
    """``cut_context_crops`` for a split, cached as a compressed .npz in ``.cache/`` (rebuilt if the CSV changes)."""
    csv_file, root_dir = split_paths(resolve_data_dir(data_dir), split)
    stat = csv_file.stat()
    cache_file = crop_cache_file(split, input_size, f"{csv_file.resolve()}|{stat.st_size}|{int(stat.st_mtime)}", cache_dir)
    # looked up at call time, so the cutting can be replaced (tests check that a cached set is not cut again)
    return cached_crops(cache_file, lambda: cut_context_crops(FacialKeypointsDataset(csv_file, root_dir), input_size, progress=True))


class CropDataset(Dataset):
    """Network inputs from context crops: ``{"image": 1 x S x S tensor in [0, 1], "keypoints": K x 2 in [-1, 1]}``.

    Without ``augment`` the input is exactly the pipeline's crop; with it, rotation, scale, shift and flip are one
    warp of the cached crop, followed by ``photo_effects`` and brightness/contrast jitter. Crops that carry a
    per-face ``"convention"`` (index into ``models.CONVENTIONS``) and ``"face"`` (1 a face, 0 none: its keypoints
    mean nothing) array give them as int64 / float32 scalars too (``mix_crops``), and ``"flipped"`` (float32, 1.0
    when the crop was mirrored: see ``pipeline.trainer.flip_corrected``).
    """

    def __init__(
        self,
        crops: dict[str, np.ndarray],
        input_size: int,
        indices: Sequence[int] | None = None,
        augment: AugmentConfig | None = None,
        seed: int | None = None,
    ) -> None:
        self.images = crops["images"]
        self.keypoints = crops["keypoints"]
        self.labels = {key: crops[key] for key in ("convention", "face") if key in crops}
        self.indices = np.arange(len(self.images)) if indices is None else np.asarray(indices)
        self.input_size = input_size
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        size = self.images.shape[1]
        self.base_side = size / CONTEXT_FACTOR  # the network crop's side in cached pixels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        i = self.indices[index]
        image, keypoints = self.images[i], self.keypoints[i]
        center = self.images.shape[1] / 2
        cx = cy = center
        side, angle, flip = self.base_side, 0.0, False
        a = self.augment
        if a is not None:
            angle = self.rng.uniform(-a.rotation, a.rotation)
            side /= self.rng.uniform(1 - a.scale, 1 + a.scale)
            cx, cy = np.array([cx, cy]) + self.rng.uniform(-a.shift, a.shift, size=2) * side
            flip = self.rng.random() < a.flip
        matrix = crop_matrix(cx, cy, side, self.input_size, angle, flip)
        crop = cv2.warpAffine(image, matrix, (self.input_size, self.input_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        points = transform_points(keypoints, matrix)
        if flip:
            points = points[flip_permutation(points.shape[0])]
        crop = crop.astype(np.float32) / 255.0
        if a is not None and (a.illumination or a.blur or a.occlusion):
            crop = photo_effects(crop, a, self.rng)
        if a is not None and (a.brightness or a.contrast):
            crop = ColorJitter(a.brightness, a.contrast, self.rng)({"image": crop})["image"]
        sample = {
            "image": torch.from_numpy(crop[None]),
            "keypoints": torch.from_numpy(normalize_keypoints(points, self.input_size)),
        }
        for key in ("convention", "face"):
            if key in self.labels:
                sample[key] = torch.tensor(self.labels[key][i])
        if self.labels:
            sample["flipped"] = torch.tensor(float(flip), dtype=torch.float32)
        return sample


def mix_crops(parts: Sequence[tuple[dict[str, np.ndarray], int, bool]]) -> dict[str, np.ndarray]:
    """One set of context crops from several: each part is (crops, convention index, holds faces), and every
    crop gets its ``"convention"`` (int64) and ``"face"`` (float32, 1.0 or 0.0) label (see ``CropDataset``).
    All parts must be cut for the same input size."""
    sizes = {crops["images"].shape[1:] for crops, _, _ in parts}
    if len(sizes) != 1:
        raise ValueError(f"Crops of different sizes {sorted(sizes)} cannot be mixed: cut them for one input size.")
    mixed = {key: np.concatenate([crops[key] for crops, _, _ in parts]) for key in ("images", "keypoints", "names")}
    mixed["convention"] = np.concatenate([np.full(len(crops["images"]), c, np.int64) for crops, c, _ in parts])
    mixed["face"] = np.concatenate([np.full(len(crops["images"]), float(face), np.float32) for crops, _, face in parts])
    return mixed


# ---------------------------------------------------------------------------------------------------------
# The course's transform pipelines (notebook 1): what notebook 2 trains and validates with
# ---------------------------------------------------------------------------------------------------------
def train_transform(input_size: int) -> Callable[[dict], dict]:
    """The transforms of a training sample: a face window (``FaceWindows``: RGB uint8, WINDOW_SIZE pixels a side)
    to ``{"image": 1 x S x S float tensor in [0, 1], "keypoints": K x 2 float tensor in [-1, 1], ...}``, S =
    ``input_size``, with some randomness in where the face sits (and, if you like, mirrored or turned)."""
    from torchvision.transforms import Compose

    # TODO (notebook 1): return Compose([...]) of your transforms: Rescale the window to
    # round(input_size * WINDOW_MARGIN) pixels, cut a random input_size window, then Normalize and ToTensor
    # (RandomHorizontalFlip and RandomAffine may join them, before Normalize).
    ### BEGIN SOLUTION
    return Compose([Rescale(round(input_size * WINDOW_MARGIN)), RandomCrop(input_size), RandomHorizontalFlip(), Normalize(), ToTensor()])
    ### END SOLUTION


def test_transform(input_size: int) -> Callable[[dict], dict]:
    """The transforms of a validation or test sample: like ``train_transform`` without any randomness, so that the
    face is framed exactly as the pipeline frames it (the centre ``input_size`` square of the rescaled window)."""
    from torchvision.transforms import Compose

    # TODO (notebook 1): return Compose([...]): the same Rescale as train_transform, then CenterCrop(input_size),
    # Normalize and ToTensor; nothing random.
    ### BEGIN SOLUTION
    return Compose([Rescale(round(input_size * WINDOW_MARGIN)), CenterCrop(input_size), Normalize(), ToTensor()])
    ### END SOLUTION


# ---------------------------------------------------------------------------------------------------------
# Face windows: each labelled picture decoded once into a small colour square around its face (notebook 2)
# ---------------------------------------------------------------------------------------------------------
WINDOW_MARGIN = 1.125  # a window is this many times the pipeline's crop square: room for RandomCrop to move
WINDOW_SIZE = 144  # its side in pixels: 128 x WINDOW_MARGIN, so inputs of up to 128 px are never enlarged
WINDOW_CACHE_VERSION = 1  # bump when the way windows are cut changes


def window_matrix(keypoints: np.ndarray, size: int = WINDOW_SIZE) -> np.ndarray:
    """The 2 x 3 matrix from picture pixels to the face window of a face with these keypoints: the pipeline's crop
    square (``crop_square_from_box`` of ``haar_box_from_keypoints``) enlarged WINDOW_MARGIN times about its centre,
    ``size`` pixels a side. Rescaled to R = ``round(S * WINDOW_MARGIN)`` pixels and cut to its middle S x S square
    (S a multiple of 16, so that the margins are whole pixels), a window is the pipeline's S-pixel crop of the face,
    shifted by 0.5 (1 - R / size) of a pixel (0.06 px for S = 112): warps put pixel centres on a square's edges,
    ``cv2.resize`` half a pixel inside them."""
    cx, cy, side = crop_square_from_box(haar_box_from_keypoints(keypoints))
    return crop_matrix(cx, cy, side * WINDOW_MARGIN, size)


def spread_indices(count: int, limit: int | None) -> np.ndarray:
    """``limit`` indices spread evenly over ``range(count)`` (all of them for None or a limit >= count), so that a
    subset still holds faces of most people."""
    if limit is None or limit >= count:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, max(int(limit), 1)).round().astype(np.int64))


def cut_face_windows(dataset: FacialKeypointsDataset, indices: Sequence[int] | None = None, progress: bool = False) -> dict[str, np.ndarray]:
    """Face windows (``window_matrix``) of the faces ``indices`` of a dataset (all by default): ``"images"`` (N,
    WINDOW_SIZE, WINDOW_SIZE, 3) RGB uint8, ``"keypoints"`` (N, K, 2) float32 in window pixels, ``"names"`` (N,)."""
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, np.int64)
    images = np.empty((len(indices), WINDOW_SIZE, WINDOW_SIZE, 3), np.uint8)
    keypoints = np.empty((len(indices), dataset.num_keypoints, 2), np.float32)
    steps = range(len(indices))
    if progress:
        from tqdm import tqdm  # plain text: a notebook keeps its last state (a widget would be stored at 0 %)

        steps = tqdm(steps, desc=f"cutting face windows from {dataset.root_dir.name}")
    for row in steps:
        i = int(indices[row])
        matrix = window_matrix(dataset.keypoints[i])
        images[row] = warp(read_image(dataset.root_dir / dataset.names[i], as_stored=True), matrix, WINDOW_SIZE)
        keypoints[row] = transform_points(dataset.keypoints[i], matrix)
    return {"images": images, "keypoints": keypoints, "names": np.array([dataset.names[int(i)] for i in indices])}


def load_face_windows(
    split: str, data_dir: str | os.PathLike | None = None, limit: int | None = None, cache_dir: str | os.PathLike | None = None
) -> dict[str, np.ndarray]:
    """The face windows of a split (``cut_face_windows``), or of ``limit`` faces spread over it, cut the first time
    and then read from a compressed .npz in ``.cache/`` (cut again when the CSV changes)."""
    csv_file, root_dir = split_paths(resolve_data_dir(data_dir), split)
    stat = csv_file.stat()
    key = f"{csv_file.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|{limit}|{WINDOW_MARGIN}|{WINDOW_CACHE_VERSION}"
    cache_file = crop_cache_file(f"windows_{split}", WINDOW_SIZE, key, cache_dir)

    def build() -> dict[str, np.ndarray]:
        dataset = FacialKeypointsDataset(csv_file, root_dir)
        return cut_face_windows(dataset, spread_indices(len(dataset), limit), progress=True)

    return cached_crops(cache_file, build)


class FaceWindows(Dataset):
    """Samples of cached face windows (``load_face_windows``): ``{"image": WINDOW_SIZE x WINDOW_SIZE x 3 RGB uint8,
    "keypoints": K x 2 float32 in window pixels, "name": file name}``, passed through ``transform`` (e.g.
    ``train_transform(S)``); ``indices`` picks some of the windows (a person split, ``split_by_person``)."""

    def __init__(self, windows: dict[str, np.ndarray], indices: Sequence[int] | None = None,
                 transform: Callable[[dict], dict] | None = None) -> None:
        self.images, self.keypoints, self.names = windows["images"], windows["keypoints"], windows["names"]
        self.indices = np.arange(len(self.images)) if indices is None else np.asarray(indices, np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        i = self.indices[index]
        sample = {"image": self.images[i], "keypoints": self.keypoints[i].copy(), "name": str(self.names[i])}
        return self.transform(sample) if self.transform else sample


def split_by_person(names: Sequence[str], val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of training and validation faces, ``val_fraction`` of the people held out, every person entirely
    on one side (``person_of``): validation then measures faces the network never saw."""
    persons = sorted({person_of(n) for n in names})
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * len(persons)))
    val_persons = set(rng.permutation(persons)[:n_val].tolist())
    is_val = np.array([person_of(n) in val_persons for n in names], dtype=bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
