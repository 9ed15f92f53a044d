"""The IPython front end: ``%load_ext reprokit`` and the ``%repro`` line magic.

The magic parses its arguments, calls :mod:`reprokit.api.session` and shows what comes back;
nothing else. Subcommands (mirroring the CLI)::

    %repro start [--experiment NAME] [--run-name NAME] [--seed N] [--deterministic]
                 [--data PATH ...] [--tracking-uri URI] [--param KEY=VALUE ...]
    %repro seed N [--deterministic]
    %repro data PATH ... [--expect ALGO:DIGEST ...]
    %repro result NAME [EXPR] [--rtol R] [--atol A] [--device-rtol R] [--device-atol A]
    %repro env | status | device
    %repro end [--status FINISHED|FAILED|KILLED]

``%repro result NAME`` records the variable ``NAME``; with ``EXPR`` it records the value of the
expression (evaluated in the notebook's namespace) under ``NAME``. ``NAME`` is one shell
word, quotes removed as ``shlex`` does (``%repro result 'val acc' acc`` declares ``val acc``).
``--rtol``/``--atol`` may come right after the name or at the end of the line.

Loading the extension also makes reprokit's own errors (bad path, digest mismatch, a value that
cannot be recorded) show as one line instead of a traceback; the cell still fails.
"""

from __future__ import annotations

import argparse
import re
import shlex
from typing import TYPE_CHECKING, Any, NoReturn

from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, line_magic, magics_class

from reprokit._warn import show_warnings_as_one_line
from reprokit.api import session
from reprokit.exceptions import ReprokitError
from reprokit.notebook.magicline import add_start_arguments, split_result

if TYPE_CHECKING:
    from reprokit.recording.recorded_run import RunStatus

__all__ = ["ReproMagics", "load_ipython_extension", "unload_ipython_extension"]

_TOLERANCE = re.compile(r"(?:^|\s)--(rtol|atol|device-rtol|device-atol)(?:=|\s+)(\S+)(?=\s|$)")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        raise IPythonUsageError(f"%repro: {message}\n\n{self.format_usage()}")

    def print_help(self, file: Any = None) -> None:
        pass  # shown by exit() instead, as the UsageError's text

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise IPythonUsageError(message or self.format_help())


def _build_parser() -> _Parser:
    parser = _Parser(prog="%repro", description="Record this notebook's run (reprokit).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    start = sub.add_parser("start", help="capture, seed, hash data, open the MLflow run")
    add_start_arguments(start)
    seed = sub.add_parser("seed", help="seed random/numpy/torch and record it")
    seed.add_argument("value", type=int, metavar="N")
    seed.add_argument("--deterministic", action="store_true")
    data = sub.add_parser("data", help="hash inputs and add them to the run")
    data.add_argument("paths", nargs="+", metavar="PATH")
    data.add_argument("--expect", action="append", default=[], metavar="ALGO:DIGEST")
    end = sub.add_parser("end", help="flush and close the run")
    end.add_argument("--status", choices=session.STATUSES, type=str.upper)
    for name, text in (("env", "show the environment"), ("status", "show the run's state")):
        sub.add_parser(name, help=text)
    sub.add_parser("device", help="the device to compute on (cpu/cuda)")
    sub.add_parser("result", help="declare a result: NAME [EXPR] [--rtol R] [--atol A]")
    return parser


@magics_class
class ReproMagics(Magics):
    """``%repro``: see the module docstring."""

    _parser = _build_parser()

    @line_magic("repro")  # type: ignore[arg-type]  # IPython types the decorator oddly
    def repro(self, line: str) -> Any:
        command, _, rest = line.strip().partition(" ")
        if command == "result":
            return self._result(rest)
        # a trailing '# comment' is the user's, not arguments (an apostrophe in it broke shlex)
        args = self._parser.parse_args(shlex.split(line, comments=True))
        handler = getattr(self, f"_{args.command}")
        return handler(args)

    def _start(self, args: argparse.Namespace) -> None:
        session.start(
            experiment=args.experiment,
            run_name=args.run_name,
            seed=args.seed,
            deterministic=args.deterministic,
            data=args.data,
            tracking_uri=args.tracking_uri,
            params=_key_values(args.param),
        )

    def _seed(self, args: argparse.Namespace) -> None:
        record = session.seed(args.value, deterministic=args.deterministic)
        mode = " (deterministic)" if record.deterministic else ""
        print(f"reprokit: seeded {', '.join(record.seeded) or 'nothing'} with {record.seed}{mode}")

    def _data(self, args: argparse.Namespace) -> None:
        manifest = session.data(*args.paths, expect=args.expect or None)
        for entry in manifest.entries:
            print(
                f"reprokit: {entry.path}: {entry.kind}, {entry.size:,} bytes, {entry.tagged_digest}"
            )

    def _result(self, rest: str) -> None:
        line, tolerances = _take_tolerances(" " + rest)
        try:
            name, expression = split_result(line)
        except ValueError as exc:  # an unclosed quote
            raise IPythonUsageError(f"%repro result: {exc}") from None
        if name is None:
            raise IPythonUsageError(
                "%repro result NAME [EXPR] [--rtol R] [--atol A] [--device-rtol R] "
                "[--device-atol A]"
            )
        value = self._evaluate(name, expression)
        session.result(
            name,
            value,
            rtol=tolerances.get("rtol"),
            atol=tolerances.get("atol"),
            device_rtol=tolerances.get("device-rtol"),
            device_atol=tolerances.get("device-atol"),
        )

    def _evaluate(self, name: str, expression: str) -> Any:
        if expression:
            return self.shell.ev(expression)  # type: ignore[union-attr]
        namespace = self.shell.user_ns  # type: ignore[union-attr]
        if name not in namespace:
            raise IPythonUsageError(
                f"%repro result {name}: no variable named {name!r}; "
                f"write %repro result {name} EXPRESSION"
            )
        return namespace[name]

    def _end(self, args: argparse.Namespace) -> None:
        was_active = session.status().active
        ended = session.end(status=args.status)
        if was_active:
            from reprokit.report.display import emit, run_ended_bundle

            line = run_ended_bundle(
                ended.run_id,
                ended.status,
                len(ended.results),
                ended.tracking_uri,
                background=ended.background,
                recording=ended.recording,
                local=ended.local,
            )
            emit(line)

    def _env(self, args: argparse.Namespace) -> None:
        from IPython.display import display

        from reprokit.report.render import environment_view

        display(environment_view(session.env()))  # type: ignore[no-untyped-call]

    def _status(self, args: argparse.Namespace) -> None:
        from IPython.core.formatters import format_display_data
        from IPython.display import publish_display_data

        from reprokit.report.render import table_view
        from reprokit.results.model import RUN_STATUS_MIME

        state = session.status()
        view = table_view(_status_rows(state), caption="reprokit status")
        data, metadata = format_display_data(view)  # type: ignore[no-untyped-call]
        # reprokit's own output (its run folder differs on every run): never compared
        data[RUN_STATUS_MIME] = {"active": state.active, "status": state.status}
        publish_display_data(data=data, metadata=metadata)  # type: ignore[no-untyped-call]

    def _device(self, args: argparse.Namespace) -> str:
        return session.device()


def _take_tolerances(line: str) -> tuple[str, dict[str, float]]:
    """``line`` without its ``--rtol R``-like options, and their values; an option inside a
    string literal (``"a --rtol 5"``) is the expression's text, not an option, and one left
    without a number is refused (it would be evaluated: ``x --rtol`` is ``x + rtol``)."""
    tolerances: dict[str, float] = {}
    spans = _string_spans(line)

    def take(match: re.Match[str]) -> str:
        if any(start <= match.start(1) < end for start, end in spans):
            return match.group(0)
        tolerances[match.group(1)] = _number(match.group(1), match.group(2))
        return " "

    left = _TOLERANCE.sub(take, line)
    spans = _string_spans(left)
    for match in _OPTION.finditer(left):
        if not any(start <= match.start(1) < end for start, end in spans):
            raise IPythonUsageError(f"%repro result: --{match.group(1)} needs a number")
    return left, tolerances


_OPTION = re.compile(r"(?:^|\s)--(rtol|atol|device-rtol|device-atol)(?==|\s|$)")


def _string_spans(line: str) -> list[tuple[int, int]]:
    """Where the string literals of one line of Python are (none found in text that does not
    tokenize: its quotes are the expression's to refuse)."""
    import io
    import tokenize

    spans, opened = [], None
    starts = {getattr(tokenize, "FSTRING_START", -1), getattr(tokenize, "TSTRING_START", -1)}
    ends = {getattr(tokenize, "FSTRING_END", -1), getattr(tokenize, "TSTRING_END", -1)}
    try:
        for token in tokenize.generate_tokens(io.StringIO(line).readline):
            if token.start[0] != 1:
                break
            if token.type == tokenize.STRING:
                spans.append((token.start[1], token.end[1]))
            elif token.type in starts:
                opened = token.start[1]
            elif token.type in ends and opened is not None:
                spans.append((opened, token.end[1]))
    except (tokenize.TokenError, SyntaxError):
        pass
    return spans


def _number(option: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise IPythonUsageError(f"%repro result: --{option} needs a number, got {text!r}") from None


def _key_values(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise IPythonUsageError(f"%repro start: --param needs KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _status_rows(state: RunStatus) -> list[tuple[str, str]]:
    if not state.active and state.status is None:
        return [("run", "none (start one with %repro start)")]
    rows = [
        ("status", str(state.status)),
        ("experiment", str(state.experiment)),
        ("run", f"{state.run_name or ''} {state.run_id or '(opening…)'}".strip()),
        ("tracking URI", str(state.tracking_uri)),
        ("local folder", str(state.local_dir)),
        ("notebook", state.notebook or "unknown"),
        ("seed", "not set" if state.seed is None else f"{state.seed}"),
        ("data", ", ".join(state.data) or "none"),
        ("results", ", ".join(state.results) or "none"),
        ("failed cells", str(state.cell_errors)),
        ("recording", "ok" if state.recording else "failed (see warnings)"),
        ("pending MLflow writes", str(state.pending)),
    ]
    return rows + [("error", e) for e in state.errors]


def _show_reprokit_error(
    shell: Any, etype: type[BaseException], value: BaseException, tb: Any, tb_offset: Any = None
) -> list[str]:
    """One line instead of a traceback for reprokit's own, deliberate errors."""
    stb = [f"{etype.__name__}: {value}"]
    shell._showtraceback(etype, value, stb)
    return stb


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext reprokit``: register ``%repro`` and the one-line display of reprokit errors."""
    ipython.register_magics(ReproMagics)
    show_warnings_as_one_line()  # a warning is one line in the cell, not reprokit's source
    if not ipython.custom_exceptions:  # never replace a handler someone else installed
        ipython.set_custom_exc((ReprokitError,), _show_reprokit_error)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext reprokit``: remove ``%repro`` (an active run stays active)."""
    ipython.magics_manager.magics["line"].pop("repro", None)
    if ipython.custom_exceptions == (ReprokitError,):
        ipython.set_custom_exc((), None)
