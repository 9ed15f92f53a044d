"""Execute one notebook with papermill in its own kernel, environment and working directory.

The executed notebook is always written to the output path, also when a cell raises, a cell
times out or the kernel dies; the outcome names the failing cell. Nothing here is process
global (no ``chdir``, no ``os.environ`` change), so several notebooks can run at once from
threads of one process: the kernel's environment goes to its kernel manager, its working
directory to nbclient's ``resources``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jupyter_client.manager import AsyncKernelManager

TRACEBACK_LINES = 8
DEFAULT_KERNEL = "python3"
_INJECTED_TAG = "injected-parameters"
_ERROR_MARKER_TAG = "papermill-error-cell-tag"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

CellCallback = Callable[[int, int], None]
"""``on_cell(position, total)``: a cell starts (1-based position)."""


@dataclass(frozen=True)
class CellFailure:
    """The cell that stopped a notebook.

    ``index`` counts the cells of the source notebook (papermill's injected parameters cell
    and error marker are not counted); ``output_index`` is the cell's index in the executed
    notebook.
    """

    index: int
    output_index: int
    ename: str
    evalue: str
    traceback: tuple[str, ...] = ()  # first lines, ANSI colours removed
    source_head: str = ""  # first line of the cell's source


@dataclass(frozen=True)
class ExecutionOutcome:
    """What happened to one execution; ``status`` is ok, failed, timeout or kernel_died."""

    status: str
    output_path: str
    duration_s: float
    failure: CellFailure | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _EnvKernelManager(AsyncKernelManager):
    """A kernel manager that starts its kernel with :attr:`kernel_env` as the environment.

    nbclient creates (and so owns, and shuts down) the kernel manager itself from a class; a
    subclass per execution carries that execution's environment.
    """

    kernel_env: Mapping[str, str] = {}
    kernel_log: IO[bytes] | None = None  # the kernel's own stdout/stderr, not ours

    async def start_kernel(self, **kwargs: Any) -> None:  # type: ignore[override]
        kwargs["env"] = dict(self.kernel_env)
        if self.kernel_log is not None:
            kwargs["stdout"] = kwargs["stderr"] = self.kernel_log
        await super().start_kernel(**kwargs)


def kernel_manager_for(
    env: Mapping[str, str], log: IO[bytes] | None = None
) -> type[AsyncKernelManager]:
    """A kernel manager class whose kernels get ``os.environ`` updated with ``env``."""
    full = {**os.environ, **env}
    attributes = {"kernel_env": full, "kernel_log": log}
    return type("ReprokitKernelManager", (_EnvKernelManager,), attributes)


def execute_notebook(
    node: Any,
    output_path: str | os.PathLike[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    kernel_name: str | None = None,
    timeout: float | None = None,
    on_cell: CellCallback | None = None,
) -> ExecutionOutcome:
    """Run ``node`` (an nbformat notebook, not modified) and write the result to ``output_path``.

    ``parameters`` go into papermill's injected cell; ``env`` is added to the kernel's
    environment; ``timeout`` (seconds) applies to each cell. The kernel is killed as soon as
    the last cell is done (no graceful shutdown wait). ``on_cell(position, total)`` is called
    as each cell starts (1-based position; papermill's injected cell counts).
    """
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError  # type: ignore[import-untyped]

    output = Path(output_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    status, message = "ok", ""
    log_path = output.with_name(output.stem + ".kernel.log")
    try:
        with open(log_path, "wb") as log:
            hooks = _cell_hooks(node, parameters, on_cell)
            _papermill(node, output, log, env, parameters, kernel_name, timeout, cwd, hooks)
    except PapermillExecutionError:
        status = "failed"
    except CellTimeoutError as exc:
        status, message = "timeout", _first_line(exc)
    except DeadKernelError as exc:
        status, message = "kernel_died", _first_line(exc)
    finally:
        _cancel_leftover_tasks()
    duration = time.perf_counter() - started
    failure = find_failure(output, status, message) if status != "ok" else None
    return ExecutionOutcome(status, str(output), duration, failure, message)


def _papermill(
    node: Any,
    output: Path,
    log: IO[bytes],
    env: Mapping[str, str] | None,
    parameters: Mapping[str, Any] | None,
    kernel_name: str | None,
    timeout: float | None,
    cwd: str | os.PathLike[str],
    hooks: Mapping[str, Any],
) -> None:
    import papermill  # type: ignore[import-untyped]

    _quiet_papermill_logs()
    papermill.execute_notebook(
        copy.deepcopy(node),  # papermill modifies what it is given
        str(output),
        parameters=dict(parameters or {}),
        kernel_name=kernel_name or kernel_of(node),
        language=_language_of(node),
        progress_bar=False,
        log_output=False,
        execution_timeout=timeout,
        kernel_manager_class=kernel_manager_for(env or {}, log),
        resources={"metadata": {"path": str(cwd)}},
        shutdown_kernel="immediate",
        **hooks,  # nbclient's lifecycle hooks, passed through papermill's engine
    )


def _cell_hooks(
    node: Any, parameters: Mapping[str, Any] | None, on_cell: CellCallback | None
) -> dict[str, Any]:
    if on_cell is None:
        return {}
    total = len(node.cells) + (1 if parameters else 0)  # papermill injects one cell

    def on_cell_start(cell_index: int, **_: Any) -> None:
        on_cell(min(cell_index + 1, total), total)

    return {"on_cell_start": on_cell_start}


def _cancel_leftover_tasks() -> None:
    """After a timeout or a dead kernel, nbclient leaves its output-polling task pending on
    this thread's event loop; cancel it now rather than have asyncio complain at exit that a
    pending task was destroyed."""
    from jupyter_core.utils import ensure_event_loop

    loop = ensure_event_loop()
    if loop.is_running():
        return
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _quiet_papermill_logs() -> None:
    """nbclient reports timeouts and dead kernels through papermill's logger; the outcome says
    it already. A NullHandler keeps Python's last-resort stderr handler away, while an
    application that configured logging still receives the records."""
    logger = logging.getLogger("papermill")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def kernel_of(node: Any) -> str:
    """The notebook's kernel name, ``python3`` when it names none."""
    # text notebooks converted by jupytext often carry no kernelspec
    return str(node.metadata.get("kernelspec", {}).get("name") or DEFAULT_KERNEL)


def _language_of(node: Any) -> str:
    meta = node.metadata
    name = meta.get("language_info", {}).get("name") or meta.get("kernelspec", {}).get("language")
    return str(name or "python")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def find_failure(
    output_path: str | os.PathLike[str], status: str, message: str = ""
) -> CellFailure | None:
    """The failing cell of an executed notebook: the first with an ``error`` output, else (a
    timeout, a dead kernel) the cell papermill marked as running or failed."""
    import nbformat

    try:
        node = nbformat.read(Path(output_path), as_version=4)  # type: ignore[no-untyped-call]
    except (OSError, ValueError):
        return None
    cells = [
        (index, cell)
        for index, cell in enumerate(node.cells)
        if _ERROR_MARKER_TAG not in cell.metadata.get("tags", [])
    ]
    for position, (index, cell) in enumerate(cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return _failure(cells, position, index, out)
    for position, (index, cell) in enumerate(cells):
        # nbclient records the reply's time; the cell that never got one is the one that hung
        timing = cell.metadata.get("execution", {})
        if "iopub.status.busy" in timing and "shell.execute_reply" not in timing:
            name = "CellTimeoutError" if status == "timeout" else "DeadKernelError"
            error = {"ename": name, "evalue": message or status.replace("_", " ")}
            return _failure(cells, position, index, error)
    return None


def _failure(
    cells: list[tuple[int, Any]], position: int, index: int, error: Mapping[str, Any]
) -> CellFailure:
    injected = sum(
        1 for _, cell in cells[:position] if _INJECTED_TAG in cell.metadata.get("tags", [])
    )
    lines = [
        _ANSI.sub("", line) for entry in error.get("traceback", []) for line in entry.splitlines()
    ]
    source = cells[position][1].get("source", "")
    return CellFailure(
        index=position - injected,
        output_index=index,
        ename=str(error.get("ename", "")),
        evalue=str(error.get("evalue", "")),
        traceback=tuple(line for line in lines if line.strip())[:TRACEBACK_LINES],
        source_head=source.splitlines()[0] if source else "",
    )
