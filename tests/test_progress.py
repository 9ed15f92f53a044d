"""Per-notebook progress: cell events from a real execution, and how they are printed."""

from __future__ import annotations

import io
import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from run_helpers import write_notebook

from reprokit.api.run import run
from reprokit.cli import _progress
from reprokit.cli._progress import ProgressPrinter
from reprokit.options import ExecutionOptions
from reprokit.runner.plan import CellProgress, PlannedRun, RunOutcome


def test_a_real_execution_reports_every_cell_as_it_starts(project: Path) -> None:
    nb = write_notebook(
        project / "nb.ipynb",
        ["x = 1", "# markdown-free comment\ny = 2", "x + y"],
        parameters="n = 1",
    )
    events: list[tuple[str, Any]] = []
    [outcome] = run(
        [nb],
        execution=ExecutionOptions(device="cpu"),
        parameters={"n": 2},
        record=False,
        progress=lambda event, plan, info: events.append((event, info)),
    )
    assert outcome.ok
    kinds = [event for event, _ in events]
    assert kinds[:2] == ["plan", "start"] and kinds[-1] == "done"
    cells = [info for event, info in events if event == "cell"]
    # the parameters cell, papermill's injected cell and three code cells
    assert [(c.position, c.total) for c in cells] == [(k, 5) for k in range(1, 6)]
    assert all(b.elapsed_s >= a.elapsed_s for a, b in itertools.pairwise(cells))


def _plan(tmp_path: Path, name: str) -> PlannedRun:
    return PlannedRun(tmp_path / name, None, tmp_path / "out", {}, {})


def _outcome(name: str, status: str = "ok") -> RunOutcome:
    return RunOutcome(name, status, f"/out/{name}", "/out", 1.25, "cpu", run_id="abc")


def _printer(plain: bool) -> tuple[ProgressPrinter, io.StringIO]:
    printer = ProgressPrinter(plain=plain)
    buffer = io.StringIO()
    printer.console = Console(
        file=buffer, force_terminal=not plain, width=120, no_color=plain, highlight=False
    )
    return printer, buffer


def test_plain_lines_show_a_quiet_notebook_is_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    printer, buffer = _printer(plain=True)
    plan = _plan(tmp_path, "slow.ipynb")
    printer("start", plan, None)
    printer("cell", plan, CellProgress(2, 9, 0.5))  # too soon for a line
    monkeypatch.setattr(_progress, "PLAIN_INTERVAL_S", 0.0)
    printer("cell", plan, CellProgress(3, 9, 12.0))
    printer("done", plan, _outcome("slow.ipynb", "failed"))
    lines = buffer.getvalue().splitlines()
    assert lines[0] == f"running  {plan.source}"
    assert lines[1] == f"  {plan.source}: cell 3/9, 12 s"
    assert lines[2].startswith("FAILED  slow.ipynb  1.2 s  -> /out/slow.ipynb  (MLflow run abc)")
    assert len(lines) == 3


def test_terminal_bars_end_when_the_last_notebook_ends(tmp_path: Path) -> None:
    printer, buffer = _printer(plain=False)
    first, second = _plan(tmp_path, "a.ipynb"), _plan(tmp_path, "b.ipynb")
    printer("start", first, None)
    printer("start", second, None)
    printer("cell", first, CellProgress(1, 4, 0.1))
    printer("done", first, _outcome("a.ipynb"))
    assert printer._bars is not None  # b is still running
    printer("done", second, _outcome("b.ipynb"))
    assert printer._bars is None
    assert "a.ipynb  1.2 s" in buffer.getvalue() and "b.ipynb  1.2 s" in buffer.getvalue()


def test_each_run_of_a_repeated_notebook_says_which_it_is(tmp_path: Path) -> None:
    printer, buffer = _printer(plain=True)
    second = replace(_plan(tmp_path, "noisy.ipynb"), copy=(2, 3))
    printer("start", second, None)
    printer("done", second, _outcome("noisy.ipynb"))
    lines = buffer.getvalue().splitlines()
    assert lines[0] == f"running  {second.source} (run 2 of 3)"
    assert lines[1].startswith("ok  noisy.ipynb (run 2 of 3)  1.2 s")


def test_a_long_quiet_cell_shows_life_without_waiting_for_the_next_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_progress, "PLAIN_INTERVAL_S", 0.2)
    monkeypatch.setattr(_progress, "_TICK_S", 0.05)
    printer, buffer = _printer(plain=True)
    plan = _plan(tmp_path, "long.ipynb")
    printer("start", plan, None)
    printer("cell", plan, CellProgress(1, 2, 0.0))  # then the cell runs quietly
    deadline = time.monotonic() + 30
    while "cell 1/2" not in buffer.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"  {plan.source}: cell 1/2, " in buffer.getvalue()
    printer("executed", plan, None)  # its kernel is done; recording it may take a while
    before = buffer.getvalue()
    while "recording" not in buffer.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    after = buffer.getvalue()[len(before) :]
    assert "cell 1/2" not in after  # no more cell lines for an ended kernel
    assert f"  {plan.source}: recording in MLflow, " in after  # what it waits for instead
    printer("done", plan, _outcome("long.ipynb"))


def test_a_terminal_bar_says_when_its_notebook_is_being_recorded(tmp_path: Path) -> None:
    printer, _ = _printer(plain=False)
    plan = _plan(tmp_path, "a.ipynb")
    printer("start", plan, None)
    printer("cell", plan, CellProgress(2, 2, 0.1))
    printer("executed", plan, None)
    [task] = printer._bars.tasks
    assert task.description == f"{plan.source}: recording in MLflow"
    printer("done", plan, _outcome("a.ipynb"))
