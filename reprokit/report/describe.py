"""What happened, in words: the lines every front end prints for a plan, a finished notebook,
a failed execution, drifted data and a verdict.

The CLI, the pytest plugin and the magics call these and only choose where the lines go
(stdout, stderr, a pytest failure), so a failure reads the same wherever it is seen. Each
function takes the data the runner or the comparison returned and returns text; none prints.
"""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from reprokit._warn import escaped_controls
from reprokit.capturing.redact import redact_parameters, redact_text

if TYPE_CHECKING:
    from reprokit.compare.rebuilt import RebuiltEnv
    from reprokit.compare.verify import DataCheck, Verdict
    from reprokit.recording.recorded_run import Unwritten
    from reprokit.recording.replay import Replay
    from reprokit.runner.envbuild import EnvBuildEvent
    from reprokit.runner.envcache import CachedEnv
    from reprokit.runner.failure import CellFailure
    from reprokit.runner.plan import PlannedRun, RunOutcome

__all__ = [
    "MARKS",
    "NOTHING_TO_REPLAY",
    "cell_label",
    "describe_cached_env",
    "describe_check_failures",
    "describe_done",
    "describe_drift",
    "describe_env_build",
    "describe_failure",
    "describe_no_results",
    "describe_plan",
    "describe_redacted_parameter",
    "describe_replay",
    "describe_retries",
    "describe_stopped_early",
    "describe_verdict",
    "rebuilt_lines",
    "ui_command",
]

MARKS = {
    "ok": "ok",
    "failed": "FAILED",
    "timeout": "TIMEOUT",
    "kernel_died": "KERNEL DIED",
    "interrupted": "INTERRUPTED",
}
"""The word for each execution status."""

_DRIFT_FILES = 20  # changed files named per data entry; the rest are counted


def describe_plan(plan: PlannedRun) -> str:
    """One line saying what will run: notebook, kernel, device, parameters (secret ones by
    name only; secret-looking ones redacted). Printed before anything executes, so that nothing
    runs unannounced."""
    parameters = redact_parameters(plan.parameters)
    parts = [", ".join(f"{k}={v!r}" for k, v in sorted(parameters.items()))]
    if plan.secret_names:
        parts.append(f"secret: {', '.join(sorted(plan.secret_names))}")
    shown = "; ".join(part for part in parts if part) or "no parameters"
    return f"will run  {plan.source}  kernel {plan.kernel}  device {plan.device}  ({shown})"


def describe_env_build(event: EnvBuildEvent) -> str:
    """A ``--rebuild-env`` build starting (it can take minutes: nothing else is printed
    meanwhile), or done."""
    if event.elapsed_s is None:
        return (
            f"building the environment from {event.lock} ({event.pins} pins, "
            f"{event.installer}): this can take minutes"
        )
    return f"built the environment from {event.lock} in {event.elapsed_s:.1f} s"


def describe_done(
    outcome: RunOutcome, *, markup: bool = False, copy: tuple[int, int] = (1, 1)
) -> str:
    """``ok  nb.ipynb  1.2 s  -> executed.ipynb  (MLflow run …)``; with ``markup``, the mark is
    coloured with rich markup; ``copy`` (k, N): the k-th of N runs (``--repeat``)."""
    mark = MARKS.get(outcome.status, outcome.status)
    if markup:
        colour = "green" if outcome.ok else "red"
        mark = f"[{colour}]{mark}[/{colour}]"
    name = describe_copy(outcome.notebook, copy)
    if not outcome.started:  # nothing executed, nothing kept
        return f"{mark}  {name}  {outcome.message or 'not started'}"
    line = f"{mark}  {name}  {outcome.duration_s:.1f} s  -> {outcome.output_path}"
    if outcome.run_id:
        line += f"  (MLflow run {outcome.run_id})"
    if outcome.executed_by:
        line += f"  on {outcome.executed_by}"
    if outcome.retries:
        line += "\n  " + describe_retries(outcome.retries)
    if outcome.record_error:
        line += f"\n  not recorded: {outcome.record_error}"
    if outcome.stopped_by is not None:
        line += "\n  " + describe_stopped_early(outcome.stopped_by)
    return line


def describe_stopped_early(cell: CellFailure) -> str:
    """An ok run that a cell's ``sys.exit(0)`` ended before its last cells."""
    shown = f"{cell.ename}: {cell.evalue}" if cell.evalue else cell.ename
    return (
        f"stopped early: cell {cell.index + 1} raised {shown}, which papermill takes for a "
        "clean stop; the code cells after it did not run, and no result they declare is in "
        "this run"
    )


def describe_copy(notebook: object, copy: tuple[int, int]) -> str:
    """``nb.ipynb``, or ``nb.ipynb (run 2 of 3)`` for one of several runs of a notebook."""
    return f"{notebook} (run {copy[0]} of {copy[1]})" if copy[1] > 1 else str(notebook)


def describe_recording(notebook: object, copy: tuple[int, int]) -> str:
    """The progress of a notebook whose kernel is done and whose run MLflow is being given."""
    return f"{describe_copy(notebook, copy)}: recording in MLflow"


def describe_failure(outcome: RunOutcome) -> str:
    """A failed execution: the notebook and status, the failing cell, its error and the first
    lines of its traceback, and where the executed notebook was kept. Credential-looking text
    is redacted (the runner removed secret parameter values already)."""
    lines = [f"{outcome.notebook}: {MARKS.get(outcome.status, outcome.status)}"]
    failure = outcome.failure
    if failure is not None:
        label = cell_label(failure.index, failure.execution_count)
        lines.append(f"  {label}: {failure.source_head}")
        lines.append(_indented(f"  {failure.ename}: {failure.evalue}"))
        lines += [f"    {line}" for line in failure.traceback]
    elif outcome.message:
        lines.append(_indented(f"  {outcome.message}"))
    if outcome.retries:
        lines.append("  " + describe_retries(outcome.retries))
    if outcome.started:
        lines.append(f"  executed notebook: {outcome.output_path}")
    return "\n".join(redact_text(line) for line in lines)


def _indented(text: str) -> str:
    """``text`` with each line after the first indented under it: an error's text (the
    notebook's own) never starts a line of its own, where a CI system reads commands
    (``::warning::…``)."""
    return "\n    ".join(text.splitlines()) if "\n" in text or "\r" in text else text


def describe_retries(reasons: tuple[str, ...]) -> str:
    """``retried 2 times (the kernel died on …; worker tcp://… was lost)``."""
    times = "1 time" if len(reasons) == 1 else f"{len(reasons)} times"
    return f"retried {times} ({'; '.join(dict.fromkeys(reasons))})"  # each reason once


def cell_label(index: int, execution_count: int | None = None) -> str:
    """``cell 7`` (the 1-based position of the cell in the notebook file, markdown cells
    counted, as every message numbers cells), with the kernel's ``In [4]`` when it ran."""
    label = f"cell {index + 1}"
    return f"{label} (In [{execution_count}])" if execution_count is not None else label


def describe_drift(notebook: str, data: DataCheck) -> str:
    """Input data that changed since the lock, entry by entry and file by file."""
    lines = [
        f"{notebook}: input data changed since the lock (not executed; --allow-data-drift runs "
        "it anyway)"
    ]
    for entry in data.drifted:
        reason = f" ({entry.reason})" if entry.reason else ""
        lines.append(f"  {entry.path}: {entry.status}{reason}")
        lines += [f"    {change.path} {change.change}" for change in entry.files[:_DRIFT_FILES]]
        if len(entry.files) > _DRIFT_FILES:
            lines.append(f"    ... {len(entry.files) - _DRIFT_FILES} more")
    return "\n".join(map(escaped_controls, lines))  # a file's name may hold a line break


def describe_verdict(verdict: Verdict) -> str:
    """The plain-text verdict table of one notebook, the cells whose source changed since the
    lock, and the command that re-runs the verification."""
    from reprokit.report.table import plain_table

    lines = [plain_table([verdict]).rstrip("\n")]
    if verdict.source_changes:
        changed = ", ".join(str(index + 1) for index in verdict.source_changes)
        lines.append(f"cells whose source changed since the lock: {changed}")
    if _cache_may_matter(verdict):
        lines.append(
            "the data check trusted the hash cache (inode, size, mtime, ctime): a file changed "
            "in place without changing these (e.g. through mmap) is missed; --rehash re-reads "
            "every file"
        )
    if verdict.command:
        lines.append(f"re-run: {verdict.command}")
    return "\n".join(lines)


def _cache_may_matter(verdict: Verdict) -> bool:
    """Results differ although the data, as the hash cache saw it, did not change."""
    has_data = verdict.data is not None and bool(verdict.data.entries)
    rehashed = verdict.command is not None and "--rehash" in _words(verdict.command)
    return not verdict.reproduced and has_data and verdict.data_ok and not rehashed


def _words(command: str) -> list[str]:
    """The command's words (a ``-p`` value may hold the text ``--rehash``)."""
    try:
        return shlex.split(command)
    except ValueError:  # not a command line rerun_command made (unbalanced quotes)
        return command.split()


def describe_no_results(notebook: str) -> str:
    """The warning of ``record`` for a notebook that declares no result."""
    return (
        f"{notebook} declares no results (reprokit.result / %repro result): verify will compare "
        "nothing but its input data (and its cell outputs with --outputs)"
    )


def describe_declared_by_several_runs(notebook: str, several: dict[str, int]) -> str:
    """The warning of ``record`` for result names that several runs of a notebook declared."""
    names = sorted(several)
    shown = ", ".join(f"{name!r} ({several[name]} runs)" for name in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return (
        f"{notebook}: {shown}{more} declared by more than one run (%repro start) of the "
        "notebook: the lock keeps only the last value, the earlier ones are not verified; "
        "give each run's result a name of its own"
    )


def describe_ended_early(run_id: str, status: str, results: int) -> str:
    """The warning of ``record --from-run`` for a run that did not finish (its kernel was
    killed, a cell failed): its lock holds only the results declared before that."""
    return (
        f"MLflow run {run_id} ended {status}: the lock holds the {results} result(s) it "
        "declared before that; a result the notebook declares later is missing from it "
        "(record a finished run to have them all)"
    )


def describe_unwritten(unwritten: Unwritten) -> str:
    """The warning of ``flush`` (and ``end``, ``status``) for an ended run that did not reach
    MLflow: the store, why, and where the run still is."""
    uri = unwritten.tracking_uri
    why = (unwritten.reason or "its background writer ended without writing it").removeprefix(
        f"MLflow at {uri}: "  # a RecordError's own start: the store is named once
    )
    if unwritten.journal is None:
        kept = "no journal was kept: the run is only in the notebook and its run folder"
    elif unwritten.held:
        kept = (
            f"its journal {unwritten.journal} lacks the last {unwritten.held} event(s), which "
            f"the disk refused ({unwritten.refused}): this process holds them, and "
            "`reprokit.flush()` writes them and records the run once the disk takes them"
        )
    else:
        kept = f"its journal {unwritten.journal} is kept: `reprokit sync` records it"
    return f"the run did not reach MLflow at {uri}: {why}; {kept}"


def describe_refused_file_store(uri: str, mlflow_version: str) -> str:
    """The warning of ``start`` for a tracking URI that MLflow will refuse (a file store)."""
    return (
        f"the tracking URI {uri} is a file store, which MLflow {mlflow_version} refuses: this "
        "run will not reach MLflow (its journal is kept); use the SQLite store, "
        "sqlite:///mlflow.db (reprokit's default when no tracking URI is set)"
    )


def describe_data_outside(path: str, root: str) -> str:
    """The warning of ``record`` for an input declared while the notebook ran that lies
    outside the project: the lock, which travels with the project, leaves it out."""
    return (
        f"data {path} is outside the project root {root}: not in the lock (verify will not "
        "check it); move it into the project to have it checked"
    )


def describe_unmarked_root(notebook: str, root: str, implied: str, recorded: str) -> str:
    """The warning of ``verify`` for a notebook whose project root here is not the one its
    lock was recorded in (a copy unpacked without ``.git``, or inside another project)."""
    return (
        f"{notebook}: the project root here is {root} (the nearest folder up with "
        f"pyproject.toml or .git, else the notebook's own), but its lock was recorded as "
        f"{recorded} of a project rooted at {implied}: its data paths will not be found; "
        f"`touch {implied}/pyproject.toml` (or `git init {implied}`) first"
    )


def describe_moved_notebook(notebook: str, lock: str, recorded: str, current: str) -> str:
    """The warning of ``verify`` and ``check`` for a notebook moved to another folder with its
    lock and not re-recorded (``recorded``, ``current``: paths in the project)."""
    return (
        f"{notebook}: its lock {lock} was recorded for {recorded}, not {current} (moved without "
        f"re-recording?): its data were checked at the paths recorded, which it may no longer "
        f"read; record it again: reprokit record {notebook}"
    )


def describe_edited_pair(notebook: str, text: str, cells: list[int]) -> str:
    """The warning of ``run``, ``record`` and ``verify`` for a notebook whose jupytext pair
    text was saved after it with other cells (0-based ``cells``): edits not yet synced."""
    shown = ", ".join(str(k + 1) for k in cells[:20]) + (" ..." if len(cells) > 20 else "")
    return (
        f"{text}, the jupytext pair of {notebook}, was saved after it and differs in cell(s) "
        f"{shown}: {notebook} runs as it is, without those edits; `jupytext --sync "
        f"{notebook}` first to run them"
    )


def describe_sampled_check(notebook: str, name: str, why: str) -> str:
    """The warning of ``verify`` for an array result that passed on its statistics and a
    sample only (``why``: the check's message, which says what could not be read)."""
    return (
        f"{notebook}: result {name!r} passed on its statistics and a sample, not element by "
        f"element: {why}"
    )


def describe_redacted_parameter(notebook: str, name: str) -> str:
    """The warning of ``verify`` for a lock parameter whose value was redacted at record time."""
    return (
        f"{notebook}: parameter {name!r} was redacted in the lock, so it would run as the text "
        f"'<redacted>'; pass it with --secret-param {name} or -p {name}=..."
    )


def describe_check_failures(relock: int, notebooks: int, orphans: int) -> list[str]:
    """The closing lines of ``reprokit check``: notebooks whose lock must be re-recorded (of
    ``notebooks`` checked) and locks left without their notebook, each with its fix."""
    lines = []
    if relock:
        lines.append(
            f"reprokit: {relock} of {notebooks} notebook(s) need their lock re-recorded "
            "(reprokit record NOTEBOOK)"
        )
    if orphans:
        lines.append(
            f"reprokit: {orphans} lock(s) without their notebook: delete the lock, rename it "
            "with its notebook, or verify the renamed notebook: reprokit verify NEW --lock OLD "
            "--renamed"
        )
    return lines


def ui_command(uri: str) -> str:
    """How to look at the runs of a (redacted) tracking URI."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {shlex.quote(uri)}"


NOTHING_TO_REPLAY = "nothing to replay"
"""What ``reprokit sync`` prints when no journal waits."""


def _startless(replay: Replay) -> str:
    skipped = f" ({replay.skipped} unreadable line(s))" if replay.skipped else ""
    return (
        f"kept: no start event{skipped}, {replay.events} event(s) cannot be replayed without "
        "its experiment, store and params"
    )


def describe_replay(replay: Replay, base: Path | None = None) -> str:
    """One journal replayed by ``reprokit sync`` (or left alone, and why); its path relative
    to ``base`` (the current folder) when inside it."""
    name = relative_path(replay.journal, base)
    if replay.status == "replayed":
        where = f"in experiment {replay.experiment!r}"
        skipped = f", {replay.skipped} unreadable line(s) skipped" if replay.skipped else ""
        return f"replayed  {name}: run {replay.run_id} ({replay.run_status}) {where}{skipped}"
    reasons = {
        "running": "left alone: its process is still recording it",
        "elsewhere": f"kept: recorded for another store ({replay.detail})",
        "empty": "removed: nothing left to replay",
        "failed": f"not replayed, kept for the next try: {replay.detail}",
        "unreadable": f"cannot be read: {replay.detail}",
        "startless": _startless(replay),
    }
    return f"{replay.status:9} {name}: {reasons[replay.status]}"


def relative_path(path: str, base: Path | None) -> str:
    """``path`` relative to ``base`` when it is inside it, else as given; on one line (a
    newline or other control character in a name is shown escaped, as Python writes it)."""
    shown = path
    if base is not None:
        with contextlib.suppress(ValueError):
            shown = str(Path(path).relative_to(base))
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)


def describe_cached_env(env: CachedEnv) -> str:
    """One rebuilt environment of the cache in a line: digest, pins, size, last use, path."""
    from datetime import datetime, timezone

    when = datetime.fromtimestamp(env.last_used, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    size = f"{env.size_bytes / 2**20:.0f} MiB"
    python = f", Python {env.python}" if env.python else ""
    return f"{env.digest[:12]}  {env.pins} pins{python}, {size}, last used {when}  {env.path}"


def rebuilt_lines(rebuilt: RebuiltEnv) -> list[str]:
    """What a rebuilt environment matched of the lock, for the verdict: a summary line, then
    one line per difference, substitution, left-out pin and note."""
    how = "reused from the cache" if rebuilt.reused else f"built with {rebuilt.installer}"
    lines = [
        f"environment rebuilt from the lock ({rebuilt.digest[:12]}, {how}): "
        f"{rebuilt.matched} of {rebuilt.pins} pins as locked"
    ]
    lines += [f"not as locked: {line}" for line in rebuilt.differs]
    lines += [f"nearest version installed: {line}" for line in rebuilt.substituted]
    lines += [f"not installed: {name}" for name in rebuilt.dropped]
    return lines + list(rebuilt.notes)
