"""A web demo: every face in an uploaded picture or a webcam shot, with its 68 keypoints or a face filter.

    python app.py                        # serves http://127.0.0.1:7860 (or the next free port) on this computer
    python app.py --port 8080            # another port
    python app.py --listen               # also reachable from other computers (listens on 0.0.0.0)
    python app.py --host 192.168.1.20    # listen on one address of this computer

The page is a Gradio app built on ``keypoint_pipeline.KeypointPipeline`` (one per process), ``detect_cli.render`` (the
keypoints, or a filter of ``filters.FILTERS``) and ``detect_cli.picture_record`` (a record of ``detect.py
--json``). It works without network access: the theme uses the system's fonts, usage statistics are off and no
public share link is made unless ``--share`` is given (Gradio otherwise makes one on Colab). Uploads, webcam
shots and results live in one temporary folder that is deleted when the app stops.

The page shows the annotated picture as a JPEG of at most ``SHOWN_MAX_SIDE`` pixels on its longer side, so a
12-megapixel photo shows about a second after its upload (``python benchmarks/app_latency.py`` measures it); the
download is the annotated picture at full size, JPEG for a JPEG photo or a webcam shot, PNG otherwise. Messages (a
file that is not a picture, no face found) go to the status line above the result, never to a pop-up over it.

Exit status: 0 after a normal stop, 1 when the model cannot be loaded, 2 for wrong arguments.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np
from PIL import Image

from pipeline import detect_cli
from data_load import DataError, read_image
from filters import FILTERS
from resources.onnx_model import ModelError
from pipeline.batch import save_rgb
from pipeline.faces import as_rgb_image
from pipeline.keypoint_pipeline import KeypointPipeline

REPO_DIR = Path(__file__).resolve().parents[1]
MODEL_CARD = REPO_DIR / "saved_models" / "README.md"
# Pictures above this many pixels are refused before they are decoded: 25 megapixels (5000 x 5000) is more than
# any phone photo, and a decoded RGB copy of it already takes 75 MB of memory per request.
MAX_PICTURE_PIXELS = 25_000_000
MAX_UPLOAD_SIZE = "50mb"  # Gradio refuses bigger files before they reach the app
# The page shows the annotated picture at most this many pixels on its longer side, as a JPEG: a screen shows no more,
# and a 12-megapixel PNG would take seconds to encode, send and decode. The download is the full-size picture, saved
# like the main job's (``batch.save_rgb``: JPEG of quality ``batch.JPEG_QUALITY`` or PNG).
SHOWN_MAX_SIDE = 2000
JPEG_FORMATS = ("JPEG", "MPO")  # Pillow's names for JPEG files (phones write MPO: JPEG with a second picture)
KEYPOINTS = "keypoints"  # the drawing choice that shows boxes and keypoints instead of a filter
DRAWINGS = (KEYPOINTS, *FILTERS)
LOCAL_HOST = "127.0.0.1"
# System fonts only: Gradio's themes name web fonts, which a browser would fetch.
SYSTEM_FONTS = ("system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif")
MONO_FONTS = ("ui-monospace", "Menlo", "Consolas", "monospace")
NO_PICTURE = "No picture yet: upload a picture (PNG, JPEG, ...) or take one with the webcam."
WELCOME = "Upload a picture to begin."
CLOSE_TIMEOUT = 10.0  # seconds the server may take to close once the app is asked to stop
PRIVACY_NOTE = (
    "Pictures you upload or take with the webcam are processed on the computer that runs this app; they and the "
    "results are kept in a temporary folder that is deleted when the app stops."
)


# ---------------------------------------------------------------------------------------------------------
# Pictures in, results out (no Gradio here: these are what the tests call)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Picture:
    """A picture to annotate: RGB uint8 pixels (H, W, 3), the name its results are saved under, and whether it came
    as a JPEG (a photo: its annotated copy is saved as JPEG too; any other picture as PNG)."""

    image: np.ndarray
    label: str
    jpeg: bool = False


@dataclass
class Result:
    """What the page shows for one picture: the annotated picture at full size (None when there is none), the
    files to download (the annotated picture at full size and the JSON), a status line in Markdown, whether it is a
    warning, and the JPEG file the page shows (at most ``SHOWN_MAX_SIDE`` pixels on its longer side)."""

    annotated: np.ndarray | None
    files: list[str]
    status: str
    warning: bool = False
    shown: str | None = None


def check_picture_size(width: int, height: int, limit: int | None = None) -> None:
    """Raise DataError, saying the limit and to resize, when a width x height picture has more than ``limit``
    pixels (None: ``MAX_PICTURE_PIXELS``)."""
    limit = MAX_PICTURE_PIXELS if limit is None else limit
    if width * height > limit:
        raise DataError(
            f"The picture is {width} x {height} pixels ({width * height / 1e6:.0f} megapixels); this demo takes up to "
            f"{limit / 1e6:.0f} megapixels: resize it (for example to 4000 pixels on its longer side) and upload it again."
        )


def read_upload(path: str | os.PathLike | None) -> Picture:
    """The uploaded file at ``path`` as a ``Picture``, decoded by content (``data_load.read_image``).

    Raises DataError with one line saying what to do for no upload, an empty file, a file that is not a picture,
    and a picture above ``MAX_PICTURE_PIXELS`` (measured from the file's header, before decoding).
    """
    if path is None:
        raise DataError(NO_PICTURE)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path.name} did not arrive: upload it again.")
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty: upload a picture file (PNG, JPEG, ...).")
    try:
        with Image.open(path) as header:
            width, height = header.size
            kind = header.format
    except Image.DecompressionBombError:
        raise DataError(f"{path.name} is far too large to open: resize it below {MAX_PICTURE_PIXELS / 1e6:.0f} megapixels.") from None
    except (OSError, ValueError):
        width, height, kind = 0, 0, None  # a format Pillow does not read: OpenCV decides below
    check_picture_size(width, height)
    try:
        image = read_image(path)
    except DataError:
        raise DataError(f"{path.name} is not a picture this app can read: upload a PNG, JPEG, BMP, TIFF or WebP file.") from None
    check_picture_size(image.shape[1], image.shape[0])
    return Picture(image, path.name, jpeg=kind in JPEG_FORMATS)


def webcam_picture(frame: np.ndarray | None) -> Picture:
    """A webcam shot (RGB or RGBA array from the browser) as a ``Picture``; DataError when there is none."""
    if frame is None:
        raise DataError("No webcam picture yet: allow the browser to use the camera, then take a picture.")
    check_picture_size(frame.shape[1], frame.shape[0])
    return Picture(as_rgb_image(frame), "webcam", jpeg=True)


def status_line(faces: list, milliseconds: float) -> str:
    """How many faces were found and the time detection and keypoints took, with each face's score from the
    model's face/no-face output when the model has one."""
    count = f"**{len(faces)} face{'s' if len(faces) != 1 else ''}** found in {milliseconds:.0f} ms"
    scores = [face.face_score for face in faces if getattr(face, "face_score", None) is not None]
    if scores:
        count += " (face scores " + ", ".join(f"{score:.2f}" for score in scores) + ")"
    return count + " (face detector and keypoint model)."


def shown_picture(image: np.ndarray, max_side: int = SHOWN_MAX_SIDE) -> np.ndarray:
    """``image`` shrunk (area averaging) to at most ``max_side`` pixels on its longer side; unchanged when smaller."""
    scale = max_side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def annotate_picture(pipe: KeypointPipeline, picture: Picture, drawing: str, out_dir: str | os.PathLike) -> Result:
    """Find every face of ``picture``, draw ``drawing`` (``KEYPOINTS`` or a filter name) and save, in a new folder
    inside ``out_dir``: the annotated picture at full size (JPEG for a JPEG picture, else PNG) and the JSON record
    (``detect.py --json`` schema: a list with this picture's record) to download, and the JPEG the page shows (at
    most ``SHOWN_MAX_SIDE`` pixels on its longer side). A picture without faces gives a warning with the picture."""
    filter_name = None if drawing == KEYPOINTS else drawing
    faces, annotated, milliseconds = detect_cli.annotate(pipe, picture.image, filter_name)
    folder = Path(tempfile.mkdtemp(dir=out_dir))
    name = Path(detect_cli.annotated_name(picture.label, filter_name))
    download = folder / name.with_suffix(".jpg" if picture.jpeg else ".png")
    save_rgb(download, annotated)
    shown = folder / "shown" / name.with_suffix(".jpg")  # its own folder: the shown file keeps the download's name
    save_rgb(shown, shown_picture(annotated))
    record = folder / f"{name.stem}.json"
    record.write_text(json.dumps([detect_cli.picture_record(picture.label, picture.image, faces)], indent=1))
    files = [str(download), str(record)]
    if not faces:
        status = (
            f"**No face found** in {milliseconds:.0f} ms: the detector finds frontal, upright faces and misses faces "
            "that are very small in the picture. Try a picture where the face looks at the camera, or crop it around the face."
        )
        return Result(annotated, files, status, warning=True, shown=str(shown))
    return Result(annotated, files, status_line(faces, milliseconds), shown=str(shown))


def respond(pipe: KeypointPipeline, picture: Picture | None, drawing: str, out_dir: str | os.PathLike) -> Result:
    """``annotate_picture``, or a warning Result when there is no picture or the filter name is unknown."""
    if picture is None:
        return Result(None, [], NO_PICTURE, warning=True)
    if drawing not in DRAWINGS:
        return Result(None, [], f"Unknown drawing {drawing!r}: choose one of {', '.join(DRAWINGS)}.", warning=True)
    return annotate_picture(pipe, picture, drawing, out_dir)


# ---------------------------------------------------------------------------------------------------------
# The model card note
# ---------------------------------------------------------------------------------------------------------
def _section(markdown: str, heading: str) -> str:
    """The text under the first ``## heading`` (matched by its start, case-insensitive) up to the next heading."""
    match = re.search(rf"^##\s+{re.escape(heading)}[^\n]*\n(.*?)(?=^#|\Z)", markdown, flags=re.M | re.S | re.I)
    return match.group(1).strip() if match else ""


def model_note(card: str | os.PathLike = MODEL_CARD) -> str:
    """The model card's summary for users, its *In short* section (what the model was trained on, how accurate and
    fast it is against dlib and MediaPipe, its known limits), without the line addressed to the card's readers;
    a pointer to the card when it or the section is missing."""
    pointer = "The model card, `saved_models/README.md` in the project's folder, says what the model was trained on, how it measures and its limits."
    try:
        summary = _section(Path(card).read_text(encoding="utf-8"), "In short")
    except OSError:
        return pointer
    items = summary[summary.find("\n- ") + 1 :] if "\n- " in summary else ""
    if not items:
        return pointer
    return items + "\n\nEverything else, with the commands that measured it: the model card, `saved_models/README.md` in the project's folder (below)."


def model_card(card: str | os.PathLike = MODEL_CARD) -> str:
    """The whole model card in Markdown, or one line saying it is missing."""
    try:
        return Path(card).read_text(encoding="utf-8")
    except OSError:
        return f"The model card is missing: {Path(card).name} was not found."


# ---------------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def shared_pipeline() -> KeypointPipeline:
    """The shipped model and the default face detector, loaded once per process."""
    return KeypointPipeline.from_pretrained()


def private_temp_dir() -> Path:
    """A new temporary folder for uploads and results, deleted when the process ends; Gradio is pointed at it
    (``GRADIO_TEMP_DIR``) so nothing uploaded is kept elsewhere."""
    folder = Path(tempfile.mkdtemp(prefix="facial-keypoints-app-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def offline_theme() -> gr.themes.Base:
    """Gradio's base theme with the system's fonts, so the page fetches no web fonts."""
    return gr.themes.Base(font=list(SYSTEM_FONTS), font_mono=list(MONO_FONTS))


def build_demo(pipe: KeypointPipeline, out_dir: str | os.PathLike) -> gr.Blocks:
    """The page: picture upload or webcam, the drawing to use, the annotated result with its downloads and a
    status line, the model note and the privacy note. Results are saved under ``out_dir``."""

    def show(picture: Picture | None, drawing: str) -> tuple[Any, ...]:
        if picture is None:  # a drawing chosen before any picture: it applies to the next one
            return None, None, None, WELCOME if drawing == KEYPOINTS else f"{WELCOME} It will be drawn with {drawing}."
        result = respond(pipe, picture, drawing, out_dir)
        return picture, result.shown, result.files or None, result.status

    def from_upload(path: str | None, drawing: str) -> tuple[Any, ...]:
        try:
            picture = read_upload(path)
        except DataError as error:  # the status line says what to do: no pop-up over it
            return None, None, None, str(error)
        return show(picture, drawing)

    def from_webcam(frame: np.ndarray | None, drawing: str) -> tuple[Any, ...]:
        try:
            picture = webcam_picture(frame)
        except DataError as error:  # also when the shot is cleared
            return None, None, None, str(error)
        return show(picture, drawing)

    with gr.Blocks(title="Facial keypoints", analytics_enabled=False) as demo:
        gr.Markdown(
            "# Facial keypoints\nEvery face in a picture with its 68 keypoints (iBUG / 300-W order), or with a "
            "face filter. Upload a picture or take one with the webcam."
        )
        picture = gr.State(None)
        with gr.Row():
            with gr.Column():
                with gr.Tab("Upload"):
                    upload = gr.File(
                        label=f"Picture (PNG, JPEG, ...; up to {MAX_PICTURE_PIXELS // 1_000_000} megapixels and {MAX_UPLOAD_SIZE.upper()})",
                        type="filepath",
                        elem_id="upload",
                    )
                with gr.Tab("Webcam"):
                    webcam = gr.Image(label="Webcam", sources=["webcam"], type="numpy", elem_id="webcam")
                drawing = gr.Dropdown(list(DRAWINGS), value=KEYPOINTS, label="Draw", elem_id="drawing")
                gr.Markdown(PRIVACY_NOTE, elem_id="privacy")
                with gr.Accordion("About the model", open=False, elem_id="about"):
                    gr.Markdown(model_note(), elem_id="model-note")
                    with gr.Accordion("The model card", open=False):
                        gr.Markdown(model_card(), elem_id="model-card")
            with gr.Column():
                status = gr.Markdown(WELCOME, elem_id="status")
                result = gr.Image(
                    label=f"Result (shown at most {SHOWN_MAX_SIDE} pixels wide or high; the download is full size)",
                    type="filepath",
                    interactive=False,
                    buttons=["fullscreen"],
                    elem_id="result",
                )
                downloads = gr.File(label="Download: annotated picture (full size) and faces as JSON", file_count="multiple", elem_id="downloads")
        outputs = [picture, result, downloads, status]
        upload.upload(from_upload, [upload, drawing], outputs)
        webcam.change(from_webcam, [webcam, drawing], outputs)
        drawing.change(show, [picture, drawing], outputs)
    return demo


def launch(
    pipe: KeypointPipeline | None = None,
    host: str = LOCAL_HOST,
    port: int | None = None,
    share: bool = False,
    inline: bool | None = None,
    block: bool = True,
    out_dir: Path | None = None,
) -> gr.Blocks:
    """Serve the demo on ``host`` (this computer only by default) and ``port`` (None: 7860 or the next free
    one). ``share`` asks Gradio for a public link (off unless asked, on Colab too); ``inline`` shows the page in
    a notebook (None: when running in one); ``block`` keeps a script running until Ctrl+C. Uploads and results go
    to ``out_dir`` (None: a new ``private_temp_dir``). Returns the app."""
    out_dir = out_dir or private_temp_dir()
    print(f"uploads and results go to {out_dir}, deleted when the app stops", flush=True)
    demo = build_demo(pipe or shared_pipeline(), out_dir)
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        inline=inline,
        prevent_thread_lock=not block,
        max_file_size=MAX_UPLOAD_SIZE,
        theme=offline_theme(),
        ssr_mode=False,
    )
    return demo


def serve(pipe: KeypointPipeline, host: str = LOCAL_HOST, port: int | None = None, share: bool = False) -> None:
    """``launch`` the demo and serve it until Ctrl+C (SIGINT) or a stop request (SIGTERM); then delete the uploads
    and results first, so nothing is left behind, and close the server, waiting at most ``CLOSE_TIMEOUT`` seconds.

    The signals set a flag rather than raising KeyboardInterrupt wherever the main thread happens to be (in
    Gradio's start-up checks, say), so a stop request at any moment ends the app the same clean way."""
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda number, frame: stop.set())
    out_dir = private_temp_dir()
    demo = launch(pipe, host=host, port=port, share=share, block=False, out_dir=out_dir)
    stop.wait()
    shutil.rmtree(out_dir, ignore_errors=True)
    print("stopping: uploads and results deleted", flush=True)
    closing = threading.Thread(target=demo.close, daemon=True)
    closing.start()
    closing.join(CLOSE_TIMEOUT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--host", default=LOCAL_HOST, help=f"address to listen on (default: {LOCAL_HOST}, this computer only)")
    where.add_argument("--listen", action="store_const", const="0.0.0.0", dest="host", help="listen on every address (other computers can connect)")
    parser.add_argument("--port", type=int, help="port (default: 7860 or the next free one)")
    parser.add_argument("--share", action="store_true", help="also make a public link through Gradio's servers (needs internet)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        pipe = shared_pipeline()
    except (DataError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    serve(pipe, host=args.host, port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
