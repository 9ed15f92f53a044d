"""Executors without a cluster: option checks, the retry rule, resources, what a Dask task
carries (secrets sealed), the scheduler connection, the report lines."""

from __future__ import annotations

import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from reprokit.cli import main
from reprokit.exceptions import UsageError
from reprokit.options import ExecutionOptions
from reprokit.report.describe import describe_done, describe_failure, describe_retries
from reprokit.runner.device import DeviceChoice
from reprokit.runner.execute import _Clock
from reprokit.runner.executors import (
    MAX_RETRIES,
    Slot,
    Turns,
    device_choice,
    not_started,
    required_resources,
    retry_reason,
)
from reprokit.runner.kernels import KERNEL_SILENT, NOTEBOOK_TIMEOUT
from reprokit.runner.plan import Executed, PlannedRun, RunOutcome


@pytest.mark.parametrize(
    "address", ["tcp://127.0.0.1:8786", "tls://scheduler.lab.example:8786", "tcp://[::1]:8786"]
)
def test_a_scheduler_address_is_accepted_with_the_dask_executor(address: str) -> None:
    assert ExecutionOptions(executor="dask", scheduler=address).scheduler == address


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:8786", "tcp://host", "http://host:8786", "tcp://host:0", "tcp://host:70000", ""],
)
def test_a_malformed_scheduler_address_is_a_usage_error(address: str) -> None:
    with pytest.raises(UsageError, match="tcp://HOST:PORT") as caught:
        ExecutionOptions(executor="dask", scheduler=address)
    assert caught.value.option == "--scheduler"


def test_a_scheduler_needs_the_dask_executor() -> None:
    with pytest.raises(UsageError, match="needs --executor dask"):
        ExecutionOptions(scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(UsageError, match="--executor 'ray'"):
        ExecutionOptions(executor="ray")  # type: ignore[arg-type]


def test_the_cli_refuses_a_scheduler_without_dask_in_one_line(tmp_path: Path) -> None:
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text("{}")
    result = CliRunner().invoke(main, ["run", str(notebook), "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "needs --executor dask" in result.output and "Traceback" not in result.output


def _executed(status: str, message: str = "") -> Executed:
    outcome = RunOutcome("nb.ipynb", status, "out/nb.ipynb", "out", 1.0, "cpu", message=message)  # type: ignore[arg-type]
    return Executed(outcome, None, 0)


def test_a_dead_kernel_is_retried_a_bounded_number_of_times() -> None:
    died = _executed("kernel_died", "Kernel died while waiting for execute reply.")
    assert retry_reason(died, 0) == "the kernel died"
    assert retry_reason(died, MAX_RETRIES - 1) is not None
    assert retry_reason(died, MAX_RETRIES) is None


@pytest.mark.parametrize("status", ["ok", "failed", "timeout", "interrupted"])
def test_only_a_dead_kernel_is_retried(status: str) -> None:
    """A failing cell, a limit or an interruption is the notebook's outcome, not bad luck."""
    assert retry_reason(_executed(status), 0) is None


def test_a_kernel_silent_as_it_started_is_retried_but_not_a_cell_past_its_limit() -> None:
    """No answer within the start-up limit: none of the notebook ran, it may start anew."""
    silent = _executed("timeout", f"{KERNEL_SILENT} within 60 s")
    assert retry_reason(silent, 0) == "the kernel did not answer as it started"
    assert retry_reason(silent, MAX_RETRIES) is None
    assert retry_reason(_executed("timeout", "Cell execution timed out"), 0) is None


@pytest.mark.parametrize("value", [0, -1.0])
def test_a_start_timeout_must_be_positive(value: float) -> None:
    with pytest.raises(UsageError, match="--start-timeout must be a positive number"):
        ExecutionOptions(start_timeout=value)


def test_a_cuda_notebook_needs_a_gpu_worker_of_an_existing_cluster() -> None:
    assert required_resources("cuda", embedded=False) == {"GPU": 1}
    assert required_resources("cpu", embedded=False) is None
    # an embedded cluster's workers are this machine, whose GPU the device choice checked
    assert required_resources("cuda", embedded=True) is None


def test_cuda_with_a_scheduler_is_the_workers_business_not_this_machines() -> None:
    options = ExecutionOptions(device="cuda", executor="dask", scheduler="tcp://127.0.0.1:1")
    assert device_choice(options).device == "cuda"  # no GPU here: not probed
    assert device_choice(ExecutionOptions(device="cpu")).env == {"CUDA_VISIBLE_DEVICES": ""}


def _plan(tmp_path: Path, parameters: dict[str, object]) -> PlannedRun:
    import nbformat

    node = nbformat.v4.new_notebook()
    return PlannedRun(tmp_path / "nb.ipynb", node, tmp_path / "out", parameters, {})


def test_a_task_carries_no_outputs_of_the_source_notebook(tmp_path: Path) -> None:
    import nbformat

    from reprokit.runner.dask_executor import make_task

    node = nbformat.v4.new_notebook()
    node.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("# t")]
    node.cells[0].outputs = [nbformat.v4.new_output("stream", text="big " * 1000)]
    plan = PlannedRun(tmp_path / "nb.ipynb", node, tmp_path / "out", {}, {})
    sent = make_task(plan, DeviceChoice("cpu", "cpu"), ExecutionOptions()).plan.node
    assert sent.cells[0].outputs == [] and sent.cells[0].source == "x = 1"
    assert sent.cells[1].source == "# t" and node.cells[0].outputs  # the plan's own is kept


def test_a_task_seals_secrets_and_hidden_parameters(tmp_path: Path) -> None:
    from reprokit.runner.dask_executor import make_task

    canary, token = "s3cr3t-canary-value", "ghp_" + "a" * 36
    options = ExecutionOptions(secret_parameters={"password": canary})
    task = make_task(
        _plan(tmp_path, {"seed": 3, "token": token}), DeviceChoice("cpu", "cpu"), options
    )
    assert task.plan.parameters == {"seed": 3}  # clear parameters travel in the plan
    assert task.options.secret_parameters == {}
    assert task.sealed.parameters == {"token": token}
    assert task.sealed.secrets == {"password": canary}
    for shown in (repr(task), str(task), repr(task.sealed)):
        assert canary not in shown and token not in shown
    sent = pickle.dumps(task)  # what the scheduler relays, and a worker may log whole
    assert canary.encode() not in sent and token.encode() not in sent
    assert pickle.loads(sent).sealed.secrets == {"password": canary}
    assert pickle.loads(sent).sealed.parameters == {"token": token}


def test_an_unreachable_scheduler_is_a_usage_error_at_once() -> None:
    pytest.importorskip("distributed")
    from reprokit.runner.dask_executor import connect, import_distributed

    with socket.socket() as held:  # bound, never listening: refused, and nobody else's
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(UsageError, match=rf"--scheduler tcp://127.0.0.1:{port}: cannot"):
            connect(import_distributed(), f"tcp://127.0.0.1:{port}")
    assert time.monotonic() - started < 60  # refused is answered, never waited out forever


def test_a_missing_distributed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from reprokit.runner.dask_executor import import_distributed

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(UsageError, match=r"reprokit-nb\[dask\]") as caught:
        import_distributed()
    assert caught.value.exit_code == 2


def test_outcomes_say_where_they_ran_and_why_they_were_retried(tmp_path: Path) -> None:
    reasons = ("the kernel died on host (tcp://10.0.0.2:1)", "worker tcp://10.0.0.3:1 was lost")
    assert describe_retries(reasons[:1]) == f"retried 1 time ({reasons[0]})"
    outcome = RunOutcome(
        "nb.ipynb", "ok", "out/nb.ipynb", "out", 1.0, "cpu", executed_by="node7 (tcp://x:1)",
        retries=reasons,
    )  # fmt: skip
    assert "on node7 (tcp://x:1)" in describe_done(outcome)
    assert "retried 2 times (the kernel died" in describe_done(outcome)
    failed = not_started(_plan(tmp_path, {}), "cpu").executed.outcome
    assert "not started" in describe_failure(failed)
    assert "executed notebook" not in describe_failure(failed)  # there is none
    assert "->" not in describe_done(failed) and "not started" in describe_done(failed)


def test_a_slot_is_taken_once_given_back_once_and_in_the_order_submitted() -> None:
    turns = Turns(1)
    entered: list[str] = []
    first, second = Slot(turns, 0, lambda: entered.append("first")), Slot(turns, 1, lambda: None)
    assert not second.try_enter()  # the first notebook waits too: the one slot is its
    assert first.try_enter() and first.try_enter() and entered == ["first"]
    assert not second.try_enter()  # taken
    first.leave()
    first.leave()  # once only: one slot comes back
    assert second.try_enter()
    third = Slot(turns, 2, lambda: None)
    assert not third.try_enter()
    second.leave()
    never = Slot(turns, 3, lambda: None)
    never.leave()  # failed before its kernel was ready: takes nothing, gives nothing
    assert third.try_enter() and not Slot(turns, 4, lambda: None).try_enter()


def test_two_slots_go_to_the_first_two_waiting_whichever_kernel_is_ready_first() -> None:
    turns = Turns(2)
    slots = [Slot(turns, ticket, lambda: None) for ticket in range(3)]
    assert not slots[2].try_enter()  # ready first, but two earlier notebooks wait
    assert slots[1].try_enter() and not slots[2].try_enter() and slots[0].try_enter()
    slots[1].leave()
    assert slots[2].try_enter()


def test_the_notebook_time_limit_does_not_count_a_pause() -> None:
    class Watch:
        reason: str | None = None

        def kill(self, reason: str) -> None:
            self.reason = reason

    watch = Watch()
    clock = _Clock(watch, 3.0)  # type: ignore[arg-type]  (3 s: a stall before the pause)
    clock.run()
    with clock.paused():
        time.sleep(3.5)  # past the limit, paused: not killed
    assert watch.reason is None and clock.waited >= 3.5
    deadline = time.monotonic() + 30
    while watch.reason is None and time.monotonic() < deadline:
        time.sleep(0.05)
    clock.stop()
    assert watch.reason == NOTEBOOK_TIMEOUT  # the second of the limit left ran out later


def test_junit_names_the_worker_of_each_notebook() -> None:
    import xml.etree.ElementTree as ET

    from reprokit.compare.verify import Verdict
    from reprokit.report.junit import junit_xml

    verdict = Verdict("nb.ipynb", True, {}, (), executed_by="node7 (tcp://10.0.0.2:4001)")
    suite = ET.fromstring(junit_xml([verdict])).find("testsuite")
    assert suite is not None
    found = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert found["executed_by"] == "node7 (tcp://10.0.0.2:4001)"


_SIGNAL_ON_A_WORKER = """
import signal, sys, threading, time
from concurrent.futures import Future
from reprokit.runner import kernels

wait = {"completed": lambda f: next(kernels.completed([f])).result(), "result": kernels.result_of}
ended: Future[str] = Future()

def worker() -> None:  # takes the signal itself, then finishes once the handler has run
    time.sleep(0.5)  # the main thread is waiting by now
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    kernels._interrupt.wait()
    ended.set_result("handled")

with kernels.stop_kernels_on_signals():
    if sys.argv[1] == "held":  # the signal lands while this thread holds the kernels' lock
        with kernels.on_interrupt(lambda: None), kernels._live_lock:
            signal.raise_signal(signal.SIGTERM)
        print("handled", kernels.interrupting_signal())
        sys.exit()
    threading.Thread(target=worker, daemon=True).start()
    print(wait[sys.argv[1]](ended), kernels.interrupting_signal())
"""


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="pthread_kill is POSIX")
@pytest.mark.parametrize("how", ["completed", "result", "held"])
def test_the_main_thread_handles_a_signal_a_worker_thread_took(how: str) -> None:
    """CPython runs a handler only on the main thread: waiting for executions there without a
    limit left a signal another thread took unhandled until a notebook ended (a hung runner).
    And the handler, run on the thread it interrupts, may find that thread holding the
    kernels' lock (``held``): it must not wait for itself."""
    done = subprocess.run(
        [sys.executable, "-c", _SIGNAL_ON_A_WORKER, how],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )  # unhandled, it would wait forever: TimeoutExpired
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["handled", str(int(signal.SIGTERM))]


def test_waiting_for_records_ends_a_grace_after_an_interruption() -> None:
    """A record MLflow keeps retrying must not hold a signalled runner: after the
    interruption the wait lasts the grace at most, and names what is not done."""
    from concurrent.futures import Future

    from reprokit.runner import kernels

    done: Future[int] = Future()
    done.set_result(1)
    assert kernels.wait_unless_interrupted([done], 0.1) == set()
    never: Future[int] = Future()
    kernels.interrupt_all()
    try:
        started = time.monotonic()
        assert kernels.wait_unless_interrupted([done, never], 0.3) == {never}
        assert time.monotonic() - started < 20  # the grace, not for ever
    finally:
        kernels.clear_interrupt()
