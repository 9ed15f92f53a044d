"""The runner at its limits (long notebooks, big data manifests) and on many small notebooks.

Run from the repository root::

    python benchmarks/bench_run.py           # full run (10+ minutes on 2 quiet cores)
    python benchmarks/bench_run.py --quick   # CI smoke test: small sizes, 1 repeat, no warm-up
    python benchmarks/bench_run.py --only data --files 20000   # one group, other sizes

Every figure is a pair measured alternately (A B A B …, :mod:`_ab`), with min and median of
both sides and ratio = reprokit / baseline:

- ``cells``: a notebook of ``--cells`` trivial cells (``x = i``, default 2,000) through
  ``reprokit run --no-record`` against ``jupyter execute`` (nbclient's own command) of the same
  notebook; target ratio ≤ 2;
- ``cells_papermill``: the notebook cut to ``--papermill-cells`` cells (default 300), run
  *once* each (no warm-up) by ``reprokit run`` and by bare ``papermill`` (the command):
  papermill re-writes the whole notebook at the start and end of every cell, so its time grows
  with the square of the cells (2,000 cells take it about 11 minutes);
- ``data_files``: 30 cells after ``%repro start --data data`` over ``--files`` files (default
  100,000, built in a temporary folder, hash cache warm) against the same notebook over 10
  files; target ratio ≤ 1.2;
- ``notebooks_jobs1``: ``--notebooks`` tiny notebooks (one ``x = 1`` cell) through
  ``reprokit.run(jobs=1, record=False)`` against bare ``papermill.execute_notebook`` on each in
  turn (the per-notebook overhead can be negative: reprokit kills each kernel at once where
  papermill waits for a graceful exit);
- ``notebooks_jobs2``: the same with ``jobs=2`` against ``jobs=1``; the speed-up is
  1 / ratio (target ≥ 1.8 on a machine with 2 free cores);
- ``notebooks_record``: ``jobs=1, record=True`` (a SQLite store made in the warm-up) against
  ``jobs=1, record=False``.

Results go to ``benchmarks/results/bench_run.json`` (``pairs``, and ``figures`` for
``benchmarks/plot.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from itertools import count
from pathlib import Path

import nbformat
from _ab import Results, alternate

BIN = Path(sys.executable).parent
TRIVIAL_CELLS_AFTER_START = 30


def _notebook(path: Path, cells: list[str]) -> Path:
    node = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    node.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    node.cells = [nbformat.v4.new_code_cell(source) for source in cells]  # type: ignore[no-untyped-call]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(node, path)  # type: ignore[no-untyped-call]
    return path


def _project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    return folder


def _run(*args: str | Path, cwd: Path) -> None:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{done.stderr.decode()[-2000:]}")


def _fresh(base: Path) -> Callable[[], Path]:
    """A new empty folder under ``base`` at each call (outputs never overwrite each other)."""
    numbers = count()

    def make() -> Path:
        path = base / str(next(numbers))
        path.mkdir(parents=True)
        return path

    return make


def _reprokit_run(notebook: Path, outputs: Callable[[], Path]) -> Callable[[], None]:
    def run() -> None:
        out = outputs()
        _run(
            sys.executable, "-m", "reprokit", "run", notebook, "--device", "cpu", "--no-record",
            "--output-dir", out, cwd=notebook.parent,
        )  # fmt: skip

    return run


def _jupyter_execute(notebook: Path, outputs: Callable[[], Path]) -> Callable[[], None]:
    def run() -> None:
        out = outputs() / notebook.name
        _run(BIN / "jupyter-execute", notebook, f"--output={out}", cwd=notebook.parent)

    return run


def _papermill(notebook: Path, outputs: Callable[[], Path]) -> Callable[[], None]:
    def run() -> None:
        out = outputs() / notebook.name
        _run(BIN / "papermill", "--no-progress-bar", notebook, out, cwd=notebook.parent)

    return run


def bench_cells(
    results: Results, base: Path, cells: int, papermill_cells: int, repeat: int
) -> None:
    """Many trivial cells: reprokit's runner against nbclient, and (once) bare papermill."""
    project = _project(base / "cells")
    long = _notebook(project / "long.ipynb", [f"x = {i}" for i in range(cells)])
    outputs = _fresh(base / "cells-out")
    print(f"{cells} trivial cells: reprokit run --no-record against jupyter execute", flush=True)
    pair = alternate(
        "cells",
        _reprokit_run(long, outputs),
        _jupyter_execute(long, outputs),
        repeat=repeat,
        warmup=repeat > 1,
        baseline_name="jupyter execute",
        target="<= 2",
    )
    results.add(pair)
    short = _notebook(project / "short.ipynb", [f"x = {i}" for i in range(papermill_cells)])
    print(f"{papermill_cells} trivial cells, once each: reprokit run against papermill", flush=True)
    once = alternate(
        "cells_papermill",
        _reprokit_run(short, outputs),
        _papermill(short, outputs),
        repeat=1,
        baseline_name="bare papermill",
        warmup=False,
    )
    results.add(once)


def _data_tree(folder: Path, files: int) -> None:
    per_folder = 1000
    for index in range(files):
        sub = folder / f"d{index // per_folder:04d}"
        if index % per_folder == 0:
            sub.mkdir(parents=True)
        (sub / f"f{index:07d}.txt").write_bytes(b"%d\n" % index)


def bench_data(results: Results, base: Path, files: int, repeat: int) -> None:
    """30 cells after ``%repro start --data`` over many files, against over 10 files."""
    cells = ["%load_ext reprokit", "%repro start --seed 0 --data data"]
    cells += [f"x = {i}" for i in range(TRIVIAL_CELLS_AFTER_START)]
    notebooks = {}
    for name, size in (("big", files), ("small", 10)):
        project = _project(base / f"data-{name}")
        _data_tree(project / "data", size)
        notebooks[name] = _notebook(project / "nb.ipynb", cells)
    outputs = _fresh(base / "data-out")
    print(f"30 cells after %repro start --data over {files:,} files against 10", flush=True)
    pair = alternate(
        "data_files",
        _reprokit_run(notebooks["big"], outputs),
        _reprokit_run(notebooks["small"], outputs),
        repeat=repeat,
        warmup=repeat > 1,
        baseline_name="over 10 files",
        target="<= 1.2",
    )
    results.add(pair)
    executed = sorted((base / "data-out").glob("*/nb/nb.ipynb"))[-1]
    results.figure("executed notebook bytes (big data)", executed.stat().st_size)


def _bare(paths: list[Path], outputs: Callable[[], Path]) -> Callable[[], None]:
    def run() -> None:
        import papermill  # type: ignore[import-untyped]

        out = outputs()
        for path in paths:
            papermill.execute_notebook(
                str(path), str(out / path.name), progress_bar=False, cwd=str(path.parent)
            )

    return run


def _api(
    paths: list[Path], outputs: Callable[[], Path], jobs: int, record: bool
) -> Callable[[], None]:
    def run() -> None:
        from reprokit import ExecutionOptions, run

        execution = ExecutionOptions(device="cpu", jobs=jobs, output_dir=outputs())
        outcomes = run(paths, execution=execution, record=record)
        bad = [o for o in outcomes if not o.ok or o.record_error]
        if bad:
            raise SystemExit(f"benchmark notebook failed: {bad[0]}")

    return run


def bench_notebooks(results: Results, base: Path, notebooks: int, repeat: int) -> None:
    """Many tiny notebooks: the runner against bare papermill, ``--jobs 2``, recording."""
    project = _project(base / "many")
    paths = [_notebook(project / f"nb{k}.ipynb", ["x = 1"]) for k in range(notebooks)]
    outputs = _fresh(base / "many-out")
    jobs1 = _api(paths, outputs, 1, False)
    print(f"{notebooks} tiny notebooks: jobs=1, jobs=2, recording", flush=True)
    pairs = (
        alternate(
            "notebooks_jobs1",
            jobs1,
            _bare(paths, outputs),
            repeat=repeat,
            warmup=repeat > 1,
            baseline_name="bare papermill",
        ),
        alternate(
            "notebooks_jobs2",
            _api(paths, outputs, 2, False),
            jobs1,
            repeat=repeat,
            warmup=repeat > 1,
            baseline_name="jobs=1",
            target="<= 0.56 (speed-up >= 1.8)",
        ),
        alternate(
            "notebooks_record",
            _api(paths, outputs, 1, True),
            jobs1,
            repeat=repeat,
            warmup=repeat > 1,
            baseline_name="jobs=1, no record",
        ),
    )
    for pair in pairs:
        results.add(pair)


def plot_figures(results: Results, notebooks: int, quick: bool) -> None:
    """The medians ``benchmarks/plot.py`` draws, under the names it reads."""
    one, two, rec = (
        results.pairs["notebooks_jobs1"],
        results.pairs["notebooks_jobs2"],
        results.pairs["notebooks_record"],
    )
    jobs1, bare = statistics.median(one.measured), statistics.median(one.baseline)
    jobs2, record = statistics.median(two.measured), statistics.median(rec.measured)
    results.figures.update(
        {
            "notebooks": notebooks,
            "bare_papermill_s": round(bare, 3),
            "run_jobs1_s": round(jobs1, 3),
            "run_jobs2_s": round(jobs2, 3),
            "run_record_s": round(record, 3),
            "overhead_per_notebook_s": round((jobs1 - bare) / notebooks, 3),
            # from the alternated jobs=2 / jobs=1 pair, not across pairs
            "speedup_jobs2": round(1 / two.ratio_median, 3),
            "record_per_notebook_s": round((record - jobs1) / notebooks, 3),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "quick": quick,
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat (CI)")
    parser.add_argument("--repeat", type=int, default=None, help="pairs per figure [3]")
    parser.add_argument("--cells", type=int, default=None, help="trivial cells [2000]")
    parser.add_argument("--papermill-cells", type=int, default=None, help="[300]")
    parser.add_argument("--files", type=int, default=None, help="data files [100000]")
    parser.add_argument("--notebooks", type=int, default=None, help="tiny notebooks [8]")
    parser.add_argument(
        "--only", default="cells,data,notebooks", help="which groups to run [all three]"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    repeat = args.repeat or (1 if quick else 3)
    cells = args.cells or (200 if quick else 2000)
    papermill_cells = args.papermill_cells or (50 if quick else 300)
    files = args.files or (5000 if quick else 100_000)
    notebooks = args.notebooks or (4 if quick else 8)
    params = {"quick": quick, "repeat": repeat, "cells": cells, "files": files}
    results = Results(
        "bench_run", params | {"papermill_cells": papermill_cells, "notebooks": notebooks}
    )
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        base = Path(tmp)
        os.environ["REPROKIT_CACHE_DIR"] = str(base / "hash-cache")  # inherited by kernels
        groups = set(args.only.split(","))
        if "cells" in groups:
            bench_cells(results, base, cells, papermill_cells, repeat)
        if "data" in groups:
            bench_data(results, base, files, repeat)
        if "notebooks" in groups:
            bench_notebooks(results, base, notebooks, repeat)
            plot_figures(results, notebooks, quick)
        results.write()  # before the 100,000 files are deleted (that can take a while)


if __name__ == "__main__":
    main()
