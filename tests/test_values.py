"""Content digests of in-memory values: typed, order-independent where it should be, stable."""

from __future__ import annotations

import datetime
import decimal
import hashlib
import math
import struct
import subprocess
import sys
from collections import OrderedDict
from enum import IntEnum
from typing import Any

import blake3
import pytest

from reprokit.capturing.values import hash_value
from reprokit.exceptions import UnhashableValueError, UsageError


def _b3(data: bytes) -> str:
    return "blake3:" + str(blake3.blake3(data).hexdigest())


def _n(count: int) -> bytes:
    return struct.pack("<Q", count)


def test_encoding_of_simple_values_is_the_documented_one() -> None:
    assert hash_value(None) == _b3(b"N")
    assert hash_value(True) == _b3(b"T")
    assert hash_value(1) == _b3(b"i" + _n(1) + b"\x01")
    assert hash_value(-1) == _b3(b"i" + _n(1) + b"\xff")
    assert hash_value(1.5) == _b3(b"f" + struct.pack(">d", 1.5))
    assert hash_value("é") == _b3(b"s" + _n(2) + "é".encode())
    assert hash_value(b"\x00") == _b3(b"b" + _n(1) + b"\x00")
    assert hash_value([None, True]) == _b3(b"l" + _n(2) + b"NT")
    expected = b"d" + _n(2) + b"s" + _n(1) + b"a" + b"N" + b"s" + _n(1) + b"b" + b"T"
    assert hash_value({"b": True, "a": None}) == _b3(expected)
    data = b"s" + _n(1) + b"x"
    assert hash_value("x", algorithm="sha256") == "sha256:" + hashlib.sha256(data).hexdigest()
    assert hash_value("x", algorithm="md5") == "md5:" + hashlib.md5(data).hexdigest()


def test_pinned_digests_do_not_drift() -> None:
    # A change here changes every recorded result fingerprint: bump the encoding version.
    assert hash_value({"b": 2, "a": [1.5, float("nan")]}) == (
        "blake3:994b058d5b40c9718a382fd71c92f2faae1cc67522b02d3f37beef4e8ff2a54c"
    )
    assert hash_value([1, "a", None]) == (
        "blake3:be5450c35d2fbadedde671ec5f5be153a24f2b7d8715ef3a972cb850af989990"
    )


def test_type_tags_keep_equal_looking_values_apart() -> None:
    values: list[Any] = [1, 1.0, True, "1", b"1", [1], (1,), {1}, frozenset({1}), 1 + 0j, None]
    digests = [hash_value(v) for v in values]
    assert len(set(digests)) == len(values)


def test_floats_nan_and_signed_zero_are_deterministic() -> None:
    assert hash_value(float("nan")) == hash_value(-float("nan")) == hash_value(math.nan)
    assert hash_value(-0.0) != hash_value(0.0)
    assert hash_value(float("inf")) != hash_value(float("-inf"))


def test_long_doubles_are_hashed_by_value_not_by_their_padding() -> None:
    """An x87 long double leaves 6 of its 16 bytes as memory had them: equal arrays made
    differently must still have one digest (a false alarm on verify otherwise)."""
    np = pytest.importorskip("numpy")
    x = np.random.default_rng(0).standard_normal(1000).astype(np.longdouble)
    x[::7] = np.nan
    made_again = np.array(x.tolist(), np.longdouble)
    assert hash_value(x) == hash_value(x + 0) == hash_value(made_again)
    both = (x + 1j * x).astype(np.clongdouble)
    assert hash_value(both) == hash_value(both + 0)
    assert hash_value(x) != hash_value(x.astype(np.float64))  # still its own type


def test_big_and_negative_ints() -> None:
    big = 10**5000  # more digits than int -> str allows by default
    assert hash_value(big) != hash_value(big + 1)
    assert hash_value(-128) != hash_value(128)
    assert hash_value(255) != hash_value(-1)


def test_dict_and_set_order_do_not_matter() -> None:
    forward = {"a": 1, "b": [1, 2], 3: "c"}
    backward = dict(reversed(list(forward.items())))
    assert hash_value(forward) == hash_value(backward)
    assert hash_value({3, 1, 2}) == hash_value({2, 3, 1})
    assert hash_value(OrderedDict(forward)) == hash_value(forward)
    assert hash_value({"a": 1}) != hash_value({"a": 2})


def test_subclasses_of_builtins_hash_like_their_base() -> None:
    class Level(IntEnum):
        HIGH = 3

    assert hash_value(Level.HIGH) == hash_value(3)


def test_dates_and_decimals() -> None:
    when = datetime.datetime(2024, 5, 1, 12, 30)
    assert hash_value(when) != hash_value(when.date())
    assert hash_value(decimal.Decimal("1.10")) != hash_value(decimal.Decimal("1.1"))


def test_digests_are_stable_across_processes() -> None:
    code = (
        "from reprokit.capturing.values import hash_value\n"
        "print(hash_value({'k': [1, 2.5, 'x', None, {'z': b'q'}], 'a': {3, 4}}))"
    )
    outs = set()
    for seed in ("1", "2"):
        env = {"PYTHONHASHSEED": seed, "PATH": ""}
        run = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        outs.add(run.stdout.strip())
    assert outs == {hash_value({"k": [1, 2.5, "x", None, {"z": b"q"}], "a": {3, 4}})}


def test_builtin_values_import_no_array_library() -> None:
    code = (
        "import sys\nfrom reprokit.capturing.values import hash_value\n"
        "hash_value({'a': [1, 2.0, 'x', b'y', None, (True,)]})\n"
        "print(sorted({'numpy', 'torch', 'pandas'} & set(sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_unhashable_value_names_its_type_and_place() -> None:
    with pytest.raises(UnhashableValueError) as info:
        hash_value({"a": [1, 2, object()]})
    assert (info.value.type_name, info.value.where) == ("object", '$["a"][2]')
    assert isinstance(info.value, TypeError)


def test_recursive_structures_are_unhashable_not_a_crash() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(UnhashableValueError, match="recursive list"):
        hash_value(loop)


def test_unknown_algorithm_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        hash_value(1, algorithm="sha1")


def test_memoryview_hashes_its_bytes() -> None:
    assert hash_value(memoryview(b"abc")) == hash_value(b"abc") == hash_value(bytearray(b"abc"))


# -- numpy -------------------------------------------------------------------------------


def test_numpy_arrays_by_dtype_shape_and_content() -> None:
    np = pytest.importorskip("numpy")
    a = np.arange(6, dtype="<i8").reshape(2, 3)
    assert (
        hash_value(a) == "blake3:f2020368cf0e1e3d35a662232df98ac05b2d251bebed9ebfcf2e156d52eec401"
    )
    assert hash_value(a) == hash_value(np.asfortranarray(a))  # memory layout is not content
    assert hash_value(a) == hash_value(a.astype(">i8"))  # nor is byte order
    assert hash_value(a) != hash_value(a.reshape(3, 2))
    assert hash_value(a) != hash_value(a.astype("i4"))
    assert hash_value(a[:, ::2]) == hash_value(np.ascontiguousarray(a[:, ::2]))
    assert hash_value(np.array([np.nan, 1.0])) == hash_value(np.array([-np.nan, 1.0]))
    assert hash_value(np.array([-0.0])) != hash_value(np.array([0.0]))


def test_numpy_scalars_object_arrays_and_odd_dtypes() -> None:
    np = pytest.importorskip("numpy")
    assert hash_value(np.float64(1.0)) != hash_value(1.0)
    assert hash_value(np.float64(1.0)) != hash_value(np.float32(1.0))
    assert hash_value(np.array([1, "a", None], dtype=object)) != hash_value(
        np.array([1, "b", None], dtype=object)
    )
    dates = np.array(["2024-01-01"], dtype="datetime64[D]")
    assert hash_value(dates) != hash_value(dates.astype("datetime64[s]"))
    structured = np.zeros(2, dtype=[("x", "<i4"), ("y", "<f8")])
    assert hash_value(structured).startswith("blake3:")
    masked = np.ma.array([1, 2, 3], mask=[0, 1, 0])
    assert hash_value(masked) != hash_value(np.ma.array([1, 2, 3], mask=[0, 0, 0]))
    with pytest.raises(UnhashableValueError) as info:
        hash_value({"arr": np.array([1, object()], dtype=object)})
    assert info.value.where == '$["arr"][1]'


def test_a_complex_nan_hides_neither_part() -> None:
    """Every element with a NaN part was hashed as NaN + 0j: ``nan+1j`` and ``nan+5j`` had one
    digest, and a verify that trusts equal digests said such a changed result reproduced."""
    np = pytest.importorskip("numpy")
    nan = float("nan")
    for dtype in (np.complex64, np.complex128, np.clongdouble):
        for first, second in [
            (complex(nan, 1.0), complex(nan, 5.0)),
            (complex(1.0, nan), complex(5.0, nan)),
            (complex(nan, nan), complex(nan, 0.0)),
        ]:
            a, b = np.array([first, 2 + 2j], dtype), np.array([second, 2 + 2j], dtype)
            assert hash_value(a) != hash_value(b), (dtype, first, second)
            assert hash_value(dtype(first)) != hash_value(dtype(second))
    negative = np.array([complex(nan, 1.0)])
    negative.view(np.uint64)[0] |= np.uint64(1 << 63)  # a NaN of other bits is still NaN
    assert hash_value(negative) == hash_value(np.array([complex(nan, 1.0)]))


# -- torch -------------------------------------------------------------------------------


def test_torch_tensors_by_dtype_shape_and_content() -> None:
    torch = pytest.importorskip("torch")
    t = torch.arange(4, dtype=torch.bfloat16)
    assert (
        hash_value(t) == "blake3:f7aa12bcf1e1536ed6b71a9b8290b31329ddb3b4245151d429a0ca0c91cc093e"
    )
    assert hash_value(t) != hash_value(t.float())
    assert hash_value(t) != hash_value(t.reshape(2, 2))
    m = torch.arange(6.0).reshape(2, 3)
    assert hash_value(m.t()) == hash_value(m.t().contiguous())
    assert hash_value(m.requires_grad_()) == hash_value(m.detach())
    nan = torch.tensor([float("nan")])
    assert hash_value(nan) == hash_value(-nan)
    assert hash_value(torch.tensor([1, 2])) != hash_value(torch.tensor([1, 2]).numpy())
    nan_1j, nan_5j = torch.tensor([complex(math.nan, 1.0)]), torch.tensor([complex(math.nan, 5.0)])
    assert hash_value(nan_1j) != hash_value(nan_5j)  # a complex NaN's parts one by one
    assert hash_value(nan_1j) == hash_value(-nan_1j.real + 1j * nan_1j.imag)


# -- pandas ------------------------------------------------------------------------------


def test_pandas_objects_by_labels_dtypes_and_values() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"x": [1, 2], "y": [0.5, None]})
    assert (
        hash_value(df) == "blake3:b61dfb082b5bee27b003e2ec760c0eafdb9a583a14eda66d8fcaa8dc4952a48c"
    )
    assert hash_value(df) != hash_value(df.rename(columns={"x": "z"}))
    assert hash_value(df) != hash_value(df.set_axis([5, 6]))
    assert hash_value(df) != hash_value(df.astype({"x": "int32"}))
    assert hash_value(df["x"]) != hash_value(df["x"].rename("other"))
    assert hash_value(df.index) != hash_value(df.columns)
    nullable = pd.Series([1, None], dtype="Int64")
    assert hash_value(nullable) != hash_value(pd.Series([1, None], dtype="float64"))
    cats = pd.Series(pd.Categorical(["a", "b"]))
    assert hash_value(cats) != hash_value(cats.astype(object))
    stamps = pd.Series(pd.to_datetime(["2024-01-01", None]))
    assert hash_value(stamps).startswith("blake3:")
