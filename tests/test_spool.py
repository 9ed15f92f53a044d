"""The kernel's results spool: what a kernel that died lost on its way to the notebook is put
back from it, scrubbed, and the spool is gone after (see reprokit.recording.spool)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import nbformat
import pytest

from reprokit.recording.spool import SPOOL_ENV, append_output, read_spool, spool_path
from reprokit.report.display import result_bundle
from reprokit.results import encode_result, read_notebook
from reprokit.runner._outputs import finish_output


def _spool_results(monkeypatch: pytest.MonkeyPatch, spool: Path, values: dict[str, object]) -> list:
    monkeypatch.setenv(SPOOL_ENV, str(spool))
    bundles = []
    for name, value in values.items():
        bundle = result_bundle(encode_result(name, value))
        append_output(bundle, {"reprokit": {"local_dir": None}})
        bundles.append(bundle)
    return bundles


def _notebook(path: Path, shown: list[dict]) -> None:
    """Two code cells that ran; the second shows ``shown`` and then died (an error output)."""
    node = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell("import reprokit", execution_count=1)
    second = nbformat.v4.new_code_cell("declare(); os._exit(1)", execution_count=2)
    second.outputs = [
        nbformat.v4.new_output("display_data", data=b, metadata={"reprokit": {}}) for b in shown
    ]
    node.cells = [first, second, nbformat.v4.new_code_cell("after()")]
    nbformat.write(node, path)


def test_outputs_lost_when_the_kernel_died_are_put_back_before_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "nb.ipynb"
    spool = spool_path(output)
    values = {"a": 1.0, "token": "s3cr3t-value", "c": [1, 2]}
    bundles = _spool_results(monkeypatch, spool, values)
    assert stat.S_IMODE(spool.stat().st_mode) == 0o600
    _notebook(output, bundles[:1])  # only the first reached the notebook
    execution = {"status": "kernel_died", "output_index": 1, "ename": "DeadKernelError"}
    finish_output(output, execution, {"key": "s3cr3t-value"}, tmp_path / "nb.kernel.log")
    assert not spool.exists()
    text = output.read_text()
    assert "s3cr3t-value" not in text and "<secret key>" in text
    found = read_notebook(output).results
    assert list(found) == ["a", "token", "c"] and found["c"].value == [1, 2]
    outputs = nbformat.read(output, as_version=4).cells[1].outputs
    assert [o.output_type for o in outputs] == ["display_data"] * 3 + ["error"]
    assert [o.metadata["reprokit"].get("recovered") for o in outputs[:3]] == [None, True, True]


def test_nothing_is_added_when_every_output_arrived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "nb.ipynb"
    bundles = _spool_results(monkeypatch, spool_path(output), {"a": 1, "b": 2})
    _notebook(output, bundles)
    before = nbformat.read(output, as_version=4).cells[1].outputs
    finish_output(output, {"status": "ok"}, {}, tmp_path / "nb.kernel.log")
    assert nbformat.read(output, as_version=4).cells[1].outputs == before
    assert not spool_path(output).exists()


def test_without_a_known_cell_they_go_to_the_last_cell_that_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "nb.ipynb"
    _spool_results(monkeypatch, spool_path(output), {"a": 1})
    _notebook(output, [])
    finish_output(output, {"status": "interrupted"}, {}, tmp_path / "nb.kernel.log")
    cells = nbformat.read(output, as_version=4).cells
    assert len(cells[1].outputs) == 1 and not cells[2].outputs


def test_a_spool_is_read_as_untrusted_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "nb.results.jsonl"
    _spool_results(monkeypatch, spool, {"a": 1, "b": 2})
    with spool.open("ab") as handle:  # the kernel died in the middle of a line
        handle.write(b'{"data": {"application/vnd.reprokit.result+json": {"na')
    with spool.open("ab") as handle:
        handle.write(b'\n[1, 2]\n{"data": 3}\nnot json\n')
    assert len(read_spool(spool)) == 2
    link = tmp_path / "link.results.jsonl"
    link.symlink_to(spool)
    assert read_spool(link) == []  # never followed
    assert read_spool(tmp_path / "none.results.jsonl") == []


def test_no_spool_is_written_outside_a_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SPOOL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    append_output(result_bundle(encode_result("a", 1)), {})
    assert os.listdir(tmp_path) == []
    monkeypatch.setenv(SPOOL_ENV, str(tmp_path / "missing" / "x.results.jsonl"))
    append_output(result_bundle(encode_result("a", 1)), {})  # unwritable: skipped quietly


def test_a_result_an_output_clear_erased_goes_back_in_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``clear_output()`` in a training loop erased the earlier epochs' outputs: each goes
    back into its own cell (found by execution count, the shell's offset measured on the
    results that arrived), before the result declared after it, so the last value of a
    name stays the last."""
    output = tmp_path / "nb.ipynb"
    monkeypatch.setenv(SPOOL_ENV, str(spool_path(output)))
    declared = [("a", 1.0, 2), ("loss", 1.0, 3), ("loss", 2.0, 3), ("b", 5.0, 3)]
    bundles = []
    for name, value, count in declared:  # IPython 9 counts the running cell's successor
        bundles.append(result_bundle(encode_result(name, value)))
        append_output(bundles[-1], {"reprokit": {}}, count)
    node = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell("declare a", execution_count=1)
    second = nbformat.v4.new_code_cell("loop with clear_output", execution_count=2)
    first.outputs = [nbformat.v4.new_output("display_data", data=bundles[0])]
    second.outputs = [nbformat.v4.new_output("display_data", data=b) for b in bundles[2:]]
    node.cells = [first, second]
    nbformat.write(node, output)
    finish_output(output, {"status": "ok"}, {}, tmp_path / "nb.kernel.log")
    found = read_notebook(output)
    assert [(o.cell, o.result.name, o.result.value) for o in found.outputs] == [
        (0, "a", 1.0),
        (1, "loss", 1.0),
        (1, "loss", 2.0),
        (1, "b", 5.0),
    ]
    assert found.results["loss"].value == 2.0


def test_a_notebook_result_the_spool_lacks_puts_nothing_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spool that does not describe the notebook's execution (a result shown that it does
    not hold) is not trusted for the others."""
    output = tmp_path / "nb.ipynb"
    _spool_results(monkeypatch, spool_path(output), {"a": 1, "b": 2})
    other = result_bundle(encode_result("other", 9))
    _notebook(output, [other])
    finish_output(output, {"status": "ok"}, {}, tmp_path / "nb.kernel.log")
    assert list(read_notebook(output).results) == ["other"]
