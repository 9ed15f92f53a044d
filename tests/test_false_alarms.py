"""No false alarms on a freshly recorded project (issue 13): ``diff`` of a just-recorded lock
says SAME, discovery never finds what reprokit or MLflow wrote, a lock of another notebook is
refused, warnings are one line, and the MLflow runs show their datasets and their verdicts.

The notebook is written as plain JSON, the way a notebook made elsewhere arrives.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from reprokit.notebook.files import discover_notebooks
from tests.run_helpers import demo_project

pytestmark = pytest.mark.slow

GROWTH = {
    "cells": [
        {
            "cell_type": "markdown",
            "id": "m0",
            "metadata": {},
            "source": ["# Growth\n", "A notebook written elsewhere."],
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "c1",
            "metadata": {},
            "outputs": [],
            "source": ["%load_ext reprokit\n", "%repro start --seed 3 --data data/values.csv"],
        },
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "c2",
            "metadata": {},
            "outputs": [],
            "source": [
                "import reprokit\n",
                "values = [float(v) for v in open('data/values.csv').read().split()]\n",
                "reprokit.result('growth', values[-1] / values[0])",
            ],
        },
    ],
    "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "version": "3.11.0"},
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m reprokit`` from a shell that set neither variable the runner sets."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "CUDA_VISIBLE_DEVICES")
    }
    env |= {"CI": "true", "REPROKIT_CACHE_DIR": str(cwd.parent / "hash-cache")}
    return subprocess.run(
        [sys.executable, "-m", "reprokit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=300,
    )


def test_a_freshly_recorded_project_raises_no_false_alarm(
    tmp_path: Path, mlflow_template_db: Path
) -> None:
    root = demo_project(tmp_path, mlflow_template_db)
    (root / "growth.ipynb").write_text(json.dumps(GROWTH, indent=1))
    for command in (("record", "growth.ipynb"), ("verify", "growth.ipynb")) * 3:
        done = _cli(*command, cwd=root)
        assert done.returncode == 0, done.stdout + done.stderr

    same = _cli("diff", "growth.repro.json", cwd=root)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "SAME" in same.stdout and "PYTHONHASHSEED" not in same.stdout

    # six executed copies now lie in mlartifacts/ and .reprokit/: none is the project's
    assert discover_notebooks([root]) == [root / "growth.ipynb"]
    check = _cli("check", ".", cwd=root)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "no lock" not in check.stdout + check.stderr
    ran = _cli("run", ".", "--no-record", cwd=root)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "mlartifacts" not in ran.stdout + ran.stderr
    assert ran.stdout.count("growth.ipynb") == ran.stdout.count("ipynb"), ran.stdout

    _assert_runs_show_datasets_and_verdicts(root)


def _assert_runs_show_datasets_and_verdicts(root: Path) -> None:
    with sqlite3.connect(root / "mlflow.db") as db:
        names = [row[0] for row in db.execute("SELECT name FROM runs ORDER BY start_time")]
        datasets = [row[0] for row in db.execute("SELECT name FROM datasets")]
        inputs = db.execute("SELECT COUNT(*) FROM inputs").fetchone()[0]
    assert names.count("verify growth: reproduced") == 3, names
    assert names.count("growth") == 3, names
    assert datasets == ["data/values.csv"]
    assert inputs == 6  # every recorded and every verification run names its input


def test_a_lock_of_another_notebook_is_refused_unless_renamed(
    tmp_path: Path, mlflow_template_db: Path
) -> None:
    root = demo_project(tmp_path, mlflow_template_db)
    (root / "growth.ipynb").write_text(json.dumps(GROWTH, indent=1))
    assert _cli("record", "growth.ipynb", cwd=root).returncode == 0
    other = json.loads(json.dumps(GROWTH))
    other["cells"][2]["source"].insert(0, "# the same analysis, renamed and touched\n")
    (root / "other.ipynb").write_text(json.dumps(other))

    refused = _cli("verify", "other.ipynb", "--lock", "growth.repro.json", cwd=root)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "growth.ipynb" in refused.stderr and "other.ipynb" in refused.stderr
    assert "--renamed" in refused.stderr and "Traceback" not in refused.stderr

    renamed = _cli("verify", "other.ipynb", "--lock", "growth.repro.json", "--renamed", cwd=root)
    assert renamed.returncode == 0, renamed.stdout + renamed.stderr
    # the changed cell is a warning in the user's terms: one line, no reprokit source path
    warning = [line for line in renamed.stderr.splitlines() if "source changed" in line]
    assert warning and warning[0].startswith("reprokit: warning: "), renamed.stderr
    assert not re.search(r"reprokit/\w+(/\w+)*\.py:\d+", renamed.stderr), renamed.stderr
    assert "ReprokitWarning" not in renamed.stderr

    missing = _cli("verify", "other.ipynb", cwd=root)
    assert missing.returncode == 2 and "reprokit record other.ipynb" in missing.stderr
