"""Plots and small glue for the four notebooks; the project's logic lives in the other modules.

The notebooks stay thin: prose, short cells and figures. What they would otherwise repeat (drawing keypoints on
faces, the numbered 68-point map, layer-by-layer shapes, loss curves, filter grids) is here. Only the standard
library and numpy are imported at module level, so the Colab setup cell can call ``install_requirements`` before
the project's requirements are installed; everything else is imported where it is used.

Conventions: images are RGB uint8 (H, W, 3) or grayscale (H, W) arrays or (1, H, W) tensors; keypoints are
(68, 2) arrays of (x, y) pixels. Ground truth is drawn in green, predictions in magenta.
"""
from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:  # for type hints only: nothing heavy is imported when the module loads
    import torch
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

REPO_DIR = Path(__file__).resolve().parents[1]
# The course's public repository on GitHub: the notebooks' Colab badges and setup cells hold the same address.
# In the instructors' source it is a placeholder, replaced when the students' release is made.
REPO_URL = "https://github.com/COURSE-OWNER/COURSE-REPOSITORY"
# requirements.txt lines whose package only serves the tests or the Jupyter server: Colab has its own Jupyter,
# and upgrading it under a running Colab kernel can break the runtime.
NOTEBOOK_TOOLING = ("jupyter", "nbval", "pytest")

TRUTH_COLOUR = "lime"
PREDICTION_COLOUR = "magenta"
# The 68 iBUG/300-W points by face part. "Left" and "right" are the subject's: the left eye (42-47) appears on
# the image's right. (data_load.LEFT_EYE_OUTER = 36 names the corner from the image's side instead.)
KEYPOINT_GROUPS: dict[str, tuple[range, str]] = {
    "jaw": (range(0, 17), "tab:blue"),
    "right brow": (range(17, 22), "tab:orange"),
    "left brow": (range(22, 27), "tab:green"),
    "nose bridge": (range(27, 31), "tab:red"),
    "nostrils": (range(31, 36), "tab:purple"),
    "right eye": (range(36, 42), "tab:brown"),
    "left eye": (range(42, 48), "tab:pink"),
    "outer lips": (range(48, 60), "tab:olive"),
    "inner lips": (range(60, 68), "tab:cyan"),
}
# Groups drawn as closed outlines on the keypoint map; the others are open polylines.
_CLOSED_GROUPS = ("right eye", "left eye", "outer lips", "inner lips")
MARKER_RGB = (255, 0, 255)  # pure magenta: a colour natural photos almost never contain


# ---------------------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------------------
def runtime_requirements(requirements: str | Path = REPO_DIR / "requirements.txt", skip: Sequence[str] = NOTEBOOK_TOOLING) -> list[str]:
    """The requirement lines of ``requirements`` without comments, blanks and the packages named in ``skip``."""
    lines = []
    for line in Path(requirements).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower()
        if name not in skip:
            lines.append(line)
    return lines


def install_requirements(requirements: str | Path = REPO_DIR / "requirements.txt", skip: Sequence[str] = NOTEBOOK_TOOLING) -> list[str]:
    """``pip install`` what the notebooks need from ``requirements`` (quietly); returns the lines installed.

    Packages already installed in a suitable version are left alone; the Jupyter and test tools are skipped.
    """
    wanted = runtime_requirements(requirements, skip)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *wanted], check=True)
    return wanted


def check_versions(min_python: tuple[int, int] = (3, 10), max_opencv_major: int = 4) -> dict[str, str]:
    """Print the versions the notebooks depend on; raise RuntimeError, saying what to do, if one is unsuitable."""
    if sys.version_info < min_python:
        raise RuntimeError(f"Python {platform.python_version()} is too old: use Python {min_python[0]}.{min_python[1]} or newer.")
    import cv2
    import torch

    opencv_major = int(cv2.__version__.split(".")[0])
    if opencv_major > max_opencv_major:
        raise RuntimeError(f"OpenCV {cv2.__version__} is not supported yet: `pip install 'opencv-python<{max_opencv_major + 1}'`.")
    versions = {"python": platform.python_version(), "torch": torch.__version__, "opencv": cv2.__version__, "numpy": np.__version__}
    print("  ".join(f"{name} {version}" for name, version in versions.items()))
    return versions


def short_todo_errors() -> bool:
    """Show unfinished work in this notebook as one line that says what to do, instead of a traceback.

    * ``NotImplementedError``: a TODO not done yet. The release's stubs name what is missing and where its TODO is,
      and the error often surfaces deep inside the project's code or in a later notebook.
    * ``NameError`` raised by a cell's own code: a name an earlier cell defines is missing, usually because that
      cell stopped on a TODO. (A NameError inside a module keeps its full traceback: it is a bug there.)

    The cell still fails (for the checks, nbval and grading); only the display is short. Returns False outside
    IPython.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False

    def short(shell: Any, etype: type, value: BaseException, tb: Any) -> list[str]:
        if issubclass(etype, NotImplementedError):
            return [f"{etype.__name__}: a TODO is not done yet. {value}"]
        last = tb
        while last.tb_next is not None:
            last = last.tb_next
        if is_cell_code(last.tb_frame.f_code.co_filename):
            return [f"{etype.__name__}: {value}. An earlier cell defines it: run the cells above in order and fix the "
                    "first one that stops (often a TODO not done yet), then run this cell again."]
        return shell.InteractiveTB.structured_traceback(etype, value, tb)

    def one_line(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> list[str]:
        stb = short(shell, etype, value, tb)
        # IPython hands custom exceptions to this handler without showing anything: show the error here, as the
        # cell's error output, so the notebook, the checks and grading see the cell fail.
        shell._showtraceback(etype, value, stb)
        return stb

    shell.set_custom_exc((NotImplementedError, NameError), one_line)
    return True


def is_cell_code(filename: str) -> bool:
    """Whether a code object's file name is a notebook cell's, as IPython and ipykernel name them."""
    return filename.startswith("<ipython-input-") or "ipykernel_" in filename


def needs(namespace: dict, name: str, todo: str) -> None:
    """Raise ``NotImplementedError`` naming the TODO ``todo`` ("*Your turn: ...* above") when the notebook's
    ``namespace`` (``globals()``) does not define ``name`` yet, because that TODO's cell has not run or stopped."""
    if name not in namespace:
        raise NotImplementedError(f"{name} is not defined yet: do the TODO of {todo}, run its cell, then this one.")


def notice(text: str) -> None:
    """Show ``text`` (markdown) as a highlighted note in a notebook, so that it cannot be missed; print it elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(f"NOTE: {text}")
        return
    display(Markdown(f"> \N{WARNING SIGN} {text}"))


def quick_settings(threads: int = 1, dpi: int = 72) -> None:
    """Settings for quick mode (tests, CI): ``threads`` CPU threads for torch and OpenCV, smaller figures.

    On a small machine shared with other work, several torch threads wait on each other and run many times
    slower than one.
    """
    import cv2
    import matplotlib.pyplot as plt
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    plt.rcParams["figure.dpi"] = dpi


# ---------------------------------------------------------------------------------------------------------
# Images and keypoints
# ---------------------------------------------------------------------------------------------------------
def to_display(image: Any) -> np.ndarray:
    """A numpy image matplotlib can show: (1, H, W) tensors and arrays become (H, W); others pass through."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    return image


def as_pixels(sample: dict) -> tuple[np.ndarray, np.ndarray]:
    """(image, keypoints in pixels) of any sample: raw, normalised (keypoints in [-1, 1]) or made of tensors."""
    import data_load

    image = to_display(sample["image"])
    keypoints = sample["keypoints"]
    if hasattr(keypoints, "detach"):
        keypoints = keypoints.detach().cpu().numpy()
    keypoints = np.asarray(keypoints, np.float32).reshape(-1, 2)
    if image.dtype != np.uint8 and np.abs(keypoints).max() <= 2.0:  # normalised: see data_load.Normalize
        keypoints = data_load.denormalize_keypoints(keypoints, (image.shape[1], image.shape[0]))
    return image, keypoints


def show_keypoints(
    ax: "Axes",
    image: Any,
    keypoints: np.ndarray | None = None,
    color: str = PREDICTION_COLOUR,
    size: float = 12,
    title: str | None = None,
    highlight: dict[str, Iterable[int]] | None = None,
) -> "Axes":
    """Draw an image and its keypoints on ``ax``; ``highlight`` maps a colour to point indices drawn larger in it."""
    image = to_display(image)
    if image.dtype == np.uint8:
        limits: tuple[float | None, float | None] = (0, 255)
    elif image.size and 0 <= float(image.min()) and float(image.max()) <= 1:
        limits = (0, 1)
    else:  # e.g. a filter's response: let matplotlib stretch it
        limits = (None, None)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=limits[0], vmax=limits[1])
    if keypoints is not None:
        points = np.asarray(keypoints, np.float32).reshape(-1, 2)
        ax.scatter(points[:, 0], points[:, 1], s=size, c=color, marker=".")
        for colour, indices in (highlight or {}).items():
            chosen = points[list(indices)]
            ax.scatter(chosen[:, 0], chosen[:, 1], s=size * 3, c=colour, marker="o", edgecolors="black", linewidths=0.5)
    if title:
        ax.set_title(title, fontsize=9)
    ax.axis("off")
    return ax


def image_grid(count: int, columns: int = 3, size: float = 3.0, aspect: float = 1.0) -> tuple["Figure", list["Axes"]]:
    """A figure with ``count`` panels ``size`` inches wide and ``aspect`` times as high, in rows of ``columns``
    (unused panels hidden)."""
    import matplotlib.pyplot as plt

    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * aspect * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[count:]:
        ax.axis("off")
    return fig, flat[:count]


def show_images(images: Sequence[Any], titles: Sequence[str] | None = None, columns: int = 3, size: float = 3.0) -> "Figure":
    """Pictures side by side, without axes, in panels shaped like the tallest picture (wide pictures leave no gap
    between the rows)."""
    shapes = [to_display(image).shape[:2] for image in images]
    aspect = max(height / width for height, width in shapes) if shapes else 1.0
    fig, axes = image_grid(len(images), columns, size, aspect)
    for i, (ax, image) in enumerate(zip(axes, images)):
        show_keypoints(ax, image, None, title=titles[i] if titles else None)
    fig.tight_layout()
    return fig


def show_samples(samples: Sequence[dict], columns: int = 3, size: float = 3.0, title_key: str | None = "name") -> "Figure":
    """Samples (dicts with "image" and "keypoints", raw or normalised) with their keypoints, in a grid."""
    fig, axes = image_grid(len(samples), columns, size)
    for ax, sample in zip(axes, samples):
        image, keypoints = as_pixels(sample)
        title = str(sample.get(title_key, "")) if title_key else None
        show_keypoints(ax, image, keypoints, title=title or None)
    fig.tight_layout()
    return fig


def show_batch(batch: dict, columns: int = 4, size: float = 2.5) -> "Figure":
    """A collated batch ({"image": (B, 1, S, S), "keypoints": (B, K, 2) in [-1, 1]}) as a grid of faces."""
    samples = [{"image": batch["image"][i], "keypoints": batch["keypoints"][i]} for i in range(len(batch["image"]))]
    return show_samples(samples, columns, size, title_key=None)


def label_offsets(points: np.ndarray, distance: float = 7.0) -> np.ndarray:
    """Where to write each of the 68 point numbers, as (dx, dy) screen offsets in points (y up): away from the centre
    of the point's face part, except the inner lips, written towards the mouth's centre, so that the numbers of
    the lip corners (48 and 60, 54 and 64), which nearly touch, land on opposite sides."""
    points = np.asarray(points, np.float64).reshape(68, 2)
    offsets = np.zeros_like(points)
    for name, (indices, _) in KEYPOINT_GROUPS.items():
        group = list(indices)
        centre = points[48:60].mean(axis=0) if name in ("outer lips", "inner lips") else points[group].mean(axis=0)
        away = points[group] - centre
        away *= -1 if name == "inner lips" else 1
        length = np.linalg.norm(away, axis=1, keepdims=True)
        away = np.where(length > 1e-9, away / np.maximum(length, 1e-9), [0.0, 1.0])
        offsets[group] = away * distance * [1, -1]  # image y points down, screen offsets up
    return offsets


def plot_keypoint_map(keypoints: np.ndarray, ax: "Axes | None" = None, fontsize: float = 7) -> "Axes":
    """The 68 points numbered (0-based, iBUG order) and coloured by face part, with outlines and a legend.

    ``keypoints`` is any (68, 2) shape in image coordinates (y down), e.g. ``pipeline.evaluation.mean_shape(...)``.
    """
    import matplotlib.pyplot as plt

    points = np.asarray(keypoints, np.float64).reshape(68, 2)
    ax = ax or plt.gca()
    for name, (indices, colour) in KEYPOINT_GROUPS.items():
        group = points[list(indices)]
        outline = np.vstack([group, group[:1]]) if name in _CLOSED_GROUPS else group
        ax.plot(outline[:, 0], outline[:, 1], "-", color=colour, alpha=0.4, linewidth=1)
        ax.scatter(group[:, 0], group[:, 1], s=18, color=colour, label=f"{name} ({indices.start}-{indices.stop - 1})", zorder=3)
    for i, offset in enumerate(label_offsets(points, distance=fontsize)):
        ax.annotate(str(i), points[i], xytext=offset, textcoords="offset points", fontsize=fontsize, ha="center", va="center")
    ax.set_aspect("equal")
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    return ax


def image_sizes(folder: str | Path, names: Sequence[str]) -> np.ndarray:
    """(N, 2) widths and heights of the named image files, read from their headers (no decoding)."""
    from PIL import Image

    sizes = np.empty((len(names), 2), np.int64)
    for i, name in enumerate(names):
        with Image.open(Path(folder) / name) as image:
            sizes[i] = image.size
    return sizes


# ---------------------------------------------------------------------------------------------------------
# Checking that a transform keeps keypoints on their pixels
# ---------------------------------------------------------------------------------------------------------
def paint_marker(sample: dict, index: int, radius: int | None = None, colour: tuple[int, int, int] = MARKER_RGB) -> dict:
    """A copy of a raw sample (RGB uint8 image) with a filled disk painted on keypoint ``index``."""
    import cv2

    image = np.ascontiguousarray(sample["image"]).copy()
    radius = radius or max(3, int(round(0.02 * min(image.shape[:2]))))
    x, y = np.asarray(sample["keypoints"][index], np.float64)
    cv2.circle(image, (int(round(x * 16)), int(round(y * 16))), radius * 16, colour, -1, cv2.LINE_8, shift=4)
    return {**sample, "image": image}


def marker_centre(image: np.ndarray) -> np.ndarray | None:
    """(x, y) centre of the pure-magenta pixels of an RGB uint8 image, or None when there are none."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError("marker_centre needs an RGB image: check markers before Normalize turns images gray.")
    r, g, b = (image[..., c].astype(np.int32) for c in range(3))
    ys, xs = np.nonzero((r > 180) & (b > 180) & (g < 80))
    if len(xs) == 0:
        return None
    return np.array([xs.mean(), ys.mean()])


def marker_offset(transform: Callable[[dict], dict], sample: dict, index: int = 30, expect_index: int | None = None) -> float:
    """Pixels between where ``transform`` moves a disk painted on keypoint ``index`` and where it says that
    keypoint went (point ``expect_index`` of its output: for a mirror, the point the labels were swapped to).

    A correct geometric transform gives well under 1 pixel; infinity when the disk left the picture.
    """
    out = transform(paint_marker(sample, index))
    image, keypoints = as_pixels(out)
    centre = marker_centre(np.asarray(out["image"]))
    if centre is None:
        return float("inf")
    return float(np.linalg.norm(centre - keypoints[index if expect_index is None else expect_index]))


# ---------------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------------
def layer_shapes(model: "torch.nn.Module", input_shape: Sequence[int] = (1, 1, 224, 224)) -> list[tuple[str, str, tuple[int, ...], int]]:
    """(name, layer type, output shape, parameters) of every leaf layer for a zero input, in eval mode."""
    import torch

    rows: list[tuple[str, str, tuple[int, ...], int]] = []
    hooks = []
    for name, module in model.named_modules():
        if name and not list(module.children()):
            def record(mod, _inputs, output, name=name):
                rows.append((name, type(mod).__name__, tuple(output.shape), sum(p.numel() for p in mod.parameters())))
            hooks.append(module.register_forward_hook(record))
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(*input_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return rows


def print_layer_shapes(model: "torch.nn.Module", input_shape: Sequence[int] = (1, 1, 224, 224)) -> None:
    """Print ``layer_shapes`` as a table, starting with the input."""
    print(f"{'layer':<14}{'type':<14}{'output shape':<22}{'parameters':>12}")
    print(f"{'input':<14}{'':<14}{str(tuple(input_shape)):<22}{'':>12}")
    for name, kind, shape, params in layer_shapes(model, input_shape):
        print(f"{name:<14}{kind:<14}{str(shape):<22}{params:>12,}")


def first_conv(model: "torch.nn.Module") -> "torch.nn.Conv2d":
    """The model's first convolution layer (the one that looks at the pixels)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            return module
    raise ValueError("the model has no Conv2d layer")


def plot_filters(weights: "torch.Tensor | np.ndarray", columns: int = 8, size: float = 1.1) -> "Figure":
    """The (N, 1, k, k) weights of a first conv layer as a grid of small gray images, numbered."""
    import matplotlib.pyplot as plt

    if hasattr(weights, "detach"):
        weights = weights.detach().cpu().numpy()
    weights = np.asarray(weights)[:, 0]
    rows = -(-len(weights) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < len(weights):
            ax.imshow(weights[i], cmap="gray")
            ax.set_title(str(i), fontsize=7)
    fig.tight_layout()
    return fig


def plot_feature_maps(image: Any, maps: dict[str, np.ndarray], count: int = 8, size: float = 1.3) -> "Figure":
    """A face crop, then one row per layer with its first ``count`` feature maps (``explain.feature_maps``), each
    scaled to its own range: bright where the channel responds most."""
    import matplotlib.pyplot as plt

    rows = len(maps)
    fig, axes = plt.subplots(rows, count + 1, figsize=(size * (count + 1), size * rows + 0.3), squeeze=False)
    for row, (name, stack) in enumerate(maps.items()):
        show_keypoints(axes[row, 0], image, title="input" if row == 0 else None)
        for column in range(count):
            ax = axes[row, column + 1]
            ax.axis("off")
            if column < len(stack):
                ax.imshow(stack[column], cmap="viridis")
                ax.set_title(f"{name}[{column}]" if column == 0 else str(column), fontsize=7)
        axes[row, 1].text(-0.1, 0.5, f"{stack.shape[1]} x {stack.shape[2]}", transform=axes[row, 1].transAxes,
                          rotation=90, va="center", ha="right", fontsize=7)
    fig.tight_layout()
    return fig


def show_signed(ax: "Axes", values: Any, title: str | None = None, cmap: str = "RdBu_r", percentile: float = 100.0) -> "Axes":
    """A signed 2-D array (filter weights, a filter's response) with a colour map centred on zero: red positive,
    blue negative, white zero, so the sign shows (a gray scale would shift zero to mid-gray). The scale ends at the
    ``percentile`` of the absolute values (below 100: a few strong values saturate, so that weaker ones show)."""
    values = np.asarray(values, np.float32)
    limit = float(np.percentile(np.abs(values), percentile)) or float(np.abs(values).max()) or 1.0
    ax.imshow(values, cmap=cmap, vmin=-limit, vmax=limit)
    if title:
        ax.set_title(title, fontsize=9)
    ax.axis("off")
    return ax


def show_heatmap(ax: "Axes", image: Any, heatmap: np.ndarray, point: np.ndarray | None = None, title: str | None = None,
                 alpha: float = 0.5) -> "Axes":
    """A heat map in [0, 1] (e.g. ``explain.grad_cam``) over a gray image, with an optional (x, y) point marked."""
    show_keypoints(ax, image, title=title)
    ax.imshow(np.asarray(heatmap), cmap="jet", alpha=alpha, vmin=0, vmax=1)
    if point is not None:
        ax.scatter([point[0]], [point[1]], s=40, facecolors="none", edgecolors="white", linewidths=1.5)
    return ax


def loss_curves(input_size: int = 224, max_error_px: float = 25.0, steps: int = 201) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Value and gradient of each training loss (``training.make_loss``) for one coordinate's error, by error in
    input pixels: {name: (errors_px, values, gradients per pixel)}."""
    import torch

    from pipeline import training

    errors = np.linspace(0.0, max_error_px, steps)
    curves = {}
    for name in ("mse", "smoothl1", "wing"):
        loss_fn = training.make_loss(name, input_size)
        values, gradients = np.empty(steps), np.empty(steps)
        for i, error in enumerate(errors):
            predicted = torch.tensor([error / (input_size / 2)], dtype=torch.float64, requires_grad=True)
            loss = loss_fn(predicted, torch.zeros(1, dtype=torch.float64))
            loss.backward()
            values[i] = float(loss.detach())
            gradients[i] = float(predicted.grad) / (input_size / 2)
        curves[name] = (errors, values, gradients)
    return curves


def plot_loss_curves(input_size: int = 224, max_error_px: float = 25.0, reference_px: float = 10.0) -> "Figure":
    """Loss and gradient of MSE, SmoothL1 and Wing against the error in pixels, each scaled to 1 at ``reference_px``
    (their raw scales differ by orders of magnitude; the shapes are what matter)."""
    import matplotlib.pyplot as plt

    labels = {"mse": "MSE", "smoothl1": "SmoothL1 (beta 0.02)", "wing": "Wing (w 10, eps 2)"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, (errors, values, gradients) in loss_curves(input_size, max_error_px).items():
        at = int(np.argmin(np.abs(errors - reference_px)))
        left.plot(errors, values / values[at], label=labels[name])
        right.plot(errors, gradients / gradients[at], label=labels[name])
    left.set(xlabel=f"error (pixels of a {input_size} px input)", ylabel=f"loss (1 at {reference_px:g} px)", title="loss", ylim=(0, 4))
    right.set(xlabel=f"error (pixels of a {input_size} px input)", ylabel=f"gradient (1 at {reference_px:g} px)",
              title="how hard the loss pulls", ylim=(0, 4))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_history(history: dict) -> "Figure":
    """Training and validation loss by epoch (left) and the validation NME_io (right): ``history`` holds the lists
    "epoch", "train_loss", "val_loss" and "val_nme_io" (notebook 2's ``fit``)."""
    import matplotlib.pyplot as plt

    epochs = history["epoch"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.plot(epochs, history["train_loss"], "o-", label="training (augmented)")
    left.plot(epochs, history["val_loss"], "o-", label="validation (held-out people)")
    left.set(xlabel="epoch", ylabel="loss", title="loss")
    right.plot(epochs, history["val_nme_io"], "o-", color="tab:green")
    right.set(xlabel="epoch", ylabel="NME (outer eye corners)", title="validation error")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    left.legend()
    fig.tight_layout()
    return fig


REFERENCE_DESIGN = REPO_DIR / "course" / "reference_design.json"


def reference_design(path: str | Path = REFERENCE_DESIGN) -> dict:
    """What the reference design of notebook 2 measured when trained by the notebook's own code: its epochs, its
    training time, and its test metrics under ``"test"`` (``pipeline.evaluation.summarize``'s keys); see the file
    for the machine and the command."""
    import json

    return json.loads(Path(path).read_text(encoding="utf-8"))


def compare_with_references(nme_io: float, baseline_nme_io: float, reference: dict) -> str:
    """A few lines on how far a model's test NME_io is from the mean-face baseline and from the reference design,
    and what to try next."""
    ref = float(reference["test"]["nme_io"])
    head = (f"Your model: NME_io {nme_io:.4f}; the mean face: {baseline_nme_io:.4f}; the reference design: {ref:.4f} "
            f"({reference['epochs']} epochs, {reference['train_minutes']:.1f} min).")
    if not np.isfinite(nme_io) or nme_io >= 0.9 * baseline_nme_io:
        return (f"{head}\nIt does not beat the mean face clearly, so it has learned little about faces. Look at the loss curves: "
                "if the validation error got stuck near the mean face's from the first epochs, the network collapsed (it "
                "predicts the same face for every picture): lower the learning rate; if the training loss hardly fell, train "
                "more epochs; if it fell but the validation error did not, check your test_transform (notebook 1) and validate.")
    if ref > 0 and nme_io > 1.1 * ref:
        return (f"{head}\nIt beats the mean face {baseline_nme_io / nme_io:.1f} times over, but is {nme_io / ref:.2f} times the "
                "reference's error. To try: more epochs (the budget cell says what they cost), the Wing loss, a cosine "
                "schedule, random mirroring in train_transform, or the reference design itself.")
    if ref > 0:
        return f"{head}\nIt is as good as the reference design or better."
    return f"{head}\nIt beats the mean face {baseline_nme_io / nme_io:.1f} times over (the reference design has no measured figure here)."


# ---------------------------------------------------------------------------------------------------------
# Predictions and pictures
# ---------------------------------------------------------------------------------------------------------
def face_window(keypoints: np.ndarray, image_shape: Sequence[int], margin: float = 0.35) -> tuple[int, int, int, int]:
    """A square (x0, y0, x1, y1) around the keypoints, ``margin`` of their size on each side, inside the image."""
    points = np.asarray(keypoints, np.float64).reshape(-1, 2)
    low, high = points.min(axis=0), points.max(axis=0)
    centre, half = (low + high) / 2, (1 + 2 * margin) * float((high - low).max()) / 2
    x0, y0 = np.maximum(np.floor(centre - half).astype(int), 0)
    x1 = int(min(np.ceil(centre[0] + half), image_shape[1]))
    y1 = int(min(np.ceil(centre[1] + half), image_shape[0]))
    return int(x0), int(y0), max(x1, int(x0) + 1), max(y1, int(y0) + 1)


def show_prediction(ax: "Axes", image: np.ndarray, truth: np.ndarray | None, predicted: np.ndarray | None, title: str | None = None,
                    labels: tuple[str, str] = ("truth", "prediction")) -> "Axes":
    """One face, zoomed in: ground truth in green, prediction in magenta (either may be None; ``labels`` names
    the two sets, e.g. two models)."""
    reference = truth if truth is not None else predicted
    x0, y0, x1, y1 = face_window(reference, image.shape) if reference is not None else (0, 0, image.shape[1], image.shape[0])
    show_keypoints(ax, image[y0:y1, x0:x1], None, title=title)
    offset = np.array([x0, y0])
    if truth is not None:
        ax.scatter(*(truth - offset).T, s=10, c=TRUTH_COLOUR, marker=".", label=labels[0])
    if predicted is not None:
        ax.scatter(*(predicted - offset).T, s=10, c=PREDICTION_COLOUR, marker=".", label=labels[1])
    return ax


def show_predictions(images: Sequence[np.ndarray], truths: Sequence[np.ndarray | None], predictions: Sequence[np.ndarray | None],
                     titles: Sequence[str] | None = None, columns: int = 3, size: float = 3.2,
                     labels: tuple[str, str] = ("truth", "prediction")) -> "Figure":
    """Faces with ground truth (green) and predictions (magenta), each zoomed to its face, in a grid with one legend."""
    fig, axes = image_grid(len(images), columns, size)
    for i, ax in enumerate(axes):
        show_prediction(ax, images[i], truths[i], predictions[i], titles[i] if titles else None, labels)
    handles, found = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, found, loc="lower center", ncol=len(handles), markerscale=3, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def draw_boxes(image: np.ndarray, boxes: Iterable[Any], colour: tuple[int, int, int] = (0, 200, 255), thickness: int | None = None) -> np.ndarray:
    """A copy of an RGB image with (x, y, w, h) boxes (or objects with ``.box``) drawn on it."""
    import cv2

    canvas = np.ascontiguousarray(image).copy()
    for box in boxes:
        x, y, w, h = (float(v) for v in getattr(box, "box", box))
        width = thickness or max(1, int(round(min(canvas.shape[:2]) / 250)))
        cv2.rectangle(canvas, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), colour, width, cv2.LINE_AA)
    return canvas


def crop_square_box(box: Sequence[float], scale: float | None = None, shift: float | None = None) -> np.ndarray:
    """The (x, y, w, h) square the network sees for a face box (``data_load.crop_square_from_box``)."""
    import data_load

    cx, cy, side = data_load.crop_square_from_box(
        box, data_load.CROP_SCALE if scale is None else scale, data_load.CROP_SHIFT if shift is None else shift
    )
    return np.array([cx - side / 2, cy - side / 2, side, side])


def predict_with_crop(model: Any, images: Sequence[np.ndarray], boxes: Sequence[Sequence[float]], scale: float, shift: float) -> np.ndarray:
    """(N, K, 2) keypoints in image pixels when each face is cut with another crop ``scale`` and ``shift`` than
    the one the model was trained on (``data_load.CROP_SCALE``, ``CROP_SHIFT``): to see why they must match."""
    import cv2

    import data_load
    from pipeline import inference

    size = model.input_size
    crops, matrices = [], []
    for image, box in zip(images, boxes):
        matrix = data_load.crop_matrix(*data_load.crop_square_from_box(box, scale, shift), size)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        crops.append(data_load.warp(gray, matrix, size))
        matrices.append(matrix)
    points = inference.predict_crops(model, np.stack(crops).astype(np.float32) / 255.0)
    return np.stack([data_load.transform_points(p, data_load.invert_matrix(m)) for p, m in zip(points, matrices)])


def on_checkerboard(rgba: np.ndarray, square: int = 12) -> np.ndarray:
    """An RGBA picture blended over a gray checkerboard (RGB uint8), so its transparent parts show."""
    rgba = np.asarray(rgba)
    height, width = rgba.shape[:2]
    ys, xs = np.indices((height, width))
    board = np.where(((xs // square + ys // square) % 2)[..., None] == 0, 200, 150).astype(np.float32)
    alpha = rgba[..., 3:].astype(np.float32) / 255
    return np.clip(rgba[..., :3] * alpha + board * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)
