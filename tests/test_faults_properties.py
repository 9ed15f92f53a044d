"""Generated bad input for the lock reader and the comparison engine (hypothesis): arbitrary
JSON, wrong types, huge numbers, NaN/inf, deep nesting, unicode names. The outcome is a lock,
a verdict, or a :class:`ReprokitError` subclass: never another exception, never a hang."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lock_fuzz import field_paths, replaced
from lock_helpers import make_project, record, scalar_results

from reprokit.compare.verify import verify_results
from reprokit.exceptions import LockError, ReprokitError
from reprokit.recording.lock import read_lock
from reprokit.results.notebook import NotebookResults, ResultOutput

pytestmark = pytest.mark.faults

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()  # unicode, surrogates excluded by hypothesis' default alphabet
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _read(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "fuzz.repro.json"
    path.write_text(text, encoding="utf-8")
    try:
        return read_lock(path)
    except ReprokitError as exc:
        assert str(path) in str(exc)  # the error names the file
        return exc


@PROPERTY
@given(json_values)
@example(float("nan"))
@example({"schema_version": 10**400})
@example({"schema_version": 1, "results": {"\u00e9\U0001f600": {"kind": "scalar"}}})
def test_arbitrary_json_is_a_lock_or_a_lock_error(tmp_path: Path, value: Any) -> None:
    _read(tmp_path, json.dumps(value))


@pytest.mark.parametrize("depth", [10_000, 200_000])
def test_deeply_nested_json_is_a_lock_error_not_a_recursion_error(
    tmp_path: Path, depth: int
) -> None:
    outcome = _read(tmp_path, '{"schema_version": 1, "results": ' + _deep(depth) + "}")
    assert isinstance(outcome, LockError)


@pytest.fixture(scope="module")
def valid_lock(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    project = make_project(tmp_path_factory.mktemp("fuzz-lock"))
    record(project, scalar_results())
    return dict(json.loads(project.lock_path.read_text()))


def _executed(results: dict[str, Any]) -> NotebookResults:
    return NotebookResults("fuzz", tuple(ResultOutput(0, r) for r in results.values()))


@PROPERTY
@given(data=st.data(), value=json_values)
def test_one_field_of_a_valid_lock_replaced_by_anything(
    tmp_path: Path, valid_lock: dict[str, Any], data: st.DataObject, value: Any
) -> None:
    """Every field of a real lock, set to any JSON value: a lock (then verification gives a
    verdict) or a LockError naming the file."""
    path = data.draw(st.sampled_from(field_paths(valid_lock)[1:]))
    outcome = _read(tmp_path, json.dumps(replaced(valid_lock, path, value)))
    if isinstance(outcome, ReprokitError):
        return
    try:
        verdict = verify_results(outcome, _executed(dict(outcome.results)), lock_dir=tmp_path)
    except ReprokitError:
        return
    assert verdict.reproduced in (True, False)


@PROPERTY
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True))
def test_a_lock_result_of_any_float_gives_a_verdict(
    tmp_path: Path, valid_lock: dict[str, Any], locked: float, measured: float
) -> None:
    name = next(iter(valid_lock["results"]))
    document = replaced(valid_lock, ("results", name, "value"), locked)
    lock = _read(tmp_path, json.dumps(document))
    assert not isinstance(lock, ReprokitError), lock
    result = lock.results[name]
    other = dataclasses.replace(result, value=measured)
    measured_results = {**lock.results, name: other}
    verdict = verify_results(lock, _executed(measured_results), lock_dir=tmp_path)
    same = locked == measured or (math.isnan(locked) and math.isnan(measured))
    if same:
        assert verdict.reproduced


def _nested(depth: int, leaf: Any) -> Any:
    value: Any = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"\u00fc\u2603": value}
    return value


@pytest.mark.parametrize("depth", [50, 5_000])
def test_deeply_nested_results_compare_without_crashing(depth: int) -> None:
    from reprokit.compare.values import compare_values
    from reprokit.comparison import Tolerance

    same = compare_values(_nested(depth, 1.0), _nested(depth, 1.0), Tolerance())
    other = compare_values(_nested(depth, 1.0), _nested(depth, float("nan")), Tolerance())
    assert same.status == "reproduced" and other.status == "differs"
