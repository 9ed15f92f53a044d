"""Results the kernel declared whose outputs are not in the executed notebook, put back.

The kernel's spool (:mod:`reprokit.recording.spool`) holds every result output it displayed,
in order, each keyed by the cell that declared it, and each cell's ``In [N]``. An entry's
cell is the notebook cell of that ``In [N]``; a cell that never said (the kernel died in it)
is the cell that was running, else the last that ran.

Each cell's own result outputs are matched to the entries of that cell from the last one
back (``clear_output()`` erases the earlier outputs, never the later), an output left over
to any entry with the same payload not yet matched (``%%capture`` then ``cap.show()`` in a
later cell); an output no entry holds stands as it is. Each entry left unmatched goes back
into its cell, marked ``metadata.reprokit.recovered``, in its place among that cell's
results: before the first of them the kernel declared after it, else before the cell's
error, else at the end. So a name declared again keeps its last value.
"""

from __future__ import annotations

import bisect
from typing import Any

import nbformat
from nbformat import NotebookNode

from reprokit.results.model import RESULT_MIME

__all__ = ["put_back_results"]


def put_back_results(
    node: NotebookNode, spooled: list[dict[str, Any]], counts: dict[int, int], running: Any
) -> int:
    """Put back into ``node`` the spooled outputs it lacks (``counts``: each spool cell's
    ``In [N]``; ``running``: the index of the cell that was running when the execution ended,
    if known); how many were put back."""
    cells = [c for c in node.cells if c.get("cell_type") == "code"]
    by_count = {c["execution_count"]: c for c in cells if isinstance(c.get("execution_count"), int)}
    fallback = _fallback_cell(node, running)
    homes = [by_count.get(counts.get(entry["cell"], -1), fallback) for entry in spooled]
    matched = _match(node, spooled, homes)  # entry index -> the output it is
    anchors: dict[int, list[tuple[Any, Any]]] = {}  # id(cell) -> (anchor, output)
    owners: dict[int, Any] = {}
    order = _declared_order(node, matched)
    for k, (entry, cell) in enumerate(zip(spooled, homes, strict=True)):
        if k in matched or cell is None:
            continue
        keys, outs = order.get(id(cell), ([], []))
        after = bisect.bisect_right(keys, k)  # its first result declared later than k
        anchor = outs[after] if after < len(outs) else _error_of(cell)
        anchors.setdefault(id(cell), []).append((anchor, _recovered(entry)))
        owners[id(cell)] = cell
    for key, inserts in anchors.items():
        _insert(owners[key], inserts)
    return sum(map(len, anchors.values()))


def _match(node: NotebookNode, spooled: list[dict[str, Any]], homes: list[Any]) -> dict[int, Any]:
    """Entry index -> the notebook output it is (see the module docstring)."""
    matched: dict[int, Any] = {}
    left: list[Any] = []
    declared: dict[int, list[int]] = {}
    for k, home in enumerate(homes):
        declared.setdefault(id(home), []).append(k)
    for cell in node.cells:
        shown = [o for o in cell.get("outputs", []) if RESULT_MIME in o.get("data", {})]
        mine = declared.get(id(cell), [])
        for out in reversed(shown):
            payload = out["data"][RESULT_MIME]
            while mine and spooled[mine[-1]]["data"][RESULT_MIME] != payload:
                mine.pop()
            if mine:
                matched[mine.pop()] = out
            else:
                left.append(out)
    free: dict[str, list[int]] = {}
    for k, entry in enumerate(spooled):
        if k not in matched:
            free.setdefault(_key(entry["data"][RESULT_MIME]), []).append(k)
    for out in left:  # shown elsewhere than where declared: %%capture, then cap.show()
        candidates = free.get(_key(out["data"][RESULT_MIME]))
        if candidates:
            matched[candidates.pop()] = out
    return matched


def _key(payload: Any) -> str:
    import json

    return json.dumps(payload, sort_keys=True, default=str)


def _declared_order(
    node: NotebookNode, matched: dict[int, Any]
) -> dict[int, tuple[list[int], list[Any]]]:
    """Per cell (by id): the entry indexes of its shown results, ascending, and those outputs."""
    where: dict[int, Any] = {}
    for cell in node.cells:
        for out in cell.get("outputs", []):
            where[id(out)] = cell
    order: dict[int, tuple[list[int], list[Any]]] = {}
    for k in sorted(matched):
        out = matched[k]
        cell = where.get(id(out))
        if cell is not None:
            keys, outs = order.setdefault(id(cell), ([], []))
            keys.append(k)
            outs.append(out)
    return order


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
