"""Results and snapshots travel inside a notebook and are read back with nbformat alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

from reprokit.capturing.snapshot import capture
from reprokit.exceptions import InputError, PathError
from reprokit.report.display import result_bundle, snapshot_bundle
from reprokit.report.render import environment_view, result_summary
from reprokit.results import RESULT_MIME, encode_result, read_notebook


def output(bundle: dict[str, Any], metadata: dict[str, Any] | None = None) -> Any:
    return nbformat.v4.new_output(
        "display_data", data=bundle, metadata={"reprokit": metadata or {}}
    )


def notebook(*outputs: Any) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title")]
    for out in outputs:
        cell = nbformat.v4.new_code_cell("x")
        cell.outputs = [out]
        nb.cells.append(cell)
    return nb


def test_results_and_snapshot_roundtrip_through_an_ipynb_file(tmp_path: Path) -> None:
    snapshot = capture(root=tmp_path)
    nb = notebook(
        output(snapshot_bundle(snapshot, {"experiment": "e"}), {"local_dir": "/x"}),
        output(result_bundle(encode_result("acc", 0.5, rtol=0.01))),
        output(result_bundle(encode_result("acc", 0.75))),
        output(result_bundle(encode_result("cfg", {"a": float("nan")}))),
    )
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, path)
    found = read_notebook(path)
    assert found.snapshot == snapshot
    assert found.runs == ({"local_dir": "/x"},)
    assert found.results["acc"].value == 0.75  # the later declaration wins
    assert [o.cell for o in found.outputs] == [2, 3, 4]
    assert found.results["cfg"].value == {"a": {"$float": "NaN"}}


def test_a_bundle_has_a_readable_rendering_beside_the_payload() -> None:
    bundle = result_bundle(encode_result("acc", 0.931, rtol=1e-3))
    assert bundle["text/plain"] == "reprokit result: acc = 0.931 (float; rtol=0.001)"
    assert "<table" in bundle["text/html"] and "acc" in bundle["text/html"]
    assert bundle[RESULT_MIME]["name"] == "acc"


def test_html_rendering_escapes_values() -> None:
    bundle = result_bundle(encode_result("s", "<script>alert(1)</script>"))
    assert "<script>" not in bundle["text/html"]


def test_array_summary_shows_shape_stats_and_non_finite_counts() -> None:
    import numpy as np

    text = result_summary(encode_result("w", np.array([1.0, 2.0, np.nan])))
    assert "float64 [3]" in text and "min=1" in text and "nan=1" in text


def test_environment_view_has_text_and_html(tmp_path: Path) -> None:
    view = environment_view(capture(root=tmp_path))
    assert "python" in view.text and "<table" in view._repr_html_()
    assert repr(view) == view.text


def test_emit_outside_ipython_does_nothing() -> None:
    # in a fresh interpreter: other tests start in-process IPython shells
    import subprocess
    import sys

    code = "from reprokit.report.display import emit; print(emit({'text/plain': 'x'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_notebook_is_a_path_error(tmp_path: Path) -> None:
    with pytest.raises(PathError, match="cannot read the notebook"):
        read_notebook(tmp_path / "nope.ipynb")


def test_a_file_that_is_not_a_notebook_is_a_path_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_text("not json")
    with pytest.raises(PathError, match="not a notebook"):
        read_notebook(path)


def test_malformed_payload_names_the_notebook_and_the_cell_from_1(tmp_path: Path) -> None:
    bad = output({RESULT_MIME: {"name": "x", "kind": "float", "rtol": "inf"}, "text/plain": "x"})
    nb = notebook(output({"text/plain": "hello"}), bad)  # a markdown cell, then code cells
    with pytest.raises(InputError, match=r"^<notebook>: cell 3: invalid Result"):
        read_notebook(nb)
    with pytest.raises(InputError, match=r"^fit\.ipynb: cell 3: invalid Result"):
        read_notebook(nb, source="fit.ipynb")
    nbformat.write(nb, tmp_path / "run.ipynb")
    with pytest.raises(InputError, match=rf"^{tmp_path / 'run.ipynb'}: cell 3: invalid Result"):
        read_notebook(tmp_path / "run.ipynb")


def test_cells_are_numbered_as_in_the_file_without_the_injected_parameters() -> None:
    nb = notebook(output({RESULT_MIME: {"name": 3}, "text/plain": "x"}))
    injected = nbformat.v4.new_code_cell("device = 'cpu'")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(0, injected)
    with pytest.raises(InputError, match=r"^fit\.ipynb: cell 2: invalid Result"):
        read_notebook(nb, source="fit.ipynb")


def test_notebook_without_reprokit_outputs_is_empty() -> None:
    found = read_notebook(notebook(output({"text/plain": "hello"})))
    assert found.results == {} and found.snapshot is None
