"""Results the kernel declared whose outputs are not in the executed notebook, put back.

The kernel's spool (:mod:`reprokit.recording.spool`) holds every result output it displayed,
in order, with the execution count of its cell. The notebook's own result outputs are matched
to it in order (a subsequence: what ``clear_output``, ``%%capture`` or a dying kernel lost
is missing from the notebook, never reordered); each spool entry left unmatched goes back
into the cell of its execution count (else the cell that was running, else the last that
ran), in its place among that cell's results: before the first of them the kernel declared
after it, else before the cell's error, else at the end. A notebook result the spool does not
hold means they do not describe the same execution: nothing is put back then.
"""

from __future__ import annotations

import bisect
from typing import Any

import nbformat
from nbformat import NotebookNode

from reprokit.results.model import RESULT_MIME

__all__ = ["put_back_results"]


def put_back_results(node: NotebookNode, spooled: list[dict[str, Any]], running: Any) -> int:
    """Put back into ``node`` the spooled outputs it lacks (``running``: the index of the cell
    that was running when the execution ended, if known); how many were put back. Each is
    marked ``metadata.reprokit.recovered``."""
    shown = [
        (cell, out)
        for cell in node.cells
        for out in cell.get("outputs", [])
        if RESULT_MIME in out.get("data", {})
    ]
    matched = _match([out["data"][RESULT_MIME] for _, out in shown], spooled)
    if matched is None or len(matched) == len(spooled):
        return 0
    fallback = _fallback_cell(node, running)
    spool_of = list(matched)  # the spool index of each notebook result, in order
    pairs = [(spooled[k], cell) for k, (cell, _) in zip(spool_of, shown, strict=True)]
    by_count = _cells_by_count(node, pairs)
    declared: dict[int, tuple[list[int], list[Any]]] = {}  # id(cell) -> its results' order
    for (cell, out), j in zip(shown, spool_of, strict=True):
        order, outs = declared.setdefault(id(cell), ([], []))
        order.append(j)
        outs.append(out)
    anchors: dict[int, list[tuple[Any, dict[str, Any]]]] = {}  # id(cell) -> (anchor, output)
    cells: dict[int, Any] = {}
    for k, entry in enumerate(spooled):
        cell = by_count.get(entry["execution_count"], fallback)
        if k in matched or cell is None:
            continue
        order, outs = declared.get(id(cell), ([], []))
        after = bisect.bisect_right(order, k)  # its first result declared later than k
        anchor = outs[after] if after < len(outs) else _error_of(cell)
        anchors.setdefault(id(cell), []).append((anchor, _recovered(entry)))
        cells[id(cell)] = cell
    for key, inserts in anchors.items():
        _insert(cells[key], inserts)
    return sum(map(len, anchors.values()))


def _match(shown: list[Any], spooled: list[dict[str, Any]]) -> dict[int, int] | None:
    """Spool index -> notebook result position, for each notebook result in order; None when
    one is not in the rest of the spool."""
    matched: dict[int, int] = {}
    k = 0
    for position, payload in enumerate(shown):
        while k < len(spooled) and spooled[k]["data"][RESULT_MIME] != payload:
            k += 1
        if k == len(spooled):
            return None
        matched[k] = position
        k += 1
    return matched


def _cells_by_count(node: NotebookNode, pairs: list[tuple[dict[str, Any], Any]]) -> dict[Any, Any]:
    """The cells by the execution count the kernel's shell had as they ran: their ``In [N]``
    plus the shell's offset (IPython 9 counts the running cell's successor), measured on the
    spool entries that matched a notebook result, else 1."""
    offsets = [
        entry["execution_count"] - cell["execution_count"]
        for entry, cell in pairs
        if isinstance(entry["execution_count"], int)
        and isinstance(cell.get("execution_count"), int)
    ]
    offset = max(set(offsets), key=offsets.count) if offsets else 1
    return {
        c["execution_count"] + offset: c
        for c in node.cells
        if c.get("cell_type") == "code" and isinstance(c.get("execution_count"), int)
    }


def _fallback_cell(node: NotebookNode, running: Any) -> Any:
    if isinstance(running, int) and 0 <= running < len(node.cells):
        return node.cells[running]
    code = [c for c in node.cells if c.get("cell_type") == "code"]
    ran = [c for c in code if c.get("execution_count") is not None]
    return (ran or code or [None])[-1]


def _error_of(cell: Any) -> Any:
    return next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)


def _recovered(entry: dict[str, Any]) -> Any:
    metadata = dict(entry["metadata"])
    metadata["reprokit"] = dict(metadata.get("reprokit") or {}) | {"recovered": True}
    output = {"output_type": "display_data", "data": entry["data"], "metadata": metadata}
    return nbformat.from_dict(output)  # type: ignore[no-untyped-call]


def _insert(cell: Any, inserts: list[tuple[Any, Any]]) -> None:
    """Each output before its anchor (an output of the cell; None: at the end), in order."""
    before: dict[int, list[Any]] = {}
    for anchor, new in inserts:
        before.setdefault(id(anchor), []).append(new)  # id(None): at the end
    rebuilt = []
    for out in cell.setdefault("outputs", []):
        rebuilt += before.pop(id(out), [])
        rebuilt.append(out)
    rebuilt += before.pop(id(None), [])
    cell["outputs"] = rebuilt
