"""The noise of a notebook: how its results and printed outputs move between repeated runs.

``record --repeat N`` executes a notebook N times; :func:`measure_noise` compares runs 2..N
with the first (whose values the lock keeps), result by result with
:func:`~reprokit.compare.values.compare_values`:

- the **spread** of a result is the largest deviation of any run from the first (max abs and
  max rel error, the largest fraction of elements that moved; :class:`ResultSpread`);
- a result is **unstable** when some run differs from the first beyond the tolerance the
  notebook declared; with ``widen_tolerances`` its tolerance becomes
  ``max(declared, factor x spread)`` (:func:`widened_lock`), unless no tolerance can cover it
  (integers, strings and shapes are compared exactly, a NaN or an infinite error has no
  multiple);
- a code cell whose text output moved is **volatile**: its first run's text becomes a template
  of literal text and spans (a number, a word, a run of text within a line) that
  ``verify --outputs`` masks (:class:`VolatileCell`).

``verify --repeat N`` uses :func:`disagreeing` to tell a result whose own runs disagree
(``nondeterministic``) from one that differs from the lock but is stable here.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reprokit.compare import _hints as hints
from reprokit.compare.envdiff import unseeded_generators
from reprokit.comparison import EXACT, Deviation, Tolerance, ValueComparison
from reprokit.exceptions import ReprokitError
from reprokit.notebook.text import span_kind
from reprokit.recording.lock_model import (
    OUTPUT_TEXT_LIMIT,
    CellFingerprint,
    Lock,
    ResultSpread,
    VolatileCell,
)
from reprokit.results.model import Result

__all__ = [
    "Noise",
    "NoisyResult",
    "disagreeing",
    "likely_causes",
    "measure_noise",
    "measure_spreads",
    "volatile_cells",
    "widened_lock",
    "widened_tolerance",
]


@dataclass(frozen=True)
class NoisyResult:
    """A result whose runs differ beyond its declared tolerance."""

    name: str
    spread: ResultSpread
    declared: Tolerance
    widened: Tolerance | None  # the tolerance that covers the spread; None: none can


@dataclass(frozen=True)
class Noise:
    """What N runs of one notebook showed."""

    runs: int
    spreads: dict[str, ResultSpread]
    unstable: tuple[NoisyResult, ...]
    volatile: tuple[VolatileCell, ...]
    causes: tuple[str, ...]  # likely causes, most likely first


def measure_noise(
    results: Sequence[Mapping[str, Result]],
    fingerprints: Sequence[Sequence[CellFingerprint]],
    *,
    factor: float,
    causes: tuple[str, ...] = (),
) -> Noise:
    """Compare runs 2..N of ``results`` (and their cell ``fingerprints``, texts unlimited) with
    the first; ``factor`` is the widening multiple."""
    spreads = measure_spreads(results)
    moved = disagreeing(results, _declared_tolerances(results[0]))
    unstable = tuple(_noisy(name, results, spreads[name], factor) for name in sorted(moved))
    return Noise(len(results), spreads, unstable, volatile_cells(fingerprints), causes)


def _declared_tolerances(first: Mapping[str, Result]) -> dict[str, Tolerance]:
    return {name: Tolerance(r.rtol, r.atol) for name, r in first.items()}


# ----------------------------------------------------------------------------- results


def _compare(reference: Result, current: Result | None, tol: Tolerance) -> ValueComparison:
    from reprokit.compare.values import compare_values
    from reprokit.results.encode import decode_result

    if current is None:
        return _gone()
    try:
        return compare_values(decode_result(reference), decode_result(current), tol)
    except (ReprokitError, ValueError, OSError):
        return _gone()


def _gone() -> ValueComparison:
    inf = math.inf
    return ValueComparison("differs", Deviation(inf, inf, 1, 1, 1.0), EXACT)


def measure_spreads(results: Sequence[Mapping[str, Result]]) -> dict[str, ResultSpread]:
    """Per result of the first run: the largest deviation of any other run from it."""
    first, others = results[0], results[1:]
    spreads = {}
    for name, reference in sorted(first.items()):
        deviations = [_compare(reference, run.get(name), EXACT).deviation for run in others]
        spreads[name] = ResultSpread(
            runs=len(results),
            max_abs_error=_safe(_largest(d.max_abs_error for d in deviations)),
            max_rel_error=_safe(_largest(d.max_rel_error for d in deviations)),
            mismatched_fraction=max((d.mismatched_fraction for d in deviations), default=0.0),
        )
    return spreads


def disagreeing(
    results: Sequence[Mapping[str, Result]], tolerances: Mapping[str, Tolerance]
) -> set[str]:
    """Names of the first run's results that some other run differs from beyond
    ``tolerances[name]`` (exact when not given)."""
    first, others = results[0], results[1:]
    return {
        name
        for name, reference in first.items()
        if any(
            _compare(reference, run.get(name), tolerances.get(name, EXACT)).status == "differs"
            for run in others
        )
    }


def _largest(values: Any) -> float:
    found = 0.0
    for value in values:
        found = math.nan if math.isnan(value) or math.isnan(found) else max(found, value)
    return found


def _safe(value: float) -> float | str:
    if math.isfinite(value):
        return float(value)
    return "nan" if math.isnan(value) else "inf"


def _noisy(
    name: str, results: Sequence[Mapping[str, Result]], spread: ResultSpread, factor: float
) -> NoisyResult:
    reference = results[0][name]
    declared = Tolerance(reference.rtol, reference.atol)
    wider = widened_tolerance(declared, spread, factor)
    if wider is not None and name in disagreeing(results, {name: wider}):
        wider = None  # exact parts (ints, strings, shapes) moved: no tolerance covers them
    return NoisyResult(name, spread, declared, wider)


def widened_tolerance(declared: Tolerance, spread: ResultSpread, factor: float) -> Tolerance | None:
    """``max(declared, factor x spread)`` per part; None when the absolute spread is not a
    finite number (a relative spread that is not, against a zero reference, widens only atol)."""
    if not isinstance(spread.max_abs_error, float):
        return None
    rtol, atol = declared.resolved()
    rel = spread.max_rel_error
    if isinstance(rel, float):
        rtol = max(rtol, factor * rel)
    atol = max(atol, factor * spread.max_abs_error)
    if not (math.isfinite(rtol) and math.isfinite(atol)):
        return None  # a spread near the float range: factor x it overflows, nothing covers it
    return Tolerance(rtol or None, atol or None)


def widened_lock(lock: Lock, noise: Noise, factor: float) -> Lock:
    """``lock`` with the spreads and volatile cells of ``noise``; each unstable result that a
    tolerance can cover gets ``max(declared, factor x spread)`` and says so in its spread."""
    results, spreads = dict(lock.results), dict(noise.spreads)
    for noisy in noise.unstable:
        if noisy.widened is None or noisy.name not in results:
            continue
        result = results[noisy.name]
        results[noisy.name] = replace(result, rtol=noisy.widened.rtol, atol=noisy.widened.atol)
        spreads[noisy.name] = replace(
            noisy.spread,
            widened=True,
            factor=factor,
            declared_rtol=result.rtol,
            declared_atol=result.atol,
        )
    return replace(lock, results=results, spreads=spreads, volatile=noise.volatile)


# ----------------------------------------------------------------------------- causes


def likely_causes(node: Any, snapshot: Any) -> tuple[str, ...]:
    """Why runs of one notebook may disagree, most likely first: an unseeded numpy Generator
    in a cell, no seed at all, cuDNN benchmark mode, nondeterministic GPU kernels (atomics),
    more than one BLAS/OpenMP thread (named only when nothing more specific is found)."""
    found: list[str] = []
    sources = _code_sources(node)
    for change in unseeded_generators(sources):
        found.append(f"unseeded generator: {change.current}: {change.hint}")
    if not found and (snapshot is None or snapshot.seeds is None):
        found.append(f"no seed set: {hints.NO_SEED}")
    flags = None if snapshot is None else snapshot.accelerator.flags
    if flags is not None and flags.cudnn_benchmark:
        found.append(f"cuDNN benchmark: {hints.FLAGS['cudnn_benchmark']}")
    if _gpu(snapshot) and not (flags is not None and flags.deterministic_algorithms):
        found.append(f"GPU atomics: {hints.FLAGS['deterministic_algorithms']}")
    threads = max((pool.num_threads for pool in _pools(snapshot)), default=1)
    if threads > 1 and not found:
        found.append(f"thread count ({threads} threads): {hints.THREAD_SCHEDULING}")
    return tuple(found) or (hints.UNKNOWN_NOISE,)


def _code_sources(node: Any) -> list[tuple[int, str]]:
    if node is None:
        return []
    from reprokit.notebook.files import INJECTED_TAG

    cells = [c for c in node.get("cells", []) if INJECTED_TAG not in _tags(c)]
    return [
        (k, _source(c.get("source", "")))
        for k, c in enumerate(cells)
        if c.get("cell_type") == "code"
    ]


def _source(source: Any) -> str:
    return source if isinstance(source, str) else "".join(source)


def _tags(cell: Any) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, list) else []


def _gpu(snapshot: Any) -> bool:
    return bool(snapshot is not None and snapshot.accelerator.available)


def _pools(snapshot: Any) -> tuple[Any, ...]:
    return () if snapshot is None else tuple(snapshot.threadpools)


# ----------------------------------------------------------------------------- outputs

_TOKEN = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\w+|\S")


def volatile_cells(runs: Sequence[Sequence[CellFingerprint]]) -> tuple[VolatileCell, ...]:
    """The cells whose masked text output differs between runs, each as a template made from
    the first run's text (a cell whose text is longer than the lock keeps is left out: the
    lock holds only its digest, and ``verify --outputs`` compares digests there)."""
    first, others = runs[0], runs[1:]
    found = []
    for position, cell in enumerate(first):
        texts = [_text_at(run, position, cell.index) for run in others]
        if cell.text is None or len(cell.text) > OUTPUT_TEXT_LIMIT:
            continue
        if all(text == cell.text for text in texts):
            continue
        found.append(_template(cell.index, cell.text, texts, len(runs)))
    return tuple(found)


def _text_at(run: Sequence[CellFingerprint], position: int, index: int) -> str:
    if position < len(run) and run[position].index == index:
        return run[position].text or ""
    return ""


def _template(index: int, text: str, others: Sequence[str], runs: int) -> VolatileCell:
    tokens = list(_TOKEN.finditer(text))
    kinds: dict[int, str] = {}  # token position -> span kind
    for other in others:
        _mark(kinds, tokens, [m.group() for m in _TOKEN.finditer(other)])
    literals: list[str] = []
    spans: list[str] = []
    end = 0
    for k in sorted(kinds):
        start = tokens[k].start()
        if spans and start == end:  # adjacent to the previous span: one span of text
            spans[-1], end = "text", tokens[k].end()
            continue
        literals.append(text[end:start])
        spans.append(kinds[k])
        end = tokens[k].end()
    literals.append(text[end:])
    return VolatileCell(index, tuple(literals), tuple(spans), runs)


def _mark(kinds: dict[int, str], tokens: list[re.Match[str]], other: list[str]) -> None:
    words = [t.group() for t in tokens]
    matcher = difflib.SequenceMatcher(None, words, other, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        same_shape = i2 - i1 == j2 - j1
        for k in range(i1, i2) if i2 > i1 else [min(i1, len(words) - 1)]:
            if k < 0:
                continue
            kind = span_kind(words[k])
            if not same_shape or span_kind(other[j1 + k - i1]) != kind:
                kind = "text"
            kinds[k] = kind if kinds.get(k, kind) == kind else "text"
