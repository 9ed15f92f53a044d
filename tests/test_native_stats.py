"""The native statistics (reprokit/results/arraystats.c): built at install, loaded with ctypes,
one pass over a run of float32 or float64 elements. What it must hold to: the figures numpy
gives (to within float64 rounding), the same bits from its AVX2 and plain builds (a lock
recorded on one machine is verified on another), every run it cannot summarise (a NaN, an
infinity, sums that overflow, another dtype) left to numpy, and a build that fails leaving
numpy to do it, not a broken install."""

from __future__ import annotations

import ctypes
import importlib.util
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reprokit.results import native
from reprokit.results.arraypass import array_stats

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(11)


def _build_native() -> Any:
    spec = importlib.util.spec_from_file_location("build_native", ROOT / "tools/build_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _build_native()
HAS_COMPILER = os.name != "nt" and any(shutil.which(cc[0]) for cc in BUILD.compilers())
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler here")


@pytest.fixture
def fresh_library() -> Iterator[None]:
    """The library loaded again after the test (which points LIBRARY elsewhere)."""
    native._library.cache_clear()
    yield
    native._library.cache_clear()


@needs_compiler
def test_the_library_is_built_where_a_c_compiler_is() -> None:
    """CI installs with ``pip install -e .``: the build hook must have compiled it (a checkout
    installed before it existed: ``python tools/build_native.py``)."""
    assert native.available(), f"{native.LIBRARY} not built: run python tools/build_native.py"


def _fsum_sums(run: Any, shift: float) -> tuple[float, float]:
    shifted = run.astype(np.float64) - shift
    return math.fsum(shifted), math.fsum(shifted * shifted)


@needs_compiler
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 3, 8, 9, 1023, 1024, 1031, 8200, 2**17 + 5])
@pytest.mark.parametrize("shift", [0.0, 2.5])
def test_run_sums_are_the_exact_extremes_and_sums_to_rounding(
    dtype: Any, size: int, shift: float
) -> None:
    run = (RNG.standard_normal(size) * 3 + 2).astype(dtype)
    sums = native.run_sums(run, shift)
    assert sums is not None
    assert (sums.low, sums.high) == (float(run.min()), float(run.max()))
    total, squares = _fsum_sums(run, shift)
    assert sums.total == pytest.approx(total, rel=1e-13, abs=1e-11)
    assert sums.squares == pytest.approx(squares, rel=1e-13)


def _with(value: float, at: Any, dtype: Any = np.float32, size: int = 5000) -> Any:
    run = (RNG.standard_normal(size) * 2 + 1).astype(dtype)
    run[at] = value
    return run


def _odd_nans(dtype: Any) -> Any:
    """NaNs negative, with a payload, and numpy's own, in the body and the tail."""
    run = _with(np.nan, slice(None, None, 5), dtype, 1003)
    bits = run.view(f"u{run.itemsize}")
    top = 1 << (run.itemsize * 8 - 1)
    bits[::15] |= np.array(top, bits.dtype)  # the sign bit
    bits[5::15] |= np.array(1, bits.dtype)  # a payload
    return run


@needs_compiler
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "make",
    [
        lambda d: _with(np.nan, 0, d),
        lambda d: _with(np.nan, 2500, d),
        lambda d: _with(np.nan, [4998, 3], d),
        lambda d: _with(np.nan, slice(None, None, 3), d, 100_003),
        lambda d: np.full(21, np.nan, d),
        lambda d: np.array([np.nan], d),
        lambda d: _with(np.nan, slice(1, None), d, 9),
        _odd_nans,
    ],
    ids=[
        "nan first",
        "nan inside",
        "nan in the tail and the body",
        "a third nan",
        "only nans",
        "one nan",
        "one number, first",
        "nans of other bits",
    ],
)
def test_a_run_with_nans_is_summarised_over_its_other_elements(dtype: Any, make: Any) -> None:
    run = make(dtype)
    sums = native.run_sums(run, 0.5)
    assert sums is not None
    finite = run[np.isfinite(run)]
    usual = np.array([np.nan], run.dtype).view(f"u{run.itemsize}")[0]
    assert (sums.kept, sums.nan, sums.odd_nan) == (
        finite.size,
        int(np.isnan(run).sum()),
        int((np.isnan(run) & (run.view(f"u{run.itemsize}") != usual)).sum()),
    )

    if not finite.size:
        assert math.isnan(sums.low) and math.isnan(sums.high)
        assert (sums.total, sums.squares) == (0.0, 0.0)
        return
    assert native.run_sums(run, 0.5, nan_first=True) == sums
    assert (sums.low, sums.high) == (float(finite.min()), float(finite.max()))
    total, squares = _fsum_sums(finite, 0.5)
    assert sums.total == pytest.approx(total, rel=1e-13, abs=1e-11)
    assert sums.squares == pytest.approx(squares, rel=1e-13)


@needs_compiler
@pytest.mark.parametrize(
    "run",
    [
        _with(np.inf, 17),
        _with(-np.inf, [4998, 3]),
        _with(np.inf, 4) * np.where(np.arange(5000) == 7, np.nan, 1),
        np.array([np.inf, -np.inf, np.nan] * 5),
        _with(1e200, 3, np.float64),  # its square overflows float64
        _with(1e200, [3, 9], np.float64) * np.where(np.arange(5000) == 7, np.nan, 1),
        RNG.standard_normal(100).astype(">f4"),
        RNG.standard_normal(100).astype(np.float16),
        RNG.integers(0, 9, 100).astype(np.int32),
        RNG.standard_normal(200).astype(np.float32)[::2],
        RNG.standard_normal((10, 10)).astype(np.float32),
        np.empty(0, np.float32),
    ],
    ids=[
        "+inf",
        "-inf in the tail and the body",
        "+inf beside a nan",
        "nothing finite",
        "squares overflow",
        "squares overflow beside a nan",
        "big-endian",
        "float16",
        "int32",
        "strided",
        "2-d",
        "empty",
    ],
)
def test_runs_numpy_must_summarise_are_left_to_it(run: Any) -> None:
    assert native.run_sums(run, 0.0) is None


def test_reprokit_native_0_leaves_every_run_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPROKIT_NATIVE", "0")
    assert not native.available()
    assert native.run_sums(np.ones(100, np.float32), 0.0) is None


def _arrays() -> dict[str, Any]:
    normals = RNG.standard_normal(1_000_003)
    with_nans = normals.copy()
    with_nans[RNG.random(normals.size) < 1e-5] = np.nan  # most runs clean, some not
    with_inf = normals.copy()
    with_inf[[5, 400_000]] = [np.inf, -np.inf]
    return {
        "float32": (normals * 4 - 1).astype(np.float32),
        "float64 large mean": 1e9 + normals,
        "float32 large mean": (1e4 + normals).astype(np.float32),
        "float64 some nans": with_nans,
        "float32 infinities": with_inf.astype(np.float32),
        "float64 tiny": normals * 1e-300,
        "float32 constant": np.full(300_001, 0.1, np.float32),
    }


ARRAYS = _arrays()


@needs_compiler
@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_statistics_with_the_native_pass_are_numpys_to_rounding(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    array = ARRAYS[name]
    calls = []
    real = native.run_sums

    def counted(run: Any, shift: float, **how: bool) -> Any:
        sums = real(run, shift, **how)
        calls.append(sums is not None)
        return sums

    monkeypatch.setattr(native, "run_sums", counted)
    fast = array_stats(array)
    assert any(calls), "the native pass summarised no run"
    monkeypatch.setenv("REPROKIT_NATIVE", "0")
    slow = array_stats(array)
    assert fast is not None and slow is not None
    assert (fast.min, fast.max) == (slow.min, slow.max)
    assert (fast.nan_count, fast.posinf_count, fast.neginf_count) == (
        slow.nan_count,
        slow.posinf_count,
        slow.neginf_count,
    )
    assert fast.mean == pytest.approx(slow.mean, rel=1e-13, abs=1e-300)
    assert fast.std == pytest.approx(slow.std, rel=1e-12, abs=1e-300)


FUNCTIONS = (
    "reprokit_stats_f32",
    "reprokit_stats_f64",
    "reprokit_stats_skipnan_f32",
    "reprokit_stats_skipnan_f64",
)


def _load(path: Path) -> Any:
    library = ctypes.CDLL(str(path))
    for name in FUNCTIONS:
        kernel = getattr(library, name)
        kernel.restype = None
        kernel.argtypes = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_void_p)
    return library


def _bits(library: Any, name: str, run: Any, shift: float) -> tuple[float, ...]:
    out = (ctypes.c_double * 8)()
    getattr(library, f"{name}_f{run.itemsize * 8}")(run.ctypes.data, run.size, shift, out)
    return tuple(out)[:4]


SOURCES = ["arraystats.c", "arraystats_kernels.h"]


def _source_tree(root: Path) -> Path:
    (root / BUILD.SOURCE).parent.mkdir(parents=True)
    for source in (BUILD.SOURCE, BUILD.HEADER):
        shutil.copy(ROOT / source, root / source)
    return root


@needs_compiler
@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() == "x86_64"),
    reason="the AVX2 variant is built on x86-64 Linux only",
)
def test_the_avx2_and_the_plain_build_give_the_same_bits(tmp_path: Path) -> None:
    """The order of the sums is written out in the source, not left to the compiler: a lock
    recorded with the AVX2 variant is verified on a machine without it."""
    source = ROOT / BUILD.SOURCE
    built = {}
    for name, extra in (("clones", ("-DREPROKIT_CLONES",)), ("plain", ())):
        target = tmp_path / f"{name}.so"
        assert BUILD._compile(source, target, extra) == ""
        built[name] = _load(target)
    for dtype in (np.float32, np.float64):
        for size in (5, 1000, 131_077):
            run = (RNG.standard_normal(size) * 1e3 + 7).astype(dtype)
            with_nan = _with(np.nan, slice(None, None, 11), dtype, size)
            for kernel, values in (("reprokit_stats", run), ("reprokit_stats_skipnan", with_nan)):
                expected = _bits(built["plain"], kernel, values, 7.0)
                assert _bits(built["clones"], kernel, values, 7.0) == expected
            # where there is no NaN, the pass that leaves NaNs out is the plain one, bit for bit
            plain = _bits(built["clones"], "reprokit_stats", run, 7.0)
            assert _bits(built["clones"], "reprokit_stats_skipnan", run, 7.0) == plain


@needs_compiler
def test_a_build_is_a_loadable_library_others_can_read(tmp_path: Path) -> None:
    built = BUILD.build(_source_tree(tmp_path), log=pytest.fail)
    assert built == tmp_path / BUILD.LIBRARY
    assert built.stat().st_mode & 0o777 == 0o755
    assert _load(built).reprokit_stats_abi() == native.ABI
    assert sorted(p.name for p in built.parent.iterdir()) == ["_arraystats.so", *SOURCES]


@pytest.mark.parametrize(
    ("compiler", "said"),
    [
        ("false", "false exited 1"),
        ("true", "true wrote an empty file"),
        ("/no/such/compiler", "/no/such/compiler:"),
        ('gcc "-O2', "CC is not a command: No closing quotation"),
        ("   ", "CC is not a command: CC holds no command"),
    ],
)
def test_a_failed_build_says_why_in_one_line_and_leaves_nothing(
    compiler: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _source_tree(tmp_path)
    lines: list[str] = []
    monkeypatch.setenv("CC", compiler)
    assert BUILD.build(root, log=lines.append) is None
    assert len(lines) == 1 and said in lines[0] and "\n" not in lines[0], lines
    assert sorted(p.name for p in (root / BUILD.SOURCE).parent.iterdir()) == SOURCES


def _script(folder: Path, body: str) -> str:
    """A fake compiler: a shell script that finds its ``-o`` argument as ``$out``."""
    script = folder / "fake-cc"
    script.write_text(
        '#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done\n' + body
    )
    script.chmod(0o755)
    return str(script)


@needs_compiler
@pytest.mark.parametrize(
    ("body", "said"),
    [
        (f'head -c 20000 "{native.LIBRARY}" > "$out"\n', "does not load (killed by signal 7)"),
        ('printf "\\377\\376 broken\\n" >&2; exit 1\n', "exited 1: \ufffd\ufffd broken"),
        ('rm -f "$out"; mkdir "$out"\n', "Is a directory"),
        ('head -c 3000 /dev/urandom > "$out"\n', "does not load"),
    ],
    ids=["a library cut short", "bytes that are not UTF-8", "a folder", "noise"],
)
def test_what_a_broken_compiler_writes_is_a_failed_build(
    body: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loaded in a child process: a library cut short kills whoever opens it (SIGBUS)."""
    root = _source_tree(tmp_path / "src")
    monkeypatch.setenv("CC", _script(tmp_path, body))
    lines: list[str] = []
    assert BUILD.build(root, log=lines.append) is None
    assert len(lines) == 1 and said in lines[0], lines
    assert sorted(p.name for p in (root / BUILD.SOURCE).parent.iterdir()) == SOURCES


def test_a_hung_compiler_is_stopped_with_what_it_started_and_not_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = tmp_path / "pids"
    monkeypatch.setenv("CC", _script(tmp_path, f"sleep 600 & echo $! >> {pids}; wait\n"))
    monkeypatch.setattr(BUILD, "TIMEOUT_S", 1)
    lines: list[str] = []
    assert BUILD.build(_source_tree(tmp_path / "src"), log=lines.append) is None
    assert len(lines) == 1 and "ran past 1 s and was stopped" in lines[0]
    (pid,) = pids.read_text().split()  # one try: not one per variant and compiler
    time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_a_folder_that_cannot_be_written_is_a_failed_build_not_a_failed_install(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    assert BUILD.build(_source_tree(tmp_path), log=lines.append, into=tmp_path / "no") is None
    assert len(lines) == 1 and "No such file or directory" in lines[0]


@needs_compiler
def test_a_wheel_build_leaves_the_source_folder_as_it_was(tmp_path: Path) -> None:
    """The hook builds a wheel's library in a folder of its own (``into``): a read-only
    source tree (a container's bind mount) builds, and no file appears in the user's."""
    root = _source_tree(tmp_path / "src")
    (tmp_path / "out").mkdir()
    built = BUILD.build(root, log=pytest.fail, into=tmp_path / "out")
    assert built == tmp_path / "out" / "_arraystats.so"
    assert sorted(p.name for p in (root / BUILD.SOURCE).parent.iterdir()) == SOURCES


@needs_compiler
def test_a_compiler_python_names_but_this_machine_lacks_falls_back_to_cc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conda Python was built with ``x86_64-conda-linux-gnu-cc``, seldom installed."""
    import sysconfig

    if not shutil.which("cc"):
        pytest.skip("no cc here")
    monkeypatch.delenv("CC", raising=False)
    real = sysconfig.get_config_var
    monkeypatch.setattr(
        sysconfig,
        "get_config_var",
        lambda name: "x86_64-conda-linux-gnu-cc" if name == "CC" else real(name),
    )
    assert BUILD.compilers() == [["x86_64-conda-linux-gnu-cc"], ["cc"]]
    assert BUILD.build(_source_tree(tmp_path), log=pytest.fail) is not None


def test_reprokit_native_0_builds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPROKIT_NATIVE", "0")
    said: list[str] = []
    assert BUILD.build(_source_tree(tmp_path), log=said.append) is None
    assert said == ["reprokit: REPROKIT_NATIVE=0, the native statistics are not built"]


TRUNCATIONS = """
import sys
from pathlib import Path
from reprokit.results import native
full = native.LIBRARY.read_bytes()
loaded = []
for size in [*range(0, len(full), 97), len(full) - 1, len(full)]:
    cut = Path(sys.argv[1]) / f"{size}.so"
    cut.write_bytes(full[:size])
    native.LIBRARY = cut
    native._library.cache_clear()
    loaded += [size] if native.available() else []
print(loaded == [len(full)])
"""


@needs_compiler
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ELF check is Linux's")
def test_a_library_cut_short_is_refused_not_loaded_into_a_crash(tmp_path: Path) -> None:
    """``dlopen`` of a truncated library kills the process with SIGBUS: each cut of the
    built one is refused before it is opened (in a child process, which a crash would kill),
    and only the whole file is loaded."""
    assert native.available()
    done = subprocess.run(
        [sys.executable, "-c", TRUNCATIONS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr[-1000:]


def test_a_huge_file_in_the_library_s_place_is_refused_without_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_library: None
) -> None:
    huge = tmp_path / "_arraystats.so"
    with huge.open("wb") as handle:
        handle.write(b"\x7fELF")
        handle.truncate(1 << 40)  # sparse: a terabyte that takes no room
    monkeypatch.setattr(native, "LIBRARY", huge)
    assert not native.available()


@pytest.mark.parametrize("content", [b"", b"not a library\n", b"\x7fELF" + bytes(60)])
def test_a_file_that_is_no_library_for_this_machine_is_not_loaded(
    content: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_library: None
) -> None:
    junk = tmp_path / "_arraystats.so"
    junk.write_bytes(content)
    monkeypatch.setattr(native, "LIBRARY", junk)
    assert not native.available()
    stats = array_stats(np.arange(10, dtype=np.float32))
    assert stats is not None and stats.mean == 4.5


@needs_compiler
@pytest.mark.parametrize("build_native", [True, False], ids=["native", "REPROKIT_NATIVE=0"])
def test_the_wheel_carries_the_library_and_is_tagged_for_the_platform(
    build_native: bool, tmp_path: Path
) -> None:
    """``pip wheel`` of the source (the build hook, hatch_build.py): with the library, a
    wheel for this platform holding it; without, a pure-Python wheel that works the same."""
    import zipfile

    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".git", ".venv", "*.so", "__pycache__", "tests", "docs"),
    )
    env = {**os.environ, "REPROKIT_NATIVE": "1" if build_native else "0"}
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*command, "-q", "-w", str(tmp_path / "out"), str(source)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "out").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert ("reprokit/results/_arraystats.so" in names) == build_native
    assert wheel.name.endswith("-none-any.whl") != build_native
    assert not list((source / "reprokit/results").glob("*.so"))  # built beside, not in it
