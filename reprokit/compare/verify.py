"""Verification of an executed notebook against its lock: a :class:`Verdict`.

Per result, a :class:`ResultCheck` with one of six statuses: ``reproduced``,
``within_tolerance``, ``differs`` (the comparison engine's), ``missing`` (in the lock, not
produced), ``unexpected`` (produced, not in the lock) and ``nondeterministic`` (``differs``,
and the verification's own repeated runs disagree beyond the tolerance:
:func:`with_repeated_runs`). ``differs``, ``nondeterministic`` and ``missing`` fail the
verdict; ``unexpected`` is reported but does not (the reference results all reproduced; the
lock is merely stale and re-recording it adds the new result).

Tolerance of a result, first match wins:

1. ``rtol``/``atol`` given to :func:`verify_results` (per run; a part not given keeps the
   tolerance below);
2. when the current device kind differs from the lock's (``cpu`` against ``cuda``): the
   ``device_tolerance`` mapping given (result name, or ``"*"`` for every result), else the
   lock's ``device_tolerances[name]``;
3. the tolerance the notebook declared (``Result.rtol``/``atol``; none means exact).

Arrays are compared element by element when both sides can be loaded (the lock keeps large
arrays in its sidecar folder); when one side's file is gone, their summaries (statistics and
seeded sample) are compared with :func:`~reprokit.compare.summary.compare_summaries`.

The data check (:func:`check_data`) runs *before* execution: it re-hashes each path of the
lock's manifest and names every changed, missing or added file. The verdict's ``reproduced``
reflects the results; the data check is reported beside it (``data_ok``), because a runner
only gets to verify results with drifted data when the user allowed it.

Everything here round-trips JSON with ``reprokit._serde``: an infinite or undefined error is
written as the string ``"inf"``/``"nan"`` (plain JSON has no such numbers).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from reprokit.capturing.model import DataEntry, DataManifest, GitInfo, Snapshot
from reprokit.compare.cells import OutputCheck, compare_cell_outputs, first_failing
from reprokit.compare.envdiff import EnvDiff, diff_snapshots, nothing_seeded, unseeded_generators
from reprokit.compare.outputs import DivergenceReason
from reprokit.compare.rebuilt import RebuiltEnv
from reprokit.comparison import CheckStatus, Deviation, Tolerance, ValueComparison
from reprokit.exceptions import DigestMismatchError, ReprokitError
from reprokit.notebook.files import INJECTED_TAG
from reprokit.options import ComparisonOptions
from reprokit.recording.lock_model import Lock, ResultSpread
from reprokit.results.describe import short_value
from reprokit.results.model import ArrayData, ArrayStats, Result
from reprokit.results.notebook import NotebookResults

__all__ = [
    "FAILING",
    "CheckStatus",
    "DataCheck",
    "DataEntryCheck",
    "DeviationRecord",
    "DivergentCell",
    "FileChange",
    "OutputCheck",
    "ResultCheck",
    "Verdict",
    "check_data",
    "compare_manifests",
    "deviation_record",
    "verify_results",
    "with_repeated_runs",
]

STATUSES: tuple[CheckStatus, ...] = (
    "reproduced",
    "within_tolerance",
    "differs",
    "missing",
    "unexpected",
    "nondeterministic",
)
FAILING: tuple[CheckStatus, ...] = ("differs", "missing", "nondeterministic")
"""Statuses that make a verdict fail."""
ToleranceSource = Literal["declared", "device", "override"]
"""Where a result's tolerance came from: the lock, the cross-device tolerance, the caller."""
DataStatus = Literal["ok", "changed", "missing"]
"""A data path against the lock: unchanged, changed, or not found."""
FileChangeKind = Literal["changed", "missing", "added"]
"""One file inside a data folder against the lock."""


@dataclass(frozen=True)
class DeviationRecord:
    """:class:`~reprokit.comparison.Deviation` made JSON-safe: a non-finite error is the
    string ``"inf"`` or ``"nan"``."""

    max_abs_error: float | str = 0.0
    max_rel_error: float | str = 0.0
    mismatched_count: int = 0
    total_count: int = 0
    mismatched_fraction: float = 0.0
    shape_change: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    dtype_change: tuple[str, str] | None = None
    type_change: tuple[str, str] | None = None
    first_mismatch: str | None = None
    max_abs_location: str | None = None
    estimated: bool = False
    message: str = ""


def _safe_float(value: float) -> float | str:
    if math.isfinite(value):
        return float(value)
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def deviation_record(deviation: Deviation) -> DeviationRecord:
    return DeviationRecord(
        max_abs_error=_safe_float(deviation.max_abs_error),
        max_rel_error=_safe_float(deviation.max_rel_error),
        mismatched_count=deviation.mismatched_count,
        total_count=deviation.total_count,
        mismatched_fraction=float(deviation.mismatched_fraction),
        shape_change=deviation.shape_change,
        dtype_change=deviation.dtype_change,
        type_change=deviation.type_change,
        first_mismatch=deviation.first_mismatch,
        max_abs_location=deviation.max_abs_location,
        estimated=deviation.estimated,
        message=deviation.message,
    )


@dataclass(frozen=True)
class ResultCheck:
    name: str
    status: CheckStatus
    reference: str  # short rendering of the locked value ("" when unexpected)
    obtained: str  # short rendering of the produced value ("" when missing)
    deviation: DeviationRecord | None
    tolerance: Tolerance
    tolerance_source: ToleranceSource = "declared"
    message: str = ""
    spread: ResultSpread | None = None  # measured by this verification's repeated runs
    recorded_spread: ResultSpread | None = None  # measured at record time (the lock's)

    @property
    def passed(self) -> bool:
        return self.status not in FAILING


@dataclass(frozen=True)
class FileChange:
    path: str  # relative to the data entry (a directory), or the entry path for a file
    change: FileChangeKind
    reference: str | None = None  # digest in the lock
    current: str | None = None  # digest now


@dataclass(frozen=True)
class DataEntryCheck:
    path: str
    kind: str  # "file" | "dir"
    algorithm: str
    status: DataStatus
    reference_digest: str
    current_digest: str | None = None
    files: tuple[FileChange, ...] = ()  # what changed inside a directory
    reason: str = ""


@dataclass(frozen=True)
class DataCheck:
    entries: tuple[DataEntryCheck, ...] = ()
    outside_links: tuple[str, ...] = ()  # "link -> target" leaving the project (reported)

    @property
    def ok(self) -> bool:
        return all(e.status == "ok" for e in self.entries)

    @property
    def drifted(self) -> tuple[DataEntryCheck, ...]:
        return tuple(e for e in self.entries if e.status != "ok")


@dataclass(frozen=True)
class DivergentCell:
    """The first code cell whose (masked) text output differs from the lock's fingerprint."""

    index: int | None  # cell index in the notebook (injected-parameters cell not counted)
    reason: DivergenceReason
    detail: str = ""  # with --outputs: where and how (reference line against current line)
    # the lock's text of the cell holds the line %repro end printed before December 2026
    # (naming the store): it differs wherever that store does; recording again drops it
    old_end_line: bool = False


NotCompared = Literal["data_changed", "execution_failed"]


@dataclass(frozen=True)
class Verdict:
    notebook: str
    reproduced: bool  # every locked result reproduced or within tolerance
    counts: dict[str, int]  # status -> number of results
    checks: tuple[ResultCheck, ...]
    reference_device: str = "cpu"
    current_device: str = "cpu"
    env_diff: EnvDiff | None = None
    data: DataCheck | None = None
    divergent_cell: DivergentCell | None = None
    source_changes: tuple[int, ...] = ()  # cells whose source changed since the lock
    git: GitInfo | None = None  # of the current execution (else of the reference)
    run_id: str | None = None  # the reference MLflow run
    command: str | None = None  # how to re-run this verification
    outputs: tuple[OutputCheck, ...] = ()  # per code cell, when outputs were compared
    outputs_compared: bool = False
    rebuilt: RebuiltEnv | None = None  # verify --rebuild-env: how the kernel's env matched
    # when this verdict was reached, if it is reused from the skip cache (not executed now)
    cached_at: str | None = None
    executed_by: str | None = None  # the Dask worker that executed it (None: this machine)
    # set when nothing was compared: the data check stopped it, or its execution failed
    not_compared: NotCompared | None = None
    execution_error: str | None = None  # the failed execution's message (redacted)

    @classmethod
    def stand_in(
        cls,
        notebook: str,
        why: NotCompared,
        data: DataCheck | None,
        error: str | None,
        *,
        command: str | None = None,
        source_changes: Sequence[int] = (),
    ) -> Verdict:
        """The verdict of a notebook nothing was compared for (reports list it as failed),
        with the ``command`` that re-runs its verification and the code cells whose source
        changed since the lock (the likely cause of a failed execution)."""
        return cls(
            notebook, False, {}, (), data=data, command=command, not_compared=why,
            execution_error=error, source_changes=tuple(source_changes),
        )  # fmt: skip

    @property
    def data_ok(self) -> bool:
        return self.data is None or self.data.ok


# ----------------------------------------------------------------------------- results


def verify_results(
    lock: Lock,
    executed: NotebookResults,
    *,
    comparison: ComparisonOptions | None = None,
    device: str | None = None,
    current_snapshot: Snapshot | None = None,
    lock_dir: str | os.PathLike[str] | None = None,
    data: DataCheck | None = None,
    executed_notebook: Any = None,
    source_changes: Sequence[int] | None = None,
    command: str | None = None,
    project_root: str | os.PathLike[str] | None = None,
) -> Verdict:
    """Compare every result of ``executed`` with the lock's (see the module docstring).

    ``comparison`` (default ``ComparisonOptions()``): tolerance overrides, per-device
    tolerances, and ``outputs``: compare every code cell's text output too (needs
    ``executed_notebook``; numbers within ``rtol``/``atol``, else
    :data:`~reprokit.compare.cells.DEFAULT_OUTPUT_TOLERANCE`; a cell that differs fails the
    verdict). ``device``: this execution's device kind (default: the lock's). ``lock_dir``:
    where the lock's by-reference arrays are (default: the current folder).
    ``executed_notebook`` (an nbformat node; its outputs masked with ``project_root`` as
    ``<PROJECT>``) names the first cell whose output diverged; ``data``, ``source_changes``
    (None: not known; :func:`_env_diff`) and ``command`` go into the verdict as given.
    """
    options = comparison if comparison is not None else ComparisonOptions()
    reference_device = lock.parameters.device
    current_device = (device or reference_device).split(":", 1)[0].lower()
    picker = _TolerancePicker(lock, options, cross_device=current_device != reference_device)
    checks = _result_checks(lock, executed.results, picker, Path(lock_dir or Path.cwd()))
    snapshot = current_snapshot if current_snapshot is not None else executed.snapshot
    cells, divergent = _compared_cells(lock, options, executed_notebook, project_root)
    return Verdict(
        notebook=lock.notebook.path,
        reproduced=all(c.passed for c in checks) and all(c.passed for c in cells),
        counts={s: sum(c.status == s for c in checks) for s in STATUSES},
        checks=tuple(checks),
        reference_device=reference_device,
        current_device=current_device,
        env_diff=_env_diff(lock.snapshot, snapshot, checks, executed_notebook, source_changes),
        data=data,
        divergent_cell=divergent,
        source_changes=tuple(source_changes or ()),
        git=_git(snapshot or lock.snapshot),
        run_id=lock.run_id,
        command=command,
        outputs=cells,
        outputs_compared=options.outputs,
    )


def _result_checks(
    lock: Lock, produced: Mapping[str, Result], picker: _TolerancePicker, base: Path
) -> list[ResultCheck]:
    """One check per locked result (in name order), then one per unexpected result."""
    checks = [
        _check(name, ref, produced.get(name), picker, base)
        for name, ref in sorted(lock.results.items())
    ]
    return checks + [
        _unexpected(produced[name], picker) for name in sorted(produced) if name not in lock.results
    ]


class _TolerancePicker:
    def __init__(self, lock: Lock, options: ComparisonOptions, *, cross_device: bool) -> None:
        self.lock = lock
        self.rtol, self.atol = options.rtol, options.atol
        self.cross_device = cross_device
        self.device_tolerance = options.device_tolerance

    def pick(self, result: Result) -> tuple[Tolerance, ToleranceSource]:
        source: ToleranceSource = "declared"
        tol = Tolerance(result.rtol, result.atol)
        if self.cross_device:
            across = self._device(result.name)
            if across is not None:
                tol, source = across, "device"
        if self.rtol is not None or self.atol is not None:
            rtol = self.rtol if self.rtol is not None else tol.rtol
            atol = self.atol if self.atol is not None else tol.atol
            tol, source = Tolerance(rtol, atol), "override"
        return tol, source

    def _device(self, name: str) -> Tolerance | None:
        given = self.device_tolerance.get(name) or self.device_tolerance.get("*")
        if given is not None:
            return given
        locked = self.lock.device_tolerances.get(name)
        return None if locked is None else Tolerance(locked.rtol, locked.atol)


def _check(
    name: str, ref: Result, cur: Result | None, picker: _TolerancePicker, base: Path
) -> ResultCheck:
    tol, source = picker.pick(ref)
    if cur is None:
        message = "in the lock, not produced by this execution"
        return ResultCheck(name, "missing", short_value(ref), "", None, tol, source, message)
    try:
        comparison = _compare(ref, cur, tol, base)
    except (ReprokitError, ValueError, OSError) as exc:  # a payload that cannot be decoded
        return ResultCheck(
            name, "differs", short_value(ref), short_value(cur), None, tol, source, str(exc)
        )
    deviation = deviation_record(comparison.deviation)
    return ResultCheck(
        name,
        comparison.status,
        short_value(ref),
        short_value(cur),
        deviation,
        tol,
        source,
        comparison.deviation.message,
    )


def _unexpected(cur: Result, picker: _TolerancePicker) -> ResultCheck:
    tol, source = picker.pick(cur)
    message = "produced by this execution, not in the lock (re-record to add it)"
    return ResultCheck(cur.name, "unexpected", "", short_value(cur), None, tol, source, message)


def _compare(ref: Result, cur: Result, tol: Tolerance, base: Path) -> ValueComparison:
    """The two values compared; where an array's elements cannot be read (its file is gone),
    the two arrays' statistics and samples instead (:func:`_summary`)."""
    from reprokit.compare.values import compare_values

    cur = at_schema_version(cur, ref.schema_version)
    if _same_contents(ref, cur):  # no array file read: a missing one passes as it should
        return _identical(ref, tol)
    reference, failure = _decoded(ref, base)
    current, failed_now = _decoded(cur, None)
    if failure is None and failed_now is None:
        return _with_declared_types(compare_values(reference, current, tol), ref, cur)
    first, second = _summary(ref.array), _summary(cur.array)
    if first is None or second is None:  # nothing to compare the elements with
        error = failure or failed_now
        assert error is not None
        raise error
    if failed_now is None:  # the current elements at the reference's sampled positions
        second = _summary(cur.array, current, first.sample_indices)
    elif failure is None:
        first = _summary(ref.array, reference, second.sample_indices)
    from reprokit.compare.summary import compare_summaries

    compared = compare_summaries(first, second, tol)
    side = "the reference" if failure is not None else "this run"
    why = f"the elements of {side} could not be read ({failure or failed_now}): "
    deviation = replace(compared.deviation, message=why + compared.deviation.message)
    return replace(compared, deviation=deviation)


def _with_declared_types(comparison: ValueComparison, ref: Result, cur: Result) -> ValueComparison:
    """A ``reproduced`` value whose declared type changed is ``within_tolerance``, naming the
    change: what decoding cannot tell apart (a bfloat16 tensor kept as float32 against a
    float32 one, a tensor against a numpy array, ``np.float32(1.5)`` against ``1.5``)."""
    if comparison.status != "reproduced":
        return comparison
    deviation = comparison.deviation
    if ref.type_name and cur.type_name and ref.type_name != cur.type_name:
        deviation = replace(deviation, type_change=(ref.type_name, cur.type_name))
        change = f"type {ref.type_name} -> {cur.type_name}"
    elif (changed := _declared_dtype_change(ref, cur)) is not None:
        where, before, after = changed
        deviation = replace(deviation, dtype_change=(before, after))
        change = f"dtype{where} {before} -> {after}"
    else:
        return comparison
    deviation = replace(deviation, message=f"{deviation.message}; {change}")
    return replace(comparison, status="within_tolerance", deviation=deviation)


def _declared_dtype_change(ref: Result, cur: Result) -> tuple[str, str, str] | None:
    """``(where, before, after)`` for the first array whose declared dtype changed (where:
    empty for the value itself, `` of the index``, `` of column 'a'``); None when none did."""
    if ref.array is None and cur.array is None and not ref.columns:
        before, after = ref.dtype or "", cur.dtype or ""
        return None if before == after else ("", before, after)
    pairs = [("", ref.array, cur.array), (" of the index", ref.index, cur.index)]
    if len(ref.columns) == len(cur.columns):
        pairs += [
            (f" of column {a.name!r}", a.data, b.data)
            for a, b in zip(ref.columns, cur.columns, strict=True)
        ]
    for where, first, second in pairs:
        if first is not None and second is not None:
            before, after = _declared_dtype(first), _declared_dtype(second)
            if before != after:
                return where, before, after
    return None


def _declared_dtype(data: ArrayData) -> str:
    """The dtype the array had in the notebook: as torch or pandas had it (``torch.bfloat16``,
    ``Int64``, ``category(['a', 'b'])``) where it was stored as another."""
    return data.source_dtype or data.dtype


_TZ_DTYPE = re.compile(r"^datetime64\[\w+, .+\]$")  # what version 1 kept of pandas dtypes


def at_schema_version(result: Result, version: int) -> Result:
    """``result`` as a Result of an older ``version`` would have recorded it, so that it is
    compared with one at the same fidelity: before version 2 a pandas result kept no axis
    names and only a time zone's dtype."""
    if version >= 2 or result.kind not in ("series", "dataframe"):
        return result

    def kept(data: ArrayData | None) -> ArrayData | None:
        if data is None or _TZ_DTYPE.match(data.source_dtype or ""):
            return data
        return replace(data, source_dtype=None)

    return replace(
        result,
        array=kept(result.array),
        index=kept(result.index),
        columns=tuple(replace(c, data=kept(c.data) or c.data) for c in result.columns),
        index_names=None,
        columns_names=None,
        schema_version=version,
    )


def _same_contents(ref: Result, cur: Result) -> bool:
    """Two results that hold arrays (an array, a Series, a DataFrame) with the same digests,
    dtypes, shapes and everything else: the same value, whatever files keep the arrays."""
    if ref.kind not in ("array", "series", "dataframe") or ref.kind != cur.kind:
        return False
    return _contents(ref) == _contents(cur) and not _complex_nan(cur)


def _complex_nan(result: Result) -> bool:
    """Whether a complex array of ``result`` holds a NaN (or cannot be read to tell): a
    digest recorded by reprokit 0.1.0 took such a number as NaN + 0j, so that it can equal
    this run's while the part beside the NaN changed."""
    import numpy as np

    from reprokit.results.arrays import load_array

    held = [result.array, result.index, *(c.data for c in result.columns)]
    for data in held:
        if data is not None and data.dtype.lstrip("<>=|").startswith("c"):
            try:
                if bool(np.isnan(load_array(data)).any()):
                    return True
            except (ReprokitError, OSError):
                return True
    return False


def _contents(result: Result) -> tuple[Any, ...]:
    def held(data: ArrayData | None) -> tuple[Any, ...] | None:
        return None if data is None else (data.dtype, data.shape, data.digest, data.source_dtype)

    columns = tuple((c.name, held(c.data)) for c in result.columns)
    names = (result.index_names, result.columns_names)
    parts = (result.value, result.dtype, result.type_name, result.plugin, names)
    return (*parts, held(result.array), held(result.index), columns)


def _identical(ref: Result, tol: Tolerance) -> ValueComparison:
    arrays = [ref.array] if ref.array is not None else [c.data for c in ref.columns]
    count = sum(math.prod(a.shape) for a in arrays)
    noun = "element" if count == 1 else "elements"
    deviation = Deviation(total_count=count, message=f"identical ({count} {noun})")
    return ValueComparison("reproduced", deviation, Tolerance(*tol.resolved()))


def _decoded(result: Result, base: Path | None) -> tuple[Any, ReprokitError | None]:
    """The value ``result`` describes, or the error that says why it cannot be read; an array
    file that is there but no longer the recorded one is not a missing file: ValueError."""
    from reprokit.results.encode import decode_result

    try:
        return decode_result(result, base=base), None
    except DigestMismatchError as exc:
        raise ValueError(
            f"array file {exc.path} no longer holds the array it was recorded with "
            f"(changed or corrupted since: digest {exc.actual}, recorded {exc.expected})"
        ) from exc
    except ReprokitError as exc:
        return None, exc


def _summary(data: ArrayData | None, loaded: Any = None, at: tuple[int, ...] | None = None) -> Any:
    """The ArraySummary an array's statistics and sample amount to (None if not enough).
    With its elements ``loaded`` (a numpy array of its shape), the sample is taken at the
    positions ``at`` (the other side's): the positions a sample was drawn at depend on the
    numpy that drew them, so two runs' own samples need not meet."""
    if data is None or data.sample is None:
        return None
    from reprokit.compare.summary import ArraySummary, dtype_kind, sample_values
    from reprokit.results.arrays import sample_json

    kind = dtype_kind(data.dtype)
    indices, values = data.sample.indices, sample_values(data.sample.values, kind)
    if at is not None and getattr(loaded, "shape", None) == data.shape:
        flat = loaded.reshape(-1)
        indices = tuple(i for i in at if 0 <= i < flat.size)
        values = sample_values([sample_json(flat[i], "sample") for i in indices], kind)
    if values is None:
        return None  # complex elements: no summary comparison for them
    stats = data.stats
    return ArraySummary(
        shape=data.shape,
        dtype=data.dtype,
        digest=data.digest,
        count=data.size,
        nan_count=stats.nan_count if stats else 0,
        posinf_count=stats.posinf_count if stats else 0,
        neginf_count=stats.neginf_count if stats else 0,
        min=stats.min if stats else None,
        max=stats.max if stats else None,
        mean=stats.mean if stats else None,
        std=stats.std if stats else None,
        abs_mean=_abs_mean_bound(stats),
        sample_seed=data.sample.seed,
        sample_indices=indices,
        sample_values=values,
    )


def _abs_mean_bound(stats: ArrayStats | None) -> float | None:
    """mean(|x|), or an upper bound of it: the stored statistics do not include it, and an
    upper bound keeps the summary's mean test a valid (if looser) necessary condition."""
    if stats is None or stats.mean is None or stats.min is None or stats.max is None:
        return None
    if stats.min >= 0:
        return stats.mean
    if stats.max <= 0:
        return -stats.mean
    return max(abs(stats.min), abs(stats.max))


def _git(snapshot: Snapshot | None) -> GitInfo | None:
    """The git facts a verdict shows, without the repository's absolute folder: a verdict is
    written into reports a reviewer attaches, and a path names whoever ran it."""
    return None if snapshot is None else replace(snapshot.git, root=None)


def _env_diff(
    reference: Snapshot | None,
    current: Snapshot | None,
    checks: list[ResultCheck],
    node: Any,
    source_changes: Sequence[int] | None,
) -> EnvDiff | None:
    """The environment diff; another git commit is a note, not a change, only when the
    source is known to be unchanged (``source_changes == ()``: see ``diff_snapshots``)."""
    found = None
    if reference is not None and current is not None:
        same_source = source_changes is not None and not source_changes
        found = diff_snapshots(reference, current, same_source=same_source)
    if all(check.passed for check in checks):
        return found
    found = _with_unseeded_generators(found, node)
    if found is not None and found.in_category("seeds"):
        return found
    changed = any(check.status in ("differs", "nondeterministic") for check in checks)
    unseeded = nothing_seeded(reference, current) if changed else ()  # a likely cause: a note
    if not unseeded:
        return found
    if found is None:
        return EnvDiff(notes=unseeded)
    return replace(found, notes=unseeded + found.notes)


def _with_unseeded_generators(found: EnvDiff | None, node: Any) -> EnvDiff | None:
    """A result differs: when the seeds did not change, name a cell that makes an unseeded
    numpy Generator (the likely cause) first in the environment diff."""
    if node is None or (found is not None and found.in_category("seeds")):
        return found
    sources = [
        (k, str(cell.get("source", "")))
        for k, cell in enumerate(c for c in node.cells if INJECTED_TAG not in _tags(c))
        if cell.get("cell_type") == "code"
    ]
    likely = unseeded_generators(sources)
    if not likely:
        return found
    if found is None:
        return EnvDiff(likely)
    return replace(found, changes=likely + found.changes)


def _tags(cell: Any) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, list) else []


@dataclass(frozen=True)
class _ExecutedNotebook:
    node: Any  # nbformat node, or None
    project_root: str | os.PathLike[str] | None


def _compared_cells(
    lock: Lock,
    options: ComparisonOptions,
    node: Any,
    project_root: str | os.PathLike[str] | None,
) -> tuple[tuple[OutputCheck, ...], DivergentCell | None]:
    """The output checks (with ``--outputs``) and the first divergent cell."""
    executed = _ExecutedNotebook(node, project_root)
    outputs = options.outputs
    cells = _output_checks(lock, executed, options.rtol, options.atol) if outputs else ()
    return cells, _divergence(lock, cells, executed, outputs=outputs)


def _output_checks(
    lock: Lock, executed: _ExecutedNotebook, rtol: float | None, atol: float | None
) -> tuple[OutputCheck, ...]:
    if executed.node is None:
        raise ReprokitError("comparing outputs needs the executed notebook")
    from reprokit.compare.cells import current_fingerprints

    tolerance = Tolerance(rtol, atol) if rtol is not None or atol is not None else None
    current = current_fingerprints(
        lock.outputs, executed.node, None, lock.volatile, executed.project_root
    )
    return compare_cell_outputs(lock.outputs, current, tolerance, volatile=lock.volatile)


_REASONS: dict[CheckStatus, DivergenceReason] = {
    "missing": "cell missing in current",
    "unexpected": "unexpected cell",
}


def _divergent_from(
    cells: tuple[OutputCheck, ...], *, detailed: bool = True
) -> DivergentCell | None:
    """The verdict's first divergent cell: the first cell whose output check failed."""
    failing = first_failing(cells)
    if failing is None:
        return None
    reason = _REASONS.get(failing.status, "output differs")
    if not detailed:
        return DivergentCell(failing.index, reason)
    detail = failing.note or f"reference {failing.reference!r}, current {failing.obtained!r}"
    if failing.location:
        detail = f"{failing.location}: {detail}"
    return DivergentCell(failing.index, reason, detail)


_OLD_END_LINE = re.compile(
    r"^reprokit: run \S+(?: recorded\))? ended \S+: \d+ result\(s\) → ", re.M
)


def _divergence(
    lock: Lock, cells: tuple[OutputCheck, ...], executed: _ExecutedNotebook, *, outputs: bool
) -> DivergentCell | None:
    divergent = _divergent_from(cells) if outputs else _divergent_cell(lock, executed)
    return _flag_old_end_line(divergent, lock)


def _flag_old_end_line(divergent: DivergentCell | None, lock: Lock) -> DivergentCell | None:
    if divergent is None or divergent.index is None:
        return divergent
    text = next((c.text for c in lock.outputs if c.index == divergent.index), None)
    if text is None or not _OLD_END_LINE.search(text):
        return divergent
    return replace(divergent, old_end_line=True)


def _divergent_cell(lock: Lock, executed: _ExecutedNotebook) -> DivergentCell | None:
    """Without ``--outputs``: the first cell whose output digest is not the lock's."""
    if executed.node is None or not lock.outputs:
        return None
    from reprokit.compare.cells import current_fingerprints
    from reprokit.recording.lock_model import OUTPUT_TEXT_LIMIT

    current = current_fingerprints(
        lock.outputs, executed.node, OUTPUT_TEXT_LIMIT, lock.volatile, executed.project_root
    )
    checks = compare_cell_outputs(lock.outputs, current, digests_only=True, volatile=lock.volatile)
    return _divergent_from(checks, detailed=False)


def with_repeated_runs(
    verdict: Verdict, lock: Lock, runs: Sequence[Mapping[str, Result]]
) -> Verdict:
    """``verdict`` (of ``runs[0]``) with each result's spread over ``runs`` (``verify --repeat``):
    a result that ``differs`` from the lock while its own runs disagree beyond the tolerance
    applied is ``nondeterministic``, with both spreads (the lock's and this one)."""
    from reprokit.compare import _hints as hints
    from reprokit.compare.noise import disagreeing, measure_spreads

    spreads = measure_spreads(runs) if len(runs) > 1 else {}
    tolerances = {check.name: check.tolerance for check in verdict.checks}
    unstable = disagreeing(runs, tolerances) if len(runs) > 1 else set()
    checks = []
    for check in verdict.checks:
        check = replace(
            check, spread=spreads.get(check.name), recorded_spread=lock.spreads.get(check.name)
        )
        if check.status == "differs" and check.name in unstable:
            check = replace(check, status="nondeterministic", message=hints.NONDETERMINISTIC)
        checks.append(check)
    counts: dict[str, int] = {s: sum(c.status == s for c in checks) for s in STATUSES}
    return replace(verdict, checks=tuple(checks), counts=counts)


# ----------------------------------------------------------------------------- data


def check_data(
    lock: Lock,
    project_root: str | os.PathLike[str],
    *,
    cache: Any = "default",
) -> DataCheck:
    """Re-hash every data path of the lock (before execution) and say what changed.

    ``cache``: as for :func:`~reprokit.capturing.hashing.hash_path` (``"default"``, ``None`` or
    a ``HashCache``).
    """
    root = Path(project_root)
    entries = declared_by_start(lock)[0]
    checks = tuple(_check_entry(entry, root, cache) for entry in entries)
    return DataCheck(checks, report_outside_links(entries, root))


def declared_by_start(lock: Lock) -> tuple[tuple[DataEntry, ...], tuple[DataEntry, ...]]:
    """The lock's data split in two: what ``%repro start --data`` declared (inputs there
    before the run: :func:`check_data` re-hashes them before anything executes), and what
    the notebook declared while it ran (``reprokit.data()``, ``%repro data``: maybe files it
    downloads or makes, compared after the run by :func:`check_declared_in_run`). A lock
    without a snapshot keeps no such split: all of its data is checked before the run."""
    entries = lock.data.entries if lock.data is not None else ()
    if lock.snapshot is None:
        return entries, ()
    start = lock.snapshot.data.entries if lock.snapshot.data is not None else ()
    at_start = {(entry.path, entry.digest) for entry in start}
    before = tuple(entry for entry in entries if (entry.path, entry.digest) in at_start)
    return before, tuple(entry for entry in entries if (entry.path, entry.digest) not in at_start)


def check_declared_in_run(lock: Lock, declared: Sequence[DataEntry]) -> tuple[DataEntryCheck, ...]:
    """Each input the recorded run declared while it ran, against what this run declared:
    the same path and digest, or ``changed`` (the path with another digest), or ``missing``
    (the path not declared this time)."""
    now: dict[str, list[str]] = {}
    for entry in declared:
        now.setdefault(entry.path, []).append(entry.digest)
    checks = []
    for entry in declared_by_start(lock)[1]:
        digests = now.get(entry.path)
        if digests is None:
            checks.append(_entry_check(entry, "missing", reason="not declared by this run"))
        elif entry.digest in digests:
            checks.append(_entry_check(entry, "ok", entry.digest))
        else:
            reason = "declared by this run with other content"
            checks.append(_entry_check(entry, "changed", digests[-1], reason=reason))
    return tuple(checks)


def report_outside_links(entries: Sequence[DataEntry], root: Path) -> tuple[str, ...]:
    """Symbolic links of the data that lead outside the project root, each with a warning."""
    import warnings

    from reprokit.capturing.walk import links_outside
    from reprokit.exceptions import ReprokitWarning

    found = tuple(link for e in entries for link in links_outside(root / e.path, root))
    for link in found:
        warnings.warn(
            f"data link outside the project root {root}: {link} (hashed, but it does not "
            "travel with the project)",
            ReprokitWarning,
            stacklevel=3,
        )
    return found


def compare_manifests(reference: DataManifest | None, current: DataManifest | None) -> DataCheck:
    """The data check between two recorded manifests (no hashing): each path of
    ``reference`` against the entry of the same path in ``current``."""
    now = {entry.path: entry for entry in (current.entries if current else ())}
    checks = []
    for entry in reference.entries if reference else ():
        other = now.get(entry.path)
        if other is None:
            checks.append(_entry_check(entry, "missing", reason="not in the other manifest"))
        elif other.algorithm != entry.algorithm:
            reason = f"hashed with {other.algorithm}, not {entry.algorithm}: not comparable"
            checks.append(_entry_check(entry, "changed", other.digest, reason=reason))
        elif other.digest == entry.digest:
            checks.append(_entry_check(entry, "ok", other.digest))
        else:
            files = _file_changes(entry, other) if _listed(entry) and _listed(other) else ()
            checks.append(_entry_check(entry, "changed", other.digest, files, "content changed"))
    return DataCheck(tuple(checks))


def _listed(entry: DataEntry) -> bool:
    """False for a folder whose file list was left out (a notebook's snapshot summary, a name
    a lock cannot hold): it cannot say which of its files changed. A folder with no files has
    the digest of nothing (its size says nothing: its files may all be empty)."""
    from reprokit.capturing.hashing import empty_folder_digest

    if entry.kind != "dir" or entry.files:
        return True
    return entry.digest == empty_folder_digest(entry.algorithm)


def _check_entry(entry: DataEntry, root: Path, cache: Any) -> DataEntryCheck:
    from reprokit.capturing.hashing import hash_path

    path = root / entry.path
    if not path.exists():
        return _entry_check(entry, "missing", reason="not found")
    try:
        now = hash_path(path, algorithm=entry.algorithm, cache=cache, relative_to=root)
    except ReprokitError as exc:
        return _entry_check(entry, "missing", reason=str(exc))
    if now.digest == entry.digest and now.kind == entry.kind:
        return _entry_check(entry, "ok", now.digest)
    files = _file_changes(entry, now) if _listed(entry) else ()  # no list: no file named
    if files and all(is_os_litter(f.path) for f in files):  # added here, or at record time
        shown = ", ".join(f.path for f in files[:3]) + (", ..." if len(files) > 3 else "")
        return _entry_check(entry, "ok", now.digest, reason=f"ignored what an OS adds: {shown}")
    # by kind of change: "1 changed, 1 added" (a file added is not a file changed)
    kinds = [change.change for change in files]
    order = ("changed", "added", "missing")
    counts = ", ".join(f"{kinds.count(kind)} {kind}" for kind in order if kind in kinds)
    reason = (counts or "content changed") if entry.kind == "dir" else "content changed"
    return _entry_check(entry, "changed", now.digest, files, reason)


def is_os_litter(path: str) -> bool:
    """Whether a file added to a data folder is one an operating system or an editor leaves
    there by itself (Finder's ``.DS_Store`` and ``._`` files, Windows' ``Thumbs.db``,
    Jupyter's checkpoints, Python's bytecode): not a change of the data."""
    parts = path.split("/")
    name = parts[-1]
    return (
        name in _LITTER_NAMES
        or name.startswith("._")
        or any(part in _LITTER_FOLDERS for part in parts[:-1])
    )


_LITTER_NAMES = frozenset({".DS_Store", "Thumbs.db", "ehthumbs.db", "desktop.ini", "Icon\r"})
_LITTER_FOLDERS = frozenset(
    {".ipynb_checkpoints", "__pycache__", ".Spotlight-V100", ".Trashes", ".fseventsd"}
)


def _entry_check(
    entry: DataEntry,
    status: DataStatus,
    current: str | None = None,
    files: tuple[FileChange, ...] = (),
    reason: str = "",
) -> DataEntryCheck:
    return DataEntryCheck(
        entry.path, entry.kind, entry.algorithm, status, entry.digest, current, files, reason
    )


def _file_changes(reference: DataEntry, current: DataEntry) -> tuple[FileChange, ...]:
    if reference.kind != "dir" or current.kind != "dir":
        return (FileChange(reference.path, "changed", reference.digest, current.digest),)
    before = {f.path: f.digest for f in reference.files}
    after = {f.path: f.digest for f in current.files}
    changes = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        kind: FileChangeKind = "missing" if new is None else ("added" if old is None else "changed")
        changes.append(FileChange(name, kind, old, new))
    return tuple(changes)
