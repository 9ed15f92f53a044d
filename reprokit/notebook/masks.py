"""The volatile parts of a cell's text that need context to be told from stable ones.

A ratio ``80:20`` looks like a clock time, a configured ``3 days`` like a measured duration, and
``/tmp/data/train.csv`` is a temporary path that names a file; so each mask here looks at what
surrounds a candidate (:func:`mask_clock_times`, :func:`mask_durations`), or masks only the part
of a path that changes between runs or machines (:func:`mask_temp_paths`,
:func:`mask_library_paths`, :func:`mask_project_root`). :func:`reprokit.notebook.text.
mask_volatile` applies them after the context-free masks (timestamps, dates, progress bars), whose
placeholders (``<DATE>``, ``<PROGRESS>``) some of these rules read as context. Every mask is
idempotent: a placeholder never reads as a candidate, and the context a rule reads is made by
masks that run before it.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

__all__ = [
    "mask_clock_times",
    "mask_durations",
    "mask_library_paths",
    "mask_project_root",
    "mask_temp_paths",
]

# ----------------------------------------------------------------------------- clock times

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?"
)
_WEEKDAY = r"(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day|sday|nesday|rsday|urday)?\b\.?"
# H:MM or H:MM:SS(.fff), not part of a longer run of digits and colons.
_CLOCK = re.compile(r"(?<![\d:.])(\d{1,2}):[0-5]\d(:[0-5]\d(?:\.\d+)?)?(?![\d:]|\.\d)")
# What may stand right before a clock time: a date (masked already, or written day-first,
# or with a month's name), a weekday, or a word that says a time follows.
_CLOCK_BEFORE = re.compile(
    r"(?:<DATE>|<TIMESTAMP>|\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\b" + _MONTH + r"\s+\d{1,2}"
    r"(?:,?\s+\d{4})?|\b\d{1,2}\s+" + _MONTH + r"(?:\s+\d{4})?|\b" + _WEEKDAY + r",?)[\sT,]+\Z"
    r"|\b(?:at|time|clock|started|starting|start|ended|ending|finished|since|until|till|now"
    r"|today|tonight|tomorrow|yesterday|eta|elapsed|remaining|updated|modified|created"
    r"|timestamp|deadline)\s*[:=]?\s*\Z",
    re.IGNORECASE,
)
_CLOCK_AFTER = re.compile(r"\A\s?(?:[ap]\.?m\.?(?!\w)|utc\b|gmt\b|z\b|[+-]\d{2}:?\d{2}\b)", re.I)


def mask_clock_times(text: str) -> str:
    """Clock times and elapsed times as ``<TIME>``. ``H:MM:SS`` (an hour up to 23, minutes and
    seconds up to 59, optionally a fraction) always; ``H:MM``, which a ratio (``80:20``) or a
    score (``3:1``) shares, only in context: after a date or a weekday, after a word that
    announces a time (``at``, ``time``, ``since``, ``ETA``, ``elapsed``...), before ``am``/
    ``pm``/a time zone, or inside tqdm's ``[elapsed<remaining, rate]`` brackets."""
    return _CLOCK.sub(_clock_or_ratio, text)


_CONTEXT = 64  # characters of a line read before a candidate (a window keeps masking linear)


def _clock_or_ratio(found: re.Match[str]) -> str:
    text, start, end = found.string, found.start(), found.end()
    before = text[max(0, start - _CONTEXT) : start].rpartition("\n")[2]
    after = text[end : end + 12]
    if found.group(2) and int(found.group(1)) <= 23:
        return "<TIME>"
    if _CLOCK_BEFORE.search(before) or _CLOCK_AFTER.match(after):
        return "<TIME>"
    tqdm = (before.endswith("[") and after[:1] in ("<", ",")) or (
        before.endswith("<") and after[:1] in (",", "]")
    )
    return "<TIME>" if tqdm else found.group()


# ----------------------------------------------------------------------------- durations

_DURATION_UNITS = r"ns|µs|μs|us|ms|s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?|days?"
_DURATION_TEXT = rf"\d+(?:\.\d+)?\s?(?:{_DURATION_UNITS})(?!\w)"
_DURATION = re.compile(rf"(?<![\w.]){_DURATION_TEXT}")
# A timing context before a duration, on its line: a timing word ("took", "elapsed", "Wall
# time:", "total time=", "in" after "done", "finished"... earlier on the line), %timeit's "±",
# or a progress bar (Keras: "10/10 [===] - 1s", "10/10 - 1s").
_TIMING_BEFORE = re.compile(
    r"(?:(?:\b(?:took|taking|takes|elapsed|runtime|latency|eta"
    r"|(?:wall|cpu|run|running|execution|exec|elapsed|total|compute|training|train|fit|fitting"
    r"|inference|step|epoch|batch|iteration|load|loading|query|response)[ _]time"
    r"|time[ _](?:taken|elapsed|spent)"
    r"|(?:done|finished|completed|ran|executed|trained|fitted|converged|loaded|computed"
    r"|processed|built)\b.*\sin)|^\s*time)\s*[:=]?\s*(?:~\s*|about\s+|approx\.?\s+)?"
    r"|±\s*|\+/-\s*|<PROGRESS>\s*-?\s*|^\s*\d+/\d+\s+-\s+)\Z",
    re.IGNORECASE,
)
# After a duration (matched where it ends): %timeit's "± ..." and "per loop", a rate's
# "/step", "elapsed", or the per-step time that follows Keras's epoch time ("1s 5ms/step").
_TIMING_AFTER = re.compile(
    r"(?:\s*(?:±|\+/-)|\s+per\s+(?:loop|step|batch|epoch|iteration|sample|it)\b"
    rf"|/(?:step|sample|batch|epoch|it|iter)\b|\s+elapsed\b|[\s-]+{_DURATION_TEXT}/(?:step|sample))",
    re.IGNORECASE,
)


def mask_durations(text: str) -> str:
    """Durations ("1.23s", "12 ms", "1min 3s") as ``<DURATION>`` where a timing tool printed
    them (see ``_TIMING_BEFORE``/``_TIMING_AFTER``, and every one on %%time's ``CPU times:``
    line); a quantity in other words (``horizon: 3 days``, ``timeout=30s``) is compared."""
    return "\n".join(_durations_in_line(line) for line in text.split("\n"))


def _durations_in_line(line: str) -> str:
    pieces: list[str] = []
    at, last_end = 0, -1  # last_end: where the last masked duration ended
    every = line.lstrip().startswith("CPU times:")  # %%time's: "user 1.2 s, sys: 3 ms, ..."
    for found in _DURATION.finditer(line):
        start, end = found.start(), found.end()
        # "\0" stands for the cut-off part, so that "^" means the start of the line
        before = ("" if start <= _CONTEXT else "\0") + line[max(0, start - _CONTEXT) : start]
        if last_end >= 0 and not line[last_end:start].strip(" "):  # "1min 3s": one duration
            at = last_end = end
        elif (
            every or _TIMING_BEFORE.search(before) or _TIMING_AFTER.match(line, end, end + _CONTEXT)
        ):
            pieces += [line[at:start], "<DURATION>"]
            at = last_end = end
    return "".join(pieces) + line[at:]


# ----------------------------------------------------------------------------- paths

_PATH_PART = r"[^\s'\"<>|:;,*?/\\()\[\]]+"
# A path starts a line or follows a space, a quote, a bracket or "=": not inside a word (one
# start per path keeps the search linear)
_PATH_START = r"(?<![^\s'\"(\[=])"
# An absolute path up to and including site-packages/dist-packages (a virtual environment's,
# conda's, the system's), then the stdlib's own folder (".../lib/python3.11").
_SITE_PACKAGES = re.compile(
    rf"{_PATH_START}(?:[A-Za-z]:)?(?:[/\\]{_PATH_PART})*?[/\\](?:site|dist)-packages(?=[/\\])"
)
_STDLIB = re.compile(
    rf"{_PATH_START}(?:[A-Za-z]:)?(?:[/\\]{_PATH_PART})*?[/\\]lib[/\\]python\d(?:\.\d+)?t?"
    r"(?=[/\\])"
)
# A library file's line number: "<SITE_PACKAGES>/x/y.py:469:" (a warning), '.py", line 469'.
_LIBRARY_LINE = re.compile(
    r"((?:<SITE_PACKAGES>|<STDLIB>)[/\\][^\s'\"<>:]*?\.py[xi]?)(:|\"?, line )\d+\b"
)


def mask_library_paths(text: str) -> str:
    """Where the machine keeps Python's packages and standard library, as ``<SITE_PACKAGES>`` and
    ``<STDLIB>`` (the path inside them is compared), and the line numbers of a file there as
    ``<LINE>``: they move with any release of that library, which the environment diff reports."""
    text = _SITE_PACKAGES.sub("<SITE_PACKAGES>", text)
    text = _STDLIB.sub("<STDLIB>", text)
    return _LIBRARY_LINE.sub(r"\1\2<LINE>", text)


@functools.lru_cache(maxsize=16)
def _root_pattern(roots: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(root) for root in sorted(roots, key=len, reverse=True))
    return re.compile(rf"(?<![\w.~-])(?:{alternatives})(?![\w.~-])")


def mask_project_root(text: str, root: str | os.PathLike[str] | None) -> str:
    """The project's absolute root as ``<PROJECT>`` (as given and resolved: a clone elsewhere
    prints ``<PROJECT>/figs/fig3.png`` too); ``root=None`` masks nothing."""
    if root is None:
        return text
    given = os.fspath(root).rstrip("/\\")
    roots = {given, str(Path(given).resolve())} - {"", "/"}
    return _root_pattern(tuple(sorted(roots))).sub("<PROJECT>", text) if roots else text


# A temporary folder: /tmp, /var/tmp, macOS's /var/folders/<2 random levels> (also under
# /private), Windows' ...\Temp; then the rest of the path.
_TEMP_PATH = re.compile(r"(?<![\w.~>-])(?:/private)?/(?:tmp|var/tmp|var/folders)/[^\s'\"<>,;)\]]*")
_WINDOWS_TEMP = re.compile(r"[A-Z]:\\(?:[^\\\s]+\\)*?(?:Temp|tmp)(?=\\)", re.IGNORECASE)
_WINDOWS_PATH_REST = r"[^\s'\"<>,;)\]]*"
_RANDOM_PARTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), placeholder)
    for pattern, placeholder in (
        (r"^((?:/private)?/var/folders)/[^/]+/[^/]+", r"\1/<TMP>"),
        (r"(?<=[/\\])pytest-of-[^/\\]+[/\\]pytest-\d+(?=[/\\]|\Z)", "<TMP>"),
        (r"(?<=[/\\])ipykernel_\d+(?=[/\\]|\Z)", "<TMP>"),
        # tempfile's names: a prefix ("tmp" unless given), 8 of [a-z0-9_], a suffix if given
        (r"(?<=[/\\])tmp[a-z0-9_]{8}(?=(?:\.\w+)?(?:[/\\]|\Z))", "<TMP>"),
        (r"(?<=[/\\])([\w.-]*[-_.])[a-z0-9_]{8}(?=(?:\.\w+)?(?:[/\\]|\Z))", r"\1<TMP>"),
    )
)


def mask_temp_paths(text: str) -> str:
    """In a temporary path, the parts that change from run to run as ``<TMP>``: tempfile's names
    (``tmpab12cd34``, ``<prefix>ab12cd34``, with any suffix kept), pytest's
    ``pytest-of-<user>/pytest-<N>``, ipykernel's ``ipykernel_<pid>``, macOS's two random levels
    under ``/var/folders``; a Windows temp folder (``C:\\Users\\<name>\\...\\Temp``) as
    ``<TMPDIR>``. The rest of the path (``/tmp/data/train.csv``) is compared."""
    text = _TEMP_PATH.sub(_random_parts, text)
    return re.sub(_WINDOWS_TEMP.pattern + _WINDOWS_PATH_REST, _windows_temp, text, flags=re.I)


def _random_parts(found: re.Match[str]) -> str:
    path = found.group()
    for pattern, placeholder in _RANDOM_PARTS:
        path = pattern.sub(placeholder, path)
    return path


def _windows_temp(found: re.Match[str]) -> str:
    rest = _WINDOWS_TEMP.sub("", found.group(), count=1)
    for pattern, placeholder in _RANDOM_PARTS[1:]:
        rest = pattern.sub(placeholder, rest)
    return "<TMPDIR>" + rest
