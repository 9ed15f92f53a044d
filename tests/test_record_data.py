"""The inputs a notebook declares after ``%repro start`` (``reprokit.data()``, ``%repro data``)
reach its lock, so ``verify`` checks them as it checks the start's ``--data``."""

from __future__ import annotations

import json
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
    (project / "plain.csv").write_text("7\n")
    done = reprokit_cli("verify", "later.ipynb", "--device", "cpu", cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "data changed since the lock" in said and "plain.csv: changed" in said
