"""The face detector alone, with its default and its thorough settings: faces found, false detections, time.

    FKP_300W=../shared/300w python benchmarks/detector_settings.py --data ../shared/data [--limit N]

For each setting (``detector_architectures.DEFAULT_PARAMS``, the pipeline's fast pass, and ``THOROUGH_PARAMS``,
which its wider search uses) it counts, on one thread: the course test faces found (``face_found``), the held-out
300-W faces found (``data_300w`` validation split), the detections on the measuring pictures without faces
(``no_faces.no_face_pictures``; the pipeline's face checks reject most of them), and the CPU milliseconds per
picture. Only the detector runs: no keypoints, no face checks, no wider search.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.data_300w import Faces300WDataset  # noqa: E402
from data_load import DataError, read_image, read_keypoints_csv, resolve_data_dir, split_paths  # noqa: E402
from detector_architectures import THOROUGH_PARAMS, HaarFaceDetector, face_found  # noqa: E402
from pipeline.no_faces import no_face_pictures  # noqa: E402


def found_and_time(detector: HaarFaceDetector, pictures: list[np.ndarray], keypoints: list[np.ndarray]) -> tuple[int, float]:
    """(faces found, CPU ms per picture) over pictures holding one labelled face each."""
    found, seconds = 0, 0.0
    for picture, points in zip(pictures, keypoints):
        tic = time.process_time()
        detections = detector.detect(picture)
        seconds += time.process_time() - tic
        found += face_found(detections, points)
    return found, 1000 * seconds / max(len(pictures), 1)


def measuring_sets(data: str | None, data_300w: str | None, limit: int | None) -> tuple[list, np.ndarray, list[dict], list]:
    """The pictures detectors are measured on, the first ``limit`` of each set: the course test pictures (as stored)
    and their keypoints, the held-out 300-W samples (``Faces300WDataset`` items) and the measuring part of the
    pictures without faces. Raises DataError when a folder is missing."""
    csv_file, root_dir = split_paths(resolve_data_dir(data, download=False), "test")
    names, truth = read_keypoints_csv(csv_file)
    names, truth = names[:limit], truth[:limit]
    course = [read_image(root_dir / name, as_stored=True) for name in names]
    wild = Faces300WDataset(data_300w, split="validation")
    samples = [wild[i] for i in range(len(wild) if limit is None else min(limit, len(wild)))]
    empty = [picture for _, picture in no_face_pictures("measuring", data)][:limit]
    return course, truth, samples, empty


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="course dataset folder (default: $FKP_DATA or data/)")
    parser.add_argument("--data-300w", help="300-W folder(s) (default: $FKP_300W)")
    parser.add_argument("--limit", type=int, help="only the first N pictures of each set")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    try:
        course, truth, samples, empty = measuring_sets(args.data, args.data_300w, args.limit)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    settings = {"default (fast pass)": HaarFaceDetector(), "thorough (THOROUGH_PARAMS)": HaarFaceDetector(**THOROUGH_PARAMS)}
    print("one thread; CPU ms per picture in brackets")
    print(f"{'setting':<28} {'course test faces':>24} {'held-out 300-W faces':>24} {'detections without faces':>28}")
    for label, detector in settings.items():
        course_found, course_ms = found_and_time(detector, course, list(truth))
        wild_found, wild_ms = found_and_time(detector, [s["image"] for s in samples], [s["keypoints"] for s in samples])
        tic = time.process_time()
        false = sum(len(detector.detect(picture)) for picture in empty)
        empty_ms = 1000 * (time.process_time() - tic) / max(len(empty), 1)
        print(f"{label:<28} {f'{course_found}/{len(course)} ({course_ms:.1f} ms)':>24} "
              f"{f'{wild_found}/{len(samples)} ({wild_ms:.1f} ms)':>24} {f'{false} on {len(empty)} ({empty_ms:.1f} ms)':>28}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
