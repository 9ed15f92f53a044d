"""The content-addressed store: every file of a run stored once per content.

``<project root>/.reprokit/objects/<digest[:2]>/<digest>`` (BLAKE3 of the bytes) holds one copy
of each file that a run folder uploads as artifacts (the executed notebook, array sidecars,
snapshot, results). The run folder's file becomes a hard link to the object, and so does the
file in MLflow's artifact location when that is a local folder on the same filesystem (else it
is copied, or uploaded as MLflow does for a remote store). Twelve verifications of a notebook
with a 382 MB array therefore hold one copy of the array, not twenty-four.

Objects are read-only (mode ``0o444``), and reprokit never writes a file in place: every
writer writes a new file and renames it over the old name (:mod:`reprokit._fsutil`), which
replaces the link and leaves the object, and every other link to it, untouched. (A root user
or a program that ``chmod``s a file back can still write through a link: that is a limit of
hard links, not a promise we can make.) So an object is checked before a file is linked to it
(read-only, its size, its digest against its name), and one found damaged is replaced by the
new file rather than shared. The store only saves space: any error writing it leaves the run's
file as it is (then copied where it would have been linked).

An object nobody links any more (link count 1) is garbage: ``reprokit gc`` deletes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reprokit._fsutil import is_partial_write, partial_prefix

OBJECTS_DIR = "objects"
READ_ONLY = 0o444


def objects_folder(project_root: str | os.PathLike[str]) -> Path:
    return Path(project_root) / ".reprokit" / OBJECTS_DIR


@dataclass(frozen=True)
class Linked:
    """What :func:`link_tree` did: files linked to a shared copy, files copied, bytes copied."""

    linked: int = 0
    copied: int = 0
    copied_bytes: int = 0


def intern_file(path: Path, store: Path) -> Path | None:
    """Make ``path`` a read-only hard link to its object in ``store`` (created from it when
    new, or when the object there no longer holds the bytes its name says: ``path`` then
    takes its place); the object, or None when ``path`` is not a regular file or the store
    cannot take it (another filesystem, read-only, full, not ours to write: the store only
    saves space, so ``path`` is then left as it is)."""
    from reprokit.capturing.hashing import hash_file

    try:
        st = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    digest = hash_file(path)
    obj = store / digest[:2] / digest
    try:
        obj.parent.mkdir(parents=True, exist_ok=True)
        if _holds(obj, path, digest):
            _replace_with_link(obj, path)
        else:  # new, or damaged: this file becomes the object (a damaged one's links keep it)
            os.chmod(path, READ_ONLY)
            _replace_with_link(path, obj)
    except OSError:  # the file as it was: a copy, not a link, goes to MLflow's folder
        with contextlib.suppress(OSError):
            os.chmod(path, stat.S_IMODE(st.st_mode))
        return None
    return obj


def _holds(obj: Path, path: Path, digest: str) -> bool:
    """Whether the object ``obj`` is a read-only regular file of the bytes ``path`` has (its
    digest ``digest``): never trusted from its name alone, since a program that ``chmod``s it
    back can write through any of its links. The same file as ``path`` holds them (just
    hashed); else the size is compared first, then the object is hashed."""
    from reprokit.capturing.hashing import hash_file
    from reprokit.exceptions import PathError

    try:
        st = obj.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o222:
            return False
        if os.path.samefile(obj, path):
            return True
        if st.st_size != path.stat().st_size:
            return False
        return hash_file(obj) == digest
    except (OSError, PathError):
        return False


def _replace_with_link(source: Path, target: Path) -> None:
    """``target`` becomes a hard link to ``source``, atomically (a reader sees one or the
    other, never no file). Nothing is left beside it: a rename of a link over another link
    to the same file does nothing (POSIX), the temporary link included, so that case is
    skipped, and the temporary is removed if it is still there after the rename (``target``
    became a link to ``source`` meanwhile)."""
    with contextlib.suppress(FileNotFoundError):
        if os.path.samefile(source, target):
            return
    temporary = _beside(target, ".link")
    os.link(source, temporary)
    try:
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _beside(target: Path, ending: str) -> Path:
    """A temporary name beside ``target``: ``.<name>.<8 hex><ending>``, within 255 bytes."""
    return target.with_name(f"{partial_prefix(target.name)}{secrets.token_hex(4)}{ending}")


def intern_tree(folder: Path, store: Path) -> int:
    """Intern every regular file under ``folder``; how many are now objects."""
    return sum(intern_file(path, store) is not None for path in _files(folder))


def link_tree(folder: Path, destination: Path) -> Linked:
    """Put every file of ``folder`` at the same relative path under ``destination`` (an
    existing file there is replaced): a hard link for a read-only file (an object) where the
    filesystem allows, else a copy (a writable file is never shared)."""
    linked = copied = copied_bytes = 0
    for path in _files(folder):
        target = destination / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if path.stat().st_mode & 0o222:
                raise OSError(errno.EPERM, "writable: copied, not shared")
            _replace_with_link(path, target)
            linked += 1
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            _replace_with_copy(path, target)
            copied, copied_bytes = copied + 1, copied_bytes + path.stat().st_size
    return Linked(linked, copied, copied_bytes)


def _replace_with_copy(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source``, atomically; no partial copy is left behind."""
    temporary = _beside(target, ".copy")
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _files(folder: Path) -> Iterator[Path]:
    for directory, _, names in os.walk(folder):
        for name in sorted(names):
            path = Path(directory) / name
            if is_partial_write(name):  # a killed writer's leftover, or one being written now
                continue
            if path.is_file() and not path.is_symlink():
                yield path


def local_artifact_dir(artifact_uri: str | None) -> Path | None:
    """The folder of a ``file:`` (or plain path) artifact URI; None for a remote store."""
    if not artifact_uri:
        return None
    if artifact_uri.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return Path(unquote(urlsplit(artifact_uri).path))
    if artifact_uri.startswith("/"):
        return Path(artifact_uri)
    return None


def unreferenced_objects(store: Path) -> Iterator[tuple[Path, int]]:
    """Objects no run folder, artifact or sidecar links any more (link count 1), with sizes."""
    if not store.is_dir():
        return
    for path in _files(store):
        if not is_object_name(path):  # never a file of anyone else's put (or linked) there
            continue
        with contextlib.suppress(OSError):
            st = path.lstat()
            if st.st_nlink == 1:
                yield path, st.st_size


def stale_links(
    store: Path, older_than_s: float = 60.0
) -> Iterator[tuple[Path, tuple[int, int, int]]]:
    """Temporary links a process killed while interning left in ``store``
    (``<2 hex>/.<object>.<8 hex>.link``, unchanged for ``older_than_s``: a live one lasts
    between a ``link`` and a ``rename``), with their inode, size and link count. Each may
    hold the only other copy of a run's file, which would then never be freed."""
    import time

    if not store.is_dir():
        return
    now = time.time()
    for folder in store.iterdir():
        if len(folder.name) != 2 or folder.is_symlink() or not folder.is_dir():
            continue
        for path in folder.glob(".*.link"):
            with contextlib.suppress(OSError):
                st = path.lstat()  # ctime: the last link made or removed to its inode
                young = now - st.st_ctime <= older_than_s
                if _is_temporary_link(path) and stat.S_ISREG(st.st_mode) and not young:
                    yield path, (st.st_ino, st.st_size, st.st_nlink)


def _is_temporary_link(path: Path) -> bool:
    """``.<64 hex>.<8 hex>.link`` under the folder of its object: a name
    :func:`_replace_with_link` gives inside the store."""
    parts = path.name.split(".")
    hexes = "0123456789abcdef"
    return (
        len(parts) == 4
        and parts[0] == ""
        and parts[3] == "link"
        and len(parts[1]) == 64
        and len(parts[2]) == 8
        and parts[1][:2] == path.parent.name
        and all(c in hexes for c in parts[1] + parts[2])
    )


def is_object_name(path: Path) -> bool:
    """``<2 hex>/<64 hex>``, the two being the start of the other: a name :func:`intern_file`
    gives."""
    name = path.name
    return (
        len(name) == 64
        and path.parent.name == name[:2]
        and all(c in "0123456789abcdef" for c in name)
    )


__all__ = [
    "OBJECTS_DIR",
    "Linked",
    "intern_file",
    "intern_tree",
    "is_object_name",
    "link_tree",
    "local_artifact_dir",
    "objects_folder",
    "stale_links",
    "unreferenced_objects",
]
