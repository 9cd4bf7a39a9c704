"""Landmark time per face on one CPU thread (batch 1, after warm-up), and dlib's in the same run when installed.

    python benchmarks/latency.py --data ../shared/data [--model saved_models/keypoints_fast.pt] [--faces 200]

Each test face is framed by its Haar-convention box (as ``evaluate.py`` does) and timed through
``KeypointPipeline.keypoints_for_box``: crop, network, mapping back to picture pixels; where the model has a second
stage (``NAME.refine.pt``, ``pipeline.second_stage``), with one and two of its rounds after the re-crops as well. The Haar detector's time per
picture is printed too. dlib (``pip install dlib-bin face-recognition-models``) is timed on the same faces.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from data_load import haar_box_from_keypoints, read_image, read_keypoints_csv, resolve_data_dir, split_paths  # noqa: E402
from pipeline.inference import SHIPPED_MODEL  # noqa: E402
from pipeline.keypoint_pipeline import KeypointPipeline  # noqa: E402
from pipeline.second_stage import Refiner, refinement_file  # noqa: E402


def median_ms(function, inputs: list, repeats: int) -> tuple[float, float]:
    """Median and 90th percentile in ms of ``function(*item)`` over ``repeats`` passes through ``inputs``."""
    for item in inputs[:20]:
        function(*item)
    times = []
    for _ in range(repeats):
        for item in inputs:
            tic = time.perf_counter()
            function(*item)
            times.append(time.perf_counter() - tic)
    return float(np.median(times) * 1000), float(np.percentile(times, 90) * 1000)


def dlib_predictor():
    """dlib's 68-point shape predictor, or None when dlib or its model package is missing.

    The model file is found without importing ``face_recognition_models``, whose import needs the retired
    ``pkg_resources``.
    """
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    try:
        import dlib
    except ImportError:
        return None
    if spec is None or spec.origin is None:
        return None
    model_file = Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"
    return (dlib, dlib.shape_predictor(str(model_file))) if model_file.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset folder (default: $FKP_DATA, else data/)")
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--faces", type=int, default=200, help="test faces to time")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    csv_file, root_dir = split_paths(resolve_data_dir(args.data), "test")
    names, truth = read_keypoints_csv(csv_file)
    images = [read_image(root_dir / name) for name in names[: args.faces]]
    boxes = [haar_box_from_keypoints(points) for points in truth[: args.faces]]
    faces = list(zip(images, boxes))

    rows = []
    model_path = args.model or SHIPPED_MODEL
    second = refinement_file(model_path)
    # (backend, flip averaging, re-crops, rounds of the second stage)
    settings = [("onnx", False, False, 0), ("onnx", True, False, 0), ("onnx", False, True, 0), ("onnx", True, True, 0)]
    if second.is_file():
        settings += [("onnx", True, True, 1), ("onnx", True, True, 2)]
    settings.append(("torch", False, False, 0))
    for backend, flip, refine, rounds in settings:
        try:
            stage = Refiner.from_file(second, backend=backend, threads=1, rounds=rounds) if rounds else None
            pipe = KeypointPipeline.from_pretrained(args.model, backend=backend, threads=1, flip_average=flip, refine=refine, second_stage=stage)
        except Exception as error:  # a backend that is not installed is reported, not fatal
            print(f"{backend}: unavailable ({error})")
            continue
        med, p90 = median_ms(pipe.keypoints_for_box, faces, args.repeats)
        recrops = pipe.refine_steps if refine else 0
        label = f"ours, {backend}, flip {'on' if flip else 'off'}, up to {recrops} re-crops"
        rows.append((label + (f", second stage x{rounds}" if rounds else ""), med, p90))
    pipe = KeypointPipeline.from_pretrained(args.model, threads=1)
    detector_med, detector_p90 = median_ms(lambda image, _box: pipe.detector.detect(image), faces, 1)

    dlib_bits = dlib_predictor()
    if dlib_bits is not None:
        dlib, predictor = dlib_bits

        def dlib_landmarks(image: np.ndarray, box: np.ndarray) -> None:
            x, y, w, h = (int(round(float(v))) for v in box)
            predictor(image, dlib.rectangle(x, y, x + w - 1, y + h - 1))

        med, p90 = median_ms(dlib_landmarks, faces, args.repeats)
        rows.append(("dlib 68-point ERT", med, p90))

    print(f"landmark time per face, one CPU thread, batch 1, {len(faces)} test faces x {args.repeats} passes")
    print(f"{'predictor':<62} {'median ms':>10} {'p90 ms':>8}")
    for label, med, p90 in rows:
        print(f"{label:<62} {med:10.3f} {p90:8.3f}")
    print(f"{'Haar face detector, per picture':<62} {detector_med:10.3f} {detector_p90:8.3f}")
    if dlib_bits is not None:
        ours = rows[0][1]
        print(f"dlib / ours (one pass, onnx): {rows[-1][1] / ours:.1f}x")
    else:
        print("dlib not installed: `pip install dlib-bin face-recognition-models` to compare in the same run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
