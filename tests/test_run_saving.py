"""The executed notebook is saved at a bounded rate, never re-serialised whole per cell, and
still kept whole when execution ends however it ends. Real kernels; the only instrument is a
counting wrapper around ``nbformat.writes``, through which every whole-notebook
serialisation (papermill's and reprokit's) goes."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from run_helpers import write_notebook

from reprokit.notebook.files import load_notebook
from reprokit.runner._saving import SAVE_INTERVAL_S, ThrottledManager
from reprokit.runner.execute import execute_notebook


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The times of every ``nbformat.writes`` call while the test runs."""
    calls: list[float] = []
    original = nbformat.writes

    def counting(*args: Any, **kwargs: Any) -> str:
        calls.append(time.monotonic())
        return str(original(*args, **kwargs))

    monkeypatch.setattr(nbformat, "writes", counting)
    yield calls


def _bound(elapsed_s: float) -> int:
    """Writes a run may make: a handful at the end, plus one per save interval while it ran."""
    return 6 + int(elapsed_s / SAVE_INTERVAL_S)


def test_the_manager_writes_at_most_once_per_interval_and_always_at_the_end(
    tmp_path: Path, writes: list[float]
) -> None:
    node = nbformat.v4.new_notebook()
    node.metadata["papermill"] = {}
    node.cells = [nbformat.v4.new_code_cell(f"x = {i}") for i in range(1000)]
    output = tmp_path / "out.ipynb"
    started = time.monotonic()
    manager = ThrottledManager(node, output_path=str(output), progress_bar=False)
    manager.notebook_start()
    assert output.is_file()  # a runner killed from now on leaves a notebook
    for index, cell in enumerate(node.cells):  # what papermill's client does per cell
        manager.cell_start(cell, index)
        manager.cell_complete(cell, index)
    manager.notebook_complete()
    # once at the start, then at most once per interval, and at the end
    assert 2 <= len(writes) <= 2 + int((time.monotonic() - started) / SAVE_INTERVAL_S)
    saved = nbformat.read(output, as_version=4)
    assert {c.metadata.papermill["status"] for c in saved.cells} == {"completed"}
    assert all(c.metadata.papermill["duration"] >= 0 for c in saved.cells)
    assert saved.metadata.papermill["end_time"] is not None


def test_a_long_notebook_is_written_a_bounded_number_of_times_with_papermill_metadata(
    tmp_path: Path, writes: list[float]
) -> None:
    cells = 200
    source = write_notebook(
        tmp_path / "long.ipynb", [f"x = {i}\nx" for i in range(cells)], parameters="n = 1"
    )
    seen: list[tuple[int, int]] = []
    started = time.monotonic()
    outcome = execute_notebook(
        load_notebook(source),
        tmp_path / "out" / "long.ipynb",
        cwd=tmp_path,
        parameters={"n": 2},
        on_cell=lambda position, total: seen.append((position, total)),
    )
    elapsed = time.monotonic() - started
    assert outcome.ok, outcome
    assert len(writes) <= _bound(elapsed), (len(writes), elapsed)  # not ~2 per cell
    total = cells + 2  # the notebook's parameters cell and the injected one
    assert seen == [(k, total) for k in range(1, total + 1)]  # progress, cell by cell
    executed = nbformat.read(tmp_path / "out" / "long.ipynb", as_version=4)
    assert executed.metadata.papermill["parameters"] == {"n": 2}
    assert "injected-parameters" in executed.cells[1].metadata.tags
    assert {c.metadata.papermill["status"] for c in executed.cells} == {"completed"}
    assert executed.cells[-1].outputs[0]["data"]["text/plain"] == str(cells - 1)


def test_a_kernel_dying_between_saves_keeps_every_cell_before_it(
    tmp_path: Path, writes: list[float]
) -> None:
    before = [f"print('cell {i}')" for i in range(40)]
    fault = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"
    source = write_notebook(tmp_path / "dies.ipynb", [*before, fault, "print('never')"])
    output = tmp_path / "out" / "dies.ipynb"
    outcome = execute_notebook(load_notebook(source), output, cwd=tmp_path)
    assert outcome.status == "kernel_died" and outcome.failure is not None
    assert outcome.failure.index == 40
    cells = nbformat.read(output, as_version=4).cells
    printed = ["".join(o.get("text", "") for o in c.outputs) for c in cells[:40]]
    assert printed == [f"cell {i}\n" for i in range(40)]  # every cell before the fault
    assert cells[41].outputs == []
    assert [o.ename for o in cells[40].outputs if o.output_type == "error"] == ["DeadKernelError"]


def test_a_long_silent_cell_does_not_keep_the_cells_before_it_off_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cell that prints nothing for an hour used to leave the notebook as of the last save
    before it: the cells that ended within the save interval before it were not on disk (and
    none at all when it started within the first interval), so a ``SIGKILL`` lost them."""
    import reprokit.runner._outputs as outputs
    import reprokit.runner._saving as saving

    monkeypatch.setattr(saving, "SAVE_INTERVAL_S", 0.5)
    monkeypatch.setattr(outputs, "SAVE_CHECK_S", 0.1)
    wait = "import pathlib, time\nwhile not pathlib.Path('go').exists():\n    time.sleep(0.05)"
    source = write_notebook(tmp_path / "long.ipynb", ["print('first')", wait])
    output = tmp_path / "out" / "long.ipynb"
    seen: list[str] = []

    def watch() -> None:  # the notebook on disk while the second cell waits
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not seen:
            with contextlib.suppress(OSError, ValueError, IndexError):
                cell = nbformat.read(output, as_version=4).cells[0]
                seen.extend(o.get("text", "") for o in cell.outputs)
            time.sleep(0.05)
        (tmp_path / "go").touch()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        outcome = execute_notebook(load_notebook(source), output, cwd=tmp_path)
    finally:
        (tmp_path / "go").touch()
        watcher.join()
    assert outcome.ok, outcome
    assert seen == ["first\n"]


def test_papermill_replaces_the_runners_notebook_whole_and_only_it(tmp_path: Path) -> None:
    from papermill.iorw import write_ipynb

    from reprokit.runner._saving import written_whole

    ours, theirs = tmp_path / "out.ipynb", tmp_path / "theirs.ipynb"
    for path in (ours, theirs):
        path.write_text("{}")  # a file papermill would truncate and write in place
    theirs.chmod(0o600)
    before = {path: path.stat().st_ino for path in (ours, theirs)}
    node = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    with written_whole(str(ours)):
        write_ipynb(node, str(ours))  # papermill's last write, and its error-marker write
        write_ipynb(node, str(theirs))  # a user's own papermill call in the same process
        missing = str(tmp_path / "missing" / "out.ipynb")
        with pytest.raises(FileNotFoundError, match="doesn't exist"), written_whole(missing):
            write_ipynb(node, missing)
    assert ours.stat().st_ino != before[ours]  # a new file renamed over the old one
    assert theirs.stat().st_ino == before[theirs]  # papermill's own write, mode kept
    assert theirs.stat().st_mode & 0o777 == 0o600
    assert load_notebook(ours).cells[0].source == "1" == load_notebook(theirs).cells[0].source
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ipynb", "theirs.ipynb"]
    after = ours.stat().st_ino
    write_ipynb(node, str(ours))  # after the with: papermill's own handler again
    assert ours.stat().st_ino == after
