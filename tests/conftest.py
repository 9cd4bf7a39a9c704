"""Shared fixtures: the real dataset (when $FKP_DATA points at it) and a tiny synthetic one in the same layout."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_DIR))

import torch  # noqa: E402

# The machine is shared with training runs: one thread keeps the suite polite and its timings stable.
torch.set_num_threads(1)
cv2.setNumThreads(1)

CSV_NAMES = ("training_frames_keypoints.csv", "test_frames_keypoints.csv")
# The 300-W crops, beside the repository where CI lays them (tests that need them skip without them).
SHARED_300W = REPO_DIR.parent / "shared" / "300w"

# Mean shape of the real training keypoints, each face scaled to the unit square of its own keypoint box
# (pipeline.evaluation.mean_shape on training_frames_keypoints.csv, rounded): 68 points in iBUG order.
MEAN_SHAPE_68 = np.array(
    [
        (0.007, 0.214), (0.017, 0.348), (0.041, 0.469), (0.070, 0.588), (0.115, 0.717), (0.188, 0.828),
        (0.268, 0.899), (0.371, 0.962), (0.525, 0.999), (0.675, 0.953), (0.772, 0.888), (0.846, 0.814),
        (0.913, 0.706), (0.950, 0.574), (0.970, 0.457), (0.987, 0.335), (0.989, 0.200), (0.127, 0.088),
        (0.185, 0.047), (0.256, 0.035), (0.322, 0.042), (0.382, 0.059), (0.621, 0.056), (0.678, 0.039),
        (0.743, 0.032), (0.815, 0.044), (0.872, 0.081), (0.505, 0.203), (0.508, 0.293), (0.512, 0.379),
        (0.515, 0.452), (0.433, 0.505), (0.468, 0.515), (0.514, 0.525), (0.558, 0.513), (0.592, 0.501),
        (0.222, 0.195), (0.267, 0.178), (0.326, 0.176), (0.378, 0.201), (0.330, 0.219), (0.268, 0.220),
        (0.629, 0.198), (0.683, 0.173), (0.741, 0.172), (0.787, 0.189), (0.740, 0.214), (0.680, 0.216),
        (0.344, 0.672), (0.403, 0.635), (0.477, 0.611), (0.515, 0.618), (0.552, 0.610), (0.623, 0.632),
        (0.677, 0.668), (0.621, 0.720), (0.573, 0.750), (0.518, 0.758), (0.461, 0.754), (0.406, 0.724),
        (0.355, 0.670), (0.465, 0.656), (0.515, 0.654), (0.564, 0.655), (0.665, 0.666), (0.563, 0.690),
        (0.516, 0.696), (0.465, 0.692),
    ],
    dtype=np.float32,
)

TINY_TRAINING = {"Alice_Smith": 4, "Bob_Jones": 4, "Carol_Ann_Lee": 4}
TINY_TEST = {"Dan_Brown": 3, "Eve_Adams": 3}


def face_keypoints(box: tuple[float, float, float, float], shape: np.ndarray = MEAN_SHAPE_68) -> np.ndarray:
    """``shape`` (in the unit square) stretched into the box (x, y, w, h): K x 2 float32."""
    x, y, w, h = box
    return (np.asarray(shape, np.float32) * np.array([w, h], np.float32) + np.array([x, y], np.float32)).astype(np.float32)


def draw_face(height: int, width: int, keypoints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cartoon face (head ellipse, brows, eyes, nose, mouth) drawn on its 68 keypoints: H x W x 4 uint8 RGBA."""
    background = rng.integers(40, 120, size=3)
    image = np.empty((height, width, 4), np.uint8)
    image[..., :3] = background
    image[..., 3] = 255
    rgb = np.ascontiguousarray(image[..., :3])
    pts = keypoints.astype(np.float64)
    low, high = pts.min(axis=0), pts.max(axis=0)
    centre = (low + high) / 2
    axes = (high - low) / 2
    skin = tuple(int(v) for v in rng.integers(160, 230, size=3))
    cv2.ellipse(rgb, (int(centre[0]), int(centre[1] - 0.1 * axes[1])), (int(axes[0] * 1.05), int(axes[1] * 1.2)), 0, 0, 360, skin, -1)
    dark = (30, 20, 20)

    def poly(indices, closed=False, color=dark, thickness=1):
        cv2.polylines(rgb, [np.round(pts[list(indices)]).astype(np.int32)], closed, color, thickness)

    poly(range(0, 17))  # jaw
    poly(range(17, 22), thickness=2)  # brows
    poly(range(22, 27), thickness=2)
    poly(range(27, 31))  # nose bridge
    poly(range(31, 36))
    for eye in (range(36, 42), range(42, 48)):
        cv2.fillPoly(rgb, [np.round(pts[list(eye)]).astype(np.int32)], (250, 250, 250))
        c = pts[list(eye)].mean(axis=0)
        cv2.circle(rgb, (int(round(c[0])), int(round(c[1]))), max(1, int(axes[0] * 0.05)), dark, -1)
    cv2.fillPoly(rgb, [np.round(pts[48:60]).astype(np.int32)], (170, 40, 50))  # lips
    poly(range(60, 68), closed=True, color=(90, 10, 20))
    image[..., :3] = rgb
    return image


def write_png(path: Path, rgb_or_rgba: np.ndarray) -> None:
    """Write an RGB(A) array as PNG content whatever the file's extension (the dataset's '.jpg' files are PNGs)."""
    array = np.asarray(rgb_or_rgba)
    if array.ndim == 3:
        code = cv2.COLOR_RGBA2BGRA if array.shape[2] == 4 else cv2.COLOR_RGB2BGR
        array = cv2.cvtColor(array, code)
    ok, encoded = cv2.imencode(".png", array)
    assert ok
    path.write_bytes(encoded.tobytes())


def write_keypoints_csv(path: Path, names: list[str], keypoints: np.ndarray) -> None:
    """The dataset's CSV layout: a header ``,0,1,...,2K-1`` then ``name,x0,y0,x1,y1,...`` per image."""
    keypoints = np.asarray(keypoints, np.float32)
    n_values = keypoints.shape[1] * 2
    lines = ["," + ",".join(str(i) for i in range(n_values))]
    for name, pts in zip(names, keypoints):
        lines.append(name + "," + ",".join(f"{v:.1f}" for v in pts.reshape(-1)))
    path.write_text("\n".join(lines) + "\n")


@dataclass
class TinyDataset:
    path: Path
    training_names: list[str]
    training_keypoints: np.ndarray
    test_names: list[str]
    test_keypoints: np.ndarray


def make_tiny_dataset(root: Path, seed: int = 0) -> TinyDataset:
    """A small dataset in the real layout: training/, test/, the two CSVs, RGBA PNGs named ``Person_Name_NN.jpg``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    result = {}
    for split, persons in (("training", TINY_TRAINING), ("test", TINY_TEST)):
        folder = root / split
        folder.mkdir()
        names, all_points = [], []
        for person, count in persons.items():
            for k in range(count):
                width, height = int(rng.integers(110, 160)), int(rng.integers(120, 170))
                face_w = float(rng.uniform(0.45, 0.6) * width)
                face_h = face_w * float(rng.uniform(0.9, 1.05))
                x = (width - face_w) / 2 + float(rng.uniform(-0.08, 0.08) * width)
                y = (height - face_h) / 2 + float(rng.uniform(-0.05, 0.1) * height)
                points = face_keypoints((x, y, face_w, face_h)) + rng.normal(0, 0.6, size=(68, 2)).astype(np.float32)
                points = np.round(points, 1)
                name = f"{person}_{k:02d}.jpg"
                write_png(folder / name, draw_face(height, width, points, rng))
                names.append(name)
                all_points.append(points)
        keypoints = np.stack(all_points).astype(np.float32)
        write_keypoints_csv(root / f"{split}_frames_keypoints.csv", names, keypoints)
        result[split] = (names, keypoints)
    return TinyDataset(root, *result["training"], *result["test"])


@pytest.fixture
def tiny_data(tmp_path: Path) -> TinyDataset:
    """The tiny synthetic dataset with its names and keypoints (see ``make_tiny_dataset``)."""
    return make_tiny_dataset(tmp_path / "tiny_data")


@pytest.fixture
def tiny_dataset(tiny_data: TinyDataset) -> Path:
    """Folder of a tiny synthetic dataset laid out like the real one (12 training and 6 test faces)."""
    return tiny_data.path


@pytest.fixture
def real_data_dir() -> Path:
    """The real dataset from $FKP_DATA; the test is skipped when it is not set or lacks the CSVs."""
    value = os.environ.get("FKP_DATA")
    if not value:
        pytest.skip("FKP_DATA is not set: the real dataset is not available")
    path = Path(value).expanduser()
    if not all((path / name).is_file() for name in CSV_NAMES):
        pytest.skip(f"FKP_DATA={value} does not hold the keypoint CSVs")
    return path


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``load_context_crops`` cache under tmp_path instead of the repository's .cache/."""
    import data_load

    cache_root = tmp_path / "repo_dir"
    cache_root.mkdir()
    monkeypatch.setattr(data_load, "REPO_DIR", cache_root)
    return cache_root / ".cache"


@pytest.fixture(autouse=True)
def no_dataset_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never download: resolve_data_dir falling back to data/ fails fast instead of fetching the dataset."""
    import data_load
    from resources.download import DataError

    def refuse(target_dir, *args, **kwargs):
        raise DataError(f"tests do not download the dataset (asked for {target_dir}): set FKP_DATA or pass a data folder.")

    monkeypatch.setattr(data_load, "ensure_dataset", refuse)


def make_tiny_300w(root: Path, faces: int = 8, seed: int = 1) -> Path:
    """A folder in the 300-W layout: ``imageNNNN.png`` cartoon faces (160 x 160) with ``imageNNNN.pts`` beside them
    (1-based coordinates), one face per photo."""
    rng = np.random.default_rng(seed)
    folder = root / "tiny300w"
    folder.mkdir(parents=True)
    for k in range(faces):
        side = float(rng.uniform(60, 75))
        points = face_keypoints((80 - side / 2, 80 - side / 2, side, side * 1.05)) + rng.normal(0, 0.5, size=(68, 2)).astype(np.float32)
        write_png(folder / f"image{k:04d}.png", draw_face(160, 160, points, rng))
        body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points)
        (folder / f"image{k:04d}.pts").write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")
    return folder


@pytest.fixture
def tiny_300w(tmp_path: Path) -> Path:
    """A tiny 300-W folder (8 faces, 8 photos: 7 training, 1 held out)."""
    return make_tiny_300w(tmp_path)


@pytest.fixture(scope="module")
def pipe():
    """The shipped model with the default detector (the learned one), on one thread
    (``KeypointPipeline.from_pretrained``)."""
    from pipeline.keypoint_pipeline import KeypointPipeline

    return KeypointPipeline.from_pretrained(threads=1)


@pytest.fixture(scope="module")
def haar_pipe():
    """The shipped model with the Haar cascades searching first (``--detector haar``), on one thread."""
    from pipeline.keypoint_pipeline import KeypointPipeline

    return KeypointPipeline.from_pretrained(detector="haar", threads=1)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """NASA's public-domain astronaut portrait shipped with scikit-image (512 x 512 RGB)."""
    from pipeline import detect_cli

    return detect_cli.astronaut()


@contextmanager
def interrupted_at_call(monkeypatch, owner, name: str, call: int, error: type[BaseException] = KeyboardInterrupt):
    """Within the block, ``owner.name`` raises ``error`` at its ``call``-th call (a training stopped part way, as by
    Ctrl-C or a lost Colab runtime) and runs as it is otherwise; it is restored when the block ends."""
    original, calls = getattr(owner, name), [0]

    def stopping(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, stopping)
    try:
        yield
    finally:
        monkeypatch.setattr(owner, name, original)
