"""The inputs a notebook declares after ``%repro start`` (``reprokit.data()``, ``%repro data``)
reach its lock, so ``verify`` checks them as it checks the start's ``--data``; ``verify
--no-record`` leaves a reviewer's checkout as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from run_helpers import reprokit_cli, write_notebook


def test_data_declared_after_the_start_is_in_the_lock_and_verified(project: Path) -> None:
    (project / "plain.csv").write_text("1\n")
    (project / "later.csv").write_text("2\n")
    write_notebook(
        project / "later.ipynb",
        [
            "%load_ext reprokit\n%repro start --seed 0",
            "import reprokit\nreprokit.data('plain.csv')",
            "%repro data later.csv",
            "reprokit.result('x', 1)",
        ],
    )
    done = reprokit_cli("record", "later.ipynb", "--device", "cpu", cwd=project)
    assert done.returncode == 0, done.stderr
    lock = json.loads((project / "later.repro.json").read_text())
    assert {entry["path"] for entry in lock["data"]["entries"]} == {"plain.csv", "later.csv"}
    for made in ("mlflow.db", "mlflow.db.lock", "mlartifacts", ".reprokit"):  # not in a clone
        path = project / made
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    out = project.parent / "review"
    done = reprokit_cli(
        "verify", "later.ipynb", "--no-record", "--output-dir", str(out), cwd=project
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in project.iterdir()) == [
        "later.csv",
        "later.ipynb",
        "later.repro.json",
        "plain.csv",
        "pyproject.toml",
    ]  # --no-record: no MLflow store made in the checkout
    (project / "plain.csv").write_text("7\n")
    done = reprokit_cli("verify", "later.ipynb", "--device", "cpu", cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "data changed since the lock" in said and "plain.csv: changed" in said
