"""Cell outputs as text, shared by the lock writer and the comparison.

:func:`cell_text` is a code cell's text output (streams, ``text/plain``, errors as
``ename: evalue``); :func:`mask_volatile` replaces timestamps, dates, progress bars and rates
(tqdm), memory addresses (``0x7f…``), MLflow ids (32 hex digits, unless labelled as a digest: see
:func:`mask_ids`) and UUIDs by placeholders such as ``<TIMESTAMP>``, then what needs context
(:mod:`reprokit.notebook.masks`): clock times (``12:03:04``; ``12:03`` only beside a date or
a time word, never a ratio ``80:20``), durations a timing tool printed (``took 1.23s``, not
``horizon: 3 days``), the random parts of temporary paths, where the machine keeps Python's
libraries, and the project's root; carriage returns keep the last state of a line, as a
terminal shows it.

:func:`mask_spans` masks the spans a lock marked volatile (``record --repeat``): the cell's
text is matched against a template of literal text and span kinds (:data:`SPAN_PATTERNS`), and
each span becomes ``<VOLATILE>``. The patterns are fixed here; a lock only names their kinds,
so a lock never carries a regular expression of its own.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from typing import Any

from reprokit.notebook.masks import (
    mask_clock_times,
    mask_durations,
    mask_library_paths,
    mask_project_root,
    mask_temp_paths,
)

__all__ = [
    "SPAN_PATTERNS",
    "VOLATILE",
    "cell_text",
    "mask_ids",
    "mask_spans",
    "mask_volatile",
    "span_kind",
]


# 32 hex digits: an MLflow id (run, logged model "m-", trace "tr-") unless labelled as a
# digest (see mask_ids). Lowercase only, as MLflow and hashlib print them.
_HEX32 = re.compile(r"\b[0-9a-f]{32}\b")
_ID_PREFIX = re.compile(r"(?<![\w-])(?:m|tr)-\Z")
# A word naming a digest ("md5", "md5sum", "file_hash", "hexdigest", "ETag", "sha1"), then
# optionally "(file)" as BSD md5 prints, then 1 to 4 other characters: "md5: ", '"etag": "'.
_LABELLED = re.compile(r"(?<!\w)(\w+)(?: ?\([^()\n]{0,120}\))?[^\w\n]{1,4}\Z")
_DIGEST_WORD = re.compile(
    r"md5|hash|digest|checksum|fingerprint|(?:^|_)(?:e_?tag|sha\d*)(?:_|$)", re.IGNORECASE
)
# md5sum's line: "<hex>  name" or "<hex> *name" (a name without runs of spaces: a table row
# has columns).
_MD5SUM_LINE = re.compile(r"\\?[0-9a-f]{32} [ *]\S(?:\S| (?=\S))*")
# A column of MLflow ids: "run_id" over a DataFrame of mlflow.search_runs().
_ID_COLUMN = re.compile(
    r"(?<![\w<])(?:run_id|run_uuid|parent_run_id|model_id|trace_id|request_id)(?![\w>])"
)


def mask_ids(text: str) -> str:
    """``text`` with each MLflow id replaced by ``<RUN_ID>`` (its ``m-``/``tr-`` prefix kept):
    every token of exactly 32 lowercase hex digits, except a digest labelled as one -- a
    word naming a digest ending at most 4 characters before it (``md5: <hex>``,
    ``md5sum=<hex>``, ``'etag': '<hex>'``, ``MD5 (a.csv) = <hex>``) or md5sum's line format
    (``<hex>  a.csv``) outside a paragraph under an id column header. An ``m-`` or ``tr-``
    prefixed one is always an id."""
    lines = text.split("\n")
    under_ids = False  # a line above in this paragraph names an id column
    for k, line in enumerate(lines):
        if not line.strip():
            under_ids = False
        if _HEX32.search(line):
            md5sum = not under_ids and _MD5SUM_LINE.fullmatch(line.rstrip()) is not None
            lines[k] = _HEX32.sub(functools.partial(_id_or_digest, md5sum_line=md5sum), line)
        under_ids = under_ids or _ID_COLUMN.search(line) is not None
    return "\n".join(lines)


def _id_or_digest(found: re.Match[str], *, md5sum_line: bool) -> str:
    before = found.string[max(0, found.start() - 200) : found.start()]
    if _ID_PREFIX.search(before):
        return "<RUN_ID>"
    if md5sum_line and found.start() <= 1:
        return found.group()
    label = _LABELLED.search(before)
    return found.group() if label and _DIGEST_WORD.search(label.group(1)) else "<RUN_ID>"


_MONTH_ABBR = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, flags), placeholder)
    for pattern, flags, placeholder in (
        # tqdm: " 45%|████▌     | 45/100 [00:01<00:02, 30.5it/s]"
        (r"\d{1,3}%\|[^|\n]*\|", 0, "<PROGRESS>"),
        (r"\d+(?:\.\d+)?[kMG]?/\d+(?:\.\d+)?[kMG]?\s*\[[^\]\n]*\]", 0, "<PROGRESS>"),
        (r"\d+(?:\.\d+)?\s?(?:it/s|s/it|[kMG]?B/s|samples/s|steps?/s)", 0, "<RATE>"),
        (
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?",
            0,
            "<TIMESTAMP>",
        ),
        # time.ctime(), date(1): "Wed May  1 12:03:04 2024"
        (
            rf"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) {_MONTH_ABBR} [ \d]\d \d{{2}}:\d{{2}}:\d{{2}}"
            r"(?: [A-Z]{3,4})? \d{4}\b",
            0,
            "<TIMESTAMP>",
        ),
        (r"\b\d{4}[-/]\d{2}[-/]\d{2}\b", 0, "<DATE>"),
        (r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I, "<UUID>"),
        (r"\b0x[0-9a-f]{6,16}\b", re.I, "<ADDRESS>"),
    )
)


def mask_volatile(text: str, project_root: str | os.PathLike[str] | None = None) -> str:
    """``text`` with run-dependent parts replaced by placeholders (idempotent): see the module
    docstring, and :mod:`reprokit.notebook.masks` for the masks that read context.
    ``project_root``: the project's absolute root, masked as ``<PROJECT>``."""
    text = text.replace("\r\n", "\n")
    if "\r" in text:
        text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    text = mask_ids(text)
    for pattern, placeholder in _MASKS:
        text = pattern.sub(placeholder, text)
    text = mask_library_paths(text)
    text = mask_project_root(text, project_root)
    text = mask_temp_paths(text)
    return mask_durations(mask_clock_times(text))


def cell_text(cell: Any, *, merge_streams: bool = True) -> str:
    """The text output of an nbformat code cell (a str is taken as the output itself).

    Consecutive outputs of one stream are one text, as a notebook shows them: the kernel
    splits a cell's printing wherever it happened to flush, which changes from run to run.
    ``merge_streams=False``: each on a line of its own, as reprokit 0.1.0 (the locks it
    wrote) joined them."""
    if isinstance(cell, str):
        return cell
    parts: list[str] = []
    stream = None  # the stream the last part came from, to continue it
    for output in cell.get("outputs", ()):
        kind = output.get("output_type")
        if kind == "stream":
            text, name = _joined(output.get("text", "")), output.get("name")
            if merge_streams and parts and name == stream:
                parts[-1] += text
            else:
                parts.append(text)
            stream = name
            continue
        stream = None
        if kind in ("execute_result", "display_data"):
            parts.append(_joined(output.get("data", {}).get("text/plain", "")))
        elif kind == "error":
            parts.append(f"{output.get('ename', '')}: {output.get('evalue', '')}")
    return "\n".join(p for p in parts if p)


def _joined(text: str | Sequence[str]) -> str:
    return text if isinstance(text, str) else "".join(text)


VOLATILE = "<VOLATILE>"
"""What a masked volatile span reads as."""

SPAN_PATTERNS: dict[str, str] = {
    "number": r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|NaN|inf|Inf)",
    "word": r"\w+",
    "text": r"[^\n]*?",
}
"""Span kind -> what it matches: a number of any length, a word, any text within a line."""

_KIND_OF = (("number", re.compile(SPAN_PATTERNS["number"])), ("word", re.compile(r"\w+")))


def span_kind(token: str) -> str:
    """The narrowest span kind that matches ``token`` whole."""
    return next((kind for kind, regex in _KIND_OF if regex.fullmatch(token)), "text")


def mask_spans(literals: Sequence[str], spans: Sequence[str], text: str) -> str | None:
    """``text`` with each span of the template replaced by :data:`VOLATILE`; None when the
    text does not have the template's shape (its literal parts changed).

    Matched left to right without backtracking (a lock is untrusted: no template may cost more
    than a pass over the text): a ``number`` or ``word`` span takes the longest match where it
    starts, a ``text`` span runs to the first occurrence of the next literal on its line."""
    if len(literals) != len(spans) + 1 or any(kind not in SPAN_PATTERNS for kind in spans):
        return None
    if not text.startswith(literals[0]):
        return None
    pieces, at = [literals[0]], len(literals[0])
    for k, (kind, literal) in enumerate(zip(spans, literals[1:], strict=True)):
        end = _span_end(kind, literal, text, at, last=k == len(spans) - 1)
        if end is None or not text.startswith(literal, end):
            return None
        pieces += [VOLATILE, literal]
        at = end + len(literal)
    return "".join(pieces) if at == len(text) else None


_SPAN_REGEX = {kind: re.compile(pattern) for kind, pattern in SPAN_PATTERNS.items()}


def _span_end(kind: str, literal: str, text: str, at: int, *, last: bool) -> int | None:
    if kind != "text":
        found = _SPAN_REGEX[kind].match(text, at)
        return None if found is None or found.end() == at else found.end()
    line_end = text.find("\n", at)
    line_end = len(text) if line_end < 0 else line_end
    if last and not literal:
        return line_end if line_end == len(text) else None
    start = text.find(literal, at)
    return None if start < 0 or start > line_end else start
