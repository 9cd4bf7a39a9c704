"""What each keypoint pass buys: flip averaging and re-crops from the keypoints, on the detector's own boxes.

    python benchmarks/keypoint_passes.py --data ../shared/data --data-300w ../shared/300w [--limit N]

For every labelled face of the course test set and of the held-out 300-W photos, the pipeline's fast Haar pass
finds the face's box (the detection that ``detector_architectures.match_face`` picks; faces it misses are left out
of both sets alike); then the keypoints are predicted from that box with each setting: flip averaging on or off,
0-3 re-crops from the keypoints, and re-crops that stop once the next crop would lie within a tolerance of the
last (``KeypointPipeline.refine_tolerance``). Printed per setting and dataset: NME_io (course test faces in the
course convention, 300-W faces in 300-W's), failure rate at 0.10, network passes per face (a flip-averaged pass
counts once) and milliseconds per face on one thread (crop cutting included).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from data_load import DataError, read_image, read_keypoints_csv, resolve_data_dir, split_paths  # noqa: E402
from detector_architectures import match_face  # noqa: E402
from pipeline.data_300w import Faces300WDataset  # noqa: E402
from pipeline.evaluation import COURSE_CONVENTION, nme_interocular  # noqa: E402
from pipeline.keypoint_pipeline import KeypointPipeline  # noqa: E402

# (flip averaging, re-crops, tolerance): the settings compared
SETTINGS = [(False, 0, 0.0), (True, 0, 0.0), (True, 1, 0.0), (True, 2, 0.0), (True, 3, 0.0), (False, 3, 0.0),
            (True, 3, 0.005), (True, 3, 0.01), (True, 3, 0.02), (True, 3, 0.04)]


def detected_faces(pipe: KeypointPipeline, pictures: list[np.ndarray], truths: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(picture, detector box, true keypoints) for every face the detector finds."""
    found = []
    for picture, truth in zip(pictures, truths):
        detections = pipe.detector.detect(picture)
        best = match_face(detections, truth)
        if best is not None:
            found.append((picture, detections[best].box, truth))
    return found


def measure(pipe: KeypointPipeline, faces: list, flip: bool, steps: int, tolerance: float, convention: str | None) -> dict:
    """NME_io, FR@0.10, passes and milliseconds per face of one setting."""
    setting = KeypointPipeline(pipe.runner, pipe.detector, flip_average=flip, refine_steps=steps, refine_tolerance=tolerance, convention=convention)
    passes = [0]
    predict = setting._predict

    def counting(gray, matrices, *screen):
        passes[0] += len(matrices)
        return predict(gray, matrices, *screen)

    setting._predict = counting
    predicted, tic = [], time.perf_counter()
    for picture, box, _ in faces:
        predicted.append(setting.predict_boxes(picture, [box], refine=steps > 0)[0][0])
    seconds = time.perf_counter() - tic
    errors = nme_interocular(np.stack(predicted), np.stack([truth for _, _, truth in faces]))
    return {"nme": float(errors.mean()), "fr10": float((errors > 0.10).mean()), "passes": passes[0] / len(faces), "ms": 1000 * seconds / len(faces)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="course dataset folder (default: $FKP_DATA or data/)")
    parser.add_argument("--data-300w", help="300-W folder(s) (default: $FKP_300W)")
    parser.add_argument("--limit", type=int, help="only the first N faces of each set")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    pipe = KeypointPipeline.from_pretrained(threads=1)
    sets = {}
    try:
        csv_file, root_dir = split_paths(resolve_data_dir(args.data, download=False), "test")
        names, truth = read_keypoints_csv(csv_file)
        names, truth = names[: args.limit], truth[: args.limit]
        sets["course test"] = (detected_faces(pipe, [read_image(root_dir / n, as_stored=True) for n in names], truth), COURSE_CONVENTION, len(names))
    except DataError as error:
        print(f"course test set skipped: {error}")
    try:
        dataset = Faces300WDataset(args.data_300w, split="validation")
        samples = [dataset[i] for i in range(len(dataset) if args.limit is None else min(args.limit, len(dataset)))]
        faces = detected_faces(pipe, [s["image"] for s in samples], np.stack([s["keypoints"] for s in samples]))
        sets["held-out 300-W"] = (faces, None, len(samples))
    except DataError as error:
        print(f"300-W skipped: {error}")
    if not sets:
        print("No data: pass --data and/or --data-300w.")
        return 1
    for label, (faces, _, total) in sets.items():
        print(f"{label}: {len(faces)} of {total} faces detected by the fast pass")
    print(f"{'flip':<5} {'re-crops':>8} {'tolerance':>9}  " + "  ".join(f"{label + ': NME_io, FR@0.10, passes, ms':>46}" for label in sets))
    for flip, steps, tolerance in SETTINGS:
        cells = []
        for faces, convention, _ in sets.values():
            m = measure(pipe, faces, flip, steps, tolerance, convention)
            cells.append(f"{m['nme']:.4f}, {100 * m['fr10']:4.2f} %, {m['passes']:.2f}, {m['ms']:5.2f} ms")
        print(f"{'on' if flip else 'off':<5} {steps:>8} {tolerance:>9}  " + "  ".join(f"{c:>46}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
