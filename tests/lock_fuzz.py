"""The lock fuzzer shared by tests/test_faults_lock_fuzz.py and the campaign in
tools/fuzz_locks.py: a real lock (scalars, nested values, inline and sidecar arrays, an object
array, a Series, a DataFrame, data entries), one field replaced by a hostile value, then every
stage a lock goes through: ``read_lock``, ``check_data``, ``verify_results`` and the JSON,
JUnit and HTML reports. Anything but a :class:`ReprokitError` is a crash."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import strategies as st
from lock_helpers import make_project, record

from reprokit.compare.verify import check_data, verify_results
from reprokit.exceptions import ReprokitError
from reprokit.recording.lock import read_lock
from reprokit.report.html import render_html
from reprokit.report.json_report import verdicts_json
from reprokit.report.junit import junit_xml
from reprokit.results import encode_result
from reprokit.results.notebook import NotebookResults, ResultOutput


def rich_results() -> list[Any]:
    return [
        encode_result("acc", 0.931, rtol=1e-6),
        encode_result("n", 10),
        encode_result("config", {"lr": 0.1, "$key": [1, None, float("nan")]}),
        encode_result("small", np.arange(6, dtype=np.float32).reshape(2, 3), atol=1e-6),
        encode_result("big", np.linspace(0.0, 1.0, 10_000)),  # sidecar .npy
        encode_result("cplx", np.array([1 + 2j, -0.0 - 0.0j, np.nan + 1j])),
        encode_result("objects", np.array(["a", 1, None], dtype=object)),
        encode_result("series", pd.Series([1.0, 2.0], index=["x", "y"], name="s")),
        encode_result("frame", pd.DataFrame({"a": [1, 2], "b": ["u", "v"]})),
    ]


def make_lock_document(folder: Path) -> tuple[Path, dict[str, Any], NotebookResults]:
    """A project whose notebook has a real lock: its folder, the lock as JSON, and the results
    of an execution that reproduces it."""
    project = make_project(folder)
    lock = record(project, rich_results())
    document = json.loads(project.lock_path.read_text(encoding="utf-8"))
    return project.root, document, executed_as(dict(lock.results))


def field_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += field_paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += field_paths(inner, (*prefix, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copied = json.loads(json.dumps(document))
    node = copied
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copied


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


_HEADERS = [
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }\n",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), \n",  # tokenize.TokenError
    b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }\n",
]

HOSTILE = [
    "\ud800",
    "",
    "../../../../etc/passwd",
    "/etc/passwd",
    "etc/passwd",
    "blake3:zz",
    "float33",
    "complex128",
    "object",
    "<U3",
    "json",
    "npy",
    "scalar",
    "k\u0000",
    -1,
    -5,
    0,
    2**63,
    10**40,
    1e400,
    -1e400,
    1e-320,
    -0.0,
    [1000000, 1000000],
    [-1],
    [2**62, 4],
    [1] * 40,
    [],
    {},
    None,
    True,
    {"$float": "NaN"},
    *(
        base64.b64encode(b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h).decode()
        for h in _HEADERS
    ),
    "not base64!",
    _deep(120),
]
"""Values known to have crashed a stage once (see tests/test_faults_lock_fuzz.py)."""

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(HOSTILE),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def executed_as(results: dict[str, Any]) -> NotebookResults:
    return NotebookResults(
        "fuzz", tuple(ResultOutput(k, r) for k, r in enumerate(results.values()))
    )


def run_stages(
    root: Path, text: str, current: NotebookResults, name: str = "fig3.repro.json"
) -> str:
    """Every stage on the lock ``text`` written beside the project's notebook: ``"lock"`` when
    everything went through, ``"refused"`` when a ReprokitError stopped it."""
    path = root / "notebooks" / name
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        lock = read_lock(path)
        data = check_data(lock, root, cache=None)
        for executed in (current, executed_as(dict(lock.results))):
            verdict = verify_results(lock, executed, lock_dir=path.parent, data=data)
            verdicts_json(verdict)
            junit_xml(verdict)
            render_html(verdict)
    except ReprokitError as exc:
        assert "\n" not in str(exc).strip(), str(exc)
        return "refused"
    return "lock"


def dumps(document: Any) -> str:
    return json.dumps(document, ensure_ascii=True)
