"""The web demo's upload-to-result time in headless Chromium, for a webcam-sized and two phone-sized photos.

    python benchmarks/app_latency.py                  # 640 x 480, 3 MP and 12 MP, 3 uploads each
    python benchmarks/app_latency.py --repeats 5

Starts ``python app.py`` on 127.0.0.1 as a user would and drives the page with Selenium (the functions of
``benchmarks/screenshot_app.py``). The photos are NASA's public-domain astronaut portrait (scikit-image) enlarged and
cut to 4:3 and saved as JPEG (quality 90): 640 x 480, 2000 x 1500 (3 megapixels) and 4000 x 3000 (12 megapixels),
her face about a third of the picture's height, a close-up as phones take them. Each upload opens the page afresh,
gives the file to the page's upload field and stops the clock once the annotated picture has loaded in the browser
and the status line gives the face count (both checked every 20 ms). The first upload of a size is a warm-up, not
counted: it also loads the page's scripts and the model's first call.

Prints, for each photo: its file size, the median and range of the seconds from upload to result, the detection time
the page reports, and the size of the picture the page shows and of the annotated file it offers for download.
Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium chromium-driver``) and selenium
(``pip install "selenium>=4.20,<5"``).
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import screenshot_app  # noqa: E402

SIZES = {"640 x 480": (640, 480), "3 MP": (2000, 1500), "12 MP": (4000, 3000)}
JPEG_QUALITY = 90


def astronaut_photo(width: int, height: int) -> np.ndarray:
    """The astronaut portrait (512 x 512 RGB) enlarged to cover width x height and cut to it around the centre,
    a little above it so her face stays whole: H x W x 3 uint8 RGB."""
    from skimage import data

    portrait = data.astronaut()
    scale = max(width, height) / portrait.shape[1]
    big = cv2.resize(portrait, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    top = (big.shape[0] - height) // 3
    left = (big.shape[1] - width) // 2
    return np.ascontiguousarray(big[top : top + height, left : left + width])


def write_jpeg(path: Path, image: np.ndarray, quality: int = JPEG_QUALITY) -> Path:
    """``image`` (RGB) as a JPEG file at ``path``."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"could not write {path}")
    return path


def shown_and_offered(driver) -> tuple[str, str]:
    """The picture the page shows (its pixel size and bytes) and the annotated file offered for download (its name
    and bytes), read from the browser."""
    shown = driver.execute_script(
        "const img = document.querySelector('#result img');"
        "const entry = performance.getEntriesByName(img.currentSrc || img.src)[0];"
        "return [img.naturalWidth, img.naturalHeight, entry ? entry.encodedBodySize : -1];"
    )
    links = [link.get_attribute("href") for link in driver.find_elements("css selector", "#downloads a[href]")]
    picture = next((link for link in links if not link.endswith(".json")), None)
    offered = "none"
    if picture:
        size = driver.execute_script("return fetch(arguments[0]).then(r => r.blob()).then(b => b.size);", picture)
        offered = f"{Path(picture).name} {size / 1e6:.1f} MB"
    return f"{shown[0]} x {shown[1]} {shown[2] / 1e6:.2f} MB", offered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed uploads of each photo after one warm-up (default: 3)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be 1 or more")
    paths = screenshot_app.browser_paths()
    if paths is None:
        print("error: Chromium and chromedriver are needed: apt-get install chromium chromium-driver", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as folder, screenshot_app.app_server() as server, screenshot_app.headless_chromium(paths) as driver:
        photos = {name: write_jpeg(Path(folder) / f"astronaut_{w}x{h}.jpg", astronaut_photo(w, h)) for name, (w, h) in SIZES.items()}
        print(f"{'photo':<10} {'file':>8}  {'upload to result (s)':<26} {'detection':>10}  shown / offered for download")
        for name, photo in photos.items():
            seconds, status = [], ""
            for attempt in range(args.repeats + 1):
                status, elapsed = screenshot_app.upload_and_wait(driver, server.url, photo)
                if attempt:
                    seconds.append(elapsed)
            shown, offered = shown_and_offered(driver)
            detection = re.search(r"in (\d+) ms", status)
            spread = f"median {statistics.median(seconds):.2f} ({min(seconds):.2f}-{max(seconds):.2f})"
            print(f"{name:<10} {photo.stat().st_size / 1e6:>5.1f} MB  {spread:<26} {detection.group(1) if detection else '?':>7} ms  {shown} / {offered}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
