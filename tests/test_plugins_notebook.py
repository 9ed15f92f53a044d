"""Plugins end to end: a notebook declares a plugin's result type, ``reprokit record`` locks it
with the plugin's facts, ``reprokit verify`` reproduces it, then explains a difference with the
plugin's deviation and the changed plugin fact (three kernel executions in all)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from plugin_helpers import DEMO, install_plugin, python_path
from run_helpers import reprokit_cli, write_notebook

from reprokit.recording.lock import read_lock

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")]


def _cli(*args: str, cwd: Path, site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``reprokit`` in a subprocess whose kernels see the demo plugin (through PYTHONPATH)."""
    plugin = {"PYTHONPATH": python_path(site), "REPROKIT_DEMO_FIRMWARE": "1.0"}
    return reprokit_cli(*args, cwd=cwd, env=plugin | env)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_plugin(DEMO, tmp_path_factory)


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path, site: Path
) -> Path:
    project = tmp_path_factory.mktemp("plugins") / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    shutil.copy(mlflow_template_db, project / "mlflow.db")
    write_notebook(
        project / "scope.ipynb",
        [
            "%load_ext reprokit\n%repro start --seed 0",
            "import reprokit\n"
            "from reprokit_demo_plugin import Measurement\n"
            "reprokit.result('voltage', Measurement(1.5 * scale, 'mV'), rtol=1e-3)",
        ],
        parameters="scale = 1.0",
    )
    done = _cli("record", "scope.ipynb", cwd=project, site=site)
    assert done.returncode == 0, done.stdout + done.stderr
    return project


def test_record_locks_the_plugin_result_and_the_plugin_facts(recorded: Path) -> None:
    lock = read_lock(recorded / "scope.repro.json")
    voltage = lock.results["voltage"]
    assert (voltage.kind, voltage.plugin, voltage.value, voltage.rtol) == (
        "plugin",
        "measurement",
        {"unit": "mV", "value": 1.5},
        1e-3,
    )
    assert lock.snapshot is not None
    assert lock.snapshot.extensions["instrument"].data == {
        "firmware": "1.0",
        "model": "DemoScope 3000",
        "serial": "DS-0042",
    }
    # MLflow: the snapshot artifact carries the plugin's facts, the run description shows them
    import mlflow

    uri = f"sqlite:///{recorded / 'mlflow.db'}"
    run = mlflow.MlflowClient(uri).get_run(lock.run_id or "")
    assert "plugin: instrument.firmware | 1.0" in run.data.tags["mlflow.note.content"]
    folder = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="reprokit", tracking_uri=uri
    )
    snapshots = [json.loads(p.read_text()) for p in Path(folder).rglob("snapshot.json")]
    assert snapshots and all(s["extensions"]["instrument"]["available"] for s in snapshots)


def _verdict(path: Path) -> dict[str, Any]:
    verdicts: list[dict[str, Any]] = json.loads(path.read_text())["verdicts"]
    assert len(verdicts) == 1
    return verdicts[0]


def test_verify_reproduces_the_plugin_result(recorded: Path, site: Path) -> None:
    done = _cli("verify", "scope.ipynb", "--json", "ok.json", cwd=recorded, site=site)
    assert done.returncode == 0, done.stdout + done.stderr
    (check,) = _verdict(recorded / "ok.json")["checks"]
    assert (check["name"], check["status"]) == ("voltage", "reproduced")


def test_beyond_tolerance_differs_with_the_plugin_deviation_and_fact_change(
    recorded: Path, site: Path
) -> None:
    done = _cli(
        "verify",
        "scope.ipynb",
        "-p",
        "scale=1.1",
        "--json",
        "bad.json",
        cwd=recorded,
        site=site,
        REPROKIT_DEMO_FIRMWARE="2.0",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    verdict = _verdict(recorded / "bad.json")
    (check,) = verdict["checks"]
    assert (check["status"], check["reference"], check["obtained"]) == (
        "differs",
        "1.5 mV",
        "1.65 mV",
    )
    assert check["message"] == "1.65 mV against 1.5 mV: off by 0.15 mV"  # the plugin's words
    assert check["deviation"]["max_abs_error"] == pytest.approx(0.15)
    assert check["deviation"]["first_mismatch"] == "$.value"
    changes = {c["key"]: c for c in verdict["env_diff"]["changes"]}
    firmware = changes["instrument.firmware"]
    assert (firmware["category"], firmware["reference"], firmware["current"]) == (
        "extensions",
        "1.0",
        "2.0",
    )
    assert "extensions: instrument.firmware: 1.0 -> 2.0" in done.stdout
