"""Small filesystem helpers shared by the stages: atomic writes, preallocation."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, cast


@functools.cache
def _umask() -> int:
    # read once: os.umask can only be read by setting it, which races with other threads
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


PARTIAL_SUFFIX = ".tmp"
"""Every temporary file the writers here make is hidden (``.<name>.<random>.tmp``)."""
_PARTIAL_SUFFIXES = (PARTIAL_SUFFIX, ".link", ".copy")  # also the object store's temporaries


def partial_prefix(name: str) -> str:
    """The ``prefix`` of ``mkstemp`` for a temporary file beside a file called ``name``:
    ``.<name>.``, the name cut (at a character) so that the temporary's whole name stays
    within the 255 bytes a file name may take (80 CJK characters are 240 bytes in UTF-8)."""
    room = _NAME_MAX - len(".") - len(".") - _RANDOM - max(map(len, _PARTIAL_SUFFIXES))
    raw = os.fsencode(name)
    if len(raw) > room:  # a character cut in two, or bytes that are not UTF-8, are left out
        name = raw[:room].decode("utf-8", "ignore")
    return f".{name}."


_NAME_MAX = 255  # bytes in a file name (ext4, xfs, btrfs, APFS, NTFS in characters)
_RANDOM = 8  # the random part mkstemp adds


def is_partial_write(name: str) -> bool:
    """A file name reprokit's writers give a file before renaming it: a process killed
    mid-write leaves it behind, and nothing may take it for the file it was to become."""
    return name.startswith(".") and name.endswith(_PARTIAL_SUFFIXES)


def has_partial_writes(folder: Path) -> bool:
    """Whether any file under ``folder`` is a partial write (:func:`is_partial_write`)."""
    return any(is_partial_write(n) for _, _, names in os.walk(folder) for n in names)


def complete_files(folder: Path) -> Iterator[Path]:
    """The regular files under ``folder`` (no link followed), partial writes left out."""
    for directory, _, names in os.walk(folder):
        for name in sorted(names):
            path = Path(directory) / name
            if not is_partial_write(name) and path.is_file() and not path.is_symlink():
                yield path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file in the same folder, are fsync'ed, then renamed over
    the target; on any failure the temporary file is removed and the target is untouched.
    The file gets the permissions a plain ``open(path, "w")`` would (``0o666`` less the
    umask), not ``mkstemp``'s private ``0o600``: artifacts and locks are meant to be shared.
    """
    _replace_durably(path, lambda handle: handle.write(data))


def atomic_copy(source: BinaryIO, path: str | os.PathLike[str]) -> None:
    """Copy what is left to read of ``source`` to ``path`` as :func:`atomic_write_bytes` writes
    bytes, :data:`COPY_CHUNK` bytes at a time: a 400 MB file is never held in memory."""
    import shutil

    _replace_durably(path, lambda handle: shutil.copyfileobj(source, handle, COPY_CHUNK))


COPY_CHUNK = 1 << 20
"""Bytes read at a time when a file is copied or compared."""


def _replace_durably(path: str | os.PathLike[str], fill: Callable[[BinaryIO], object]) -> None:
    """``fill`` a temporary file beside ``path``, fsync it and rename it over ``path``."""
    target = Path(path)
    prefix = partial_prefix(target.name)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=PARTIAL_SUFFIX, dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def preallocate(handle: BinaryIO, length: int) -> None:
    """Reserve the disk blocks of the next ``length`` bytes ``handle`` will write, without
    changing the file's size (Linux ``fallocate`` with ``FALLOC_FL_KEEP_SIZE``, as
    ``numpy.save`` does): ext4 then takes a quarter less CPU time to write 400 MB. Best
    effort: nothing happens where the handle has no file descriptor or the call fails."""
    import io
    import sys

    if sys.platform != "linux" or length <= 0:
        return
    try:
        fd, offset = handle.fileno(), handle.tell()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return
    fallocate = _fallocate()
    if fallocate is not None:
        fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, length)  # its result is not needed


_FALLOC_FL_KEEP_SIZE = 1


@functools.cache
def _fallocate() -> Callable[[int, int, int, int], int] | None:
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate64
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    function.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], function)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Text (UTF-8) variant of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_then_name(folder: str | os.PathLike[str], fill: Callable[[BinaryIO], str]) -> Path:
    """Write a file into ``folder`` through ``fill(handle)``, which returns the file's name
    (e.g. one that holds the content's digest, known only once it is written); the file
    appears under that name whole, by a rename, or not at all.

    Unlike :func:`atomic_write_bytes` the data is not fsync'ed: this is for large files whose
    loss in a crash of the machine (not of the process) is detected when they are read (the
    size their header declares), where waiting for the disk would cost more than writing.
    """
    fd, tmp = tempfile.mkstemp(prefix=".write.", suffix=PARTIAL_SUFFIX, dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            name = fill(handle)
        target = Path(folder) / name
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def locked_by_another(path: str | os.PathLike[str]) -> bool:
    """Whether a process holds an exclusive ``flock`` on ``path`` (False when it is missing)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO put there must not hang
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def process_exists(pid: int) -> bool:
    """Whether ``pid`` is a process that can still do something: not a finished one, nor a
    zombie waiting to be reaped (Linux). One of another user counts: it exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's process
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as status:
            text = status.read()
    except OSError:  # no /proc (not Linux), or gone meanwhile
        return True
    # "pid (comm) state ...": comm may hold spaces and parentheses, so read after the last ")"
    return text[text.rfind(b")") + 2 :][:1] != b"Z"


def usable_cores() -> int:
    """The processors this process may run on (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1
