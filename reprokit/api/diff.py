"""``diff``: what differs between two recorded executions, or one and the environment now.

Each side is one of:

- a lock (``<stem>.repro.json``), or a notebook that has one;
- an executed notebook without a lock (its results and snapshot travel in its outputs);
- an MLflow run recorded by reprokit (its id, or ``runs:/<id>``), read from the tracking store
  the current folder resolves to;
- the current environment: ``current`` (or the second side left out), captured now; beside a
  lock, the lock's data files are re-hashed too.

The answer is a :class:`~reprokit.compare.verify.Verdict` of ``b`` against ``a`` (``a`` is the
reference): the environment diff, the data check, the cells whose source differs (where both
sides' source is known: a lock's digests, a notebook's cells, the reference lock's notebook on
disk for the environment now) and, when both sides carry results, every result compared with
its declared tolerance (or the ``comparison`` tolerances given). Another git commit is a change
only where the source is not known to be the same (``verify_results``' rule, shared).

Files are read as ``run`` and ``verify`` read them: a notebook through
:func:`~reprokit.notebook.files.discover_notebooks` and ``load_notebook``, a lock through
``read_lock``; anything at a lock's name that is not a regular file is refused unread.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprokit.compare.diff import Diff, Side
from reprokit.compare.verify import DataCheck, Verdict, check_data, compare_manifests
from reprokit.compare.verify import verify_results as _verify_results
from reprokit.exceptions import ReprokitError, UsageError
from reprokit.options import ComparisonOptions
from reprokit.results.notebook import NotebookResults, ResultOutput

if TYPE_CHECKING:
    from reprokit.capturing.model import AcceleratorInfo
    from reprokit.recording.lock_model import CellSource

__all__ = ["CURRENT", "Diff", "Side", "diff", "load_side"]

CURRENT = "current"
"""The name of the current environment as a side."""


def diff(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str] | None = None,
    *,
    comparison: ComparisonOptions | None = None,
    tracking_uri: str | None = None,
) -> Diff:
    """Compare ``b`` (default: the current environment) against ``a``."""
    with contextlib.ExitStack() as stack:
        first = load_side(a, stack, tracking_uri=tracking_uri)
        if first.kind == "environment":
            raise UsageError("the first side of a diff is the reference: a lock, notebook or run")
        second = load_side(CURRENT if b is None else b, stack, tracking_uri=tracking_uri)
        if second.kind == "environment":
            second = _as_environment_of(second, first)
        return Diff(first, second, _compare(first, second, comparison))


# libraries whose import makes facts visible (BLAS thread pools, torch/CUDA versions and devices)
_NUMERIC_MODULES = ("numpy", "scipy", "torch")


def _as_environment_of(current: Side, reference: Side) -> Side:
    """The environment as a re-run of the reference would see it.

    Thread pools and torch facts are only visible once the library is imported, so the
    numeric libraries the reference had imported are imported here first (when installed).
    Seeds and determinism flags are what the notebook sets, not the environment: the
    reference's are taken. Git state is that of the reference's project.
    """
    import importlib
    import importlib.util

    from reprokit.capturing.snapshot import capture

    ref = reference.snapshot
    if ref is None:
        return current
    for name in _NUMERIC_MODULES:
        if name in ref.imported and importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    snapshot = capture(root=reference.project_root or Path.cwd())
    accelerator = snapshot.accelerator
    if ref.accelerator.torch_version and accelerator.torch_version is None:
        accelerator = _accelerator_with_torch(accelerator)
    accelerator = replace(accelerator, flags=ref.accelerator.flags)
    environment = _runner_variables(snapshot.environment, reference)
    snapshot = replace(snapshot, seeds=ref.seeds, accelerator=accelerator, environment=environment)
    device = _snapshot_device(snapshot)
    return replace(current, snapshot=snapshot, device=device, cells=_cells_now(reference))


def _cells_now(reference: Side) -> tuple[CellSource, ...] | None:
    """The source of the reference lock's notebook as it is on disk now (found in the
    project, as ``check`` finds it); None when there is none, or it cannot be read."""
    from reprokit.recording.lock import notebook_cells

    if reference.lock is None or reference.project_root is None:
        return None
    notebook = reference.project_root / reference.lock.notebook.path
    if not notebook.is_file():
        return None
    try:
        return notebook_cells(notebook)
    except ReprokitError:  # unknown, so another commit counts as a change of the code
        return None


def _accelerator_with_torch(accelerator: AcceleratorInfo) -> AcceleratorInfo:
    """The GPU/CUDA facts with torch imported, where it is installed: the reference imported
    it after its start, and took those facts again as it ended (its thread pools and imports
    are the start's, so torch is imported only now, after the capture)."""
    import importlib
    import importlib.util

    from reprokit.capturing.accelerator import collect_accelerator

    if importlib.util.find_spec("torch") is None:
        return accelerator
    importlib.import_module("torch")
    return collect_accelerator()


def _runner_variables(environment: dict[str, str], reference: Side) -> dict[str, str]:
    """``environment`` with the variables the runner sets in every kernel it starts (the
    device's ``CUDA_VISIBLE_DEVICES``, ``PYTHONHASHSEED``) as the reference had them: a re-run
    of the reference sets them again, so they are not differences of this machine."""
    from reprokit.runner.device import resolve_device
    from reprokit.runner.plan import kernel_env

    ref = reference.snapshot
    assert ref is not None
    runner_set = {
        *kernel_env(Path(), Path(), resolve_device("cpu"), {}),
        *resolve_device("cpu").env,
    }
    out = {k: v for k, v in environment.items() if k not in runner_set}
    out.update({k: v for k, v in ref.environment.items() if k in runner_set})
    return out


def _compare(a: Side, b: Side, comparison: ComparisonOptions | None) -> Verdict:
    produced = NotebookResults(
        b.label, tuple(ResultOutput(0, r) for _, r in sorted(b.results.items()))
    )
    verdict = _verify_results(
        a.as_lock(),
        produced,
        comparison=comparison,
        device=b.device,
        current_snapshot=b.snapshot,
        lock_dir=a.base,
        data=_data_check(a, b),
        source_changes=_source_changes(a, b),
    )
    if b.kind == "environment":  # nothing was produced: no result is "missing"
        verdict = replace(verdict, checks=(), counts={}, reproduced=True)
    return verdict


def _source_changes(a: Side, b: Side) -> tuple[int, ...] | None:
    """Cells whose source differs between the sides; None when a side's is not known."""
    from reprokit.recording.lock import changed_cells

    if a.cells is None or b.cells is None:
        return None
    return tuple(changed_cells(a.cells, b.cells))


def _data_check(a: Side, b: Side) -> DataCheck | None:
    if a.data is None or not a.data.entries:
        return None
    if b.kind == "environment":
        if a.lock is None or a.project_root is None:
            return None
        return check_data(a.lock, a.project_root)  # re-hash the lock's files now
    if b.data is None:
        return None
    return compare_manifests(a.data, b.data)


def load_side(
    spec: str | os.PathLike[str],
    stack: contextlib.ExitStack,
    *,
    tracking_uri: str | None = None,
) -> Side:
    """Read one side; temporary downloads live until ``stack`` closes."""
    text = os.fspath(spec)
    path = Path(text)
    if text == CURRENT:
        return _environment()
    if path.exists():
        return _from_path(path)
    from reprokit.recording.fromrun import is_run_id

    if is_run_id(text):
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="reprokit-diff-"))
        return _from_run(text, Path(folder), tracking_uri)
    raise UsageError(f"{text}: not a lock, a notebook, an MLflow run id or {CURRENT!r}", path=text)


def _from_path(path: Path) -> Side:
    """A lock, or a notebook: its lock when it has one (anything at the lock's name, which
    ``read_lock`` refuses unread unless it is a regular file), else its outputs."""
    from reprokit.recording.lock import (
        is_lock_path,
        lock_path_for,
        lock_present,
        project_root_of,
        read_lock,
    )

    if path.is_dir() or not path.name:  # "." and "./" have no name to make a lock's from
        raise UsageError(
            f"{path}: a folder; diff compares one lock, notebook or run", path=str(path)
        )
    lock_path = path if is_lock_path(path) else lock_path_for(path)
    if lock_present(lock_path):
        lock = read_lock(lock_path)
        return Side(
            label=str(lock_path),
            kind="lock",
            snapshot=lock.snapshot,
            results=dict(lock.results),
            base=lock_path.parent,
            device=lock.parameters.device,
            data=lock.data,
            lock=lock,
            project_root=project_root_of(lock_path),  # found on disk, not in the lock
            cells=lock.notebook.cells or None,  # a lock before cell digests: not known
        )
    return _from_notebook(path)


def _from_notebook(path: Path) -> Side:
    from reprokit.notebook.files import discover_notebooks, load_notebook
    from reprokit.recording.lock import source_cells
    from reprokit.results.notebook import read_notebook, restore_snapshot

    # read as run and verify read a notebook: a regular file (a FIFO is refused unread), a
    # valid notebook (else one line naming it)
    (notebook,) = discover_notebooks([path])
    node = load_notebook(notebook)
    # the data file lists, from the run folder
    found = restore_snapshot(read_notebook(node, source=str(path)))
    if not found.outputs and found.snapshot is None:
        raise UsageError(
            f"{path}: no lock beside it and no reprokit results in its outputs "
            "(give an executed notebook, its lock, or an MLflow run)",
            path=str(path),
        )
    snapshot = found.snapshot
    device = _snapshot_device(snapshot)
    data = snapshot.data if snapshot is not None else None
    return Side(
        str(path),
        "notebook",
        snapshot,
        found.results,
        path.parent,
        device,
        data,
        cells=source_cells(node),
    )


def _from_run(run_id: str, folder: Path, tracking_uri: str | None) -> Side:
    from reprokit.recording.fromrun import load_run

    run = load_run(run_id, folder, tracking_uri=tracking_uri)
    return Side(
        label=f"MLflow run {run.run_id}",
        kind="run",
        snapshot=run.snapshot,
        results=run.results.results,
        base=run.folder,
        device=run.device,
        data=run.data,
        cells=_executed_cells(run.executed_notebook),
    )


def _executed_cells(executed: Path | None) -> tuple[CellSource, ...] | None:
    """The source of a run's executed notebook (papermill's injected cell left out); None for
    a run recorded from a live notebook (none was uploaded) or one that cannot be read."""
    from reprokit.notebook.files import load_notebook
    from reprokit.recording.lock import source_cells

    if executed is None:
        return None
    try:
        return source_cells(load_notebook(executed))
    except ReprokitError:
        return None


def _environment() -> Side:
    from reprokit.capturing.snapshot import capture

    snapshot = capture()
    return Side("current environment", "environment", snapshot, device=_snapshot_device(snapshot))


def _snapshot_device(snapshot: Any) -> str:
    accelerator = getattr(snapshot, "accelerator", None)
    devices = getattr(accelerator, "devices", ()) if accelerator is not None else ()
    return "cuda" if devices else "cpu"
