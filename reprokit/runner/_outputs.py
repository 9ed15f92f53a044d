"""What the runner keeps of a kernel's outputs: bounded per cell, marked on failure, scrubbed.

- A cell that prints 100 MB must not make a 100 MB notebook nor a runner holding it in
  memory: past :data:`MAX_CELL_OUTPUT` bytes a cell's further outputs are dropped as they
  arrive, and one marker output says how much was dropped. Errors and reprokit results are
  always kept (they are the point of the run).
- A failed execution is written into the executed notebook's ``metadata.reprokit.execution``;
  a cell stopped by a timeout, a dead kernel or an interruption gets an ``error`` output, so
  the notebook shows where it stopped.
- Secret parameter values that a notebook printed anyway are replaced in the executed
  notebook and the kernel log before anything reads them; error texts (the failure in the
  metadata, every ``error`` output) lose credential-looking text too (:func:`redact_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
from nbclient.util import ensure_async, run_sync
from nbformat import NotebookNode
from papermill.clientwrap import PapermillNotebookClient  # type: ignore[import-untyped]
from papermill.engines import NBClientEngine  # type: ignore[import-untyped]
from papermill.utils import merge_kwargs, remove_args  # type: ignore[import-untyped]

from reprokit._fsutil import atomic_write_text
from reprokit.capturing.redact import redact_text
from reprokit.recording.spool import read_spool, spool_path
from reprokit.runner._saving import SAVE_CHECK_S, execute_with_throttled_saves
from reprokit.runner._scrub import scrub_notebook_text, scrub_output, scrub_text
from reprokit.runner.putback import put_back_results

MAX_CELL_OUTPUT = 4 * 1024 * 1024  # bytes of output kept per cell; REPROKIT_MAX_CELL_OUTPUT
ENGINE_NAME = "reprokit"
_KEPT_MIME = "application/vnd.reprokit"


def max_cell_output() -> int:
    raw = os.environ.get("REPROKIT_MAX_CELL_OUTPUT", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else MAX_CELL_OUTPUT


class BoundedClient(PapermillNotebookClient):  # type: ignore[misc]
    """papermill's client, keeping at most :func:`max_cell_output` bytes of output per cell."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._left: dict[int, int] = {}
        self._markers: dict[int, tuple[NotebookNode, int]] = {}

    def papermill_execute_cells(self) -> None:
        super().papermill_execute_cells()
        self._settle_run_folder()

    async def async_execute_cell(
        self,
        cell: NotebookNode,
        cell_index: int,
        execution_count: int | None = None,
        store_history: bool = True,
    ) -> NotebookNode:
        """nbclient's, with the manager asked meanwhile to write what it held back (see
        :mod:`reprokit.runner._saving`): a long silent cell must not keep the notebook as it
        was some cells before it."""
        saver = asyncio.ensure_future(self._save_while_running())
        try:
            return await super().async_execute_cell(  # type: ignore[no-any-return]
                cell, cell_index, execution_count, store_history
            )
        finally:
            saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saver

    execute_cell = run_sync(async_execute_cell)

    async def _save_while_running(self) -> None:
        save_if_due = getattr(self.nb_man, "save_if_due", None)
        while save_if_due is not None:
            await asyncio.sleep(SAVE_CHECK_S)
            try:
                save_if_due()
            except Exception:  # a full disk: the save at the cell's end raises it, not this
                return

    def _settle_run_folder(self) -> None:
        """Let reprokit in the kernel finish writing its run's folder (it writes on a thread,
        and the kernel is killed right after this, without its exit hooks); the problems it
        had not reported yet go into the last cell run, as it would have printed them. Any
        failure here (a kernel that is not Python, or dies now) leaves the notebook as it is."""
        try:
            if self.km is None or not self.km.kernel_spec.language.lower().startswith("python"):
                return
            problems = run_sync(self._async_settle)()
        except Exception:  # nothing of the notebook's own depends on it
            return
        cell = next((c for c in reversed(self.nb.cells) if c.get("execution_count")), None)
        if problems and cell is not None:
            cell.setdefault("outputs", []).append(
                NotebookNode(output_type="stream", name="stderr", text=problems + "\n")  # type: ignore[no-untyped-call]
            )

    async def _async_settle(self) -> str:
        """Evaluate :data:`SETTLE_EXPRESSION` in the kernel and wait for its answer on a
        deadline of its own (not the cells' ``--timeout``: the kernel may wait up to 60 s); a
        kernel still busy then is interrupted, so that it answers what papermill asks next."""
        expressions = {"reprokit": SETTLE_EXPRESSION}
        msg_id = self.kc.execute("", silent=True, store_history=False, user_expressions=expressions)
        reply = await self._async_reply(msg_id, SETTLE_WAIT_S)
        if reply is not None:
            return _settled_problems(reply)
        if not await ensure_async(self.kc.is_alive()):
            return ""  # died: the runner reports that, not this
        await ensure_async(self.km.interrupt_kernel())
        await self._async_reply(msg_id, AFTER_INTERRUPT_S)  # it answers, then is idle
        return (
            f"reprokit: warning: the run's files were still being written after {SETTLE_WAIT_S:g} s"
        )

    async def _async_reply(self, msg_id: str, seconds: float) -> dict[str, Any] | None:
        """The shell reply to ``msg_id`` within ``seconds`` (None: not by then, or the kernel
        died); other replies are skipped, as nbclient skips them."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                msg: dict[str, Any] = await ensure_async(self.kc.shell_channel.get_msg(timeout=1))
            except queue.Empty:
                if not await ensure_async(self.kc.is_alive()):
                    return None
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg
        return None

    def output(
        self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None, index: int
    ) -> NotebookNode | None:
        content = msg.get("content", {})
        if _always_kept(msg["msg_type"], content):
            return self._keep(outs, msg, display_id, index)
        left = self._left.setdefault(index, max_cell_output())
        size = _size(msg["msg_type"], content)
        if size <= left:
            self._left[index] = left - size
            return self._keep(outs, msg, display_id, index)
        self._left[index] = 0
        if msg["msg_type"] == "stream" and left > 0:  # keep the head of the text that fits
            head = dict(msg, content={**content, "text": content["text"][:left]})
            super().output(outs, head, display_id, index)
            size -= left
        self._drop(outs, index, size)
        return None

    def _keep(
        self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None, index: int
    ) -> NotebookNode | None:
        kept: NotebookNode | None = super().output(outs, msg, display_id, index)
        return kept

    def _drop(self, outs: list[NotebookNode], index: int, size: int) -> None:
        marker, dropped = self._markers.get(index, (None, 0))
        if marker is None or not any(out is marker for out in outs):  # cleared meanwhile
            marker = NotebookNode(output_type="stream", name="stderr", text="")  # type: ignore[no-untyped-call]
            dropped = 0
            outs.append(marker)
        dropped += size
        marker["text"] = (
            f"\n[reprokit: output truncated: this cell's output passed {max_cell_output()} "
            f"bytes; {dropped} more bytes were dropped]\n"
        )
        self._markers[index] = (marker, dropped)


SETTLE_WAIT_S = 75.0
"""Seconds the runner waits for :data:`SETTLE_EXPRESSION`'s answer (the kernel waits 60); past
them it interrupts the kernel and waits :data:`AFTER_INTERRUPT_S` more for the answer."""

AFTER_INTERRUPT_S = 5.0

SETTLE_EXPRESSION = (
    '(lambda m: getattr(m, "settle", lambda timeout: "")(60.0) if m else "")'
    '(__import__("sys").modules.get("reprokit.api.session"))'
)
"""Evaluated in the kernel after its last cell: :func:`reprokit.api.session.settle` if the
notebook imported reprokit's session (and its reprokit has it), else nothing; no name is
bound in the notebook's namespace."""


def _settled_problems(reply: Any) -> str:
    """The problems text :data:`SETTLE_EXPRESSION` gave back ("" if none, or no answer)."""
    import ast

    try:
        value = reply["content"]["user_expressions"]["reprokit"]
        text = ast.literal_eval(value["data"]["text/plain"]) if value["status"] == "ok" else ""
    except (KeyError, TypeError, ValueError, SyntaxError):
        return ""
    return text if isinstance(text, str) else ""


def _always_kept(msg_type: str, content: Mapping[str, Any]) -> bool:
    if msg_type == "error":
        return True
    data = content.get("data")
    return isinstance(data, Mapping) and any(str(k).startswith(_KEPT_MIME) for k in data)


def _size(msg_type: str, content: Mapping[str, Any]) -> int:
    if msg_type == "stream":
        return len(content.get("text", ""))
    data = content.get("data")
    if isinstance(data, Mapping):
        return sum(len(value) if isinstance(value, str) else 64 for value in data.values())
    return 0


class BoundedEngine(NBClientEngine):  # type: ignore[misc]
    """papermill's nbclient engine, with :class:`BoundedClient` in place of its client and
    the executed notebook saved at a bounded rate (:mod:`reprokit.runner._saving`)."""

    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, **kwargs: Any) -> Any:
        return execute_with_throttled_saves(cls, nb, kernel_name, **kwargs)

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: int = 60,
        execution_timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        # the same arguments as NBClientEngine.execute_managed_notebook passes its client
        kwargs = remove_args(["input_path"], **kwargs)
        safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
        final_kwargs = merge_kwargs(
            safe_kwargs,
            timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
        )
        return BoundedClient(nb_man, **final_kwargs).execute()


def register_engine() -> str:
    """Make :class:`BoundedEngine` known to papermill (idempotent); returns its name."""
    from papermill.engines import papermill_engines

    papermill_engines.register(ENGINE_NAME, BoundedEngine)
    return ENGINE_NAME


def finish_output(
    output: Path, execution: Mapping[str, Any], secrets: Mapping[str, str], kernel_log: Path
) -> None:
    """Mark the executed notebook with how its execution ended; put back the results whose
    outputs the kernel's death lost; scrub secret values from it and from the kernel log. A
    missing notebook (the kernel never started) is left missing."""
    _scrub_file(kernel_log, secrets)
    spool = spool_path(output)
    spooled, counts = read_spool(spool)
    with contextlib.suppress(OSError):
        spool.unlink(missing_ok=True)
    if not output.is_file():
        return
    text = scrub_notebook_text(output.read_text(encoding="utf-8"), secrets)
    node = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]
    node.metadata.setdefault("reprokit", {})["execution"] = dict(execution)
    recovered = [scrub_output(out, secrets) for out in spooled]
    put_back_results(node, recovered, counts, execution.get("output_index"))
    _redact_error_outputs(node, secrets)
    index = execution.get("output_index")
    if execution.get("status") != "failed" and isinstance(index, int):
        cell = node.cells[index]
        if not any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            cell.setdefault("outputs", []).append(
                nbformat.v4.new_output(  # type: ignore[no-untyped-call]
                    "error",
                    ename=str(execution.get("ename", "")),
                    evalue=str(execution.get("evalue", "")),
                    traceback=[f"{execution.get('ename')}: {execution.get('evalue')}"],
                )
            )
    atomic_write_text(output, nbformat.writes(node))  # type: ignore[no-untyped-call]


def redact_error(text: str, secrets: Mapping[str, str]) -> str:
    """An error text as it may be stored or printed: secret parameter values replaced by
    ``<secret NAME>``, credential-looking text (URL passwords, tokens) by ``<redacted>``."""
    return redact_text(scrub_text(text, secrets, json_escaped=False))


def _redact_error_outputs(node: NotebookNode, secrets: Mapping[str, str]) -> None:
    for cell in node.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                out["evalue"] = redact_error(str(out.get("evalue", "")), secrets)
                out["traceback"] = [redact_error(str(t), secrets) for t in out.get("traceback", [])]


def _scrub_file(path: Path, secrets: Mapping[str, str]) -> None:
    if not secrets or not path.is_file():
        return
    text = path.read_bytes().decode("utf-8", errors="replace")
    scrubbed = scrub_text(text, secrets, json_escaped=False)
    if scrubbed != text:
        atomic_write_text(path, scrubbed)
