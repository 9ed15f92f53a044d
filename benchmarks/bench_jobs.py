"""How ``reprokit run --jobs 2`` scales on small notebooks: against ``--jobs 1``, alternated.

Run from the repository root::

    python benchmarks/bench_jobs.py            # 16 notebooks, 3 pairs (several minutes)
    python benchmarks/bench_jobs.py --quick    # 4 notebooks, one pair (CI smoke test)

Each notebook is small (``%repro start --seed 0``, two results): the time is kernel start-up,
execution and recording. ``jobs2_vs_jobs1`` is ``reprokit run --jobs 2`` (measured) against
``reprokit run --jobs 1`` (baseline), A B A B in one project with a SQLite store; its
``speedup`` (baseline / measured) should be >= 1.8 on 2 cores: MLflow's writes must not take
the kernels' time. Every timed command is a whole ``python -m reprokit run`` (MLflow import
included); before each, the background writers of the previous one are waited for
(``reprokit sync --wait``), untimed, so that no run pays for another.

Results go to ``benchmarks/results/bench_jobs.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _ab import Results, alternate, command

NOTEBOOK_CELLS = (
    "%load_ext reprokit",
    "%repro start --seed 0",
    "import reprokit\nreprokit.result('accuracy', 0.5 + {index} / 1000)",
    "reprokit.result('loss', [1.0, 0.5, 0.25])",
)


def make_project(base: Path, count: int) -> Path:
    import nbformat
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    project = base / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    database = project / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{database}", str(base / "unused")).engine.dispose()
    for index in range(count):
        node = nbformat.v4.new_notebook()
        node.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
        node.cells = [
            nbformat.v4.new_code_cell(cell.format(index=index)) for cell in NOTEBOOK_CELLS
        ]
        nbformat.write(node, project / "notebooks" / f"nb{index:02d}.ipynb")
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 notebooks, one pair")
    args = parser.parse_args()
    count, repeat = (4, 1) if args.quick else (16, 3)
    results = Results("bench_jobs", params={"notebooks": count, "repeat": repeat})
    base = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    try:
        project = make_project(base, count)
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        python = sys.executable

        def run_jobs(jobs: int) -> Callable[[], object]:
            return command(
                python, "-m", "reprokit", "run", "notebooks", "--jobs", str(jobs),
                env=env, cwd=project,
            )  # fmt: skip

        settle = command(python, "-m", "reprokit", "sync", "--wait", env=env, cwd=project)
        pair = results.add(
            alternate(
                "jobs2_vs_jobs1",
                run_jobs(2),
                run_jobs(1),
                repeat=repeat,
                baseline_name="--jobs 1",
                target="speedup >= 1.8 (ratio <= 0.556)",
                before=settle,
                warmup=not args.quick,
            )
        )
        results.figure("speedup_min", round(1 / pair.ratio_min, 3))
        results.figure("speedup_median", round(1 / pair.ratio_median, 3))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    results.write()


if __name__ == "__main__":
    main()
