"""docs/lock.schema.json is the lock format's specification, and it cannot drift from the code.

- every object of the schema is a dataclass reachable from ``Lock``, and every dataclass
  reachable from ``Lock`` is in the schema, with the same fields, the same required fields
  (those without a default) and compatible JSON types;
- locks written by a real ``reprokit record`` (scalars, nested values with NaN and a
  ``$``-key, inline and sidecar arrays, a DataFrame, a Series, data and snapshot) validate;
- the example on the lock page validates and is read by ``read_lock``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "docs" / "lock.schema.json"

_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}


def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _reachable(cls: type, seen: dict[str, type]) -> dict[str, type]:
    """Every dataclass used by ``cls``'s fields, recursively, by name."""
    if cls.__name__ in seen:
        return seen
    seen[cls.__name__] = cls
    for hint in typing.get_type_hints(cls).values():
        for inner in _flatten(hint):
            if dataclasses.is_dataclass(inner):
                _reachable(inner, seen)
    return seen


def _flatten(hint: Any) -> list[Any]:
    args = typing.get_args(hint)
    return [hint, *(x for arg in args for x in _flatten(arg))] if args else [hint]


def _code_types(hint: Any) -> set[str] | None:
    """The JSON types a field of this annotation may hold (None: any JSON value)."""
    if hint is Any:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        found: set[str] = set()
        for arg in typing.get_args(hint):
            part = _code_types(arg)
            if part is None:
                return None
            found |= part
        return found
    if hint is type(None):
        return {"null"}
    if dataclasses.is_dataclass(hint):
        return {f"$ref:{hint.__name__}"}
    if origin is dict or hint is dict:
        return {"object"}
    if origin is tuple or hint is tuple:
        return {"array"}
    if origin is typing.Literal:  # a closed set of strings: the schema's enum
        return {_JSON_TYPES[type(arg)] for arg in typing.get_args(hint)}
    return {_JSON_TYPES[hint]}


def _schema_types(spec: dict[str, Any]) -> set[str] | None:
    if "$ref" in spec:
        return {"$ref:" + spec["$ref"].rsplit("/", 1)[-1]}
    if "anyOf" in spec:
        found: set[str] = set()
        for option in spec["anyOf"]:
            part = _schema_types(option)
            if part is None:
                return None
            found |= part
        return found
    kind = spec.get("type")
    if kind is None:
        return None
    return set(kind) if isinstance(kind, list) else {kind}


def _container_item(hint: Any) -> str | None:
    """The dataclass inside ``tuple[X, ...]`` / ``dict[str, X]`` (None when not one)."""
    if typing.get_origin(hint) not in (tuple, dict):
        return None
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg.__name__
    return None


def _lock_classes() -> dict[str, type]:
    from reprokit.recording.lock_model import Lock

    return _reachable(Lock, {})


def _object_of(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return schema if name == "Lock" else schema["$defs"][name]  # type: ignore[no-any-return]


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(_schema())


def test_schema_objects_are_the_lock_dataclasses() -> None:
    schema = _schema()
    assert set(schema["$defs"]) | {"Lock"} == set(_lock_classes())


@pytest.mark.parametrize("name", sorted(_lock_classes()))
def test_schema_fields_match_the_dataclass(name: str) -> None:
    cls = _lock_classes()[name]
    obj = _object_of(_schema(), name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(obj["properties"]) == set(fields), f"{name}: fields differ from the code"
    required = {
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    assert set(obj.get("required", ())) == required, f"{name}: required fields differ"
    assert obj.get("additionalProperties") is False, name
    hints = typing.get_type_hints(cls)
    for field, spec in obj["properties"].items():
        assert spec.get("description"), f"{name}.{field} has no description"
        code, documented = _code_types(hints[field]), _schema_types(spec)
        if code is not None and code != {"number"}:
            assert documented == code, f"{name}.{field}: schema {documented}, code {code}"
        elif code == {"number"}:  # a float field: JSON numbers, written as numbers
            assert documented == {"number"}, f"{name}.{field}"
        item = _container_item(hints[field])
        if item is not None:
            inner = spec.get("items") or spec.get("additionalProperties") or {}
            assert inner.get("$ref", "").endswith(f"/{item}"), f"{name}.{field}: items {item}"


def test_schema_version_is_the_code_s() -> None:
    from reprokit.recording.lock_model import LOCK_SCHEMA_VERSION

    assert _schema()["properties"]["schema_version"]["const"] == LOCK_SCHEMA_VERSION


_ARRAYS_NOTEBOOK = [
    "%load_ext reprokit\n%repro start --seed 1",
    "import numpy as np\nimport pandas as pd\nimport reprokit",
    'reprokit.result("big", np.linspace(0.0, 1.0, 20_000), rtol=1e-12)  # 160 kB: sidecar',
    'reprokit.result("small", np.arange(4, dtype=np.float32), atol=1e-6)',
    'reprokit.result("frame", pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}, index=["r", "s"]))',
    'reprokit.result("series", pd.Series([1, 2, 3], name="s"))',
    'reprokit.result("nested", {"$key": [1, 2.5, None], "nan": float("nan")})',
    'reprokit.result("flag", True)\nreprokit.result("label", "ok")\nreprokit.result("n", 7)',
    "%repro end",
]


_CPU2 = ("--device", "cpu", "--jobs", "2")


@pytest.fixture(scope="module")
def recorded_locks(
    tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path
) -> list[Path]:
    """Two locks written by the real ``reprokit record`` in a throw-away project."""
    import shutil

    import nbformat

    root = tmp_path_factory.mktemp("lock-schema")
    (root / "pyproject.toml").write_text("[project]\nname = 'schema'\n")
    shutil.copytree(ROOT / "examples" / "data", root / "data")
    shutil.copy(ROOT / "examples" / "quickstart.ipynb", root / "quickstart.ipynb")
    shutil.copy(mlflow_template_db, root / "mlflow.db")
    node = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    node.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    node.cells = [nbformat.v4.new_code_cell(c) for c in _ARRAYS_NOTEBOOK]  # type: ignore[no-untyped-call]
    nbformat.write(node, root / "arrays.ipynb")  # type: ignore[no-untyped-call]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }
    run = subprocess.run(
        [sys.executable, "-m", "reprokit", "record", "quickstart.ipynb", "arrays.ipynb", *_CPU2],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return [root / "quickstart.repro.json", root / "arrays.repro.json"]


def test_real_locks_validate_against_the_schema(recorded_locks: list[Path]) -> None:
    validator = jsonschema.Draft202012Validator(_schema())
    for path in recorded_locks:
        lock = json.loads(path.read_text(encoding="utf-8"))
        errors = sorted(validator.iter_errors(lock), key=lambda e: list(e.absolute_path))
        assert not errors, f"{path.name}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
        )


def test_real_locks_cover_the_format(recorded_locks: list[Path]) -> None:
    quick, arrays = (json.loads(p.read_text(encoding="utf-8")) for p in recorded_locks)
    assert quick["snapshot"] is not None and quick["data"]["entries"]
    assert quick["run_id"] and quick["outputs"] and quick["notebook"]["cells"]
    results = arrays["results"]
    assert results["big"]["array"]["file"].startswith("arrays.repro/")
    assert results["small"]["array"]["inline"] is not None
    assert results["frame"]["kind"] == "dataframe" and results["frame"]["columns"]
    assert results["series"]["kind"] == "series"
    assert results["nested"]["value"]["$$key"] == [1, 2.5, None]
    assert results["nested"]["value"]["nan"] == {"$float": "NaN"}
    assert {results[n]["kind"] for n in ("flag", "label", "n")} == {"bool", "str", "int"}


def test_a_lock_with_an_undocumented_field_fails_the_schema(recorded_locks: list[Path]) -> None:
    validator = jsonschema.Draft202012Validator(_schema())
    lock = json.loads(recorded_locks[0].read_text(encoding="utf-8"))
    lock["parameters"]["extra"] = 1
    assert list(validator.iter_errors(lock))


def test_the_lock_page_example_validates_and_reads(tmp_path: Path) -> None:
    from reprokit.recording.lock import read_lock

    page = (ROOT / "docs" / "lock.md").read_text(encoding="utf-8")
    match = re.search(r"```json\n(.+?)\n```", page, re.S)
    assert match is not None
    example = json.loads(match.group(1))
    jsonschema.Draft202012Validator(_schema()).validate(example)
    path = tmp_path / "analysis.repro.json"
    path.write_text(match.group(1))
    lock = read_lock(path)
    assert lock.results["r2"].rtol == 1e-9 and lock.notebook.path == "analysis.ipynb"
