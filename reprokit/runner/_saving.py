"""The executed notebook saved at a bounded rate while it runs, never once per cell.

papermill's execution manager re-serialises (validates, deep-copies, JSON-encodes) and
rewrites the whole notebook at the start and the end of every cell: for ``n`` cells that is
``2n`` writes of a notebook that grows with ``n``, quadratic in all (2,000 trivial cells took
minutes where nbclient alone takes seconds). :class:`ThrottledManager` keeps papermill's
bookkeeping (its metadata, cell statuses and times) but writes the file only

- once when execution starts (so a runner killed at any moment leaves a notebook);
- while cells run, when something changed (a cell started or ended, an output arrived) and
  the last write is :data:`SAVE_INTERVAL_S` seconds old, and never more often than keeps
  writing under :data:`SAVE_SHARE` of the time (a huge notebook is saved less often). A
  change the throttle held back is written once it is due even if nothing else happens: the
  client asks :meth:`ThrottledManager.save_if_due` every :data:`SAVE_CHECK_S` seconds while a
  cell runs, so a long silent cell does not keep the cells before it off the disk;
- and when execution ends, however it ends: a timeout, a dead kernel, a killed or interrupted
  runner, any exception out of the engine. When the engine returns normally (all cells ran,
  or one raised and execution stopped there), papermill itself writes the notebook next, so
  the manager does not write it a second time.

So the partial notebook is on disk whenever the runner reports, and in between a reader of
the file (or what a ``SIGKILL`` leaves) is at most about :data:`SAVE_INTERVAL_S` seconds
behind; each of these writes replaces the file whole, and so does papermill's own last
write, after the engine returns (:func:`written_whole`). A run of ``n`` short cells
writes the notebook a constant number of times, not ``2n``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from papermill.engines import NotebookExecutionManager  # type: ignore[import-untyped]

SAVE_INTERVAL_S = 5.0  # at most one whole write per interval while cells run
SAVE_SHARE = 0.05  # and writing takes at most this share of the time between writes
SAVE_CHECK_S = 1.0  # while a cell runs, how often a held-back change is checked for


class ThrottledManager(NotebookExecutionManager):  # type: ignore[misc]
    """papermill's execution manager, saving at a bounded rate (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_save = 0.0  # monotonic time before which a save request is held back
        self._held_back = False  # a change is not on disk yet
        self._final_save = True

    def save(self, **kwargs: Any) -> None:
        """Called by papermill at each cell's start and end: writes only when due."""
        if kwargs.get("nb") is not None:  # papermill's catch_nb_assignment contract
            self.nb = kwargs["nb"]
        if time.monotonic() < self._next_save:
            self._held_back = True
            return
        started = time.monotonic()
        self._write()
        self._held_back = False
        spent = time.monotonic() - started
        self._next_save = time.monotonic() + max(SAVE_INTERVAL_S, spent / SAVE_SHARE)

    def _write(self) -> None:
        """papermill's save, but a local file is replaced whole (papermill truncates it and
        writes in place: a ``SIGKILL`` meanwhile would leave half a notebook)."""
        path = str(self.output_path or "")
        if not path or path == "-" or "://" in path:
            super().save()
            return
        import nbformat

        from reprokit._fsutil import atomic_write_text

        text = nbformat.writes(self.nb)  # type: ignore[no-untyped-call]
        atomic_write_text(path, _scrubbed(path, text))
        self.last_save_time = self.now()

    def autosave_cell(self) -> None:
        """Called by papermill's client after each message of a running cell: an output may
        have arrived, so it is written once due (papermill's own waits 30 s)."""
        self.save()

    def save_if_due(self) -> None:
        """Write a change that :meth:`save` held back, once it is due."""
        if self._held_back and time.monotonic() >= self._next_save:
            self.save()

    def cell_complete(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
        """papermill's, without its per-cell ``dateutil`` parse of the start time it wrote
        itself (0.3 ms a cell: a tenth of a trivial cell's time)."""
        if self.log_output:  # papermill logs each cell's end: its own method does that
            super().cell_complete(cell, cell_index, **kwargs)
            return
        if kwargs.get("nb") is not None:
            self.nb = kwargs["nb"]
        end, meta = self.now(), cell.metadata.papermill
        meta["end_time"] = end.isoformat()
        if meta.get("start_time"):
            started = datetime.fromisoformat(meta["start_time"])
            meta["duration"] = (end - started).total_seconds()
        if meta["status"] != self.FAILED:
            meta["status"] = self.COMPLETED
        self.save()
        if self.pbar:
            self.pbar.update(1)

    def notebook_complete(self, **kwargs: Any) -> None:
        # the last save happens here, unless papermill is about to write the notebook itself
        self._next_save = 0.0 if self._final_save else float("inf")
        super().notebook_complete(**kwargs)

    def execute(self, engine: Any, kernel_name: str, **kwargs: Any) -> None:
        """Run ``engine`` on this manager's notebook; papermill's ``Engine.execute_notebook``
        with the final save skipped when papermill writes the notebook next."""
        self.notebook_start()
        try:
            engine.execute_managed_notebook(self, kernel_name, **kwargs)
            self._final_save = False  # papermill's execute_notebook writes it next
        finally:
            self.cleanup_pbar()
            self.notebook_complete()


@contextlib.contextmanager
def written_whole(path: str, scrub: Callable[[str], str] | None = None) -> Iterator[str]:
    """For the ``with``, papermill's own writes of the notebook at ``path`` (absolute) replace
    it whole, as :meth:`ThrottledManager._write` does: after the last cell, and with its
    error-marker cells when a cell raised. papermill's handler truncates the file and writes
    in place, so a ``SIGKILL`` meanwhile left half a notebook. Only these paths: a user's own
    papermill calls in this process (to a link, a FIFO, a file of restricted mode) keep
    papermill's behaviour. Through papermill's public handler registry (the scheme ``/``
    matches every absolute path; any other path goes to papermill's own handler).

    ``scrub``: applied to the notebook's text before each of these writes (secret values
    replaced), so that what a killed runner leaves on disk never holds them either."""
    _register()
    with _lock:
        _ours[path] = _ours.get(path, 0) + 1
        if scrub is not None:
            _scrubs[path] = scrub
    try:
        yield path
    finally:
        with _lock:
            _ours[path] -= 1
            if not _ours[path]:
                del _ours[path]
                _scrubs.pop(path, None)


def _scrubbed(path: str, text: str) -> str:
    with _lock:
        scrub = _scrubs.get(path)
    return text if scrub is None else scrub(text)


_ours: dict[str, int] = {}  # paths written whole now, with how many executions write them
_scrubs: dict[str, Callable[[str], str]] = {}  # what each of them is scrubbed with
_lock = threading.Lock()
_registered = False


def _register() -> None:
    global _registered
    with _lock:
        if _registered:
            return
        from papermill.iorw import LocalHandler, papermill_io  # type: ignore[import-untyped]

        class WholeLocalHandler(LocalHandler):  # type: ignore[misc]
            def write(self, buf: str, path: str) -> None:
                if path not in _ours:
                    super().write(buf, path)
                    return
                from reprokit._fsutil import atomic_write_text

                folder = os.path.dirname(path)
                if folder and not os.path.isdir(folder):
                    raise FileNotFoundError(f"output folder {folder} doesn't exist.")
                atomic_write_text(path, _scrubbed(path, buf))

        papermill_io.register("/", WholeLocalHandler())
        _registered = True


def execute_with_throttled_saves(engine: Any, nb: Any, kernel_name: str, **kwargs: Any) -> Any:
    """papermill's ``Engine.execute_notebook`` with :class:`ThrottledManager` as its manager."""
    manager = ThrottledManager(
        nb,
        output_path=kwargs.pop("output_path", None),
        progress_bar=kwargs.pop("progress_bar", False),
        log_output=kwargs.get("log_output", False),
        autosave_cell_every=kwargs.pop("autosave_cell_every", 30),
    )
    manager.execute(engine, kernel_name, **kwargs)
    return manager.nb
