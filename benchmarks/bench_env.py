"""How much a cached rebuilt environment saves: ``verify --rebuild-env``'s environment step the
second time against the first build of the same lock.

Run from the repository root::

    python benchmarks/bench_env.py           # full run (3 builds and 3 reuses, minutes)
    python benchmarks/bench_env.py --quick   # CI smoke test (one build, one reuse)

The lock pins ``six`` (an older version than this venv's); each build makes a fresh virtual
environment with the machine's installer (uv when found, else pip), the pin, ipykernel and
reprokit, in a private cache folder. Measured: :func:`reprokit.runner.envbuild.prepare_env`
reusing the cached environment (digest, manifest read); baseline: the same call with
``force=True`` (a full build). Alternated A B A B; the ratio is reuse / build (target: at most
0.1, i.e. at least 10x faster).

Results go to ``benchmarks/results/bench_env.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _ab import Pair, Results, alternate, timed

from reprokit.recording.envspec import EnvSpec, Pin
from reprokit.runner.envbuild import CACHE_ENV, prepare_env

PIN = Pin("six", "1.16.0")
TARGET = "<= 0.1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one build, one reuse")
    args = parser.parse_args()
    repeat = 1 if args.quick else 3
    version = ".".join(map(str, sys.version_info[:3]))
    spec = EnvSpec(version, "CPython", None, None, (PIN,))
    results = Results("bench_env", params={"quick": args.quick, "repeat": repeat, "pin": str(PIN)})
    with tempfile.TemporaryDirectory(prefix="bench-env-") as cache:
        os.environ[CACHE_ENV] = cache
        build = timed(lambda: prepare_env(spec, "bench.repro.json", device="cpu"))
        reuse = timed(lambda: prepare_env(spec, "bench.repro.json", device="cpu"))
        if args.quick:  # one build is the whole cost: no second one
            pair = Pair("reuse a cached environment", (reuse,), (build,), "first build", TARGET)
        else:
            pair = alternate(
                "reuse a cached environment",
                lambda: prepare_env(spec, "bench.repro.json", device="cpu"),
                lambda: prepare_env(spec, "bench.repro.json", device="cpu", force=True),
                repeat=repeat,
                baseline_name="first build",
                target=TARGET,
                warmup=False,
            )
        results.add(pair)
    results.write()


if __name__ == "__main__":
    main()
