"""Download the course dataset (placeholder, being written)."""
from pathlib import Path


class DataError(RuntimeError):
    """A problem with the user's data or files, told in one sentence that says what to do."""


def ensure_dataset(target_dir: Path) -> Path:
    raise DataError("download not implemented yet")
