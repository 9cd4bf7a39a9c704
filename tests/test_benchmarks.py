"""The benchmark scripts run end to end on a small share of the data and print their figures."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_300W

from data_load import haar_box_from_keypoints, read_image
from models import make_runner
from pipeline.data_300w import Faces300WDataset
from pipeline.inference import SHIPPED_MODEL, predict_in_boxes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import epoch_time  # noqa: E402
import faces_in_the_wild  # noqa: E402
import flip_error  # noqa: E402
import grad_cam_peaks  # noqa: E402
import keypoint_passes  # noqa: E402
import label_offsets  # noqa: E402
import mediapipe_side_by_side  # noqa: E402
import pipeline_speed  # noqa: E402
import turned_faces  # noqa: E402
import video_fps  # noqa: E402


def test_video_benchmark_tracks_the_face_in_every_frame(real_data_dir, tmp_path, capsys):
    assert video_fps.main(["--data", str(real_data_dir), "--frames", "90", "--threads", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "tracking_input.mp4").is_file()
    assert re.search(r"tracking: \d+ frames per second", out)
    present = float(re.search(r"face present in ([\d.]+)% of frames", out).group(1))
    error = float(re.search(r"NME_io against the moved ground truth: mean ([\d.]+)", out).group(1))
    assert present > 80 and error < 0.15


def test_flip_error_benchmark_separates_faces_from_the_rest(real_data_dir, capsys):
    assert flip_error.main(["--data", str(real_data_dir), "--limit", "12"]) == 0
    out = capsys.readouterr().out
    medians = {
        name.strip(): float(values.split(" / ")[1])
        for name, values in re.findall(r"^\s+([a-z ]+?)\s+n=\s*\d+\s+(.+)$", out, flags=re.MULTILINE)
    }
    assert set(medians) == {"followed face", "background", "detected face", "false detection", "random box"}
    assert max(medians["followed face"], medians["detected face"]) < min(medians["background"], medians["random box"])
    assert "<- FLIP_ERROR_NO_FACE" in out


def test_map_peak_benchmark_prints_both_methods_for_each_keypoint(real_data_dir, capsys):
    assert grad_cam_peaks.main(["--data", str(real_data_dir), "--faces", "2"]) == 0
    out = capsys.readouterr().out
    assert "layer features." in out and "2 test faces" in out
    for method in ("grad-cam", "occlusion"):
        table = out.split(f"\n{method}\n", 1)[1]
        rows = re.findall(r"^(nose tip \(30\)|eye corner \(36\)|mouth corner \(48\)|chin \(8\))\s+([\d.]+)\s+(\d+)%\s+(\d+)%$", table, re.MULTILINE)
        assert len(rows) >= 4 and all(float(median) >= 0 and 0 <= int(share) <= 100 for _, median, share, _ in rows[:4])


def test_keypoint_pass_benchmark_shows_what_re_crops_buy(real_data_dir, monkeypatch, capsys):
    monkeypatch.setattr(keypoint_passes, "SETTINGS", [(True, 0, 0.0), (True, 3, 0.0), (True, 5, 0.01)])
    assert keypoint_passes.main(["--data", str(real_data_dir), "--data-300w", str(real_data_dir / "no-300w"), "--limit", "30"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^on\s+(\d)\s+([\d.]+)\s+([\d.]+), [\d.]+ %, ([\d.]+), +[\d.]+ ms$", out, re.MULTILINE)
    assert [(steps, tolerance) for steps, tolerance, _, _ in rows] == [("0", "0.0"), ("3", "0.0"), ("5", "0.01")]
    nme = [float(error) for _, _, error, _ in rows]
    passes = [float(count) for _, _, _, count in rows]
    assert nme[1] < nme[0] and passes == [1.0, 4.0, passes[2]] and passes[2] < 6  # faces stop once settled


def test_speed_benchmark_times_the_close_ups_for_both_detectors(real_data_dir, capsys):
    assert pipeline_speed.main(["--data", str(real_data_dir), "--repeats", "1", "--only", "close-up 2048x1536"]) == 0
    out = capsys.readouterr().out
    assert "default (cnn)" in out and "detector haar" in out
    row = re.search(r"^close-up 2048x1536, course face 0.33\s+(.+)$", out, re.MULTILINE).group(1)
    assert row.count("1/1, 0 false") == 3  # found by both detectors and with the wider search if unsure ("wider always" skipped)
    assert re.search(r"^all: found, false, median / worst CPU ms\s+1/1, 0 false, \d+ / \d+ ms", out, re.MULTILINE)


def test_epoch_time_benchmark_times_an_epoch_with_and_without_the_crop_cache(tiny_dataset, tiny_300w, isolated_cache, capsys):
    assert epoch_time.main(["--data", str(tiny_dataset), "--data-300w", str(tiny_300w), "--preset", "wild-cpu", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    crops = int(re.search(r"preset wild-cpu: (\d+) crops an epoch", out).group(1))
    assert crops > 7 * 2  # course faces, the 300-W faces twice, the no-face crops
    seconds = {name: float(value) for name, value in re.findall(r"^  ([a-z ,()0-9]+?):\s+([\d.]+) s", out, re.MULTILINE)}
    assert len(seconds) == 4 and all(value > 0 for value in seconds.values())
    without, with_cache = map(float, re.search(r"epoch without the cache: ([\d.]+) s; with it: ([\d.]+) s", out).groups())
    parts = list(seconds.values())
    # the totals are the parts they name: cutting + batches + network, and batches + network
    assert without == pytest.approx(parts[0] + parts[2] + parts[3], abs=0.2) and with_cache == pytest.approx(parts[2] + parts[3], abs=0.2)
    # the crops an epoch reads are in the cache: a second run cuts nothing
    cached = sorted(isolated_cache.glob("crops_*.npz"))
    assert cached and not list(isolated_cache.glob("*.tmp*"))


def test_label_offset_benchmark_measures_along_and_across_the_eye_line(tiny_dataset, tiny_300w, capsys):
    truth = np.array([[[0.0, 0.0]] * 36 + [[10.0, 20.0]] + [[0.0, 0.0]] * 8 + [[30.0, 20.0]] + [[0.0, 0.0]] * 22])
    along, across = label_offsets.face_frame_errors(truth + np.array([1.0, 2.0]), truth)  # 1/20 along, 2/20 across (down)
    np.testing.assert_allclose(along, 0.05)
    np.testing.assert_allclose(across, 0.1)
    assert label_offsets.main(["--data", str(tiny_dataset), "--data-300w", str(tiny_300w)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^held-out 300-W \(1 faces, 300w convention\): x [+-][\d.]+ \(se [\d.]+\), y [+-][\d.]+", out, re.MULTILINE)
    assert re.search(r"^course test \(6 faces, course convention\): x [+-][\d.]+", out, re.MULTILINE)


@pytest.mark.skipif(not SHARED_300W.is_dir(), reason="the 300-W crops are not beside the repository")
def test_the_shipped_model_has_no_systematic_offset_on_held_out_300w_faces():
    # Mirrored training crops once taught the model a mean offset along the eye line of -0.0074 inter-ocular
    # distances on these faces (benchmarks/label_offsets.py); learned flip offsets removed it at the source (+0.0009).
    held_out = Faces300WDataset(SHARED_300W, "validation")
    truth = held_out.keypoints
    runner = make_runner(SHIPPED_MODEL, threads=1)
    pictures = [read_image(face.picture) for face in held_out.faces]
    predicted = predict_in_boxes(runner, pictures, [haar_box_from_keypoints(t) for t in truth], True, "300w")
    along, across = label_offsets.face_frame_errors(predicted, truth)
    assert len(truth) == 303
    assert abs(along.mean()) < 0.004 and abs(across.mean()) < 0.004, (along.mean(), across.mean())


def fake_mediapipe(folder: Path, body: str) -> Path:
    """A folder holding a stand-in ``mediapipe`` package (``body``) for the side-by-side benchmark's worker."""
    package = folder / "mediapipe"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body)
    return folder


# Face Mesh that takes 5 ms of CPU and finds one face, in the picture's top-left corner, in every picture (false)
CORNER_FACE_MESH = """
import time
import types

__version__ = "stand-in"


class FaceMesh:
    def __init__(self, **options):
        pass

    def process(self, picture):
        end = time.process_time() + 0.005
        while time.process_time() < end:
            pass
        face = types.SimpleNamespace(landmark=[types.SimpleNamespace(x=0.01 + 0.02 * (i % 3), y=0.01 + 0.02 * (i % 5)) for i in range(468)])
        return types.SimpleNamespace(multi_face_landmarks=[face])

    def close(self):
        pass


solutions = types.SimpleNamespace(face_mesh=types.SimpleNamespace(FaceMesh=FaceMesh))
"""


@pytest.mark.parametrize("detector", ["haar", "cnn"])
def test_side_by_side_benchmark_scores_and_times_both_sides(real_data_dir, tmp_path, monkeypatch, capsys, detector):
    monkeypatch.setenv("PYTHONPATH", str(fake_mediapipe(tmp_path, CORNER_FACE_MESH)))
    argv = ["--data", str(real_data_dir), "--repeats", "2", "--only", "close-up 2048x1536", "--detector", detector,
            "--mediapipe-python", sys.executable]
    assert mediapipe_side_by_side.main(argv) == 0
    out = capsys.readouterr().out
    assert f"The project's pipeline (detector {detector}, 1 thread(s)) and MediaPipe stand-in Face Mesh" in out
    row = re.search(r"^close-up 2048x1536, course face 0.33\s+(.+)$", out, re.MULTILINE).group(1)
    ours, theirs, ratio = re.fullmatch(r"(1/1, 0 false, +[\d.]+ ms \(\d+\)) +(0/1, 1 false, +[\d.]+ ms \(\d+\)) +([\d.]+)", row).groups()
    ours_ms, theirs_ms = (float(re.search(r"([\d.]+) ms", c).group(1)) for c in (ours, theirs))
    assert theirs_ms >= 5 and float(ratio) == pytest.approx(ours_ms / theirs_ms, rel=0.03)  # of the printed times
    assert re.search(rf"^all, project \({detector}\): 1/1 found, 0 false, median [\d.]+ ms, worst [\d.]+ ms \(CPU\)$", out, re.MULTILINE)
    assert re.search(r"^all, MediaPipe stand-in: 0/1 found, 1 false, median [\d.]+ ms, worst [\d.]+ ms \(CPU\)$", out, re.MULTILINE)
    assert re.search(r"^ratio project / MediaPipe: median [\d.]+, worst [\d.]+, median of the per-picture ratios [\d.]+$", out, re.MULTILINE)


def test_side_by_side_benchmark_reads_face_mesh_as_68_keypoints():
    from reference_landmarkers import MESH_TO_IBUG68

    truth = np.array([[120.0 + 3 * (k % 17), 100.0 + 4 * (k // 17)] for k in range(68)])
    truth[36], truth[45] = (100.0, 110.0), (160.0, 110.0)  # outer eye corners 60 px apart
    mesh = np.zeros((468, 2))
    mesh[MESH_TO_IBUG68] = truth  # (one vertex serves two mouth points: one of them moves a few pixels)
    faces = mediapipe_side_by_side.mesh_faces([mesh.tolist(), (mesh + 300).tolist()])
    assert [f.keypoints.shape for f in faces] == [(68, 2), (68, 2)]
    assert mediapipe_side_by_side.tally(faces, [truth]) == (1, 1)  # the face on the truth found, the moved one false
    assert mediapipe_side_by_side.tally(faces, None) == (0, 2)  # pictures without truth: faces counted


@pytest.mark.parametrize("python, says", [
    ("stand-in", "MediaPipe is not installed for"),
    ("missing", "cannot run"),
])
def test_side_by_side_benchmark_without_mediapipe_says_how_to_install_it(tmp_path, monkeypatch, capsys, python, says):
    monkeypatch.setenv("PYTHONPATH", str(fake_mediapipe(tmp_path, "raise ImportError(\"No module named 'mediapipe'\")\n")))
    executable = sys.executable if python == "stand-in" else str(tmp_path / "no-python")
    assert mediapipe_side_by_side.main(["--only", "close-up 2048x1536", "--mediapipe-python", executable]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"error: {says}") and "pip install -r requirements-bench.txt" in line
    assert "--mediapipe-python" in line and "Traceback" not in captured.err


def test_faces_in_the_wild_enlarges_a_picture_with_its_keypoints():
    image = np.zeros((20, 30), np.uint8)
    image[5, 7] = 255
    bigger, points = faces_in_the_wild.enlarged(image, np.array([[7.0, 5.0]]), 4)
    assert bigger.shape == (80, 120)
    ys, xs = np.nonzero(bigger)
    weights = bigger[ys, xs].astype(np.float64)
    assert np.allclose(points[0], [np.average(xs, weights=weights), np.average(ys, weights=weights)])


def test_faces_in_the_wild_prints_the_error_of_the_enlarged_faces_found(tiny_300w, capsys):
    assert faces_in_the_wild.main(["--data-300w", str(tiny_300w), "--limit", "2", "--enlarge", "3"]) == 0
    out = capsys.readouterr().out  # the synthetic faces, drawn at 160 px, are found at 480 px too
    assert re.search(r"^all \(all\)\s+2 / 2\s+found", out, re.MULTILINE)
    assert float(re.search(r"^NME_io of the faces found: ([\d.]+) \(median", out, re.MULTILINE).group(1)) < 0.2
    with pytest.raises(SystemExit):
        faces_in_the_wild.main(["--data-300w", str(tiny_300w), "--enlarge", "0"])
    assert "--enlarge must be a positive factor" in capsys.readouterr().err


def test_every_setting_of_the_speed_benchmark_has_the_shipped_second_stage(pipe):
    # the other detector and the wider-search settings were once built without it, and timed faster for that
    settings = pipeline_speed.compared_settings(pipe, threads=1)
    assert len(settings) == 4 and pipe.second_stage is not None
    assert all(setting.second_stage is pipe.second_stage and setting.runner is pipe.runner for setting in settings.values())


def test_turned_faces_benchmark_counts_the_astronaut_at_each_roll(capsys):
    assert turned_faces.main(["--every", "90"]) == 0
    out = capsys.readouterr().out
    rolls = re.findall(r"^\s*(-?[\d.]+) deg:\s+(\d+) / 1 found,\s+(\d+) read the right way", out, re.MULTILINE)
    assert [float(roll) for roll, _, _ in rolls] == [-180.0, -90.0, 0.0, 90.0]
    assert all(found == right == "1" for _, found, right in rolls)  # the real-photo tests hold these rolls too
    assert re.search(r"^all: 4 / 4 found, 4 read the right way$", out, re.MULTILINE)


def test_turned_faces_benchmark_moves_the_keypoints_with_the_picture():
    picture = np.zeros((40, 60), np.uint8)
    picture[10, 45] = 255
    moved, points = turned_faces.turned(picture, np.array([[45.0, 10.0]]), 90.0)
    ys, xs = np.nonzero(moved)
    weights = moved[ys, xs].astype(np.float64)
    assert np.allclose(points[0], [np.average(xs, weights=weights), np.average(ys, weights=weights)], atol=0.05)
