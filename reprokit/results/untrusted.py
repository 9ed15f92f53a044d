"""Reading files that a lock or an executed notebook names: they come from a repository one did
not write, so only a regular file inside its folder is read, and never more than a known size.

A FIFO would block the reader for ever and ``/dev/zero`` would fill memory, so the file is
opened without blocking and checked with ``fstat`` before one byte is read; a path (or a
symbolic link on it) that leads outside its folder is refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from reprokit.exceptions import PathError

__all__ = ["inside_folder", "open_regular", "read_regular", "read_rest"]


def inside_folder(path: Path, folder: Path) -> Path:
    """``path`` with its links resolved, when that stays inside ``folder`` (resolved too);
    :class:`PathError` otherwise."""
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise PathError(str(path), f"leads outside {folder} (to {resolved}); refused")
    return resolved


def open_regular(path: Path, what: str = "file") -> BinaryIO:
    """``path`` opened for reading when it is a regular file (checked on the open file, so
    nothing can swap it in between); :class:`PathError` for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise PathError(str(path), f"cannot read the {what}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)  # fdopen refuses a folder, and would keep its descriptor
    kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
    raise PathError(str(path), f"not a regular file ({kind}); refused")


def read_regular(
    path: Path, limit: int, *, expected: int | None = None, what: str = "file"
) -> bytes:
    """The bytes of the regular file ``path``: at most ``limit`` of them (a larger file is
    refused before reading), exactly ``expected`` when given."""
    with open_regular(path, what) as handle:
        _check_size(path, os.fstat(handle.fileno()).st_size, limit, expected)
        data = read_rest(handle, path, limit)
    _check_size(path, len(data), limit, expected)  # it grew or shrank while being read
    return data


def read_rest(handle: BinaryIO, path: Path, limit: int) -> bytes:
    """What is left in ``handle``, at most ``limit + 1`` bytes (one more tells it was larger)."""
    try:
        return handle.read(limit + 1)
    except OSError as exc:
        raise PathError(str(path), f"cannot read: {exc.strerror}") from None


def _check_size(path: Path, size: int, limit: int, expected: int | None) -> None:
    if expected is not None and size != expected:
        raise PathError(str(path), f"{size} bytes where {expected} are expected; refused")
    if size > limit:
        raise PathError(str(path), f"{size} bytes, more than the {limit} allowed; refused")
