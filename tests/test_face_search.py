"""A face search whose cost follows the faces: sizes, resolutions, bounded work and the re-crops that stop."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import face_keypoints
from data_load import crop_matrix, haar_box_from_keypoints, transform_points
from detector_architectures import DETECTORS, CNNFaceDetector, HaarFaceDetector, make_detector
from detector_architectures.haar import box_intersection_over_smaller
from pipeline import detect_cli, haar_search
from pipeline.faces import Face, distinct_faces, outside_faces, turning_frame, unframed_box
from pipeline.haar_search import WiderSearch
from pipeline.inference import GrayPyramid, crop_matrices, crop_shift, cut_crops, scaling_frame
from pipeline.keypoint_pipeline import KeypointPipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pipeline_speed  # noqa: E402


def closeup(astronaut: np.ndarray, shape: tuple[int, int] = (2848, 4288)) -> np.ndarray:
    """The astronaut's head and shoulders enlarged to a camera photo (a face about 900 pixels wide)."""
    return cv2.resize(astronaut[:340, 40:552], shape[::-1], interpolation=cv2.INTER_CUBIC)


class ReadPixels:
    """Wraps a Haar detector's ``raw_windows`` to add up the working pixels each cascade run reads."""

    def __init__(self, detector: HaarFaceDetector, monkeypatch) -> None:
        self.pixels = 0
        original = detector.raw_windows

        def counting(working, name, mirrored=False):
            self.pixels += working.gray.size
            return original(working, name, mirrored)

        monkeypatch.setattr(detector, "raw_windows", counting)


# ---------------------------------------------------------------------------------------------------------
# Copies at the resolution a search needs
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, 0.6, 0.5, 0.3, 0.05])
def test_the_pyramid_gives_a_copy_at_most_twice_the_size_asked_for(scale):
    gray = np.random.default_rng(0).integers(0, 255, (3000, 4000), dtype=np.uint8)
    copy, frame = GrayPyramid(gray).level(scale)
    ratio = copy.shape[1] / gray.shape[1]
    assert scale <= ratio + 1e-9 and (ratio < 2 * scale or ratio == 1.0)
    assert np.allclose(frame[:, :2], np.diag([copy.shape[1] / 4000, copy.shape[0] / 3000]))


def test_a_pyramid_copy_maps_picture_points_onto_the_same_content():
    gray = np.zeros((1200, 1600), np.uint8)
    cv2.circle(gray, (1000, 300), 40, 255, -1)
    copy, frame = GrayPyramid(gray).resized(0.1)
    found = np.argwhere(copy > 128).mean(axis=0)[::-1]  # (x, y) of the disk in the copy
    assert np.allclose(transform_points(np.array([[1000.0, 300.0]]), frame)[0], found, atol=0.6)


def test_the_pyramid_offers_the_smallest_copy_that_keeps_the_samples_apart_and_makes_its_halvings():
    pyramid = GrayPyramid(np.zeros((3000, 4000), np.uint8))
    assert pyramid.source(20.0)[0].shape == (375, 500)  # 2.5 copy pixels apart, the halvings to it made
    assert [level.shape for level in pyramid.levels[1:]] == [(1500, 2000), (750, 1000), (375, 500)]
    assert pyramid.source(6.0)[0].shape == (1500, 2000)  # 3 apart; at 1/4 only 1.5
    assert pyramid.source(3.0)[0] is pyramid.picture  # a small face: the picture, as before
    assert pyramid.source(20.0, finest=8.0)[0].shape == (1500, 2000)
    assert len(pyramid.levels) == 4  # nothing made twice


def test_a_big_faces_crop_and_patches_cut_from_a_copy_match_those_cut_from_the_picture(pipe, astronaut):
    """The copy is area-averaged by halvings, the picture by one whole factor: the crops differ by about one gray
    level of 255 on average (measured: 1.1)."""
    from pipeline.second_stage import PatchGeometry

    picture = closeup(astronaut)
    gray = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
    (face,) = pipe.detect(picture)
    pyramid = GrayPyramid(gray)
    pyramid.level(0.1)
    matrices = crop_matrices([haar_box_from_keypoints(face.keypoints)], pipe.input_size)
    direct, from_copy = cut_crops(gray, matrices, pipe.input_size), cut_crops(pyramid, matrices, pipe.input_size)
    assert 0 < np.abs(direct - from_copy).mean() < 2 / 255
    geometry = PatchGeometry()
    patches = geometry.matrices(face_keypoints((1400.0, 350.0, 1500.0, 1500.0)))  # eyes 600 px apart
    assert 0 < np.abs(geometry.cut(gray, patches) - geometry.cut(pyramid, patches)).mean() < 2 / 255


@pytest.mark.parametrize("detector", ["haar", "cnn"])
def test_the_crops_of_a_close_ups_face_are_cut_from_a_copy_not_from_the_photo(astronaut, monkeypatch, detector):
    """A 12-megapixel photo's face, cut from the photo, cost 4 ms a crop (one thread): each crop area-averaged the
    millions of pixels the face covers. The searches' copies hold the same face at a few times the crop's size."""
    from pipeline import inference

    pipe = KeypointPipeline.from_pretrained(detector=detector, threads=1)
    picture = closeup(astronaut, (3000, 4000))
    cuts = []  # (source shape, picture pixels per crop pixel)
    original = inference.warp

    def recording(image, matrix, size):
        cuts.append((image.shape, picture.shape[1] / image.shape[1] / np.sqrt(abs(np.linalg.det(matrix[:, :2])))))
        return original(image, matrix, size)

    monkeypatch.setattr(inference, "warp", recording)
    faces = pipe.detect(picture)
    big = [shape for shape, step in cuts if step >= 4 * 2]  # twice as coarse as the half-size copy: a copy serves
    assert len(faces) == 1 and big
    assert all(shape[0] * shape[1] <= picture.shape[0] * picture.shape[1] / 4 for shape in big), cuts


def test_a_box_found_in_a_resized_and_cut_copy_maps_back_to_the_picture():
    box = np.array([400.0, 300.0, 120.0, 120.0])
    frame = np.vstack([scaling_frame((3000, 4000), (750, 1000)), [0, 0, 1]])
    frame = (np.array([[1.0, 0.0, -50.0], [0.0, 1.0, -20.0], [0, 0, 1]]) @ frame)[:2]  # resized, then cut
    corner = transform_points(np.array([[399.5, 299.5]]), frame)[0] + 0.5
    assert np.allclose(unframed_box(np.array([*corner, 30.0, 30.0]), frame), box)


def test_a_face_found_upside_down_gets_its_box_from_its_keypoints(pipe, astronaut):
    # a frame turned by 180 degrees has no rotation terms off its diagonal, but negative ones on it: a box mapped
    # back as if unturned had a negative width and height
    turned = cv2.warpAffine(astronaut, turning_frame((255.5, 255.5), 180), (512, 512))
    (face,) = pipe.detect(turned)
    assert face.box[2] > 0 and face.box[3] > 0
    assert np.allclose(face.box, haar_box_from_keypoints(face.keypoints), atol=0.5)


# ---------------------------------------------------------------------------------------------------------
# The smallest face, and faces of about a detection's size
# ---------------------------------------------------------------------------------------------------------
def test_the_smallest_face_grows_with_a_big_picture_and_is_an_option():
    detector = HaarFaceDetector()
    assert detector.smallest_face((480, 640)) == 40
    assert detector.smallest_face((3024, 4032)) == pytest.approx(0.025 * 3024)
    assert HaarFaceDetector(min_face_fraction=0.0).smallest_face((3024, 4032)) == 40
    assert HaarFaceDetector(min_face_size=200).smallest_face((3024, 4032)) == 200


def test_a_search_for_faces_of_a_size_range_keeps_to_it(astronaut):
    detector = HaarFaceDetector()
    face = detector.detect(astronaut)[0]
    assert all(d.box[2] <= face.box[2] / 2 for d in detector.detect(astronaut, min_face_size=40, max_face_size=face.box[2] / 2))
    again = detector.detect(astronaut, min_face_size=face.box[2] / 2, max_face_size=2 * face.box[2])
    assert any(np.allclose(d.box, face.box, atol=0.15 * face.box[2]) for d in again)


def test_a_close_up_is_not_scanned_for_faces_much_smaller_than_its_own(pipe, astronaut, monkeypatch):
    # the reported case: a 4288 x 2848 photo with one big face took 67 s, scanned from 40-pixel faces at full size
    picture = closeup(astronaut)
    read = ReadPixels(pipe.cascades.detector, monkeypatch)
    (face,) = pipe.detect(picture)
    assert face.box[2] > 800
    # the 12-megapixel picture is searched on small copies: big faces first, then faces down to a quarter of hers
    assert read.pixels < 1_000_000


def test_six_small_faces_of_a_big_photo_are_searched_at_the_resolution_they_need(pipe, astronaut, monkeypatch):
    canvas = np.full((3024, 4032, 3), 110, np.uint8)
    head = cv2.resize(astronaut[40:240, 130:330], (200, 200), interpolation=cv2.INTER_AREA)
    for i in range(6):
        x, y = 400 + 1200 * (i % 3), 600 + 1400 * (i // 3)
        canvas[y : y + 200, x : x + 200] = head
    read = ReadPixels(pipe.cascades.detector, monkeypatch)
    assert len(pipe.detect(canvas)) == 6
    assert read.pixels < 0.5 * canvas.shape[0] * canvas.shape[1]


def dark_big_astronaut(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut darkened and blown up to 3000 x 3000: only the wider search finds her."""
    return cv2.resize((astronaut * 0.15).astype(np.uint8), (3000, 3000))


def test_the_wider_search_works_on_a_bounded_copy(haar_pipe, astronaut, monkeypatch):
    pipe = haar_pipe  # the learned detector's own first pass reads a bigger copy: this is about the wider search
    sizes = []
    detect = pipe.learned_detector.detect
    monkeypatch.setattr(pipe.learned_detector, "detect", lambda image, *a, **k: (sizes.append(max(image.shape[:2])), detect(image, *a, **k))[1])
    faces = pipe.detect(dark_big_astronaut(astronaut))
    scale = 3000 / astronaut.shape[0]
    noses = [face.keypoints[30] / scale for face in faces]  # back in the 512-px picture, where her nose tip is near (225, 127)
    assert any(np.hypot(*(nose - (225, 127))) < 15 for nose in noses), noses
    assert max(sizes) <= pipe.wider.max_side * 1.5 * 1.42  # padded by a quarter on each side, or turned


def test_the_dark_big_astronaut_gives_no_false_face(pipe, astronaut):
    # the 128-px model before flip offsets also accepted a 323-px box on her suit here (face score 0.993, flip error 0.014)
    assert len(pipe.detect(dark_big_astronaut(astronaut))) == 1


# ---------------------------------------------------------------------------------------------------------
# Work bounded by counts, not by the clock: the same faces on an idle and on a busy machine
# ---------------------------------------------------------------------------------------------------------
def learned_pass_with(pipe: KeypointPipeline, faces: list, monkeypatch) -> tuple[list, list]:
    """``pipe._learned_pass`` (sure faces, doubtful faces) on a blank picture whose detections' checked faces are
    ``faces`` (and whose crops along other rolls find nothing)."""
    calls = []
    monkeypatch.setattr(pipe, "_checked_along", lambda pyramid, detections, frame: [] if calls else (calls.append(1) or list(faces)))
    return pipe._learned_pass(GrayPyramid(np.zeros((480, 640), np.uint8)))


def face_at(x: float, y: float, side: float, face_score: float, flip_error: float) -> Face:
    """A face of a mean-shaped box (x, y, side) with these checks' measures."""
    keypoints = np.array([[x + side * u, y + side * v] for u, v in np.random.default_rng(0).random((68, 2))])
    return Face(np.array([x, y, side, side]), keypoints, 0.9, flip_error, face_score)


def test_a_part_of_a_sure_learned_face_read_as_a_face_does_not_call_the_cascades(monkeypatch):
    pipe = KeypointPipeline.from_pretrained(detector="cnn", threads=1)
    sure = face_at(1300, 350, 1200, face_score=0.9993, flip_error=0.006)
    part = face_at(2000, 640, 430, face_score=0.89, flip_error=0.023)  # inside the sure face's box, not sure itself
    assert not pipe.learned_sure(part)
    assert learned_pass_with(pipe, [part, sure], monkeypatch) == ([sure], [])
    elsewhere = face_at(3100, 2050, 290, face_score=0.93, flip_error=0.022)  # a doubt of its own, outside the face
    found, doubts = learned_pass_with(pipe, [sure, elsewhere], monkeypatch)
    assert found == [sure] and len(doubts) == 1 and doubts[0] is elsewhere


def test_a_doubt_beside_a_sure_learned_face_calls_no_cascade_search(monkeypatch):
    """A badge on the astronaut's suit read as a face (face score 0.94) beside her sure face in the 3024 x 3024
    close-up of ``benchmarks/pipeline_speed.py`` once sent the whole picture to the cascades (196 ms instead of about
    80), then the region around it (95 ms instead of 71). The doubt is put where it was (the box it had); a nearly sure
    doubt beside a sure face is kept without a search either."""
    pipe = KeypointPipeline.from_pretrained(detector="cnn", threads=1)
    name, shape, placements = next(scene for scene in pipeline_speed.scenes() if scene[0].startswith("close-up 3024x3024"))
    picture, truths = pipeline_speed.compose(shape, pipeline_speed.sources(None), placements)
    badge = face_at(1900.0, 2300.0, 300.0, face_score=0.94, flip_error=0.02)
    learned_pass = pipe._learned_pass
    monkeypatch.setattr(pipe, "_learned_pass", lambda pyramid: (lambda sure, doubts: (sure, doubts + [badge]))(*learned_pass(pyramid)))
    searched, around = [], []
    monkeypatch.setattr(pipe.cascades, "search", lambda pyramid: searched.append(pyramid) or [])
    rechecked = pipe.cascades.rechecked
    monkeypatch.setattr(pipe.cascades, "rechecked", lambda pyramid, doubtful: around.append(doubtful) or rechecked(pyramid, doubtful))
    faces = pipe.detect(picture)
    assert pipeline_speed.score(faces, truths) == (1, 0)
    assert not searched and not around
    badge.face_score, badge.flip_error = 0.995, 0.015  # nearly sure (learned_confirmed): kept as it is
    faces = pipe.detect(picture)
    assert pipeline_speed.score(faces, truths) == (1, 1) and any(face is badge for face in faces)
    assert not searched and not around


def test_the_enlarged_astronaut_of_the_speed_benchmark_needs_no_cascade_search(monkeypatch):
    """The 4288 x 2848 close-up of ``benchmarks/pipeline_speed.py``: the learned detector also reads a part of the
    face as a face (face score 0.89), which once sent the picture to the cascades (about 200 ms instead of 105 ms)."""
    pipe = KeypointPipeline.from_pretrained(detector="cnn", threads=1)
    name, shape, placements = next(scene for scene in pipeline_speed.scenes() if scene[0].startswith("close-up 4288x2848"))
    picture, truths = pipeline_speed.compose(shape, pipeline_speed.sources(None), placements)
    searches = []
    monkeypatch.setattr(pipe.cascades, "search", lambda pyramid: searches.append(pyramid) or [])
    faces = pipe.detect(picture)
    assert pipeline_speed.score(faces, truths) == (1, 0) and not searches


def test_a_doubt_inside_a_face_found_is_a_part_of_it_and_is_not_searched_around():
    face = face_at(1300, 350, 1200, face_score=0.999, flip_error=0.006)
    part, beside, around = np.array([2000, 700, 400, 400.0]), np.array([2700, 700, 400, 400.0]), np.array([1000, 100, 1800, 1800.0])
    kept = outside_faces([part, beside, around], [face])
    assert [list(box) for box in kept] == [list(beside), list(around)]  # a box bigger than the face may be it framed better


def mean_face(x: float, y: float, side: float, turn: float = 0.0) -> np.ndarray:
    """The mean face's keypoints in the box (x, y, side, side), turned by ``turn`` degrees about their centre."""
    points = face_keypoints((x, y, side, side))
    centre = points.mean(axis=0)
    return (points - centre) @ cv2.getRotationMatrix2D((0.0, 0.0), turn, 1.0)[:, :2].T + centre


def test_one_face_read_upright_and_upside_down_is_one_face():
    # the upside-down astronaut found in the copy turned by 180 degrees, and read upright in the copy turned by 30:
    # lower, smaller, 0.45 of its box inside hers (0.33 as the pipeline measured it)
    true = Face(np.array([168.0, 48.0, 109.0, 109.0]), mean_face(168, 48, 109, turn=180.0), 30, 0.005, 0.999)
    misread = Face(np.array([181.0, 115.0, 94.0, 94.0]), mean_face(181, 115, 94), 12, 0.014, 0.99)
    assert distinct_faces([true, misread]) == [true]
    # the same two boxes, both read upright, are two faces side by side
    upright = Face(true.box, mean_face(168, 48, 109), 30, 0.005, 0.999)
    assert distinct_faces([upright, misread]) == [upright, misread]


def test_the_cascades_do_not_search_around_a_part_of_the_enlarged_astronauts_face(haar_pipe, monkeypatch):
    """The 4288 x 2848 close-up of ``benchmarks/pipeline_speed.py``, the cascades first: their second fast pass fires
    on a part of her face, and the thorough search around it once cost 45 of the picture's 105 ms. (Doubts elsewhere
    are still looked at.)"""
    pipe = haar_pipe
    name, shape, placements = next(scene for scene in pipeline_speed.scenes() if scene[0].startswith("close-up 4288x2848"))
    picture, truths = pipeline_speed.compose(shape, pipeline_speed.sources(None), placements)
    looked = []
    rechecked = pipe.cascades.rechecked
    monkeypatch.setattr(pipe.cascades, "rechecked", lambda pyramid, doubtful: (looked.append(doubtful), rechecked(pyramid, doubtful))[1])
    faces = pipe.detect(picture)
    assert pipeline_speed.score(faces, truths) == (1, 0)
    inside = [box for boxes in looked for box in boxes or [] if box_intersection_over_smaller(np.asarray(box, float), faces[0].box) >= 0.5]
    assert not inside


def turned_gray_astronaut(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut as a gray picture turned by 90 degrees: the cascades find her only in the wider search's turned
    copies, the learned detector along a roll two classes from its own (``RETRY_OFFSETS``)."""
    return np.rot90(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)).copy()


def group_of_heads(astronaut: np.ndarray, columns: int = 6, rows: int = 4, side: int = 90) -> np.ndarray:
    """``columns`` x ``rows`` copies of the astronaut's head, ``side`` pixels each, on a grey picture: the fast pass
    detects most of them weakly (2-3 windows), so the thorough search looks around each (many doubtful boxes)."""
    canvas = np.full((2 * rows * side, 2 * columns * side, 3), 120, np.uint8)
    head = cv2.resize(astronaut[30:250, 120:340], (side, side), interpolation=cv2.INTER_AREA)
    for i in range(columns * rows):
        x, y = (i % columns) * 2 * side + side // 2, (i // columns) * 2 * side + side // 2
        canvas[y : y + side, x : x + side] = head
    return canvas


def jumping_clocks(monkeypatch, jump: float = 5.0) -> None:
    """Make every reading of ``time.perf_counter``, ``time.monotonic`` and ``time.time`` come ``jump`` seconds after
    the one before, as on a machine so busy that each step of a search takes seconds."""
    for name in ("perf_counter", "monotonic", "time"):
        real, readings = getattr(time, name), []

        def jumped(real=real, readings=readings) -> float:
            readings.append(None)
            return real() + jump * len(readings)

        monkeypatch.setattr(time, name, jumped)


def face_summary(faces: list) -> list[tuple]:
    return [(np.round(face.box, 3).tolist(), np.round(face.keypoints, 3).tolist(), face.score) for face in faces]


def test_the_faces_do_not_depend_on_the_clock(pipe, astronaut, monkeypatch):
    # the reported case: the turned gray astronaut was found on a quiet machine and lost on a busy one, when a time
    # budget gave up the turned copies' search; the group of heads needs the thorough search around many doubts
    fresh = KeypointPipeline(pipe.runner)  # the defaults, as a user gets them
    pictures = [turned_gray_astronaut(astronaut), group_of_heads(astronaut)]
    quiet = [face_summary(fresh.detect(picture)) for picture in pictures]
    assert len(quiet[0]) == 1 and len(quiet[1]) >= 12
    jumping_clocks(monkeypatch)
    assert [face_summary(fresh.detect(picture)) for picture in pictures] == quiet


@pytest.mark.parametrize("detector", ["haar", "cnn"])
def test_the_faces_are_the_same_beside_processes_that_burn_every_core(pipe, astronaut, detector):
    """The same check on a machine really kept busy: one busy loop per core runs while the pipeline searches. With
    the half-second budget of before, the turned astronaut was lost this way (measured on the code before it went)."""
    fresh = KeypointPipeline(pipe.runner, make_detector(detector, threads=1))
    pictures = [turned_gray_astronaut(astronaut), group_of_heads(astronaut)]
    quiet = [face_summary(fresh.detect(picture)) for picture in pictures]
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        time.sleep(0.5)  # the loops are running
        busy = [face_summary(fresh.detect(picture)) for picture in pictures]
        assert all(burner.poll() is None for burner in burners)  # they ran the whole time
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert len(quiet[0]) == 1 and busy == quiet


@pytest.mark.parametrize("asked", [True, False])
def test_every_wider_step_runs_on_a_picture_without_faces_where_asked(pipe, monkeypatch, asked):
    from skimage import data

    searching = KeypointPipeline(pipe.runner, pipe.detector, wider=WiderSearch() if asked else None)
    steps = []
    search_steps = searching.cascades.search_steps
    monkeypatch.setattr(searching.cascades, "search_steps", lambda pyramid: [(n, lambda f=f, n=n: (steps.append(n), f())[1]) for n, f in search_steps(pyramid)])
    jumping_clocks(monkeypatch)
    assert searching.detect(data.coffee()) == []
    if asked:  # the learned detector's steps, then the cascades'
        assert len(steps) == 1 + len(searching.wider.rolls) + 2
    else:  # by default the learned detector first needs no wider search
        assert searching.wider.when == "never" and steps == []


class CountCalls:
    """Wraps a detector's ``detect`` to count its calls."""

    def __init__(self, detector, monkeypatch) -> None:
        self.calls, detect = 0, detector.detect

        def counting(*args, **kwargs):
            self.calls += 1
            return detect(*args, **kwargs)

        monkeypatch.setattr(detector, "detect", counting)


def test_the_thorough_search_looks_around_at_most_max_doubts_boxes(haar_pipe, astronaut, monkeypatch):
    pipe = haar_pipe  # the cascades' search first
    picture = group_of_heads(astronaut)
    doubts = []
    rechecked = pipe.cascades.rechecked
    monkeypatch.setattr(pipe.cascades, "rechecked", lambda pyramid, doubtful: (doubts.append(doubtful), rechecked(pyramid, doubtful))[1])
    thorough = CountCalls(pipe.cascades.thorough_detector, monkeypatch)
    all_faces = pipe.detect(picture)
    (boxes,) = doubts  # one pass: a 1080 x 720 picture is searched in one
    assert len(boxes) > 8 and thorough.calls == len(boxes) <= haar_search.MAX_DOUBTS  # each looked at once

    monkeypatch.setattr(haar_search, "MAX_DOUBTS", 4)
    doubts.clear()
    thorough.calls = 0
    learned, fast = CountCalls(pipe.learned_detector, monkeypatch), CountCalls(pipe.cascades.detector, monkeypatch)
    wider = CountCalls(pipe.cascades.wider_detector, monkeypatch)
    faces = pipe.detect(picture)
    assert thorough.calls == 4 < len(doubts[0])  # the 4 largest doubtful boxes only
    # a fixed number of searches: two fast passes at most, the looks around doubts (or one over the whole picture)
    # in each, the learned detector's padded and turned copies, the cascades' padded copy
    assert fast.calls <= 2 and learned.calls <= 1 + len(pipe.wider.rolls) + 1 and wider.calls <= 1
    assert 0 < len(faces) < len(all_faces)
    assert face_summary(pipe.detect(picture)) == face_summary(faces)


def test_the_network_search_grid_is_bounded_whatever_the_picture_shape():
    from pipeline.haar_search import grid_boxes

    assert len(grid_boxes((160, 160), 40)) == 94  # as measured for NETWORK_SEARCH_SIDES
    assert len(grid_boxes((3024, 4032), 40)) == 141
    rows = 8 + 5 + 2 + 1  # positions across the short side for each box side
    for shape in [(1000, 2400), (100, 10000), (40, 2_500_000)]:
        boxes = grid_boxes(shape, 40)
        assert 0 < len(boxes) <= rows * haar_search.NETWORK_SEARCH_MAX_POSITIONS
        right = boxes[:, 0] + boxes[:, 2]
        assert shape[1] - 1 <= right.max() <= shape[1] + 1e-3  # inside the picture, still reaching its far end


# ---------------------------------------------------------------------------------------------------------
# Re-crops that stop, and the detectors by name
# ---------------------------------------------------------------------------------------------------------
def test_crop_shift_is_the_corner_distance_over_the_side():
    a = crop_matrix(100.0, 100.0, 50.0, 64)
    assert crop_shift(a, a, 64) == 0.0
    assert crop_shift(a, crop_matrix(105.0, 100.0, 50.0, 64), 64) == pytest.approx(0.1)
    assert crop_shift(a, crop_matrix(100.0, 100.0, 55.0, 64), 64) == pytest.approx(np.hypot(2.5, 2.5) / 50)


def test_the_detectors_are_chosen_by_name_with_a_one_line_error(capsys):
    assert isinstance(make_detector("haar", 60), HaarFaceDetector) and make_detector("haar", 60).params["min_face_size"] == 60
    assert isinstance(make_detector("cnn"), CNNFaceDetector)
    with pytest.raises(ValueError, match="choose one of cnn, haar"):
        make_detector("dlib")
    with pytest.raises(SystemExit) as exit_info:
        detect_cli.build_parser().parse_args(["--detector", "dlib"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert detect_cli.build_parser().parse_args(["--detector", "cnn"]).detector == "cnn" and "haar" in DETECTORS
    with pytest.raises(ValueError, match="WiderSearch.detector"):
        WiderSearch(detector="dlib")


def test_the_learned_detector_searches_a_size_range(astronaut):
    detector = CNNFaceDetector()
    (face, *_) = detector.detect(astronaut)
    assert all(d.box[2] <= face.box[2] / 3 * 1.2 for d in detector.detect(astronaut, min_face_size=40, max_face_size=face.box[2] / 3))
    assert detector.smallest_face((480, 640)) == pytest.approx(40)
    assert detector.smallest_face((3024, 4032)) == pytest.approx(0.025 * 3024)  # as the cascades'
    assert detector.smallest_face((3000, 12000)) == pytest.approx(20 * 12000 / detector.params["max_side"])  # capped


def test_the_learned_detector_first_finds_the_close_up_and_the_small_faces(astronaut):
    pipe = KeypointPipeline.from_pretrained(detector="cnn", threads=1)
    (face,) = pipe.detect(closeup(astronaut))
    assert face.box[2] > 800 and face.face_score > 0.9
    assert len(pipe.detect(astronaut)) >= 1
