"""The web demo (app.py): its functions on pictures with zero, one and several faces and on bad input, how it
is served, and the page in a real browser (headless Chromium)."""
from __future__ import annotations

import json
import os
import re
import socket
import sys
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from pipeline import web_app  # noqa: E402
from pipeline import detect_cli  # noqa: E402
import filters  # noqa: E402
import screenshot_app  # noqa: E402
from data_load import DataError  # noqa: E402
from pipeline.keypoint_pipeline import KeypointPipeline  # noqa: E402


@pytest.fixture(scope="module")
def pipe() -> KeypointPipeline:
    return KeypointPipeline.from_pretrained()


def write_png(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)
    return path


def read_json(path: str) -> list[dict]:
    return json.loads(Path(path).read_text())


def write_bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


# ---------------------------------------------------------------------------------------------------------
# Pictures with zero, one and several faces
# ---------------------------------------------------------------------------------------------------------
def test_one_face_gives_the_annotated_picture_the_json_and_the_count(pipe, tmp_path):
    photo = detect_cli.astronaut()
    result = web_app.annotate_picture(pipe, web_app.Picture(photo, "astronaut.png"), web_app.KEYPOINTS, tmp_path)
    assert not result.warning
    assert re.match(r"\*\*1 face\*\* found in \d+ ms", result.status)
    png, record = result.files
    assert Path(png).name == "astronaut_keypoints.png" and Path(record).suffix == ".json"
    saved = cv2.cvtColor(cv2.imread(png), cv2.COLOR_BGR2RGB)
    assert np.array_equal(saved, result.annotated) and saved.shape == photo.shape  # a PNG picture: a lossless download
    shown = Path(result.shown)
    assert shown.read_bytes()[:3] == b"\xff\xd8\xff" and cv2.imread(str(shown)).shape == photo.shape  # small: shown at full size, as JPEG
    assert not [p for p in Path(tmp_path).rglob("*") if p.name.startswith(".")], "no partial file is left"
    [entry] = read_json(record)
    faces = pipe.detect(photo)
    assert entry == json.loads(json.dumps(detect_cli.picture_record("astronaut.png", photo, faces)))  # detect.py --json schema
    keypoints = np.array(entry["faces"][0]["keypoints"])
    x, y, w, h = entry["faces"][0]["box"]
    assert keypoints.shape == (68, 2)
    assert (keypoints[:, 0] > x - w / 2).all() and (keypoints[:, 0] < x + 1.5 * w).all()
    # the keypoints are drawn: the picture changed around the face and nowhere far from it
    changed = np.any(result.annotated != photo, axis=2)
    assert changed[int(y) : int(y + h), int(x) : int(x + w)].mean() > 0.01
    assert not changed[:, : int(x - w)].any()


def test_a_big_jpeg_photo_is_shown_small_and_downloaded_full_size_as_jpeg(pipe, tmp_path):
    """A phone photo (here the astronaut enlarged to 2800 x 2100, uploaded as JPEG): the page shows a JPEG of at most
    SHOWN_MAX_SIDE pixels, the download is the annotated photo at its own size, as JPEG."""
    photo = cv2.resize(detect_cli.astronaut(), (2800, 2800), interpolation=cv2.INTER_CUBIC)[300:2400]
    path = tmp_path / "phone photo.jpeg"
    assert cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    picture = web_app.read_upload(path)
    assert picture.jpeg and picture.image.shape == (2100, 2800, 3)
    result = web_app.annotate_picture(pipe, picture, "sunglasses", tmp_path)
    assert re.match(r"\*\*1 face\*\* found", result.status)
    download, record = result.files
    assert Path(download).name == "phone photo_sunglasses.jpg" and Path(download).read_bytes()[:3] == b"\xff\xd8\xff"
    full = cv2.cvtColor(cv2.imread(download), cv2.COLOR_BGR2RGB)
    assert full.shape == photo.shape and np.abs(full.astype(int) - result.annotated).mean() < 2  # the annotated photo, JPEG-close
    shown = cv2.imread(result.shown)
    assert Path(result.shown).read_bytes()[:3] == b"\xff\xd8\xff" and shown.shape == (1500, 2000, 3)
    assert np.abs(shown.astype(int) - cv2.resize(cv2.imread(download), (2000, 1500), interpolation=cv2.INTER_AREA)).mean() < 3
    assert read_json(record)[0]["width"] == 2800


def test_webcam_shots_are_saved_as_jpeg_and_other_pictures_as_png(tmp_path):
    assert web_app.webcam_picture(np.zeros((480, 640, 3), np.uint8)).jpeg
    assert not web_app.read_upload(write_png(tmp_path / "a.png", detect_cli.astronaut())).jpeg
    png_named_jpg = tmp_path / "b.jpg"
    write_png(tmp_path / "b.png", detect_cli.astronaut()).rename(png_named_jpg)
    assert not web_app.read_upload(png_named_jpg).jpeg  # decided by content, not by name
    small = web_app.shown_picture(np.zeros((100, 50, 3), np.uint8))
    assert small.shape == (100, 50, 3) and web_app.shown_picture(np.zeros((4000, 3000, 3), np.uint8)).shape == (2000, 1500, 3)


def test_several_faces_are_all_counted_and_saved(pipe, tmp_path):
    photo = detect_cli.astronaut()
    group = detect_cli.montage([photo, photo[:, ::-1], cv2.resize(photo, None, fx=0.6, fy=0.6)], cell=260)
    result = web_app.annotate_picture(pipe, web_app.Picture(group, "group.png"), "sunglasses", tmp_path)
    assert re.match(r"\*\*3 faces\*\* found", result.status)
    assert Path(result.files[0]).name == "group_sunglasses.png"
    [entry] = read_json(result.files[1])
    assert (entry["width"], entry["height"], len(entry["faces"])) == (group.shape[1], group.shape[0], 3)
    drawn = web_app.annotate_picture(pipe, web_app.Picture(group, "group.png"), web_app.KEYPOINTS, tmp_path).annotated
    assert not np.array_equal(result.annotated, drawn)  # the filter, not the keypoints


def test_a_picture_without_faces_warns_and_still_shows_it(pipe, tmp_path):
    empty = np.full((300, 400, 3), 128, np.uint8)
    result = web_app.annotate_picture(pipe, web_app.Picture(empty, "wall.png"), "hat", tmp_path)
    assert result.warning and result.status.startswith("**No face found**")
    assert np.array_equal(result.annotated, empty)
    assert read_json(result.files[1])[0]["faces"] == []


def test_status_line_counts_faces_and_shows_face_scores_when_the_model_has_them():
    class Face:
        def __init__(self, face_score):
            self.face_score = face_score

    assert web_app.status_line([Face(None), Face(None)], 12.4).startswith("**2 faces** found in 12 ms")
    assert "face scores 0.97, 0.50" in web_app.status_line([Face(0.971), Face(0.5)], 3)
    assert web_app.status_line([], 7).startswith("**0 faces**")


def test_respond_warns_without_a_picture_or_with_an_unknown_drawing(pipe, tmp_path):
    assert web_app.respond(pipe, None, web_app.KEYPOINTS, tmp_path).warning
    bad = web_app.respond(pipe, web_app.Picture(detect_cli.astronaut(), "a.png"), "sunhat", tmp_path)
    assert bad.warning and "sunglasses" in bad.status and bad.annotated is None
    assert web_app.DRAWINGS == (web_app.KEYPOINTS, *filters.FILTERS)


# ---------------------------------------------------------------------------------------------------------
# Bad input: one clear line each
# ---------------------------------------------------------------------------------------------------------
def test_read_upload_decodes_by_content(tmp_path):
    rgba = np.dstack([detect_cli.astronaut(), np.full((512, 512), 255, np.uint8)])
    path = tmp_path / "looks_like.jpg"  # a PNG named .jpg, like the course data
    assert cv2.imwrite(str(path.with_suffix(".png")), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    path.with_suffix(".png").rename(path)
    picture = web_app.read_upload(path)
    assert picture.label == "looks_like.jpg" and np.array_equal(picture.image, detect_cli.astronaut())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda folder: None, "No picture yet: upload"),
        (lambda folder: write_bytes(folder / "empty.png", b""), "empty.png is empty"),
        (lambda folder: folder / "gone.png", "gone.png did not arrive: upload it again"),
        (lambda folder: write_bytes(folder / "notes.png", b"not a picture"), "notes.png is not a picture"),
        (lambda folder: write_bytes(folder / "cut.png", cv2.imencode(".png", detect_cli.astronaut())[1].tobytes()[:300]), "cut.png is not a picture"),
        (lambda folder: write_png(folder / "huge.png", np.zeros((5000, 6000), np.uint8)), "6000 x 5000 pixels (30 megapixels); this demo takes up to 25 megapixels: resize it"),
    ],
    ids=["no upload", "empty file", "missing file", "text file", "truncated png", "huge picture"],
)
def test_bad_uploads_get_one_clear_line(tmp_path, make, message):
    with pytest.raises(DataError) as error:
        web_app.read_upload(make(tmp_path))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_size_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    path = write_png(tmp_path / "astronaut.png", detect_cli.astronaut())
    monkeypatch.setattr(web_app, "MAX_PICTURE_PIXELS", 512 * 512 - 1)
    monkeypatch.setattr(web_app, "read_image", lambda path: pytest.fail("decoded a picture above the limit"))
    with pytest.raises(DataError, match=r"512 x 512 pixels .* up to 0 megapixels: resize it"):
        web_app.read_upload(path)


def test_webcam_shots_become_rgb_pictures():
    rgba = np.dstack([detect_cli.astronaut(), np.full((512, 512), 255, np.uint8)])
    picture = web_app.webcam_picture(rgba)
    assert picture.label == "webcam" and np.array_equal(picture.image, detect_cli.astronaut())
    with pytest.raises(DataError, match="No webcam picture yet"):
        web_app.webcam_picture(None)


# ---------------------------------------------------------------------------------------------------------
# The page and how it is served
# ---------------------------------------------------------------------------------------------------------
def test_model_note_is_the_model_cards_summary_for_users(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("# Model card\n\nFor developers.\n\n## In short\n\nA line for the card's readers.\n\n- **Trained on** faces.\n"
                    "- **Known limits:** turned heads.\n\n## Measured\n\nx\n")
    note = web_app.model_note(card)
    assert note.startswith("- **Trained on** faces.\n- **Known limits:** turned heads.\n\n") and "saved_models/README.md" in note
    assert "Measured" not in note and "For developers" not in note and "card's readers" not in note
    assert "saved_models/README.md" in web_app.model_note(tmp_path / "missing.md")
    shipped = web_app.model_note()
    for words in ("**Trained on**", "**Accuracy**", "dlib", "MediaPipe", "**Speed:**", "**Known limits:**"):
        assert words in shipped
    assert len(shipped) < 2500, "a short summary"
    assert "aimed at" not in shipped and "next thing to measure" not in shipped  # notes for developers stay in the card
    assert web_app.model_card().startswith("# Model card") and "missing" in web_app.model_card(tmp_path / "missing.md")


def test_serving_the_page_contacts_nothing_but_127_0_0_1(pipe, monkeypatch):
    """Served and fetched in this process: every socket connection and name lookup stays on this computer (no
    usage statistics, no version check, no share link), and uploads go to the app's own temporary folder."""
    contacted = []
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: contacted.append(address[0]) or connect(self, address))
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: contacted.append(host) or getaddrinfo(host, *args, **kwargs))
    monkeypatch.setenv("GRADIO_TEMP_DIR", "unset")  # restored after the test
    demo = web_app.launch(pipe, port=screenshot_app.free_port(), block=False)
    try:
        with urllib.request.urlopen(demo.local_url, timeout=30) as page:
            html = page.read().decode()
        assert demo.server_name == "127.0.0.1" and demo.share is False and demo.analytics_enabled is False
        assert "Facial keypoints" in html and "fonts.googleapis" not in html
        assert set(contacted) == {"127.0.0.1"}, contacted
        temp_dir = Path(os.environ["GRADIO_TEMP_DIR"])
        assert temp_dir.is_dir() and temp_dir.name.startswith("facial-keypoints-app-")
        assert demo.GRADIO_CACHE == str(temp_dir)
    finally:
        demo.close()


def test_stopping_the_app_deletes_its_folder_at_once_and_prints_no_traceback():
    """``python app.py`` stopped with Ctrl+C (SIGINT) as soon as its page answers: a clean exit that deletes the
    uploads' folder before the server closes, so a slow close leaves nothing behind."""
    with screenshot_app.app_server() as server:
        pass
    temp_dir = re.search(r"uploads and results go to (\S+),", server.output).group(1)
    assert server.process.returncode == 0 and "Traceback" not in server.output, server.output
    assert "stopping: uploads and results deleted" in server.output and not Path(temp_dir).exists()


def test_command_line_listens_on_127_0_0_1_unless_asked():
    parser = web_app.build_parser()
    assert parser.parse_args([]).host == "127.0.0.1" and not parser.parse_args([]).share
    assert parser.parse_args(["--listen"]).host == "0.0.0.0"
    assert parser.parse_args(["--host", "192.168.1.20", "--port", "8080"]).host == "192.168.1.20"


def choose_drawing(driver, name: str) -> None:
    """Choose ``name`` in the page's Draw menu, as a user would: type it into the menu and press Enter."""
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element("css selector", "#drawing input")
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(name, Keys.ENTER)


def pop_ups(driver) -> list[str]:
    """The texts of Gradio's pop-up messages (toasts) on the page."""
    return [toast.text for toast in driver.find_elements("css selector", "[data-testid='toast-body'], .toast-body")]


def test_the_page_in_a_real_browser(tmp_path):
    """``python app.py`` on 127.0.0.1 in headless Chromium: a drawing chosen before any picture and a file that is
    not a picture get their message in the status line, no pop-up; then the astronaut's annotated result, downloads
    and face count appear, the page fetches nothing from elsewhere, and the uploads are gone once the app stops."""
    pytest.importorskip("selenium", reason="selenium is not installed: pip install -r requirements-test.txt")
    paths = screenshot_app.browser_paths()
    if paths is None:
        pytest.skip("Chromium is not installed here: apt-get install chromium chromium-driver (CI installs them)")
    picture = screenshot_app.astronaut_png(tmp_path)
    not_a_picture = write_bytes(tmp_path / "notes.png", b"not a picture")
    with screenshot_app.app_server() as server, screenshot_app.headless_chromium(paths) as driver:
        url = server.url
        driver.get(url)
        screenshot_app.wait_for_status(driver, "Upload a picture to begin")
        choose_drawing(driver, "sunglasses")
        chosen_first = screenshot_app.wait_for_status(driver, "drawn with sunglasses")
        toasts_after_choice = pop_ups(driver)
        screenshot_app.upload(driver, url, not_a_picture)
        refused = screenshot_app.wait_for_status(driver, "notes.png is not a picture")
        toasts_after_refusal = pop_ups(driver)
        status, _ = screenshot_app.upload_and_wait(driver, url, picture)
        result = driver.find_element("css selector", "#result img")
        result_src, result_width = result.get_attribute("src"), driver.execute_script("return arguments[0].naturalWidth", result)
        downloads = [link.get_attribute("href") for link in driver.find_elements("css selector", "#downloads a[href]")]
        outside = screenshot_app.external_requests(driver)
        shot = screenshot_app.save_screenshot(driver, tmp_path / "page.png")
    assert chosen_first == "Upload a picture to begin. It will be drawn with sunglasses." and toasts_after_choice == []
    assert refused == "notes.png is not a picture this app can read: upload a PNG, JPEG, BMP, TIFF or WebP file."
    assert toasts_after_refusal == [], "the status line says it: no pop-up over it"
    assert status.startswith("1 face found in")  # the app kept running after the bad upload
    temp_dir = re.search(r"uploads and results go to (\S+),", server.output).group(1)
    assert result_src.startswith(url) and temp_dir in result_src and result_width == 512  # loaded, from the app's folder
    assert Path(result_src).suffix == ".jpg"
    assert {Path(link).name for link in downloads} == {"astronaut_keypoints.png", "astronaut_keypoints.json"}
    assert outside == []
    page = cv2.imread(str(shot))
    assert page.shape[1] == screenshot_app.WINDOW[0] and shot.stat().st_size < 300_000 and len(list(tmp_path.glob("page*"))) == 1
    assert not Path(temp_dir).exists(), server.output


def test_the_notebooks_install_the_demo_but_not_the_browser_driver():
    from course import notebook_helpers

    names = {re.split(r"[<>=!~ ]", line, maxsplit=1)[0].lower() for line in notebook_helpers.runtime_requirements()}
    assert "gradio" in names and "selenium" not in names
    test_only = (Path(web_app.REPO_DIR) / "requirements-test.txt").read_text()
    assert re.search(r"^selenium\b", test_only, flags=re.M) and "-r requirements.txt" in test_only
