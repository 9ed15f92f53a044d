"""``record``: execute notebooks and write the reference a reviewer checks.

- :func:`record` executes notebooks (:func:`reprokit.api.run.run`, which also records an MLflow
  run for each) and writes ``<stem>.repro.json`` beside each notebook that ran cleanly
  (:mod:`reprokit.recording.lock`);
- :func:`record_from_run` writes the lock of an MLflow run recorded earlier.

Notebooks whose execution failed come back as outcomes with ``lock_path=None`` and the
:class:`~reprokit.runner.plan.RunOutcome` explaining why; nothing raises for a failing notebook.

``repeat`` (:class:`~reprokit.options.RepeatOptions`, ``record --repeat N``): each notebook runs
N times through the same :func:`~reprokit.api.run.run` (so ``jobs`` and the executor apply),
the runs are compared with each other (:mod:`reprokit.compare.noise`) and the lock keeps the
**first** run's values, each result's spread and the cells whose output moved (volatile). A
result whose spread exceeds its declared tolerance writes no lock (``noise.unstable`` says which
and why) unless ``widen_tolerances``: its tolerance becomes ``max(declared, factor x spread)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reprokit._warn import warn_user
from reprokit.api.run import run
from reprokit.capturing.model import DataEntry, DataManifest
from reprokit.compare.noise import Noise, likely_causes, measure_noise, widened_lock
from reprokit.compare.verify import (
    report_outside_links,
)
from reprokit.exceptions import ReprokitError, UsageError
from reprokit.notebook.files import discover_notebooks, load_notebook
from reprokit.options import ExecutionOptions, RepeatOptions
from reprokit.recording.executed import declared_data
from reprokit.recording.lock import (
    Lock,
    build_lock,
    check_lock_parameters,
    lock_path_for,
    refuse_shared_locks,
    write_lock,
)
from reprokit.recording.lock_model import CellFingerprint
from reprokit.recording.retention import held_until_done
from reprokit.recording.target import find_project_root
from reprokit.report.describe import (
    describe_data_outside,
    describe_declared_by_several_runs,
    describe_ended_early,
    describe_no_results,
)
from reprokit.results.notebook import read_notebook
from reprokit.runner.plan import Progress, RunOutcome

__all__ = ["RecordOutcome", "record", "record_from_run"]


@dataclass(frozen=True)
class RecordOutcome:
    run: RunOutcome  # the first run's, with --repeat (the one the lock keeps)
    lock_path: str | None  # None when the notebook did not execute cleanly, or was unstable
    noise: Noise | None = None  # with --repeat: what the runs showed

    @property
    def unstable(self) -> bool:
        """A result moved beyond its tolerance between runs and no lock was written."""
        return self.lock_path is None and self.noise is not None and bool(self.noise.unstable)


def record(
    notebooks: Iterable[str | os.PathLike[str]],
    *,
    parameters: Mapping[str, Any] | None = None,
    execution: ExecutionOptions | None = None,
    progress: Progress | None = None,
    repeat: RepeatOptions | None = None,
) -> list[RecordOutcome]:
    """Execute ``notebooks`` and write a lock beside every one that ran without error
    (``repeat``: each one N times, see the module docstring)."""
    again = repeat if repeat is not None else RepeatOptions()
    options = execution if execution is not None else ExecutionOptions()
    check_lock_parameters(parameters or {})  # before any kernel: the lock must keep them
    sources = discover_notebooks(notebooks)
    refuse_shared_locks(sources)  # one lock written twice, the second over the first
    with held_until_done():  # gc leaves the run folders alone until the locks name them
        outcomes = run(
            sources,
            parameters=parameters,
            execution=options,
            progress=progress,
            copies=again.runs,
        )
        groups = [outcomes[k : k + again.runs] for k in range(0, len(outcomes), again.runs)]
        return [_write_reference(group, again, options.deterministic) for group in groups]


def _inside(entries: tuple[DataEntry, ...], root: Path) -> tuple[DataEntry, ...]:
    """The declared inputs a lock can hold: one outside the project (``--data /abs/file``,
    ``reprokit.data("../x")``) does not travel with it, and is left out with a warning (it
    was refused after the notebook had run and been recorded)."""
    kept = []
    for entry in entries:
        path = Path(entry.path)
        if (path if path.is_absolute() else root / path).resolve().is_relative_to(root):
            kept.append(entry)
        else:
            warn_user(describe_data_outside(entry.path, str(root)))
    return tuple(kept)


def _write_reference(
    group: list[RunOutcome], repeat: RepeatOptions, deterministic: bool
) -> RecordOutcome:
    outcome = group[0]
    failed = next((each for each in group if not each.ok), None)
    if failed is not None:
        return RecordOutcome(failed, None)
    source = Path(outcome.notebook)
    root = find_project_root(source.parent)
    declared = _inside(declared_data(Path(outcome.output_dir)), root)  # start's and later
    lock = build_lock(
        source,
        Path(outcome.output_path),
        project_root=root,
        parameters=dict(outcome.parameters),
        device=outcome.device,
        data=DataManifest(entries=declared) if declared else None,
        run_id=outcome.run_id,
    )
    if deterministic:
        lock = replace(lock, parameters=replace(lock.parameters, deterministic=True))
    noise = _measured(group, lock, repeat.factor) if repeat.measures else None
    if noise is not None:
        if noise.unstable and not repeat.widen_tolerances:
            return RecordOutcome(outcome, None, noise)
        lock = widened_lock(lock, noise, repeat.factor)
        if any(noisy.widened is None for noisy in noise.unstable):
            return RecordOutcome(outcome, None, noise)
    if lock.data is not None:
        report_outside_links(lock.data.entries, root)
    target = lock_path_for(source)
    write_lock(lock, target)
    if not lock.results:
        warn_user(describe_no_results(str(source)))
    _warn_if_declared_by_several_runs(source, Path(outcome.output_path))
    return RecordOutcome(outcome, str(target), noise)


def _warn_if_declared_by_several_runs(source: Path, executed: Path) -> None:
    """A name two runs of one notebook declared (a loop over configurations, each with its
    ``%repro start``) keeps only its last value in the lock: the earlier ones would go
    unverified, so say so."""
    try:
        several = read_notebook(executed).declared_in_several_runs()
    except ReprokitError:  # the lock was built from it: not expected, and said there
        return
    if several:
        warn_user(describe_declared_by_several_runs(str(source), several))


def _measured(group: list[RunOutcome], lock: Lock, factor: float) -> Noise:
    """The noise of the runs of one notebook (their executed notebooks read back)."""
    from reprokit.compare.cells import fingerprint_texts
    from reprokit.results.notebook import read_notebook

    nodes = [load_notebook(Path(each.output_path)) for each in group]
    results = [
        read_notebook(node, source=str(each.notebook)).results
        for node, each in zip(nodes, group, strict=True)
    ]
    causes = likely_causes(nodes[0], lock.snapshot)
    root = find_project_root(Path(group[0].notebook).parent)
    fingerprints = [fingerprint_texts(node, root) for node in nodes]
    return measure_noise(results, fingerprints, factor=factor, causes=causes)


def record_from_run(
    run_id: str,
    *,
    notebook: str | os.PathLike[str] | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Write the lock of an existing MLflow run (recorded by reprokit) beside its notebook;
    returns the lock's path.

    ``notebook`` defaults to the run's ``mlflow.source.name``. When the run carries its
    executed notebook, its source must be the notebook's current source (a lock pairs one
    source with its results); a mismatch is a :class:`~reprokit.exceptions.UsageError`
    naming the cells.
    """
    import tempfile

    from reprokit.recording.fromrun import load_run

    if notebook is not None and Path(notebook).is_dir():  # "." was a store in its parent
        raise UsageError(
            f"{notebook}: a folder; --from-run writes the lock of one notebook: name it",
            path=str(notebook),
        )
    start = Path(notebook).resolve().parent if notebook is not None else Path.cwd()
    with tempfile.TemporaryDirectory(prefix="reprokit-run-") as folder:
        recorded = load_run(run_id, folder, start=start, tracking_uri=tracking_uri)
        source = _run_notebook(recorded.run_id, notebook, recorded.notebook)
        root = find_project_root(source.parent)
        outputs = _recorded_outputs(recorded.run_id, recorded.executed_notebook, source, root)
        lock = build_lock(
            source,
            recorded.results,
            project_root=root,
            parameters=recorded.parameters,
            device=recorded.device,
            data=recorded.data,
            run_id=recorded.run_id,
            outputs=outputs,
        )
        target = lock_path_for(source)
        _warn_if_partial(source, recorded.run_id, recorded.status, len(lock.results))
        write_lock(lock, target)  # copies by-reference arrays out of the download first
    return str(target)


def _recorded_outputs(
    run_id: str, executed_path: Path | None, source: Path, root: Path
) -> tuple[CellFingerprint, ...] | None:
    """The output fingerprints of the notebook the run executed (None when it kept none),
    once its source is ``source``'s."""
    from reprokit.recording.lock import changed_cells, output_fingerprints, source_cells

    if executed_path is None:
        return None
    executed = load_notebook(executed_path)
    changed = changed_cells(source_cells(executed), source_cells(load_notebook(source)))
    if changed:
        raise UsageError(
            f"{source}: its source differs from the notebook MLflow run "
            f"{run_id} executed (cells {', '.join(str(k + 1) for k in changed)}); "
            "record it anew with `reprokit record`",
            path=str(source),
        )
    return output_fingerprints(executed, project_root=root)


def _warn_if_partial(source: Path, run_id: str, status: str | None, results: int) -> None:
    """A lock of no result, or of a run that did not finish, may lack what verify needs."""
    if not results:
        warn_user(describe_no_results(str(source)))
    elif status in ("KILLED", "FAILED"):
        warn_user(describe_ended_early(run_id, status, results))


def _run_notebook(run_id: str, given: str | os.PathLike[str] | None, tagged: str | None) -> Path:
    if given is not None:
        path = Path(given)
    elif tagged and Path(tagged).is_file():
        path = Path(tagged)
    else:
        where = f"from {tagged}, which is not here" if tagged else "without a notebook path"
        raise UsageError(
            f"MLflow run {run_id} was recorded {where}: name the notebook: "
            f"reprokit record --from-run {run_id} NOTEBOOK",
            run_id=run_id,
        )
    if not path.is_file():
        raise UsageError(f"{path}: no such notebook", path=str(path))
    return path
