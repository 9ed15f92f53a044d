"""pytest hooks: ``pytest --reprokit`` verifies every notebook that has a lock.

The plugin is registered for every pytest run once installed (entry point ``pytest11``), so
the hooks here stay cheap and do nothing unless ``--reprokit`` is given: the items (and
through them the whole verification stack) are imported only when a notebook is collected.

A notebook is collected when it has a lock ``<stem>.repro.json`` beside it (anything at
that name, so that a lock that is not a regular file fails rather than vanishes): ``.ipynb`` files,
and ``.py``/``.md`` files that jupytext marks as notebooks. An ordinary test module never has
a lock, so it is never taken for a notebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

__all__ = ["nbval_sanitize_file"]

DEVICES = ("auto", "cpu", "cuda")
_SUFFIXES = (".ipynb", ".py", ".md")


def nbval_sanitize_file() -> Path:
    """The nbval sanitizer that masks reprokit's volatile output (``--nbval-sanitize-with``)."""
    return Path(__file__).with_name("nbval_sanitize.cfg")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reprokit", "reprokit: verify notebooks against their locks")
    group.addoption(
        "--reprokit",
        action="store_true",
        default=False,
        help="Collect every notebook with a <stem>.repro.json lock and verify it.",
    )
    group.addoption(
        "--reprokit-device",
        choices=DEVICES,
        default="auto",
        help="Device to re-execute notebooks on (default: auto).",
    )
    group.addoption(
        "--reprokit-timeout",
        type=float,
        default=None,
        help="Seconds a cell may run before the notebook fails (default: no limit).",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if not parent.config.getoption("reprokit") or file_path.suffix not in _SUFFIXES:
        return None
    from reprokit.recording.lock import lock_path_for, lock_present

    # a dangling link, a FIFO or a folder at the lock's name is collected (its item fails
    # naming the lock, as ``reprokit verify`` refuses it), not skipped as "no lock"
    if not lock_present(lock_path_for(file_path)):
        return None
    from reprokit.pytest_items import NotebookFile, is_lockable_notebook

    if not is_lockable_notebook(file_path):
        return None
    collector: pytest.Collector = NotebookFile.from_parent(parent, path=file_path)
    return collector
