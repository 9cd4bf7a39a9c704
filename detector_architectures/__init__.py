"""Face detectors for the keypoint pipeline: OpenCV's Haar cascades (``haar.py``, what notebook 3 teaches) and our
learned detector (``cnn.py``). ``make_detector(name)`` builds either by name."""
from __future__ import annotations

from detector_architectures.cnn import CNNFaceDetector
from detector_architectures.haar import (
    BOX_CORRECTIONS,
    DEFAULT_PARAMS,
    THOROUGH_PARAMS,
    BoxCorrection,
    Detection,
    HaarFaceDetector,
    box_convention_error,
    box_iou,
    face_found,
    match_face,
)

# The detectors ``make_detector`` (``detect.py --detector``) builds, and the pipeline's default.
DETECTORS = ("cnn", "haar")
DEFAULT_DETECTOR = "cnn"


def make_detector(name: str, min_face_size: int | None = None, threads: int | None = None) -> HaarFaceDetector | CNNFaceDetector:
    """The face detector called ``name`` ("cnn" or "haar", ``DETECTORS``), searching faces of at least
    ``min_face_size`` pixels in any picture (None: its default, 40 pixels or 2.5 % of a big picture's shorter side);
    ``threads`` for the learned detector's runtime (None: 1).

    Raises ValueError (one line) for another name, or when the learned detector's model file is missing."""
    # a size asked for is the smallest face in every picture, big photos included (no fraction of their side)
    sizes = {} if min_face_size is None else {"min_face_size": min_face_size, "min_face_fraction": 0.0}
    if name == "haar":
        return HaarFaceDetector(**sizes)
    if name == "cnn":
        try:
            return CNNFaceDetector(threads=threads or 1, **sizes)
        except FileNotFoundError as error:  # a checkout without the model file
            raise ValueError(str(error)) from None
    raise ValueError(f"Unknown face detector {name!r}: choose one of {', '.join(DETECTORS)}.")


__all__ = [
    "CNNFaceDetector",
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "make_detector",
    "BOX_CORRECTIONS",
    "DEFAULT_PARAMS",
    "THOROUGH_PARAMS",
    "BoxCorrection",
    "Detection",
    "HaarFaceDetector",
    "box_convention_error",
    "box_iou",
    "face_found",
    "match_face",
]
