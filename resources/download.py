"""Download and verify the course's facial keypoint dataset.

The images and keypoint CSVs are too big for the repository, so they are fetched on first use:
``ensure_dataset`` downloads a zip archive (the course's own, else the GitHub copy of the course
repository), unpacks it beside the target folder, checks both keypoint CSVs against known SHA-256
checksums and only then moves the folder into place in one rename. The target folder therefore
either holds the verified dataset or does not exist: an interrupted or corrupt download never leaves
a half-written dataset behind. Every failure the user can fix is a ``DataError`` whose message is one
sentence saying what to do.

On Colab, the dataset goes on the machine's own disk (thousands of small files are slow in Google Drive) and
only its archive is kept in Drive: ``ensure_dataset(Path("/content/data"), archive_cache=DRIVE_FILE)`` unpacks
that file when it holds the verified dataset, and otherwise downloads the archive and keeps a copy there (written
beside it, then renamed), so a new machine downloads nothing.

Command line: ``python -m resources.download [--dest DIR] [--archive-cache FILE]`` (default: ``data/`` at the
repository's root, no archive kept).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import urlsplit

import pooch
import requests

from resources.files import file_sha256

DEFAULT_DEST = Path(__file__).resolve().parents[1] / "data"
DATA_ENV_VAR = "FKP_DATA"

# Tried in order: the course's archive (files at its top level), then the course repository as a zip
# (files under P1_Facial_Keypoints-master/data/).
DATASET_URLS: tuple[str, ...] = (
    "https://s3.amazonaws.com/video.udacity-data.com/topher/2018/May/5aea1b91_train-test-data/train-test-data.zip",
    "https://github.com/udacity/P1_Facial_Keypoints/archive/refs/heads/master.zip",
)
CSV_SHA256: dict[str, str] = {
    "training_frames_keypoints.csv": "9f3d1213429893d4955e2789076f6ce11e297253fed86337cffb6ca85bd61ec8",
    "test_frames_keypoints.csv": "348e5e1a5906001f64d3da627e4f61dc3de90771d6d92f5d93628029b3c85e65",
}
IMAGE_DIRS = ("training", "test")
ARCHIVE_NAME = "train-test-data.zip"  # the name a kept archive gets (see ensure_dataset's archive_cache)
# The file that marks the dataset's folder inside an archive, wherever the archive nests it.
ANCHOR_FILE = "training_frames_keypoints.csv"


class DataError(RuntimeError):
    """A problem with the user's data or files, told in one sentence that says what to do."""


def ensure_dataset(
    target_dir: Path,
    urls: Sequence[str] = DATASET_URLS,
    checksums: Mapping[str, str] = CSV_SHA256,
    progress: bool = True,
    archive_cache: str | os.PathLike | None = None,
) -> Path:
    """Return ``target_dir`` holding the verified dataset, downloading it first if it is absent.

    An existing folder is accepted only if it has ``training/``, ``test/`` and every CSV in
    ``checksums`` with the right SHA-256; a non-empty folder that fails this raises ``DataError``
    rather than being overwritten. Otherwise the dataset is unpacked from ``archive_cache`` when
    that file holds it (verified the same way), else each URL is tried in order until one yields a
    zip whose dataset folder passes the same check; the folder is then renamed into place and the
    downloaded zip copied to ``archive_cache`` (a temporary file beside it, then renamed: a damaged
    copy there is replaced, and a copy that cannot be written only costs a warning). Downloads and
    unpacking happen in a temporary folder beside ``target_dir`` (so the final rename stays on one
    file system), removed whatever happens. Raises ``DataError`` if no source works.
    """
    target_dir = Path(target_dir)
    if target_dir.exists() and not _is_empty_dir(target_dir):
        _check_existing(target_dir, checksums)
        return target_dir
    cache = Path(archive_cache) if archive_cache is not None else None

    manual = urls[0] if urls else DATASET_URLS[0]
    download_failures: list[str] = []
    bad_archives: list[DataError] = []
    try:
        target_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}-", suffix=".tmp", dir=target_dir.parent))
        try:
            if cache is not None and cache.is_file():
                try:
                    _move_into_place(_unpack_verified(cache, staging / "kept", checksums, str(cache), manual), target_dir)
                    return target_dir
                except DataError:
                    print(f"warning: {cache} does not hold the verified dataset: downloading it again", file=sys.stderr)
                    shutil.rmtree(staging / "kept", ignore_errors=True)
            for index, url in enumerate(urls):
                attempt_dir = staging / str(index)
                try:
                    archive = _download(url, attempt_dir, progress)
                except (requests.RequestException, ValueError) as error:
                    # ValueError: pooch rejects a URL whose protocol it cannot download.
                    download_failures.append(f"{urlsplit(url).netloc or url}: {_describe(error)}")
                    continue
                try:
                    dataset_dir = _unpack_verified(archive, attempt_dir / "unpacked", checksums, url, manual)
                except DataError as error:
                    bad_archives.append(error)
                    shutil.rmtree(attempt_dir, ignore_errors=True)
                    continue
                _move_into_place(dataset_dir, target_dir)
                if cache is not None:
                    _keep_archive(archive, cache, progress)
                return target_dir
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as error:
        raise DataError(
            f"Could not write the dataset next to {target_dir} ({error.strerror or error}): "
            "free some disk space or pass --dest with a writable folder."
        ) from None

    if bad_archives:
        raise bad_archives[0]
    reasons = "; ".join(download_failures) or "no download address given"
    raise DataError(
        f"Could not download the dataset ({reasons}): download {Path(urlsplit(manual).path).name} from {manual} "
        f"and unzip it into {target_dir}, or set {DATA_ENV_VAR} to a folder that holds it."
    )


def _move_into_place(dataset_dir: Path, target_dir: Path) -> None:
    if target_dir.exists():  # an empty folder: replace it (os.replace only does so on POSIX)
        target_dir.rmdir()
    os.replace(dataset_dir, target_dir)


def _keep_archive(archive: Path, cache: Path, progress: bool) -> None:
    """Copy the verified ``archive`` to ``cache``: a temporary file beside it, then renamed over it. A copy
    that cannot be written is told in one line and skipped (the dataset is in place all the same)."""
    if progress:
        print(f"Keeping the archive in {cache} for the next time", file=sys.stderr)
    temporary = None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{cache.name}.", suffix=".tmp", dir=cache.parent)
        os.close(descriptor)
        shutil.copyfile(archive, temporary)
        os.replace(temporary, cache)
    except OSError as error:
        print(f"warning: could not keep the archive in {cache} ({error.strerror or error}): the next machine downloads it again",
              file=sys.stderr)
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _check_existing(folder: Path, checksums: Mapping[str, str]) -> None:
    """Raise ``DataError`` unless ``folder`` already holds the complete, verified dataset."""
    missing = _missing_entries(folder, checksums)
    if missing:
        raise DataError(
            f"{folder} exists but lacks {', '.join(missing)}: move it away and run `python -m resources.download` again, "
            f"or set {DATA_ENV_VAR} to a folder that holds the dataset."
        )
    mismatched = _mismatched_files(folder, checksums)
    if mismatched:
        raise DataError(
            f"{', '.join(mismatched)} in {folder} failed its SHA-256 check: restore the original file, "
            "or move the folder away and run `python -m resources.download` again."
        )


def _download(url: str, folder: Path, progress: bool) -> Path:
    """Download ``url`` into ``folder`` with pooch (which writes to a temporary file, then renames)."""
    if progress:
        print(f"Downloading the dataset from {url}", file=sys.stderr)
    # With known_hash=None pooch logs the zip's hash and suggests pinning it, and names its temporary
    # path; we verify the CSVs inside instead, so drop pooch's info messages while it works. (A filter,
    # not setLevel: pooch's logger is built outside logging's registry, so it caches its level checks.)
    logger = pooch.get_logger()
    logger.addFilter(_drop_info_messages)
    try:
        return Path(pooch.retrieve(url, known_hash=None, fname="archive.zip", path=folder, progressbar=progress))
    finally:
        logger.removeFilter(_drop_info_messages)


def _drop_info_messages(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def _describe(error: Exception) -> str:
    """A few words on why a download failed, for the one-sentence error message."""
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code}"
    if isinstance(error, requests.Timeout):
        return "timed out"
    if isinstance(error, requests.ConnectionError):
        return "cannot connect, no network?"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "transfer interrupted"
    if isinstance(error, ValueError):
        return "unsupported address"
    return type(error).__name__


def _unpack_verified(archive: Path, folder: Path, checksums: Mapping[str, str], url: str, manual: str) -> Path:
    """Extract ``archive`` into ``folder`` and return its verified dataset folder, or raise ``DataError``."""
    by_hand = f"download {manual} by hand, unzip it and set {DATA_ENV_VAR} to the folder that holds it."
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(folder)
    except zipfile.BadZipFile:
        raise DataError(f"The file downloaded from {url} is not a zip archive: {by_hand}") from None
    dataset_dir = _find_dataset_dir(folder)
    if dataset_dir is None:
        raise DataError(f"The archive from {url} holds no {ANCHOR_FILE}: {by_hand}")
    missing = _missing_entries(dataset_dir, checksums)
    if missing:
        raise DataError(f"The archive from {url} lacks {', '.join(missing)}: {by_hand}")
    mismatched = _mismatched_files(dataset_dir, checksums)
    if mismatched:
        raise DataError(
            f"{', '.join(mismatched)} from {url} failed its SHA-256 check (corrupt download or changed dataset): "
            f"try again later, or {by_hand}"
        )
    return dataset_dir


def _find_dataset_dir(folder: Path) -> Path | None:
    """Return the shallowest folder under ``folder`` holding the anchor CSV (macOS resource forks aside)."""
    candidates = [path.parent for path in folder.rglob(ANCHOR_FILE) if "__MACOSX" not in path.parts and path.is_file()]
    return min(candidates, key=lambda path: len(path.parts), default=None)


def _missing_entries(folder: Path, checksums: Mapping[str, str]) -> list[str]:
    missing = [f"{name}/" for name in IMAGE_DIRS if not (folder / name).is_dir()]
    return missing + [name for name in checksums if not (folder / name).is_file()]


def _mismatched_files(folder: Path, checksums: Mapping[str, str]) -> list[str]:
    return [name for name, expected in checksums.items() if file_sha256(folder / name) != expected.lower()]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: make sure the dataset is in ``--dest`` and say where; 1 with a one-line error if not."""
    parser = argparse.ArgumentParser(description="Download and verify the facial keypoint dataset.")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"dataset folder (default: {DEFAULT_DEST})")
    parser.add_argument("--archive-cache", type=Path, help=f"keep the downloaded archive in this file, and unpack it from there "
                        f"next time (e.g. Drive/.../{ARCHIVE_NAME})")
    args = parser.parse_args(argv)
    try:
        path = ensure_dataset(args.dest, archive_cache=args.archive_cache)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Dataset ready in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
