"""``reprokit record`` → ``verify`` → ``bundle``, then ``reprokit verify artifact.zip`` in a
fresh folder on the reviewer's side: real kernels, real SQLite stores (two executions)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from run_helpers import demo_project, reprokit_cli, write_notebook

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path) -> Path:
    """A project recorded and verified once, bundled into ``artifact.zip`` beside it."""
    project = demo_project(tmp_path_factory.mktemp("author"), mlflow_template_db)
    write_notebook(
        project / "notebooks" / "analysis.ipynb",
        [
            "%load_ext reprokit\n%repro start --seed 0 --data ../data/",
            "import numpy as np, reprokit\n"
            "values = [float(x) for x in open('../data/values.csv')]\n"
            "reprokit.result('total', sum(values) * scale, rtol=1e-9)\n"
            "reprokit.result('ramp', np.arange(50_000.0) * scale)",
        ],
        parameters="scale = 1.0",
    )
    for args in (["record", "notebooks/analysis.ipynb", "-p", "scale=2.0"], ["verify", "."]):
        done = reprokit_cli(*args, cwd=project)
        assert done.returncode == 0, done.stdout + done.stderr
    done = reprokit_cli("bundle", "notebooks", "-o", "../artifact.zip", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    return project.parent / "artifact.zip"


def _reviewer(folder: Path, artifact: Path, template: Path) -> dict[str, str]:
    """A fresh folder holding only the zip, and a tracking store of the reviewer's own."""
    folder.mkdir()
    shutil.copy(artifact, folder / "artifact.zip")
    shutil.copy(template, folder / "mlflow.db")
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}


def test_the_bundle_holds_the_last_verification_and_a_sidecar(artifact: Path) -> None:
    with zipfile.ZipFile(artifact) as archive:
        names = archive.namelist()
        crate = json.loads(archive.read("ro-crate-metadata.json"))
    assert "reports/notebooks/analysis/report.html" in names
    assert "reports/notebooks/analysis/verdict.json" in names
    assert [n for n in names if n.startswith("notebooks/analysis.repro/")]
    verify = next(e for e in crate["@graph"] if e["@id"] == "#verify-0")
    assert verify["name"] == "Verify notebooks/analysis.ipynb: reproduced"
    assert verify["startTime"] <= verify["endTime"]  # whole seconds


def test_verify_artifact_zip_round_trips_in_a_fresh_folder(
    artifact: Path, tmp_path: Path, mlflow_template_db: Path
) -> None:
    reviewer = tmp_path / "reviewer"
    env = _reviewer(reviewer, artifact, mlflow_template_db)
    done = reprokit_cli("verify", "artifact.zip", "--json", "v.json", cwd=reviewer, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "REPRODUCED notebooks/analysis.ipynb: 2 reproduced" in done.stdout
    assert json.loads((reviewer / "v.json").read_text())["reproduced"] is True
    (work,) = [p for p in (reviewer / "artifact.verify").iterdir() if p.is_dir()]
    assert (work / "runs" / "analysis" / "verification" / "report.html").is_file()
    assert (work / "bundle" / "notebooks" / "analysis.ipynb").is_file()


def test_a_bundle_without_its_data_stops_before_any_cell_runs(
    artifact: Path, tmp_path: Path, mlflow_template_db: Path
) -> None:
    project = artifact.parent / "proj"
    done = reprokit_cli(
        "bundle", "notebooks", "--no-data", "-o", str(tmp_path / "n.zip"), cwd=project
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--with-data packs it" in done.stderr
    reviewer = tmp_path / "reviewer"
    env = _reviewer(reviewer, tmp_path / "n.zip", mlflow_template_db)
    done = reprokit_cli("verify", "artifact.zip", cwd=reviewer, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "input data changed since the lock (not executed" in done.stderr
