"""Writing files safely: atomically, and private ones never readable by others, not even briefly."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` in one step; the file has ``mode`` from its creation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask; a left-over tmp keeps its own
        os.write(fd, data.encode() if isinstance(data, str) else data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_private(path: Path, data: str | bytes) -> None:
    """For secrets (keys, configurations holding a key): mode 0600 from the start."""
    write_atomic(path, data, 0o600)


def private_dir(path: Path) -> Path:
    """A directory only its owner can enter (mode 0700), created if needed."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path
