"""Repeated runs for real: ``record --repeat`` refuses an unseeded result and records spreads,
volatile outputs and widened tolerances that ``verify`` honours; ``verify --repeat`` names a
nondeterministic result; ``--deterministic`` reaches the kernel; ``calibrate`` stores a
device tolerance (a faked GPU here, a real one under the ``gpu`` marker)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from run_helpers import demo_project, reprokit_cli, write_notebook

pytestmark = pytest.mark.slow

# an execution counter in the project: the first run prints/returns 1.0, the next 1.0 + 1e-9,
# and so on alternately (deterministic noise, so the tests cannot flake; run with --jobs 1)
COUNTER = """\
from pathlib import Path
counter = Path("count.txt")
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
x = 1.0 + 1e-9 * (n % 2)"""


@pytest.fixture
def proj(tmp_path: Path, mlflow_template_db: Path) -> Path:
    return demo_project(tmp_path, mlflow_template_db)


def _lock(path: Path) -> dict[str, object]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_an_unseeded_result_fails_record_repeat_naming_it_and_its_cause(proj: Path) -> None:
    cells = [
        "import numpy as np, reprokit",
        "rng = np.random.default_rng()\nreprokit.result('draw', float(rng.random()), rtol=1e-9)",
    ]
    write_notebook(proj / "unseeded.ipynb", cells)
    done = reprokit_cli("record", "unseeded.ipynb", "--repeat", "3", "--jobs", "2", cwd=proj)
    assert done.returncode == 1, done.stderr
    assert "result 'draw' is not stable" in done.stderr
    assert "over 3 runs" in done.stderr
    assert "default_rng() in cell 2" in done.stderr  # the likely cause, by cell
    assert "Traceback" not in done.stderr
    assert not (proj / "unseeded.repro.json").exists()


def test_a_printed_clock_verifies_with_outputs_only_after_a_repeated_record(proj: Path) -> None:
    cells = [
        "import os, time, reprokit",
        "print('t =', time.time())",
        "reprokit.result('cublas', os.environ.get('CUBLAS_WORKSPACE_CONFIG', 'unset'))",
    ]
    write_notebook(proj / "clock.ipynb", cells)
    assert reprokit_cli("record", "clock.ipynb", cwd=proj).returncode == 0
    once = reprokit_cli("verify", "clock.ipynb", "--outputs", cwd=proj)
    assert once.returncode == 1, once.stdout  # a single run cannot know the clock moves
    assert "cell 2" in once.stdout
    again = reprokit_cli(
        "record", "clock.ipynb", "--repeat", "2", "--jobs", "2", "--deterministic", cwd=proj
    )
    assert again.returncode == 0, again.stderr
    assert "cell 2: output volatile" in again.stdout
    lock = _lock(proj / "clock.repro.json")
    assert lock["volatile"][0]["spans"] == ["number"]  # type: ignore[index]
    assert lock["parameters"]["deterministic"] is True  # type: ignore[index]
    assert lock["results"]["cublas"]["value"] == ":4096:8"  # type: ignore[index]
    verified = reprokit_cli("verify", "clock.ipynb", "--outputs", cwd=proj)
    assert verified.returncode == 0, verified.stdout
    assert "volatile, not compared" in verified.stdout


def test_widened_tolerance_is_honoured_and_verify_repeat_names_nondeterminism(proj: Path) -> None:
    write_notebook(proj / "drift.ipynb", ["import reprokit", COUNTER + "\nreprokit.result('x', x)"])
    widened = reprokit_cli("record", "drift.ipynb", "--repeat", "3", "--widen-tolerances", cwd=proj)
    assert widened.returncode == 0, widened.stderr
    lock = _lock(proj / "drift.repro.json")
    spread = lock["spreads"]["x"]  # type: ignore[index]
    assert (spread["widened"], spread["runs"], spread["factor"]) == (True, 3, 4.0)
    assert lock["results"]["x"]["atol"] == pytest.approx(4e-9, rel=1e-3)  # type: ignore[index]
    verified = reprokit_cli("verify", "drift.ipynb", cwd=proj)  # run 4: 1 + 1e-9, not exact
    assert verified.returncode == 0, verified.stdout
    assert "within_tolerance" in verified.stdout
    (proj / "count.txt").unlink()
    assert reprokit_cli("record", "drift.ipynb", cwd=proj).returncode == 0  # 1.0, exact
    repeated = reprokit_cli("verify", "drift.ipynb", "--repeat", "2", cwd=proj)  # 1 + 1e-9, 1.0
    assert repeated.returncode == 1, repeated.stdout
    assert "nondeterministic" in repeated.stdout
    assert "recorded not measured (recorded with one run)" in repeated.stdout


# a notebook whose result moves by 1e-6 relative on the (faked) GPU
DEVICE_CELLS = [
    "import reprokit",
    "reprokit.result('y', 2.0 * (1 + (1e-6 if device == 'cuda' else 0)))",
]


def _fake_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from reprokit.capturing import accelerator
    from reprokit.capturing.model import GpuDevice

    facts = accelerator._NvmlFacts(
        ok=True, driver_version="999", devices=(GpuDevice(0, "Fake GPU"),)
    )
    monkeypatch.setattr(accelerator, "_nvml_facts", lambda: facts)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)


def test_calibrate_stores_the_measured_device_tolerance_with_provenance(
    proj: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reprokit.api.calibrate import calibrate
    from reprokit.api.record import record
    from reprokit.options import ExecutionOptions
    from reprokit.recording.lock import read_lock

    monkeypatch.chdir(proj)
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    notebook = write_notebook(proj / "dev.ipynb", DEVICE_CELLS, parameters="device = 'cpu'")
    (done,) = record([notebook], execution=ExecutionOptions(device="cpu"))
    assert done.lock_path is not None
    _fake_gpu(monkeypatch)  # the "cuda" kernel really runs on the CPU, told it is on cuda
    calibration = calibrate(notebook)
    assert calibration.deviations["y"].max_rel_error == pytest.approx(1e-6, rel=1e-3)
    lock = read_lock(proj / "dev.repro.json")
    assert lock.device_tolerances["y"].rtol == pytest.approx(4e-6, rel=1e-3)
    assert lock.calibration is not None
    assert (lock.calibration.devices, lock.calibration.gpu) == (("cpu", "cuda"), "Fake GPU")
    assert lock.results["y"].value == 2.0  # the reference is untouched


@pytest.mark.gpu
def test_calibrate_on_a_real_gpu(proj: Path) -> None:
    write_notebook(proj / "dev.ipynb", DEVICE_CELLS, parameters="device = 'cpu'")
    assert reprokit_cli("record", "dev.ipynb", "--device", "cpu", cwd=proj).returncode == 0
    done = reprokit_cli("calibrate", "dev.ipynb", "--devices", "cpu,cuda", cwd=proj)
    assert done.returncode == 0, done.stderr
    lock = _lock(proj / "dev.repro.json")
    assert lock["calibration"]["gpu"]  # type: ignore[index]
    verified = reprokit_cli("verify", "dev.ipynb", "--device", "cuda", cwd=proj)
    assert verified.returncode == 0, verified.stdout
