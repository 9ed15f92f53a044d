"""Zip archives written byte for byte the same, and read back as untrusted input.

:func:`write_zip` writes entries sorted by name, each with the same fixed timestamp
(1980-01-01, the earliest a zip can hold), permissions and compression, to a temporary file
beside the target that is renamed over it once complete: the same inputs give the same bytes
(two bundles can be compared with ``cmp``), and a reader never sees half an archive.

:func:`extract_zip` unpacks an archive someone else made: every entry name is checked before
anything is written (no absolute path, no ``..``, no backslash or drive, no duplicate, no
symbolic link or other special file), the number of entries and their total uncompressed size
are bounded (:class:`ZipLimits`, from the sizes the archive declares; a member that inflates
past its declared size fails its check when read), and files are created exclusively inside
a fresh folder. Any refusal is a one-line :class:`~reprokit.exceptions.PathError`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reprokit._fsutil import partial_prefix
from reprokit.exceptions import PathError

__all__ = ["ZipEntry", "ZipLimits", "extract_zip", "write_zip"]

_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o644
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ZipEntry:
    """One file of an archive: its name inside (``/``-separated, relative) and its bytes, given
    either as ``data`` or as a ``source`` file read when the archive is written."""

    name: str
    data: bytes | None = None
    source: Path | None = None


@dataclass(frozen=True)
class ZipLimits:
    """What :func:`extract_zip` accepts: at most ``max_entries`` entries and ``max_bytes``
    uncompressed bytes in all (defaults: 100,000 entries, 16 GiB)."""

    max_entries: int = 100_000
    max_bytes: int = 16 * 1024**3


def write_zip(target: Path, entries: Iterable[ZipEntry]) -> None:
    """Write ``entries`` (sorted by name, which must be unique) to ``target`` atomically."""
    ordered = sorted(entries, key=lambda entry: entry.name)
    names = [entry.name for entry in ordered]
    if len(set(names)) != len(names):
        duplicate = next(n for k, n in enumerate(names) if n in names[:k])
        raise PathError(duplicate, "two files of the archive have this name")
    fd, tmp = tempfile.mkstemp(prefix=partial_prefix(target.name), suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
                for entry in ordered:
                    _write_entry(archive, entry)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_entry(archive: zipfile.ZipFile, entry: ZipEntry) -> None:
    info = zipfile.ZipInfo(entry.name, date_time=_EPOCH)
    info.create_system = 3  # unix, whichever system writes it
    info.external_attr = (stat.S_IFREG | _FILE_MODE) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w", force_zip64=True) as out:
        if entry.data is not None:
            out.write(entry.data)
        elif entry.source is not None:
            with entry.source.open("rb") as source:
                shutil.copyfileobj(source, out, _CHUNK)


def extract_zip(archive: Path, destination: Path, limits: ZipLimits | None = None) -> list[str]:
    """Unpack ``archive`` into the folder ``destination`` (made here; it must not exist) after
    checking every entry; returns the names of the files written."""
    bounds = limits or ZipLimits()
    try:
        with zipfile.ZipFile(archive) as opened:
            members = _checked_members(opened, archive, bounds)
            destination.mkdir(parents=True)
            for member in members:
                _extract_member(opened, member, destination, archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise PathError(str(archive), f"not a readable zip archive ({exc})") from None
    except OSError as exc:
        raise PathError(str(archive), f"cannot unpack: {exc.strerror or exc}") from None
    return [member.filename for member in members if not member.is_dir()]


def _checked_members(
    opened: zipfile.ZipFile, archive: Path, limits: ZipLimits
) -> list[zipfile.ZipInfo]:
    members = opened.infolist()
    if len(members) > limits.max_entries:
        raise PathError(
            str(archive), f"refused: {len(members)} entries, more than {limits.max_entries}"
        )
    total = sum(member.file_size for member in members)
    if total > limits.max_bytes:
        raise PathError(
            str(archive),
            f"refused: {total} bytes once unpacked, more than the limit of {limits.max_bytes}",
        )
    seen: set[str] = set()
    for member in members:
        _check_name(member, archive)
        key = member.filename.rstrip("/")
        if key in seen:
            raise PathError(str(archive), f"refused: entry {key!r} appears twice")
        seen.add(key)
    return members


def _check_name(member: zipfile.ZipInfo, archive: Path) -> None:
    name = member.filename
    shown = f"{archive}: refused entry {name[:200]!r}"
    kind = stat.S_IFMT(member.external_attr >> 16)
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise PathError(shown, "a symbolic link or special file, not a regular file")
    if not name or "\\" in name or "\x00" in name or name.startswith("/") or name[1:2] == ":":
        raise PathError(shown, "an absolute or malformed path")
    if any(part in ("..", ".", "") for part in name.rstrip("/").split("/")):
        raise PathError(shown, "a path that leaves the archive's folder")


def _extract_member(
    opened: zipfile.ZipFile, member: zipfile.ZipInfo, destination: Path, archive: Path
) -> None:
    target = destination.joinpath(*member.filename.rstrip("/").split("/"))
    if member.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.parent.resolve().is_relative_to(destination.resolve()):
        raise PathError(f"{archive}: refused entry {member.filename!r}", "outside the folder")
    with opened.open(member) as source, target.open("xb") as out:
        shutil.copyfileobj(source, out, _CHUNK)
