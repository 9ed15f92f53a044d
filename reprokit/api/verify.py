"""``verify``: re-execute notebooks that have a lock and compare result by result.

:func:`verify` reads each notebook's lock, re-hashes the lock's data **before** any cell runs
(a changed or missing file stops that notebook unless ``allow_data_drift``), re-executes with the
lock's parameters (overridable) and compares result by result
(:func:`reprokit.compare.verify.verify_results`).

Notebooks whose execution failed come back as outcomes with ``verdict=None`` and the
:class:`~reprokit.runner.plan.RunOutcome` explaining why; nothing raises for a failing notebook.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from reprokit._warn import warn_user
from reprokit.api.run import execute_notebooks
from reprokit.capturing.redact import REDACTED
from reprokit.compare.verify import (
    DataCheck,
    Verdict,
    check_data,
    verify_results,
)
from reprokit.exceptions import UsageError
from reprokit.notebook.files import discover_notebooks, load_notebook
from reprokit.options import ComparisonOptions, ExecutionOptions
from reprokit.recording.lock import (
    Lock,
    check_source,
    is_lock_path,
    lock_path_for,
    read_lock,
)
from reprokit.recording.target import find_project_root
from reprokit.report.describe import describe_redacted_parameter
from reprokit.results.notebook import read_notebook
from reprokit.runner.plan import Progress, RunOutcome

__all__ = [
    "VERIFICATION_ARTIFACTS",
    "Verification",
    "VerifyOutcome",
    "notebooks_with_locks",
    "verify",
]


VERIFICATION_ARTIFACTS = "verification"

"""Folder (in the run's output folder and under ``reprokit/`` in MLflow) of the verdict's
``report.html`` and ``verdict.json``."""


VerifyStatus = Literal["reproduced", "not_reproduced", "data_changed", "execution_failed"]
"""How one notebook's verification ended."""


@dataclass(frozen=True)
class VerifyOutcome:
    notebook: str
    lock_path: str
    run: RunOutcome | None  # None when the data check stopped it before execution
    verdict: Verdict | None  # None when execution failed or the data check stopped it
    data: DataCheck

    @property
    def status(self) -> VerifyStatus:
        """``reproduced`` | ``not_reproduced`` | ``data_changed`` | ``execution_failed``."""
        if self.run is None:
            return "data_changed"
        if self.verdict is None:
            return "execution_failed"
        return (
            "reproduced" if self.verdict.reproduced and self.verdict.data_ok else "not_reproduced"
        )


@dataclass(frozen=True)
class Verification:
    """The overall verdict of :func:`verify`: one :class:`VerifyOutcome` per notebook.

    Iterating gives the outcomes; ``verdicts`` are the per-notebook
    :class:`~reprokit.compare.verify.Verdict` objects of the notebooks that executed (the
    reports take them as they are).
    """

    outcomes: tuple[VerifyOutcome, ...]

    @property
    def reproduced(self) -> bool:
        """Every notebook executed and every result reproduced, with unchanged data."""
        return all(outcome.status == "reproduced" for outcome in self.outcomes)

    @property
    def verdicts(self) -> list[Verdict]:
        return [outcome.verdict for outcome in self.outcomes if outcome.verdict is not None]

    def __iter__(self) -> Iterator[VerifyOutcome]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)

    def __getitem__(self, index: int) -> VerifyOutcome:
        return self.outcomes[index]


def notebooks_with_locks(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Notebooks named by ``paths`` that have a lock (a file given directly must have one)."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found += [nb for nb in discover_notebooks([path]) if lock_path_for(nb).is_file()]
        else:
            found += discover_notebooks([path])
    return found


def verify(
    notebooks: Iterable[str | os.PathLike[str]],
    *,
    parameters: Mapping[str, Any] | None = None,
    lock: str | os.PathLike[str] | None = None,
    renamed: bool = False,
    execution: ExecutionOptions | None = None,
    comparison: ComparisonOptions | None = None,
    progress: Progress | None = None,
) -> Verification:
    """Re-execute every notebook that has a lock and compare its results with the lock's
    (and, with ``comparison.outputs``, every cell's text output). ``parameters`` override the
    lock's; ``lock`` names the lock of a single notebook, which must have been recorded for a
    notebook of the same name unless ``renamed`` says this one is that notebook renamed."""
    sources = notebooks_with_locks(notebooks)
    if not sources:
        raise UsageError(
            "no notebook with a lock (<stem>.repro.json) in the given paths; "
            "record one first: reprokit record NOTEBOOK"
        )
    if lock is not None and len(sources) != 1:
        raise UsageError("--lock names one lock: give exactly one notebook with it")
    for source in sources:
        _refuse_a_lock_as_notebook(source)
    for source in sources if lock is None else ():
        _require_lock(source, lock_path_for(source))
    # every lock is read and every data check done before the first kernel starts
    comparing = comparison if comparison is not None else ComparisonOptions()
    plans = [
        _plan(source, Path(lock) if lock else lock_path_for(source), comparing)
        for source in sources
    ]
    if lock is not None and not renamed:
        _refuse_another_notebooks_lock(plans[0])
    given = set(parameters or {}) | set((execution or ExecutionOptions()).secret_parameters)
    for plan in plans:
        _warn_redacted_parameters(plan, given)
    job = _Job(
        dict(parameters or {}),
        execution if execution is not None else ExecutionOptions(),
        comparing,
        progress,
    )
    return Verification(_verify_all(plans, job))


@dataclass(frozen=True)
class _Plan:
    source: Path
    lock_path: Path
    lock: Lock
    data: DataCheck
    source_changes: tuple[int, ...]  # checked (and warned about) before anything runs
    shown_as: str  # the notebook as the verdict names it: the file run, even when renamed


@dataclass(frozen=True)
class _Job:
    """What every notebook of one verification shares."""

    parameters: dict[str, Any]
    execution: ExecutionOptions
    comparison: ComparisonOptions
    progress: Progress | None


def _plan(source: Path, lock_path: Path, comparison: ComparisonOptions) -> _Plan:
    load_notebook(source)  # a corrupt notebook is a usage error before anything runs
    lock = read_lock(lock_path)
    # the project is where the notebook is, never what the lock claims
    root = find_project_root(source.resolve().parent)
    cache = None if comparison.rehash else "default"
    data = check_data(lock, root, cache=cache)
    changes = tuple(check_source(lock, source))
    return _Plan(source, lock_path, lock, data, changes, _shown_as(source, root, lock))


def _shown_as(source: Path, root: Path, lock: Lock) -> str:
    """The lock's name of the notebook, or the file run when it has another name (renamed)."""
    if PurePosixPath(lock.notebook.path).name == source.name:
        return lock.notebook.path
    try:
        return source.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(source)


def _refuse_a_lock_as_notebook(source: Path) -> None:
    """``verify nb.repro.json``: a lock given where its notebook is expected."""
    if not is_lock_path(source):
        return
    stem = source.name.removesuffix(".repro.json")
    found = sorted(p for p in source.parent.glob(f"{stem}.*") if p.suffix in (".ipynb", ".py"))
    notebook = found[0] if found else source.with_name(f"{stem}.ipynb")
    raise UsageError(
        f"{source} is a lock, not a notebook: give its notebook: reprokit verify {notebook}",
        path=str(source),
    )


def _require_lock(source: Path, lock_path: Path) -> None:
    if lock_path.is_file():
        return
    if lock_path.exists() or lock_path.is_symlink():
        raise UsageError(
            f"{source}: its lock {lock_path.name} is not a regular file; remove it and record "
            f"one: reprokit record {source}",
            path=str(lock_path),
        )
    raise UsageError(
        f"{source}: no lock {lock_path.name} beside it; record one first: reprokit record {source}",
        path=str(source),
    )


def _warn_redacted_parameters(plan: _Plan, given: set[str]) -> None:
    """A lock parameter redacted at record time would be replayed as the text ``<redacted>``."""
    for name, value in sorted(plan.lock.parameters.values.items()):
        if value == REDACTED and name not in given:
            warn_user(describe_redacted_parameter(str(plan.source), name))


def _refuse_another_notebooks_lock(plan: _Plan) -> None:
    """A lock given with ``--lock`` was recorded for a notebook of another name: its results
    would all be missing or unexpected, so it is refused before anything runs."""
    recorded = PurePosixPath(plan.lock.notebook.path)
    if recorded.stem == plan.source.stem:
        return
    raise UsageError(
        f"{plan.lock_path} was recorded for {recorded.name}, not {plan.source.name}: give "
        f"{plan.source.name}'s own lock, or --renamed if it is {recorded.name} renamed",
        path=str(plan.source),
        option="--lock",
        value=str(plan.lock_path),
    )


def _verify_all(plans: list[_Plan], job: _Job) -> tuple[VerifyOutcome, ...]:
    """Execute the notebooks whose data check passed (all at once, on the chosen executor)
    and compare each as it completes; the others are outcomes without a run."""
    stopped = {
        id(plan): VerifyOutcome(str(plan.source), str(plan.lock_path), None, None, plan.data)
        for plan in plans
        if not plan.data.ok and not job.comparison.allow_data_drift
    }
    running = [plan for plan in plans if id(plan) not in stopped]
    by_source = {str(plan.source): plan for plan in running}
    verified = iter(
        execute_notebooks(
            [(plan.source, _parameters(plan, job)) for plan in running],
            job.execution,
            True,
            job.progress,
            lambda outcome: _verify_one(by_source[outcome.notebook], job, outcome),
        )
        if running
        else []
    )
    return tuple(stopped.get(id(plan)) or next(verified) for plan in plans)


def _parameters(plan: _Plan, job: _Job) -> dict[str, Any]:
    """The lock's parameters, overridden by those given now. The device is what this
    verification runs on (--device), never the reference's: a notebook that declares a
    `device` parameter gets it from the runner again; and a parameter given now as
    --secret-param replaces the lock's (redacted) value."""
    secret = job.execution.secret_parameters
    values = plan.lock.parameters.values
    locked = {k: v for k, v in values.items() if k != "device" and k not in secret}
    return {**locked, **job.parameters}


def _verify_one(plan: _Plan, job: _Job, outcome: RunOutcome) -> VerifyOutcome:
    source, lock_path, lock, data = plan.source, plan.lock_path, plan.lock, plan.data
    if not outcome.ok:
        return VerifyOutcome(str(source), str(lock_path), outcome, None, data)
    executed = load_notebook(Path(outcome.output_path))
    verdict = verify_results(
        lock,
        read_notebook(executed),
        comparison=job.comparison,
        device=outcome.device,
        lock_dir=lock_path.parent,
        data=data,
        executed_notebook=executed,
        source_changes=plan.source_changes,
        command=_command(source, outcome.device, job.comparison),
    )
    verdict = replace(verdict, notebook=plan.shown_as, executed_by=outcome.executed_by)
    _link_verification(source, outcome, lock, verdict)
    return VerifyOutcome(str(source), str(lock_path), outcome, verdict, data)


def _link_verification(source: Path, outcome: RunOutcome, lock: Lock, verdict: Verdict) -> None:
    """Tag the verification run with its verdict, nested under the reference run, and attach
    the verdict's HTML report and JSON (kept in the run's output folder too)."""
    if outcome.run_id is None:  # not recorded (MLflow unreachable): nothing to link
        return
    from reprokit.recording.executed import tag_run
    from reprokit.report.html import write_html
    from reprokit.report.json_report import write_json_report

    reproduced = verdict.reproduced and verdict.data_ok
    # the run's name reads as the verdict in a list of runs (MLflow renames on this tag)
    name = f"verify {source.stem}: {'reproduced' if reproduced else 'not reproduced'}"
    tags = {
        "reprokit.verdict": "reproduced" if reproduced else "not_reproduced",
        "mlflow.runName": name,
    }
    if lock.run_id:
        # mlflow.parentRunId nests the verification under its reference run in the MLflow UI
        tags |= {"reprokit.reference_run": lock.run_id, "mlflow.parentRunId": lock.run_id}
    folder = Path(outcome.output_dir) / VERIFICATION_ARTIFACTS
    folder.mkdir(parents=True, exist_ok=True)
    write_html(verdict, folder / "report.html", title=f"reprokit verification: {source.name}")
    write_json_report(verdict, folder / "verdict.json")
    tag_run(source, outcome.run_id, tags, folder, f"reprokit/{VERIFICATION_ARTIFACTS}")


def _command(source: Path, device: str, comparison: ComparisonOptions) -> str:
    words: Sequence[str] = ["reprokit", "verify", str(source), "--device", device]
    for option, value in (("rtol", comparison.rtol), ("atol", comparison.atol)):
        if value is not None:
            words = [*words, f"--{option}", str(value)]
    if comparison.outputs:
        words = [*words, "--outputs"]
    if comparison.rehash:
        words = [*words, "--rehash"]
    return shlex.join(words)
