"""The kernel's results spool: what never reached the executed notebook (a kernel that died,
``clear_output()``, ``%%capture``) is put back from it, each in its cell and order, scrubbed,
and the spool is gone after (see reprokit.recording.spool, reprokit.runner.putback)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from reprokit.recording import spool
from reprokit.recording.spool import OWNER_ENV, SPOOL_ENV, read_spool, spool_path
from reprokit.report.display import result_bundle
from reprokit.results import encode_result, read_notebook
from reprokit.runner._outputs import finish_output


@pytest.fixture(autouse=True)
def fresh_spool(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process plays the runner's kernel: the spool is taken anew in each test."""
    monkeypatch.setattr(spool._Spool, "taken", False)
    monkeypatch.setattr(spool._Spool, "path", None)
    monkeypatch.setattr(spool._Spool, "cell", 0)
    yield


def _as_kernel(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setenv(SPOOL_ENV, str(path))
    monkeypatch.setenv(OWNER_ENV, str(os.getppid()))  # started by the runner: its parent


def _declare(cells: list[list[tuple[str, Any]]], counts: list[int | None]) -> list[list[dict]]:
    """Each cell's results declared through the spool; the bundles, per cell."""
    shown = []
    for declared, count in zip(cells, counts, strict=True):
        spool.cell_started()
        bundles = []
        for name, value in declared:
            bundles.append(result_bundle(encode_result(name, value)))
            spool.append_output(bundles[-1], {"reprokit": {}})
        spool.cell_done(count)
        shown.append(bundles)
    return shown


def _notebook(path: Path, shown: list[list[dict]], error_in: int | None = None) -> None:
    node = nbformat.v4.new_notebook()
    for k, bundles in enumerate(shown):
        cell = nbformat.v4.new_code_cell(f"cell {k}", execution_count=k + 1)
        cell.outputs = [nbformat.v4.new_output("display_data", data=b) for b in bundles]
        if k == error_in:
            cell.outputs.append(nbformat.v4.new_output("error", ename="DeadKernelError"))
        node.cells.append(cell)
    nbformat.write(node, path)


def _finish(output: Path, secrets: dict[str, str] | None = None, **execution: Any) -> Any:
    finish_output(output, {"status": "ok"} | execution, secrets or {}, output.with_suffix(".log"))
    return read_notebook(output)


def test_outputs_lost_when_the_kernel_died_go_back_before_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "nb.ipynb"
    _as_kernel(monkeypatch, spool_path(output))
    spool.take_spool()
    assert SPOOL_ENV not in os.environ  # a notebook a cell runs never inherits it
    first = _declare([[("a", 1.0)]], [1])
    spool.cell_started()  # the kernel dies in this cell: it never says its In [N]
    lost = [result_bundle(encode_result(n, v)) for n, v in (("token", "s3cr3t-value"), ("c", 2))]
    for bundle in lost:
        spool.append_output(bundle, {"reprokit": {}})
    assert stat.S_IMODE(spool_path(output).stat().st_mode) == 0o600
    _notebook(output, [*first, lost[:1]], error_in=1)
    found = _finish(output, {"key": "s3cr3t-value"}, status="kernel_died", output_index=1)
    assert not spool_path(output).exists()
    assert "s3cr3t-value" not in output.read_text()
    assert [(o.cell, o.result.name) for o in found.outputs] == [(0, "a"), (1, "token"), (1, "c")]
    outputs = nbformat.read(output, as_version=4).cells[1].outputs
    assert [o.output_type for o in outputs] == ["display_data", "display_data", "error"]
    assert outputs[1].metadata["reprokit"]["recovered"] is True


def test_a_result_clear_output_erased_goes_back_in_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shown results are the last of their cell (clear_output erases the earlier ones):
    an erased copy of the same value must not be taken for the shown one, and the last
    value of a name stays the last (an outside tester's lock kept a provisional 0.5)."""
    output = tmp_path / "nb.ipynb"
    _as_kernel(monkeypatch, spool_path(output))
    loop = [("n", 1000), ("loss", 1.0), ("n", 1000), ("loss", 2.0)]
    cells = [loop, [("val", 0.5)], [("n", 1000), ("val", 0.9)]]
    declared = _declare(cells, [1, 2, 3])
    shown = [declared[0][2:], [], declared[2]]  # cleared, captured, shown
    _notebook(output, shown)
    found = _finish(output)
    assert [(o.cell, o.result.name, o.result.value) for o in found.outputs] == [
        (0, "n", 1000), (0, "loss", 1.0), (0, "n", 1000), (0, "loss", 2.0),
        (1, "val", 0.5), (2, "n", 1000), (2, "val", 0.9),
    ]  # fmt: skip
    assert found.results["val"].value == 0.9 and found.results["loss"].value == 2.0


def test_a_captured_result_shown_in_a_later_cell_is_not_put_back_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "nb.ipynb"
    _as_kernel(monkeypatch, spool_path(output))
    declared = _declare([[("a", 1)], []], [1, 2])
    _notebook(output, [[], declared[0]])  # %%capture cap; then cap.show() in the next cell
    assert [o.cell for o in _finish(output).outputs] == [1]


def test_a_result_the_spool_lacks_stands_and_the_rest_still_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "nb.ipynb"
    _as_kernel(monkeypatch, spool_path(output))
    declared = _declare([[("a", 1), ("b", 2)]], [1])
    other = result_bundle(encode_result("other", 9))
    _notebook(output, [[other, declared[0][1]]])
    assert [o.result.name for o in _finish(output).outputs] == ["other", "a", "b"]


def test_only_the_kernel_the_runner_started_writes_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook a cell executes (papermill from a cell) started a kernel that inherited the
    variable and wrote its results into the parent's spool, put back into the parent."""
    path = tmp_path / "nb.results.jsonl"
    monkeypatch.setenv(SPOOL_ENV, str(path))
    monkeypatch.setenv(OWNER_ENV, str(os.getppid() + 1))  # someone else's kernel
    _declare([[("a", 1)]], [1])
    assert not path.exists()


def test_a_spool_is_never_followed_or_waited_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("")
    link = tmp_path / "nb.results.jsonl"
    link.symlink_to(target)
    _as_kernel(monkeypatch, link)
    _declare([[("token", "s3cr3t")]], [1])
    assert target.read_text() == ""  # not written through the link
    assert read_spool(link) == ([], {})
    fifo = tmp_path / "f.results.jsonl"
    os.mkfifo(fifo)
    assert read_spool(fifo) == ([], {})  # returns at once (a FIFO hung the runner)
    monkeypatch.setattr(spool._Spool, "taken", False)
    _as_kernel(monkeypatch, fifo)
    _declare([[("a", 1)]], [1])  # nor does the kernel wait on it


def test_a_cut_last_line_and_foreign_lines_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "nb.results.jsonl"
    _as_kernel(monkeypatch, path)
    _declare([[("a", 1), ("b", 2)]], [1])
    with path.open("ab") as handle:
        handle.write(b'[1]\n{"data": 3, "cell": 1}\nnot json\n{"cell": true}\n{"data": {"appl')
    entries, counts = read_spool(path)
    assert len(entries) == 2 and counts == {1: 1}


def test_a_stale_spool_is_removed_before_the_kernel_starts(tmp_path: Path) -> None:
    """An interrupted run left its spool in the output folder; the next run into the same
    folder appended to it and put back results it never declared."""
    from reprokit.runner.execute import _fresh_spool

    output = tmp_path / "nb.ipynb"
    spool_path(output).write_text('{"data": {}, "cell": 1}\n')
    assert _fresh_spool(output) == {OWNER_ENV: str(os.getpid())}
    assert not spool_path(output).exists()
