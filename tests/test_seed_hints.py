"""An unseeded numpy Generator is named as the likely cause of a result that changed while the
seeds did not (docs/seeds.md): a cheap textual check of the executed notebook's cells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reprokit.compare.envdiff import unseeded_generators
from reprokit.compare.verify import Verdict, verify_results
from reprokit.report.table import env_lines
from reprokit.results import encode_result
from reprokit.results.notebook import read_notebook
from tests.lock_helpers import Project, executed, record


def _foreign_notebook(tmp_path: Path, draw: str) -> Project:
    """A notebook as written elsewhere: plain JSON, a markdown cell, no reprokit helpers."""
    root = tmp_path / "proj"
    (root / "data").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    code = ["%load_ext reprokit\n%repro start --seed 0", draw, "reprokit.result('mean', m)"]
    cells = [{"cell_type": "markdown", "metadata": {}, "source": "# Monte Carlo"}] + [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": s}
        for s in code
    ]
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 4}
    path = root / "mc.ipynb"
    path.write_text(json.dumps(notebook))
    return Project(root, path, root / "data")


def _verdict(project: Project, reference: float, current: float) -> Verdict:
    lock = record(project, [encode_result("mean", reference)])
    node = executed(project, [encode_result("mean", current)])
    return verify_results(lock, read_notebook(node), executed_notebook=node, lock_dir=project.root)


def test_a_changed_result_with_an_unseeded_generator_names_it(tmp_path: Path) -> None:
    draw = "import numpy as np\nrng = np.random.default_rng()\nm = rng.normal(size=100).mean()"
    verdict = _verdict(_foreign_notebook(tmp_path, draw), 0.0123, -0.0456)
    lines = env_lines(verdict)
    assert lines[0].startswith(
        "seeds: unseeded numpy Generator: - -> default_rng() in cell 3"
    )  # 3rd cell of the file
    assert "np.random.default_rng(seed)" in lines[0]


@pytest.mark.parametrize(
    ("draw", "current"),
    [
        ("rng = np.random.default_rng(0)\nm = rng.normal()", -0.0456),  # seeded
        ("rng = np.random.default_rng()\nm = rng.normal()", 0.0123),  # reproduced
    ],
)
def test_no_generator_hint_when_seeded_or_reproduced(
    tmp_path: Path, draw: str, current: float
) -> None:
    verdict = _verdict(_foreign_notebook(tmp_path, draw), 0.0123, current)
    assert not any("Generator" in line for line in env_lines(verdict))


def test_generator_calls_that_are_unseeded() -> None:
    found = unseeded_generators([(1, "x = 1"), (4, "g = np.random.RandomState( None )")])
    assert [c.current for c in found] == ["RandomState() in cell 5"]  # 0-based 4: the 5th
    assert unseeded_generators([(0, "np.random.default_rng(seed)")]) == ()


def test_the_generator_hint_does_not_count_papermills_injected_cell(tmp_path: Path) -> None:
    import nbformat

    draw = "rng = np.random.default_rng()\nm = rng.normal()"
    project = _foreign_notebook(tmp_path, draw)
    lock = record(project, [encode_result("mean", 0.0123)])
    node = executed(project, [encode_result("mean", -0.0456)])
    injected = nbformat.v4.new_code_cell("epochs = 3")
    injected.metadata["tags"] = ["injected-parameters"]
    node.cells.insert(1, injected)  # before the draw: the file's 3rd cell stays "cell 3"
    verdict = verify_results(
        lock, read_notebook(node), executed_notebook=node, lock_dir=project.root
    )
    assert env_lines(verdict)[0].startswith(
        "seeds: unseeded numpy Generator: - -> default_rng() in cell 3"
    )
