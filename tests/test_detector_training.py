"""The learned detector's training pieces (``pipeline/detector_training.py``): the five points a pasted face brings,
in the right order when it is mirrored or turned, their targets, weights of a model without them, hard negatives."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import MEAN_SHAPE_68, face_keypoints
from data_load import haar_box_from_keypoints
from detector_architectures.cnn import (
    DEFAULT_WEIGHTS, POINT_COUNT, ROLL_BINS, STRIDE, build_network, decode, eye_line_angle, five_points, output_layout, roll_bin,
    roll_of, stride_of,
)
from pipeline import detector_training
from pipeline.detector_training import Paster, face_matrix, load_weights, mine_hard_negatives, roll_angle, targets

FACE = face_keypoints((40.0, 50.0, 100.0, 120.0))


def test_five_points_are_the_eye_centres_the_nose_tip_and_the_mouth_corners():
    five = five_points(FACE)
    np.testing.assert_allclose(five[0], FACE[36:42].mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(five[1], FACE[42:48].mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(five[2:], FACE[[30, 48, 54]], atol=1e-4)
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]  # the subject's right is on the image's left


def pasted(angle: float, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
    """The box and five points a face pasted at ``angle`` degrees (mirrored or not) brings to a 192-px canvas."""
    picture = np.full((220, 200), 128, np.uint8)
    paster = Paster(np.zeros((192, 192), np.float32))
    paster.paste(picture, face_matrix(FACE, 60.0, (96.0, 90.0), angle, mirror), np.random.default_rng(0), "rect", FACE)
    box, _, five = paster.faces[0]
    return box, five


@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("angle", [0.0, 35.0, 90.0, 180.0, -120.0])
def test_a_pasted_face_brings_its_upright_box_and_its_five_points_in_order(angle, mirror):
    box, five = pasted(angle, mirror)
    # the box is the upright face's (side 60), turned about its centre: same centre and side at every roll
    np.testing.assert_allclose(box, (66.0, 60.0, 60.0, 60.0), atol=1e-3)
    # the right eye stays the subject's right: the eye line points along the roll, mirrored or not
    right, left = five[0], five[1]
    roll = np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0]))
    upright_roll = np.degrees(np.arctan2(*(five_points(FACE)[1] - five_points(FACE)[0])[::-1]))
    expected = angle + (-upright_roll if mirror else upright_roll)
    assert abs((roll - expected + 180) % 360 - 180) < 1.0
    # the mouth lies below the eyes as the face is turned: on the side the roll says
    down = np.array([-np.sin(np.radians(roll)), np.cos(np.radians(roll))])
    assert (five[3:].mean(axis=0) - five[:2].mean(axis=0)) @ down > 0


def test_targets_regress_the_points_as_offsets_from_the_centre_in_sides():
    box, five = pasted(90.0, False)
    target = targets([box], [True], [five], 192, STRIDE)
    assert target["regress"].shape == (9, 5 + 2 * POINT_COUNT)
    cells = {tuple(c): row for c, row in zip(target["centres"], target["regress"])}
    centre = box[:2] + box[2] / 2
    row = cells[(int(centre[1] / STRIDE), int(centre[0] / STRIDE))]
    assert row[-1] == 1.0  # the centre cell at full weight, its neighbours less
    np.testing.assert_allclose(row[3:-2].reshape(-1, 2) * box[2] + centre, five, atol=1e-3)
    assert row[-2] == roll_bin(eye_line_angle(five)) == 2  # turned by 90 degrees: the third class of eight
    np.testing.assert_allclose(row[0], np.log(60.0 / 16.0), atol=1e-5)


def test_weights_without_the_points_load_with_the_points_outputs_at_zero(tmp_path):
    torch.manual_seed(0)
    old = build_network(points=0, roll_bins=0)
    path = tmp_path / "old.pt"
    torch.save({"state_dict": old.state_dict(), "metadata": {}}, path)
    new = build_network()
    load_weights(new, str(path))
    image = torch.rand(1, 1, 64, 64) * 255
    old.eval(), new.eval()
    with torch.no_grad():
        a, b = old(image), new(image)
    assert b.shape[1] == 4 + 2 * POINT_COUNT + ROLL_BINS
    assert output_layout(b.shape[1]) == (POINT_COUNT, ROLL_BINS) and output_layout(4) == (0, 0)
    for other in (7, 4 + 2 * POINT_COUNT):  # a model with points has roll classes too
        with pytest.raises(ValueError):
            output_layout(other)
    torch.testing.assert_close(a, b[:, :4])
    assert torch.count_nonzero(b[:, 4:]) == 0


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no trained face detector in saved_models/")
@pytest.mark.parametrize("stride", [4, 8])
def test_the_targets_and_the_decoding_place_a_face_at_either_stride(stride):
    box, five = pasted(0.0, False)
    target = targets([box], [True], [five], 192, stride)
    assert target["heat"].shape == (192 // stride, 192 // stride)
    # a map holding the targets decodes back to the face's box and points
    output = np.full((4 + 2 * POINT_COUNT + ROLL_BINS, 192 // stride, 192 // stride), -9.0, np.float32)
    output[0][target["heat"] == 1.0] = 9.0
    for (i, j), row in zip(target["centres"], target["regress"]):
        output[1:4 + 2 * POINT_COUNT, i, j] = row[:3 + 2 * POINT_COUNT]
        output[4 + 2 * POINT_COUNT + int(row[-2]), i, j] = 9.0
    boxes, scores, points, _ = decode(output, 0.5, stride=stride)
    assert len(scores) == 1
    np.testing.assert_allclose(boxes[0], box, atol=1e-3)
    np.testing.assert_allclose(points[0], five, atol=1e-3)


def test_a_stride_4_model_gives_its_weights_to_a_stride_8_network(tmp_path):
    torch.manual_seed(0)
    fine = build_network(stride=4).eval()
    path = tmp_path / "fine.pt"
    torch.save({"state_dict": fine.state_dict(), "metadata": {}}, path)
    coarse = build_network(stride=8).eval()
    load_weights(coarse, str(path))
    assert (stride_of(fine.state_dict()), stride_of(coarse.state_dict())) == (4, 8)
    image = torch.rand(1, 1, 64, 64) * 255
    with torch.no_grad():
        assert coarse(image).shape[2:] == (8, 8) and fine(image).shape[2:] == (16, 16)
    # the backbone, the coarser levels of the top-down path and the head are the fine model's, level by level
    np.testing.assert_array_equal(coarse.lateral[0][0].weight.detach(), fine.lateral[1][0].weight.detach())
    np.testing.assert_array_equal(coarse.smooth[0].body[1][0].weight.detach(), fine.smooth[1].body[1][0].weight.detach())
    np.testing.assert_array_equal(coarse.head[1].weight.detach(), fine.head[1].weight.detach())
    # a coarser model cannot stand in for a finer one
    torch.save({"state_dict": coarse.state_dict(), "metadata": {}}, path)
    with pytest.raises(ValueError, match="coarser stride"):
        load_weights(build_network(stride=4), str(path))


def test_hard_negatives_are_cut_around_what_the_model_takes_for_a_face(astronaut):
    import cv2

    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    cuts = mine_hard_negatives({"backgrounds": [gray, np.full((200, 300), 90, np.uint8)]}, DEFAULT_WEIGHTS, log=lambda _: None)
    assert cuts  # the model sees her face; the plain picture gives nothing
    side = haar_box_from_keypoints(face_keypoints((180.0, 70.0, 90.0, 100.0)))[2]  # about her face's size
    assert any(0.8 * 1.5 * side < min(cut.shape) <= max(cut.shape) < 2.0 * 1.5 * side for cut in cuts)
    assert mine_hard_negatives({"backgrounds": [gray]}, None) == []


@pytest.mark.parametrize("angle, expected", [(0.0, 0), (22.0, 0), (23.0, 1), (-90.0, 6), (180.0, 4), (-170.0, 4), (160.0, 4)])
def test_roll_classes_are_bins_of_45_degrees_about_their_centres(angle, expected):
    assert roll_bin(angle) == expected


def test_the_roll_is_the_eye_line_inside_its_class_else_the_class_centre():
    five = five_points(FACE)
    turned = five @ np.array([[0.0, -1.0], [1.0, 0.0]]).T  # turned by 90 degrees as seen: eye line at about 90
    line = float(eye_line_angle(turned))
    assert roll_of(turned[None], np.array([2]))[0] == pytest.approx(line)  # the class agrees: the line's angle
    assert roll_of(turned[None], np.array([6]))[0] == pytest.approx(-90.0)  # the class says the other way up


def test_mean_shape_is_upright():  # the fixture the cases above build on
    assert MEAN_SHAPE_68[36:42, 0].mean() < MEAN_SHAPE_68[42:48, 0].mean()


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_the_share_of_faces_at_any_roll_is_what_it_is_asked_for(share):
    rng = np.random.default_rng(0)
    rolls = np.array([roll_angle(rng, share) for _ in range(2000)])
    turned = np.mean((np.abs(rolls) > 95) & (np.abs(rolls) < 120))  # neither near upright nor near upside down
    assert turned == 0.0 if share == 0.0 else turned == pytest.approx(25 / 180, abs=0.03)


def test_a_share_of_faces_at_any_roll_outside_0_to_1_is_one_line_of_error(capsys):
    with pytest.raises(SystemExit):
        detector_training.main(["--any-roll", "1.5"])
    assert "--any-roll is a share of the faces" in capsys.readouterr().err
