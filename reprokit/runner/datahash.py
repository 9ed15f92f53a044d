"""The data a notebook's ``%repro start`` names, hashed while its kernel starts.

The kernel takes the manifest only if nothing under the data changed until the start cell
began, and only for exactly what it asks (:mod:`reprokit.capturing.prehashed`). Here: which
notebooks qualify, and when the manifest is handed over. A notebook qualifies when its first
``%repro start`` has ``--data`` and comes before any code of its own: only blank lines,
comments, ``%load_ext reprokit`` and assignments of literal values (a ``parameters`` cell) may
precede it, so nothing of the notebook can have changed the data first. ``$name`` in the
line is expanded from those literals and papermill's parameters, as IPython will.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reprokit.capturing.prehashed import PREHASHED_ENV, DataRequest, Prehash
from reprokit.notebook.magicline import start_data

__all__ = ["data_ahead", "start_cell_request"]

_LOAD_EXT = re.compile(r"%(re)?load_ext\s+reprokit\s*(#.*)?")


def start_cell_request(
    node: Any, cwd: Path, relative_to: Path, parameters: Mapping[str, Any] | None = None
) -> tuple[str, DataRequest] | None:
    """The source of the cell holding the notebook's first ``%repro start`` and what it
    hashes, if that line has ``--data`` and no code of the notebook runs before it. ``$name``
    in the line is expanded as IPython will, from the literals assigned before it and the
    ``parameters`` papermill injects; any other expansion (``{expr}``, ``$x.y``, an unknown
    name, a value with spaces or quotes) and the notebook is not hashed ahead."""
    cells = [cell for cell in node.get("cells", []) if cell.get("cell_type") == "code"]
    if any("injected-parameters" in _tags(cell) for cell in cells):
        return None  # papermill replaces that cell: what it held is not what will run
    given = dict(parameters or {})
    tagged = [cell for cell in cells if "parameters" in _tags(cell)][:1]  # injected after
    known: dict[str, Any] = {} if tagged else dict(given)  # or at the top
    for cell in cells:
        source = _text(cell.get("source", ""))
        found = _start_line(source)
        if found is None:
            values = _literals(source)
            if values is None:
                return None
            known.update(values)
            if tagged and cell is tagged[0]:
                known.update(given)
            continue
        expanded = _expanded(found, known)
        paths = start_data(expanded) if expanded is not None else None
        return (source, DataRequest(tuple(paths), str(cwd), str(relative_to))) if paths else None
    return None


def _tags(cell: Any) -> list[Any]:
    tags = cell.get("metadata", {}).get("tags", [])
    return tags if isinstance(tags, list) else []


_DOLLAR = re.compile(r"\$([A-Za-z_]\w*)")
_UNSAFE = re.compile(r"[\s'\"$#{}\\]")


def _expanded(line: str, known: Mapping[str, Any]) -> str | None:
    """``line`` with each ``$name`` replaced by the literal ``name`` holds (None: another
    expansion, or a value that would not be one word)."""
    if "{" in line or "}" in line or "$$" in line or ("$" in line and ("'" in line or '"' in line)):
        return None
    parts, end = [], 0
    for match in _DOLLAR.finditer(line):
        value = known.get(match.group(1))
        if line[match.end() : match.end() + 1] in (".", "[", "(") or value is None:
            return None
        try:
            text = str(value) if isinstance(value, (int, float, str)) else ""
        except ValueError:  # an int past sys.get_int_max_str_digits(): IPython expands nothing
            return None
        if not text or _UNSAFE.search(text):
            return None
        parts += [line[end : match.start()], text]
        end = match.end()
    rest = line[end:]
    return None if "$" in rest else "".join(parts) + rest


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def _start_line(source: str) -> str | None:
    """The cell's ``%repro start`` line if only blank lines, comments and ``%load_ext
    reprokit`` come before it."""
    for line in source.splitlines():
        text = line.strip()
        if not text or text.startswith("#") or _LOAD_EXT.fullmatch(text):
            continue
        return text if re.match(r"%repro\s+start(\s|$)", text) else None
    return None


def _literals(source: str) -> dict[str, Any] | None:
    """The names a cell of blank lines, comments, ``%load_ext reprokit`` and literal
    assignments binds, with their values; None for any other cell."""
    lines = [line for line in source.splitlines() if not _LOAD_EXT.fullmatch(line.strip())]
    try:
        tree = ast.parse("\n".join(lines))
    except (SyntaxError, ValueError, MemoryError, RecursionError):  # another magic, a shell
        return None  # escape (code of its own), or too deeply nested to parse
    values: dict[str, Any] = {}
    for statement in tree.body:
        bound = _literal_assignment(statement)
        if bound is None:
            return None
        values.update(bound)
    return values


def _literal_assignment(statement: ast.stmt) -> dict[str, Any] | None:
    """The names ``statement`` binds to a literal, with its value; None if it is not
    ``name = literal`` (or annotated so)."""
    if isinstance(statement, ast.Assign):
        targets, value = statement.targets, statement.value
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        # a module-level annotation is evaluated: any expression there is code that runs
        if not isinstance(statement.annotation, ast.Name):
            return None
        targets, value = [statement.target], statement.value
    else:
        return None
    if not all(isinstance(target, ast.Name) for target in targets):
        return None
    try:
        literal = ast.literal_eval(value)
    except (ValueError, TypeError, MemoryError, RecursionError):  # {[]: 1} raises TypeError
        return None
    return {target.id: literal for target in targets if isinstance(target, ast.Name)}


@contextmanager
def data_ahead(
    node: Any,
    cwd: Path,
    env: Mapping[str, str],
    parameters: Mapping[str, Any] | None = None,
) -> Iterator[tuple[Mapping[str, str], Callable[[Any], None] | None]]:
    """For the time of an execution (``cwd``: the kernel's working folder, the data shown
    relative to its project; ``parameters``: papermill's): the kernel's environment (naming
    where the manifest will be) and the hook to call as each cell starts (it hands the
    manifest over as the start cell begins); ``env`` and no hook where the notebook does not
    qualify."""
    from reprokit.recording.target import find_project_root

    try:
        found = start_cell_request(node, cwd, find_project_root(cwd), parameters)
    except Exception:  # a speed-up only: whatever it trips on, the kernel hashes (or fails)
        found = None
    if found is None:
        yield env, None
        return
    (source, request), published = found, False
    prehash = Prehash.start(request)

    def before_cell(cell: Any) -> None:
        nonlocal published
        if published:  # the start cell is over (it failed before taking the manifest?):
            prehash.retract()  # no later %repro start takes what was hashed before its code
        elif _text(cell.get("source", "")) == source:
            published = True
            prehash.publish()

    try:
        yield {**env, PREHASHED_ENV: str(prehash.path)}, before_cell
    finally:
        prehash.close()
