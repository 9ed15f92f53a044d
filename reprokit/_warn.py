"""Warnings in the user's terms: they point at the user's line, and front ends show them as one
line (``reprokit: warning: ...``), never as reprokit's own source path and code line.

:func:`warn_user` gives a warning the location of the first frame that is neither reprokit's
nor the machinery calling the user's code (IPython, ipykernel, thread pools), so in a notebook
it names the user's cell. :func:`show_warnings_as_one_line` is installed by the ``reprokit``
command and by ``%load_ext reprokit``: a :class:`~reprokit.exceptions.ReprokitWarning`, wherever
in reprokit it was raised, prints as one line; other warnings keep their usual display.
"""

from __future__ import annotations

import contextlib
import re
import sys
import warnings
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from reprokit.exceptions import ReprokitWarning

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
# modules that call the user's code or reprokit's, never the user's code itself
_MACHINERY = ("reprokit", "IPython", "ipykernel", "traitlets", "concurrent", "threading", "click")


def warn_user(message: str, category: type[Warning] = ReprokitWarning) -> None:
    """Warn with the location of the first calling frame outside reprokit and the machinery
    that runs a notebook cell or a command."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and _is_machinery(frame):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _is_machinery(frame: FrameType) -> bool:
    if frame.f_code.co_filename.startswith(_PACKAGE_DIR):  # also reprokit/__main__.py
        return True
    name = str(frame.f_globals.get("__name__", ""))
    return any(name == top or name.startswith(top + ".") for top in _MACHINERY)


def one_line(message: Warning | str) -> str:
    """The one line a reprokit warning is shown as."""
    text = " ".join(str(message).split())
    return f"reprokit: warning: {escaped_controls(text)}"


# C0 and C1 controls (line breaks, ESC), DEL, the Unicode line and paragraph separators and the
# bidirectional overrides and isolates (which reorder what a terminal shows)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escaped_controls(text: str) -> str:
    """``text`` with each control character written as Python escapes it (a newline as
    ``\\n``, ESC as ``\\x1b``): an error or a warning quoting what a stranger wrote (a
    lock's key, an evalue) stays one line, which a CI log cannot read as a command (GitHub
    Actions runs a line ``::error ...`` as one) nor a terminal as an escape sequence."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


def show_warnings_as_one_line() -> None:
    """Show every ReprokitWarning as ``reprokit: warning: ...`` on stderr (idempotent)."""
    if getattr(warnings.showwarning, "_reprokit", False):
        return
    previous = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if not issubclass(category, ReprokitWarning):
            previous(message, category, filename, lineno, file, line)
            return
        stream = file if file is not None else sys.stderr
        with contextlib.suppress(OSError, AttributeError, ValueError):  # a closed stderr
            stream.write(one_line(message) + "\n")

    shown: Any = show
    shown._reprokit = True
    warnings.showwarning = shown
