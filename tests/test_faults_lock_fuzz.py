"""A lock is untrusted input (issue 14): every hostile lock seen so far, as a table, and the
fuzzers that found them (hypothesis, bounded; ``REPROKIT_FUZZ_EXAMPLES=20000`` runs a campaign).

Each refusal is ONE line, a :class:`LockError` (exit 2) naming the file and the field, raised
by ``read_lock``: before any data is hashed or any cell runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lock_fuzz import (
    HOSTILE,
    dumps,
    field_paths,
    json_values,
    make_lock_document,
    replaced,
    run_stages,
)

from reprokit.exceptions import LockError, ReprokitError
from reprokit.recording.lock import read_lock
from reprokit.recording.lock_checks import MAX_LOCK_BYTES

pytestmark = pytest.mark.faults

EXAMPLES = int(os.environ.get("REPROKIT_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
_RAW = "__raw_json__"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Any]:
    return make_lock_document(tmp_path_factory.mktemp("lock-fuzz"))


def _write(root: Path, document: Any, raw: str | None = None) -> Path:
    text = dumps(document)
    if raw is not None:
        text = text.replace(json.dumps(_RAW), raw)
    path = root / "notebooks" / "hostile.repro.json"
    path.write_text(text, encoding="utf-8")
    return path


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def _npy_text(header: bytes) -> str:
    import base64

    return base64.b64encode(
        b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    ).decode()


# (case, field path to replace, replacement or _RAW, raw JSON text, field named in the error)
REFUSED = [
    (
        "5000-digit integer",
        ("parameters", "values", "epochs"),
        _RAW,
        "1" * 5000,
        "parameters.values.epochs",
    ),
    ("rtol 1e400", ("results", "acc", "rtol"), _RAW, "1e400", "results.acc"),
    ("rtol NaN", ("results", "acc", "rtol"), _RAW, "NaN", "results.acc"),
    ("negative rtol", ("results", "acc", "rtol"), -1e-3, None, "results.acc"),
    ("negative atol", ("results", "small", "atol"), -1.0, None, "results.small"),
    (
        "device atol -inf",
        ("results", "acc", "device_atol"),
        _RAW,
        "-Infinity",
        "results.acc.device",
    ),
    (
        "parameter nested 900 deep",
        ("parameters", "values", "epochs"),
        _RAW,
        _nested(900),
        "parameters.values.epochs",
    ),
    (
        "shape [1e6, 1e6]",
        ("results", "small", "array", "shape"),
        _RAW,
        "[1e6, 1e6]",
        "results.small.array.shape",
    ),
    (
        "shape [10**6, 10**6]",
        ("results", "small", "array", "shape"),
        [10**6, 10**6],
        None,
        "results.small.array",
    ),
    (
        "lone surrogate",
        ("results", "config", "value", "lr"),
        _RAW,
        '"\\ud800"',
        "results.config.value.lr",
    ),
    ("unknown kind", ("results", "acc", "kind"), "scalar", None, "results.acc.kind"),
    (
        "bad inline npy (tokenize)",
        ("results", "small", "array", "inline"),
        _npy_text(b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), \n"),
        None,
        "results.small.array",
    ),
    (
        "inline npy of another shape",
        ("results", "small", "array", "inline"),
        _npy_text(b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }\n"),
        None,
        "results.small.array",
    ),
    ("schema_version -5", ("schema_version",), -5, None, "schema_version"),
    (
        "negative shape",
        ("results", "small", "array", "shape"),
        [-2, -3],
        None,
        "results.small.array",
    ),
    ("bogus dtype", ("results", "small", "array", "dtype"), "float33", None, "results.small.array"),
    (
        "unknown encoding",
        ("results", "small", "array", "encoding"),
        "pickle",
        None,
        "results.small.array",
    ),
    (
        "stats not finite",
        ("results", "small", "array", "stats", "max"),
        _RAW,
        "1e999",
        "results.small.array",
    ),
    ("device cuda:0", ("parameters", "device"), "tpu", None, "parameters.device"),
    (
        "data path absolute",
        ("data", "entries", 0, "path"),
        "/etc/passwd",
        None,
        "data.entries[0].path",
    ),
    (
        "data path escaping",
        ("data", "entries", 0, "path"),
        "../../../etc/passwd",
        None,
        "data.entries[0].path",
    ),
    (
        "sidecar escaping",
        ("results", "big", "array", "file"),
        "../../etc/passwd",
        None,
        "results.big.array.file",
    ),
    ("notebook path absolute", ("notebook", "path"), "/etc/passwd", None, "notebook.path"),
    (
        "a key with a newline and a surrogate",
        ("results", "config", "value"),
        _RAW,
        '{"a\\n": "\\udc00"}',
        "results.config.value.a\\n",
    ),
    ("bogus scalar dtype", ("results", "n", "dtype"), "j\u00fd", None, "results.n.dtype"),
    ("digest not a digest", ("notebook", "digest"), "blake3:XYZ", None, "notebook.digest"),
    (
        "json-encoded float array",
        ("results", "small", "array", "encoding"),
        "json",
        None,
        "results.small.array",
    ),
]


@pytest.mark.parametrize(
    ("where", "value", "raw", "field"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_a_hostile_lock_is_one_line_naming_file_and_field(
    real: tuple[Path, dict[str, Any], Any],
    where: tuple[Any, ...],
    value: Any,
    raw: str | None,
    field: str,
) -> None:
    root, document, _ = real
    path = _write(root, replaced(document, where, value), raw)
    with pytest.raises(LockError) as info:
        read_lock(path)
    error = info.value
    assert error.exit_code == 2 and error.path == str(path)
    assert (error.field or "").lstrip("$.").startswith(field), (error.field, str(error))
    assert "\n" not in str(error) and str(path) in str(error)


# values that once crashed a later stage: now each stage gives a verdict or a ReprokitError
GOES_THROUGH = [
    ("stats null", ("results", "big", "array", "stats"), None),
    ("sample null", ("results", "big", "array", "sample"), None),
    ("float marker holds null", ("results", "config", "value", "$$key", 2, "$float"), None),
    ("float marker holds a dict", ("results", "config", "value", "$$key", 2, "$float"), {"a": 1}),
    ("Series named by a dict", ("results", "series", "value"), {"x": 1}),
    ("complex zero", ("results", "cplx", "array", "inline"), None),
]


@pytest.mark.parametrize(
    ("where", "value"), [c[1:] for c in GOES_THROUGH], ids=[c[0] for c in GOES_THROUGH]
)
def test_a_once_crashing_lock_gives_a_verdict_or_a_reprokit_error(
    real: tuple[Path, dict[str, Any], Any], where: tuple[Any, ...], value: Any
) -> None:
    root, document, current = real
    assert run_stages(root, dumps(replaced(document, where, value)), current) in ("lock", "refused")


def _in_time(function: Any, seconds: float = 20.0) -> Any:
    """``function()``'s outcome, failing (not hanging) when it blocks."""
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(_outcome(function)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, "blocked: a FIFO or device was opened"
    return outcome[0]


def _outcome(function: Any) -> Any:
    try:
        return function()
    except ReprokitError as exc:
        return exc


def test_a_lock_that_is_a_fifo_or_a_device_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.repro.json"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.repro.json"
    zero.symlink_to("/dev/zero")
    # the link is refused before it is opened: it leads outside the project
    for path, reason in ((fifo, "not a regular file"), (zero, "leads outside")):
        error = _in_time(lambda p=path: read_lock(p))
        assert isinstance(error, LockError) and reason in str(error)


def test_an_oversized_lock_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.repro.json"
    with path.open("wb") as handle:
        handle.truncate(MAX_LOCK_BYTES + 1)  # sparse: nothing written, nothing read
    with pytest.raises(LockError, match="more than the"):
        read_lock(path)


@pytest.mark.parametrize("kind", ["outside", "fifo", "dev-zero", "truncated", "folder"])
def test_a_hostile_sidecar_is_refused_by_read_lock(
    real: tuple[Path, dict[str, Any], Any], tmp_path: Path, kind: str
) -> None:
    root, document, _ = real
    file = document["results"]["big"]["array"]["file"]
    lock_path = _write(root, document)
    sidecar = lock_path.parent / file
    kept = sidecar.read_bytes()
    outside = tmp_path / "outside.npy"
    outside.write_bytes(kept)
    sidecar.unlink()
    try:
        if kind == "outside":
            sidecar.symlink_to(outside)
        elif kind == "fifo":
            os.mkfifo(sidecar)
        elif kind == "dev-zero":
            sidecar.symlink_to("/dev/zero")
        elif kind == "folder":
            sidecar.mkdir()
        else:
            sidecar.write_bytes(kept[:-8])
        descriptors = len(os.listdir("/proc/self/fd"))
        error = _in_time(lambda: read_lock(lock_path))
        assert isinstance(error, LockError), error
        assert error.field == "results.big.array.file" and str(sidecar) in str(error)
        assert len(os.listdir("/proc/self/fd")) == descriptors  # none left open
    finally:
        if sidecar.is_dir() and not sidecar.is_symlink():
            sidecar.rmdir()
        else:
            sidecar.unlink()
        sidecar.write_bytes(kept)


def test_the_project_root_comes_from_disk_not_from_the_lock(
    real: tuple[Path, dict[str, Any], Any],
) -> None:
    """A lock claiming to sit seven folders deep, with a data entry ``etc/passwd``: verify
    looks for ``<project>/etc/passwd``, finds nothing, stops before executing, and never
    hashes /etc/passwd."""
    root, document, _ = real
    hostile = replaced(document, ("notebook", "path"), "x/y/z/w/v/u/t/fig3.ipynb")
    hostile = replaced(hostile, ("data", "entries", 0, "path"), "etc/passwd")
    hostile["data"]["entries"] = hostile["data"]["entries"][:1]
    hostile["snapshot"]["data"] = hostile["data"]  # an input of the start: checked before
    (root / "notebooks" / "fig3.repro.json").write_text(dumps(hostile), encoding="utf-8")
    report = root / "verdict.json"
    run = subprocess.run(
        [sys.executable, "-m", "reprokit", "verify", "notebooks/fig3.ipynb", "--json", str(report)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr  # data missing: not reproduced
    shown = run.stdout + run.stderr + (report.read_text() if report.exists() else "")
    assert "etc/passwd" in shown and "missing" in shown.lower()
    from reprokit.capturing.hashing import hash_path

    digest = hash_path("/etc/passwd", algorithm="blake3", cache=None).digest
    assert digest not in shown


# ----------------------------------------------------------------------------- fuzzing


@FUZZ
@given(data=st.data(), value=json_values | st.sampled_from(HOSTILE))
def test_any_field_of_a_real_lock_replaced_by_anything_never_crashes(
    real: tuple[Path, dict[str, Any], Any], data: st.DataObject, value: Any
) -> None:
    """Through read_lock, check_data, verify_results and the JSON, JUnit and HTML reports:
    a verdict or a ReprokitError, never another exception."""
    root, document, current = real
    where = data.draw(st.sampled_from(field_paths(document)[1:]))
    run_stages(root, dumps(replaced(document, where, value)), current)


@FUZZ
@given(data=st.data(), value=json_values | st.sampled_from(HOSTILE))
def test_what_the_reader_accepts_the_published_schema_accepts(
    real: tuple[Path, dict[str, Any], Any], data: st.DataObject, value: Any
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    root, document, _ = real
    where = data.draw(st.sampled_from(field_paths(document)[1:]))
    hostile = replaced(document, where, value)
    path = _write(root, hostile)
    try:
        read_lock(path)
    except ReprokitError:
        return
    schema = json.loads((Path(__file__).parents[1] / "docs" / "lock.schema.json").read_text())
    # an unknown field is ignored by the reader (it cannot cause anything), refused by the
    # schema: compare with the schema that allows unknown fields (also inside anyOf branches)
    errors = list(jsonschema.Draft202012Validator(_open(schema)).iter_errors(hostile))
    assert not errors, f"read_lock accepted what the schema refuses: {errors[0].message}"


def _open(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` lifted everywhere."""
    if isinstance(schema, dict):
        return {k: _open(v) for k, v in schema.items() if (k, v) != ("additionalProperties", False)}
    if isinstance(schema, list):
        return [_open(item) for item in schema]
    return schema


def test_every_refused_case_is_refused_by_the_schema_too(
    real: tuple[Path, dict[str, Any], Any],
) -> None:
    """The limits the schema can say (JSON has no NaN, no nesting depth, no npy header), it
    says: the reader and the published schema agree on the rest of the table."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parents[1] / "docs" / "lock.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    root, document, _ = real
    beyond_schema = {
        "5000-digit integer",
        "rtol NaN",
        "parameter nested 900 deep",
        "lone surrogate",
        "bad inline npy (tokenize)",
        "inline npy of another shape",
        "bogus dtype",
        "bogus scalar dtype",
        "a key with a newline and a surrogate",
        "shape [1e6, 1e6]",  # 1e6 is an integer to jsonschema, a float to the reader
        "shape [10**6, 10**6]",
        "json-encoded float array",
        "data path escaping",
        "sidecar escaping",
        "notebook path absolute",
        "data path absolute",
    }
    for case, where, value, raw, _ in REFUSED:
        if case in beyond_schema:
            continue
        text = _write(root, replaced(document, where, value), raw).read_text()
        assert list(validator.iter_errors(json.loads(text))), f"the schema accepts {case!r}"


def test_compare_never_crashes_on_a_sign_flipped_complex_zero() -> None:
    from reprokit.compare.values import compare_values

    real = compare_values(np.array([0.0, 1.0])[::-1], np.array([-0.0, 1.0])[::-1]).status
    a = np.array([0j, 1j, complex(0.0, -0.0)])[::-1]
    b = np.array([complex(-0.0, 0.0), 1j, 0j])[::-1]
    assert compare_values(a, b).status == real  # a complex zero's sign counts as a real one's
