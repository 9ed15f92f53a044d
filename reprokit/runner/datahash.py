"""The data a notebook's ``%repro start`` names, hashed while its kernel starts.

The kernel takes the manifest only if nothing under the data changed until the start cell
began, and only for exactly what it asks (:mod:`reprokit.capturing.prehashed`). Here: which
notebooks qualify, and when the manifest is handed over. A notebook qualifies when its first
``%repro start`` has ``--data`` and comes before any code of its own: only blank lines,
comments, ``%load_ext reprokit`` and assignments of literal values (a ``parameters`` cell) may
precede it, so nothing of the notebook can have changed the data first.
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


def start_cell_request(node: Any, cwd: Path, relative_to: Path) -> tuple[str, DataRequest] | None:
    """The source of the cell holding the notebook's first ``%repro start`` and what it
    hashes, if that line has ``--data`` and no code of the notebook runs before it."""
    for cell in node.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = _text(cell.get("source", ""))
        found = _start_line(source)
        if found is None:
            if _inert(source):
                continue
            return None
        paths = start_data(found)
        if not paths:
            return None
        return source, DataRequest(tuple(paths), str(cwd), str(relative_to))
    return None


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def _start_line(source: str) -> str | None:
    """The cell's ``%repro start`` line if only blank lines, comments and ``%load_ext
    reprokit`` come before it."""
    for line in source.splitlines():
        text = line.strip()
        if not text or text.startswith("#") or _LOAD_EXT.fullmatch(text):
            continue
        return text if text.startswith("%repro") and start_data(text) is not None else None
    return None


def _inert(source: str) -> bool:
    """A cell of blank lines, comments, ``%load_ext reprokit`` and literal assignments."""
    lines = [line for line in source.splitlines() if not _LOAD_EXT.fullmatch(line.strip())]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:  # another magic, a shell escape: code of its own
        return False
    return all(_literal_assignment(statement) for statement in tree.body)


def _literal_assignment(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.Assign):
        targets, value = statement.targets, statement.value
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        targets, value = [statement.target], statement.value
    else:
        return False
    if not all(isinstance(target, ast.Name) for target in targets):
        return False
    try:
        ast.literal_eval(value)
    except ValueError:
        return False
    return True


@contextmanager
def data_ahead(
    node: Any, cwd: Path, relative_to: Path, env: Mapping[str, str]
) -> Iterator[tuple[Mapping[str, str], Callable[[Any], None] | None]]:
    """For the time of an execution: the kernel's environment (naming where the manifest
    will be) and the hook to call as each cell starts (it hands the manifest over as the
    start cell begins); ``env`` and no hook where the notebook does not qualify or its data
    cannot be watched."""
    found = start_cell_request(node, cwd, relative_to)
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
