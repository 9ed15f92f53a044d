"""Helpers of the run-stage tests: tiny notebooks written to disk."""

from __future__ import annotations

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
