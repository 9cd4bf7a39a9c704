"""Train the learned face detector (``detector_architectures/cnn.py``) and export it to ONNX beside its weights.

    python -m pipeline.detector_training --data ../shared/data --data-300w ../shared/300w --out saved_models/face_detector.pt
    python -m pipeline.detector_training ... --canvas 192 --epochs 7 --lr 1e-3 --init first.pt --out face_detector.pt  # fine-tune

Training pictures are synthesised, a new set every epoch from a fixed seed (``--seed``; sample i of epoch e is drawn
from ``default_rng([seed, e, i])``), as square grayscale canvases of ``--canvas`` pixels:

* a **background**: a random part of a picture without faces, from the *training* part of ``no_faces.py`` only
  (the scikit-image pictures without people and the background strips of the course training pictures; never the
  measuring part), sometimes a plain, gradient or noise field; or, a quarter of the time, a course training picture
  itself, framed around its face at a random scale (a real photo with its own background);
* **faces** pasted onto it at random scales (a Haar-convention box side log-uniform from 12 pixels to 1.3 times the
  canvas, so close-ups are cut by the border; in 40 % of the one-face canvases a close-up of 0.45-1.3 times the
  canvas near its middle, the scale of the detector's coarse pass, or, in half of those (``CLOSE_UP_NEIGHBOURS``),
  two or three faces of 0.3-0.6 times the canvas side by side), positions, rolls (``roll_angle``: 40 % of the
  faces at any angle, the rest mostly near upright), mirrored half the time, each with its own blur, brightness,
  contrast, gamma and noise: the course training pictures (their one face known from the keypoints) and the 300-W
  crops of the *training* photos only (``data_300w.validation_photos`` are held out and never read here). A 300-W
  crop is pasted through a feathered ellipse or as its whole square, a course picture as its whole rectangle;
  squares of background are pasted as well (0-3 per canvas, 3 more on an empty one), so a pasted edge is no sign of
  a face; half of them are **hard negatives** (``mine_hard_negatives``): the places where the starting model
  (``--init``) sees a face in the training pictures without faces, pasted at any roll. 30 % of the canvases are
  group photos (2-8 faces of 12-60 pixels), 15 % hold no face at all (background crops of 0.15-1 of a side);
* then blur, noise, contrast and a low-resolution round trip over the whole canvas.

Targets (CenterNet, Zhou et al. 2019, "Objects as Points"): each face's box is ``haar_box_from_keypoints`` of its
keypoints before the roll, turned with the face about its centre (its centre and side); its five points
(``cnn.five_points``, right and left swapped in a mirrored face) are regressed as offsets from the centre in units
of the side, and its roll class (``cnn.roll_bin`` of the points' eye line) is learned as a classification. A face is
a positive when its centre lies in the canvas, at least 55 % of its box does (or the box is bigger than 0.7 of the
canvas: a close-up) and later pastes cover at most half of it; its centre cell gets 1 on the heatmap under a
Gaussian of sigma ``max(0.6, side / stride / 8)`` cells (at stride 4, a sharper peak, side / 4 / 12, gave lower scores and no better
separation), and the size (``log(side / 16)``) and sub-cell offset are regressed there. Other visible faces (mostly
cut or covered) are ignored: the heatmap loss is masked over their box (``IGNORE_RADIUS``), so a face mostly outside
the canvas is no negative. Size, offset, points and roll class are learned on the 3 x 3 cells around each centre
(the 8 neighbours at ``NEIGHBOUR_WEIGHT``), so a peak one cell off still gives the right box. Loss: the penalty-reduced focal loss on the
heatmap (alpha 2, beta 4) plus L1 on size, offset and (at ``POINT_WEIGHT``) the five points and the cross-entropy of
the roll class (at ``ROLL_WEIGHT``) at the centres, normalised by the number of faces. Weights of a model without
the points' outputs (``--init``) start the new outputs at zero.

Decoded sources are cached in ``.cache/detector_sources_v1.pkl`` (git-ignored), so later runs start at once.
The ``.pt`` holds ``{"state_dict", "metadata"}`` (loadable with ``torch.load(weights_only=True)``); the ONNX export
(opset 17, dynamic height and width) is written beside it. Both are written to a temporary file and moved into place.
"""
from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.data_300w import resolve_300w_dirs, scan_folder, validation_photos
from data_load import REPO_DIR, haar_box_from_keypoints, read_image, read_keypoints_csv, resolve_data_dir, split_paths
from detector_architectures.cnn import (
    DEPTHS, FIVE_POINT_MIRROR, FPN_WIDTH, POINT_COUNT, ROLL_BINS, SIZE_UNIT, STRIDE, STRIDES, WIDTHS, build_network,
    eye_line_angle, five_points, roll_bin, stride_of, weights_digest,
)
from pipeline.no_faces import no_face_pictures
from resources.files import atomic_write

CACHE_FILE = REPO_DIR / ".cache" / "detector_sources_v1.pkl"
MIN_FACE = 12.0  # smallest pasted face (box side, canvas pixels)
MAX_FACE_OF_CANVAS = 1.3  # largest pasted face, as a share of the canvas side
POSITIVE_VISIBLE = 0.55  # share of the box inside the canvas for a positive
CLOSE_UP = 0.7  # a box bigger than this share of the canvas is a positive when its centre is inside
MAX_COVERED = 0.5  # a face covered more than this by later pastes is ignored
HEAT_SIGMA_CELLS = 8.0  # the centre peak's Gaussian: sigma = max(0.6, side / stride / HEAT_SIGMA_CELLS) cells
NEIGHBOUR_WEIGHT = 0.25  # size and offset are regressed on the 8 cells around a centre too, at this weight
IGNORE_RADIUS = 0.5  # the heatmap loss is masked over this share of a non-positive face's side around its centre
POINT_WEIGHT = 1.0  # the five points' L1 loss (offsets in units of the side, summed over the 10 coordinates)
ROLL_WEIGHT = 1.0  # the roll classes' cross-entropy
# Share of close-up canvases with two or three faces side by side. Without them the detector merged a close-up face
# and its neighbour's into one box between them (held-out 300-W crops of movie posters enlarged 10 times).
CLOSE_UP_NEIGHBOURS = 0.5
ANY_ROLL = 0.4  # share of pasted faces turned by any angle (the rest: near upright, some to +-90 degrees)
HARD_NEGATIVE_SHARE = 0.5  # share of the pasted background squares that are hard negatives
HARD_NEGATIVE_SCORE = 0.2  # a starting-model detection this sure on a picture without faces is a hard negative
HARD_NEGATIVE_MARGIN = 1.5  # a hard negative is cut as a square this many times its detection's side


# ---------------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------------
def gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def load_sources(data_dir: str | None, data_300w: str | None, log=print) -> dict:
    """{"course": [(gray, keypoints)], "wild": [(gray, keypoints)], "backgrounds": [gray]}: the course training
    pictures, the 300-W training crops (held-out photos excluded) and the training part of the pictures without
    faces; cached in .cache/."""
    data_dir = resolve_data_dir(data_dir, download=False)
    folders = resolve_300w_dirs(data_300w)
    key = (str(data_dir.resolve()), tuple(str(f.resolve()) for f in folders))
    if CACHE_FILE.is_file():
        with open(CACHE_FILE, "rb") as handle:
            cached = pickle.load(handle)
        if cached.get("key") == key:
            return cached
    tic = time.time()
    csv_file, root = split_paths(data_dir, "training")
    names, keypoints = read_keypoints_csv(csv_file)
    course = [(gray(read_image(root / name, as_stored=True)), points) for name, points in zip(names, keypoints)]
    faces = [face for folder in folders for face in scan_folder(folder)]
    held_out = validation_photos(faces)
    wild = [(gray(read_image(f.picture, as_stored=True)), f.keypoints) for f in faces if (f.folder, f.photo) not in held_out]
    backgrounds = [gray(picture) for _, picture in no_face_pictures("training", data_dir)]
    sources = {"key": key, "course": course, "wild": wild, "backgrounds": backgrounds,
               "held_out_faces": sum((f.folder, f.photo) in held_out for f in faces)}

    def save(temporary: str) -> None:
        with open(temporary, "wb") as handle:
            pickle.dump(sources, handle, protocol=pickle.HIGHEST_PROTOCOL)

    atomic_write(CACHE_FILE, save)
    log(f"sources decoded in {time.time() - tic:.0f} s")
    return sources


# ---------------------------------------------------------------------------------------------------------
# Synthesis
# ---------------------------------------------------------------------------------------------------------
def photometric(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Float image (0-255) with random gamma, contrast, brightness, blur and noise."""
    out = image.astype(np.float32)
    if rng.random() < 0.5 * strength:
        gamma = float(np.exp(rng.normal(0, 0.35)))
        out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** gamma
    if rng.random() < 0.7 * strength:
        mean = float(out.mean())
        out = (out - mean) * float(np.exp(rng.normal(0, 0.3))) + mean + float(rng.normal(0, 25))
    if rng.random() < 0.3 * strength:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.5, 2.0)))
    if rng.random() < 0.3 * strength:
        out = out + rng.normal(0, rng.uniform(2, 12), out.shape).astype(np.float32)
    return out


def background(sources: dict, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size float canvas without faces."""
    kind = rng.random()
    if kind < 0.08:
        return np.full((size, size), rng.uniform(0, 255), np.float32)
    if kind < 0.14:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        a, b, c = rng.uniform(-150, 150, 3)
        return np.clip(a * xx + b * yy + c + 128, 0, 255).astype(np.float32)
    if kind < 0.18:
        noise = rng.normal(128, 60, (size // 8 + 1, size // 8 + 1)).astype(np.float32)
        return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    picture = sources["backgrounds"][rng.integers(len(sources["backgrounds"]))]
    h, w = picture.shape
    side = min(h, w) * float(np.exp(rng.uniform(np.log(0.15), 0)))
    x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
    matrix = np.array([[size / side, 0, -x0 * size / side], [0, size / side, -y0 * size / side]], np.float32)
    if rng.random() < 0.5:
        matrix = np.array([[-1, 0, size - 1], [0, 1, 0]], np.float32) @ np.vstack([matrix, [0, 0, 1]])
    out = cv2.warpAffine(picture, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return photometric(out, rng, 0.6)


def face_matrix(points: np.ndarray, target_side: float, centre: tuple[float, float], angle: float, mirror: bool) -> np.ndarray:
    """2 x 3 affine matrix taking source pixels so the face's Haar box gets side ``target_side`` (before the roll)
    centred at ``centre``, rolled by ``angle`` degrees, mirrored if asked."""
    box = haar_box_from_keypoints(points)
    cx, cy, side = box[0] + box[2] / 2, box[1] + box[3] / 2, box[2]
    s = target_side / side
    a = math.radians(angle)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * s
    if mirror:
        rot = rot @ np.diag([-1.0, 1.0])
    offset = np.array(centre) - rot @ np.array([cx, cy])
    return np.hstack([rot, offset[:, None]]).astype(np.float32)


def roll_angle(rng: np.random.Generator, any_roll: float = ANY_ROLL) -> float:
    """A face's roll in degrees: any angle for a share ``any_roll`` of the faces; else uniform in +-90 one time in ten,
    near 180 one time in fifty, otherwise normal about upright (sigma 15, within +-35)."""
    if rng.random() < any_roll:
        return float(rng.uniform(-180, 180))
    if rng.random() < 0.1:
        return float(rng.uniform(-90, 90))
    if rng.random() < 0.02:
        return float(180 + rng.normal(0, 15))
    return float(np.clip(rng.normal(0, 15), -35, 35))


class Paster:
    """Builds one canvas: faces pasted in order, their alpha masks kept to tell which are covered later."""

    def __init__(self, canvas: np.ndarray) -> None:
        self.canvas = canvas
        self.size = canvas.shape[0]
        self.faces: list[tuple[np.ndarray, int, np.ndarray]] = []  # (box x, y, side, side; mask index; five points)
        self.masks: list[np.ndarray] = []

    def paste(self, picture: np.ndarray, matrix: np.ndarray, rng: np.random.Generator, feather: str, points: np.ndarray | None) -> None:
        size = self.size
        warped = cv2.warpAffine(photometric(picture, rng), matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        h, w = picture.shape
        if feather == "ellipse" and points is not None:
            box = haar_box_from_keypoints(points)
            cx, cy, side = box[0] + box[2] / 2, box[1] + box[3] / 2 + 0.12 * box[2], box[2]
            src = np.zeros((h, w), np.float32)
            axes = (max(1, int(side * rng.uniform(0.75, 1.1))), max(1, int(side * rng.uniform(0.9, 1.3))))
            cv2.ellipse(src, (int(cx), int(cy)), axes, 0, 0, 360, 1.0, -1)
        else:
            src = np.ones((h, w), np.float32)
        alpha = cv2.warpAffine(src, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        soften = scale * (0.08 * min(h, w) if feather == "ellipse" else rng.uniform(0, 2))
        if soften > 0.4:
            alpha = cv2.GaussianBlur(alpha, (0, 0), soften)
        self.canvas = self.canvas * (1 - alpha) + warped * alpha
        self.masks.append(alpha)
        if points is not None:  # the upright face's box, turned about its centre; the five points, moved
            x, y, side, _ = haar_box_from_keypoints(points)
            cx, cy = matrix[:, :2] @ np.array([x + side / 2, y + side / 2]) + matrix[:, 2]
            side *= scale
            five = five_points(points) @ matrix[:, :2].T.astype(np.float64) + matrix[:, 2]
            if np.linalg.det(matrix[:, :2]) < 0:  # mirrored: the subject's right is now on the other side
                five = five[list(FIVE_POINT_MIRROR)]
            self.faces.append((np.array([cx - side / 2, cy - side / 2, side, side]), len(self.masks) - 1, five))


def synthesise(
    sources: dict, size: int, rng: np.random.Generator, any_roll: float = ANY_ROLL
) -> tuple[np.ndarray, list[np.ndarray], list[bool], list[np.ndarray]]:
    """One canvas: (size x size uint8, face boxes (x, y, side, side), positive or ignored for each, five points
    (5, 2) of each); ``any_roll`` of its faces are turned by any angle (``roll_angle``)."""
    course, wild = sources["course"], sources["wild"]
    layout = rng.random()
    if layout < 0.25:  # a course picture as the scene
        picture, points = course[rng.integers(len(course))]
        side = float(np.exp(rng.uniform(np.log(MIN_FACE * 1.5), np.log(size * MAX_FACE_OF_CANVAS))))
        centre = (rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.9) * size)
        canvas = background(sources, size, rng)
        paster = Paster(canvas)
        paster.paste(picture, face_matrix(points, side, centre, roll_angle(rng, any_roll), rng.random() < 0.5), rng, "rect", points)
        extra = rng.integers(0, 2)
    else:
        paster = Paster(background(sources, size, rng))
        extra = -1
    group = layout >= 0.25 and layout < 0.55
    empty = layout >= 0.55 and layout < 0.70
    close_up = layout >= 0.70 and rng.random() < 0.4  # faces filling much of the canvas, as in the coarse pass
    count = 0 if empty else (int(rng.integers(2, 9)) if group else (1 if extra < 0 else int(extra)))
    row = close_up and rng.random() < CLOSE_UP_NEIGHBOURS  # two or three people side by side, as on a poster
    if row:
        count = int(rng.integers(2, 4))
        direction = 1.0 if rng.random() < 0.5 else -1.0
    # squares of background pasted like faces, so a pasted edge means nothing
    hard = sources.get("hard_negatives") or []
    for _ in range(int(rng.integers(0, 4)) + (3 if empty else 0)):
        if hard and rng.random() < HARD_NEGATIVE_SHARE:  # a place a model took for a face, at any roll
            patch, roll = hard[rng.integers(len(hard))], float(rng.uniform(-180, 180))
            s = float(np.exp(rng.uniform(np.log(MIN_FACE), np.log(size)))) * HARD_NEGATIVE_MARGIN
        else:
            patch, roll = sources["backgrounds"][rng.integers(len(sources["backgrounds"]))], float(rng.uniform(-30, 30))
            s = float(np.exp(rng.uniform(np.log(12), np.log(size))))
        ph, pw = patch.shape
        fake = np.array([[pw * 0.3, ph * 0.3], [pw * 0.7, ph * 0.7]], np.float32)
        matrix = face_matrix(fake, s, (rng.uniform(0, size), rng.uniform(0, size)), roll, rng.random() < 0.5)
        paster.paste(patch, matrix, rng, "ellipse" if rng.random() < 0.5 else "rect", None)
    previous = None  # (centre, side) of the row's last face
    for _ in range(count):
        picture, points = wild[rng.integers(len(wild))] if rng.random() < 0.65 else course[rng.integers(len(course))]
        if group:
            side = float(np.exp(rng.uniform(np.log(MIN_FACE), np.log(60))))
        elif row:  # faces of about a third to a half of the canvas, each beside the last, of about its size
            side = float(np.exp(rng.uniform(np.log(0.3), np.log(0.6)))) * size if previous is None else previous[1] * float(np.exp(rng.normal(0, 0.15)))
        elif close_up:
            side = float(np.exp(rng.uniform(np.log(0.45 * size), np.log(size * MAX_FACE_OF_CANVAS))))
        else:
            side = float(np.exp(rng.uniform(np.log(MIN_FACE), np.log(size * MAX_FACE_OF_CANVAS))))
        if row and previous is None:
            centre = ((0.5 - direction * rng.uniform(0.1, 0.35)) * size, rng.uniform(0.3, 0.7) * size)
        elif row:
            step = (previous[1] + side) / 2 * rng.uniform(0.9, 1.3) * direction
            centre = (previous[0][0] + step, previous[0][1] + rng.uniform(-0.25, 0.25) * side)
        elif close_up:
            centre = (rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.7) * size)
        else:
            centre = (rng.uniform(-0.1, 1.1) * size, rng.uniform(-0.1, 1.1) * size)
        # a neighbour in a row is feathered to its face, so that it covers little of the face beside it
        feather = "ellipse" if rng.random() < 0.5 or previous is not None else "rect"
        paster.paste(picture, face_matrix(points, side, centre, roll_angle(rng, any_roll), rng.random() < 0.5), rng, feather, points)
        previous = (centre, side)
    canvas = paster.canvas
    if rng.random() < 0.2:  # low resolution round trip
        small = max(16, int(size / rng.uniform(1.5, 3)))
        canvas = cv2.resize(cv2.resize(canvas, (small, small), interpolation=cv2.INTER_AREA), (size, size), interpolation=cv2.INTER_LINEAR)
    canvas = photometric(canvas, rng, 0.5)
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    boxes, positive, points = [], [], []
    for box, mask_index, five in paster.faces:
        x, y, side, _ = box
        cx, cy = x + side / 2, y + side / 2
        ix0, iy0 = max(0, int(x)), max(0, int(y))
        ix1, iy1 = min(size, int(math.ceil(x + side))), min(size, int(math.ceil(y + side)))
        if ix1 <= ix0 or iy1 <= iy0:
            continue  # not in the canvas at all
        visible = (ix1 - ix0) * (iy1 - iy0) / max(side * side, 1.0)
        covered = 0.0
        later = paster.masks[mask_index + 1 :]
        if later:
            cover = np.maximum.reduce([m[iy0:iy1, ix0:ix1] for m in later])
            covered = float(cover.mean())
        inside = 0 <= cx < size and 0 <= cy < size
        ok = inside and (visible >= POSITIVE_VISIBLE or side >= CLOSE_UP * size) and covered <= MAX_COVERED and side >= MIN_FACE * 0.9
        boxes.append(box)
        positive.append(bool(ok))
        points.append(five)
    return canvas, boxes, positive, points


def targets(
    boxes: list[np.ndarray], positive: list[bool], points: list[np.ndarray], size: int, stride: int = STRIDE
) -> dict[str, np.ndarray]:
    """Heatmap (h, w), ignore mask (h, w: 1 where the heatmap loss counts), centre cells, and at each the regressed
    values (log size, offset x, y, the five points' offsets from the centre in sides, the roll class) and their
    weight; h = w = size / stride cells."""
    cells = size // stride
    heat = np.zeros((cells, cells), np.float32)
    weight = np.ones((cells, cells), np.float32)
    yy, xx = np.mgrid[0:cells, 0:cells].astype(np.float32)
    centres, cells_at, regress_at = [], [], []
    for box, ok, five in zip(boxes, positive, points):
        x, y, side, _ = box
        u, v = (x + side / 2) / stride, (y + side / 2) / stride
        if not ok:
            r = side / stride * IGNORE_RADIUS
            weight[(np.abs(xx + 0.5 - u) <= r) & (np.abs(yy + 0.5 - v) <= r)] = 0.0
            continue
        i, j = int(v), int(u)
        sigma = max(0.6, side / stride / HEAT_SIGMA_CELLS)
        heat = np.maximum(heat, np.exp(-((xx - j) ** 2 + (yy - i) ** 2) / (2 * sigma**2)))
        centres.append((i, j))
        relative = ((five - np.array([x + side / 2, y + side / 2])) / side).reshape(-1)
        roll_class = float(roll_bin(eye_line_angle(five)))
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                ii, jj = i + di, j + dj
                if 0 <= ii < cells and 0 <= jj < cells:
                    cells_at.append((ii, jj))
                    regress_at.append((math.log(side / SIZE_UNIT), u - jj, v - ii, *relative, roll_class, 1.0 if di == dj == 0 else NEIGHBOUR_WEIGHT))
    for i, j in centres:
        heat[i, j] = 1.0
        weight[i, j] = 1.0
    return {"heat": heat, "weight": weight, "centres": np.array(cells_at, np.int64).reshape(-1, 2), "regress": np.array(regress_at, np.float32).reshape(-1, 5 + 2 * POINT_COUNT)}


class SyntheticFaces(Dataset):
    """``length`` canvases of epoch ``epoch``: sample i comes from default_rng([seed, epoch, i])."""

    def __init__(self, sources: dict, size: int, length: int, seed: int, any_roll: float = ANY_ROLL, stride: int = STRIDE) -> None:
        self.sources, self.size, self.length, self.seed, self.epoch = sources, size, length, seed, 0
        self.any_roll, self.stride = any_roll, stride

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        canvas, boxes, positive, points = synthesise(self.sources, self.size, rng, self.any_roll)
        return {"image": canvas, **targets(boxes, positive, points, self.size, self.stride)}


def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    batch = {
        "image": torch.from_numpy(np.stack([s["image"] for s in samples])[:, None].astype(np.float32)),
        "heat": torch.from_numpy(np.stack([s["heat"] for s in samples])),
        "weight": torch.from_numpy(np.stack([s["weight"] for s in samples])),
    }
    index = [np.concatenate([np.full((len(s["centres"]), 1), k), s["centres"]], axis=1) for k, s in enumerate(samples)]
    batch["index"] = torch.from_numpy(np.concatenate(index).astype(np.int64))
    batch["regress"] = torch.from_numpy(np.concatenate([s["regress"] for s in samples]))
    return batch


# ---------------------------------------------------------------------------------------------------------
# Loss and training
# ---------------------------------------------------------------------------------------------------------
def detection_loss(output: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """CenterNet's loss: penalty-reduced focal loss on the heatmap (alpha 2, beta 4), L1 on log size, offset and
    (at ``POINT_WEIGHT``) the five points, and the roll classes' cross-entropy (at ``ROLL_WEIGHT``) at the face
    centres; all divided by the number of faces (at least 1)."""
    logits = output[:, 0]
    prob = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    heat, weight = batch["heat"], batch["weight"]
    pos = heat.eq(1).float()
    log_p = torch.nn.functional.logsigmoid(logits)
    log_not_p = torch.nn.functional.logsigmoid(-logits)
    pos_loss = -(((1 - prob) ** 2) * log_p * pos).sum()
    neg_loss = -(((1 - heat) ** 4) * (prob**2) * log_not_p * (1 - pos) * weight).sum()
    n = max(int(pos.sum().item()), 1)
    index = batch["index"]
    if len(index):
        picked = output[index[:, 0], 1:, index[:, 1], index[:, 2]]
        target, w = batch["regress"][:, :-1], batch["regress"][:, -1]
        size_loss = ((picked[:, 0] - target[:, 0]).abs() * w).sum() / n
        offset_loss = ((picked[:, 1:3] - target[:, 1:3]).abs().sum(1) * w).sum() / n
        points = slice(3, 3 + 2 * POINT_COUNT)
        point_loss = ((picked[:, points] - target[:, points]).abs().sum(1) * w).sum() / n
        roll_logits = picked[:, 3 + 2 * POINT_COUNT : 3 + 2 * POINT_COUNT + ROLL_BINS]
        roll_loss = (torch.nn.functional.cross_entropy(roll_logits, target[:, -1].long(), reduction="none") * w).sum() / n
    else:
        size_loss = offset_loss = point_loss = roll_loss = output.sum() * 0
    heat_loss = (pos_loss + neg_loss) / n
    total = heat_loss + size_loss + offset_loss + POINT_WEIGHT * point_loss + ROLL_WEIGHT * roll_loss
    parts = {"heat": heat_loss, "size": size_loss, "offset": offset_loss, "points": point_loss, "roll": roll_loss}
    return total, {k: v.item() for k, v in parts.items()}


def load_weights(net: torch.nn.Module, path: str) -> None:
    """Load a ``.pt``'s weights into ``net``; where the file's last layer has fewer outputs (a model without the
    five points), its outputs are copied and the new ones start at zero. A file whose outputs are read at a finer
    stride (``cnn.stride_of``) gives its weights to a network read at a coarser one: the top-down path's modules of
    the finer levels are left out and the others keep their levels."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    own = net.state_dict()
    dropped = STRIDES.index(stride_of(own)) - STRIDES.index(stride_of(state))
    if dropped < 0:
        raise ValueError(f"{path} reads its outputs at a coarser stride than the network being trained.")
    if dropped:
        state = {_shifted(name, dropped): value for name, value in state.items() if _shifted(name, dropped) is not None}
    for name, value in state.items():
        if value.shape != own[name].shape and value.shape[1:] == own[name].shape[1:] and value.shape[0] < own[name].shape[0]:
            grown = torch.zeros_like(own[name])
            grown[: value.shape[0]] = value
            state[name] = grown
    net.load_state_dict(state)


def _shifted(name: str, dropped: int) -> str | None:
    """A weight's name in a network whose top-down path stops ``dropped`` levels sooner; None for the levels left out."""
    part, _, rest = name.partition(".")
    if part not in ("lateral", "smooth"):
        return name
    index, _, rest = rest.partition(".")
    return None if int(index) < dropped else f"{part}.{int(index) - dropped}.{rest}"


def mine_hard_negatives(sources: dict, model: str | Path | None, log=print) -> list[np.ndarray]:
    """Hard negatives: square cuts (``HARD_NEGATIVE_MARGIN`` times the detection's side, clipped to the picture) of
    the training pictures without faces around every detection of ``model`` (a detector ``.pt`` or ``.onnx``;
    None: no mining) scoring at least ``HARD_NEGATIVE_SCORE``."""
    if model is None:
        return []
    from detector_architectures.cnn import CNNFaceDetector

    onnx_file = Path(model).with_suffix(".onnx")
    detector = CNNFaceDetector(onnx_file if onnx_file.is_file() else model, threads=1, score_threshold=HARD_NEGATIVE_SCORE,
                               min_face_size=MIN_FACE, min_face_fraction=0.0)
    tic = time.time()
    cuts = []
    for picture in sources["backgrounds"]:
        for found in detector.detect(picture):
            x, y, side, _ = found.box
            half = side * HARD_NEGATIVE_MARGIN / 2
            cx, cy = x + side / 2, y + side / 2
            x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
            x1, y1 = min(picture.shape[1], int(cx + half) + 1), min(picture.shape[0], int(cy + half) + 1)
            if min(x1 - x0, y1 - y0) >= 8:
                cuts.append(picture[y0:y1, x0:x1].copy())
    log(f"{len(cuts)} hard negatives mined from {len(sources['backgrounds'])} pictures without faces in {time.time() - tic:.0f} s")
    return cuts


def train(sources: dict, args: argparse.Namespace) -> tuple[torch.nn.Module, dict]:
    """Train the network on synthesised canvases; (network, metadata)."""
    start = time.time()
    dataset = SyntheticFaces(sources, args.canvas, args.epoch_size, args.seed, args.any_roll, args.stride)
    net = build_network(stride=args.stride)
    if args.init:
        load_weights(net, args.init)
    optimiser = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(args.epoch_size / args.batch)
    total_steps = steps_per_epoch * args.epochs
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr, total_steps=total_steps, pct_start=0.1)
    for epoch in range(args.epochs):
        dataset.epoch = epoch
        loader = DataLoader(dataset, batch_size=args.batch, shuffle=False, num_workers=args.workers, collate_fn=collate,
                            persistent_workers=False, prefetch_factor=4 if args.workers else None)
        net.train()
        sums: dict[str, float] = {}
        tic = time.time()
        for batch in loader:
            output = net(batch["image"])
            loss, parts = detection_loss(output, batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            optimiser.step()
            schedule.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
        print(f"epoch {epoch + 1}/{args.epochs}: " + ", ".join(f"{k} {v / steps_per_epoch:.3f}" for k, v in sums.items())
              + f" ({time.time() - tic:.0f} s)", flush=True)
    metadata = {
        "widths": list(WIDTHS), "depths": list(DEPTHS), "fpn_width": FPN_WIDTH, "stride": args.stride, "size_unit": SIZE_UNIT, "points": POINT_COUNT,
        "roll_bins": ROLL_BINS,
        "canvas": args.canvas, "epochs": args.epochs, "epoch_size": args.epoch_size, "batch": args.batch, "lr": args.lr,
        "seed": args.seed, "any_roll": args.any_roll, "init": Path(args.init).name if args.init else None, "train_seconds": round(time.time() - start),
    }
    return net, metadata


def export_onnx(net: torch.nn.Module, path: Path) -> None:
    example = torch.zeros(1, 1, 160, 160)
    atomic_write(path, lambda tmp: torch.onnx.export(
        net, example, tmp, input_names=["image"], output_names=["maps"], opset_version=17,
        dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "maps": {0: "batch", 2: "cells_y", 3: "cells_x"}},
        dynamo=False,
    ))


CALIBRATION_STEP = 4  # every 4th course training picture and every 2nd 300-W training crop


def calibrate(onnx_path: Path, sources: dict) -> tuple[float, float, float]:
    """The ``haar.BoxCorrection`` (scale, dx, dy) taking the network's boxes to the Haar-convention boxes of the
    faces, fitted (medians) on training pictures only: every CALIBRATION_STEP-th course training picture and every
    other 300-W training crop, each detection matching its face (IoU >= 0.3, the surest) counted once. Written into
    the ONNX file's metadata (``box_correction``, JSON)."""
    import onnx

    from detector_architectures import BoxCorrection, box_iou
    from detector_architectures.cnn import CNNFaceDetector

    detector = CNNFaceDetector(onnx_path, threads=1, score_threshold=0.05)
    detector.box_correction = BoxCorrection()
    detected, target = [], []
    for picture, points in sources["course"][::CALIBRATION_STEP] + sources["wild"][:: CALIBRATION_STEP // 2]:
        box = haar_box_from_keypoints(points)
        matches = [d.box for d in detector.detect(picture) if box_iou(d.box, box) >= 0.3]
        if matches:
            detected.append(matches[0])
            target.append(box)
    fit = BoxCorrection.fit(np.array(detected), np.array(target))
    values = (round(fit.scale, 4), round(fit.dx, 4), round(fit.dy, 4))
    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = "box_correction", json.dumps(values)
    atomic_write(onnx_path, lambda tmp: onnx.save(model, tmp))
    print(f"box correction (scale, dx, dy) from {len(detected)} training faces: {values}", flush=True)
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="course dataset folder (default: $FKP_DATA or data/)")
    parser.add_argument("--data-300w", help="300-W folder(s) (default: $FKP_300W)")
    parser.add_argument("--out", default="saved_models/face_detector.pt", help="weights file; the .onnx goes beside it")
    parser.add_argument("--canvas", type=int, default=160, help="side of the synthesised training pictures (multiple of 32)")
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=13)
    parser.add_argument("--epoch-size", type=int, default=9600, help="canvases per epoch")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--any-roll", type=float, default=ANY_ROLL, help=f"share of the faces turned by any angle (default {ANY_ROLL})")
    parser.add_argument("--stride", type=int, choices=STRIDES, default=STRIDE,
                        help=f"working pixels per output cell (default {STRIDE}); a finer --init gives its weights to a coarser network")
    parser.add_argument("--init", help="start from the weights of this .pt (fine-tuning) instead of from scratch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training (one data worker runs beside)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--calibrate-only", action="store_true",
                        help="no training: export the weights in --out again and fit the box correction")
    args = parser.parse_args(argv)
    if not 0.0 <= args.any_roll <= 1.0:
        parser.error("--any-roll is a share of the faces: give a number from 0 to 1")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    start = time.time()
    sources = load_sources(args.data, args.data_300w)
    sources["hard_negatives"] = [] if args.calibrate_only else mine_hard_negatives(sources, args.init)
    print(f"{len(sources['course'])} course pictures, {len(sources['wild'])} 300-W training crops "
          f"({sources['held_out_faces']} held-out faces not read), {len(sources['backgrounds'])} pictures without faces", flush=True)
    out = Path(args.out)
    if args.calibrate_only:
        checkpoint = torch.load(out, map_location="cpu", weights_only=True)
        metadata = checkpoint["metadata"]
        net = build_network(points=int(metadata.get("points", 0)), roll_bins=int(metadata.get("roll_bins", 0)),
                            stride=stride_of(checkpoint["state_dict"]))
        net.load_state_dict(checkpoint["state_dict"])
    else:
        net, metadata = train(sources, args)
    net.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx_path = out.with_suffix(".onnx")
    export_onnx(net, onnx_path)
    metadata["box_correction"] = list(calibrate(onnx_path, sources))
    metadata["onnx_sha256"] = weights_digest(onnx_path)
    atomic_write(out, lambda tmp: torch.save({"state_dict": net.state_dict(), "metadata": metadata}, tmp))
    print(f"wrote {out} and {onnx_path} in {time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
