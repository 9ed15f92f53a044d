"""``pytest --reprokit`` (and reprokit's nbval sanitizer), through pytester in real kernels.

Kernel executions: two to record, then one per verified notebook (seven in all), plus two for
the nbval test.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest
from run_helpers import write_notebook

from reprokit.api.record import record
from reprokit.options import ExecutionOptions
from reprokit.pytest_plugin import nbval_sanitize_file

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")

PLUGIN = "reprokit.pytest_plugin"
START_CELL = "%load_ext reprokit\n%repro start --seed 0 --data data/"
RESULT_CELL = "import reprokit\nreprokit.result('total', 6.0 * scale, rtol=1e-9)"


def _plugin_args() -> list[str]:
    """``-p reprokit.pytest_plugin`` unless the installed entry point already loads it."""
    installed = importlib.metadata.entry_points(group="pytest11")
    return [] if any(ep.value == PLUGIN for ep in installed) else ["-p", PLUGIN]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path) -> Path:
    """A project with two recorded notebooks and one without a lock (recorded once)."""
    project = tmp_path_factory.mktemp("plugin") / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    shutil.copy(mlflow_template_db, project / "mlflow.db")
    (project / "data").mkdir()
    (project / "data" / "values.csv").write_text("1\n2\n3\n")
    for name in ("first", "second", "unlocked"):
        write_notebook(
            project / f"{name}.ipynb", [START_CELL, RESULT_CELL], parameters="scale = 1.0"
        )
    outcomes = record(
        [project / "first.ipynb", project / "second.ipynb"],
        execution=ExecutionOptions(device="cpu"),
    )
    assert all(outcome.lock_path for outcome in outcomes), outcomes
    return project


@pytest.fixture
def project(recorded: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the recorded project as pytester's working directory."""
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    shutil.copytree(recorded, pytester.path, dirs_exist_ok=True)
    return pytester.path


def test_recorded_notebooks_pass_and_unlocked_ones_are_not_collected(
    project: Path, pytester: pytest.Pytester
) -> None:
    result = pytester.runpytest("--reprokit", *_plugin_args(), "--junitxml=junit.xml", "-v")
    result.assert_outcomes(passed=2)
    assert "unlocked.ipynb" not in result.stdout.str()
    cases = ET.parse(project / "junit.xml").getroot().iter("testcase")
    assert sorted(case.get("name") or "" for case in cases) == ["first.ipynb", "second.ipynb"]


def test_without_the_flag_nothing_is_collected(project: Path, pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*_plugin_args())
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.mark.parametrize("kind", ["dangling link", "folder"])
def test_a_lock_that_is_not_a_regular_file_fails_naming_it(
    pytester: pytest.Pytester, kind: str
) -> None:
    """Such a lock was taken for "no lock": the notebook was silently not collected."""
    write_notebook(pytester.path / "broken.ipynb", [RESULT_CELL])
    lock = pytester.path / "broken.repro.json"
    if kind == "dangling link":
        lock.symlink_to("nothere.json")
    else:
        lock.mkdir()
    result = pytester.runpytest("--reprokit", *_plugin_args(), ".")
    result.assert_outcomes(failed=1)
    assert "broken.repro.json is not a regular file" in result.stdout.str()


def test_a_changed_result_fails_with_the_verdict_table(
    project: Path, pytester: pytest.Pytester
) -> None:
    notebook = project / "first.ipynb"
    node = nbformat.read(notebook, as_version=4)
    node.cells[0].source = "scale = 2.0"  # the parameters cell: the result doubles
    nbformat.write(node, notebook)
    result = pytester.runpytest("--reprokit", *_plugin_args(), "first.ipynb")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert re.search(r"total\s+6\.0\s+12\.0\s+.*differs", output), output
    assert "NOT REPRODUCED" in output
    assert "Traceback" not in output


def test_changed_data_fails_naming_the_file_without_executing(
    project: Path, pytester: pytest.Pytester
) -> None:
    (project / "data" / "values.csv").write_text("1\n2\n4\n")
    result = pytester.runpytest(
        "--reprokit", *_plugin_args(), "--reprokit-device=cpu", "first.ipynb"
    )
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "input data changed" in output
    assert "values.csv changed" in output


def test_a_failing_cell_fails_naming_the_cell_and_error(
    project: Path, pytester: pytest.Pytester
) -> None:
    notebook = project / "second.ipynb"
    node = nbformat.read(notebook, as_version=4)
    node.cells[2].source = "raise ValueError('boom')"
    nbformat.write(node, notebook)
    result = pytester.runpytest("--reprokit", *_plugin_args(), "second.ipynb")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    # cells are numbered from 1 in the file, the kernel's In [N] beside
    assert re.search(r"cell 3 \(In \[\d+\]\): raise ValueError\('boom'\)", output)
    assert "ValueError: boom" in output
    assert "executed notebook:" in output


@pytest.mark.slow
def test_xdist_runs_the_notebooks_in_parallel(project: Path, pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--reprokit", *_plugin_args(), "-n", "2")
    result.assert_outcomes(passed=2)


def test_the_sanitizer_masks_run_ids_folders_and_timestamps() -> None:
    patterns = re.findall(
        r"^regex: (.*)$\n^replace: (.*)$", nbval_sanitize_file().read_text(), flags=re.MULTILINE
    )
    assert patterns

    def clean(text: str) -> str:
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    one = (
        "reprokit run started\n  local_dir     /p/.reprokit/runs/20261122T153029Z-43f1ad\n"
        "  git           0123456789ab on main, dirty\n"
        "reprokit: run ee5c5fff03b149f390b0c4631d03718f ended FINISHED: 2 result(s) → "
        "sqlite:////p/mlflow.db\ncaptured 2026-11-22T15:30:29.321+00:00\n"
    )
    two = (
        "reprokit run started\n  local_dir     /p/.reprokit/runs/20261123T090000Z-0a1b2c\n"
        "  git           ba9876543210 on main, clean\n"
        "reprokit: run 0123456789abcdef0123456789abcdef ended FINISHED: 2 result(s) → "
        "sqlite:////q/mlflow.db\ncaptured 2026-11-23T09:00:00.000+00:00\n"
    )
    assert clean(one) == clean(two)
    assert "FINISHED: 2 result(s)" in clean(one)
    # MLflow slow at the end: no run id in the kernel, a background writer records the run
    slow = one.replace("run ee5c5fff03b149f390b0c4631d03718f ended", "run ended").replace(
        "mlflow.db\n", "mlflow.db, handed to a background writer (reprokit.flush() waits for it)\n"
    )
    assert clean(slow) == clean(one)


@pytest.mark.slow
def test_a_notebook_using_the_magics_passes_nbval_twice(
    project: Path, pytester: pytest.Pytester
) -> None:
    from nbclient import NotebookClient

    node = nbformat.v4.new_notebook()
    node.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    start = nbformat.v4.new_code_cell("%load_ext reprokit\n%repro start --seed 0 --data data/")
    # nbval sanitizes strings only: the snapshot's JSON payload (with its capture time) cannot
    # be masked, so the start cell's output is not compared (documented in the sanitizer)
    start.metadata["tags"] = ["nbval-ignore-output"]
    node.cells = [
        start,
        nbformat.v4.new_code_cell(RESULT_CELL.replace("scale", "1.0")),
        nbformat.v4.new_code_cell("%repro end"),
    ]
    NotebookClient(node, timeout=120, resources={"metadata": {"path": str(project)}}).execute()
    nbformat.write(node, project / "magics.ipynb")
    sanitizer = str(nbval_sanitize_file())
    for _ in range(2):
        result = pytester.runpytest("--nbval", "--nbval-sanitize-with", sanitizer, "magics.ipynb")
        result.assert_outcomes(passed=3)
