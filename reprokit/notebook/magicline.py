"""The arguments of ``%repro start``, shared by the magic and by the runner, which reads a
notebook's start line to hash its data while the kernel starts
(:mod:`reprokit.runner.datahash`); and the name of ``%repro result NAME [EXPR]``."""

from __future__ import annotations

import argparse
import io
import shlex
from typing import NoReturn

__all__ = ["add_start_arguments", "split_result", "start_data"]


def add_start_arguments(start: argparse.ArgumentParser) -> None:
    """The options of ``%repro start``."""
    start.add_argument("--experiment")
    start.add_argument("--run-name")
    start.add_argument("--seed", type=int)
    start.add_argument("--deterministic", action="store_true")
    start.add_argument("--data", nargs="+", action="extend", default=[], metavar="PATH")
    start.add_argument("--tracking-uri")
    start.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")


class _Refused(ValueError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Refused(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise _Refused(message or "")


def start_data(line: str) -> list[str] | None:
    """The ``--data`` paths of a ``%repro start`` line as the magic reads them, or None: not
    such a line, or one whose arguments IPython would expand first (``$name``, ``{expr}``)
    or the magic would refuse."""
    text = line.strip()
    if not text.startswith("%repro") or "$" in text or "{" in text:
        return None
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return None
    if words[:2] != ["%repro", "start"]:
        return None
    parser = _Parser(prog="%repro start", add_help=False)
    add_start_arguments(parser)
    try:
        return [str(path) for path in parser.parse_args(words[2:]).data]
    except _Refused:
        return None


def split_result(text: str) -> tuple[str | None, str]:
    """``NAME`` and ``EXPR`` of ``%repro result NAME [EXPR]`` (``text``: after ``result``, the
    tolerances taken out). The name is one shell word, as ``shlex`` reads it: ``'sp ace'`` is
    ``sp ace`` and ``''`` the empty name, which ``reprokit.result`` refuses as it does for the
    API; the expression is the rest as written. None when there is no name; ValueError for
    an unclosed quote."""
    stream = io.StringIO(text)
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # '#' inside a name is the name's; a comment ends the expression
    name = lexer.get_token()  # reads the name and the blank after it, no further
    return (None if name == lexer.eof else name), stream.read().strip()
