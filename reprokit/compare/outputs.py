"""Cell outputs as text: mask what changes every run, compare the rest token by token.

:func:`mask_volatile` replaces timestamps, dates, clock times and durations ("1.23s",
"12 ms", "0:00:01"), progress bars and rates (tqdm), memory addresses (``0x7f…``), temporary
paths, MLflow run ids (32 hex digits) and UUIDs by placeholders such as ``<TIME>``; carriage
returns keep the last state of a line, as a terminal shows it.

:func:`compare_outputs` then splits both texts into words and numbers (whitespace runs do not
count, so re-aligned tables still match) and compares:

- ``reproduced``: the masked texts are identical;
- ``within_tolerance``: same words, numbers within tolerance (floats by the float rule plus one
  unit of the last printed digit when a tolerance is declared, because printing rounds;
  integer-looking numbers exactly), or only whitespace changed;
- ``differs``: anything else; the location is ``line N`` of the reference text.

:func:`first_divergent_cell` walks two notebooks' code cells (nbformat cell dicts, or plain
output strings) in order, skipping papermill's ``injected-parameters`` cell, and names the first
one whose output diverged. Only text outputs count (streams, ``text/plain``, errors as
``ename: evalue``): images carry volatile metadata.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reprokit.compare._tally import Tally, float_outcome, short
from reprokit.comparison import EXACT, Tolerance, ValueComparison
from reprokit.notebook.text import cell_text, mask_volatile

__all__ = ["CellDivergence", "DivergenceReason", "compare_outputs", "first_divergent_cell"]

DivergenceReason = Literal["output differs", "cell missing in current", "unexpected cell"]
"""Why a cell is the first divergent one."""


_NUMBER = re.compile(
    r"((?<![\w.])[-+]?(?:(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|nan|NaN|inf|Inf|infinity)(?!\w))"
)


@dataclass(frozen=True)
class _Token:
    text: str
    line: int
    number: float | None  # None for a word

    @property
    def integral(self) -> bool:
        return self.number is not None and not any(c in self.text for c in ".eEnNiI")

    @property
    def decimals(self) -> int:
        """Digits after the point as printed (the exponent shifts them)."""
        mantissa, _, exponent = self.text.lower().partition("e")
        places = len(mantissa.partition(".")[2])
        return places - int(exponent) if exponent.lstrip("+-").isdigit() else places


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        for word in line.split():
            for k, piece in enumerate(_NUMBER.split(word)):
                if piece:
                    out.append(_Token(piece, line_no, float(piece) if k % 2 else None))
    return out


def compare_outputs(
    reference: str, current: str, tolerance: Tolerance | None = None
) -> ValueComparison:
    """Compare two cell output texts after masking (see the module docstring)."""
    return _compare(mask_volatile(reference), mask_volatile(current), tolerance)[0]


def _compare(
    ref_masked: str, cur_masked: str, tolerance: Tolerance | None
) -> tuple[ValueComparison, tuple[int, int]]:
    """The comparison of masked texts, and the (reference, current) lines where they part."""
    tol = tolerance if tolerance is not None else EXACT
    tally = Tally()
    ref_tokens, cur_tokens = _tokens(ref_masked), _tokens(cur_masked)
    tally.total = max(len(ref_tokens), len(cur_tokens))
    lines = (1, 1)
    if ref_masked != cur_masked:
        tally.identical = False
        lines = _tally_tokens(tally, ref_tokens, cur_tokens, tol)
    return tally.finish(tol), lines


def _tally_tokens(
    tally: Tally, refs: list[_Token], curs: list[_Token], tol: Tolerance
) -> tuple[int, int]:
    rtol, atol = tol.resolved()
    lines: tuple[int, int] | None = None
    for a, b in zip(refs, curs, strict=False):
        if not _token_matches(tally, a, b, tol.is_exact, rtol, atol):
            lines = lines or (a.line, b.line)
    extra = abs(len(refs) - len(curs))
    if extra:
        k = min(len(refs), len(curs))
        longer = refs if len(refs) > len(curs) else curs
        side = "missing in current" if longer is refs else "unexpected"
        note = f"{extra} word(s) {side}: {short(longer[k].text)}"
        tally.mismatch(f"line {longer[k].line}", note, extra)
        last = (refs[-1].line if refs else 1, curs[-1].line if curs else 1)
        lines = lines or (
            refs[k].line if k < len(refs) else last[0],
            curs[k].line if k < len(curs) else last[1],
        )
    return lines or (1, 1)


def _token_matches(
    tally: Tally, a: _Token, b: _Token, exact: bool, rtol: float, atol: float
) -> bool:
    at = f"line {a.line}"
    if a.number is None or b.number is None or a.integral or b.integral:
        same = a.text == b.text or (a.integral and b.integral and a.number == b.number)
        if not same:
            tally.mismatch(at, f"current {short(b.text)}, reference {short(a.text)}")
        return same
    slack = 0.0 if exact else 10.0 ** -min(a.decimals, b.decimals)
    outcome = float_outcome(b.number, a.number, rtol, atol + slack)
    tally.errors(outcome.abs_err, outcome.rel_err, at)
    if not outcome.within:
        tally.mismatch(at, f"current {b.text}, reference {a.text}")
    return outcome.within


@dataclass(frozen=True)
class CellDivergence:
    """The first code cell whose output diverged, with a line of each side."""

    index: int | None  # cell index in the reference notebook (None: cell only in current)
    current_index: int | None  # cell index in the current notebook (None: cell missing)
    reason: DivergenceReason
    reference_excerpt: str
    current_excerpt: str
    comparison: ValueComparison | None = None


def _code_cells(cells: Sequence[Any]) -> list[tuple[int, str]]:
    out = []
    for index, cell in enumerate(cells):
        if isinstance(cell, Mapping):
            tags = cell.get("metadata", {}).get("tags", ())
            if cell.get("cell_type", "code") != "code" or "injected-parameters" in tags:
                continue
        out.append((index, cell_text(cell)))
    return out


def first_divergent_cell(
    reference_cells: Sequence[Any],
    current_cells: Sequence[Any],
    tolerance: Tolerance | None = None,
) -> CellDivergence | None:
    """The first code cell whose output differs (beyond tolerance), or None."""
    refs, curs = _code_cells(reference_cells), _code_cells(current_cells)
    for k in range(max(len(refs), len(curs))):
        if k >= len(curs):
            return CellDivergence(
                refs[k][0], None, "cell missing in current", _excerpt(refs[k][1]), ""
            )
        if k >= len(refs):
            return CellDivergence(None, curs[k][0], "unexpected cell", "", _excerpt(curs[k][1]))
        ref_text, cur_text = mask_volatile(refs[k][1]), mask_volatile(curs[k][1])
        comparison, (ref_line, cur_line) = _compare(ref_text, cur_text, tolerance)
        if comparison.status == "differs":
            return CellDivergence(
                refs[k][0],
                curs[k][0],
                "output differs",
                _excerpt(ref_text, ref_line),
                _excerpt(cur_text, cur_line),
                comparison,
            )
    return None


def _excerpt(text: str, line: int = 1, limit: int = 120) -> str:
    lines = text.split("\n")
    chosen = lines[min(line, len(lines)) - 1] if lines else ""
    return chosen if len(chosen) <= limit else chosen[: limit - 3] + "..."
