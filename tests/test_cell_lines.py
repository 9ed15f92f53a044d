"""Where a cell starts, as the line a CI annotation points at (reprokit.notebook.lines)."""

from __future__ import annotations

from pathlib import Path

import nbformat

from reprokit.notebook.lines import cell_line

PERCENT = """\
# %%
import reprokit

# %% [markdown]
# A note

# %%
x = 1


# %%
raise ValueError("boom")
"""


def test_a_percent_cell_starts_at_its_marker_not_the_blank_line_before(tmp_path: Path) -> None:
    """A reviewer's annotation pointed at the blank line before the cell that raised: the
    marker's pattern let its leading whitespace run over line ends."""
    source = tmp_path / "jt.py"
    source.write_text(PERCENT)
    lines = PERCENT.splitlines()
    starts = [cell_line(source, k) for k in range(4)]
    assert starts == [1, 4, 7, 11]
    assert all(lines[n - 1].startswith("# %%") for n in starts if n is not None)
    assert cell_line(source, 4) is None and cell_line(source, -1) is None


def test_an_ipynb_cell_starts_at_its_cell_type_key(tmp_path: Path) -> None:
    node = nbformat.v4.new_notebook()
    tricky = nbformat.v4.new_code_cell("a = '\"cell_type\": x'")  # the key inside a string
    node.cells = [tricky, nbformat.v4.new_code_cell("b")]
    source = tmp_path / "nb.ipynb"
    nbformat.write(node, source)
    lines = source.read_text().splitlines()
    for k in range(2):
        line = cell_line(source, k)
        assert line is not None and '"cell_type"' in lines[line - 1]
    assert cell_line(source, 2) is None
