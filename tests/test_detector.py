"""The Haar face detector (detector_architectures/haar.py): real faces, no faces, odd inputs, box conventions."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from data_load import haar_box_from_keypoints, keypoint_box, read_image, read_keypoints_csv
from detector_architectures import BOX_CORRECTIONS, DEFAULT_PARAMS, THOROUGH_PARAMS, BoxCorrection, Detection, HaarFaceDetector, face_found
from detector_architectures.haar import box_iou, group_windows, match_face, mirror_box, to_gray_uint8, working_scale

# frontalface_default's box on skimage.data.astronaut() (512 x 512): her face spans about x 175-275, y 65-165.
ASTRONAUT_FACE = np.array([177.0, 66.0, 95.0, 95.0])


@pytest.fixture(scope="module")
def detector() -> HaarFaceDetector:
    """The tuned settings (the pipeline's thorough search): exactly the faces, nothing else, on these pictures."""
    return HaarFaceDetector(**THOROUGH_PARAMS)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


def assert_astronaut_face(detections: list[Detection], scale: float = 1.0, offset=(0.0, 0.0)) -> None:
    assert len(detections) == 1, [d.box for d in detections]
    expected = ASTRONAUT_FACE * scale + np.array([offset[0], offset[1], 0.0, 0.0])
    assert box_iou(detections[0].box, expected) > 0.6, detections[0].box
    cx, cy = detections[0].box[:2] + detections[0].box[2:] / 2
    assert (195 * scale + offset[0] < cx < 255 * scale + offset[0]) and (85 * scale + offset[1] < cy < 145 * scale + offset[1])


# ---------------------------------------------------------------------------------------------------------
# Real faces
# ---------------------------------------------------------------------------------------------------------
def test_finds_the_face_in_real_test_images(detector, real_data_dir):
    names, keypoints = read_keypoints_csv(real_data_dir / "test_frames_keypoints.csv")
    for name, points in zip(names[:5], keypoints[:5]):
        detections = detector.detect(read_image(real_data_dir / "test" / name))
        assert detections, name
        assert face_found(detections, points), name
        best = detections[match_face(detections, points)]
        assert box_iou(best.box, haar_box_from_keypoints(points)) > 0.4, name


def test_finds_exactly_the_astronauts_face(detector, astronaut):
    detections = detector.detect(astronaut)
    assert_astronaut_face(detections)
    assert detections[0].cascade == "frontalface_default"


def test_the_fast_default_finds_the_astronauts_face_first(astronaut):
    fast = HaarFaceDetector()
    assert fast.params["scale_factor"] > THOROUGH_PARAMS["scale_factor"]
    detections = fast.detect(astronaut)
    assert_astronaut_face(detections[:1])
    assert all(d.score < detections[0].score / 4 for d in detections[1:])  # weak: the pipeline looks again there


def test_grayscale_rgba_and_other_dtypes_work(detector, astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    for image in (gray, gray[:, :, None], rgba, astronaut.astype(np.float32) / 255.0, astronaut.astype(np.uint16) * 257):
        assert_astronaut_face(detector.detect(image))


def test_large_image_with_a_scaled_up_face_is_searched_small_when_capped(astronaut):
    canvas = np.full((3000, 4000, 3), 90, np.uint8)
    big = cv2.resize(astronaut, None, fx=4.0, fy=4.0, interpolation=cv2.INTER_LINEAR)
    canvas[500 : 500 + big.shape[0], 1200 : 1200 + big.shape[1]] = big
    detector = HaarFaceDetector(max_side=1024, min_face_size=100)
    working = detector.prepare(canvas)
    assert max(working.gray.shape) == 1024 and working.min_face == round(100 * 1024 / 4000)
    assert_astronaut_face(detector.detect(canvas), scale=4.0, offset=(1200.0, 500.0))


@pytest.mark.parametrize(
    ("shape", "params", "scale"),
    [
        ((480, 640), {"working_face_size": 32}, 0.8),  # a smallest face of 40 pixels searched at 32
        ((3024, 4032), {"working_face_size": 32, "min_face_fraction": 0.0}, 0.8),  # whatever the picture's size ...
        ((3024, 4032), {}, 40 / (0.025 * 3024)),  # ... unless a fraction of its shorter side is larger (the default)
        ((150, 150), {"working_face_size": 32}, 128 / 150),  # never below a shorter side of min_side (128)
        ((480, 640), {}, 1.0),  # by default the 40-pixel face is searched at 40 pixels
        ((60, 80), {}, 128 / 60),  # small pictures are enlarged to it
        ((20, 30), {}, 4.0),  # by at most max_upscale
        ((480, 640), {"min_face_size": 80}, 0.5),
        ((3024, 4032), {"max_side": 1024}, 1024 / 4032),
    ],
)
def test_working_scale_follows_the_smallest_face_asked_for(shape, params, scale):
    assert working_scale(min(shape), max(shape), {**DEFAULT_PARAMS, **params}) == pytest.approx(scale)


def test_small_image_is_enlarged_and_its_face_found(detector, astronaut):
    small = cv2.resize(astronaut[40:200, 150:300], None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)  # 64 x 60
    working = detector.prepare(small)
    assert working.scale > 1
    detections = detector.detect(small)
    assert len(detections) >= 1
    expected = (ASTRONAUT_FACE - np.array([150, 40, 0, 0])) * 0.4
    assert max(box_iou(d.box, expected) for d in detections) > 0.5


# ---------------------------------------------------------------------------------------------------------
# No faces, degenerate inputs
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "image",
    [
        np.full((240, 320, 3), 128, np.uint8),
        np.zeros((240, 320), np.uint8),
        np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 256, (600, 800), dtype=np.uint8),
    ],
    ids=["gray", "black", "noise", "noise-large"],
)
def test_no_face_gives_no_detections(detector, image):
    assert detector.detect(image) == []


@pytest.mark.parametrize("shape", [(10, 10, 3), (10, 10), (1, 500, 3), (0, 0, 3), (19, 19)])
def test_tiny_images_give_no_detections_without_error(detector, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert detector.detect(image) == []


def test_rejects_bad_input_and_parameters():
    with pytest.raises(ValueError):
        HaarFaceDetector().detect(np.zeros((50, 50, 2), np.uint8))
    with pytest.raises(TypeError):
        HaarFaceDetector(minNeighbours=3)
    with pytest.raises(ValueError):
        HaarFaceDetector(cascades=("frontalface_nonexistent",))


def test_detections_are_float_boxes_of_four(detector, astronaut):
    detections = detector.detect(astronaut)
    assert len(detections) == 1  # the astronaut's face, so the loop below checks something
    for detection in detections:
        assert isinstance(detection.box, np.ndarray) and detection.box.shape == (4,)
        assert detection.box.dtype.kind == "f"
        assert isinstance(detection.score, float) and detection.score > 0
        assert detection.box[2] > 0 and detection.box[3] > 0


def test_to_gray_uint8():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255
    assert to_gray_uint8(rgb).shape == (4, 5)
    assert to_gray_uint8(rgb)[0, 0] == cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[0, 0]
    assert to_gray_uint8(np.ones((3, 3), bool)).max() == 255


# ---------------------------------------------------------------------------------------------------------
# Grouping, merging, settings
# ---------------------------------------------------------------------------------------------------------
def test_group_windows_reproduces_opencv(astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    classifier = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    rects, _, weights = classifier.detectMultiScale3(gray, 1.1, 0, minSize=(24, 24), outputRejectLevels=True)
    for min_neighbors in (1, 3, 5):
        expected = classifier.detectMultiScale(gray, 1.1, min_neighbors, minSize=(24, 24))
        boxes, counts, _ = group_windows(rects, weights, min_neighbors)
        assert sorted(map(tuple, np.round(boxes).astype(int).tolist())) == sorted(map(tuple, np.asarray(expected).reshape(-1, 4).tolist()))
        assert (counts > min_neighbors).all()


def test_secondary_cascades_add_only_faces_the_first_missed(astronaut):
    both = HaarFaceDetector(cascades=("frontalface_default", "profileface", "frontalface_alt2"))
    first = HaarFaceDetector(cascades=("frontalface_default",))
    assert [d.cascade for d in both.detect(astronaut)] == [d.cascade for d in first.detect(astronaut)]
    np.testing.assert_allclose(both.detect(astronaut)[0].box, first.detect(astronaut)[0].box)


def test_mirrored_image_gives_mirrored_box(detector, astronaut):
    box = detector.detect(astronaut)[0].box
    mirrored = detector.detect(np.ascontiguousarray(astronaut[:, ::-1]))
    assert mirrored, "no face in the mirrored astronaut"
    assert box_iou(mirrored[0].box, mirror_box(box, astronaut.shape[1])) > 0.8  # the surest detection


# ---------------------------------------------------------------------------------------------------------
# Box conventions and the face_found criterion
# ---------------------------------------------------------------------------------------------------------
def test_box_correction_maps_profile_boxes_onto_the_frontal_convention():
    correction = BOX_CORRECTIONS["profileface"]
    frontal = np.array([100.0, 60.0, 80.0, 80.0])
    # the profile cascade's box of that face, by the correction's definition (its inverse)
    side = frontal[2] / correction.scale
    centre = frontal[:2] + frontal[2:] / 2 - np.array([correction.dx, correction.dy]) * side
    profile = np.array([centre[0] - side / 2, centre[1] - side / 2, side, side])
    np.testing.assert_allclose(correction.apply(profile), frontal, atol=1e-6)
    # a face turned the other way is found on the mirrored image: the mirrored correction maps it back
    width = 400.0
    np.testing.assert_allclose(correction.mirrored().apply(mirror_box(profile, width)), mirror_box(frontal, width), atol=1e-6)
    # profile boxes are bigger and sit towards the back of the head: the correction shrinks them and moves them
    assert correction.scale < 1 and correction.dx < 0
    assert box_iou(correction.apply(profile), frontal) > box_iou(profile, frontal)


def test_box_correction_identity_and_fit():
    box = np.array([10.0, 20.0, 50.0, 50.0])
    np.testing.assert_allclose(BoxCorrection().apply(box), box)
    np.testing.assert_allclose(BOX_CORRECTIONS["frontalface_default"].apply(box), box)
    truth = BoxCorrection(0.9, -0.1, 0.03)
    rng = np.random.default_rng(0)
    detected = np.array([[x, y, s, s] for x, y, s in rng.uniform([0, 0, 30], [300, 300, 150], size=(50, 3))])
    target = np.array([truth.apply(b) for b in detected])
    fitted = BoxCorrection.fit(detected, target)
    np.testing.assert_allclose([fitted.scale, fitted.dx, fitted.dy], [0.9, -0.1, 0.03], atol=1e-9)


def square_face(x: float, y: float, side: float) -> np.ndarray:
    """68 keypoints filling the square (x, y, side, side) on a grid: enough for the box functions."""
    t = np.linspace(0, 1, 68)
    return np.stack([x + side * t, y + side * ((t * 7) % 1)], axis=1).astype(np.float32)


def test_face_found_criterion():
    points = square_face(100, 100, 80)
    haar = haar_box_from_keypoints(points)
    assert face_found([haar], points)
    assert face_found([Detection(haar, 5.0)], points)
    assert not face_found([], points)
    assert not face_found([np.array([300.0, 300.0, 80.0, 80.0])], points)  # elsewhere
    assert not face_found([haar * np.array([1, 1, 0.3, 0.3])], points)  # a corner of the face: too small
    # the keypoint box itself (another convention) overlaps it enough both ways
    assert face_found([keypoint_box(points)], points)
    # of several detections the best-overlapping one is the face
    shifted = haar + np.array([0.3 * haar[2], 0, 0, 0])
    assert match_face([np.array([0.0, 0.0, 30.0, 30.0]), shifted, haar], points) == 2
    assert match_face([shifted, np.array([0.0, 0.0, 30.0, 30.0])], points) == 0
