"""Build reprokit's one native helper: ``reprokit/results/_arraystats.so`` from ``arraystats.c``.

The statistics of a large float array result (min, max, mean, std) take one pass of this C
function instead of numpy's four passes and a float64 copy (``reprokit/results/native.py``
loads it with ctypes). It is optional: without a C compiler, or on Windows, reprokit computes
the same statistics with numpy, about three times slower (the array result's figures in
``benchmarks/README.md``).

``pip install`` runs this through the build hook ``hatch_build.py`` (into the source folder
for an editable install, else into a temporary folder the wheel takes it from); in a source
checkout used without installing, run it by hand::

    python tools/build_native.py          # builds into reprokit/results/
    REPROKIT_NATIVE=0 pip install -e .    # installs without building it

Plain C, no Python headers: the library does not depend on the Python version. Compiled with
``-ffp-contract=off`` (no fused multiply-adds) so every build sums in the same order with the
same rounding. On x86-64 Linux it carries an AVX2 variant chosen at load time
(``target_clones``); a compiler without that attribute gets the plain build.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path

SOURCE = Path("reprokit/results/arraystats.c")
HEADER = Path("reprokit/results/arraystats_kernels.h")  # included by SOURCE
LIBRARY = Path("reprokit/results/_arraystats.so")
FLAGS = ("-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-strict-aliasing")
TIMEOUT_S = 120


def compilers() -> list[list[str]]:
    """The C compilers to try in turn: ``$CC`` alone where it is set, else the one Python was
    built with (a conda Python names its own, often absent) and then ``cc``. A ``$CC`` that
    cannot be split into words, or holds none, raises ValueError."""
    if os.environ.get("CC"):
        named = shlex.split(os.environ["CC"])
        if not named:
            raise ValueError("CC holds no command")
        return [named]
    found = shlex.split(str(sysconfig.get_config_var("CC") or ""))
    return [found, ["cc"]] if found and found != ["cc"] else [["cc"]]


def variants() -> list[tuple[str, ...]]:
    """Extra flags to try in turn: the AVX2 variant first where the platform has it."""
    clones = sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")
    return [("-DREPROKIT_CLONES",), ()] if clones else [()]


class _Hung(Exception):
    """A compiler ran past :data:`TIMEOUT_S` (no other is tried: it would likely hang too)."""


def build(root: Path, log: Callable[[str], None] = print, into: Path | None = None) -> Path | None:
    """Compile the library from ``root``'s source into ``into`` (default: the package folder
    in ``root``), written to a temporary name there and then renamed; return its path, or
    None (said through ``log`` in one line) where it cannot be built: the install goes on."""
    if os.environ.get("REPROKIT_NATIVE") == "0":
        log("reprokit: REPROKIT_NATIVE=0, the native statistics are not built")
        return None
    if os.name == "nt":
        log("reprokit: no native statistics on Windows (numpy computes them)")
        return None
    target = (root / LIBRARY) if into is None else into / LIBRARY.name
    try:
        failure = "no compiler"
        for command in compilers():
            for extra in variants():
                failure = _compile(root / SOURCE, target, extra, command)
                if not failure:
                    return target
    except ValueError as exc:  # CC='gcc "-O2', CC=' '
        failure = f"CC is not a command: {exc}"
    except _Hung as exc:
        failure = str(exc)
    log(f"reprokit: the native statistics were not built ({failure}); numpy computes them")
    return None


def _compile(
    source: Path, target: Path, extra: tuple[str, ...], command: list[str] | None = None
) -> str:
    """Compile ``source`` to ``target`` with ``command`` (default: the first of
    :func:`compilers`); an empty string, else why it failed (one line). Raises
    :class:`_Hung` where the compiler ran past :data:`TIMEOUT_S` (it is killed, with what it
    started)."""
    compiler = command or compilers()[0]
    partial = None
    try:
        handle, partial = tempfile.mkstemp(prefix=".arraystats-", suffix=".so", dir=target.parent)
        os.close(handle)
        code, said = _run([*compiler, *FLAGS, *extra, "-o", partial, str(source)])
        if code != 0:
            return f"{compiler[0]} exited {code}: {_first_error(said)}"
        unloadable = _unloadable(partial)
        if unloadable:
            return f"{compiler[0]} wrote {unloadable}"
        os.chmod(partial, 0o755)  # mkstemp's 0600 would keep other users from loading it
        os.replace(partial, target)
        return ""
    except OSError as exc:
        return f"{compiler[0]}: {exc}"
    finally:
        _remove(partial)


def _run(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` in a session of its own; its exit code and what it said on stderr, else
    stdout (undecodable bytes replaced). Past :data:`TIMEOUT_S` the whole session is
    killed."""
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    ) as process:
        try:
            out, err = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise _Hung(f"{argv[0]} ran past {TIMEOUT_S} s and was stopped") from None
    return process.returncode, (err or out).decode("utf-8", "replace").strip()


def _first_error(said: str) -> str:
    """The line of a compiler's output that says what failed: the first with "error" in it
    (warnings come before it), else the first."""
    lines = said.splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no message"])[0][:300]


def _remove(partial: str | None) -> None:
    """Remove what is left at the temporary name (a file, or a folder a compiler made)."""
    if partial is None or not os.path.lexists(partial):
        return
    try:
        if os.path.isdir(partial) and not os.path.islink(partial):
            shutil.rmtree(partial)
        else:
            os.unlink(partial)
    except OSError:
        pass  # in a folder about to be dropped, or one a retry overwrites


_LOADS = "import ctypes, sys; sys.exit(ctypes.CDLL(sys.argv[1]).reprokit_stats_abi() <= 0)"
"""Loads the library just built in a child process: a file cut short would kill this one in
``dlopen`` (SIGBUS)."""


def _unloadable(path: str) -> str:
    """Why the library just built cannot be loaded here ("" if it loads and answers)."""
    if os.path.getsize(path) == 0:
        return "an empty file"
    code, said = _run([sys.executable, "-c", _LOADS, path])
    if code == 0:
        return ""
    if code < 0:
        return f"a file that does not load (killed by signal {-code})"
    last = said.splitlines()[-1][:200] if said else f"exit {code}"
    return f"a file that does not load ({last})"


if __name__ == "__main__":
    built = build(Path(__file__).resolve().parents[1])
    if built is not None:
        print(f"built {built}")
    sys.exit(0 if built is not None else 1)
