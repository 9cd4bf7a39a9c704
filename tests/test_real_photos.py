"""Real photos: phone orientation, every result kept, float pictures, turned, dark and small faces, false faces.

Each case is built from scikit-image's public-domain astronaut portrait (``A``) at run time.
"""
from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline import detect_cli
from pipeline.data_300w import Faces300WDataset
from pipeline.no_faces import no_face_pictures
from data_load import apply_exif_orientation, read_image, read_keypoints_csv, to_uint8
from pipeline.evaluation import nme_interocular
from detector_architectures import face_found, make_detector
from pipeline.faces import face_roll
from pipeline.haar_search import NETWORK_SEARCH_MIN_FACE_SCORE, WiderSearch, grid_boxes
from pipeline.inference import GrayPyramid
from pipeline import keypoint_pipeline
from pipeline.keypoint_pipeline import KeypointPipeline
from conftest import SHARED_300W



@pytest.fixture(scope="module")
def upright(pipe, astronaut) -> np.ndarray:
    """The keypoints the pipeline gives the upright astronaut: the reference for her turned and darkened copies."""
    (face,) = pipe.detect(astronaut)
    return face.keypoints


def needs_face_score(pipe: KeypointPipeline):
    """Cases only a model with a learned face score passes: expected to fail (strictly) with one without it."""
    has_score = pipe.runner.layout.face_score if getattr(pipe.runner, "layout", None) is not None else False
    return pytest.mark.xfail(not has_score, reason="the flip check alone passes this false face: needs a model with a face score", strict=True)


def assert_the_astronaut(faces, truth: np.ndarray, limit: float = 0.05) -> None:
    assert len(faces) == 1, [np.round(f.box).tolist() for f in faces]
    assert nme_interocular(faces[0].keypoints[None], truth[None])[0] <= limit


def turned_about(image: np.ndarray, centre: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The picture turned by ``angle`` degrees counter-clockwise about ``centre`` on grey, and its 2 x 3 matrix."""
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderValue=(128, 128, 128)), matrix


# ---------------------------------------------------------------------------------------------------------
# 1. Phone photos: the EXIF orientation
# ---------------------------------------------------------------------------------------------------------
def write_phone_photo(path, astronaut: np.ndarray) -> np.ndarray:
    """The portrait A[0:440, 90:390] stored turned (np.rot90, k=1) in a JPEG whose orientation tag (6) turns it back."""
    portrait = astronaut[0:440, 90:390]
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(portrait, 1))).save(path, exif=exif, quality=95)
    return portrait


def test_a_phone_photo_is_read_as_a_viewer_shows_it(tmp_path, astronaut):
    portrait = write_phone_photo(tmp_path / "phone.jpg", astronaut)
    shown, stored = read_image(tmp_path / "phone.jpg"), read_image(tmp_path / "phone.jpg", as_stored=True)
    assert shown.shape == (440, 300, 3) and stored.shape == (300, 440, 3)
    assert np.abs(shown.astype(int) - portrait).mean() < 4


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_turns_the_picture_as_pillow_does(orientation):
    from PIL import ImageOps

    stored = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    picture = Image.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = orientation
    picture.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(picture))
    np.testing.assert_array_equal(apply_exif_orientation(stored, orientation), expected)


def test_the_phone_photo_has_its_face_in_the_pipeline_and_the_json(pipe, tmp_path, astronaut, capsys):
    write_phone_photo(tmp_path / "phone.jpg", astronaut)
    assert len(pipe.detect(tmp_path / "phone.jpg")) == 1
    assert detect_cli.main([str(tmp_path / "phone.jpg"), "--out", str(tmp_path / "out"), "--json", str(tmp_path / "f.jsonl")]) == 0
    (record,) = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert (record["width"], record["height"]) == (300, 440) and len(record["faces"]) == 1
    face = record["faces"][0]
    assert face["convention"] == pipe.convention and face["model"] == pipe.model_name


# ---------------------------------------------------------------------------------------------------------
# 2. Every input gets its own output
# ---------------------------------------------------------------------------------------------------------
def test_pictures_of_the_same_name_in_two_folders_keep_both_results(tmp_path, astronaut, capsys):
    for folder, picture in (("one", astronaut), ("two", astronaut[:, ::-1])):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "photo.png"), cv2.cvtColor(np.ascontiguousarray(picture), cv2.COLOR_RGB2BGR))
    inputs = [str(tmp_path / "one" / "photo.png"), str(tmp_path / "two" / "photo.png"), str(tmp_path / "one" / "photo.png")]
    assert detect_cli.main([*inputs, "--out", str(tmp_path / "out"), "--json", str(tmp_path / "f.jsonl")]) == 0
    records = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    outputs = [r["output"] for r in records]
    assert outputs == [str(tmp_path / "out" / "one" / "photo_keypoints.png"), str(tmp_path / "out" / "two" / "photo_keypoints.png")]
    first, second = (cv2.imread(o) for o in outputs)
    assert not np.array_equal(first, second)  # the second picture did not overwrite the first
    assert "1 named twice" in capsys.readouterr().out  # the picture named twice is annotated once


# ---------------------------------------------------------------------------------------------------------
# 3. Float pictures slightly above 1.0
# ---------------------------------------------------------------------------------------------------------
def test_a_float_picture_with_interpolation_overshoot_keeps_its_face(pipe, astronaut):
    enlarged = cv2.resize(astronaut.astype(np.float32) / 255, None, fx=1.25, fy=1.25, interpolation=cv2.INTER_CUBIC)
    assert 1.0 < enlarged.max() < 1.2
    assert len(pipe.detect(enlarged)) == 1
    np.testing.assert_array_equal(to_uint8(enlarged), to_uint8(np.clip(enlarged, 0, 1)))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0, 0.5, 1.0], [0, 128, 255]),  # the [0, 1] scale
        ([0.0, 0.5, 1.1], [0, 128, 255]),  # with overshoot, clipped
        ([0.0, 1.9, 2.0], [0, 255, 255]),  # still the [0, 1] scale up to 2.0
        ([0.0, 2.5, 200.0], [0, 2, 200]),  # the 0-255 scale
        ([np.nan, 0.5, np.inf], [0, 128, 255]),  # NaN is black, infinity is left out of the scale decision
    ],
)
def test_float_pictures_scale_rule(values, expected):
    np.testing.assert_array_equal(to_uint8(np.array(values, np.float32)), np.array(expected, np.uint8))


# ---------------------------------------------------------------------------------------------------------
# 4. --max-frames below 1 is an argument error
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_max_frames_below_one_is_an_argument_error(tmp_path, astronaut, value, capsys):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (512, 512))
    writer.write(cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    writer.release()
    with pytest.raises(SystemExit) as stopped:
        detect_cli.main(["--video", str(video), "--max-frames", value, "--out", str(tmp_path)])
    assert stopped.value.code == 2
    assert "at least 1" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# 5. Head roll: found and accurate at every 15 degrees and upside down
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("angle", [*range(-90, 91, 15), 180])
def test_a_turned_face_is_found_with_accurate_keypoints(pipe, astronaut, upright, angle):
    picture, matrix = turned_about(astronaut, upright.mean(axis=0), angle)
    truth = upright @ matrix[:, :2].T + matrix[:, 2]
    faces = pipe.detect(picture)
    assert len(faces) >= 1
    errors = nme_interocular(np.stack([f.keypoints for f in faces]), np.repeat(truth[None], len(faces), axis=0))
    assert errors.min() <= 0.05


def test_face_roll_is_the_eye_line_angle(upright):
    turned = (upright - upright.mean(axis=0)) @ cv2.getRotationMatrix2D((0.0, 0.0), -30.0, 1.0)[:, :2].T
    assert face_roll(turned) == pytest.approx(face_roll(upright) + 30.0, abs=0.01)


# ---------------------------------------------------------------------------------------------------------
# 6. Small faces in big photos
# ---------------------------------------------------------------------------------------------------------
def small_faces_canvas(astronaut: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Six copies of the astronaut's head, the face about 100 pixels tall, on a 4032 x 3024 canvas."""
    head = cv2.resize(astronaut[40:240, 130:330], (200, 200), interpolation=cv2.INTER_AREA)  # face ~100 px
    canvas = np.full((3024, 4032, 3), 110, np.uint8)
    places = [(400 + 1200 * (i % 3), 600 + 1400 * (i // 3)) for i in range(6)]
    for x, y in places:
        canvas[y : y + 200, x : x + 200] = head
    return canvas, places


def test_six_small_faces_in_a_twelve_megapixel_photo_are_found(pipe, astronaut):
    canvas, places = small_faces_canvas(astronaut)
    faces = pipe.detect(canvas)
    assert len(faces) == 6
    centres = sorted(tuple(np.round(f.keypoints.mean(axis=0) / 100).astype(int)) for f in faces)
    assert centres == sorted(tuple(np.round((np.array([x, y]) + 100) / 100).astype(int)) for x, y in places)


def test_the_smallest_face_is_an_option_of_the_api_and_the_command_line(tmp_path, astronaut, capsys):
    assert KeypointPipeline.from_pretrained(min_face_size=120).detector.params["min_face_size"] == 120
    # asked for, the smallest face holds in a big photo too, where the default is 2.5 % of its shorter side; the
    # learned detector reads a 4032-pixel photo at 1344 pixels at most (its bounded cost), so 60 pixels there
    assert KeypointPipeline.from_pretrained(min_face_size=40, detector="haar").detector.smallest_face((3024, 4032)) == 40
    assert KeypointPipeline.from_pretrained(min_face_size=40).detector.smallest_face((3024, 4032)) == 60
    assert KeypointPipeline.from_pretrained().detector.smallest_face((3024, 4032)) == pytest.approx(75.6)
    assert detect_cli.build_parser().parse_args(["--min-face", "60"]).min_face == 60


# ---------------------------------------------------------------------------------------------------------
# 7. Dark and backlit photos
# ---------------------------------------------------------------------------------------------------------
def test_a_dark_photo_has_its_face_with_accurate_keypoints(pipe, astronaut, upright):
    dark = (astronaut * 0.15).astype(np.uint8)
    assert_the_astronaut(pipe.detect(dark), upright)


# ---------------------------------------------------------------------------------------------------------
# 8. False faces
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("detector", ["haar", "cnn"])
def test_no_false_face_on_the_upside_down_astronaut(request, pipe, astronaut, upright, detector):
    """With the learned detector first she was read upright (face score 0.9975, flip error 0.0178) and kept as a
    sure face, so the searches that find her the right way up did not run (``LEARNED_MAX_FLIP_ERROR``)."""
    request.applymarker(needs_face_score(pipe))
    first = KeypointPipeline(pipe.runner, make_detector(detector, threads=1), second_stage=pipe.second_stage)
    picture, matrix = turned_about(astronaut, np.array([255.5, 255.5]), 180)
    assert_the_astronaut(first.detect(picture), upright @ matrix[:, :2].T + matrix[:, 2])


def test_no_false_face_on_the_shuttle_of_the_small_astronaut(request, pipe, astronaut, upright):
    request.applymarker(needs_face_score(pipe))
    small = cv2.resize(astronaut, (260, 260), interpolation=cv2.INTER_AREA)
    assert_the_astronaut(pipe.detect(small), upright * 260 / 512)


def test_a_picture_without_faces_gives_none_after_the_wider_search(pipe):
    from skimage import data

    assert pipe.detect(data.coffee()) == []


def test_the_wider_search_can_be_switched_off_or_always_run(astronaut, upright):
    dark = (astronaut * 0.15).astype(np.uint8)
    base = KeypointPipeline.from_pretrained(threads=1)
    never = KeypointPipeline(base.runner, make_detector("haar"), wider=WiderSearch(when="never"))
    assert never.detect(dark) == []  # the cascades' upright search misses her in the dark
    learned_only = KeypointPipeline(base.runner, base.detector, wider=WiderSearch(when="never"))
    assert_the_astronaut(learned_only.detect(dark), upright)  # the learned detector finds her without the wider search
    always = KeypointPipeline(base.runner, base.detector, wider=WiderSearch(when="always"))
    faces = always.detect(astronaut)
    assert nme_interocular(faces[0].keypoints[None], upright[None])[0] <= 0.01  # the upright face first
    with pytest.raises(ValueError, match="if_unsure"):
        WiderSearch(when="sometimes")


@pytest.mark.parametrize(
    ("flip_error", "face_score", "kept"),
    [
        (0.010, float("nan"), True),  # a model without a face score: the flip check alone
        (0.030, float("nan"), False),
        (0.010, 0.90, True),  # with a face score, both checks
        (0.010, 0.30, False),  # a symmetric pattern that is no face
        (0.030, 0.90, False),
    ],
)
def test_a_face_must_pass_the_face_score_and_the_flip_check(pipe, flip_error, face_score, kept):
    from pipeline.keypoint_pipeline import FLIP_ERROR_NO_FACE, MIN_FACE_SCORE
    from pipeline.tracking import FaceTracker

    assert MIN_FACE_SCORE == 0.5 and FLIP_ERROR_NO_FACE == 0.025
    assert pipe.is_face(flip_error, face_score) is kept
    assert FaceTracker(pipe)._is_face(flip_error, face_score) is kept


# ---------------------------------------------------------------------------------------------------------
# 9. Close-ups cut by the picture's border (the held-out 300-W count is benchmarks/faces_in_the_wild.py)
# ---------------------------------------------------------------------------------------------------------
def test_a_close_up_cut_by_the_border_is_found(pipe, astronaut, upright):
    close_up = cv2.resize(astronaut[80:220, 170:290], None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR)
    fast_only = KeypointPipeline(pipe.runner, make_detector("haar"), wider=WiderSearch(when="never"))
    assert fast_only.detect(close_up) == []  # the cascades' upright search misses her
    assert_the_astronaut(pipe.detect(close_up), (upright - np.array([170.0, 80.0])) * 2.0)


@pytest.mark.skipif(not SHARED_300W.is_dir(), reason="the 300-W crops are not beside the repository")
def test_held_out_faces_in_the_wild_are_found(pipe):
    validation = Faces300WDataset(SHARED_300W, "validation")
    samples = [validation[i] for i in range(len(validation))]
    found = [face_found([f.box for f in pipe.detect(s["image"])], s["keypoints"]) for s in samples]
    assert len(samples) == 303 and sum(found) >= 302, [s["name"] for s, ok in zip(samples, found) if not ok]


@pytest.mark.skipif(not SHARED_300W.is_dir(), reason="the 300-W crops are not beside the repository")
@pytest.mark.parametrize("name", ["afw/3858593140_2", "afw/79378097_6"])
def test_a_nearly_sure_learned_face_the_cascades_miss_is_kept(pipe, name):
    # a head bent down and a face near profile: face scores 0.999, flip errors 0.0144-0.0145, not sure by the learned
    # detector's limit (0.0136) and missed by the cascades; the default has no wider search to find them again
    validation = Faces300WDataset(SHARED_300W, "validation")
    (sample,) = [validation[i] for i in range(len(validation)) if validation.names[i] == name]
    assert pipe.wider.when == "never"
    faces = pipe.detect(sample["image"])
    assert len(faces) == 1 and face_found([faces[0].box], sample["keypoints"]) and pipe.learned_confirmed(faces[0])


@pytest.mark.skipif(not SHARED_300W.is_dir(), reason="the 300-W crops are not beside the repository")
@pytest.mark.parametrize("name, angle", [("lfpw_trainset/image_0486", 0.0), ("helen_trainset/1019068877_1", 180.0), ("afw/2030653815_1", 90.0)])
def test_a_face_whose_learned_box_or_roll_is_wrong_is_found_by_its_retries(pipe, name, angle, monkeypatch):
    from benchmarks.turned_faces import turned

    # each is found by one round of the retries alone: image_0486 (upright, read 25 degrees off) one roll class
    # away, 1019068877_1 upside down cut larger and higher, 2030653815_1 turned by 90 degrees at the opposite roll
    validation = Faces300WDataset(SHARED_300W, "validation")
    (sample,) = [validation[i] for i in range(len(validation)) if validation.names[i] == name]
    gray, keypoints = turned(cv2.cvtColor(sample["image"], cv2.COLOR_RGB2GRAY), sample["keypoints"], angle)

    def found() -> list:
        sure, doubtful = pipe._learned_pass(GrayPyramid(gray))
        return [face for face in sure + doubtful if face_found([face.box], keypoints) and pipe.learned_confirmed(face)]

    assert found()
    monkeypatch.setattr(keypoint_pipeline, "retried_detections", lambda *args, **kwargs: [])
    assert not found()


def test_beside_a_sure_face_a_small_picture_gets_no_cascade_search(pipe, real_data_dir, monkeypatch):
    # Ed_Smart_51 (195 x 157): cheek to cheek with a girl whose face is sure; the learned detector finds his face too
    names, truth = read_keypoints_csv(real_data_dir / "test_frames_keypoints.csv")
    picture = read_image(real_data_dir / "test" / "Ed_Smart_51.jpg", as_stored=True)
    monkeypatch.setattr(pipe.cascades, "search", lambda *args, **kwargs: pytest.fail("the cascades searched"))
    faces = pipe.detect(picture)
    assert face_found([f.box for f in faces], truth[list(names).index("Ed_Smart_51.jpg")]) and len(faces) == 2


def test_a_small_picture_gives_no_face_smaller_than_asked(pipe, real_data_dir):
    # the learned detector reads a 75 x 227 strip enlarged twice for its detail; the logo on it (26 px) is no face
    (strip,) = [picture for name, picture in no_face_pictures("measuring", real_data_dir) if name == "background:Andy_Roddick_21.jpg"]
    assert strip.shape[:2] == (75, 227) and pipe.detector.smallest_face(strip.shape) == 10.0
    assert pipe.detect(strip) == []
    assert pipe.detector.asked_face(strip.shape) == 40.0


def test_the_pictures_without_faces_get_at_most_one_face(pipe, real_data_dir):
    # the measuring part of the pictures without faces (its one face is a man in the background of Lindsey_Graham_00)
    pictures = no_face_pictures("measuring", real_data_dir)
    false = [name for name, picture in pictures for _ in pipe.detect(picture)]
    assert len(pictures) == 288 and len(false) <= 1, false


@pytest.mark.skipif(not SHARED_300W.is_dir(), reason="the 300-W crops are not beside the repository")
def test_the_learned_detector_finds_a_close_up_the_cascades_miss(pipe):
    validation = Faces300WDataset(SHARED_300W, "validation")
    (sample,) = [validation[i] for i in range(len(validation)) if validation.names[i] == "afw/4555082379_1"]
    cascades_only = KeypointPipeline(pipe.runner, make_detector("haar"), wider=WiderSearch(detector="haar", network=False))
    assert not face_found([f.box for f in cascades_only.detect(sample["image"])], sample["keypoints"])
    faces = pipe.detect(sample["image"])
    assert len(faces) == 1 and face_found([faces[0].box], sample["keypoints"])
    assert faces[0].face_score >= NETWORK_SEARCH_MIN_FACE_SCORE


@pytest.mark.parametrize("shape", [(160, 160), (480, 640), (3024, 4032)])
def test_grid_boxes_are_squares_inside_the_picture_from_a_third_of_it(shape):
    boxes = grid_boxes(shape, min_side=40)
    x, y, w, h = boxes.T
    assert len(boxes) > 0 and np.allclose(w, h)
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= shape[1] + 1e-3).all() and (y + h <= shape[0] + 1e-3).all()
    assert w.min() == pytest.approx(0.35 * min(shape)) and w.max() == pytest.approx(min(shape))
    assert len(grid_boxes((160, 160), min_side=100)) < len(grid_boxes((160, 160), min_side=40))  # none below min_side


# ---------------------------------------------------------------------------------------------------------
# Speed: the fast pass, and the thorough search where it leaves doubt
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "lost_by_the_fast_pass"),
    [
        ("Frank_Keating_40.jpg", False),  # one weak fast detection (4 windows), which the model's checks now pass
        ("Yuri_Fedotov_41.jpg", True),  # no fast detection at all: the thorough search looks everywhere
        ("Ed_Smart_51.jpg", True),  # cheek to cheek with a girl: the fast pass alone misses his face
    ],
)
def test_faces_the_fast_pass_misses_are_found_by_the_thorough_search_around_its_doubts(real_data_dir, name, lost_by_the_fast_pass):
    course = KeypointPipeline.from_pretrained(detector="haar", threads=1, convention="course", wider=WiderSearch(when="never"))
    names, truth = read_keypoints_csv(real_data_dir / "test_frames_keypoints.csv")
    keypoints = truth[list(names).index(name)]
    picture = read_image(real_data_dir / "test" / name, as_stored=True)
    assert face_found([f.box for f in course.detect(picture)], keypoints)
    fast_only = dataclasses.replace(course, recheck=False)
    assert face_found([f.box for f in fast_only.detect(picture)], keypoints) is not lost_by_the_fast_pass


def test_the_benchmark_pictures_of_640_by_480_have_every_face_and_no_false_one(real_data_dir):
    from benchmarks.pipeline_speed import compose, score, scenes, sources

    faces = sources(str(real_data_dir))
    pipe = KeypointPipeline.from_pretrained(threads=1)
    for name, shape, placements in scenes():
        if shape != (480, 640):
            continue
        picture, truths = compose(shape, faces, placements)
        assert score(pipe.detect(picture), truths) == (len(truths), 0), name
