"""Reading faces annotated in the 300-W layout, and the fixed validation split."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline import data_300w
from pipeline.data_300w import Faces300WDataset, photo_of, read_pts, resolve_300w_dirs, scan_folder, validation_photos
from data_load import DataError
from conftest import SHARED_300W



def write_pts(path: Path, points: np.ndarray, header: str = "version: 1\nn_points:  68\n{\n") -> None:
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in points)
    path.write_text(f"{header}{body}\n}}\n")


def shape(offset: float = 0.0) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    return np.stack([40 + 20 * np.cos(angles) + offset, 40 + 25 * np.sin(angles)], axis=1).astype(np.float32)


def write_picture(path: Path, size: tuple[int, int] = (80, 90)) -> None:
    cv2.imwrite(str(path), np.full(size, 128, np.uint8))


def test_read_pts_is_zero_based(tmp_path):
    points = shape()
    write_pts(tmp_path / "a.pts", points + 1)  # 300-W files count pixels from 1
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts"), points, atol=1e-3)


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("version: 1\nn_points: 68\n" + "1 2\n" * 68 + "}\n", "header"),
        ("version: 1\nn_points: 5\n{\n" + "1 2\n" * 5 + "}\n", "5 points"),
        ("version: 1\nn_points: 68\n{\n" + "1 2\n" * 67 + "}\n", "67 points"),
        ("version: 1\nn_points: 68\n{\n" + "1 2\n" * 67 + "1 x\n}\n", "two numbers"),
        ("", "header"),
    ],
)
def test_read_pts_rejects_a_bad_file_in_one_line_naming_it(tmp_path, text, complaint):
    path = tmp_path / "bad.pts"
    path.write_text(text)
    with pytest.raises(DataError) as error:
        read_pts(path)
    message = str(error.value)
    assert str(path) in message and complaint in message and "\n" not in message


def test_a_folder_loads_around_its_bad_files(tmp_path):
    for name in ("good_a", "good_b", "bad_count", "no_picture"):
        points = shape()[:60] if name == "bad_count" else shape()
        header = "version: 1\nn_points:  60\n{\n" if name == "bad_count" else "version: 1\nn_points:  68\n{\n"
        write_pts(tmp_path / f"{name}.pts", points + 1, header)
        if name != "no_picture":
            write_picture(tmp_path / f"{name}.jpg")
    warnings: list[str] = []
    faces = scan_folder(tmp_path, warnings.append)
    assert [face.name for face in faces] == ["good_a", "good_b"]
    assert len(warnings) == 2
    assert any("bad_count.pts" in w and "60 points" in w for w in warnings)
    assert any("no_picture.pts" in w and "no picture" in w for w in warnings)


def test_faces_of_one_photo_find_a_shared_or_an_own_picture(tmp_path):
    # NAME_1.pts / NAME_2.pts share NAME.jpg (some releases); OTHER_1.pts has OTHER_1.png (others)
    write_picture(tmp_path / "group.jpg")
    write_pts(tmp_path / "group_1.pts", shape() + 1)
    write_pts(tmp_path / "group_2.pts", shape(10) + 1)
    write_picture(tmp_path / "other_1.png")
    write_pts(tmp_path / "other_1.pts", shape() + 1)
    faces = {face.name: face for face in scan_folder(tmp_path)}
    assert faces["group_1"].picture.name == faces["group_2"].picture.name == "group.jpg"
    assert faces["group_1"].photo == faces["group_2"].photo == "group"
    assert faces["other_1"].picture.name == "other_1.png"


def test_photo_names():
    assert photo_of("111076519_2") == "111076519"
    assert photo_of("image_0001") == "image_0001"  # LFPW numbers photos, not faces
    assert photo_of("plain") == "plain"


def test_pictures_are_read_as_stored_whatever_their_exif_orientation(tmp_path):
    from PIL import Image

    stored = np.zeros((40, 60), np.uint8)
    stored[:, :30] = 255  # left half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees to display"
    Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    write_pts(tmp_path / "turned.pts", shape() + 1)
    image = Faces300WDataset(tmp_path)[0]["image"]
    assert image.shape == (40, 60, 3)
    assert image[:, :25].mean() > 200 and image[:, 35:].mean() < 50


def test_several_folders_combine_and_a_parent_stands_for_its_folders(tmp_path):
    for folder, count in (("one", 3), ("two", 2)):
        (tmp_path / folder).mkdir()
        for i in range(count):
            write_picture(tmp_path / folder / f"f{i}.jpg")
            write_pts(tmp_path / folder / f"f{i}.pts", shape(i) + 1)
    assert len(Faces300WDataset([tmp_path / "one", tmp_path / "two"])) == 5
    assert len(Faces300WDataset(tmp_path)) == 5
    joined = os.pathsep.join([str(tmp_path / "one"), str(tmp_path / "two")])
    assert Faces300WDataset(joined).names[:1] == ["one/f0"]


def test_missing_folder_and_missing_setting_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="does not exist"):
        resolve_300w_dirs(tmp_path / "nowhere")
    monkeypatch.delenv(data_300w.DATA_300W_ENV_VAR, raising=False)
    with pytest.raises(DataError, match=data_300w.DATA_300W_ENV_VAR):
        resolve_300w_dirs(None)


def test_validation_split_keeps_photos_whole_and_takes_fifteen_percent(tmp_path):
    faces = []
    for folder, photos in (("a", 40), ("b", 20)):
        for p in range(photos):
            for k in range(1, 3 if p % 3 == 0 else 2):  # every third photo holds two faces
                faces.append(data_300w.Face300W(folder, f"{p}_{k}", str(p), tmp_path / "x.jpg", shape()))
    held = validation_photos(faces)
    assert sum(folder == "a" for folder, _ in held) == 6 and sum(folder == "b" for folder, _ in held) == 3
    assert validation_photos(list(reversed(faces))) == held  # names decide, not order
    assert validation_photos(faces, seed=1) != held


@pytest.mark.skipif(not SHARED_300W.is_dir(), reason="the 300-W crops are not beside the repository")
def test_the_written_validation_list_is_what_the_rule_gives():
    written = [line for line in data_300w.VALIDATION_LIST.read_text().splitlines() if line and not line.startswith("#")]
    validation = Faces300WDataset(SHARED_300W, "validation")
    training = Faces300WDataset(SHARED_300W, "training")
    assert sorted(validation.names) == written
    assert len(validation) + len(training) == 2012
    assert not {(f.folder, f.photo) for f in validation.faces} & {(f.folder, f.photo) for f in training.faces}
    assert 0.13 < len(validation) / 2012 < 0.17
