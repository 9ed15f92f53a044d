"""Planning and executing one notebook: load and check it, give it a folder, a kernel and an
environment, execute it (papermill) and read its results back.

Everything that can be wrong with the input is checked for every notebook before the first
kernel starts (:func:`plan_runs`); :func:`execute_planned` runs one plan.
"""

from __future__ import annotations

import functools
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprokit._fsutil import atomic_write_text
from reprokit.capturing.seeds import DETERMINISTIC_ENV
from reprokit.exceptions import InputError, PathError, UsageError
from reprokit.notebook.files import (
    declared_parameters,
    load_notebook,
    notebook_language,
    parameter_defaults,
)
from reprokit.options import ExecutionOptions
from reprokit.recording.spool import SPOOL_ENV, spool_path
from reprokit.runner.device import DeviceChoice
from reprokit.runner.failure import CellFailure, stopped_early
from reprokit.runner.params import check_declared, check_secrets
from reprokit.statuses import ExecutionStatus

if TYPE_CHECKING:
    from reprokit.runner.execute import Gate

__all__ = [
    "DETERMINISTIC_ENV",
    "RUNNER_ENV",
    "CellProgress",
    "Executed",
    "OnStart",
    "PlannedRun",
    "Progress",
    "RunOutcome",
    "check_kernel",
    "choose_kernel",
    "complete_run_folders",
    "default_output_dir",
    "execute_planned",
    "kernel_env",
    "number_copies",
    "plan_runs",
    "read_results",
]


RUNNER_ENV = {"REPROKIT_MLFLOW": "off"}


@dataclass(frozen=True)
class RunOutcome:
    """One notebook's execution: status ok | failed | timeout | kernel_died | interrupted
    (``interrupted`` and not ``started``: the runner was stopped before it started)."""

    notebook: str
    status: ExecutionStatus
    output_path: str
    output_dir: str
    duration_s: float
    device: str
    parameters: dict[str, Any] = field(default_factory=dict)
    failure: CellFailure | None = None
    message: str = ""
    run_id: str | None = None  # MLflow run, when recorded
    record_error: str | None = None
    executed_by: str | None = None  # the Dask worker (address and host); None when local
    retries: tuple[str, ...] = ()  # why each earlier attempt was given up (dask executor)
    started: bool = True  # False: interrupted before any cell ran, no executed notebook
    stopped_by: CellFailure | None = None  # ok, but a cell's sys.exit(0) left cells unrun

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class PlannedRun:
    """A notebook ready to execute: loaded, checked, with its folder and kernel environment."""

    source: Path
    node: Any
    output_dir: Path
    parameters: dict[str, Any]
    env: dict[str, str]
    secret_names: tuple[str, ...] = ()  # their values are in ExecutionOptions, never here
    kernel: str = "python3"
    device: str = "cpu"
    copy: tuple[int, int] = (1, 1)  # (k, N): the k-th of N runs of this notebook (--repeat)
    kernel_dir: str | None = None  # private kernelspecs holding ``kernel`` (a rebuilt env's)

    @property
    def output_path(self) -> Path:
        return self.output_dir / (self.source.stem + ".ipynb")


@dataclass(frozen=True)
class CellProgress:
    """A notebook's progress: cell ``position`` of ``total`` started ``elapsed_s`` after it."""

    position: int
    total: int
    elapsed_s: float


Progress = Callable[[str, PlannedRun, "RunOutcome | CellProgress | None"], None]

"""``progress(event, plan, info)``: ``"plan"`` (before any kernel starts) and ``"start"`` (info
None), ``"cell"`` (a :class:`CellProgress`), ``"executed"`` (info None: its kernel is done,
recording follows) and ``"done"`` (the :class:`RunOutcome`)."""

OnStart = Callable[[PlannedRun], None]
"""``on_start(plan)``: a notebook starts executing (once, as ``progress`` is told ``"start"``)."""


def default_output_dir(first: Path) -> Path:
    """``<project root>/.reprokit/runs/<UTC time>-<6 hex>`` (``.reprokit`` is git-ignored)."""
    from reprokit.recording.target import find_project_root
    from reprokit.runner.execute import make_output_folder

    hidden = find_project_root(first.resolve().parent) / ".reprokit"
    make_output_folder(hidden)
    if not (hidden / ".gitignore").exists():
        try:
            atomic_write_text(hidden / ".gitignore", "*\n")
        except OSError as exc:
            raise PathError(str(hidden), f"cannot write here: {exc.strerror}") from None
    key = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
    return hidden / "runs" / key


def plan_runs(
    sources: Sequence[Path],
    base: Path,
    choice: DeviceChoice,
    parameters: dict[str, Any],
    kernel: str | None = None,
    secret_parameters: Mapping[str, str] | None = None,
    kernel_dir: str | None = None,
    used: set[str] | None = None,
    *,
    deterministic: bool = False,
    hash_seed: str | None = None,
) -> list[PlannedRun]:
    """Load and check every notebook; give each its own folder and environment
    (``deterministic``: with :data:`DETERMINISTIC_ENV`; ``used``: the folder names already
    given under ``base``, for plans made in several calls). A notebook given more than once
    (``record --repeat``) is planned once per time, each in a folder of its own. With
    ``kernel_dir`` (a rebuilt environment's private kernelspecs), ``kernel`` is taken from
    there, never from the installed ones."""
    plans: list[PlannedRun] = []
    used = set() if used is None else used
    secret_names = tuple(secret_parameters or {})
    for source in sources:
        node = load_notebook(source)
        kernel_name = (
            _private_kernel(str(source), kernel_dir, kernel)
            if kernel_dir is not None and kernel is not None
            else choose_kernel(str(source), node, kernel)
        )
        declared = _declared(str(source), node, bool(parameters or secret_names))
        check_declared(str(source), parameters, declared)
        check_secrets(str(source), secret_names, parameters, declared)
        injected = dict(parameters)
        if declared and "device" in declared and "device" not in injected:
            injected["device"] = choice.device  # the device reaches the notebook as a parameter
        folder = base / _unique(source.stem, used)
        env = kernel_env(
            source, folder, choice, injected, deterministic=deterministic,
            defaults=parameter_defaults(node), hash_seed=hash_seed,
        )  # fmt: skip
        plans.append(
            PlannedRun(
                source, node, folder, injected, env, secret_names, kernel_name, choice.device,
                kernel_dir=kernel_dir,
            )
        )  # fmt: skip
    return number_copies(plans)


def number_copies(plans: list[PlannedRun]) -> list[PlannedRun]:
    """Each plan numbered among the plans of the same notebook: ``copy=(k, N)``, the k-th of
    N runs of it (``--repeat``)."""
    total = {plan.source: 0 for plan in plans}
    for plan in plans:
        total[plan.source] += 1
    seen = dict.fromkeys(total, 0)
    numbered = []
    for plan in plans:
        seen[plan.source] += 1
        numbered.append(replace(plan, copy=(seen[plan.source], total[plan.source])))
    return numbered


def _declared(source: str, node: Any, given: bool) -> tuple[str, ...] | None:
    """The declared parameters; a ``parameters`` cell that is not Python is an error only
    when parameters are given (else the execution itself shows the syntax error)."""
    try:
        return declared_parameters(node, source)
    except InputError:
        if given:
            raise
        return ()


# kernel names that jupyter_client's KernelManager itself maps to another
_KERNEL_ALIASES = {"python": "python3"}
_LANGUAGE_NAMES = {"r": "R", "julia": "Julia", "python": "Python", "scala": "Scala"}


@functools.cache
def _kernel_languages() -> dict[str, str]:
    """Installed kernel name -> its language (lower case)."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().get_all_specs()
    return {name: str(spec["spec"].get("language", "")).lower() for name, spec in specs.items()}


def choose_kernel(notebook: str, node: Any, requested: str | None = None) -> str:
    """The kernel to run ``node`` with: ``requested`` (``--kernel``) when given, else the
    kernel the notebook names when it is installed, else an installed kernel of the
    notebook's language (:func:`~reprokit.notebook.files.notebook_language`). No kernel
    for it is a :class:`UsageError` (exit 2), raised before anything runs."""
    if requested:
        check_kernel(notebook, requested)
        return requested
    installed = _kernel_languages()
    named = str(node.metadata.get("kernelspec", {}).get("name") or "")
    named = named if named in installed else _KERNEL_ALIASES.get(named, named)
    if named in installed:
        return named
    language = notebook_language(node, notebook)
    candidates = sorted(name for name, lang in installed.items() if lang == language)
    if candidates:
        from reprokit.runner.execute import DEFAULT_KERNEL  # papermill: imported when needed

        return DEFAULT_KERNEL if DEFAULT_KERNEL in candidates else candidates[0]
    shown = _LANGUAGE_NAMES.get(language, language)
    wanted = f"a kernel named {named!r} or any kernel" if named else "a kernel"
    raise UsageError(
        f"{notebook}: the notebook is written in {shown}; {wanted} for {shown} is needed "
        f"(installed: {_installed_text(installed)}); install one or choose one with --kernel",
        path=notebook,
        option="--kernel",
        value=named or language,
    )


def _installed_text(installed: Mapping[str, str]) -> str:
    return ", ".join(f"{name} ({lang})" for name, lang in sorted(installed.items())) or "none"


def _private_kernel(notebook: str, kernel_dir: str, name: str) -> str:
    if not (Path(kernel_dir) / name / "kernel.json").is_file():
        raise UsageError(f"{notebook}: no kernel {name!r} in {kernel_dir}", path=notebook)
    return name


def check_kernel(notebook: str, name: str) -> None:
    """A kernel that is not installed is a usage error, found before anything runs."""
    installed = _kernel_languages()
    if name not in installed:
        broken = _unreadable_kernel(name)
        why = broken or (
            f"no Jupyter kernel named {name!r} is installed "
            f"(installed: {_installed_text(installed)}); choose one with --kernel"
        )
        raise UsageError(f"{notebook}: {why}", path=notebook, option="--kernel", value=name)


def _unreadable_kernel(name: str) -> str | None:
    """Why the kernelspec ``name`` is there but cannot be read (jupyter_client leaves it out
    of the installed kernels with only a log line), or None."""
    from jupyter_client.kernelspec import KernelSpecManager

    manager = KernelSpecManager()
    folder = manager.find_kernel_specs().get(name)
    if folder is None:
        return None
    try:
        manager.get_kernel_spec(name)
    except Exception as exc:  # JSON, or a field of the wrong type: its own words
        reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"the kernel {name!r} is installed but {folder}/kernel.json cannot be read: {reason}"
    return None


def _unique(stem: str, used: set[str]) -> str:
    name, count = stem, 1
    while name in used:  # two notebooks of one name in different folders
        count += 1
        name = f"{stem}-{count}"
    used.add(name)
    return name


def kernel_env(
    source: Path,
    folder: Path,
    choice: DeviceChoice,
    parameters: Mapping[str, Any],
    *,
    deterministic: bool = False,
    defaults: Mapping[str, Any] | None = None,
    hash_seed: str | None = None,
) -> dict[str, str]:
    """The variables a kernel gets on top of the runner's environment (``REPROKIT_PARAMS``
    holds the parameters as MLflow shows them: redacted). ``deterministic`` (``--deterministic``)
    adds :data:`~reprokit.capturing.seeds.DETERMINISTIC_ENV`, except a variable the runner's
    own environment sets already: CUDA libraries read them when they initialise, too late from
    a cell, so they must be there when the kernel starts. ``PYTHONHASHSEED`` is always set,
    whatever the runner's environment says: the ``seed`` parameter, else the ``seed`` the
    ``parameters`` cell assigns as a literal (``defaults``:
    :func:`~reprokit.notebook.files.parameter_defaults`), else 0 (see :func:`_hash_seed`);
    ``hash_seed`` (verify: the one the lock's run had) replaces all of these."""
    import os

    from reprokit.capturing.redact import redact_parameters

    seed = parameters["seed"] if "seed" in parameters else (defaults or {}).get("seed")
    settings = {k: v for k, v in DETERMINISTIC_ENV.items() if not os.environ.get(k)}
    return {
        **(settings if deterministic else {}),
        **RUNNER_ENV,
        **choice.env,
        "REPROKIT_DEVICE": choice.device,
        "REPROKIT_PARAMS": json.dumps(redact_parameters(parameters), default=str, sort_keys=True),
        "REPROKIT_OUTPUT_DIR": str(folder.resolve()),
        "REPROKIT_NOTEBOOK": str(source.resolve()),
        SPOOL_ENV: str(spool_path(folder.resolve() / (source.stem + ".ipynb"))),
        "PYTHONHASHSEED": hash_seed if hash_seed is not None else _hash_seed(seed),
    }


_HASH_SEED_LIMIT = 2**32  # Python accepts PYTHONHASHSEED in [0, 4294967295] only


def _hash_seed(seed: object) -> str:
    """``PYTHONHASHSEED`` for a notebook's ``seed``: an int (never a bool) reduced modulo
    2**32, so that the kernel always starts; a negative int or anything else gives ``"0"``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        return "0"
    return str(seed % _HASH_SEED_LIMIT)


@dataclass(frozen=True)
class Executed:
    """An execution's outcome with what recording it needs."""

    outcome: RunOutcome
    results: Any  # NotebookResults, or None when the notebook could not be read back
    start_ms: int


def execute_planned(
    plan: PlannedRun,
    choice: DeviceChoice,
    options: ExecutionOptions,
    *,
    on_cell: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    gate: Gate | None = None,
) -> Executed:
    """Execute one planned notebook and complete its run folder (nothing recorded yet);
    setting ``cancel`` stops its kernel as if the runner were interrupted; its started kernel
    waits at ``gate`` before the first cell (:class:`~reprokit.runner.execute.Gate`)."""
    from reprokit.recording.writer import now_ms
    from reprokit.runner.datahash import data_ahead
    from reprokit.runner.execute import Limits, execute_notebook

    start_ms, cwd = now_ms(), plan.source.resolve().parent  # %repro start's data hashed ahead:
    with data_ahead(plan.node, cwd, plan.env, plan.parameters) as (env, hook):
        executed = execute_notebook(
            plan.node,
            plan.output_path,
            cwd=cwd,
            env=env,
            parameters=plan.parameters,
            kernel_name=plan.kernel,
            timeout=options.timeout,
            limits=Limits(options.notebook_timeout, options.memory_limit, options.start_timeout),
            secrets=options.secret_parameters,
            on_cell=on_cell,
            kernel_dir=plan.kernel_dir,
            cancel=cancel,
            gate=gate,
            before_cell=hook,
        )
    start_ms += int(executed.waited_s * 1000)  # the run starts with its notebook, not kernel
    results = read_results(plan.output_path)
    complete_run_folders(results)
    outcome = RunOutcome(
        notebook=str(plan.source),
        status=executed.status,
        output_path=executed.output_path,
        output_dir=str(plan.output_dir),
        duration_s=executed.duration_s,
        device=choice.device,
        parameters=plan.parameters,
        failure=executed.failure,
        message=executed.message,
        stopped_by=early_stop(plan) if executed.status == "ok" else None,
    )
    return Executed(outcome, results, start_ms)


def early_stop(plan: PlannedRun) -> CellFailure | None:
    """The cell whose ``sys.exit(0)`` ended ``plan``'s executed notebook early, if one did."""
    injected = bool(plan.parameters or plan.secret_names)
    return stopped_early(plan.output_path, source=plan.node, injected=injected)


def read_results(output: Path) -> Any:
    """The executed notebook's results, its snapshot as the notebook has it (a summary
    without data file lists): what recording needs more is read back by it, off this path
    (:func:`reprokit.results.notebook.restore_snapshot`; 11 MB of JSON over 100k files)."""
    from reprokit.results.notebook import read_notebook

    try:
        return read_notebook(output)
    except InputError:  # no output notebook (papermill failed before writing) or a bad payload
        return None


def complete_run_folders(results: Any) -> None:
    """Write ``results.json`` into the kernel's run folder, from the executed notebook.

    The kernel is killed at once after the last cell (no graceful shutdown), so its exit
    hook, which would write it, does not run; the results are in the notebook anyway. A
    ``results.json`` the kernel wrote itself (at ``%repro end``) is replaced too: it holds the
    values as the kernel had them, a secret parameter's value among them, where the notebook's
    have been scrubbed (``<secret NAME>``), and the run folder is uploaded to MLflow.
    """
    if results is None or not results.runs:
        return
    from reprokit._serde import to_json

    local = results.runs[-1].get("local_dir")
    if isinstance(local, str) and Path(local).is_dir():
        atomic_write_text(Path(local) / "results.json", to_json(results.results))
