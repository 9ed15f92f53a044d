"""``reprokit record`` then ``reprokit verify``, end to end in real kernels (three executions)."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from run_helpers import demo_project, reprokit_cli, write_notebook

from reprokit.recording.lock import read_lock
from reprokit.results import read_notebook

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return reprokit_cli(*args, cwd=cwd)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path) -> Path:
    """One project recorded once for the module (each record/verify costs a kernel)."""
    project = demo_project(tmp_path_factory.mktemp("reproduce"), mlflow_template_db)
    write_notebook(
        project / "analysis.ipynb",
        [
            "%load_ext reprokit\n%repro start --seed 0 --data data/",
            "import reprokit\n"
            "values = [float(x) for x in open('data/values.csv')]\n"
            "reprokit.result('total', sum(values) * scale, rtol=1e-9)\n"
            "reprokit.result('count', len(values))",
            "print(f'loss {0.123456 + jitter:.6f} after {len(values)} steps at 0x7f3a2b1c9d00')",
        ],
        parameters="scale = 1.0\njitter = 0.0",
    )
    done = _cli("record", "analysis.ipynb", "-p", "scale=2.0", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "locked" in done.stdout
    return project


def test_record_writes_a_lock_with_results_parameters_and_data(recorded: Path) -> None:
    lock = read_lock(recorded / "analysis.repro.json")
    assert set(lock.results) == {"total", "count"}
    assert lock.parameters.values == {"scale": 2.0}
    # the printing cell's masked text is kept for `verify --outputs`
    assert [cell.text for cell in lock.outputs][-1] == "loss 0.123456 after 3 steps at <ADDRESS>\n"
    assert [entry.path for entry in lock.data.entries] == ["data"]
    # the executed notebook carries a summary of the data; the lock has the file list, read
    # back from the run folder
    files = [f.path for f in lock.data.entries[0].files]
    assert "values.csv" in files
    executed = sorted((recorded / ".reprokit" / "runs").glob("*/analysis/analysis.ipynb"))[0]
    found = read_notebook(executed)
    assert found.summary is not None and found.summary.files == len(files)
    assert found.snapshot is not None and found.snapshot.data is not None
    assert found.snapshot.data.entries[0].files == ()


def test_verify_reproduces_and_writes_every_report(recorded: Path) -> None:
    done = _cli(
        "verify",
        ".",
        "--report",
        "r.html",
        "--junit",
        "j.xml",
        "--json",
        "v.json",
        cwd=recorded,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "REPRODUCED" in done.stdout
    cases = ET.parse(recorded / "j.xml").getroot().iter("testcase")
    assert sorted(case.get("name") or "" for case in cases) == ["count", "total"]
    assert json.loads((recorded / "v.json").read_text())
    assert "REPRODUCED" in (recorded / "r.html").read_text()
    # the verification run carries its verdict, nested under the reference run
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{recorded / 'mlflow.db'}")
    reference = read_lock(recorded / "analysis.repro.json").run_id
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.`reprokit.verdict` = 'reproduced'",
    )
    assert runs and all(run.data.tags["mlflow.parentRunId"] == reference for run in runs)
    # ... and its own HTML report and JSON verdict as artifacts
    listed = {a.path for a in client.list_artifacts(runs[0].info.run_id, "reprokit/verification")}
    assert listed == {"reprokit/verification/report.html", "reprokit/verification/verdict.json"}
    report = client.download_artifacts(runs[0].info.run_id, "reprokit/verification/report.html")
    assert "REPRODUCED" in Path(report).read_text()
    assert "mlflow ui --backend-store-uri sqlite:///" in done.stdout


def test_verify_outputs_compares_numbers_in_text_within_tolerance(recorded: Path) -> None:
    # one unit in the last printed digit is printing noise: within tolerance
    done = _cli("verify", "analysis.ipynb", "--outputs", "-p", "jitter=1e-6", cwd=recorded)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cell outputs: 4 compared: 3 reproduced, 1 within tolerance" in done.stdout


def test_verify_outputs_names_the_first_divergent_cell(recorded: Path) -> None:
    done = _cli(
        "verify",
        "analysis.ipynb",
        "--outputs",
        "-p",
        "jitter=0.01",
        "--json",
        "o.json",
        cwd=recorded,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "first divergent cell: cell 4 (output differs) line 1: reference 'loss 0.123456 after"
        in (done.stdout)
    )
    assert "current 'loss 0.133456 after 3 steps at <ADDRESS>'" in done.stdout
    verdict = json.loads((recorded / "o.json").read_text())["verdicts"][0]
    assert verdict["reproduced"] is False  # every result reproduced, but an output did not
    assert [c["status"] for c in verdict["outputs"]] == ["reproduced"] * 3 + ["differs"]
    # without --outputs, the same change is reported but does not fail the verification
    done = _cli("verify", "analysis.ipynb", "-p", "jitter=0.01", cwd=recorded)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "first cell whose output changed: cell 4 (output differs)" in done.stdout


def test_verify_with_another_parameter_differs_and_exits_one(recorded: Path) -> None:
    done = _cli(
        "verify", "analysis.ipynb", "-p", "scale=3.0", "-p", "jitter=0.5", "--rtol", "0.01",
        "--json", "p.json", "--report", "p.html", cwd=recorded,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "differs" in done.stdout
    # what changed: the lock's value (scale, given to record) and the notebook's (jitter)
    assert "parameters: jitter: 0.0 -> 0.5 (given now (-p)" in done.stdout
    assert "parameters: scale: 2.0 -> 3.0 (given now (-p)" in done.stdout
    verdict = json.loads((recorded / "p.json").read_text())["verdicts"][0]
    changed = [c for c in verdict["env_diff"]["changes"] if c["category"] == "parameters"]
    assert [(c["key"], c["reference"], c["current"]) for c in changed] == [
        ("jitter", "0.0", "0.5"),
        ("scale", "2.0", "3.0"),
    ]
    # the re-run command gives them again, and verifies the same way
    command = "reprokit verify analysis.ipynb --device cpu -p scale=3.0 -p jitter=0.5 --rtol 0.01"
    assert verdict["command"] == command
    assert f"<pre>{command}</pre>" in (recorded / "p.html").read_text()


def test_changed_data_stops_before_execution_naming_the_file(
    recorded: Path, tmp_path: Path
) -> None:
    copy = shutil.copytree(recorded, tmp_path / "copy")
    (copy / "data" / "values.csv").write_text("1\n2\n4\n")
    done = _cli("verify", "analysis.ipynb", cwd=copy)
    assert done.returncode == 1
    assert "values.csv changed" in done.stderr
    assert "running" not in done.stderr  # nothing was executed


def test_a_folder_without_locks_is_a_usage_error(tmp_path: Path) -> None:
    write_notebook(tmp_path / "a.ipynb", ["1"])
    done = _cli("verify", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert "no notebook with a lock" in done.stderr
