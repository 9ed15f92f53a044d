"""pytest collector and item of ``pytest --reprokit``: one test per locked notebook.

The item only calls :func:`reprokit.api.verify.verify` and formats what comes back; a
notebook that did not reproduce fails with the plain-text verdict table and the environment
changes, one whose execution failed with the failing cell, one whose data drifted with the
changed files. No traceback of reprokit's own code is shown for any of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reprokit.api.verify import VerifyOutcome
from reprokit.exceptions import ReprokitError
from reprokit.notebook.files import is_notebook_file
from reprokit.notebook.textnotebooks import without_paired_texts

__all__ = ["NotReproducedError", "NotebookFile", "NotebookItem", "is_lockable_notebook"]


def is_lockable_notebook(path: Path) -> bool:
    """``.ipynb``, or a ``.py``/``.md`` file that jupytext reads as a notebook and that is not
    the text half of a jupytext pair whose ``.ipynb`` is beside it (that one is the item)."""
    if not is_notebook_file(path):
        return False
    paired = path.with_suffix(".ipynb")
    return path == paired or not paired.is_file() or path in without_paired_texts([paired, path])


class NotReproducedError(Exception):
    """A notebook's verification outcome other than ``reproduced``."""

    def __init__(self, outcome: VerifyOutcome) -> None:
        super().__init__(outcome.notebook, outcome.status)
        self.outcome = outcome


class NotebookFile(pytest.File):
    """A notebook with a lock beside it: one item, named after the notebook."""

    def collect(self) -> Iterator[NotebookItem]:
        yield NotebookItem.from_parent(self, name=self.path.name)


class NotebookItem(pytest.Item):
    """Re-executes the notebook with the lock's parameters and compares its results."""

    def runtest(self) -> None:
        from reprokit.api.verify import verify
        from reprokit.options import ExecutionOptions

        execution = ExecutionOptions(
            device=self.config.getoption("reprokit_device"),
            timeout=self.config.getoption("reprokit_timeout"),
        )
        (outcome,) = verify([self.path], execution=execution)
        if outcome.status != "reproduced":
            raise NotReproducedError(outcome)

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | Any:
        if isinstance(excinfo.value, NotReproducedError):
            return describe_outcome(excinfo.value.outcome)
        if isinstance(excinfo.value, ReprokitError):
            # a user mistake (corrupt lock, undeclared parameter, no GPU): the message says it
            return f"reprokit: {excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"reprokit verify {self.path.name}"


def describe_outcome(outcome: VerifyOutcome) -> str:
    """The failure text of one notebook, by its status (the CLI prints the same lines)."""
    from reprokit.report.describe import describe_drift, describe_failure, describe_verdict

    if outcome.status == "data_changed":
        return describe_drift(outcome.notebook, outcome.data)
    if outcome.run is not None and outcome.status == "execution_failed":
        return describe_failure(outcome.run)
    if outcome.verdict is not None:
        return describe_verdict(outcome.verdict)
    return f"{outcome.notebook}: {outcome.status}"
