"""Small file helpers that the rest of the project shares: a file's SHA-256, and writing a file atomically.

Nothing here imports the rest of the project.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, in hex, read in blocks of 1 MiB (a large archive never sits in memory whole)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """``write(temporary_path)`` into a temporary file beside ``path``, then rename it to ``path``: a crash never
    leaves a half-written file, and an earlier ``path`` stays whole until the new one is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
