"""The main job over a collection: folders and lists, the results file (resume, a killed run), workers, progress,
the annotated pictures' formats, HEIC/HEIF, exit codes, and the same job on Ray."""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from data_load import READABLE_FORMATS, DataError, read_image
from pipeline import batch, detect_cli

REPO_DIR = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = detect_cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"expected one error line, got {err!r}"
    return lines[0]


def read_jsonl(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 92) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return path


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def small(astronaut) -> np.ndarray:
    """The astronaut at 256 x 256: a face found in a tenth of a second."""
    return cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)


@pytest.fixture
def collection(tmp_path, small) -> Path:
    """A folder as people have them: two photo.jpg in different sub-folders, a PNG, a text file, a hidden file,
    a hidden folder, and a picture that is broken."""
    root = tmp_path / "photos"
    write_jpeg(root / "day1" / "photo.jpg", small)
    write_jpeg(root / "day2" / "photo.jpg", small[:, ::-1])
    write_png(root / "drawing.png", small)
    (root / "notes.txt").write_text("not a picture")
    (root / ".DS_Store").write_bytes(b"\x00")
    write_jpeg(root / ".thumbnails" / "photo.jpg", small)
    (root / "day2" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return root


# ---------------------------------------------------------------------------------------------------------
# 1. Folders and lists
# ---------------------------------------------------------------------------------------------------------
def test_a_folder_is_searched_and_its_outputs_keep_the_sub_folders(capsys, tmp_path, collection):
    out, results = tmp_path / "out", tmp_path / "faces.jsonl"
    code, printed, err = run_cli(capsys, collection, "--out", out, "--json", results, "--workers", "1")
    assert code == 1  # the broken picture
    assert "4 pictures" in printed and "skipped 2 files: 1 hidden; 1 not a picture file (.txt 1)" in printed
    assert one_error_line(err).endswith("cut.jpg is a damaged JPEG file that cannot be decoded: replace or remove the file.")
    records = {Path(r["image"]).relative_to(collection).as_posix(): r for r in read_jsonl(results)}
    assert sorted(records) == ["day1/photo.jpg", "day2/cut.jpg", "day2/photo.jpg", "drawing.png"]
    assert "error" in records["day2/cut.jpg"] and "faces" not in records["day2/cut.jpg"]
    outputs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert outputs == ["day1/photo_keypoints.jpg", "day2/photo_keypoints.jpg", "drawing_keypoints.png"]
    assert records["day1/photo.jpg"]["output"] == str(out / "day1" / "photo_keypoints.jpg")
    assert not np.array_equal(cv2.imread(str(out / "day1" / "photo_keypoints.jpg")), cv2.imread(str(out / "day2" / "photo_keypoints.jpg")))


def test_a_list_of_paths_a_file_named_twice_and_the_output_folder_inside_the_input(capsys, tmp_path, collection, monkeypatch):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my pictures\n{collection / 'day1' / 'photo.jpg'}\n\n{collection / 'drawing.png'}\n")
    out = collection / "annotated"
    write_jpeg(out / "old_keypoints.jpg", np.zeros((20, 20, 3), np.uint8))  # an earlier run's output, not an input
    code, printed, _ = run_cli(capsys, collection / "day1", "--from-list", listing, "--out", out, "--no-pictures", "--json", tmp_path / "a.jsonl")
    assert code == 0
    assert [Path(r["image"]).name for r in read_jsonl(tmp_path / "a.jsonl")] == ["photo.jpg", "drawing.png"]
    assert "1 named twice" in printed
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{collection}\n"))
    code, printed, _ = run_cli(capsys, "--from-list", "-", "--out", out, "--json", tmp_path / "b.jsonl")
    assert code == 1 and "1 in the output folder" in printed  # cut.jpg fails; annotated/ is not searched
    assert not any("annotated" in r["image"] for r in read_jsonl(tmp_path / "b.jsonl"))


def test_output_paths_never_collide(tmp_path):
    pictures = ["trip/a/photo.jpg", "trip/b/photo.jpg", "trip/b/Photo.JPG", "trip/b/photo.heic", "trip/b/photo.png", "trip/scan.tif"]
    jobs = batch.plan_jobs(pictures, tmp_path / "out", None)
    outputs = [Path(job.output).relative_to(tmp_path / "out").as_posix() for job in jobs]
    assert outputs == [
        "a/photo_keypoints.jpg",
        "b/photo_keypoints.jpg",
        "b/Photo_2_keypoints.JPG",  # a name that differs only in case: one file on some file systems
        "b/photo_3_keypoints.jpg",  # HEIC photos become JPEG
        "b/photo_keypoints.png",
        "scan_keypoints.png",
    ]
    assert [job.output for job in batch.plan_jobs(pictures, None, None)] == [None] * 6


# ---------------------------------------------------------------------------------------------------------
# 2. The results file
# ---------------------------------------------------------------------------------------------------------
def test_a_results_file_is_never_replaced_without_overwrite(capsys, tmp_path, small):
    picture = write_jpeg(tmp_path / "me.jpg", small)
    results = tmp_path / "faces.jsonl"
    results.write_text('{"image": "earlier.jpg", "faces": []}\n')
    code, _, err = run_cli(capsys, picture, "--json", results, "--no-pictures")
    assert code == 2 and "--resume" in one_error_line(err) and "--overwrite" in err
    assert results.read_text() == '{"image": "earlier.jpg", "faces": []}\n'
    code, _, _ = run_cli(capsys, picture, "--json", results, "--no-pictures", "--overwrite")
    assert code == 0 and [r["image"] for r in read_jsonl(results)] == [str(picture)]


@pytest.mark.parametrize("case", ["out_in_proc", "out_is_a_file", "json_in_proc", "json_is_a_folder", "json_holds_old_format"])
def test_output_paths_are_checked_before_any_picture_is_read(capsys, tmp_path, small, monkeypatch, case):
    picture = write_jpeg(tmp_path / "me.jpg", small)
    (tmp_path / "a_file").write_text("keep me")
    (tmp_path / "old.json").write_text('[\n {"image": "me.jpg"}\n]')
    monkeypatch.setattr(batch.Annotator, "__init__", lambda *a, **k: pytest.fail("a picture was read"))
    args = {
        "out_in_proc": ["--out", "/proc/nope"],
        "out_is_a_file": ["--out", tmp_path / "a_file"],
        "json_in_proc": ["--json", "/proc/nope/x.jsonl"],
        "json_is_a_folder": ["--json", tmp_path],
        "json_holds_old_format": ["--json", tmp_path / "old.json", "--resume"],
    }[case]
    code, _, err = run_cli(capsys, picture, *args, *([] if case.startswith("out") else ["--no-pictures"]))
    assert code == 2
    line = one_error_line(err)
    assert any(hint in line for hint in ("give a folder", "give a file", "give another file"))
    assert (tmp_path / "a_file").read_text() == "keep me"


def test_resume_goes_on_after_a_half_written_line_and_tries_failed_pictures_again(capsys, tmp_path, small):
    folder = tmp_path / "photos"
    for i in range(4):
        write_jpeg(folder / f"p{i}.jpg", np.roll(small, 10 * i, axis=1))
    results = tmp_path / "faces.jsonl"
    assert run_cli(capsys, folder, "--json", results, "--no-pictures", "--workers", "1")[0] == 0
    lines = results.read_text().splitlines(keepends=True)
    failed = json.dumps({"image": str(folder / "p1.jpg"), "error": "p1.jpg could not be read"}) + "\n"
    results.write_text(lines[0] + failed + lines[2][: len(lines[2]) // 2])  # p0 done, p1 failed, p2 cut short
    code, printed, _ = run_cli(capsys, folder, "--json", results, "--no-pictures", "--resume", "--workers", "1")
    assert code == 0 and "3 to do" in printed and "1 already in" in printed
    records = read_jsonl(results)
    assert sorted(Path(r["image"]).name for r in records) == ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    assert all("error" not in r for r in records)
    assert [r["faces"] for r in records] == [json.loads(line)["faces"] for line in [lines[0], lines[1], lines[2], lines[3]]]
    code, printed, _ = run_cli(capsys, folder, "--json", results, "--no-pictures", "--resume")
    assert code == 0 and "0 to do" in printed and len(read_jsonl(results)) == 4


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the job's workers in /proc (Linux)")
def test_a_run_killed_with_sigkill_goes_on_with_resume_each_picture_once(capsys, tmp_path, astronaut):
    """The real thing: ``detect.py`` with 2 workers killed (-9) halfway, then ``--resume``: every picture once, with
    the faces of an uninterrupted run, and no worker left behind."""
    folder = tmp_path / "photos"
    for i in range(24):
        scale = 0.5 + 0.05 * (i % 5)
        picture = cv2.resize(astronaut, None, fx=scale, fy=scale)
        write_jpeg(folder / f"p{i:02d}.jpg", picture if i % 2 else picture[:, ::-1])
    results, out = tmp_path / "faces.jsonl", tmp_path / "out"
    command = [sys.executable, str(REPO_DIR / "detect.py"), str(folder), "--out", str(out), "--json", str(results), "--workers", "2"]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while job.poll() is None and time.monotonic() < deadline:
        if results.is_file() and results.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    workers = [int(pid) for pid in Path(f"/proc/{job.pid}/task/{job.pid}/children").read_text().split()] if job.poll() is None else []
    job.send_signal(signal.SIGKILL)
    job.wait()
    done_before = results.read_bytes().count(b"\n")
    assert 3 <= done_before < 24, f"the run was not killed halfway ({done_before} of 24 done): {job.stderr.read().decode()[-500:]}"
    for pid in workers:  # the workers end with the job instead of waiting for work forever
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"worker {pid} outlived the killed job")
    resumed = subprocess.run([*command[:-1], "1", "--resume"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{24 - done_before} to do" in resumed.stdout
    records = read_jsonl(results)
    assert sorted(r["image"] for r in records) == sorted(str(p) for p in folder.glob("*.jpg"))  # each exactly once
    assert len(list(out.glob("*.jpg"))) == 24 and not list(out.glob(".*"))  # no half-written picture left
    assert run_cli(capsys, folder, "--json", tmp_path / "whole.jsonl", "--no-pictures", "--workers", "1")[0] == 0
    whole = {r["image"]: r["faces"] for r in read_jsonl(tmp_path / "whole.jsonl")}
    assert {r["image"]: r["faces"] for r in records} == whole


def test_keypoints_and_boxes_are_rounded_to_a_hundredth_of_a_pixel(capsys, tmp_path, small):
    picture = write_png(tmp_path / "me.png", small)
    assert run_cli(capsys, picture, "--json", tmp_path / "f.jsonl", "--no-pictures")[0] == 0
    (record,) = read_jsonl(tmp_path / "f.jsonl")
    assert len(record["faces"]) == 1 and len(record["faces"][0]["keypoints"]) == 68
    text = json.dumps(record["faces"][0]["keypoints"]) + json.dumps(record["faces"][0]["box"])
    assert re.findall(r"\d+\.\d{3,}", text) == []
    assert batch.rounded(np.float32([902.09]), 2) == [902.09]


def test_the_video_gets_one_results_line_per_frame(capsys, tmp_path, small):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (256, 256))
    for shift in range(0, 15, 3):
        writer.write(cv2.cvtColor(np.roll(small, shift, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    code, _, _ = run_cli(capsys, "--video", video, "--out", tmp_path / "out", "--json", tmp_path / "frames.jsonl")
    assert code == 0
    records = read_jsonl(tmp_path / "frames.jsonl")
    assert [r["frame"] for r in records] == [0, 1, 2, 3, 4] and records[2]["time"] == 0.2
    assert all(r["image"] == str(video) and len(r["faces"]) == 1 for r in records)
    assert (tmp_path / "out" / "clip_keypoints.mp4").stat().st_size > 0
    code, _, err = run_cli(capsys, "--video", video, "--json", tmp_path / "frames.jsonl", "--resume")
    assert code == 2 and "video" in one_error_line(err)


# ---------------------------------------------------------------------------------------------------------
# 4. Progress
# ---------------------------------------------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_log():
    records = [{"image": "a", "faces": [{}, {}]}, {"image": "b", "error": "b is broken"}, {"image": "c", "faces": [{}]}]
    terminal, errors = Terminal(), io.StringIO()
    progress = batch.Progress(3, stream=terminal, errors=errors)
    for record in records:
        progress.update(record)
    progress.close()
    assert "3/3" in terminal.getvalue() and "3 faces" in terminal.getvalue() and "picture/s" in terminal.getvalue()
    assert errors.getvalue() == "error: b is broken\n"
    log, errors = io.StringIO(), io.StringIO()
    progress = batch.Progress(3, stream=log, errors=errors, every=0.0)
    for record in records:
        progress.update(record)
    lines = log.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in log.getvalue()
    assert re.fullmatch(r"3/3 pictures, [\d.]+ pictures/s, 00:00 left, 3 faces, 1 failed", lines[-1])


# ---------------------------------------------------------------------------------------------------------
# 5. Outputs people can keep
# ---------------------------------------------------------------------------------------------------------
def test_jpeg_photos_are_annotated_as_jpeg_and_png_pictures_as_png(capsys, tmp_path, astronaut):
    photo = write_jpeg(tmp_path / "in" / "photo.jpg", cv2.resize(astronaut, (1024, 1024)), quality=90)
    write_png(tmp_path / "in" / "drawing.png", astronaut)
    code, _, _ = run_cli(capsys, tmp_path / "in", "--out", tmp_path / "out", "--workers", "1")
    assert code == 0
    jpeg, png = tmp_path / "out" / "photo_keypoints.jpg", tmp_path / "out" / "drawing_keypoints.png"
    assert jpeg.read_bytes()[:3] == b"\xff\xd8\xff" and png.read_bytes()[:4] == b"\x89PNG"
    assert jpeg.stat().st_size <= 2 * photo.stat().st_size
    with Image.open(jpeg) as annotated, Image.open(photo) as original:
        assert annotated.size == original.size
        assert annotated.quantization == Image.open(write_jpeg(tmp_path / "q90.jpg", astronaut, 90)).quantization  # quality 90
    code, _, _ = run_cli(capsys, tmp_path / "in", "--out", tmp_path / "none", "--no-pictures", "--json", tmp_path / "f.jsonl")
    assert code == 0 and not (tmp_path / "none").exists()
    assert [r["output"] for r in read_jsonl(tmp_path / "f.jsonl")] == [None, None]


# ---------------------------------------------------------------------------------------------------------
# 6. Phone formats
# ---------------------------------------------------------------------------------------------------------
def encoded_with_orientation(picture: np.ndarray, orientation: int, fmt: str) -> bytes:
    """``picture`` stored as a camera does when it is held turned: the pixels turned back, and the EXIF orientation
    that says how to turn them for display (6: 90 degrees clockwise)."""
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    stored = Image.fromarray(np.rot90(picture, 1) if orientation == 6 else picture)
    exif = stored.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, fmt, exif=exif.tobytes(), quality=90)
    return buffer.getvalue()


def test_heic_photos_are_read_upright_as_jpeg_ones(capsys, tmp_path, small):
    portrait = np.ascontiguousarray(small[:, 32:224])  # 256 x 192, taller than wide
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "IMG_0001.HEIC").write_bytes(encoded_with_orientation(portrait, 6, "HEIF"))
    (tmp_path / "in" / "IMG_0002.JPG").write_bytes(encoded_with_orientation(portrait, 6, "JPEG"))
    heic, jpeg = read_image(tmp_path / "in" / "IMG_0001.HEIC"), read_image(tmp_path / "in" / "IMG_0002.JPG")
    assert heic.shape == jpeg.shape == portrait.shape
    assert np.abs(heic.astype(int) - portrait).mean() < 6 and np.abs(jpeg.astype(int) - portrait).mean() < 6
    code, _, _ = run_cli(capsys, tmp_path / "in", "--out", tmp_path / "out", "--json", tmp_path / "f.jsonl", "--workers", "1")
    assert code == 0
    records = read_jsonl(tmp_path / "f.jsonl")
    assert [(r["width"], r["height"], len(r["faces"])) for r in records] == [(192, 256, 1)] * 2
    np.testing.assert_allclose(records[0]["faces"][0]["keypoints"], records[1]["faces"][0]["keypoints"], atol=3)
    assert (tmp_path / "out" / "IMG_0001_keypoints.jpg").read_bytes()[:3] == b"\xff\xd8\xff"


def test_a_heic_photo_without_pillow_heif_says_what_to_install(tmp_path, small, monkeypatch):
    path = tmp_path / "IMG_0001.heic"
    path.write_bytes(encoded_with_orientation(small, 1, "HEIF"))
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if it were not installed
    with pytest.raises(DataError, match=r"is a HEIC/HEIF picture: install pillow-heif"):
        read_image(path)


@pytest.mark.parametrize(
    "content, says",
    [
        (b"\xff\x0a\xfa\x7f" + bytes(60), "is in the JPEG XL format, which this tool does not read: convert it to " + READABLE_FORMATS),
        (b"\x00\x00\x00\x1cftypavif" + bytes(60), "is in the AVIF format, which this tool does not read"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "is a damaged PNG file that cannot be decoded"),
        (b"\x00\x00\x00\x18ftypheic" + bytes(40), "is a damaged HEIC/HEIF file"),
        (b"name,x,y\n1,2,3\n", f"is not a picture in a format this tool reads ({READABLE_FORMATS})"),
    ],
    ids=["jpeg-xl", "avif", "damaged-png", "damaged-heic", "text"],
)
def test_a_file_that_cannot_be_read_is_named_for_what_it_is(tmp_path, content, says):
    path = tmp_path / "picture.jpg"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_image(path)
    assert says in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# 8. Exit codes as --help states them
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["--filter", "bogus"],
        ["--resume"],
        ["--video", "clip.mp4", "photo.jpg"],
        ["--video", "clip.mp4", "--ray"],
        ["photo.jpg", "--ray", "photos"],
        ["--from-list", "/nowhere/list.txt"],
    ],
    ids=["unknown-filter", "resume-without-json", "video-and-pictures", "video-on-ray", "ray-address", "missing-list"],
)
def test_wrong_arguments_exit_with_2_and_one_line(capsys, tmp_path, args):
    code, _, err = run_cli(capsys, *args, "--out", tmp_path)
    assert code == 2
    one_error_line(err)
    assert "2 for wrong arguments" in " ".join(detect_cli.build_parser().format_help().split())


def test_ray_not_installed_says_what_to_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(detect_cli.importlib.util, "find_spec", lambda name: None)
    code, _, err = run_cli(capsys, "photo.jpg", "--ray", "--out", tmp_path)
    assert code == 2 and "pip install -r requirements-ray.txt" in one_error_line(err)


# ---------------------------------------------------------------------------------------------------------
# 7. Beyond one machine: Ray Data
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")
def test_ray_gives_the_plain_runs_records(capsys, tmp_path, collection):
    """The job on a local Ray cluster of 2 CPUs (one actor): the records equal the plain run's."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=100 * 2**20,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO_DIR)}},
            logging_level="ERROR",
        )
    except Exception as error:  # Ray gives its own processes 30 s to start (ray/_private/node.py), too few when busy
        ray.shutdown()
        if "timed out during startup" not in str(error):
            raise
        pytest.skip(f"Ray could not start a local cluster on this busy machine (load average {os.getloadavg()[0]:.1f}): {error}")
    try:
        code, printed, _ = run_cli(capsys, collection, "--out", tmp_path / "ray_out", "--json", tmp_path / "ray.jsonl", "--ray", "--workers", "1")
    finally:
        ray.shutdown()
    assert code == 1 and "4 pictures" in printed  # the broken picture, as in the plain run
    code, _, _ = run_cli(capsys, collection, "--out", tmp_path / "out", "--json", tmp_path / "plain.jsonl", "--workers", "1")
    ray_records, plain_records = read_jsonl(tmp_path / "ray.jsonl"), read_jsonl(tmp_path / "plain.jsonl")
    for record in ray_records + plain_records:
        if record.get("output"):
            record["output"] = Path(record["output"]).name
    assert ray_records == plain_records
    assert sorted(p.name for p in (tmp_path / "ray_out").rglob("*.*")) == sorted(p.name for p in (tmp_path / "out").rglob("*.*"))


# ---------------------------------------------------------------------------------------------------------
# The benchmark's photo collection
# ---------------------------------------------------------------------------------------------------------
def test_the_benchmark_builds_phone_sized_jpeg_photos_once(tmp_path):
    sys.path.insert(0, str(REPO_DIR / "benchmarks"))
    import batch_speed

    photos = batch_speed.build_collection(tmp_path / "photos", 3, data=None, data_300w=None)
    sizes = []
    for path in photos:
        with Image.open(path) as photo:
            assert photo.format == "JPEG"
            sizes.append(photo.size)
    assert sizes == list(batch_speed.SIZES[:3])
    stamps = [p.stat().st_mtime_ns for p in photos]
    assert batch_speed.build_collection(tmp_path / "photos", 3, data=None, data_300w=None) == photos
    assert [p.stat().st_mtime_ns for p in photos] == stamps  # built once


def test_a_picture_written_again_removes_what_a_killed_write_left(tmp_path, small):
    # a run killed (-9) while it wrote p04's picture left its hidden file; the resumed run writes p04 again
    out = tmp_path / "out"
    out.mkdir()
    leftover, other = out / ".p04_keypoints.jpg.h9ymnusc.tmp", out / ".p05_keypoints.jpg.a1b2c3d4.tmp"
    leftover.write_bytes(b"half a picture")
    other.write_bytes(b"another picture's")
    batch.save_rgb(out / "p04_keypoints.jpg", small)
    assert not leftover.exists() and other.exists()
    assert cv2.imread(str(out / "p04_keypoints.jpg")).shape == small.shape
    batch.save_rgb(out / "[odd] name.png", small)  # a name with glob characters
    assert (out / "[odd] name.png").is_file()
