"""Face detectors for the keypoint pipeline; see ``haar.py``."""
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

__all__ = [
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
