"""Helpers of the run-stage tests: tiny notebooks written to disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat


def write_notebook(path: Path, cells: list[str], *, parameters: str | None = None) -> Path:
    """An ``.ipynb`` with an optional ``parameters`` cell first, then one code cell per source."""
    node = nbformat.v4.new_notebook()
    node.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        node.cells.append(cell)
    node.cells.extend(nbformat.v4.new_code_cell(source) for source in cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(node, path)
    return path


PERCENT_NOTEBOOK = """\
# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
scale = 1

# %%
import reprokit

reprokit.result("scaled", 3 * scale)
"""


def reprokit_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m reprokit ARGS`` in ``cwd`` as CI runs it (plain progress lines, a fixed
    PYTHONHASHSEED, a hash cache beside the project), ``env`` added last."""
    return subprocess.run(
        [sys.executable, "-m", "reprokit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "CI": "true",
            "PYTHONHASHSEED": "0",
            "REPROKIT_CACHE_DIR": str(cwd.parent / "hash-cache"),
            **(env or {}),
        },
        timeout=timeout,
    )


def demo_project(folder: Path, mlflow_template_db: Path) -> Path:
    """``folder/proj``: a project (pyproject.toml) with a copy of the migrated MLflow template
    database and ``data/values.csv`` (1, 2, 3)."""
    import shutil

    project = folder / "proj"
    (project / "data").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    shutil.copy(mlflow_template_db, project / "mlflow.db")
    (project / "data" / "values.csv").write_text("1\n2\n3\n")
    return project
