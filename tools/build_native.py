"""Build reprokit's one native helper: ``reprokit/results/_arraystats.so`` from ``arraystats.c``.

The statistics of a large float array result (min, max, mean, std) take one pass of this C
function instead of numpy's four passes and a float64 copy (``reprokit/results/native.py``
loads it with ctypes). It is optional: without a C compiler, or on Windows, reprokit computes
the same statistics with numpy, about three times slower (the array result's figures in
``benchmarks/README.md``).

``pip install`` runs this through the build hook ``hatch_build.py``; in a source checkout used
without installing, run it by hand::

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


def compiler() -> list[str]:
    """The C compiler: ``$CC``, else the one Python was built with, else ``cc``."""
    named = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(str(named))


def variants() -> list[tuple[str, ...]]:
    """Extra flags to try in turn: the AVX2 variant first where the platform has it."""
    clones = sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")
    return [("-DREPROKIT_CLONES",), ()] if clones else [()]


def build(root: Path, log: Callable[[str], None] = print) -> Path | None:
    """Compile the library into ``root``'s package folder (written to a temporary name, then
    renamed); return its path, or None (said through ``log``) where it cannot be built."""
    if os.environ.get("REPROKIT_NATIVE") == "0":
        log("reprokit: REPROKIT_NATIVE=0, the native statistics are not built")
        return None
    if os.name == "nt":
        log("reprokit: no native statistics on Windows (numpy computes them)")
        return None
    target = root / LIBRARY
    failure = "no attempt"
    for extra in variants():
        failure = _compile(root / SOURCE, target, extra)
        if not failure:
            return target
    log(f"reprokit: the native statistics were not built ({failure}); numpy computes them")
    return None


def _compile(source: Path, target: Path, extra: tuple[str, ...]) -> str:
    """Compile ``source`` to ``target``; an empty string, else why it failed (one line)."""
    handle, partial = tempfile.mkstemp(prefix=".arraystats-", suffix=".so", dir=target.parent)
    os.close(handle)
    command = [*compiler(), *FLAGS, *extra, "-o", partial, str(source)]
    try:
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=TIMEOUT_S
        )
        if done.returncode == 0:
            os.chmod(partial, 0o755)  # mkstemp's 0600 would keep other users from loading it
            os.replace(partial, target)
            return ""
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"{command[0]} exited {done.returncode}: {lines[0] if lines else 'no message'}"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{command[0]}: {exc}"
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


if __name__ == "__main__":
    built = build(Path(__file__).resolve().parents[1])
    if built is not None:
        print(f"built {built}")
    sys.exit(0 if built is not None else 1)
