"""The benchmark scripts run end to end on a small share of the data and print their figures."""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import flip_error  # noqa: E402
import grad_cam_peaks  # noqa: E402
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
