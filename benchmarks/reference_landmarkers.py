"""Reference 68-point landmarkers on the labelled test faces: dlib, MediaPipe Face Mesh and a Haar mean shape.

Gives the reference rows of the comparison tables in docs/speed-and-accuracy.md (NME_io, failure rate, detection
rate and per-face times, one CPU thread). Self-contained: it imports neither torch nor the project's modules, so it
runs in its own virtual environment (MediaPipe 0.10.21 needs numpy<2):

    python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install -r requirements-bench.txt
    nice -n 10 /tmp/benchvenv/bin/python benchmarks/reference_landmarkers.py --data ../shared/data
    nice -n 10 /tmp/benchvenv/bin/python benchmarks/reference_landmarkers.py --split 300w --data-300w ../shared/300w --methods dlib,mediapipe

With ``--split 300w`` it scores the held-out 300-W faces (the fixed split of ``data_300w``, listed in
saved_models/300w_validation.txt) in their own labelling; dlib's shape predictor learned from all of 300-W's
training photos, these included, so its figure there is optimistic.

Predictors
  dlib       HOG frontal face detector (upsample 1) on the RGB image; of its detections the one with the
             highest IoU with the true keypoint box is kept (a face counts as found when that IoU exceeds
             --min-iou), then the 68-point ERT shape predictor (shape_predictor_68_face_landmarks.dat from the
             face-recognition-models package). Detector and predictor are timed separately.
  mediapipe  legacy mp.solutions.face_mesh (static_image_mode=True, max_num_faces=1, refine_landmarks=False);
             the 468 mesh points are mapped to the 68 iBUG points with the fixed table MESH_TO_IBUG68 below.
             One timing per image (face detection and mesh together).
  haar       OpenCV's haarcascade_frontalface_default (scaleFactor 1.1, minNeighbors 5, minSize 30x30) on the
             grey image, and the mean training shape placed in the LARGEST detection (--haar-pick largest, as
             an application without ground truth would; the table's row). The detection best overlapping the
             true keypoint box is reported beside it from the same run. Each training shape is normalised to
             its Haar-convention box: with s = sqrt(keypoint box area), a square of side 1.18 s centred at the
             keypoint box's centre plus (-0.006 s, -0.187 s) (data_load.haar_box_from_keypoints's convention).

Metrics, as in pipeline/evaluation.py: NME_io is the mean point-to-point error divided by the distance between the true
points 36 and 45 (outer eye corners), over the faces found. FR@0.10 is the share of faces with NME_io > 0.10,
given twice: over the faces found, and over all images with every face not found counted as a failure (the
table's column). Times: time.perf_counter around the detector / landmarker calls only (image decoding and
colour conversion excluded), after one warm-up call; with --repeat R each call is timed R times and the
fastest kept. Medians over faces found (landmarks) and over all images (detector + landmarks; for an image
without a face that is the detector's time alone). On a CPU that other processes share, the times move by
tens of per cent from run to run; --repeat 3 steadies them.

Outputs in --out (default outputs/bench/): <method>_<split>.npz with names, truth, predicted (N, 68, 2; NaN
rows for faces not found), nme_io, found, boxes (x, y, w, h), iou and the timings in ms (detector_ms,
landmark_ms, total_ms); mediapipe also keeps the raw mesh (N, 468, 3) in pixels; summary_<split>.json with
the table, versions and settings.

    --tune-mapping  runs Face Mesh on the TRAINING split and prints, for each iBUG point, the training error of
                    both tables' mesh vertices and of the best single vertex (how the table was chosen; test
                    images are never used for it).
"""
from __future__ import annotations

import os

# One CPU thread for everything; must be set before numpy / OpenCV / MediaPipe are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GLOG_minloglevel", "2")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

cv2.setNumThreads(1)

REPO_DIR = Path(__file__).resolve().parent.parent
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45
HAAR_SIDE = 1.18
HAAR_OFFSET = (-0.006, -0.187)
FAIL_THRESHOLD = 0.10

# MediaPipe Face Mesh vertex for each of the 68 iBUG points (image-left = subject's right, as in iBUG).
# MESH_TO_IBUG68_TOPOLOGY was written from the mesh topology (FACEMESH_FACE_OVAL, _LIPS, _LEFT/RIGHT_EYE,
# _EYEBROW and the nose). MESH_TO_IBUG68, the table used, keeps it where it is right and elsewhere takes the
# vertex with the lowest mean error on the 3462 TRAINING faces (--tune-mapping; test faces were never used):
# training NME_io 0.0867 -> 0.0674. What changed: this dataset's jaw points sit about one face-oval vertex
# lower than the topology table assumed (points 2-3 and 13-14 fall just inside the oval, on 177/215 and
# 435/401), its nasion is at 6 rather than 168 and the nose tip at 1, and its outer lip contour lies on the
# mesh's second lip ring (73, 72, 11, 302, 304 ...) rather than on the outermost one.
MESH_TO_IBUG68_TOPOLOGY = np.array(
    # 0-16 jaw, image-left ear level -> chin (152) -> image-right ear level: face-oval vertices.
    [127, 234, 93, 132, 58, 172, 136, 149, 152, 378, 365, 397, 288, 361, 323, 454, 356]
    # 17-21 right brow (outer -> inner) and 22-26 left brow (inner -> outer): the upper brow contour.
    + [70, 63, 105, 66, 107] + [336, 296, 334, 293, 300]
    # 27-30 nose bridge (nasion -> tip), 31-35 nostril base (image left -> right, 2 = subnasale).
    + [168, 197, 5, 4] + [98, 97, 2, 326, 327]
    # 36-41 right eye from the outer corner, clockwise; 42-47 left eye from the inner corner, clockwise.
    + [33, 160, 158, 133, 153, 144] + [362, 385, 387, 263, 373, 380]
    # 48-59 outer lips from the image-left corner, clockwise (0 = upper lip top, 17 = lower lip bottom).
    + [61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91]
    # 60-67 inner lips from the image-left corner, clockwise (13 / 14 = inner upper / lower centre).
    + [78, 82, 13, 312, 308, 317, 14, 87],
    dtype=np.int64,
)
MESH_TO_IBUG68 = np.array(
    [127, 234, 177, 215, 172, 136, 149, 176, 152, 400, 379, 365, 397, 435, 401, 454, 356]  # jaw
    + [70, 63, 105, 66, 107] + [336, 296, 334, 293, 300]  # brows
    + [6, 195, 5, 1] + [99, 97, 164, 326, 460]  # nose
    + [7, 160, 158, 133, 153, 144] + [381, 385, 387, 263, 254, 374]  # eyes
    + [146, 73, 72, 11, 302, 304, 273, 405, 314, 17, 84, 181]  # outer lips
    + [146, 82, 13, 311, 375, 316, 15, 86],  # inner lips
    dtype=np.int64,
)
MAPPINGS = {"tuned": MESH_TO_IBUG68, "topology": MESH_TO_IBUG68_TOPOLOGY}
assert MESH_TO_IBUG68.shape == MESH_TO_IBUG68_TOPOLOGY.shape == (68,)


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------
def resolve_data_dir(path: str | None) -> Path:
    candidates = [path] if path else [os.environ.get("FKP_DATA"), REPO_DIR.parent / "shared" / "data",
                                      REPO_DIR / "data", "/work/shared/data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "test_frames_keypoints.csv").is_file():
            return Path(candidate)
    sys.exit(f"no dataset found (looked in {[str(c) for c in candidates if c]}); pass --data DIR")


def read_split(data_dir: Path, split: str) -> tuple[list[str], np.ndarray]:
    """Image names and (N, 68, 2) keypoints of a split's CSV (header row, then name, x0, y0, ..., x67, y67)."""
    table = pd.read_csv(data_dir / f"{split}_frames_keypoints.csv")
    names = table.iloc[:, 0].astype(str).tolist()
    keypoints = table.iloc[:, 1:].to_numpy(np.float64).reshape(len(table), 68, 2)
    return names, keypoints


def read_image(path: Path) -> np.ndarray:
    """The image as RGB uint8 (the .jpg files are really RGBA PNGs)."""
    image = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise OSError(f"cannot decode {path}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


VALIDATION_300W = REPO_DIR / "saved_models" / "300w_validation.txt"


def read_pts(path: Path) -> np.ndarray:
    """(68, 2) 0-based keypoints of a 300-W .pts file (its coordinates are 1-based)."""
    lines = [line.split() for line in path.read_text().splitlines()]
    start = next(i for i, line in enumerate(lines) if line == ["{"]) + 1
    return np.array([[float(v) for v in line] for line in lines[start : start + 68]], np.float64) - 1.0


def read_300w_validation(folder: Path) -> tuple[list[str], np.ndarray, list[Path]]:
    """Names ("folder/NAME"), (N, 68, 2) keypoints and picture paths of the held-out 300-W faces listed in
    saved_models/300w_validation.txt (data_300w's fixed split), read from ``folder``; the picture of NAME_k is
    NAME_k.jpg, or the photo's NAME.jpg."""
    names = [line.strip() for line in VALIDATION_300W.read_text().splitlines() if line.strip() and not line.startswith("#")]
    truth, pictures = [], []
    for name in names:
        pts = folder / f"{name}.pts"
        candidates = [pts.with_suffix(suffix) for suffix in (".jpg", ".png")]
        photo = pts.with_name(pts.stem.rsplit("_", 1)[0]) if "_" in pts.stem else None
        candidates += [photo.with_suffix(suffix) for suffix in (".jpg", ".png")] if photo else []
        pictures.append(next(c for c in candidates if c.is_file()))
        truth.append(read_pts(pts))
    return names, np.stack(truth), pictures


def keypoint_box(points: np.ndarray) -> np.ndarray:
    low, high = points.min(axis=0), points.max(axis=0)
    return np.array([low[0], low[1], high[0] - low[0], high[1] - low[1]], np.float64)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def best_overlap(boxes: list[np.ndarray], truth: np.ndarray) -> tuple[int, float]:
    """Index and IoU of the box that best overlaps the true keypoint box (-1, 0.0 when there is none)."""
    if not boxes:
        return -1, 0.0
    target = keypoint_box(truth)
    overlaps = [iou(np.asarray(b, np.float64), target) for b in boxes]
    best = int(np.argmax(overlaps))
    return best, overlaps[best]


# ---------------------------------------------------------------------------------------------------------
# Metrics (the same definitions as pipeline/evaluation.py)
# ---------------------------------------------------------------------------------------------------------
def nme_io(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-face mean point error over the distance between the true points 36 and 45 (NaN where not found)."""
    errors = np.linalg.norm(predicted - truth, axis=-1).mean(axis=1)
    return errors / np.linalg.norm(truth[:, LEFT_EYE_OUTER] - truth[:, RIGHT_EYE_OUTER], axis=-1)


def summarize(label: str, result: dict, truth: np.ndarray, landmark_time: bool = True) -> dict:
    found = result["found"]
    per_face = nme_io(result["predicted"], truth)[found]
    failures = int(np.sum(per_face > FAIL_THRESHOLD))
    return {
        "predictor": label,
        "n_images": int(len(found)),
        "n_found": int(found.sum()),
        "detection_rate": float(found.mean()),
        "nme_io": float(per_face.mean()) if len(per_face) else float("nan"),
        "nme_io_median": float(np.median(per_face)) if len(per_face) else float("nan"),
        "fr10": failures / len(per_face) if len(per_face) else float("nan"),
        # the same with every face not found counted as a failure (over all images)
        "fr10_all": (failures + int((~found).sum())) / len(found),
        "landmark_ms_per_face": (float(np.median(result["landmark_ms"][found]))
                                 if landmark_time and found.any() else None),
        "total_ms_per_image": float(np.median(result["total_ms"])),
        "detector_ms_per_image": float(np.median(result["detector_ms"])),
        "total_ms_mean": float(np.mean(result["total_ms"])),
    }


def format_table(rows: list[dict]) -> str:
    lines = ["| predictor | found | NME_io | median | FR@0.10 (found) | FR@0.10 (misses fail) "
             "| landmarks ms/face | detector+landmarks ms/image |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lmk = "—" if r["landmark_ms_per_face"] is None else f"{r['landmark_ms_per_face']:.2f}"
        lines.append(f"| {r['predictor']} | {r['n_found']}/{r['n_images']} ({100 * r['detection_rate']:.1f} %) "
                     f"| {r['nme_io']:.4f} | {r['nme_io_median']:.4f} | {r['fr10']:.3f} | {r['fr10_all']:.3f} "
                     f"| {lmk} | {r['total_ms_per_image']:.1f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Predictors
# ---------------------------------------------------------------------------------------------------------
def timed(function, *args, repeat: int = 1):
    """``function(*args)`` and its time in ms (the fastest of ``repeat`` calls: less sensitive to a busy CPU)."""
    best = float("inf")
    for _ in range(max(repeat, 1)):
        tic = time.perf_counter()
        output = function(*args)
        best = min(best, time.perf_counter() - tic)
    return output, 1e3 * best


def empty_result(n: int) -> dict:
    return {
        "predicted": np.full((n, 68, 2), np.nan),
        "found": np.zeros(n, bool),
        "boxes": np.full((n, 4), np.nan),
        "detector_ms": np.zeros(n),
        "landmark_ms": np.full(n, np.nan),
        "total_ms": np.zeros(n),
        "n_detections": np.zeros(n, np.int64),
        "iou": np.zeros(n),
    }


def dlib_model_path() -> Path:
    """shape_predictor_68_face_landmarks.dat inside face-recognition-models (found without importing the
    package, whose __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        sys.exit("face-recognition-models is not installed (pip install -r requirements-bench.txt)")
    path = Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        sys.exit(f"{path} is missing")
    return path


def run_dlib(images, truth, min_iou: float = 0.0, upsample: int = 1, repeat: int = 1) -> dict:
    """HOG detector on the RGB image, the detection best overlapping the true keypoint box, 68-point ERT."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path()))
    warm = images(0)
    detector(warm, upsample)
    predictor(warm, dlib.rectangle(0, 0, warm.shape[1] - 1, warm.shape[0] - 1))

    result = empty_result(len(truth))
    for i in range(len(truth)):
        rgb = images(i)
        rects, result["detector_ms"][i] = timed(detector, rgb, upsample, repeat=repeat)
        result["total_ms"][i] = result["detector_ms"][i]
        boxes = [np.array([r.left(), r.top(), r.width(), r.height()], np.float64) for r in rects]
        best, overlap = best_overlap(boxes, truth[i])
        result["n_detections"][i], result["iou"][i] = len(boxes), overlap
        if best < 0 or overlap <= min_iou:
            continue
        shape, result["landmark_ms"][i] = timed(predictor, rgb, rects[best], repeat=repeat)
        result["total_ms"][i] += result["landmark_ms"][i]
        result["predicted"][i] = [(p.x, p.y) for p in shape.parts()]
        result["found"][i] = True
        result["boxes"][i] = boxes[best]
    return result


def run_mediapipe(images, n: int, mapping: np.ndarray = MESH_TO_IBUG68, repeat: int = 1) -> dict:
    """Face Mesh (its own face detector + mesh; one timing for both), mapped to 68 points with ``mapping``."""
    import mediapipe as mp

    face_mesh = mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=0.5)
    face_mesh.process(images(0))

    result = empty_result(n)
    result["mesh"] = np.full((n, 468, 3), np.nan, np.float32)
    for i in range(n):
        rgb = images(i)
        output, result["detector_ms"][i] = timed(face_mesh.process, rgb, repeat=repeat)
        result["total_ms"][i] = result["detector_ms"][i]
        if not output.multi_face_landmarks:
            continue
        height, width = rgb.shape[:2]
        mesh = np.array([(p.x * width, p.y * height, p.z * width) for p in output.multi_face_landmarks[0].landmark])
        result["mesh"][i] = mesh
        result["predicted"][i] = mesh[mapping, :2]
        result["found"][i] = True
        result["n_detections"][i] = len(output.multi_face_landmarks)
        result["boxes"][i] = keypoint_box(mesh[:, :2])
    face_mesh.close()
    return result


def haar_mean_shape(training_truth: np.ndarray) -> np.ndarray:
    """Mean of the training shapes, each in coordinates of its Haar-convention box (centre 0, side 1)."""
    normalised = []
    for points in training_truth:
        x, y, w, h = keypoint_box(points)
        s = np.sqrt(max(w * h, 1e-6))
        centre = np.array([x + w / 2 + HAAR_OFFSET[0] * s, y + h / 2 + HAAR_OFFSET[1] * s])
        normalised.append((points - centre) / (HAAR_SIDE * s))
    return np.mean(normalised, axis=0)


def place_mean_shape(mean_shape: np.ndarray, box: np.ndarray) -> np.ndarray:
    x, y, w, h = box
    return np.array([x + w / 2, y + h / 2]) + mean_shape * np.sqrt(w * h)


def run_haar(images, truth, mean_shape: np.ndarray, pick: str = "largest", min_iou: float = 0.0,
             scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 30, repeat: int = 1
             ) -> tuple[dict, dict]:
    """Haar cascade on the grey image and the mean shape in a detected box.

    Returns two results from the same detections: the box picked by ``pick`` ("largest": the largest
    detection, as an application without ground truth would; "overlap": the best IoU with the true keypoint
    box, counted as found when above ``min_iou``) and the box picked the other way.
    """
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        sys.exit("cannot load haarcascade_frontalface_default.xml")
    options = dict(scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_size, min_size))

    def grey(i):
        return cv2.cvtColor(images(i), cv2.COLOR_RGB2GRAY)

    cascade.detectMultiScale(grey(0), **options)
    results = {"largest": empty_result(len(truth)), "overlap": empty_result(len(truth))}
    for i in range(len(truth)):
        faces, detector_ms = timed(lambda image: cascade.detectMultiScale(image, **options), grey(i), repeat=repeat)
        boxes = [np.asarray(f, np.float64) for f in faces]
        best, overlap = best_overlap(boxes, truth[i])
        largest = int(np.argmax([b[2] * b[3] for b in boxes])) if boxes else -1
        for key, index in (("largest", largest), ("overlap", best if overlap > min_iou else -1)):
            result = results[key]
            result["detector_ms"][i] = result["total_ms"][i] = detector_ms
            result["n_detections"][i] = len(boxes)
            if index < 0:
                continue
            result["predicted"][i], result["landmark_ms"][i] = timed(place_mean_shape, mean_shape, boxes[index])
            result["total_ms"][i] += result["landmark_ms"][i]
            result["found"][i] = True
            result["boxes"][i] = boxes[index]
            result["iou"][i] = iou(boxes[index], keypoint_box(truth[i]))
    other = "overlap" if pick == "largest" else "largest"
    return results[pick], results[other]


# ---------------------------------------------------------------------------------------------------------
# Face Mesh -> iBUG table check on the training split
# ---------------------------------------------------------------------------------------------------------
def tune_mapping(data_dir: Path, out_dir: Path, limit: int | None) -> None:
    names, truth = read_split(data_dir, "training")
    if limit:
        names, truth = names[:limit], truth[:limit]
    cache = out_dir / "mediapipe_training_mesh.npz"
    if cache.is_file() and list(np.load(cache)["names"]) == names:
        mesh = np.load(cache)["mesh"]
    else:
        images = lambda i: read_image(data_dir / "training" / names[i])  # noqa: E731
        tic = time.perf_counter()
        mesh = run_mediapipe(images, len(names))["mesh"]
        print(f"Face Mesh on {len(names)} training images in {time.perf_counter() - tic:.0f} s")
        np.savez_compressed(cache, names=np.array(names), mesh=mesh)
    found = ~np.isnan(mesh[:, 0, 0])
    mesh, truth = mesh[found, :, :2].astype(np.float64), truth[found]
    iod = np.linalg.norm(truth[:, LEFT_EYE_OUTER] - truth[:, RIGHT_EYE_OUTER], axis=-1)
    # errors[v, k]: mean over faces of |mesh vertex v - true point k| / iod
    errors = np.stack([(np.linalg.norm(mesh[:, v, None, :] - truth, axis=-1) / iod[:, None]).mean(axis=0)
                       for v in range(468)])
    points = np.arange(68)
    topology, tuned = errors[MESH_TO_IBUG68_TOPOLOGY, points], errors[MESH_TO_IBUG68, points]
    best = errors.argmin(axis=0)
    print(f"{found.sum()}/{len(found)} training faces found. Mean over faces of the per-point error / IOD; their "
          f"mean over points is the NME_io: topology table {topology.mean():.4f}, tuned table (used) "
          f"{tuned.mean():.4f}, best single vertex per point {errors[best, points].mean():.4f}")
    print(" pt  topology  err    tuned  err     best  err")
    for k in points:
        flag = "  <-" if best[k] != MESH_TO_IBUG68[k] and tuned[k] - errors[best[k], k] > 0.005 else ""
        print(f"{k:3d}  {MESH_TO_IBUG68_TOPOLOGY[k]:6d}  {topology[k]:.4f}  {MESH_TO_IBUG68[k]:5d}  {tuned[k]:.4f}"
              f"  {best[k]:5d}  {errors[best[k], k]:.4f}{flag}")
    print("best single vertex per point:", best.tolist())


# ---------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset folder with test/ and test_frames_keypoints.csv "
                                       "(default: $FKP_DATA, ../shared/data)")
    parser.add_argument("--split", default="test", choices=["test", "training", "300w"],
                        help="300w: the held-out 300-W faces (saved_models/300w_validation.txt) from --data-300w")
    parser.add_argument("--data-300w", default=os.environ.get("FKP_300W"), help="300-W folder (default: $FKP_300W)")
    parser.add_argument("--out", default=str(REPO_DIR / "outputs" / "bench"), help="output folder")
    parser.add_argument("--methods", default="haar,dlib,mediapipe", help="comma-separated: haar, dlib, mediapipe")
    parser.add_argument("--limit", type=int, help="only the first N images (a quick check)")
    parser.add_argument("--min-iou", type=float, default=0.0,
                        help="a detection counts as the face when its IoU with the true keypoint box exceeds this")
    parser.add_argument("--haar-pick", choices=["largest", "overlap"], default="largest",
                        help="which Haar detection gets the mean shape: the largest (default, as the table's row) "
                             "or the one best overlapping the true keypoints; the other is reported too")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time every call this many times and keep the fastest (1: a single timing); "
                             "more makes the times less sensitive to other processes on the CPU")
    parser.add_argument("--pin-cpu", type=int, default=None,
                        help="pin the process to this CPU core (os.sched_setaffinity) so nothing can use a second one")
    parser.add_argument("--tune-mapping", action="store_true",
                        help="check the Face Mesh -> iBUG table on the TRAINING split instead")
    args = parser.parse_args(argv)

    if args.pin_cpu is not None:
        os.sched_setaffinity(0, {args.pin_cpu})
    data_dir = resolve_data_dir(args.data)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.tune_mapping:
        tune_mapping(data_dir, out_dir, args.limit)
        return 0

    if args.split == "300w":
        if not args.data_300w:
            parser.error("--split 300w needs --data-300w DIR (or FKP_300W)")
        names, truth, paths = read_300w_validation(Path(args.data_300w))
    else:
        names, truth = read_split(data_dir, args.split)
        paths = [data_dir / args.split / name for name in names]
    if args.limit:
        names, truth, paths = names[: args.limit], truth[: args.limit], paths[: args.limit]
    print(f"decoding {len(names)} {args.split} images ...", flush=True)
    decoded = [read_image(path) for path in paths]
    images = decoded.__getitem__

    rows, extra_rows = [], []
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for method in methods:
        tic, cpu_tic = time.perf_counter(), time.process_time()
        extra = None
        if method == "dlib":
            result = run_dlib(images, truth, args.min_iou, repeat=args.repeat)
            label = "dlib HOG detector + 68-point ERT"
        elif method == "mediapipe":
            result = run_mediapipe(images, len(names), repeat=args.repeat)
            label = "MediaPipe Face Mesh -> 68 points"
            # the same meshes through the untuned table, for information
            extra = ("mediapipe_topology_table", label + " (topology table, same run)",
                     dict(result, predicted=np.where(result["found"][:, None, None],
                                                     result["mesh"][:, MESH_TO_IBUG68_TOPOLOGY, :2], np.nan)))
        elif method == "haar":
            _, train_truth = read_split(data_dir, "training")
            result, other = run_haar(images, truth, haar_mean_shape(train_truth), args.haar_pick, args.min_iou,
                                     repeat=args.repeat)
            pick = {"largest": "largest detection", "overlap": "detection best overlapping the truth"}
            other_pick = "overlap" if args.haar_pick == "largest" else "largest"
            label = f"mean shape from a Haar box ({pick[args.haar_pick]})"
            extra = (f"haar_{other_pick}", f"mean shape from a Haar box ({pick[other_pick]}, same run)", other)
        else:
            parser.error(f"unknown method {method!r}")
        # process CPU time / wall time near 1 or below: one core busy at a time
        row = dict(summarize(label, result, truth, landmark_time=(method == "dlib")), method=method,
                   wall_s=time.perf_counter() - tic, cpu_s=time.process_time() - cpu_tic)
        rows.append(row)
        np.savez_compressed(out_dir / f"{method}_{args.split}.npz", names=np.array(names), truth=truth,
                            nme_io=nme_io(result["predicted"], truth), **result)
        if extra is not None:
            extra_rows.append(dict(summarize(extra[1], extra[2], truth, landmark_time=False), method=extra[0]))
        print(f"{method}: {row['n_found']}/{row['n_images']} found, NME_io {row['nme_io']:.4f}, "
              f"{row['wall_s']:.0f} s ({row['cpu_s']:.0f} s CPU)", flush=True)

    versions = {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__}
    for module in ("dlib", "mediapipe"):
        if module in sys.modules:
            versions[module] = sys.modules[module].__version__
    summary = {"split": args.split, "data": str(data_dir), "n_images": len(names), "min_iou": args.min_iou,
               "haar_pick": args.haar_pick, "repeat": args.repeat, "pin_cpu": args.pin_cpu,
               "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "versions": versions,
               "mesh_to_ibug68": MESH_TO_IBUG68.tolist(), "rows": rows, "extra_rows": extra_rows}
    (out_dir / f"summary_{args.split}.json").write_text(json.dumps(summary, indent=2))
    print()
    print(format_table(rows + extra_rows))
    timing = "one timing per call" if args.repeat <= 1 else f"fastest of {args.repeat} timings per call"
    print(f"\n{len(names)} {args.split} images, one CPU thread, {timing}; NME_io and its median over the faces "
          f"found; FR@0.10 over the faces found, and over all images with every miss counted as a failure; "
          f"times are medians in ms (landmarks: over faces found; detector+landmarks: over all images). "
          f"Load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores. Predictions and timings in {out_dir}/")
    return 0

if __name__ == "__main__":
    sys.exit(main())
