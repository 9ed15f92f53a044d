"""Disk used by repeated verifications of a notebook with a large array result.

Run from the repository root::

    python benchmarks/bench_disk.py            # a 40 MB array, record + 3 verifies
    python benchmarks/bench_disk.py --quick    # a 4 MB array, record + 2 verifies

After ``reprokit record`` and N ``reprokit verify`` of one notebook whose result is a 40 MB
float64 array (embedded SQLite store, local ``mlartifacts/``):

- ``bytes_stored``: bytes of ``.reprokit/`` and ``mlartifacts/`` with every file counted once
  (what ``du`` says: hard links share their blocks);
- ``bytes_as_copies``: the files of the run folders and of MLflow's artifacts counted once
  per name: what they would take if each name were a copy (before the content-addressed
  store: two copies of the array per run);
- ``stored_vs_copies``: their ratio (target: at most 1 / (2 x runs) of the array's share, i.e.
  one copy of the array for all the runs);
- ``bytes_after_gc_keep_1``: ``bytes_stored`` after ``reprokit gc --keep 1`` (MLflow's artifacts
  stay: they still link the array, so its one copy stays too).

Results go to ``benchmarks/results/bench_disk.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _ab import Results

CELLS = (
    "import numpy as np, reprokit",
    "%load_ext reprokit",
    "%repro start --seed 0",
    "reprokit.result('weights', np.random.default_rng(0).random({size}))",
)


def make_project(base: Path, size: int) -> Path:
    import nbformat
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    project = base / "project"
    project.mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    database = project / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{database}", str(base / "unused")).engine.dispose()
    node = nbformat.v4.new_notebook()
    node.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    node.cells = [nbformat.v4.new_code_cell(cell.format(size=size)) for cell in CELLS]
    nbformat.write(node, project / "weights.ipynb")
    return project


def usage(*folders: Path) -> tuple[int, int]:
    """(bytes with each file once, bytes with each name counted)."""
    once: dict[tuple[int, int], int] = {}
    every = 0
    for folder in folders:
        for directory, _, names in os.walk(folder):
            for name in names:
                st = os.lstat(os.path.join(directory, name))
                once[(st.st_dev, st.st_ino)] = st.st_size
                every += st.st_size
    return sum(once.values()), every


def reprokit(project: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(
        [sys.executable, "-m", "reprokit", *args],
        cwd=project, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 4 MB array, 2 verifies")
    args = parser.parse_args()
    elements, verifies = (500_000, 2) if args.quick else (5_000_000, 3)
    results = Results("bench_disk", params={"array_bytes": elements * 8, "verifies": verifies})
    base = Path(tempfile.mkdtemp(prefix="bench-disk-"))
    try:
        project = make_project(base, elements)
        reprokit(project, "record", "weights.ipynb")
        for _ in range(verifies):
            reprokit(project, "verify", "weights.ipynb")
        reprokit(project, "sync", "--wait")
        folders = (project / ".reprokit", project / "mlartifacts")
        stored = usage(*folders)[0]
        copies = usage(project / ".reprokit" / "runs", project / "mlartifacts")[1]
        results.figure("bytes_stored", stored)
        results.figure("bytes_as_copies", copies)
        results.figure("stored_vs_copies", round(stored / copies, 3))
        results.figure("array_copies_stored", round(stored / (elements * 8), 2))
        results.figure("array_copies_as_copies", round(copies / (elements * 8), 2))
        reprokit(project, "gc", "--keep", "1")
        results.figure("bytes_after_gc_keep_1", usage(*folders)[0])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    results.write()


if __name__ == "__main__":
    main()
