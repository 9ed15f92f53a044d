"""Where a cell starts in its file, as a line number: what CI annotations point at.

An ``.ipynb`` is JSON: its k-th cell starts at the line of its k-th ``"cell_type"`` key (an
escaped ``\\"cell_type\\"`` inside a string does not count). A jupytext percent file (``.py``,
``.md`` or any other) starts a cell at each ``# %%`` (or ``%%``-marked) line. Other formats,
unreadable files and indexes past the last cell have no line (``None``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["cell_line"]

_IPYNB_CELL = re.compile(r'(?<!\\)"cell_type"\s*:')
_PERCENT_CELL = re.compile(r"^[ \t]*(#|//|--|%%?)[ \t]*%%", re.MULTILINE)  # not across lines
_MAX_BYTES = 64 * 1024 * 1024


def cell_line(path: str | os.PathLike[str], index: int) -> int | None:
    """The 1-based line where cell ``index`` (0-based, as in the file) starts, or ``None``."""
    source = Path(path)
    try:
        if index < 0 or not source.is_file() or source.stat().st_size > _MAX_BYTES:
            return None
        text = source.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    pattern = _IPYNB_CELL if source.suffix == ".ipynb" else _PERCENT_CELL
    starts = [match.start() for match in pattern.finditer(text)]
    if index >= len(starts):
        return None
    return text.count("\n", 0, starts[index]) + 1
