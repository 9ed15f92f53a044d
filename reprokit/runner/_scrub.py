"""Secret parameter values out of what an execution wrote: ``<secret NAME>`` in their place.

A plain text file (the kernel log) is scrubbed as text. A notebook is JSON: a secret is
replaced inside its string values and the keys of what cells show (``display(JSON({token:
1}))``), never in a number, a key nbformat gives meaning, or the fields that give the notebook
its structure (a cell's ``cell_type`` and ``id``, an output's ``output_type``, a stream's
``name``). Replaced as raw text, a secret whose value is ``cell_type`` renamed every
cell's ``"cell_type"`` key, and one that is ``1`` broke every number: the notebook no longer
read back. A text spread over a list of lines (a cell's source, a stream's text) is scrubbed
whole, so that a secret of several lines is found too.

A cell's consecutive outputs of one stream are merged into one before they are scrubbed (as
Jupyter shows them, and as the lock's output text joins them): the kernel splits what a cell
prints wherever it flushed, so ``print(t[:6], end="", flush=True); print(t[6:])`` wrote a
secret in two outputs, neither of which held it.

A notebook is saved while it runs, each save scrubbed: a text that holds none of the values
and no two outputs of one stream (the common case, checked on the text at the cost of a
substring search and a count of its streams) is returned as it is, without being parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

SECRET_MARK = "<secret {name}>"

_CELL_STRUCTURE = frozenset({"cell_type", "id", "outputs"})
_OUTPUT_STRUCTURE = frozenset({"output_type"})
_STREAM_STRUCTURE = frozenset({"output_type", "name"})
_STREAM = re.compile(r'"output_type"\s*:\s*"stream"')
# a stream output as nbformat writes it (keys sorted): its name, then its type
_NAMED_STREAM = re.compile(r'"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"output_type"\s*:\s*"stream"')


def scrub_text(text: str, secrets: Mapping[str, str], *, json_escaped: bool) -> str:
    """``text`` with each secret value (as is, and as JSON escapes it where ``json_escaped``)
    replaced by ``<secret NAME>``."""
    return _scrubber(secrets, json_escaped=json_escaped)(text)


def _scrubber(secrets: Mapping[str, str], *, json_escaped: bool) -> Callable[[str], str]:
    """What :func:`scrub_text` does, its pattern made once. One pass, longest value first (a
    secret that contains another is replaced whole), and a ``<secret NAME>`` already there is
    kept: scrubbed again (each save, then the end), a secret ``outputs`` made
    ``<secret <secret outputs_token>_token>``."""
    names: dict[str, str] = {}  # each form a value is written in -> its parameter's name
    for name, value in sorted(secrets.items(), key=lambda item: -len(item[1])):
        forms = {value}
        if json_escaped:  # as a json.dumps writes it: once (or twice, a json.dumps printed)
            once = json.dumps(value)[1:-1]
            forms |= {once, json.dumps(once)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
        names.update((form, name) for form in forms if form and form not in names)
    if not names:
        return lambda text: text
    marks = [SECRET_MARK.format(name=name) for name in secrets]
    found = sorted(names, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(each) for each in [*marks, *found]))

    def replace(match: re.Match[str]) -> str:
        text = match.group()
        return SECRET_MARK.format(name=names[text]) if text in names else text

    return lambda text: pattern.sub(replace, text)


def scrub_notebook_text(text: str, secrets: Mapping[str, str]) -> str:
    """A notebook's JSON ``text`` with each secret value replaced by ``<secret NAME>`` inside
    its strings only (see the module docstring); text that is not JSON is scrubbed as text."""
    live = {name: value for name, value in secrets.items() if value}
    if not live or not (_may_hold(text, live.values()) or _may_split(text)):
        return text
    try:
        node = json.loads(text)
    except ValueError:
        return scrub_text(text, live, json_escaped=True)
    scrub = _scrubber(live, json_escaped=True)
    out = json.dumps(_scrubbed_notebook(node, scrub), indent=1, ensure_ascii=False)
    return out + "\n" if text.endswith("\n") else out


def scrub_output(output: dict[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """One notebook output (a dict), scrubbed as :func:`scrub_notebook_text` scrubs those of a
    notebook."""
    live = {name: value for name, value in secrets.items() if value}
    if not live:
        return output
    scrubbed: dict[str, Any] = _scrubbed_output(output, _scrubber(live, json_escaped=True))
    return scrubbed


def _may_hold(text: str, values: Any) -> bool:
    """Whether a string of the JSON ``text`` may hold one of ``values``: it is in the text as
    is or JSON-escaped (a value of several lines may be split over a list of lines)."""
    # a value JSON escapes may be in the text escaped once or twice (a json.dumps printed):
    # parsed to be sure
    return any("\n" in value or _escaped_by_json(value) or value in text for value in values)


def _may_split(text: str) -> bool:
    """Whether two outputs of the JSON ``text`` may be of one stream (a value may then be split
    between them): two stream outputs of one name, or stream outputs whose name was not found
    right before their type (keys not in nbformat's order)."""
    streams = len(_STREAM.findall(text))
    if streams < 2:
        return False
    names = _NAMED_STREAM.findall(text)
    return len(names) < streams or len(set(names)) < len(names)


def _escaped_by_json(value: str) -> bool:
    return not value.isascii() or any(ch in '"\\' or ord(ch) < 32 for ch in value)


def _scrubbed_notebook(node: Any, scrub: Callable[[str], str]) -> Any:
    cells = node.get("cells") if isinstance(node, dict) else None
    if not isinstance(cells, list):
        return _scrubbed_json(node, scrub)
    out = {
        key: value if key == "cells" else _scrubbed_json(value, scrub)
        for key, value in node.items()
    }
    out["cells"] = [_scrubbed_cell(cell, scrub) for cell in cells]
    return out


def _scrubbed_cell(cell: Any, scrub: Callable[[str], str]) -> Any:
    if not isinstance(cell, dict):
        return _scrubbed_json(cell, scrub)
    out = _scrubbed_fields(cell, scrub, _CELL_STRUCTURE)
    outputs = cell.get("outputs")
    if isinstance(outputs, list):
        out["outputs"] = [_scrubbed_output(output, scrub) for output in _merged_streams(outputs)]
    elif "outputs" in cell:
        out["outputs"] = _scrubbed_json(outputs, scrub)
    return out


def _merged_streams(outputs: list[Any]) -> list[Any]:
    """A cell's ``outputs`` with each run of consecutive outputs of one stream (``stdout``,
    ``stderr``) merged into one, its text the texts joined, as Jupyter shows them."""
    merged: list[Any] = []
    for output in outputs:
        text, before = _stream_text(output), _stream_text(merged[-1]) if merged else None
        if text is None or before is None or output.get("name") != merged[-1].get("name"):
            merged.append(output)
        else:
            merged[-1] = {**merged[-1], "text": before + text}
    return merged


def _stream_text(output: Any) -> str | None:
    """The text of a stream output (its list of lines joined); ``None`` for anything else."""
    if not isinstance(output, dict) or output.get("output_type") != "stream":
        return None
    text = output.get("text")
    if isinstance(text, list) and all(isinstance(line, str) for line in text):
        return "".join(text)
    return text if isinstance(text, str) else None


def _scrubbed_output(output: Any, scrub: Callable[[str], str]) -> Any:
    if not isinstance(output, dict):
        return _scrubbed_json(output, scrub)
    stream = output.get("output_type") == "stream"
    return _scrubbed_fields(output, scrub, _STREAM_STRUCTURE if stream else _OUTPUT_STRUCTURE)


def _scrubbed_fields(
    node: dict[str, Any], scrub: Callable[[str], str], kept: frozenset[str]
) -> dict[str, Any]:
    return {
        key: value if key in kept else _scrubbed_json(value, scrub) for key, value in node.items()
    }


def _scrubbed_json(value: Any, scrub: Callable[[str], str]) -> Any:
    """``value`` with ``scrub`` applied to every string in it, keys too (a secret shown as a
    key: ``display(JSON({token: 1}))``), except the keys nbformat and its tools give meaning
    (:data:`_KNOWN_KEYS`)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {
            key if key in _KNOWN_KEYS else scrub(key): _scrubbed_json(item, scrub)
            for key, item in value.items()
        }
    if isinstance(value, list):
        if _is_lines(value):
            return _scrubbed_lines(value, scrub)
        return [_scrubbed_json(item, scrub) for item in value]
    return value


def _is_lines(value: list[Any]) -> bool:
    """A multi-line text as nbformat stores it: strings, each but the last ending a line (a
    list of plain strings, ``['1.4', '2.0']``, is scrubbed item by item: never joined)."""
    return (
        len(value) > 1
        and all(isinstance(item, str) for item in value)
        and all(item.endswith("\n") for item in value[:-1])
    )


_KNOWN_KEYS = frozenset(
    {
        "cells", "metadata", "nbformat", "nbformat_minor", "cell_type", "id", "source",
        "outputs", "output_type", "execution_count", "attachments", "data", "text", "name",
        "ename", "evalue", "traceback", "transient", "display_id", "kernelspec",
        "language_info", "display_name", "language", "version", "tags", "papermill",
        "jupyter", "collapsed", "scrolled", "execution", "widgets", "jupytext", "reprokit",
        "text/plain", "text/html", "text/markdown", "application/json", "image/png",
    }
)  # fmt: skip


def _scrubbed_lines(lines: list[str], scrub: Callable[[str], str]) -> list[str]:
    """A list of strings, each scrubbed; when a secret spans two of them (a text split into
    lines), the joined text scrubbed and split into lines again."""
    each = [scrub(line) for line in lines]
    joined = "".join(lines)
    whole = scrub(joined)
    if whole == joined or "".join(each) == whole:
        return each
    return whole.splitlines(keepends=True)
