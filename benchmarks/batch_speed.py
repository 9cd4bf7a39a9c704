"""Wall time of the main job over a photo collection with ``--workers 1`` and ``--workers 2``, and the size of the
annotated JPEG photos against their photos'.

    python benchmarks/batch_speed.py --data ../shared/data --data-300w ../shared/300w [--count 330] [--rounds 1]

First it builds (once: a later run with the same --count and --seed reuses it) a collection of --count JPEG photos
in --folder, from pictures the project may use at run time: scikit-image's public-domain astronaut, course test
pictures (--data) and 300-W crops (--data-300w), enlarged into close-up portraits whose face fills a third to all of
the frame, half-length portraits, and group pictures of 3-8 faces on a backdrop, at phone and camera sizes (4032 x
3024, 3024 x 4032, 3000 x 4000, 1920 x 1080, 1280 x 960, 640 x 480, 400 x 300 pixels: 0.1-12 megapixels), with a
little sensor grain and JPEG qualities of 85-95, as phones save them.

Then it runs the real command, ``python detect.py FOLDER --out OUT --json RESULTS --overwrite --workers N``, for N = 1
and N = 2 in turn, --rounds times (1, 2, 1, 2, ...), and prints each run's wall time (start-up included) with the
load average before and after it, the ratio of each pair (workers 2 / workers 1) and their median, how many photos
got other faces in the two runs, and the largest and median ratio of an annotated JPEG's size to its photo's.

The machine's other work distorts the ratio: run it on a quiet machine. Before each pair it measures what the machine
gives two processes at that moment (``parallel_capacity``: 0.50 on two free cores), the best ratio the job can reach.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_DIR))

from data_load import read_image  # noqa: E402

# (width, height) of the photos, in turn: half of them 12 megapixels, as phones take them, the rest smaller.
SIZES = ((4032, 3024), (3024, 4032), (1920, 1080), (3000, 4000), (640, 480), (4032, 3024), (1280, 960), (3024, 4032), (400, 300), (4000, 3000))
KINDS = ("close-up", "half-length", "group")
GRAIN = 3.0  # standard deviation of the sensor grain added, in grey levels
QUALITIES = (85, 95)  # the JPEG qualities of the photos: drawn between these


def face_pictures(data: str | None, data_300w: str | None, limit: int = 200) -> list[np.ndarray]:
    """RGB pictures holding one face each: the astronaut, course test pictures and 300-W crops (what is at hand)."""
    from skimage import data as skimage_data

    pictures = [skimage_data.astronaut()]
    folders = [Path(data) / "test"] if data else []
    folders += sorted(p for p in Path(data_300w).iterdir() if p.is_dir()) if data_300w else []
    for folder in folders:
        for path in sorted(folder.glob("*.jpg"))[:limit]:
            picture = read_image(path)
            if min(picture.shape[:2]) >= 100:
                pictures.append(picture)
    return pictures


def cover(picture: np.ndarray, width: int, height: int, zoom: float, rng: np.random.Generator) -> np.ndarray:
    """``picture`` enlarged ``zoom`` times beyond covering a ``width`` x ``height`` frame, cut around a point near its
    centre (a close-up: the face fills the frame)."""
    scale = zoom * max(width / picture.shape[1], height / picture.shape[0])
    big = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    x = int((big.shape[1] - width) * rng.uniform(0.35, 0.65))
    y = int((big.shape[0] - height) * rng.uniform(0.3, 0.6))
    return big[y : y + height, x : x + width]


def backdrop(pictures: list[np.ndarray], width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A blurred, darkened picture stretched over the frame: a background without a face one could find."""
    source = pictures[int(rng.integers(len(pictures)))]
    small = cv2.GaussianBlur(cv2.resize(source, (64, 48), interpolation=cv2.INTER_AREA), (0, 0), 6)
    return (cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) * rng.uniform(0.5, 0.9)).astype(np.uint8)


def paste(canvas: np.ndarray, picture: np.ndarray, side: int, cx: float, cy: float) -> None:
    """``picture`` scaled to ``side`` pixels on its longer side, pasted centred at (cx, cy), clipped to the canvas."""
    scale = side / max(picture.shape[:2])
    tile = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    x0, y0 = int(cx - tile.shape[1] / 2), int(cy - tile.shape[0] / 2)
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + tile.shape[1], canvas.shape[1]), min(y0 + tile.shape[0], canvas.shape[0])
    if xb > xa and yb > ya:
        canvas[ya:yb, xa:xb] = tile[ya - y0 : yb - y0, xa - x0 : xb - x0]


def photo(kind: str, size: tuple[int, int], pictures: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One photo of ``kind`` (``KINDS``) and ``size`` (width, height), with sensor grain."""
    width, height = size
    pick = lambda: pictures[int(rng.integers(len(pictures)))]  # noqa: E731
    if kind == "close-up":
        canvas = np.ascontiguousarray(cover(pick(), width, height, rng.uniform(1.0, 1.4), rng))
    elif kind == "half-length":
        canvas = backdrop(pictures, width, height, rng)
        paste(canvas, pick(), int(min(width, height) * rng.uniform(0.3, 0.6)), width * rng.uniform(0.35, 0.65), height * rng.uniform(0.35, 0.6))
    else:
        canvas = backdrop(pictures, width, height, rng)
        count = int(rng.integers(3, 9))
        columns = int(np.ceil(np.sqrt(count * width / height)))
        rows = int(np.ceil(count / columns))
        side = int(min(width / columns, height / rows) * rng.uniform(0.5, 0.8))
        for k in range(count):
            cx = (k % columns + 0.5) * width / columns + rng.uniform(-0.1, 0.1) * side
            cy = (k // columns + 0.5) * height / rows + rng.uniform(-0.1, 0.1) * side
            paste(canvas, pick(), side, cx, cy)
    return with_grain(canvas, rng)


def with_grain(picture: np.ndarray, rng: np.random.Generator, tile: int = 509) -> np.ndarray:
    """``picture`` with sensor grain of ``GRAIN`` grey levels: a tile of Gaussian noise (509 pixels, so that its
    repeats fall nowhere near the picture's own structure) repeated over the picture, added with saturation."""
    noise = rng.normal(0.0, GRAIN, size=(tile, tile)).astype(np.float32)
    height, width = picture.shape[:2]
    reps = (-(-height // tile), -(-width // tile))
    field = np.tile(noise, reps)[:height, :width]
    up = cv2.merge([np.clip(field, 0, 255).astype(np.uint8)] * 3)
    down = cv2.merge([np.clip(-field, 0, 255).astype(np.uint8)] * 3)
    return cv2.subtract(cv2.add(picture, up), down)


def build_collection(folder: Path, count: int, data: str | None, data_300w: str | None, seed: int = 0) -> list[Path]:
    """``count`` JPEG photos in ``folder`` (sub-folders of 50, as a camera's), built once: a folder whose
    ``collection.json`` names the same count and seed is used as it is."""
    marker = folder / "collection.json"
    wanted = {"count": count, "seed": seed, "data": bool(data), "data_300w": bool(data_300w)}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return sorted(folder.rglob("*.jpg"))
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    pictures = face_pictures(data, data_300w)
    paths = []
    for i in range(count):
        size, kind = SIZES[i % len(SIZES)], KINDS[i % len(KINDS)]  # 10 sizes, 3 kinds: every pair in turn
        path = folder / f"DCIM_{i // 50:03d}" / f"IMG_{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        quality = int(rng.integers(QUALITIES[0], QUALITIES[1] + 1))
        cv2.imwrite(str(path), cv2.cvtColor(photo(kind, size, pictures, rng), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        paths.append(path)
    marker.write_text(json.dumps(wanted))
    return paths


def timed_run(folder: Path, work: Path, workers: int, name: str) -> tuple[float, tuple[float, float]]:
    """Wall seconds of one ``detect.py`` run over ``folder`` into ``work/name`` (outputs replaced), and the
    1-minute load average before and after it."""
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, str(REPO_DIR / "detect.py"), str(folder), "--out", str(out), "--json", str(work / f"{name}.jsonl"),
               "--overwrite", "--workers", str(workers)]
    before = os.getloadavg()[0]
    tic = time.perf_counter()
    with open(work / f"{name}.log", "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - tic
    if done.returncode != 0:
        raise SystemExit(f"detect.py exited with {done.returncode}: see {work / f'{name}.log'}")
    return seconds, (before, os.getloadavg()[0])


def parallel_capacity(iterations: int = 20_000_000) -> float:
    """What the machine gives two processes at this moment: the wall time of two pure-Python loops run side by side
    over that of the same two run one after the other (0.5 on two free cores, 1.0 when other work leaves no second
    core). The job's ratio can be no better."""
    command = [sys.executable, "-c", f"s = 0\nfor i in range({iterations}): s += i * i"]
    tic = time.perf_counter()
    for _ in range(2):
        subprocess.run(command, check=True)
    one_after_the_other = time.perf_counter() - tic
    tic = time.perf_counter()
    for loop in [subprocess.Popen(command) for _ in range(2)]:
        loop.wait()
    return (time.perf_counter() - tic) / one_after_the_other


def faces_by_picture(results: Path) -> dict[str, list]:
    return {record["image"]: record.get("faces") for record in map(json.loads, results.read_text().splitlines())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("FKP_DATA"), help="course dataset folder (default: $FKP_DATA)")
    parser.add_argument("--data-300w", default=os.environ.get("FKP_300W"), help="300-W crops folder (default: $FKP_300W)")
    parser.add_argument("--count", type=int, default=330, help="photos in the collection (default 330)")
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs, workers 1 then 2 (default 1)")
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "fkp_batch_photos"), help="where the collection is built")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    folder = Path(args.folder)
    tic = time.perf_counter()
    photos = build_collection(folder, args.count, args.data, args.data_300w, args.seed)
    megapixels = []
    for path in photos:
        with Image.open(path) as header:
            megapixels.append(header.size[0] * header.size[1] / 1e6)
    total_mb = sum(p.stat().st_size for p in photos) / 1e6
    print(f"{len(photos)} photos in {folder} ({time.perf_counter() - tic:.0f} s): {min(megapixels):.1f}-{max(megapixels):.1f} "
          f"megapixels, {total_mb:.0f} MB; {os.cpu_count()} cores")

    work = Path(f"{folder}-runs")
    work.mkdir(exist_ok=True)
    times: dict[int, list[float]] = {1: [], 2: []}
    capacities = []
    for round_ in range(args.rounds):
        capacities.append(parallel_capacity())
        print(f"round {round_ + 1}: two pure-Python loops side by side take {capacities[-1]:.2f} of their time one after the other (0.50 on 2 free cores)")
        for workers in (1, 2):
            seconds, (before, after) = timed_run(folder, work, workers, f"workers{workers}")
            times[workers].append(seconds)
            print(f"round {round_ + 1}, --workers {workers}: {seconds:6.1f} s, {len(photos) / seconds:.2f} photos/s (load average {before:.1f} before, {after:.1f} after)")
    ratios = [two / one for one, two in zip(times[1], times[2])]
    print(f"wall time --workers 2 / --workers 1: {', '.join(f'{r:.2f}' for r in ratios)}; median {float(np.median(ratios)):.2f} "
          f"(the machine's own ratio: median {float(np.median(capacities)):.2f})")

    one, two = faces_by_picture(work / "workers1.jsonl"), faces_by_picture(work / "workers2.jsonl")
    differ = sum(one[name] != two.get(name) for name in one)
    print(f"photos whose faces differ between the two runs: {differ} of {len(one)}; faces found: {sum(len(f or []) for f in one.values())}")

    sizes = []
    for record in map(json.loads, (work / "workers2.jsonl").read_text().splitlines()):
        if record.get("output"):
            sizes.append(Path(record["output"]).stat().st_size / Path(record["image"]).stat().st_size)
    print(f"annotated JPEG size / photo size: max {max(sizes):.2f}, median {float(np.median(sizes)):.2f} over {len(sizes)} photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
