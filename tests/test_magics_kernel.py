"""Real kernels (nbclient): the run is closed with the right status when the kernel exits, and
the executed notebook carries its snapshot and results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import execute_notebook, only_run, tracking_uri

from reprokit.results import RESULT_MIME, SNAPSHOT_MIME, decode_result, read_notebook

pytestmark = pytest.mark.slow
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

CELLS = [
    "%load_ext reprokit",
    "%repro start --experiment nb --seed 0 --data data",
    "import numpy as np\nimport reprokit\nbig = np.arange(50_000, dtype=np.float64)\n"
    "reprokit.result('big', big, rtol=1e-9)",
    "acc = 0.875\n%repro result acc --rtol 1e-2",
]


@pytest.fixture
def notebook_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (project / "data").mkdir()
    (project / "data" / "train.csv").write_text("x,y\n1,2\n")
    monkeypatch.setenv("JPY_SESSION_NAME", str(project / "analysis.ipynb"))
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    return project


def test_run_without_end_is_finished_when_the_kernel_exits(notebook_project: Path) -> None:
    nb = execute_notebook(CELLS, notebook_project)
    run = only_run(tracking_uri(notebook_project), "nb")
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.source.type"] == "NOTEBOOK"
    assert run.data.tags["mlflow.source.name"] == str(notebook_project / "analysis.ipynb")
    assert run.data.metrics == {"acc": 0.875}
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["data"]

    found = read_notebook(nb)
    assert found.snapshot is not None and found.snapshot.seeds is not None
    assert found.snapshot.seeds.seed == 0
    assert found.runs[0]["experiment"] == "nb"
    assert set(found.results) == {"big", "acc"}
    assert decode_result(found.results["acc"]) == 0.875
    big = found.results["big"]
    assert big.array is not None and big.array.file is not None  # by reference
    np.testing.assert_array_equal(decode_result(big), np.arange(50_000, dtype=np.float64))

    result_outputs = [o for c in nb.cells for o in c.outputs if RESULT_MIME in o.get("data", {})]
    assert all({"text/plain", "text/html"} <= set(o["data"]) for o in result_outputs)
    assert any(SNAPSHOT_MIME in o.get("data", {}) for c in nb.cells for o in c.outputs)


def test_run_with_a_failing_cell_is_failed_when_the_kernel_exits(
    notebook_project: Path, tmp_path: Path
) -> None:
    nb = execute_notebook([*CELLS[:2], "raise ValueError('boom')", "never = 1"], notebook_project)
    assert nb.cells[2].outputs[0]["ename"] == "ValueError"
    assert only_run(tracking_uri(notebook_project), "nb").info.status == "FAILED"

    path = tmp_path / "executed.ipynb"
    import nbformat

    nbformat.write(nb, path)
    assert read_notebook(path).snapshot is not None


def test_extension_loads_from_ipython_config(project: Path) -> None:
    code = "%repro status"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "IPython",
            "--no-banner",
            "--InteractiveShellApp.extensions=['reprokit']",
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=project,
    )
    assert out.returncode == 0, out.stderr
    assert "none (start one with %repro start)" in out.stdout
