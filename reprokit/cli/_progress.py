"""Progress of executing notebooks: live bars on a terminal, plain lines in CI logs.

On a terminal each running notebook has a line with its cells (started / total) and elapsed
time, drawn by rich and removed when the notebook ends; what stays is one line per notebook
(``ok``/``FAILED``, duration, executed notebook, MLflow run). Off a terminal, or with ``CI``
set, nothing is redrawn: a ``running`` line when a notebook starts, a ``cell k/n`` line when
one has been quiet for :data:`PLAIN_INTERVAL_S` (so a long cell shows life in a CI log), and
the final line.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from reprokit.report.describe import (
    describe_copy,
    describe_done,
    describe_env_build,
    describe_plan,
    describe_recording,
)

if TYPE_CHECKING:
    from reprokit.runner.envbuild import EnvBuildEvent
    from reprokit.runner.plan import CellProgress, PlannedRun, RunOutcome

PLAIN_INTERVAL_S = 10.0
_TICK_S = 1.0  # how often quiet notebooks are looked at


class ProgressPrinter:
    """A ``progress`` callback for :func:`reprokit.api.run.run` (thread-safe)."""

    def __init__(self, *, plain: bool | None = None) -> None:
        from rich.console import Console

        self.plain = (
            (not sys.stderr.isatty() or bool(os.environ.get("CI"))) if plain is None else plain
        )
        self.console = Console(stderr=True, no_color=self.plain, highlight=False)
        self._lock = threading.Lock()
        self._bars: Any = None
        self._tasks: dict[int, Any] = {}
        self._last_line: dict[int, float] = {}
        # plain lines: each running notebook's source, start and last cell (position, total);
        # once its kernel is done, the start of its record and None
        self._alive: dict[int, tuple[PlannedRun, float, tuple[int, int] | None]] = {}
        self._ticker: threading.Thread | None = None

    def __call__(
        self, event: str, plan: PlannedRun, info: RunOutcome | CellProgress | None
    ) -> None:
        with self._lock:
            key = id(plan)
            if event == "plan":  # before any kernel starts: what will run, with what
                self._print(describe_plan(plan))
            elif event == "start":
                self._start(key, plan)
            elif event == "cell":
                self._cell(key, plan, info)  # type: ignore[arg-type]
            elif event == "executed":  # being recorded: no longer a quiet cell
                self._recording(key, plan)
            elif event == "done" and info is not None:
                self._done(key, info, plan.copy)  # type: ignore[arg-type]

    def env_build(self, event: EnvBuildEvent) -> None:
        """An ``on_env_build`` hook: a line as a rebuilt environment's build starts and ends."""
        with self._lock:
            self._print(describe_env_build(event))

    def _print(self, line: str) -> None:
        target = self._bars.console if self._bars is not None else self.console
        target.print(line, markup=False, soft_wrap=True)

    def _start(self, key: int, plan: PlannedRun) -> None:
        self._last_line[key] = time.monotonic()
        if self.plain:
            line = f"running  {describe_copy(plan.source, plan.copy)}"
            self.console.print(line, markup=False, soft_wrap=True)
            self._alive[key] = (plan, time.monotonic(), (0, 0))
            if self._ticker is None:  # a cell quiet for long shows life without a cell event
                self._ticker = threading.Thread(target=self._tick, name="reprokit-progress")
                self._ticker.daemon = True
                self._ticker.start()
            return
        if self._bars is None:
            self._bars = _live_bars(self.console)
            self._bars.start()
        self._tasks[key] = self._bars.add_task(describe_copy(plan.source, plan.copy), total=None)

    def _cell(self, key: int, plan: PlannedRun, cell: CellProgress) -> None:
        if not self.plain:
            task = self._tasks.get(key)
            if task is not None:
                self._bars.update(task, completed=cell.position - 1, total=cell.total)
            return
        now = time.monotonic()
        if self._alive.get(key, (None, 0, None))[2] is not None:
            self._alive[key] = (plan, self._alive[key][1], (cell.position, cell.total))
        if now - self._last_line.get(key, now) >= PLAIN_INTERVAL_S:
            self._last_line[key] = now
            line = f"  {plan.source}: cell {cell.position}/{cell.total}, {cell.elapsed_s:.0f} s"
            self.console.print(line, markup=False, soft_wrap=True)

    def _recording(self, key: int, plan: PlannedRun) -> None:
        """The kernel is done and the run goes to MLflow: said instead of its last cell."""
        if not self.plain:
            task = self._tasks.get(key)
            if task is not None:
                self._bars.update(task, description=describe_recording(plan.source, plan.copy))
            return
        if key in self._alive:
            self._alive[key] = (plan, time.monotonic(), None)
            self._last_line[key] = time.monotonic()

    def _tick(self) -> None:
        """Every second: a ``cell k/n, T s`` line for each notebook quiet for the interval
        (``recording in MLflow, T s`` once its kernel is done)."""
        while True:
            time.sleep(_TICK_S)
            with self._lock:
                if not self._alive:
                    self._ticker = None
                    return
                now = time.monotonic()
                for key, (plan, started, cells) in self._alive.items():
                    if cells == (0, 0) or now - self._last_line.get(key, now) < PLAIN_INTERVAL_S:
                        continue
                    self._last_line[key] = now
                    where = describe_recording(plan.source, plan.copy)
                    if cells is not None:
                        where = f"{plan.source}: cell {cells[0]}/{cells[1]}"
                    line = f"  {where}, {now - started:.0f} s"
                    self.console.print(line, markup=False, soft_wrap=True)

    def _done(self, key: int, outcome: RunOutcome, copy: tuple[int, int]) -> None:
        self._last_line.pop(key, None)
        self._alive.pop(key, None)
        task = self._tasks.pop(key, None)
        if task is not None:
            self._bars.remove_task(task)
        line = describe_done(outcome, markup=not self.plain, copy=copy)
        self.console.print(line, markup=not self.plain, soft_wrap=True)
        if self._bars is not None and not self._tasks:
            self._bars.stop()
            self._bars = None


def _live_bars(console: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("cells"),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
