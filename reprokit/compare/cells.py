"""Cell outputs against the lock's fingerprints (``reprokit verify --outputs``).

The lock keeps, per code cell, the digest of its masked text output and, up to
:data:`~reprokit.recording.lock_model.OUTPUT_TEXT_LIMIT` characters, the masked text itself. With
the text, a cell is compared word by word with numbers within tolerance
(:func:`~reprokit.compare.outputs.compare_outputs`); without it (a longer output, or a lock
written before texts were kept) only the digests are compared, and a difference is
``differs`` with a note saying so.

A cell the lock marks volatile (``record --repeat``, :class:`~reprokit.recording.lock_model.
VolatileCell`) has the spans that moved between the recorded runs masked on both sides first
(:func:`~reprokit.notebook.text.mask_spans`); the check then says how many were "volatile, not
compared". A text that no longer has the template's shape is compared unmasked, and fails.

Statuses per cell: ``reproduced``, ``within_tolerance``, ``differs``, ``missing`` (a cell of the
lock that the executed notebook lacks) and ``unexpected`` (a code cell the lock lacks).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from reprokit.compare.outputs import compare_outputs
from reprokit.comparison import CheckStatus, Tolerance
from reprokit.notebook.text import mask_spans
from reprokit.recording.lock_model import CellFingerprint, VolatileCell

__all__ = [
    "DEFAULT_OUTPUT_TOLERANCE",
    "OutputCheck",
    "compare_cell_outputs",
    "fingerprint_texts",
    "first_failing",
]

DEFAULT_OUTPUT_TOLERANCE = Tolerance(rtol=1e-6)
"""Numbers in text: besides this, one unit of the last printed digit where it is small beside
the number (printing rounds; see :mod:`reprokit.compare.outputs`)."""

_EXCERPT = 120


@dataclass(frozen=True)
class OutputCheck:
    """One code cell's text output against the lock's."""

    index: int  # cell index in the notebook (injected-parameters cell not counted)
    status: CheckStatus
    reference: str = ""  # excerpt: the first line that differs (or the first line)
    obtained: str = ""
    location: str | None = None  # "line N" of the reference text
    max_abs_error: float | None = None
    note: str = ""
    volatile: int = 0  # spans the lock marks volatile: masked, not compared

    @property
    def passed(self) -> bool:
        return self.status in ("reproduced", "within_tolerance")


def compare_cell_outputs(
    reference: Sequence[CellFingerprint],
    current: Sequence[CellFingerprint],
    tolerance: Tolerance | None = None,
    *,
    digests_only: bool = False,
    volatile: Sequence[VolatileCell] = (),
) -> tuple[OutputCheck, ...]:
    """Compare the executed notebook's fingerprints (``current``, with texts) with the lock's.

    ``digests_only``: a cell is ``reproduced`` when its digest is the lock's, else ``differs``
    (how ``verify`` without ``--outputs`` still names the first divergent cell). ``volatile``:
    the lock's volatile cells, whose moving spans are masked on both sides.
    """
    tol = tolerance or DEFAULT_OUTPUT_TOLERANCE
    templates = {cell.index: cell for cell in volatile}
    checks: list[OutputCheck] = []
    for k in range(max(len(reference), len(current))):
        if k >= len(current):
            ref = reference[k]
            checks.append(OutputCheck(ref.index, "missing", _excerpt(ref.text or "")))
        elif k >= len(reference):
            cur = current[k]
            checks.append(OutputCheck(cur.index, "unexpected", obtained=_excerpt(cur.text or "")))
        else:
            ref, cur, spans = _masked(reference[k], current[k], templates.get(reference[k].index))
            if digests_only:
                checks.append(OutputCheck(ref.index, _digest_status(ref, cur), volatile=spans))
            else:
                checks.append(replace(_check_cell(ref, cur, tol), volatile=spans))
    return tuple(checks)


def _masked(
    ref: CellFingerprint, cur: CellFingerprint, template: VolatileCell | None
) -> tuple[CellFingerprint, CellFingerprint, int]:
    """Both fingerprints with the template's spans masked (digests of the masked texts), and
    the number of spans; unchanged when the cell is not volatile or a text lost its shape."""
    if template is None or ref.text is None or cur.text is None:
        return ref, cur, 0
    masked = [mask_spans(template.literals, template.spans, t) for t in (ref.text, cur.text)]
    if masked[0] is None or masked[1] is None:
        return ref, cur, 0
    digest = ref.digest if masked[0] == masked[1] else cur.digest  # the same once masked
    return (
        replace(ref, text=masked[0]),
        replace(cur, text=masked[1], digest=digest),
        len(template.spans),
    )


def _digest_status(ref: CellFingerprint, cur: CellFingerprint) -> CheckStatus:
    return "reproduced" if ref.digest == cur.digest else "differs"


def _check_cell(ref: CellFingerprint, cur: CellFingerprint, tol: Tolerance) -> OutputCheck:
    if ref.digest == cur.digest:
        return OutputCheck(ref.index, "reproduced", _excerpt(ref.text or ""))
    if ref.text is None or cur.text is None:
        return OutputCheck(
            ref.index,
            "differs",
            obtained=_excerpt(cur.text or ""),
            note="output differs (the lock keeps only its digest: too long to store as text)",
        )
    comparison = compare_outputs(ref.text, cur.text, tol)
    deviation = comparison.deviation
    location = deviation.first_mismatch or deviation.max_abs_location
    line = _line_number(location)
    return OutputCheck(
        ref.index,
        comparison.status,
        _excerpt(ref.text, line),
        _excerpt(cur.text, line),
        location,
        deviation.max_abs_error if deviation.total_count else None,
    )


def first_failing(checks: Sequence[OutputCheck]) -> OutputCheck | None:
    """The first cell whose output did not reproduce (within tolerance), or None."""
    return next((check for check in checks if not check.passed), None)


def _line_number(location: str | None) -> int:
    if location and location.startswith("line "):
        number = location[5:].split()[0]
        if number.isdigit():
            return int(number)
    return 1


def _excerpt(text: str, line: int = 1) -> str:
    lines = text.split("\n")  # fingerprint texts are masked already
    chosen = lines[min(max(line, 1), len(lines)) - 1]
    return chosen if len(chosen) <= _EXCERPT else chosen[: _EXCERPT - 3] + "..."


def fingerprint_texts(
    node: Any, project_root: str | os.PathLike[str] | None = None
) -> tuple[CellFingerprint, ...]:
    """The executed notebook's fingerprints, texts kept whatever their length; the project's
    root masked as the lock masks it."""
    from reprokit.recording.lock import output_fingerprints

    return output_fingerprints(node, text_limit=None, project_root=project_root)


def current_fingerprints(
    reference: Sequence[CellFingerprint],
    node: Any,
    text_limit: int | None = None,
    volatile: Sequence[VolatileCell] = (),
    project_root: str | os.PathLike[str] | None = None,
) -> tuple[CellFingerprint, ...]:
    """The executed notebook's fingerprints to compare with ``reference`` (a lock's), the
    project's root (where this checkout is) masked as ``<PROJECT>``. A cell
    whose text as locks written before stream outputs were merged have it (each output on a
    line of its own) is the lock's, or alone has the shape of its volatile template, is given
    that text, so such a lock verifies as it did: only a cell whose kernel flushed elsewhere
    than then differs."""
    from reprokit.recording.lock import output_fingerprints

    merged = output_fingerprints(node, text_limit, project_root=project_root)
    locked = {cell.index: cell.digest for cell in reference}
    if all(locked.get(cell.index) == cell.digest for cell in merged):
        return merged  # the common case: nothing to look at twice
    split = output_fingerprints(node, text_limit, merge_streams=False, project_root=project_root)
    # a lock written while %repro end printed its line (store path and all): the cell as
    # printed then, where that is the lock's (where it was recorded, it verifies as it did)
    printed = output_fingerprints(
        node, text_limit, printed_end_line=True, project_root=project_root
    )
    templates = {cell.index: cell for cell in volatile}
    return tuple(
        old
        if old.digest != new.digest
        and (locked.get(old.index) == old.digest or _shaped(templates.get(old.index), old, new))
        else (then if locked.get(then.index) == then.digest else new)
        for new, old, then in zip(merged, split, printed, strict=True)
    )


def _shaped(template: VolatileCell | None, old: CellFingerprint, new: CellFingerprint) -> bool:
    """Whether only ``old``'s text has the shape of the volatile ``template``."""
    if template is None or old.text is None or new.text is None:
        return False
    fits = [
        mask_spans(template.literals, template.spans, t) is not None for t in (old.text, new.text)
    ]
    return fits == [True, False]
