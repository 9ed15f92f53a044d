"""The skip cache: a second ``reprokit verify`` of an unchanged corpus against the first.

Run from the repository root::

    python benchmarks/bench_skip.py           # 32 notebooks, 3 rounds (a few minutes)
    python benchmarks/bench_skip.py --quick   # 8 notebooks, 1 round (under a minute)

The corpus: N tiny notebooks (one declared result each), recorded once (untimed) into the
project's own SQLite store. Then, alternately (``benchmarks/_ab.py``):

- the baseline, ``reprokit verify corpus/ --jobs 2 --force``: every notebook executed and
  compared, a verification run recorded for each, as the first verify of a corpus does;
- measured, ``reprokit verify corpus/ --jobs 2``: nothing changed since the last REPRODUCED
  verdicts, so every verdict comes from ``.reprokit/verified/`` (target: ratio <= 0.05, i.e.
  at least 20x faster).

Figures: the per-notebook cost of a cached verdict (``(measured - an empty verify) / N`` is not
separated: the command's start is in it) and the environment digest's own cost in process.
Results go to ``benchmarks/results/bench_skip.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # this checkout's reprokit, and _ab
from _ab import Results, alternate, command  # noqa: E402


def _corpus(project: Path, count: int) -> Path:
    (project / "pyproject.toml").write_text("[project]\nname = 'bench-skip'\n")
    folder = project / "corpus"
    folder.mkdir()
    for index in range(count):
        node = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
        node.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
        source = f"import reprokit\nreprokit.result('x', {index} + 0.5)"
        node.cells = [nbformat.v4.new_code_cell(source)]  # type: ignore[no-untyped-call]
        nbformat.write(node, folder / f"nb{index:03d}.ipynb")  # type: ignore[no-untyped-call]
    return folder


def _environment_digest_ms() -> float:
    from reprokit.compare.verified import environment_digest

    environment_digest("python3")  # the kernel spec lookup and imports, once
    started = time.perf_counter()
    for _ in range(20):
        from reprokit.compare import verified

        verified._interpreter_facts.cache_clear()
        environment_digest("python3")
    return (time.perf_counter() - started) / 20 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="8 notebooks, one round")
    quick = parser.parse_args().quick
    count, repeat = (8, 1) if quick else (32, 3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {"PYTHONPATH": str(ROOT), "CI": "1", "PYTHONHASHSEED": "0"}
    results = Results("bench_skip", params={"notebooks": count, "repeat": repeat, "jobs": 2})
    with tempfile.TemporaryDirectory(prefix="bench-skip-") as tmp:
        project = Path(tmp)
        env["REPROKIT_CACHE_DIR"] = str(project / "hash-cache")
        corpus = _corpus(project, count)
        reprokit = (sys.executable, "-m", "reprokit")
        subprocess.run([*reprokit, "record", str(corpus), "--device", "cpu", "--jobs", "2"],
                       check=True, env=env, cwd=project, capture_output=True)  # fmt: skip
        verify = (*reprokit, "verify", str(corpus), "--device", "cpu", "--jobs", "2")
        command(*verify, env=env, cwd=project)()  # the first verify: fills the skip cache
        results.add(
            alternate(
                f"second verify, {count} unchanged notebooks",
                command(*verify, env=env, cwd=project),
                command(*verify, "--force", env=env, cwd=project),
                repeat=repeat,
                baseline_name="verify --force (executes all)",
                target="<= 0.05 (20x faster)",
                warmup=False,
            )
        )
    pair = results.pairs[f"second verify, {count} unchanged notebooks"]
    results.figure("speedup_min", round(1 / pair.ratio_min, 1))
    results.figure("cached_verify_ms_per_notebook", round(min(pair.measured) / count * 1000, 1))
    results.figure("environment_digest_ms", round(_environment_digest_ms(), 2))
    print(f"wrote {results.write()}")


if __name__ == "__main__":
    main()
