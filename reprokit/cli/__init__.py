"""The ``reprokit`` command: a thin click front end over the Python API.

Subcommands are imported only when invoked, so ``reprokit hash`` does not pay for
what ``reprokit verify`` needs.  Exit codes (documented in docs/cli.md):

====  ==========================================================================
0     success
1     a check failed: a digest did not match, a result did not reproduce, a diff found
      a difference
2     bad usage or input: unknown option, missing or unreadable path, bad value
3     execution failed (runner commands)
130   interrupted (Ctrl-C; 143 for SIGTERM during a runner command)
====  ==========================================================================
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from reprokit._version import __version__
from reprokit._warn import escaped_controls, show_warnings_as_one_line
from reprokit.exceptions import ReprokitError

# command name -> "module:attribute"; loaded on first use
_COMMANDS: dict[str, str] = {
    "calibrate": "reprokit.cli._calibrate:calibrate_command",
    "bundle": "reprokit.cli._bundle:bundle_command",
    "check": "reprokit.cli._check:check_command",
    "diff": "reprokit.cli._diff:diff_command",
    "env": "reprokit.cli._capture:env_command",
    "gc": "reprokit.cli._gc:gc_command",
    "hash": "reprokit.cli._capture:hash_command",
    "record": "reprokit.cli._record:record_command",
    "run": "reprokit.cli._run:run_command",
    "status": "reprokit.cli._status:status_command",
    "sync": "reprokit.cli._sync:sync_command",
    "verify": "reprokit.cli._verify:verify_command",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when they are listed or invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        show_warnings_as_one_line()  # "reprokit: warning: ...", not reprokit's source line
        try:
            return super().invoke(ctx)
        except ReprokitError as exc:
            click.echo(f"reprokit: error: {escaped_controls(str(exc))}", err=True)
            if getattr(exc, "unrecorded", ()):
                _exit_now(exc.exit_code)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as stop:
            from reprokit.cli._options import Terminated

            terminated = isinstance(stop, Terminated)
            click.echo("reprokit: interrupted" + (" by SIGTERM" if terminated else ""), err=True)
            sys.exit(143 if terminated else 130)


def _exit_now(code: int) -> None:
    """End a runner interrupted while MLflow did not answer: a thread still in MLflow's
    retries would hold the interpreter's exit; the runs it was writing are in their
    journals (the second signal ends the same way)."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reprokit")
def main() -> None:
    """Record what produced a notebook's results, and check that they reproduce."""
