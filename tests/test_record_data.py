"""The inputs a notebook declares after ``%repro start`` (``reprokit.data()``, ``%repro data``)
reach its lock, so ``verify`` checks them as it checks the start's ``--data``; ``verify
--no-record`` leaves a reviewer's checkout as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from run_helpers import reprokit_cli, write_notebook


def test_data_declared_while_the_notebook_runs_is_in_the_lock_and_checked_after_it(
    project: Path, tmp_path: Path
) -> None:
    """Declared after the start, an input may be one the notebook makes (a download): it is
    compared after the run with what this run declared, not required before it runs."""
    (project / "plain.csv").write_text("1\n")
    (project / "later.csv").write_text("2\n")
    outside = tmp_path / "outside.csv"
    outside.write_text("3\n")
    write_notebook(
        project / "later.ipynb",
        [
            "%load_ext reprokit\n%repro start --seed 0",
            "import reprokit\nreprokit.data('plain.csv')",
            "%repro data later.csv",
            "import pathlib\nmade = pathlib.Path('made')\nmade.mkdir(exist_ok=True)\n"
            "(made / 'gen.csv').write_text('4\\n')\nreprokit.data('made')",
            f"reprokit.data({str(outside)!r})",
            "reprokit.result('x', 1)",
        ],
    )
    done = reprokit_cli("record", "later.ipynb", "--device", "cpu", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "data ../outside.csv is outside the project root" in done.stderr
    lock = json.loads((project / "later.repro.json").read_text())
    paths = {entry["path"] for entry in lock["data"]["entries"]}
    assert paths == {"plain.csv", "later.csv", "made"}
    made = ("mlflow.db", "mlflow.db.lock", "mlartifacts", ".reprokit", "made")
    for name in made:  # not in a clone (made/ is what the notebook writes: git-ignored)
        path = project / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    out = project.parent / "review"
    done = reprokit_cli(
        "verify", "later.ipynb", "--no-record", "--output-dir", str(out), cwd=project
    )
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.rmtree(project / "made")
    assert sorted(p.name for p in project.iterdir()) == [
        "later.csv",
        "later.ipynb",
        "later.repro.json",
        "plain.csv",
        "pyproject.toml",
    ]  # --no-record: no MLflow store made in the checkout
    (project / "plain.csv").write_text("7\n")
    done = reprokit_cli(
        "verify", "later.ipynb", "--no-record", "--output-dir", str(out), cwd=project
    )
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert "plain.csv" in said and "NOT REPRODUCED" in said, said
