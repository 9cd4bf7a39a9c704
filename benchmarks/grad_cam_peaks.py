"""Where do the maps of notebook 2 (Grad-CAM, occlusion) peak? Measured over many test faces, for the keypoints
the notebook shows.

    python benchmarks/grad_cam_peaks.py                   # the shipped model, 100 test faces, both methods
    python benchmarks/grad_cam_peaks.py --faces 200 --method grad-cam --model saved_models/student_net.pt

For each face (cut from the Haar-convention box of its true keypoints, as in training) and each keypoint, the
map's peak is compared with the keypoint's true position and with the centres of the two eyes; distances are in
inter-ocular distances (outer eye corners 36-45). Printed per keypoint: the median distance from the peak to its
own point, the share of faces whose peak lies within 0.25 inter-ocular distances of it, and the share whose peak
is nearer to an eye centre than to its own point.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data_load  # noqa: E402
from pipeline import explain  # noqa: E402
from pipeline import inference  # noqa: E402
import models  # noqa: E402

KEYPOINTS = {"nose tip (30)": 30, "eye corner (36)": 36, "mouth corner (48)": 48, "chin (8)": 8}


def peak_distances(model: torch.nn.Module, faces: int, convention: str | None, layer: str | None, method: str,
                   data_dir: str | None = None) -> dict[str, np.ndarray]:
    """{label: (faces, 3)} distances from each map's peak to its own point, the right eye centre (36-41) and the
    left eye centre (42-47), in inter-ocular distances."""
    test_csv, test_dir = data_load.split_paths(data_load.resolve_data_dir(data_dir), "test")
    names, keypoints = data_load.read_keypoints_csv(test_csv)
    picked = np.random.default_rng(0).choice(len(names), min(faces, len(names)), replace=False)
    found: dict[str, list[list[float]]] = {label: [] for label in KEYPOINTS}
    for i in picked:
        crops, matrices = inference.face_crops(data_load.read_image(test_dir / names[i]),
                                               [data_load.haar_box_from_keypoints(keypoints[i])], model.input_size)
        truth = data_load.transform_points(keypoints[i], matrices[0])
        io = float(np.linalg.norm(truth[36] - truth[45]))
        eyes = truth[36:42].mean(axis=0), truth[42:48].mean(axis=0)
        for label, k in KEYPOINTS.items():
            if method == "grad-cam":
                heat = explain.grad_cam(model, crops[0], k, layer=layer, convention=convention)
            else:
                heat = explain.occlusion_map(model, crops[0], k, convention=convention)
            y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
            peak = np.array([x, y], np.float32)
            found[label].append([float(np.linalg.norm(peak - p)) / io for p in (truth[k], *eyes)])
    return {label: np.array(rows) for label, rows in found.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset folder (default: $FKP_DATA, else data/)")
    parser.add_argument("--model", default=str(inference.SHIPPED_MODEL))
    parser.add_argument("--faces", type=int, default=100)
    parser.add_argument("--method", choices=["grad-cam", "occlusion", "both"], default="both")
    parser.add_argument("--layer", help="the layer to explain (default: explain.default_layer)")
    parser.add_argument("--convention", help="the keypoint convention to explain (default: the course's when the model has it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, _ = models.load_model(args.model)
    convention = args.convention or ("course" if "course" in inference.layout_of(model).conventions else None)
    layer = args.layer or explain.default_layer(model)
    print(f"{Path(args.model).name}: layer {layer}, {explain.layer_grid(model, layer)} cells, "
          f"{model.input_size} px crops, convention {inference.layout_of(model).resolve(convention)}, {args.faces} test faces")
    for method in ("grad-cam", "occlusion") if args.method == "both" else (args.method,):
        print(f"\n{method}")
        print(f"{'keypoint':<18} {'median peak-to-point':>21} {'within 0.25 io':>15} {'nearer an eye centre':>21}")
        for label, d in peak_distances(model, args.faces, convention, layer, method, args.data).items():
            nearer_eye = np.minimum(d[:, 1], d[:, 2]) < d[:, 0]
            print(f"{label:<18} {np.median(d[:, 0]):>21.2f} {np.mean(d[:, 0] <= 0.25):>15.0%} {np.mean(nearer_eye):>21.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
