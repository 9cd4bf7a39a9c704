"""Frames per second of face tracking on a 640x480 video built from test pictures (one face).

    python benchmarks/video_fps.py --data ../shared/data [--frames 300] [--threads 2]

The video shows one test picture moving, turning slightly and changing size over a textured background (a
smooth motion, as in a real video: cutting between different pictures would make the face jump). It is written to outputs/bench/tracking_input.mp4, read back with OpenCV and tracked with
``pipeline.tracking.FaceTracker``. Reported: tracking-only fps, end-to-end fps (decode + tracking), how many frames
ran the detector, and the mean keypoint error against the known (moved) ground truth.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from data_load import person_of, read_image, read_keypoints_csv, resolve_data_dir, split_paths, transform_points  # noqa: E402
from pipeline.evaluation import COURSE_CONVENTION, nme_interocular  # noqa: E402
from pipeline.keypoint_pipeline import KeypointPipeline  # noqa: E402
from pipeline.tracking import FaceTracker  # noqa: E402

SIZE = (640, 480)


def build_video(data_dir: str | None, path: Path, frames: int, fps: float = 30.0) -> np.ndarray:
    """Write the benchmark video; returns the true keypoints of every frame (frames, 68, 2)."""
    csv_file, root_dir = split_paths(resolve_data_dir(data_dir), "test")
    names, truth = read_keypoints_csv(csv_file)
    by_person: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        by_person[person_of(name)].append(i)
    index = max(by_person.values(), key=len)[0]
    picture = read_image(root_dir / names[index])
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8), (0, 0), 6)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with the mp4v codec")
    true_points = []
    for t in range(frames):
        phase = 2 * np.pi * t / frames
        scale = 1.6 + 0.3 * np.sin(2 * phase)
        angle = 8 * np.sin(3 * phase)
        centre = np.array(SIZE) / 2 + np.array([150 * np.sin(phase), 60 * np.sin(2 * phase)])
        h, w = picture.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        matrix[:, 2] += centre - np.array([w / 2, h / 2])
        frame = background.copy()
        warped = cv2.warpAffine(picture, matrix, SIZE, flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(np.full((h, w), 255, np.uint8), matrix, SIZE) > 0
        frame[mask] = warped[mask]
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        true_points.append(transform_points(truth[index], matrix))
    writer.release()
    return np.stack(true_points)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset folder (default: $FKP_DATA, else data/)")
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for OpenCV and the model")
    parser.add_argument("--out", default="outputs/bench", help="folder for the generated video")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    video = Path(args.out) / "tracking_input.mp4"
    truth = build_video(args.data, video, args.frames)
    pipe = KeypointPipeline.from_pretrained(args.model, threads=args.threads, convention=COURSE_CONVENTION)  # the truth's labelling
    tracker = FaceTracker(pipe)
    capture = cv2.VideoCapture(str(video))
    predicted, tracking_seconds, detections, extra_faces = [], 0.0, 0, 0
    start = time.perf_counter()
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        tic = time.perf_counter()
        faces = tracker.update(frame)
        tracking_seconds += time.perf_counter() - tic
        detections += tracker.frames_since_detection == 0
        extra_faces += max(len(faces) - 1, 0)
        # the tracked face nearest the true one (others are false detections, counted above)
        nearest = min(faces, key=lambda f: np.abs(f.keypoints.mean(0) - truth[len(predicted)].mean(0)).sum(), default=None)
        predicted.append(nearest.keypoints if nearest else np.full((68, 2), np.nan, np.float32))
    total_seconds = time.perf_counter() - start
    capture.release()
    predicted = np.stack(predicted)
    found = ~np.isnan(predicted[:, 0, 0])
    errors = nme_interocular(predicted[found], truth[: len(predicted)][found])
    frames = len(predicted)
    print(f"video: {frames} frames of {SIZE[0]}x{SIZE[1]}, one face, {args.threads} threads ({video})")
    print(f"tracking: {frames / tracking_seconds:.0f} frames per second ({1000 * tracking_seconds / frames:.1f} ms per frame)")
    print(f"end to end with video decoding: {frames / total_seconds:.0f} frames per second")
    print(f"detector ran on {detections} frames; face present in {found.mean():.1%} of frames; {extra_faces} false faces in all")
    print(f"NME_io against the moved ground truth: mean {errors.mean():.4f}, median {np.median(errors):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
