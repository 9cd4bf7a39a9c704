"""Systematic offsets: where a model's keypoints sit on average against the labels, along and across the eye line.

    python benchmarks/label_offsets.py --data ../shared/data --data-300w ../shared/300w [--model FILE] [--second-stage none]

For each face the signed error of every point (prediction - label) is measured in the face's own frame: ``x`` along
the line from the true outer eye corner 36 to 45 (towards the picture-right eye of an upright face), ``y`` across
it (down), both in inter-ocular distances; printed are the means over points and faces, per region, with the
standard error over faces, on the held-out 300-W faces (300-W convention), the course test faces and the course's
held-out people (course convention), each framed from its keypoints' Haar-convention box, flip averaging on.

Why it tells where an offset comes from: training shows every face mirrored too, and a network cannot tell a
mirrored face from an unmirrored one, so a horizontal offset of the labels from the face's mirror-symmetric position
(``x``) is one it cannot learn unless it is told (``pipeline.trainer.FlipOffsets``), and it shows here as a mean
``x`` error of minus that offset. A vertical offset of the labels (``y``) is learned like any other placement and
does not show against the same labels: an offset there against other labels is a difference of labelling.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from data_load import DataError, haar_box_from_keypoints, read_image, read_keypoints_csv, resolve_data_dir, split_paths  # noqa: E402
from models import ModelError, make_runner  # noqa: E402
from pipeline.data_300w import Faces300WDataset  # noqa: E402
from pipeline.evaluation import REGIONS  # noqa: E402
from pipeline.inference import SHIPPED_MODEL, predict_in_boxes  # noqa: E402
from pipeline.second_stage import companion_refiner  # noqa: E402
from data_load import split_by_person  # noqa: E402


def face_frame_errors(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed errors (N, K) along and across each face's eye line (true points 36 -> 45), in inter-ocular distances."""
    eye_line = truth[:, 45] - truth[:, 36]
    distance = np.linalg.norm(eye_line, axis=1)
    along = eye_line / distance[:, None]
    across = np.stack([-along[:, 1], along[:, 0]], axis=1)
    error = (predicted - truth) / distance[:, None, None]
    return np.einsum("nkj,nj->nk", error, along), np.einsum("nkj,nj->nk", error, across)


def labelled_sets(data_dir: str | None, data_300w: str | None) -> dict[str, tuple[list, np.ndarray, str]]:
    """(pictures, true keypoints, convention) of the measured sets."""
    held_out = Faces300WDataset(data_300w, "validation")
    sets = {"held-out 300-W": ([read_image(face.picture) for face in held_out.faces], held_out.keypoints, "300w")}
    root = resolve_data_dir(data_dir)
    csv_file, folder = split_paths(root, "test")
    names, truth = read_keypoints_csv(csv_file)
    sets["course test"] = ([read_image(folder / name, as_stored=True) for name in names], truth, "course")
    csv_file, folder = split_paths(root, "training")
    names, truth = read_keypoints_csv(csv_file)
    _, people = split_by_person(list(names), 0.1, 0)  # the training recipe's held-out people (validation split)
    sets["course held-out people"] = ([read_image(folder / names[i], as_stored=True) for i in people], truth[people], "course")
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="course dataset folder (default: $FKP_DATA)")
    parser.add_argument("--data-300w", help="300-W folder (default: $FKP_300W)")
    parser.add_argument("--model", default=str(SHIPPED_MODEL), help="model file (default: the shipped model)")
    parser.add_argument("--second-stage", default="none", help="'none' (default: the first stage alone), 'auto' or a file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        runner = make_runner(args.model, threads=1)
        refiner = companion_refiner(args.model, args.second_stage, threads=1)
        sets = labelled_sets(args.data, args.data_300w)
    except (DataError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"mean signed error in inter-ocular distances (x along the eye line, y across it, down), {Path(args.model).name}"
          + (f" + {refiner.meta['file']}" if refiner else ""))
    for label, (pictures, truth, convention) in sets.items():
        if not len(truth):
            print(f"{label}: no faces")
            continue
        predicted = predict_in_boxes(runner, pictures, [haar_box_from_keypoints(t) for t in truth], True, convention, refiner)
        x, y = face_frame_errors(predicted, truth)
        x_face, y_face = x.mean(axis=1), y.mean(axis=1)
        regions = ", ".join(f"{name} {x[:, list(points)].mean():+.4f} / {y[:, list(points)].mean():+.4f}" for name, points in REGIONS.items())
        print(f"{label} ({len(truth)} faces, {convention} convention): x {x_face.mean():+.4f} (se {x_face.std() / np.sqrt(len(x_face)):.4f}), "
              f"y {y_face.mean():+.4f} (se {y_face.std() / np.sqrt(len(y_face)):.4f}); x / y by region: {regions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
