"""Notebooks written elsewhere (issue 13, items 1-6), without a kernel: executed notebooks are
built the way papermill leaves them, source notebooks the way other tools write them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

from reprokit.exceptions import ExecutionError, InputError, PathError, UsageError
from reprokit.notebook.files import declared_parameters, load_notebook, notebook_language
from reprokit.recording.lock import output_fingerprints, output_ignored
from reprokit.report.describe import cell_label
from reprokit.runner.failure import (
    ERROR_MARKER_TAG,
    find_failure,
    missing_exception,
    stopped_early,
    unexpected_errors,
)
from reprokit.runner.plan import choose_kernel

v4 = nbformat.v4


def _marker() -> Any:
    cell = v4.new_markdown_cell("An Exception was encountered at 'In [3]'.")
    cell.metadata["tags"] = [ERROR_MARKER_TAG]
    return cell


def _code(source: str, count: int | None = None, outputs: list[Any] | None = None) -> Any:
    cell = v4.new_code_cell(source, execution_count=count, outputs=outputs or [])
    return cell


def _stderr(text: str) -> Any:
    return v4.new_output("stream", name="stderr", text=text)


def _error(ename: str, evalue: str) -> Any:
    return v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _write(tmp_path: Path, cells: list[Any]) -> Path:
    path = tmp_path / "executed.ipynb"
    nbformat.write(v4.new_notebook(cells=cells), path)
    return path


def test_an_unknown_magic_is_named_from_stderr_not_a_dead_kernel(tmp_path: Path) -> None:
    failing = _code("%undefined-line-magic", 2, [_stderr("UsageError: Line magic function ")])
    failing.outputs[0]["text"] += "`%undefined-line-magic` not found.\n"
    failing.metadata["papermill"] = {"exception": True}
    output = _write(tmp_path, [_marker(), _code("x = 1", 1), _marker(), failing])
    failure = find_failure(output, "failed")
    assert failure is not None
    assert (failure.ename, failure.index, failure.execution_count) == ("UsageError", 1, 2)
    assert "`%undefined-line-magic` not found." in failure.evalue


def test_a_failure_without_any_error_text_is_not_called_a_dead_kernel(tmp_path: Path) -> None:
    failing = _code("%%R\nprint(1)", 1)
    failing.metadata["papermill"] = {"exception": True}
    failure = find_failure(_write(tmp_path, [failing]), "failed")
    assert failure is not None and failure.ename == "CellExecutionError"


def test_cells_are_numbered_in_the_file_despite_old_error_markers(tmp_path: Path) -> None:
    # the file holds markers of an earlier papermill run; papermill drops them, runs, and
    # adds two new ones: the 7th cell of the file (index 6) must be named, not the 4th
    source = v4.new_notebook(
        cells=[
            _marker(),
            v4.new_markdown_cell("# Title"),
            _code("a = 1"),
            _marker(),
            _code("b = 2"),
            v4.new_markdown_cell("text"),
            _code("1/0"),
        ]
    )
    failing = _code("1/0", 3, [_error("ZeroDivisionError", "division by zero")])
    executed = [
        _marker(),
        v4.new_markdown_cell("# Title"),
        _code("a = 1", 1),
        _code("b = 2", 2),
        v4.new_markdown_cell("text"),
        _marker(),
        failing,
    ]
    failure = find_failure(_write(tmp_path, executed), "failed", source=source)
    assert failure is not None and failure.index == 6 and failure.output_index == 6
    assert cell_label(failure.index, failure.execution_count) == "cell 7 (In [3])"
    error = ExecutionError("nb.ipynb", cell_index=failure.index, ename="ZeroDivisionError")
    assert "nb.ipynb: cell 7 failed" in str(error)


def test_injected_parameters_cells_are_not_counted(tmp_path: Path) -> None:
    params = _code("n = 1")
    params.metadata["tags"] = ["parameters"]
    source = v4.new_notebook(cells=[params, _code("raise ValueError(n)")])
    injected = _code("n = 2", 2)
    injected.metadata["tags"] = ["injected-parameters"]
    executed = [
        _marker(),
        _code("n = 1", 1),
        injected,
        _marker(),
        _code("raise ValueError(n)", 3, [_error("ValueError", "2")]),
    ]
    failure = find_failure(_write(tmp_path, executed), "failed", source=source, injected=True)
    assert failure is not None and failure.index == 1 and failure.execution_count == 3


def test_magics_in_the_parameters_cell_still_declare_its_names() -> None:
    cell = v4.new_code_cell("%matplotlib inline\n!echo hi\nalpha = 0.5\nsteps: int = 10\n")
    cell.metadata["tags"] = ["parameters"]
    node = v4.new_notebook(cells=[v4.new_markdown_cell("# t"), cell])
    assert declared_parameters(node) == ("alpha", "steps")


def test_a_real_syntax_error_in_the_parameters_cell_names_file_cell_and_line() -> None:
    lines = [f"p{k} = {k}" for k in range(13)] + ["q = (1,"]
    cell = v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["parameters"]
    node = v4.new_notebook(cells=[v4.new_markdown_cell("# t"), cell])
    with pytest.raises(InputError, match=r"^nb\.ipynb: cell 2 .* line 14: ") as caught:
        declared_parameters(node, "nb.ipynb")
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


def test_kernel_python_is_python3_and_r_without_a_kernel_is_refused(tmp_path: Path) -> None:
    def spec(name: str) -> Any:
        kernelspec = {"name": name, "language": "python", "display_name": "Python"}
        return v4.new_notebook(metadata={"kernelspec": kernelspec})

    assert choose_kernel("nb.ipynb", spec("python")) == "python3"  # jupyter_client's alias
    assert choose_kernel("nb.ipynb", spec("conda-env-x-py")) == "python3"  # by language
    script = tmp_path / "analysis.R"
    script.write_text("# %%\nx <- c(1, 2)\nprint(mean(x))\n")
    r_node = load_notebook(script)
    assert notebook_language(r_node, script) == "r"
    with pytest.raises(UsageError, match=r"analysis\.R: the notebook is written in R; .*python3"):
        choose_kernel(str(script), r_node)
    with pytest.raises(UsageError, match="no Jupyter kernel named 'ir'"):
        choose_kernel(str(script), r_node, "ir")


def test_julia_by_extension_and_rmarkdown_by_chunks(tmp_path: Path) -> None:
    julia = tmp_path / "fit.jl"
    julia.write_text("# %%\nx = [1, 2]\nprintln(sum(x))\n")
    rmd = tmp_path / "report.Rmd"
    rmd.write_text("---\ntitle: r\n---\n\n```{r}\nx <- 1\n```\n")
    assert notebook_language(load_notebook(julia), julia) == "julia"
    assert notebook_language(load_notebook(rmd), rmd) == "r"


def test_a_marimo_notebook_without_marimo_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "app.py"
    path.write_text(
        "import marimo\n\napp = marimo.App()\n\n\n@app.cell\ndef _():\n    x = 1\n"
        '    return (x,)\n\n\nif __name__ == "__main__":\n    app.run()\n'
    )
    with pytest.raises(PathError, match="not a notebook jupytext can read") as caught:
        load_notebook(path)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


def test_raises_exception_errors_are_expected_and_a_silent_one_fails(tmp_path: Path) -> None:
    tagged = _code("1/0", 1, [_error("ZeroDivisionError", "division by zero")])
    tagged.metadata["tags"] = ["raises-exception"]
    node = v4.new_notebook(cells=[tagged, _code("print(1)", 2)])
    assert not unexpected_errors(node)
    quiet = _code("x = 1", 1)
    quiet.metadata["tags"] = ["raises-exception"]
    output = _write(tmp_path, [quiet, _code("print(1)", 2)])
    failure = missing_exception(output)
    assert failure is not None and failure.ename == "NoExceptionRaised" and failure.index == 0
    commented = _code("# NBVAL_RAISES_EXCEPTION\n1/0", 1, [_error("ZeroDivisionError", "")])
    assert not unexpected_errors(v4.new_notebook(cells=[commented]))


def test_a_silent_raises_exception_cell_is_named_before_a_later_failure(tmp_path: Path) -> None:
    """The first failure in the notebook's order is the one said: the tagged cell that raised
    nothing, not the later cell that failed (maybe because of it)."""
    from reprokit.runner.execute import _settle

    quiet = _code("x = 1", 1)
    quiet.metadata["tags"] = ["raises-exception"]
    broken = _code("y = x.missing", 2, [_error("AttributeError", "no missing")])
    output = _write(tmp_path, [quiet, broken])
    status, failure = _settle(output, "failed", "AttributeError", None, False)
    assert status == "failed" and failure is not None
    assert (failure.ename, failure.index) == ("NoExceptionRaised", 0)


def test_a_sys_exit_that_left_cells_unrun_is_named(tmp_path: Path) -> None:
    """papermill takes ``sys.exit(0)`` for a clean stop: the run is ok, but the cells after it
    never ran, and their results were silently missing from the lock (a stranger's report)."""
    from reprokit.report.describe import describe_done
    from reprokit.runner.plan import RunOutcome

    first = _code("import sys\nreprokit.result('a', 1)", 1)
    exits = _code("sys.exit(0)", 2, [_error("SystemExit", "0")])
    output = _write(tmp_path, [first, exits, v4.new_markdown_cell("# more"), _code("b = 2")])
    stop = stopped_early(output)
    assert stop is not None and (stop.index, stop.ename, stop.evalue) == (1, "SystemExit", "0")
    done = RunOutcome("nb.ipynb", "ok", str(output), str(tmp_path), 1.0, "cpu", stopped_by=stop)
    assert "stopped early: cell 2 raised SystemExit: 0" in describe_done(done)
    last = _write(tmp_path, [first, exits, _code("", None), v4.new_markdown_cell("# end")])
    assert stopped_early(last) is None  # nothing with code left unrun: a plain last-cell exit
    assert stopped_early(_write(tmp_path, [first, _code("b = 2", 2)])) is None


def _printed(source: str, text: str, tags: list[str]) -> Any:
    cell = _code(source, 1, [v4.new_output("stream", name="stdout", text=text)])
    cell.metadata["tags"] = tags
    return cell


_ANNOTATED = [
    ("print(time.time())", ["nbval-ignore-output"]),
    ("# NBVAL_IGNORE_OUTPUT\nprint(time.time())", []),
    ("# NBVAL_SKIP\nprint(time.time())", []),
    ("print(time.time())", ["nbval-skip"]),
]


def test_nbval_annotations_leave_a_cell_out_of_the_output_comparison() -> None:
    def fingerprints(text: str) -> list[str]:
        cells = [_printed(source, text, tags) for source, tags in _ANNOTATED]
        assert all(output_ignored(cell) for cell in cells)
        return [f.digest for f in output_fingerprints(v4.new_notebook(cells=cells))]

    assert fingerprints("1796178997.16\n") == fingerprints("1796179021.05\n")
    plain = _printed("print(1)  # NBVAL_SKIP later", "1\n", [])
    assert not output_ignored(plain)
    assert output_fingerprints(v4.new_notebook(cells=[plain]))[0].text == "1\n"


def test_a_multi_line_error_never_starts_a_line_of_its_own(tmp_path: Path) -> None:
    """A notebook's error text printed at column 0 is read by GitHub as a command
    (``::warning::…``): its lines after the first are indented (a stranger's report)."""
    from reprokit.report.describe import describe_failure
    from reprokit.runner.failure import CellFailure
    from reprokit.runner.plan import RunOutcome

    failure = CellFailure(2, 2, "ValueError", "bad\n::warning::injected\r\n::error::x")
    failed = RunOutcome("nb.ipynb", "failed", "out.ipynb", str(tmp_path), 1.0, "cpu")
    for outcome in (
        failed.__class__(**{**failed.__dict__, "failure": failure}),
        failed.__class__(**{**failed.__dict__, "message": "a\n::notice::b"}),
    ):
        lines = describe_failure(outcome).splitlines()
        assert not any(line.startswith("::") for line in lines), lines
        assert "::warning::injected" in describe_failure(outcome) or outcome.failure is None
