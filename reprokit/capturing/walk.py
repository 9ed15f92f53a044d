"""Walking a data folder: its regular files, following symbolic links, loops detected.

Everything is ``bytes`` (``os.scandir`` on a bytes path) so that any file name the
filesystem allows, valid UTF-8 or not, is hashed exactly as stored.  Files come out in
the byte order of their relative paths (the order of a folder digest) without a global
sort: each folder's entries are sorted with a sub-folder keyed as ``name + b"/"``,
which is exactly where its contents fall among full paths.  Special files
(FIFOs, sockets, devices) are listed as skipped and never opened: opening a FIFO blocks.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reprokit.capturing._filehash import oserror_reason
from reprokit.exceptions import PathError


def special_kind(mode: int) -> str:
    """What a non-regular, non-directory file is, for messages."""
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


@dataclass
class Folder:
    """One folder met: its path relative to the root ("" for the root) and its files."""

    rel: bytes
    names: list[bytes]  # its regular files (links followed), sorted
    indices: Sequence[int]  # where each of them sits in Tree.rels


@dataclass
class Tree:
    """The regular files under a folder, sorted by the raw bytes of their relative paths."""

    rels: list[bytes] = field(default_factory=list)  # b"/"-separated
    folders: list[Folder] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "relpath: FIFO (not a regular file)"


def _join(display: str, rel: bytes) -> str:
    return f"{display}/{os.fsdecode(rel)}" if rel else display


Ancestors = tuple[tuple[int, int], ...]


@dataclass
class _Scan:
    """A folder being emitted: its sorted entries and how far we got."""

    path: bytes
    rel: bytes  # with a trailing b"/" except for the root
    ancestors: Ancestors
    items: list[tuple[bytes, _Scan | None]] = field(default_factory=list)  # (key, sub-folder)
    position: int = 0
    indices: list[int] = field(default_factory=list)  # of its files, in Tree.rels


def walk_tree(root: bytes, display: str, seen: Callable[[list[bytes]], None] | None = None) -> Tree:
    """All regular files under ``root`` (a directory); ``display`` names it in errors.

    Symbolic links are followed; one that leads back to a directory being walked
    (a loop), or that dangles, raises :class:`PathError` naming the link. ``seen(files)``:
    told after each folder read how many files the walk has met so far.
    """
    root_st = os.stat(root)
    tree = Tree()
    stack = [_Scan(root, b"", ((root_st.st_dev, root_st.st_ino),))]
    _read(stack[0], tree, display)
    while stack:
        scan = stack[-1]
        if scan.position == len(scan.items):
            stack.pop()
            continue
        key, sub = scan.items[scan.position]
        scan.position += 1
        if sub is None:  # a file of a folder that also has sub-folders
            scan.indices.append(len(tree.rels))
            tree.rels.append(scan.rel + key)
        else:
            _read(sub, tree, display)
            stack.append(sub)
            if seen is not None:
                seen(tree.rels)
    tree.skipped.sort()
    return tree


def _read(scan: _Scan, tree: Tree, display: str) -> None:
    """List one folder; a folder without sub-folders is emitted at once."""
    subs: list[_Scan] = []
    try:
        with os.scandir(scan.path) as listing:
            entries = list(listing)
        names = [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
        if len(names) < len(entries):  # sub-folders, links or special files
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    key = (st.st_dev, st.st_ino)
                    rel = scan.rel + entry.name + b"/"
                    subs.append(_Scan(entry.path, rel, (*scan.ancestors, key)))
                else:
                    _visit_other(entry, scan, subs, tree, display, names)
    except PathError:
        raise
    except OSError as exc:
        raise PathError(_join(display, scan.rel.rstrip(b"/")), oserror_reason(exc)) from exc
    names.sort()
    rel = scan.rel
    if not subs:  # the common leaf folder: no per-file Python work
        start = len(tree.rels)
        tree.rels.extend([rel + name for name in names] if rel else names)
        tree.folders.append(Folder(rel[:-1], names, range(start, len(tree.rels))))
        return
    tree.folders.append(Folder(rel[:-1], names, scan.indices))
    items: list[tuple[bytes, _Scan | None]] = [(name, None) for name in names]
    items += [(sub.rel[len(rel) :], sub) for sub in subs]  # key: "name/"
    items.sort(key=lambda item: item[0])
    scan.items = items


def _visit_other(
    entry: os.DirEntry[bytes],
    scan: _Scan,
    subs: list[_Scan],
    tree: Tree,
    display: str,
    names: list[bytes],
) -> None:
    """A symbolic link (followed) or a special file (skipped)."""
    rel = scan.rel + entry.name
    link = entry.is_symlink()
    try:
        st = os.stat(entry.path) if link else entry.stat(follow_symlinks=False)
    except FileNotFoundError as exc:
        raise PathError(_join(display, rel), "broken symbolic link") from exc
    except OSError as exc:
        raise PathError(_join(display, rel), oserror_reason(exc)) from exc
    if stat.S_ISREG(st.st_mode):
        names.append(entry.name)
    elif stat.S_ISDIR(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if key in scan.ancestors:
            raise PathError(_join(display, rel), "symbolic link loop (leads to a parent folder)")
        subs.append(_Scan(entry.path, rel + b"/", (*scan.ancestors, key)))
    else:
        what = special_kind(st.st_mode)
        tree.skipped.append(f"{os.fsdecode(rel)}: {what} (not a regular file)")


def links_outside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> list[str]:
    """Symbolic links at or under ``path`` whose target lies outside ``root``, as
    ``"link -> target"`` (link relative to ``root``). They are hashed like any file, but a data
    set that reaches outside its project does not travel with it, and a lock from someone else
    must not read files elsewhere on this machine unnoticed."""
    base = os.path.realpath(root)
    start = os.fspath(path)
    found: list[str] = []

    def check(link: str) -> None:
        target = os.path.realpath(link)
        if os.path.commonpath([base, target]) != base:
            found.append(f"{os.path.relpath(link, root)} -> {target}")

    if os.path.islink(start):
        check(start)
    folders = [start] if os.path.isdir(start) else []
    while folders:  # links are not followed: each one is met once
        try:
            with os.scandir(folders.pop()) as listing:
                entries = list(listing)
        except OSError:
            continue  # unreadable: the hash says so
        for entry in entries:  # the entry's type from the listing: no stat per file
            if entry.is_symlink():
                check(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                folders.append(entry.path)
    return sorted(found)
