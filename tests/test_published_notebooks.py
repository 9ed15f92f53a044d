"""The project's published notebooks (``notebooks/``) reproduce against their committed locks.

Integration tests (marked ``slow``): every notebook is executed once, with the real CLI, the way
CI and a reviewer do it — through ``examples/reviewer/verify_paper.sh``, which runs
``reprokit verify notebooks --jobs 2 --report --junit --json`` — into a temporary folder and a
copied MLflow store, so nothing is written into the repository. A change that breaks the
reproduction of any declared result fails here. The lock checks need no execution: they catch a
lock re-recorded without a result, without its tolerance, or with machine-specific paths.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import mlflow_client

from reprokit.api.check import check_locks
from reprokit.notebook.files import discover_notebooks
from reprokit.recording.lock import lock_path_for, read_lock, sidecar_for
from reprokit.recording.mapping import SOURCE_NAME_TAG

pytestmark = pytest.mark.slow
for _module in ("torch", "scipy", "matplotlib"):  # what the notebooks import (the test extra)
    pytest.importorskip(_module)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SCRIPT = ROOT / "examples" / "reviewer" / "verify_paper.sh"

# every published notebook and the results its lock must declare
EXPECTED = {
    "notebooks/air_quality.ipynb": {
        "exceedance_ci95",
        "exceedance_rate",
        "monthly_pm25",
        "station_summary",
    },
    "notebooks/epidemic_montecarlo.py": {
        "mean_infected_curve",
        "mean_peak_ci95",
        "mean_peak_infected",
        "median_peak_day",
        "peak_range_95",
    },
    "notebooks/mlp_classifier.ipynb": {"final_loss", "test_accuracy", "weights"},
}
EXACT = {"exceedance_rate", "median_peak_day"}  # declared without a tolerance, on purpose
PASSING = ("reproduced", "within_tolerance")
# variables that would point the verification at another store or device than the test's
_ISOLATED = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "REPROKIT_DEVICE", "DEVICE", "OUT")


def _tree_state(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


# ----------------------------------------------------------------------------- locks, no execution


def test_every_published_notebook_has_a_lock_with_its_results() -> None:
    found = {p.relative_to(ROOT).as_posix() for p in discover_notebooks([NOTEBOOKS])}
    assert found == set(EXPECTED)
    for name, results in EXPECTED.items():
        lock = read_lock(lock_path_for(ROOT / name))
        assert lock.notebook.path == name
        assert set(lock.results) == results, name
        assert lock.parameters.seed == 0
        for result in lock.results.values():
            tolerant = result.rtol is not None or result.atol is not None
            assert tolerant == (result.name not in EXACT), (name, result.name)


def test_locks_are_current_and_travel_with_the_repository() -> None:
    """Nothing verification compares strictly is absolute or machine-specific."""
    assert [f.status for f in check_locks([NOTEBOOKS])] == ["current"] * len(EXPECTED)
    air = read_lock(NOTEBOOKS / "air_quality.repro.json")
    assert air.data is not None
    assert [(e.path, e.kind) for e in air.data.entries] == [("notebooks/data", "dir")]
    assert [f.path for f in air.data.entries[0].files] == ["air_quality.csv"]
    mlp = read_lock(NOTEBOOKS / "mlp_classifier.repro.json")
    weights = mlp.results["weights"]
    assert weights.array is not None and weights.array.inline is None
    assert weights.array.file is not None and not Path(weights.array.file).is_absolute()
    assert (NOTEBOOKS / weights.array.file).is_file()
    assert (NOTEBOOKS / weights.array.file).parent == sidecar_for(
        NOTEBOOKS / "mlp_classifier.repro.json"
    )
    assert weights.array.shape == (19204,) and weights.array.dtype == "float32"


# ----------------------------------------------------------------------------- verification


@pytest.fixture(scope="module")
def review(tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path) -> dict[str, Any]:
    """Run the reviewer script over ``notebooks`` once; what it printed and wrote."""
    folder = tmp_path_factory.mktemp("review")
    shutil.copy(mlflow_template_db, folder / "mlflow.db")
    env = {k: v for k, v in os.environ.items() if k not in _ISOLATED}
    env |= {
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "OUT": str(folder / "out"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    }
    before = _tree_state(NOTEBOOKS), (ROOT / ".reprokit").exists(), (ROOT / "mlflow.db").exists()
    done = subprocess.run(
        ["bash", str(SCRIPT), "notebooks"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    after = _tree_state(NOTEBOOKS), (ROOT / ".reprokit").exists(), (ROOT / "mlflow.db").exists()
    return {"done": done, "out": folder / "out", "uri": env["MLFLOW_TRACKING_URI"],
            "unchanged": before == after}  # fmt: skip


def test_reviewer_script_verifies_every_published_notebook(review: dict[str, Any]) -> None:
    done = review["done"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "+ reprokit verify notebooks --device " in done.stdout
    assert "verdict: every result reproduced" in done.stdout
    for name in EXPECTED:
        assert f"REPRODUCED {name}" in done.stdout
    # verified against another store than the one recorded into, every output is the same
    assert "first cell whose output changed" not in done.stdout, done.stdout[-3000:]


def test_every_declared_result_reproduced(review: dict[str, Any]) -> None:
    report = json.loads((review["out"] / "verdicts.json").read_text())
    assert report["reproduced"] is True
    seen = {
        v["notebook"]: {c["name"]: c["status"] for c in v["checks"]} for v in report["verdicts"]
    }
    assert {name: set(checks) for name, checks in seen.items()} == EXPECTED
    failing = {
        (nb, r, s) for nb, checks in seen.items() for r, s in checks.items() if s not in PASSING
    }
    assert not failing
    data = {
        v["notebook"]: [(e["path"], e["status"]) for e in v["data"]["entries"]]
        for v in report["verdicts"]
    }
    assert data["notebooks/air_quality.ipynb"] == [("notebooks/data", "ok")]


def test_junit_and_html_reports_are_written(review: dict[str, Any]) -> None:
    suites = ET.parse(review["out"] / "junit.xml").getroot()
    assert suites.get("failures") == "0" and suites.get("errors") == "0"
    assert int(suites.get("tests", "0")) == sum(len(r) for r in EXPECTED.values())
    html = (review["out"] / "report.html").read_text()
    assert all(name in html for name in EXPECTED)


def test_verification_writes_nothing_into_the_repository(review: dict[str, Any]) -> None:
    assert review["unchanged"]


def test_verification_runs_are_recorded_in_the_given_store(review: dict[str, Any]) -> None:
    client = mlflow_client(review["uri"])
    runs = [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id])
    ]
    assert sorted(run.data.tags.get("reprokit.verdict") for run in runs) == ["reproduced"] * 3
    # mlp_classifier imports torch after %repro start: the run still names the torch it ran
    (mlp,) = [
        r for r in runs if r.data.tags.get(SOURCE_NAME_TAG, "").endswith("mlp_classifier.ipynb")
    ]
    assert mlp.data.tags["reprokit.torch"] == importlib.metadata.version("torch")
