"""Are the locks current? Each notebook's source against the source its lock recorded.

A lock (``<stem>.repro.json``) keeps one digest per source cell (:func:`~reprokit.recording.lock.
source_cells`): the cell's kind and text, nothing else. So re-executing a notebook, clearing its
outputs or editing its metadata leaves the lock current; editing, adding or removing a cell makes
it stale. This is what the pre-commit hook ``reprokit check`` asks before a commit: a published
notebook whose code changed must have its lock re-recorded (``reprokit record``) in the same
commit, or the lock no longer describes the notebook a reviewer would verify.

Statuses, one :class:`LockFreshness` per notebook (or per lock left without its notebook):

- ``current``: every cell's source digest matches the lock;
- ``stale``: cells changed, were added or were removed (``changes`` names each);
- ``no_lock``: a notebook without a lock — reported, and a failure only when the caller requires
  locks (not every notebook in a repository is published: scratch work has none);
- ``orphan``: a lock whose notebook is gone (renamed or deleted without its lock).

Like :mod:`reprokit.api.verify`, this module sits above the stages: it uses the runner's notebook
discovery so that ``check`` and ``verify`` see the same notebooks in a folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from reprokit._warn import warn_user
from reprokit.notebook.files import discover_notebooks, edited_pair_texts, is_notebook_file
from reprokit.notebook.textnotebooks import pair_texts
from reprokit.recording.lock import (
    CellSource,
    Lock,
    cells_as_locked,
    changed_cells,
    is_lock_path,
    lock_path_for,
    lock_present,
    moved_since_recorded,
    notebook_cells,
    project_root_of,
    read_lock,
)
from reprokit.report.describe import describe_edited_pair, describe_moved_notebook

__all__ = ["CellChange", "LockFreshness", "check_locks", "warn_edited_pairs"]

FreshnessStatus = Literal["current", "stale", "no_lock", "orphan"]


@dataclass(frozen=True)
class CellChange:
    index: int  # 0-based, as in the lock (papermill's injected-parameters cell not counted)
    change: Literal["changed", "added", "removed"]
    cell_type: str  # the current cell's kind; the recorded one's when removed


@dataclass(frozen=True)
class LockFreshness:
    notebook: str
    lock_path: str | None  # None: the notebook has no lock
    status: FreshnessStatus
    changes: tuple[CellChange, ...] = ()

    def failed(self, *, require_lock: bool = False) -> bool:
        return self.status in ("stale", "orphan") or (require_lock and self.status == "no_lock")


def check_locks(paths: Iterable[str | os.PathLike[str]]) -> list[LockFreshness]:
    """One :class:`LockFreshness` per notebook named by ``paths``, in order, each once.

    A folder means every notebook under it (as ``reprokit verify`` finds them) and every lock
    under it. A file is a notebook, or a lock (its notebook is checked); a file that is neither
    (a plain script or Markdown file, as a pre-commit hook passes them) is skipped. Raises
    :class:`~reprokit.exceptions.PathError` for a missing path or an unreadable notebook and
    :class:`~reprokit.exceptions.LockError` for a malformed lock.
    """
    notebooks: dict[Path, None] = {}
    locks: dict[Path, None] = {}
    for item in paths:
        path = Path(item)
        if path.is_dir():
            notebooks.update(dict.fromkeys(discover_notebooks([path])))
            locks.update(dict.fromkeys(_locks_under(path)))
        elif is_lock_path(path) and path.is_file():
            locks[path] = None
        else:
            found = discover_notebooks([path])  # a missing path raises PathError
            notebooks.update(dict.fromkeys(p for p in found if _lockable(p)))
    checked = [_freshness(nb) for nb in notebooks]
    checked += [text for nb in notebooks for text in _stale_pair_texts(nb)]
    seen = {_key(f.lock_path) for f in checked if f.lock_path is not None}
    checked += [_orphan_or_checked(lock) for lock in locks if _key(lock) not in seen]
    return checked


def warn_edited_pairs(sources: Iterable[Path]) -> None:
    """Warn for each ``.ipynb`` whose jupytext pair text was saved after it with other cells:
    edits that Jupyter (with jupytext) would run and a run of the ``.ipynb`` does not."""
    for source in sources:
        for text, cells in edited_pair_texts(source) if source.suffix == ".ipynb" else ():
            warn_user(describe_edited_pair(str(source), str(text), cells))


def _lockable(path: Path) -> bool:
    """A file given by name is checked when it is a notebook as discovery sees one (a plain
    script or README passed by the hook is not), or when it has a lock all the same."""
    return is_notebook_file(path) or lock_present(lock_path_for(path))


def _key(path: str | os.PathLike[str]) -> Path:
    return Path(path).resolve()


def _locks_under(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not (d.startswith(".") or d.endswith(".repro")))
        found += [Path(root) / name for name in sorted(files) if is_lock_path(name)]
    return found


def _freshness(notebook: Path) -> LockFreshness:
    lock_path = lock_path_for(notebook)
    current = notebook_cells(notebook)  # read first: an unreadable notebook is an input error
    if not lock_present(lock_path):
        return LockFreshness(str(notebook), None, "no_lock")
    lock = read_lock(lock_path)
    _warn_moved(notebook, lock_path, lock)
    recorded = lock.notebook.cells
    changes = _describe(recorded, cells_as_locked(notebook, recorded, current))
    return LockFreshness(str(notebook), str(lock_path), "stale" if changes else "current", changes)


def _warn_moved(notebook: Path, lock_path: Path, lock: Lock) -> None:
    """A notebook moved to another folder with its lock, not re-recorded (as ``verify``)."""
    moved = moved_since_recorded(lock, notebook, project_root_of(lock_path))
    if moved is not None:
        warn_user(describe_moved_notebook(str(notebook), lock_path.name, lock.notebook.path, moved))


def _stale_pair_texts(notebook: Path) -> list[LockFreshness]:
    """The jupytext pair texts of ``notebook`` whose cells differ from its lock: an edit made
    in ``fit.py`` and not synced into ``fit.ipynb``, which discovery takes for the pair, would
    otherwise pass as current (while ``check fit.py`` said stale)."""
    if not lock_present(lock_path_for(notebook)):
        return []
    return [
        checked
        for text in pair_texts(notebook)
        if lock_path_for(text) == lock_path_for(notebook)
        and (checked := _freshness(text)).status == "stale"
    ]


def _orphan_or_checked(lock_path: Path) -> LockFreshness:
    """A lock given or found on its own: check the notebook it records, if it is still there."""
    lock = read_lock(lock_path)
    notebook = project_root_of(lock_path) / lock.notebook.path
    beside = lock_path.with_name(PurePosixPath(lock.notebook.path).name)
    if not notebook.is_file() and beside.is_file() and lock_path_for(beside) == lock_path:
        return _freshness(beside)  # moved with its lock: checked, and warned about
    if not notebook.is_file():
        shown = os.path.relpath(notebook) if notebook.is_absolute() else str(notebook)
        return LockFreshness(shown, str(lock_path), "orphan")
    changes = _describe(lock.notebook.cells, notebook_cells(notebook))
    status: FreshnessStatus = "stale" if changes else "current"
    # named beside the lock as given, not by the resolved project path
    return LockFreshness(str(lock_path.parent / notebook.name), str(lock_path), status, changes)


def _describe(
    recorded: tuple[CellSource, ...], current: tuple[CellSource, ...]
) -> tuple[CellChange, ...]:
    changes = []
    for k in changed_cells(recorded, current):
        if k >= len(recorded):
            changes.append(CellChange(k, "added", current[k].cell_type))
        elif k >= len(current):
            changes.append(CellChange(k, "removed", recorded[k].cell_type))
        else:
            changes.append(CellChange(k, "changed", current[k].cell_type))
    return tuple(changes)
