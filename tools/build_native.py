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
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path

SOURCE = Path("reprokit/results/arraystats.c")
LIBRARY = Path("reprokit/results/_arraystats.so")
FLAGS = ("-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-strict-aliasing")
TIMEOUT_S = 120


def compilers() -> list[list[str]]:
    """The C compilers to try in turn: ``$CC`` alone where it is set, else the one Python was
    built with (a conda Python names its own, often absent) and then ``cc``."""
    if os.environ.get("CC"):
        return [shlex.split(os.environ["CC"])]
    named = sysconfig.get_config_var("CC")
    found = [shlex.split(str(named))] if named else []
    return found if ["cc"] in found else [*found, ["cc"]]


def variants() -> list[tuple[str, ...]]:
    """Extra flags to try in turn: the AVX2 variant first where the platform has it."""
    clones = sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")
    return [("-DREPROKIT_CLONES",), ()] if clones else [()]


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
        tried = compilers()
    except ValueError as exc:  # CC='gcc "-O2'
        tried, failure = [], f"CC cannot be split into words: {exc}"
    for command in tried:
        for extra in variants():
            failure = _compile(root / SOURCE, target, extra, command)
            if not failure:
                return target
    log(f"reprokit: the native statistics were not built ({failure}); numpy computes them")
    return None


def _compile(
    source: Path, target: Path, extra: tuple[str, ...], command: list[str] | None = None
) -> str:
    """Compile ``source`` to ``target`` with ``command`` (default: the first of
    :func:`compilers`); an empty string, else why it failed (one line)."""
    compiler = command or compilers()[0]
    partial = None
    try:
        handle, partial = tempfile.mkstemp(prefix=".arraystats-", suffix=".so", dir=target.parent)
        os.close(handle)
        argv = [*compiler, *FLAGS, *extra, "-o", partial, str(source)]
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=TIMEOUT_S)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            return f"{compiler[0]} exited {done.returncode}: {lines[0] if lines else 'no message'}"
        unloadable = _unloadable(partial)
        if unloadable:
            return f"{compiler[0]} wrote {unloadable}"
        os.chmod(partial, 0o755)  # mkstemp's 0600 would keep other users from loading it
        os.replace(partial, target)
        return ""
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{compiler[0]}: {exc}"
    finally:
        if partial is not None and os.path.exists(partial):
            os.unlink(partial)


def _unloadable(path: str) -> str:
    """Why the library just built cannot be loaded here ("" if it can, with the interface)."""
    import ctypes

    if os.path.getsize(path) == 0:
        return "an empty file"
    try:
        ctypes.CDLL(path).reprokit_stats_abi()
    except (OSError, AttributeError) as exc:
        return f"a file that does not load ({str(exc).splitlines()[0][:200]})"
    return ""


if __name__ == "__main__":
    built = build(Path(__file__).resolve().parents[1])
    if built is not None:
        print(f"built {built}")
    sys.exit(0 if built is not None else 1)
