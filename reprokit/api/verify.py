"""``verify``: re-execute notebooks that have a lock and compare result by result.

:func:`verify` reads each notebook's lock, re-hashes the lock's data **before** any cell runs
(a changed or missing file stops that notebook unless ``allow_data_drift``), re-executes with the
lock's parameters (overridable) and compares result by result
(:func:`reprokit.compare.verify.verify_results`).

``repeat`` (``verify --repeat N``): each notebook runs N times; the verdict is the first run's,
and a result that differs from the lock while its own runs here disagree beyond its tolerance
is ``nondeterministic`` (:func:`~reprokit.compare.verify.with_repeated_runs`), with the spread
the lock recorded and the one measured here. A lock recorded with ``--deterministic`` is
verified with it.

Notebooks whose execution failed come back as outcomes with ``verdict=None`` and the
:class:`~reprokit.runner.plan.RunOutcome` explaining why; nothing raises for a failing notebook.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from reprokit._warn import warn_user
from reprokit.api.bundle import unpack_bundles
from reprokit.api.check import warn_edited_pairs
from reprokit.capturing.redact import REDACTED
from reprokit.compare.parameters import diff_parameters, with_parameter_changes
from reprokit.compare.verified import (
    VerifiedKey,
    environment_digest,
    forget_verified,
    lookup_verified,
    remember_verified,
    verified_key,
)
from reprokit.compare.verify import (
    DataCheck,
    Verdict,
    check_data,
    check_declared_in_run,
    declared_by_start,
    verify_results,
    with_repeated_runs,
)
from reprokit.exceptions import UsageError
from reprokit.notebook.files import (
    discover_notebooks,
    load_notebook,
    parameter_defaults,
    parameters_cell,
)
from reprokit.options import ComparisonOptions, ExecutionOptions, RepeatOptions
from reprokit.recording.lock import (
    Lock,
    check_source,
    is_lock_path,
    lock_path_for,
    lock_present,
    moved_since_recorded,
    read_lock,
    refuse_shared_locks,
)
from reprokit.recording.target import find_project_root
from reprokit.report.describe import (
    describe_moved_notebook,
    describe_redacted_parameter,
    describe_sampled_check,
    describe_unmarked_root,
)
from reprokit.report.rerun import rerun_command
from reprokit.results.notebook import read_notebook, restore_snapshot
from reprokit.runner.device import resolve_device
from reprokit.runner.plan import Progress, RunOutcome, choose_kernel

if TYPE_CHECKING:
    from reprokit.compare.envdiff import EnvChange
    from reprokit.recording.envspec import EnvSpec
    from reprokit.runner.envbuild import BuiltEnv, EnvBuildHook

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
    command: str | None = None  # how to re-run it, also when nothing was compared
    source_changes: tuple[int, ...] = ()  # code cells edited since the lock, also then

    @property
    def cached(self) -> bool:
        """Not executed now: its last REPRODUCED verdict was reused (``verdict.cached_at``)."""
        return self.verdict is not None and self.verdict.cached_at is not None

    @property
    def status(self) -> VerifyStatus:
        """``reproduced`` | ``not_reproduced`` | ``data_changed`` | ``execution_failed``."""
        if self.run is None and self.verdict is None:
            return "data_changed"
        if self.verdict is None:
            return "execution_failed"
        return (
            "reproduced" if self.verdict.reproduced and self.verdict.data_ok else "not_reproduced"
        )


def _reported(outcome: VerifyOutcome) -> Verdict:
    if outcome.verdict is not None:
        return outcome.verdict
    run = outcome.run
    changes = outcome.source_changes
    if run is None:
        return Verdict.stand_in(
            outcome.notebook, "data_changed", outcome.data, None,
            command=outcome.command, source_changes=changes,
        )  # fmt: skip
    cell = f"cell {run.failure.index + 1}: " if run.failure is not None else ""
    error = f"{run.status}: {cell}{run.message}".rstrip(": ")
    return Verdict.stand_in(
        outcome.notebook, "execution_failed", outcome.data, error,
        command=outcome.command, source_changes=changes,
    )  # fmt: skip


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

    @property
    def reported(self) -> list[Verdict]:
        """A verdict for every notebook, in order, as the report files list them: a notebook
        nothing was compared for (data changed, execution failed) is a failed stand-in."""
        return [_reported(outcome) for outcome in self.outcomes]

    def __iter__(self) -> Iterator[VerifyOutcome]:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)

    def __getitem__(self, index: int) -> VerifyOutcome:
        return self.outcomes[index]


def notebooks_with_locks(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Notebooks named by ``paths`` that have a lock (a file given directly must have one).

    Under a folder, anything at a notebook's lock name counts: a dangling link, a FIFO or a
    folder there is not "no lock" (its notebook is then refused, as ``check`` refuses it)."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found += [nb for nb in discover_notebooks([path]) if lock_present(lock_path_for(nb))]
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
    repeat: RepeatOptions | None = None,
    record: bool = True,
    on_env_build: EnvBuildHook | None = None,
) -> Verification:
    """Re-execute every notebook that has a lock and compare its results with the lock's
    (and, with ``comparison.outputs``, every cell's text output). ``parameters`` override the
    lock's; ``lock`` names the lock of a single notebook, which must have been recorded for a
    notebook of the same name unless ``renamed`` says this one is that notebook renamed. A
    bundle's ``.zip`` is unpacked and verified (:func:`~reprokit.api.bundle.unpack_bundles`).
    Without ``record`` no MLflow run is written (nor a store created). ``on_env_build`` is told
    as a ``--rebuild-env`` build starts and ends (minutes, when the cache does not hold it)."""
    notebooks, execution = unpack_bundles(notebooks, execution)
    sources = _sources(notebooks, lock)
    warn_edited_pairs(sources)
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
        dict(parameters or {}), execution if execution is not None else ExecutionOptions(),
        comparing, progress, (repeat or RepeatOptions()).runs, record,
        Path(lock) if lock is not None else None, renamed,
    )  # fmt: skip
    # every environment is rebuilt (or refused, exit 2) before the first kernel starts, and
    # after the device is known to exist: no build for a --device cuda that cannot run here
    resolve_device(job.execution.device)
    plans = [_with_env(plan, job.execution, on_env_build) for plan in plans]
    keys = [_skip_key(plan, job) for plan in plans]  # a bad kernel or device stops here
    verification = Verification(_verify_all(plans, keys, job))
    _warn_sampled(verification)
    return verification


def _warn_sampled(verification: Verification) -> None:
    """Warn for each array result that passed on its statistics and sample alone (its
    elements could not be read: a sidecar folder not committed), cached verdicts included."""
    for outcome in verification:
        for check in outcome.verdict.checks if outcome.verdict is not None else ():
            if check.passed and check.deviation is not None and check.deviation.estimated:
                warn_user(describe_sampled_check(outcome.notebook, check.name, check.message))


def _sources(notebooks: Iterable[str | os.PathLike[str]], lock: object) -> list[Path]:
    """The notebooks to verify, each checked to have its lock (or the one ``--lock`` gives)."""
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
    refuse_shared_locks(sources)
    return sources


@dataclass(frozen=True)
class _Plan:
    source: Path
    lock_path: Path
    lock: Lock
    data: DataCheck
    source_changes: tuple[int, ...]  # checked (and warned about) before anything runs
    shown_as: str  # the notebook as the verdict names it: the file run, even when renamed
    rebuilt: tuple[EnvSpec, BuiltEnv] | None = None  # --rebuild-env: the lock's environment
    root: Path | None = None  # the project's root here (masked in cell outputs: <PROJECT>)


@dataclass(frozen=True)
class _Job:
    """What every notebook of one verification shares."""

    parameters: dict[str, Any]
    execution: ExecutionOptions
    comparison: ComparisonOptions
    progress: Progress | None
    runs: int = 1  # executions of each notebook (--repeat)
    record: bool = True  # each execution an MLflow run (a verification run, nested)
    lock: Path | None = None  # --lock: the one notebook's lock, named (else beside it)
    renamed: bool = False  # --renamed: the notebook is the --lock's notebook renamed


def _plan(source: Path, lock_path: Path, comparison: ComparisonOptions) -> _Plan:
    load_notebook(source)  # a corrupt notebook is a usage error before anything runs
    lock = read_lock(lock_path)
    # the project is where the notebook is, never what the lock claims
    root = find_project_root(source.resolve().parent)
    _warn_unmarked_root(source, root, lock)
    moved = moved_since_recorded(lock, source, root)
    if moved is not None:
        warn_user(describe_moved_notebook(str(source), lock_path.name, lock.notebook.path, moved))
    cache = None if comparison.rehash else "default"
    data = check_data(lock, root, cache=cache)
    changes = tuple(check_source(lock, source))
    shown_as = moved or _shown_as(source, root, lock)  # a moved notebook: where it is now
    return _Plan(source, lock_path, lock, data, changes, shown_as, root=root)


def _warn_unmarked_root(source: Path, root: Path, lock: Lock) -> None:
    """The root is the nearest folder up with a project marker, else the notebook's own. A
    copy unpacked without one (or inside another project) then puts the root elsewhere than
    the lock's notebook path implies (``notebooks/fit.ipynb``), and none of its data is
    found: say where the root would be (the lock is not believed: the user marks it)."""
    recorded = PurePosixPath(lock.notebook.path)
    resolved = source.resolve()
    if len(recorded.parts) < 2 or tuple(resolved.parts[-len(recorded.parts) :]) != recorded.parts:
        return  # renamed or moved: nothing to say where its root was
    implied = resolved.parents[len(recorded.parts) - 1]
    if implied != root.resolve():  # unpacked without a marker, or inside another project
        warn_user(describe_unmarked_root(str(source), str(root), str(implied), str(recorded)))


def _with_env(plan: _Plan, execution: ExecutionOptions, on_build: EnvBuildHook | None) -> _Plan:
    """The plan with its lock's environment rebuilt, when ``--rebuild-env`` asks for it."""
    if execution.rebuild_env == "off":
        return plan
    from reprokit.api.env import rebuild_env

    built = rebuild_env(plan.lock, plan.lock_path, execution, on_build)
    return replace(plan, rebuilt=built)


def _in_rebuilt(plan: _Plan, execution: ExecutionOptions) -> ExecutionOptions:
    if plan.rebuilt is None:
        return execution
    built = plan.rebuilt[1]
    return replace(execution, kernel=built.kernel_name, kernel_dir=built.kernel_dir)


def _rebuilt_verdict(plan: _Plan, verdict: Verdict, executed: Any) -> Verdict:
    """The verdict with what the kernel's environment matched of the lock's."""
    if plan.rebuilt is None:
        return verdict
    from reprokit.compare.rebuilt import compare_rebuilt

    snapshot = read_notebook(executed).snapshot
    packages = snapshot.packages if snapshot is not None else None
    return replace(verdict, rebuilt=compare_rebuilt(*plan.rebuilt, packages))


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


def _skip_key(plan: _Plan, job: _Job) -> VerifiedKey | None:
    """The skip-cache key of ``plan`` (``None``: not cached, e.g. with secret parameters, or
    ``--repeat``, which measures the noise and so must execute). In an environment rebuilt
    from the lock, the key holds that environment's interpreter, not the installed kernel's."""
    if not plan.data.ok or job.runs > 1 or declared_by_start(plan.lock)[1]:
        return None  # data declared while it ran is known only by running it
    python = None if plan.rebuilt is None else plan.rebuilt[1].python
    if plan.rebuilt is not None:
        kernel = plan.rebuilt[1].kernel_name
    else:
        kernel = choose_kernel(str(plan.source), load_notebook(plan.source), job.execution.kernel)
    device = resolve_device(job.execution.device).device
    execution = (job.execution, job.parameters, kernel, device)
    return verified_key(
        plan.source, plan.lock_path, plan.data, environment_digest(kernel, python), execution,
        job.comparison,
    )  # fmt: skip


def _verify_all(
    plans: list[_Plan], keys: list[VerifiedKey | None], job: _Job
) -> tuple[VerifyOutcome, ...]:
    """Outcomes without a run for drifted data and for cached verdicts; every other notebook
    executed (``job.runs`` times each, all on the chosen executor), then compared, and its
    verdict remembered in the skip cache when it reproduced (forgotten when not)."""
    done: dict[int, VerifyOutcome] = {}
    for plan, key in zip(plans, keys, strict=True):
        if not plan.data.ok and not job.comparison.allow_data_drift:
            device = resolve_device(job.execution.device).device
            done[id(plan)] = VerifyOutcome(
                str(plan.source), str(plan.lock_path), None, None, plan.data,
                _command(plan, device, job), plan.source_changes,
            )  # fmt: skip
        elif (cached := _cached(plan, key, job)) is not None:
            done[id(plan)] = cached
    running = [(plan, key) for plan, key in zip(plans, keys, strict=True) if id(plan) not in done]
    outcomes = iter(_execute(running, job))
    for plan, key in running:
        verified = _verify_one(plan, job, [next(outcomes) for _ in range(job.runs)])
        done[id(plan)] = verified
        if key is not None and verified.status == "reproduced" and verified.verdict is not None:
            remember_verified(key, verified.verdict)
        elif key is not None:  # the same inputs did not reproduce now: the old verdict goes
            forget_verified(key)
    return tuple(done[id(plan)] for plan in plans)


def _cached(plan: _Plan, key: VerifiedKey | None, job: _Job) -> VerifyOutcome | None:
    """The notebook's last REPRODUCED verdict when nothing it depends on changed (and no
    ``--force``)."""
    cached = lookup_verified(key) if key is not None and not job.comparison.force else None
    if cached is None:
        return None
    verdict = replace(cached, notebook=plan.shown_as)
    return VerifyOutcome(str(plan.source), str(plan.lock_path), None, verdict, plan.data)


def _execute(running: list[tuple[_Plan, VerifiedKey | None]], job: _Job) -> list[RunOutcome]:
    """Every run of every notebook through the one execution path (``--executor``), in
    order: the ``job.runs`` runs of a notebook one after the other."""
    if not running:
        return []
    from reprokit.api.run import execute_notebooks  # papermill's import: only when executing

    requests = [
        (plan.source, _parameters(plan, job), _kernel_options(plan, job))
        for plan, _ in running
        for _ in range(job.runs)
    ]
    return execute_notebooks(requests, job.execution, job.record, job.progress, _same)


def _same(outcome: RunOutcome) -> RunOutcome:
    return outcome


def _with_data_declared_in_run(plan: _Plan, outcome: RunOutcome) -> DataCheck:
    """The data check of the plan, and of the inputs the recorded run declared while it ran
    against those this run declared (its run folders' ``data.json``)."""
    from reprokit.recording.executed import declared_data

    later = check_declared_in_run(plan.lock, declared_data(Path(outcome.output_dir)))
    return replace(plan.data, entries=plan.data.entries + later) if later else plan.data


def _kernel_options(plan: _Plan, job: _Job) -> ExecutionOptions:
    """The options of this notebook's kernel: the rebuilt environment's kernel, and the
    determinism settings when the lock was recorded with them."""
    deterministic = job.execution.deterministic or plan.lock.parameters.deterministic
    hash_seed = None if "seed" in job.parameters else recorded_hash_seed(plan.lock)
    options = replace(job.execution, deterministic=deterministic, hash_seed=hash_seed)
    return _in_rebuilt(plan, options)


def recorded_hash_seed(lock: Lock) -> str | None:
    """The ``PYTHONHASHSEED`` the lock's run had (its seeding recorded it), when it is one a
    kernel can start with: a verification repeats it, so that a lock recorded before the
    runner took the notebook's own ``seed`` (0 then) still verifies."""
    seeds = lock.snapshot.seeds if lock.snapshot is not None else None
    value = seeds.pythonhashseed if seeds is not None else None
    if value is None or not value.isdigit() or int(value) >= 2**32:
        return None
    return str(int(value))


def _parameters(plan: _Plan, job: _Job) -> dict[str, Any]:
    """The lock's parameters, overridden by those given now. The device is what this
    verification runs on (--device), never the reference's: a notebook that declares a
    `device` parameter gets it from the runner again; and a parameter given now as
    --secret-param replaces the lock's (redacted) value."""
    secret = job.execution.secret_parameters
    values = plan.lock.parameters.values
    locked = {k: v for k, v in values.items() if k != "device" and k not in secret}
    return {**locked, **job.parameters}


def _parameter_changes(plan: _Plan, job: _Job) -> tuple[EnvChange, ...]:
    """The parameters given now whose value is not the one the lock's run had."""
    recorded, secret = plan.lock.parameters.values, job.execution.secret_parameters
    return diff_parameters(recorded, job.parameters, secret, _notebook_defaults(plan))


def _notebook_defaults(plan: _Plan) -> dict[str, Any]:
    """The parameters the lock's run had from the notebook itself (those not given to
    ``record``): its ``parameters`` cell's literals, when that cell is unchanged since the
    lock (else unknown)."""
    node = load_notebook(plan.source)
    index = parameters_cell(node)
    unchanged = index is not None and index not in plan.source_changes
    return parameter_defaults(node) if unchanged else {}


def _verify_one(plan: _Plan, job: _Job, outcomes: list[RunOutcome]) -> VerifyOutcome:
    """Compare the notebook's (first, or first failed) run with its lock; with several runs,
    the runs with each other too (``nondeterministic``)."""
    source, lock_path, lock, data = plan.source, plan.lock_path, plan.lock, plan.data
    outcome = next((each for each in outcomes if not each.ok), outcomes[0])
    if not outcome.ok:
        command = _command(plan, outcome.device, job)
        return VerifyOutcome(
            str(source), str(lock_path), outcome, None, data, command, plan.source_changes
        )
    executed = load_notebook(Path(outcome.output_path))
    data = _with_data_declared_in_run(plan, outcome)
    verdict = verify_results(
        lock,
        # the snapshot as the lock has it: the GPU/CUDA facts taken again as the run ended
        restore_snapshot(read_notebook(executed)),
        comparison=job.comparison,
        device=outcome.device,
        lock_dir=lock_path.parent,
        data=data,
        executed_notebook=executed,
        source_changes=plan.source_changes,
        command=_command(plan, outcome.device, job),
        project_root=plan.root,
    )
    verdict = replace(
        verdict,
        notebook=plan.shown_as,
        executed_by=outcome.executed_by,
        env_diff=with_parameter_changes(verdict.env_diff, _parameter_changes(plan, job)),
    )
    verdict = _rebuilt_verdict(plan, verdict, executed)
    if job.runs > 1:
        runs = [read_notebook(Path(each.output_path)).results for each in outcomes]
        verdict = with_repeated_runs(verdict, lock, runs)
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


def _command(plan: _Plan, device: str, job: _Job) -> str:
    """The command that re-runs this verification (every option that can change the verdict;
    secret parameters by name; paths relative to here or to the project, never the
    reviewer's own folders)."""
    return rerun_command(
        plan.source, device=device, parameters=job.parameters, execution=job.execution,
        comparison=job.comparison, runs=job.runs, lock=job.lock, renamed=job.renamed,
        project_root=plan.root,
    )  # fmt: skip
