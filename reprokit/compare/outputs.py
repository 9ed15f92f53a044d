"""Cell outputs as text: mask what changes every run, compare the rest token by token.

:func:`~reprokit.notebook.text.mask_volatile` replaces timestamps, dates, clock times and
durations where the context says they are ones ("12:03:04", "took 1.23s"; not a ratio "80:20" or
a configured "3 days"), progress bars and rates (tqdm), memory addresses (``0x7f…``), the random
parts of temporary paths, library paths up to ``site-packages``, MLflow ids (32 hex digits not
labelled as a digest, see :func:`reprokit.notebook.text.mask_ids`) and UUIDs by placeholders
such as ``<TIME>``; carriage returns keep the last state of a line, as a terminal shows it. The
project's root is masked where the fingerprints are taken (it is not known here).

:func:`compare_outputs` then splits both texts into words and numbers (whitespace runs do not
count, so re-aligned tables still match) and compares:

- ``reproduced``: the masked texts are identical;
- ``within_tolerance``: same words, numbers within tolerance, or only whitespace changed.
  Integer-looking numbers compare exactly; a dotted run with more than one dot (a version,
  ``2.1.0``) is a word; a number with thousands separators (``1,002.3``, ``1_002.3``) is one
  number. A printed float passes when
  ``|current - reference| <= atol + rtol * |reference|`` plus one unit of the coarser last
  printed digit (printing rounds) when a tolerance is declared and that unit is at most
  :data:`ROUNDING_SLACK_LIMIT` of the larger number (so ``0.001`` against ``0.002`` differs:
  one or two significant digits do not round by 100%) -- except that a float printed without
  an exponent whose integer part has :data:`LARGE_INTEGER_DIGITS` or more digits gets no
  relative tolerance: at that magnitude ``rtol`` would hide whole printed digits (``1e-6`` of
  a ``time.time()`` is half an hour), and such a number is a clock, a counter or a date, not
  floating-point noise. It may differ by one unit of its last printed digit, or by ``atol``;
- ``differs``: anything else; the location is ``line N`` of the reference text.

Which cell diverged first is found on the lock's fingerprints, in :mod:`reprokit.compare.cells`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from reprokit.compare._tally import Tally, float_outcome, short
from reprokit.comparison import EXACT, Tolerance, ValueComparison
from reprokit.notebook.text import mask_volatile

__all__ = [
    "LARGE_INTEGER_DIGITS",
    "ROUNDING_SLACK_LIMIT",
    "DivergenceReason",
    "compare_outputs",
]

DivergenceReason = Literal["output differs", "cell missing in current", "unexpected cell"]
"""Why a cell is the first divergent one."""


LARGE_INTEGER_DIGITS = 6
"""A float printed with this many integer digits (and no exponent) gets no relative tolerance."""

ROUNDING_SLACK_LIMIT = 1e-3
"""One unit of a float's last printed digit is allowed for rounding only when it is at most
this fraction of the number (a last-digit flip of a number printed with 4 or more significant
digits): ``0.001`` against ``0.002`` is a 100% change, not rounding."""

# A dotted run such as "2.1.0" or "10.0.0.1" (a version, an address) is a word, not numbers:
# no number starts or ends beside a "." that joins it to more digits. A number with thousands
# separators (f"{x:,.1f}" prints 1,002.3, f"{x:_}" 1_002.3) is one number: a first group of 1 to
# 3 digits not starting with 0, then groups of exactly 3 digits, all after the same separator
# ("," or "_"); any other comma run ("1,2,3", "1,002,3", "0.5,0.6") is numbers one by one.
_NUMBER = re.compile(
    r"(?<![\w.])[-+]?(?:"
    r"[1-9]\d{0,2}(?:(?:,\d{3})+(?!,\d)|(?:_\d{3})+)(?:\.\d*)?"
    r"|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|nan|NaN|inf|Inf|infinity"
    r")(?![\w]|\.\d)"
)
_SEPARATORS = str.maketrans("", "", ",_")


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

    @property
    def large(self) -> bool:
        """Printed without an exponent with :data:`LARGE_INTEGER_DIGITS` or more integer digits."""
        if "e" in self.text.lower():
            return False
        whole = self.text.lstrip("+-").partition(".")[0].translate(_SEPARATORS).lstrip("0")
        return len(whole) >= LARGE_INTEGER_DIGITS


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        for word in line.split():
            at = 0
            for found in _NUMBER.finditer(word):
                if found.start() > at:
                    out.append(_Token(word[at : found.start()], line_no, None))
                number = found.group()
                out.append(_Token(number, line_no, float(number.translate(_SEPARATORS))))
                at = found.end()
            if at < len(word):
                out.append(_Token(word[at:], line_no, None))
    return out


def compare_outputs(
    reference: str, current: str, tolerance: Tolerance | None = None
) -> ValueComparison:
    """Compare two cell output texts after masking (see the module docstring)."""
    ref_masked, cur_masked = mask_volatile(reference), mask_volatile(current)
    tol = tolerance if tolerance is not None else EXACT
    tally = Tally()
    ref_tokens, cur_tokens = _tokens(ref_masked), _tokens(cur_masked)
    tally.total = max(len(ref_tokens), len(cur_tokens))
    if ref_masked != cur_masked:
        tally.identical = False
        _tally_tokens(tally, ref_tokens, cur_tokens, tol)
    return tally.finish(tol)


def _tally_tokens(tally: Tally, refs: list[_Token], curs: list[_Token], tol: Tolerance) -> None:
    rtol, atol = tol.resolved()
    for a, b in zip(refs, curs, strict=False):
        _tally_token(tally, a, b, tol.is_exact, rtol, atol)
    extra = abs(len(refs) - len(curs))
    if extra:
        k = min(len(refs), len(curs))
        longer = refs if len(refs) > len(curs) else curs
        side = "missing in current" if longer is refs else "unexpected"
        note = f"{extra} word(s) {side}: {short(longer[k].text)}"
        tally.mismatch(f"line {longer[k].line}", note, extra)


def _tally_token(tally: Tally, a: _Token, b: _Token, exact: bool, rtol: float, atol: float) -> None:
    at = f"line {a.line}"
    if a.number is None or b.number is None or a.integral or b.integral:
        same = a.text == b.text or (a.integral and b.integral and a.number == b.number)
        if not same:
            tally.mismatch(at, f"current {short(b.text)}, reference {short(a.text)}")
        return
    relative = 0.0 if a.large or b.large else rtol
    outcome = float_outcome(b.number, a.number, relative, atol + _rounding_slack(a, b, exact))
    tally.errors(outcome.abs_err, outcome.rel_err, at)
    if not outcome.within:
        tally.mismatch(at, f"current {b.text}, reference {a.text}")


def _rounding_slack(a: _Token, b: _Token, exact: bool) -> float:
    """One unit of the coarser last printed digit, when that unit is small beside the number
    (:data:`ROUNDING_SLACK_LIMIT`); else nothing: a token printed with one or two significant
    digits (``0.5``, ``1e-05``) is compared by the tolerance alone."""
    unit = 10.0 ** -min(a.decimals, b.decimals)
    magnitude = max(abs(a.number or 0.0), abs(b.number or 0.0))
    return unit if not exact and unit <= ROUNDING_SLACK_LIMIT * magnitude else 0.0
