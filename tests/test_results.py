"""Results: encoding of every supported value, JSON round trip, errors that name the result."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reprokit._serde import from_json, to_json
from reprokit.compare.values import compare_values
from reprokit.exceptions import InputError, UsageError
from reprokit.recording.folder import RunFolder
from reprokit.results import (
    Result,
    ResultValueError,
    decode_result,
    encode_result,
    load_array,
)
from reprokit.results.jsonvalue import decode_json, encode_json


def roundtrip(result: Result) -> Result:
    text = to_json(result)
    json.loads(text)  # strict JSON: no bare NaN/Infinity tokens
    assert "NaN," not in text and ": NaN" not in text and "Infinity," not in text
    return from_json(text, Result)


@pytest.mark.parametrize(
    ("value", "kind"),
    [(None, "none"), (True, "bool"), (3, "int"), (2.5, "float"), ("abc", "str")],
)
def test_python_scalars_keep_kind_and_value(value: object, kind: str) -> None:
    result = roundtrip(encode_result("x", value))
    assert result.kind == kind
    assert decode_result(result) == value


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_survive_json(value: float) -> None:
    back = decode_result(roundtrip(encode_result("x", value)))
    assert (math.isnan(back) and math.isnan(value)) or back == value


def test_nested_values_with_special_floats_and_dollar_keys_roundtrip() -> None:
    value = {"a": [1, 2.5, math.inf, {"b": None}], "$float": "not a marker", "$$x": [True]}
    result = roundtrip(encode_result("nested", value, rtol=1e-3, atol=0))
    assert result.kind == "json"
    assert (result.rtol, result.atol) == (1e-3, 0.0)
    assert decode_result(result) == value


def test_tuples_come_back_as_lists() -> None:
    assert decode_json(encode_json((1, (2, 3)), name="t")) == [1, [2, 3]]


def test_numpy_scalar_keeps_its_dtype() -> None:
    result = roundtrip(encode_result("acc", np.float32(0.1)))
    assert (result.kind, result.dtype, result.type_name) == ("float", "float32", "numpy.float32")
    back = decode_result(result)
    assert isinstance(back, np.float32) and back == np.float32(0.1)


def test_zero_dim_tensor_is_a_scalar_result() -> None:
    result = roundtrip(encode_result("loss", torch.tensor(0.25, dtype=torch.float64)))
    assert (result.kind, result.dtype, result.device) == ("float", "float64", "cpu")
    assert result.is_numeric_scalar


def test_small_array_is_inline_and_exact() -> None:
    array = np.array([[1.5, np.nan], [np.inf, -2.0]], dtype=np.float32)
    result = roundtrip(encode_result("w", array))
    assert result.array is not None and result.array.inline is not None
    assert result.array.file is None
    back = decode_result(result)
    assert back.dtype == np.float32 and back.shape == (2, 2)
    np.testing.assert_array_equal(back, array)


def test_array_stats_count_nan_and_inf_and_skip_them() -> None:
    array = np.array([1.0, 3.0, np.nan, np.inf, -np.inf, np.nan])
    stats = encode_result("a", array).array.stats  # type: ignore[union-attr]
    assert stats is not None
    assert (stats.min, stats.max, stats.mean) == (1.0, 3.0, 2.0)
    assert (stats.nan_count, stats.posinf_count, stats.neginf_count) == (2, 1, 1)


def test_large_array_goes_by_reference_with_digest_stats_and_sample(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    array = np.arange(100_000, dtype=np.float64).reshape(100, 1000)
    result = roundtrip(encode_result("big", array, writer=folder, rtol=1e-6))
    data = result.array
    assert data is not None and data.inline is None
    assert data.file is not None and (tmp_path / data.file).is_file()
    assert data.artifact == f"reprokit/{data.file}"
    assert data.digest.startswith("blake3:")
    assert data.sample is not None and len(data.sample.indices) == 64
    flat = array.reshape(-1)
    assert [flat[i] for i in data.sample.indices] == list(data.sample.values)
    np.testing.assert_array_equal(load_array(data), array)
    np.testing.assert_array_equal(load_array(data, base=tmp_path), array)


def test_sample_indices_depend_only_on_the_shape(tmp_path: Path) -> None:
    a = encode_result("a", np.zeros(50_000), writer=RunFolder(tmp_path)).array
    b = encode_result("b", np.ones(50_000), writer=RunFolder(tmp_path)).array
    assert a is not None and b is not None and a.sample is not None and b.sample is not None
    assert a.sample.indices == b.sample.indices


def test_same_content_gives_same_digest_whatever_the_container() -> None:
    a = encode_result("a", np.arange(6, dtype=np.int64)).array
    b = encode_result("b", torch.arange(6, dtype=torch.int64)).array
    assert a is not None and b is not None
    assert a.digest == b.digest


def test_large_array_without_a_folder_stays_inline() -> None:
    data = encode_result("big", np.zeros(100_000)).array
    assert data is not None and data.inline is not None and data.file is None


def test_missing_reference_file_is_a_path_error(tmp_path: Path) -> None:
    from reprokit.exceptions import PathError

    data = encode_result("big", np.zeros(100_000), writer=RunFolder(tmp_path)).array
    assert data is not None and data.file is not None
    (tmp_path / data.file).unlink()
    with pytest.raises(PathError, match="cannot read the array file"):
        load_array(data)


def test_bfloat16_tensor_is_widened_and_says_so() -> None:
    result = encode_result("t", torch.ones(3, dtype=torch.bfloat16))
    assert result.array is not None
    assert (result.array.dtype, result.array.source_dtype) == ("float32", "torch.bfloat16")
    assert result.type_name == "torch.Tensor"


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: quantized and nested are deprecated
def test_tensors_of_every_layout_are_recorded_as_they_compare() -> None:
    """Sparse, quantized and complex32 tensors are recorded as the comparison reads them; one
    without values (meta) or nested is refused in one line, not a torch traceback."""
    from reprokit.compare.values import compare_values
    from reprokit.results.encode import decode_result

    dense = torch.eye(40)
    cases = {
        "sparse": (dense.to_sparse(), "float32", None),
        "csr": (dense.to_sparse_csr(), "float32", None),
        "complex32": (torch.ones(6, dtype=torch.complex32), "complex64", "torch.complex32"),
        "quantized": (
            torch.quantize_per_tensor(torch.ones(6), 0.1, 10, torch.qint8),
            "float32",
            "torch.qint8",
        ),
    }
    for name, (tensor, dtype, source) in cases.items():
        result = roundtrip(encode_result(name, tensor))
        assert result.array is not None, name
        assert (result.array.dtype, result.array.source_dtype) == (dtype, source), name
        again = decode_result(encode_result(name, tensor.clone()))  # as verify reads both
        assert compare_values(decode_result(result), again).status == "reproduced", name
    sparse = decode_result(encode_result("sparse", dense.to_sparse()))
    assert np.array_equal(sparse, np.eye(40, dtype=np.float32))
    for tensor, why in (
        (torch.empty(3, device="meta"), "meta device"),
        (torch.nested.nested_tensor([torch.ones(2), torch.ones(3)]), "nested tensor"),
    ):
        with pytest.raises(ResultValueError, match=why):
            encode_result("t", tensor)


def test_a_masked_array_is_refused_rather_than_recorded_without_its_mask() -> None:
    masked = np.ma.masked_array(np.arange(5.0), mask=[0, 1, 0, 0, 0])
    with pytest.raises(ResultValueError, match=r"MaskedArray \(record m.filled"):
        encode_result("m", masked)
    assert encode_result("m", masked.filled(np.nan)).array is not None


def test_string_array_is_stored_as_json_not_pickle() -> None:
    array = np.array(["a", "bc", None], dtype=object)
    result = roundtrip(encode_result("labels", array))
    assert result.array is not None and result.array.encoding == "json"
    assert list(decode_result(result)) == ["a", "bc", None]


def test_series_roundtrips_with_index_and_name() -> None:
    series = pd.Series([1.0, np.nan, 3.0], index=["x", "y", "z"], name="score")
    back = decode_result(roundtrip(encode_result("s", series)))
    pd.testing.assert_series_equal(back, series, check_index_type=False)


def test_nullable_integer_series_keeps_missing_values_as_nan() -> None:
    series = pd.Series([1, None, 3], dtype="Int64")
    result = roundtrip(encode_result("s", series))
    assert result.index is None  # the default RangeIndex is not stored
    back = decode_result(result)
    assert math.isnan(back[1]) and back[2] == 3


def test_nullable_integers_beyond_float64_are_kept_exactly() -> None:
    """A missing value made the column float64: ``2**53 + 1`` was recorded as ``2**53``. Such
    a column is kept as Python ints and None; one float64 holds exactly stays float64, as
    locks recorded it before."""
    for dtype, big in [("Int64", 2**53 + 1), ("Int64", 1 - 2**63), ("UInt64", 2**64 - 1)]:
        series = pd.Series([big, None, 3], dtype=dtype)
        result = roundtrip(encode_result("s", series))
        assert result.array is not None and result.array.dtype == "object"
        assert result.array.source_dtype == dtype
        assert decode_result(result).tolist() == [big, None, 3]
    frame = pd.DataFrame({"a": pd.Series([2**53 + 1, None], dtype="Int64")})
    assert decode_result(roundtrip(encode_result("f", frame)))["a"].tolist() == [2**53 + 1, None]
    for exact in ([2**53, None, -(2**53)], [2**60, None]):  # beyond 2**53 but floats exactly
        kept = roundtrip(encode_result("s", pd.Series(exact, dtype="Int64"))).array
        assert kept is not None and kept.dtype == "float64"


def test_dataframe_roundtrips_column_by_column() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": [0.5, np.inf], "c": ["u", "v"]})
    result = roundtrip(encode_result("df", frame))
    assert [c.name for c in result.columns] == ["a", "b", "c"]
    back = decode_result(result)
    assert back["a"].tolist() == [1, 2] and back["b"].tolist() == [0.5, math.inf]
    assert back["c"].tolist() == ["u", "v"]


@pytest.mark.parametrize(
    "columns", [["a", "a"], [0, "0"]], ids=["repeated label", "labels alike as text"]
)
def test_every_column_of_a_frame_is_decoded_and_compared(columns: list[object]) -> None:
    """Decoding built the frame from ``{label: column}``: of two columns with one label
    (``a``, ``a``; or 0 and ``"0"``, both kept as text) only the last survived, on both
    sides, so a change in the first verified as ``reproduced`` (a stranger's report)."""
    frame = pd.DataFrame([[1.0, 2.0]], columns=columns)
    reference = decode_result(roundtrip(encode_result("df", frame)))
    assert reference.shape == (1, 2) and reference.iloc[0].tolist() == [1.0, 2.0]
    changed = pd.DataFrame([[9.0, 2.0]], columns=columns)
    current = decode_result(roundtrip(encode_result("df", changed)))
    assert compare_values(reference, current).status == "differs"
    assert compare_values(reference, reference.copy()).status == "reproduced"


def test_tz_aware_datetimes_are_iso_text_with_their_offset() -> None:
    stamps = pd.date_range("2024-01-01", periods=2, tz="Europe/Berlin", unit="ns")
    frame = pd.DataFrame({"t": stamps + pd.Timedelta(1, "ns"), "v": [1.5, 2.5]})
    frame.loc[1, "t"] = pd.NaT
    result = roundtrip(encode_result("df", frame))
    column = result.columns[0].data
    assert column.inline == ["2024-01-01T00:00:00.000000001+01:00", None]
    assert (column.dtype, column.source_dtype) == ("object", "datetime64[ns, Europe/Berlin]")
    series = pd.Series([1.0, 2.0], index=stamps.tz_convert("UTC"))
    index = roundtrip(encode_result("s", series)).index
    assert index is not None and index.inline == [
        "2023-12-31T23:00:00+00:00",
        "2024-01-01T23:00:00+00:00",
    ]
    reference = decode_result(encode_result("s", pd.Series(stamps)))
    assert compare_values(
        reference, decode_result(encode_result("s", pd.Series(stamps)))
    ).status == ("reproduced")
    moved = decode_result(encode_result("s", pd.Series(stamps.tz_convert("UTC"))))
    assert compare_values(reference, moved).status == "differs"  # compared as text, exactly


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (
            pd.DataFrame({"v": [1.0, 2.0], "p": pd.period_range("2024-01", periods=2)}),
            "column 'p' row 0",
        ),
        (pd.DataFrame({"o": [1, [2, {3}]]}), r"column 'o' row 1\[1\]"),
        (pd.Series([1.0], index=pd.Index([frozenset()])), "index row 0"),
        (pd.Series([1.0, object()]), "row 1"),  # was "at [1]", read as a list index
    ],
)
def test_a_refused_element_of_a_frame_names_its_column_and_row(value: object, where: str) -> None:
    with pytest.raises(
        ResultValueError, match=rf"^result 'df': cannot record a value of .* at {where};"
    ):
        encode_result("df", value)


def test_unsupported_value_names_the_result_and_the_type() -> None:
    with pytest.raises(ResultValueError) as info:
        encode_result("model", object())
    assert "'model'" in str(info.value) and "object" in str(info.value)
    assert isinstance(info.value, TypeError)


def test_unsupported_part_of_a_nested_value_names_where() -> None:
    with pytest.raises(ResultValueError, match=r"set at \['a'\]\[1\]"):
        encode_result("cfg", {"a": [1, {2, 3}]})


def _cycles() -> list[tuple[object, str]]:
    looped: list[object] = []
    looped.append(looped)
    inner: dict[str, object] = {}
    config = {"model": {"layers": [1, inner]}}
    inner["back"] = config["model"]
    return [(looped, r"\[0\] is the whole value"), (config, r"\['back'\] is \['model'\]")]


@pytest.mark.parametrize(("value", "where"), _cycles())
def test_a_value_that_holds_itself_is_refused_naming_the_cycle(value: object, where: str) -> None:
    with pytest.raises(InputError, match=rf"^result 'r': the value holds itself: .*{where} again"):
        encode_result("r", value)


def test_a_value_that_holds_one_list_twice_is_no_cycle() -> None:
    shared = [1.0]
    assert encode_result("r", {"a": shared, "b": [shared]}).value == {"a": [1.0], "b": [[1.0]]}


def test_a_value_nested_too_deeply_for_a_lock_is_refused() -> None:
    value: list[object] = [1.0]
    for _ in range(5000):  # beyond Python's recursion limit
        value = [value]
    with pytest.raises(InputError, match=r"^result 'deep': nested more than 200 levels"):
        encode_result("deep", value)


@pytest.mark.parametrize(
    "value",
    [10**4300, [1, -(10**4300)], np.array([10**5000], object)],
    ids=["int", "nested", "object-array"],  # such an int has no text for an id
)
def test_an_int_too_long_to_write_is_refused(value: object) -> None:
    with pytest.raises(InputError, match=r"^result 'n': an int of more than 4300 digits"):
        encode_result("n", value)
    assert encode_result("n", 10**4300 - 1).value == 10**4300 - 1  # 4300 digits: a lock holds it


def _with_lone_surrogates() -> list[tuple[object, str]]:
    bad, obj = "bad\ud800text", object
    return [
        (bad, ""),
        (np.str_(bad), ""),
        ([1, {"k": bad}], r" at \[1\]\['k'\]"),
        ({bad: 1}, r" \(dict key\) at \['bad\\ud800text'\]"),
        (np.array([["a", "b"], ["c", bad]]), r" at \[1\]\[1\]"),
        (np.array(["a", bad], dtype=obj), r" at \[1\]"),
        (pd.Series(["a", bad], dtype=obj), " at row 1"),
        (pd.DataFrame({"c": pd.Series([bad], dtype=obj)}), " at column 'c' row 0"),
        (pd.DataFrame([[1]], columns=pd.Index([bad], dtype=obj)), r" at column 'bad\\ud800text'"),
        (pd.Series([1], name=bad), r" at Series name 'bad\\ud800text'"),
        (pd.Series([1], index=pd.Index([bad], dtype=obj)), r" at index label 'bad\\ud800text'"),
        (pd.Series([1]).rename_axis(bad), r" at index name 'bad\\ud800text'"),
    ]


@pytest.mark.parametrize(("value", "where"), _with_lone_surrogates())
def test_text_with_a_lone_surrogate_is_refused_naming_where(value: object, where: str) -> None:
    """A lone surrogate (``"\\ud800"``, what a bad decode leaves) was accepted, and the
    kernel then failed to write the result's output as UTF-8: a UnicodeEncodeError from
    jupyter_client inside the cell."""
    with pytest.raises(ResultValueError, match=rf"^result 's': .* lone surrogate{where}[;:]"):
        encode_result("s", value)
    with pytest.raises(UsageError, match="valid Unicode"):
        encode_result("s\ud800", 1.0)
    assert encode_result("s", "\u00e9t\u00e9 \U0001f600").value == "\u00e9t\u00e9 \U0001f600"


def test_non_string_dict_key_is_refused() -> None:
    with pytest.raises(ResultValueError, match="dict key"):
        encode_result("m", {1: "x"})


@pytest.mark.parametrize(
    "bad",
    [
        {"rtol": -1.0},
        {"atol": "x"},
        {"rtol": math.nan},
        {"rtol": math.inf},  # JSON has no infinity: the notebook's results became unreadable
        {"atol": -math.inf},
        {"device_rtol": math.inf},
        {"device_atol": 10**400},  # an int beyond the float range is infinite
    ],
)
def test_bad_tolerance_is_a_usage_error(bad: dict[str, object]) -> None:
    field = next(iter(bad))
    with pytest.raises(UsageError, match=rf"^result 'x': {field} must be a finite number >= 0"):
        encode_result("x", 1.0, **bad)  # type: ignore[arg-type]


def test_numpy_and_other_real_tolerances_are_accepted_as_floats() -> None:
    """``rtol=np.float32(1e-3)`` or ``atol=np.int64(1)`` was refused as not a number."""
    from fractions import Fraction

    result = encode_result("x", 1.0, rtol=np.float32(1e-3), atol=np.int64(1))  # type: ignore[arg-type]
    assert (result.rtol, result.atol) == (0.001, 1.0)  # as typed, not the float32's 0.00100000005
    assert type(result.rtol) is float and type(result.atol) is float
    device = encode_result("x", 1.0, device_rtol=Fraction(1, 4), device_atol=np.float64(0.5))  # type: ignore[arg-type]
    assert (device.device_rtol, device.device_atol) == (0.25, 0.5)
    for bad in (np.True_, np.float32("nan"), np.float64("inf"), np.int8(-1)):
        with pytest.raises(UsageError, match="rtol must be a finite number >= 0"):
            encode_result("x", 1.0, rtol=bad)  # type: ignore[arg-type]


def test_empty_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        encode_result("", 1.0)


def test_importing_results_does_not_import_numpy_or_mlflow() -> None:
    code = (
        "import sys, reprokit.results\n"
        "print(sorted({'numpy', 'mlflow', 'pandas'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_array_of_more_dimensions_than_a_lock_holds_is_refused_when_declared() -> None:
    """33 dimensions were recorded, then every verify and check of that lock exited 2."""
    assert encode_result("ok", np.zeros((1,) * 32)).array is not None
    for value in (np.zeros((1,) * 33), torch.zeros((1,) * 33)):
        with pytest.raises(InputError, match=r"result 'nd': an array of 33 dimensions .* 32"):
            encode_result("nd", value)


@pytest.mark.parametrize(
    ("value", "noun"),
    [([np.zeros(3)], "numpy array"), ({"w": torch.zeros(2)}, "torch tensor")],
)
def test_an_array_inside_a_list_is_told_to_be_a_result_of_its_own(value: object, noun: str) -> None:
    """The refusal named numpy arrays among the supported types while refusing one."""
    with pytest.raises(ResultValueError) as info:
        encode_result("r", value)
    assert f"a {noun} is recorded as a result of its own" in str(info.value)
    assert "supported are" not in str(info.value)


def test_names_declared_by_several_runs_of_one_notebook_are_found(tmp_path: Path) -> None:
    """A loop over configurations, each with its own %repro start, declaring the same name:
    the lock keeps the last value only, so record warns (a repeat inside one run is the
    session's own warning, not this)."""
    import nbformat

    from reprokit.capturing.snapshot import capture
    from reprokit.report.describe import describe_declared_by_several_runs
    from reprokit.report.display import result_bundle, snapshot_bundle
    from reprokit.results import read_notebook

    def shown(bundle: dict) -> object:
        return nbformat.v4.new_output("display_data", data=bundle, metadata={"reprokit": {}})

    start = shown(snapshot_bundle(capture(root=tmp_path), {}))
    cells = []
    for value in (0.5, 0.9):
        cell = nbformat.v4.new_code_cell("run()")
        cell.outputs = [start, shown(result_bundle(encode_result("acc", value)))]
        cell.outputs += [shown(result_bundle(encode_result("loss", value)))] * 2
        cells.append(cell)
    node = nbformat.v4.new_notebook(cells=cells)
    found = read_notebook(node)
    assert found.declared_in_several_runs() == {"acc": 2, "loss": 2}
    assert [o.run for o in found.outputs] == [1, 1, 1, 2, 2, 2]
    node.cells = node.cells[:1]
    assert read_notebook(node).declared_in_several_runs() == {}
    text = describe_declared_by_several_runs("nb.ipynb", {"acc": 2})
    assert text.startswith("nb.ipynb: 'acc' (2 runs) declared by more than one run")
    from reprokit.api.record import _warn_if_declared_by_several_runs
    from reprokit.exceptions import ReprokitWarning

    node.cells = cells
    nbformat.write(node, tmp_path / "executed.ipynb")
    with pytest.warns(ReprokitWarning, match="'acc' \\(2 runs\\)"):
        _warn_if_declared_by_several_runs(tmp_path / "nb.ipynb", tmp_path / "executed.ipynb")
