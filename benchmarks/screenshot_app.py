"""The web demo in a real browser: start ``python app.py`` on 127.0.0.1, upload the astronaut in headless
Chromium, wait for the annotated result and save a screenshot of the page (``images/app_screenshot.png``, shown in
the README and docs/web-demo.md).

    python benchmarks/screenshot_app.py                       # -> images/app_screenshot.png
    python benchmarks/screenshot_app.py --out /tmp/page.png

Prints the seconds from the upload to the result on the page and every request the page made outside
127.0.0.1 (there should be none: the app works offline). Needs Debian's ``chromium`` and ``chromium-driver``
(``apt-get install chromium chromium-driver``) and ``selenium`` (``pip install "selenium>=4.20,<5"``); the web
demo's browser test uses the same functions.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator
from urllib.parse import urlparse

import cv2

if TYPE_CHECKING:  # selenium is a test requirement: imported where used
    from selenium.webdriver import Chrome

REPO_DIR = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_DIR / "images" / "app_screenshot.png"
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = "chromedriver"
LOCAL_HOSTS = ("127.0.0.1", "localhost")
WINDOW = (1280, 1000)  # browser window in CSS pixels: both columns side by side, the result at about its own size


def browser_paths() -> tuple[str, str] | None:
    """The Chromium binary and its driver on PATH (Debian: /usr/bin/chromium, /usr/bin/chromedriver), or None."""
    browser = next((path for path in map(shutil.which, CHROMIUM) if path), None)
    driver = shutil.which(CHROMEDRIVER)
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_page(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Return once ``url`` answers; RuntimeError when the server process exits or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with status {process.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise RuntimeError(f"app.py did not serve {url} within {timeout:.0f} s")


@dataclass
class AppServer:
    """A running ``python app.py``: its URL, its process, and what it printed (filled in once it has stopped)."""

    url: str
    process: subprocess.Popen
    output: str = ""


@contextmanager
def app_server(port: int | None = None, timeout: float = 90.0) -> Iterator[AppServer]:
    """``python app.py --port PORT`` on 127.0.0.1 while the block runs; stopped with Ctrl+C (SIGINT) afterwards,
    as a user would stop it."""
    port = port or free_port()
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO_DIR / "app.py"), "--port", str(port)], cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        server = AppServer(f"http://127.0.0.1:{port}/", process)
        try:
            wait_for_page(server.url, process, timeout)
            yield server
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.seek(0)
            server.output = log.read()


@contextmanager
def headless_chromium(paths: tuple[str, str]) -> Iterator[Chrome]:
    """Headless Chromium driven by Selenium, with the page's network events logged (``external_requests``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def external_requests(driver: Chrome) -> list[str]:
    """URLs the page requested from anywhere but 127.0.0.1 since the last call (data: and blob: URLs are local)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return [url for url in urls if urlparse(url).scheme in ("http", "https", "ws", "wss") and urlparse(url).hostname not in LOCAL_HOSTS]


def upload(driver: Chrome, url: str, picture: Path, timeout: float = 60.0) -> float:
    """Open the page afresh and upload ``picture``; returns the ``time.perf_counter()`` taken just before the file is
    handed to the page's upload field."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    field = WebDriverWait(driver, timeout).until(seen.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]")))
    tic = time.perf_counter()
    field.send_keys(str(picture))
    return tic


def wait_for_status(driver: Chrome, pattern: str, timeout: float = 60.0, poll: float = 0.02) -> str:
    """The page's status line once it matches the regular expression ``pattern`` (checked every ``poll`` seconds)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def matching(driver: Chrome) -> str | None:
        text = driver.find_element(By.ID, "status").text
        return text if re.search(pattern, text) else None

    return WebDriverWait(driver, timeout, poll_frequency=poll).until(matching)


# True once the result picture is on the page and decoded by the browser (not merely its element present).
RESULT_SHOWN = "const img = document.querySelector('#result img'); return !!img && img.complete && img.naturalWidth > 0;"


def upload_and_wait(driver: Chrome, url: str, picture: Path, timeout: float = 60.0, poll: float = 0.02) -> tuple[str, float]:
    """Open the page, upload ``picture`` and wait until the result picture has loaded and the face count is shown.

    Returns the status line's text and the seconds from the upload to the result (checked every ``poll`` seconds).
    """
    from selenium.webdriver.support.ui import WebDriverWait

    tic = upload(driver, url, picture, timeout)
    status = wait_for_status(driver, r"\d+ faces? found", timeout, poll)
    WebDriverWait(driver, timeout, poll_frequency=poll).until(lambda driver: driver.execute_script(RESULT_SHOWN))
    return status, time.perf_counter() - tic


def astronaut_png(folder: Path) -> Path:
    """NASA's public-domain astronaut portrait (scikit-image) written as a PNG into ``folder``."""
    from skimage import data

    path = folder / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def save_screenshot(driver: Chrome, out: Path, max_width: int = 1280) -> Path:
    """The browser window as a PNG at ``out``, shrunk to ``max_width`` pixels and quantised so it stays small."""
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent) as work:  # two runs never share a name
        raw, small_png = Path(work) / "raw.png", Path(work) / "small.png"
        driver.save_screenshot(str(raw))
        with Image.open(raw) as shot:
            scale = min(1.0, max_width / shot.width)
            small = shot.convert("RGB").resize((round(shot.width * scale), round(shot.height * scale)), Image.LANCZOS)
        # Octree quantisation keeps small saturated marks (the magenta keypoints); median cut merges them into skin tones.
        small.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(small_png, optimize=True)
        os.chmod(small_png, 0o644)
        os.replace(small_png, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="screenshot file (default: images/app_screenshot.png)")
    args = parser.parse_args(argv)
    paths = browser_paths()
    if paths is None:
        print("error: Chromium and chromedriver are needed: apt-get install chromium chromium-driver", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as folder, app_server() as server, headless_chromium(paths) as driver:
        status, seconds = upload_and_wait(driver, server.url, astronaut_png(Path(folder)))
        driver.execute_script("window.scrollTo(0, 0)")
        out = save_screenshot(driver, Path(args.out))
        outside = external_requests(driver)
    print(f"page status: {status}")
    print(f"upload to result on the page: {seconds:.1f} s")
    print(f"requests outside 127.0.0.1: {len(outside)}" + "".join(f"\n  {url}" for url in outside))
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
