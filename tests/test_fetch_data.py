"""Tests for resources.download: downloads of a small fake dataset from a loopback HTTP server."""
from __future__ import annotations

import base64
import functools
import hashlib
import os
import socket
import sys
import threading
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pooch
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resources import download  # noqa: E402
from resources.download import CSV_SHA256, DataError, ensure_dataset  # noqa: E402

# A valid 1x1 PNG: the downloader never decodes images, but the fake dataset should look real.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
FAKE_CSVS = {
    "training_frames_keypoints.csv": b",0,1\nface_a.png,10.0,20.0\n",
    "test_frames_keypoints.csv": b",0,1\nface_b.png,30.0,40.0\n",
}
NESTED = "P1_Facial_Keypoints-master/data/"  # where the GitHub archive keeps the data
FAKE_CHECKSUMS = {name: hashlib.sha256(data).hexdigest() for name, data in FAKE_CSVS.items()}


def make_zip(path: Path, prefix: str = "", csvs: dict[str, bytes] = FAKE_CSVS) -> bytes:
    """Write a fake dataset archive (files under ``prefix``) to ``path`` and return its bytes."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in csvs.items():
            archive.writestr(prefix + name, data)
        archive.writestr(prefix + "training/face_a.png", TINY_PNG)
        archive.writestr(prefix + "test/face_b.png", TINY_PNG)
        if prefix:  # like the GitHub archive: other repository files around the data folder
            archive.writestr(prefix.split("/")[0] + "/README.md", b"# course repository\n")
    return path.read_bytes()


class Server:
    """A loopback HTTP server: ``add`` publishes bytes at a path, ``hits`` counts the requests."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, bool]] = {}
        self.hits: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits[self.path] += 1
                if self.path not in outer.routes:
                    self.send_error(404)
                    return
                body, truncated = outer.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # A truncated transfer announces the whole body, sends half of it and hangs up.
                self.wfile.write(body[: len(body) // 2] if truncated else body)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def add(self, path: str, body: bytes, truncated: bool = False) -> str:
        self.routes[path] = (body, truncated)
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    served = Server()
    served.thread.start()
    try:
        yield served
    finally:
        served.httpd.shutdown()
        served.httpd.server_close()
        served.thread.join(timeout=5)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """Where the dataset goes: in a folder of its own, so that leftovers beside it can be seen."""
    return tmp_path / "parent" / "data"


def fetch(target: Path, urls: list[str], checksums: dict[str, str] = FAKE_CHECKSUMS) -> Path:
    return ensure_dataset(target, urls=urls, checksums=checksums, progress=False)


def assert_clean(target: Path) -> None:
    """Nothing is left where the data is expected, and no temporary folder beside it."""
    assert not target.exists()
    assert not any(target.parent.iterdir())


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/train-test-data.zip"


def test_download_extracts_and_verifies_then_reuses(server: Server, target: Path, tmp_path: Path) -> None:
    url = server.add("/train-test-data.zip", make_zip(tmp_path / "flat.zip"))
    assert fetch(target, [url]) == target
    assert sorted(p.name for p in target.iterdir()) == sorted([*FAKE_CSVS, "training", "test"])
    assert (target / "training" / "face_a.png").read_bytes() == TINY_PNG
    assert [p.name for p in target.parent.iterdir()] == ["data"]  # the staging folder is gone
    assert fetch(target, [url]) == target
    assert server.hits["/train-test-data.zip"] == 1
    assert not pooch.get_logger().filters  # the quieting of pooch's log is undone


def test_nested_archive_layout(server: Server, target: Path, tmp_path: Path) -> None:
    url = server.add("/master.zip", make_zip(tmp_path / "nested.zip", prefix=NESTED))
    fetch(target, [url])
    assert (target / "test_frames_keypoints.csv").read_bytes() == FAKE_CSVS["test_frames_keypoints.csv"]
    assert (target / "test" / "face_b.png").is_file()
    assert not (target / "README.md").exists()
    assert [p.name for p in target.parent.iterdir()] == ["data"]


def test_empty_target_folder_is_filled(server: Server, target: Path, tmp_path: Path) -> None:
    target.mkdir(parents=True)
    url = server.add("/train-test-data.zip", make_zip(tmp_path / "flat.zip"))
    assert (fetch(target, [url]) / "training_frames_keypoints.csv").is_file()


def test_bad_checksum_leaves_nothing(server: Server, target: Path, tmp_path: Path) -> None:
    url = server.add("/train-test-data.zip", make_zip(tmp_path / "flat.zip"))
    wrong = {**FAKE_CHECKSUMS, "test_frames_keypoints.csv": "0" * 64}
    with pytest.raises(DataError, match=r"^test_frames_keypoints\.csv from .* failed its SHA-256 check") as caught:
        fetch(target, [url], checksums=wrong)
    assert "\n" not in str(caught.value)
    assert_clean(target)


def test_archive_without_dataset(server: Server, target: Path, tmp_path: Path) -> None:
    url = server.add("/train-test-data.zip", make_zip(tmp_path / "other.zip", csvs={"other.csv": b"x\n"}))
    with pytest.raises(DataError, match="holds no training_frames_keypoints.csv"):
        fetch(target, [url])
    assert_clean(target)
    with pytest.raises(DataError, match="not a zip archive"):
        fetch(target, [server.add("/page.zip", b"<html>not a zip</html>")])
    assert_clean(target)


def test_interrupted_transfer(server: Server, target: Path, tmp_path: Path) -> None:
    url = server.add("/train-test-data.zip", make_zip(tmp_path / "flat.zip"), truncated=True)
    with pytest.raises(DataError, match=r"^Could not download the dataset \(.*transfer interrupted\)") as caught:
        fetch(target, [url])
    assert str(target) in str(caught.value)
    assert_clean(target)


@pytest.mark.parametrize("failure", ["truncated", "404", "closed port", "not a zip"])
def test_first_source_fails_second_works(server: Server, target: Path, tmp_path: Path, failure: str) -> None:
    flat = make_zip(tmp_path / "flat.zip")
    first = {
        "truncated": lambda: server.add("/train-test-data.zip", flat, truncated=True),
        "404": lambda: server.add("/train-test-data.zip", flat).replace("train-test-data", "missing"),
        "closed port": closed_port_url,
        "not a zip": lambda: server.add("/page.html", b"<html>maintenance</html>"),
    }[failure]()
    second = server.add("/master.zip", make_zip(tmp_path / "nested.zip", prefix=NESTED))
    assert fetch(target, [first, second]) == target
    assert (target / "training" / "face_a.png").is_file()
    assert [p.name for p in target.parent.iterdir()] == ["data"]


def test_bad_archive_reported_over_network_failure(server: Server, target: Path) -> None:
    """When no source works, a source that answered with the wrong content says more than one that did not answer."""
    with pytest.raises(DataError, match="not a zip archive"):
        fetch(target, [closed_port_url(), server.add("/page.html", b"<html>maintenance</html>")])
    assert_clean(target)


def test_no_server(target: Path) -> None:
    url = closed_port_url()
    with pytest.raises(DataError) as caught:
        fetch(target, [url, url])
    message = str(caught.value)
    assert message.startswith("Could not download the dataset (127.0.0.1:")
    assert "no network?" in message and f"train-test-data.zip from {url}" in message and "FKP_DATA" in message
    assert "\n" not in message
    assert_clean(target)


def test_http_error_is_named(server: Server, target: Path) -> None:
    url = server.add("/train-test-data.zip", b"").replace("train-test-data", "missing")
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(target, [url])


def test_existing_incomplete_folder_is_left_alone(target: Path) -> None:
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="exists but lacks training/, test/"):
        fetch(target, [closed_port_url()])
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_existing_folder_with_bad_csv_is_refused(server: Server, target: Path, tmp_path: Path) -> None:
    fetch(target, [server.add("/train-test-data.zip", make_zip(tmp_path / "flat.zip"))])
    (target / "training_frames_keypoints.csv").write_bytes(b"edited\n")
    with pytest.raises(DataError, match="training_frames_keypoints.csv in .* failed its SHA-256 check"):
        fetch(target, [])


def test_cli_failure_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "notes.txt").write_text("not a dataset")
    assert download.main(["--dest", str(dest)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_cli_download_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unreachable = functools.partial(ensure_dataset, urls=[closed_port_url()], checksums=FAKE_CHECKSUMS, progress=False)
    monkeypatch.setattr(download, "ensure_dataset", unreachable)
    assert download.main(["--dest", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Could not download the dataset") and err.count("\n") == 1
    assert not (tmp_path / "data").exists()


def test_cli_success_prints_the_folder(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.add("/train-test-data.zip", make_zip(tmp_path / "flat.zip"))
    served = functools.partial(ensure_dataset, urls=[url], checksums=FAKE_CHECKSUMS, progress=False)
    monkeypatch.setattr(download, "ensure_dataset", served)
    assert download.main(["--dest", str(tmp_path / "data")]) == 0
    assert capsys.readouterr().out == f"Dataset ready in {tmp_path / 'data'}\n"


def test_real_checksums() -> None:
    data_dir = os.environ.get("FKP_DATA")
    if not data_dir or not all((Path(data_dir) / name).is_file() for name in CSV_SHA256):
        pytest.skip("set FKP_DATA to a folder holding the real dataset")
    for name, expected in CSV_SHA256.items():
        assert hashlib.sha256((Path(data_dir) / name).read_bytes()).hexdigest() == expected, name
    # A verified folder is returned as is: no download (no URLs given) and nothing written.
    assert ensure_dataset(Path(data_dir), urls=()) == Path(data_dir)


# ---------------------------------------------------------------------------------------------------------
# The archive kept once (on Colab, in Google Drive), the dataset unpacked on each new machine's disk
# ---------------------------------------------------------------------------------------------------------
def fetch_keeping(target: Path, urls: list[str], kept: Path) -> Path:
    return ensure_dataset(target, urls=urls, checksums=FAKE_CHECKSUMS, progress=False, archive_cache=kept)


def test_the_archive_is_kept_once_and_a_new_machine_unpacks_it_without_downloading(server: Server, tmp_path: Path) -> None:
    body = make_zip(tmp_path / "flat.zip")
    url = server.add("/train-test-data.zip", body)
    kept = tmp_path / "drive" / "facial-keypoints" / "downloads" / download.ARCHIVE_NAME
    first = fetch_keeping(tmp_path / "machine1" / "data", [url], kept)
    assert (first / "training" / "face_a.png").read_bytes() == TINY_PNG
    assert kept.read_bytes() == body and [p.name for p in kept.parent.iterdir()] == [kept.name]
    second = fetch_keeping(tmp_path / "machine2" / "data", [url], kept)
    assert (second / "test_frames_keypoints.csv").read_bytes() == FAKE_CSVS["test_frames_keypoints.csv"]
    assert server.hits["/train-test-data.zip"] == 1, "the second machine must unpack the kept archive, not download"
    assert [p.name for p in (tmp_path / "machine2").iterdir()] == ["data"]


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "wrong dataset"])
def test_a_damaged_kept_archive_is_downloaded_again_and_replaced(server: Server, tmp_path: Path, damage: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    body = make_zip(tmp_path / "flat.zip")
    url = server.add("/train-test-data.zip", body)
    kept = tmp_path / "drive" / download.ARCHIVE_NAME
    kept.parent.mkdir()
    kept.write_bytes({"truncated": body[: len(body) // 2], "not a zip": b"<html>quota exceeded</html>",
                      "wrong dataset": make_zip(tmp_path / "other.zip", csvs={"training_frames_keypoints.csv": b"x\n",
                                                                               "test_frames_keypoints.csv": b"y\n"})}[damage])
    data = fetch_keeping(tmp_path / "machine" / "data", [url], kept)
    assert (data / "training" / "face_a.png").is_file()
    assert kept.read_bytes() == body and server.hits["/train-test-data.zip"] == 1
    assert f"warning: {kept} does not hold the verified dataset: downloading it again" in capsys.readouterr().err


def test_an_archive_that_cannot_be_kept_costs_only_a_warning(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = server.add("/train-test-data.zip", make_zip(tmp_path / "flat.zip"))
    (tmp_path / "drive").write_text("a file where the folder should be")
    kept = tmp_path / "drive" / download.ARCHIVE_NAME
    data = fetch_keeping(tmp_path / "machine" / "data", [url], kept)
    assert (data / "training_frames_keypoints.csv").is_file()
    err = capsys.readouterr().err
    assert f"warning: could not keep the archive in {kept}" in err and err.count("\n") == 1
    assert [p.name for p in (tmp_path / "machine").iterdir()] == ["data"]


def test_a_kept_archive_is_not_needed_when_the_dataset_is_there(server: Server, tmp_path: Path) -> None:
    url = server.add("/train-test-data.zip", make_zip(tmp_path / "flat.zip"))
    data = fetch(tmp_path / "machine" / "data", [url])
    kept = tmp_path / "drive" / download.ARCHIVE_NAME
    assert fetch_keeping(data, [url], kept) == data
    assert not kept.exists() and server.hits["/train-test-data.zip"] == 1


def test_the_command_line_keeps_the_archive(server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = server.add("/train-test-data.zip", make_zip(tmp_path / "flat.zip"))
    served = functools.partial(ensure_dataset, urls=[url], checksums=FAKE_CHECKSUMS, progress=False)
    monkeypatch.setattr(download, "ensure_dataset", served)
    kept = tmp_path / "kept.zip"
    assert download.main(["--dest", str(tmp_path / "data"), "--archive-cache", str(kept)]) == 0
    assert kept.is_file() and (tmp_path / "data" / "training").is_dir()
