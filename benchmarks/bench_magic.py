"""How long ``%repro start``/``%repro end`` keep a researcher waiting, vs bare MLflow.

Run from the repository root::

    python benchmarks/bench_magic.py           # full run (a few minutes)
    python benchmarks/bench_magic.py --quick   # CI smoke test (under a minute)

Every pair is measured alternately (A B A B, :mod:`_ab`), each kernel fresh, in a project with a
copy of one migrated SQLite store; cell times are the kernel's own (nbclient
``record_timing``: ``execute_input`` → ``execute_reply``). After each kernel the background
writer it left (``%repro end`` hands a run MLflow has not finished to one) is waited for,
untimed, so that it does not load the next measurement.

- ``end_cell_vs_trivial_cell``: the ``%repro end`` cell (right after start and a few results:
  MLflow's import is still under way in the kernel) against a trivial cell (``x = 1``) of the
  same kernel. Target: ``%repro end`` <= 0.1 s.
- ``start_end_vs_bare_mlflow``: the ``%repro start --seed 0 --data data`` cell plus the
  ``%repro end`` cell, against one cell with
  ``import mlflow; mlflow.set_tracking_uri(...); mlflow.start_run(); mlflow.log_params(...)``
  plus one with ``mlflow.end_run()``, in alternate kernels. Target: ratio <= 0.5.
- ``start_cell_vs_bare_mlflow``: the start cell alone against the same bare MLflow cells.
- figures: ``load_ext_cell_s``; ``kernel_result_scalar_ms`` (one ``reprokit.result`` of a float
  inside the kernel right after start), ``result_scalar_ms``/``result_array_ms`` in this process
  against ``mlflow_log_metric_ms`` (one ``MlflowClient.log_metric`` on SQLite).

Results go to ``benchmarks/results/bench_magic.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _ab import Pair, Results  # noqa: E402

WARMUP = "import sys"
BARE_CELL = (
    "import mlflow\n"
    "mlflow.set_tracking_uri({uri!r})\n"
    "mlflow.set_experiment('bare')\n"
    "mlflow.start_run()\n"
    "mlflow.log_params({{'seed': 0, 'lr': 0.1}})"
)
KERNEL_RESULTS = (
    "import time, reprokit\n"
    "t0 = time.perf_counter()\n"
    "for i in range({n}):\n"
    "    reprokit.result(f'k{{i}}', i * 0.5)\n"
    "print('PER_RESULT_MS', (time.perf_counter() - t0) * 1000 / {n})"
)


def make_template(folder: Path) -> Path:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    database = folder / "template.db"
    SqlAlchemyStore(f"sqlite:///{database}", str(folder / "unused")).engine.dispose()
    return database


def make_project(base: Path, name: str, template: Path) -> Path:
    """A project with a copied store and a data folder of 50 files (3.2 MB)."""
    project = base / name
    (project / "data").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    shutil.copy(template, project / "mlflow.db")
    for i in range(50):
        (project / "data" / f"part-{i:02d}.bin").write_bytes(os.urandom(64 * 1024))
    return project


def cell_seconds(cell: Any) -> float:
    timing = cell.metadata["execution"]
    start = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def execute(cells: list[str], cwd: Path) -> Any:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    NotebookClient(
        nb, timeout=300, kernel_name="python3", record_timing=True,
        resources={"metadata": {"path": str(cwd)}},
    ).execute()  # fmt: skip
    for cell in nb.cells:
        for output in cell.outputs:
            if output.get("output_type") == "error":
                raise RuntimeError(f"cell failed: {output['ename']}: {output['evalue']}")
    return nb


def bare_cells(base: Path, template: Path, index: int) -> float:
    """The bare MLflow cells' time (start_run + log_params, then end_run)."""
    project = make_project(base, f"bare-{index}", template)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    nb = execute([WARMUP, BARE_CELL.format(uri=uri), "mlflow.end_run()"], project)
    return cell_seconds(nb.cells[1]) + cell_seconds(nb.cells[2])


def reprokit_cells(base: Path, template: Path, index: int, results: int) -> dict[str, float]:
    from reprokit.recording.handoff import wait_for_writers

    project = make_project(base, f"repro-{index}", template)
    cells = [
        WARMUP,
        "%load_ext reprokit",
        "%repro start --experiment bench --seed 0 --data data",
        KERNEL_RESULTS.format(n=results),
        "%repro end",
        "x = 1",
    ]
    nb = execute(cells, project)
    wait_for_writers(project, 300)  # untimed: the writer must not load the next kernel
    return {
        "load_ext_cell_s": cell_seconds(nb.cells[1]),
        "start_cell_s": cell_seconds(nb.cells[2]),
        "end_cell_s": cell_seconds(nb.cells[4]),
        "trivial_cell_s": cell_seconds(nb.cells[5]),
        "kernel_result_scalar_ms": printed_figure(nb.cells[3], "PER_RESULT_MS"),
    }


def printed_figure(cell: Any, label: str) -> float:
    printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    return float(printed.split(label, 1)[1].split()[0])


def in_process(base: Path, template: Path, count: int) -> dict[str, float]:
    """Per-call costs in this process: reprokit.result vs MlflowClient.log_metric."""
    import numpy as np
    from mlflow.tracking import MlflowClient

    from reprokit.api import session

    project = make_project(base, "inproc", template)
    os.chdir(project)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("metric")).info.run_id
    n_metric = max(20, count // 20)
    t0 = time.perf_counter()
    for i in range(n_metric):
        client.log_metric(run_id, f"m{i}", float(i))
    metric_ms = (time.perf_counter() - t0) * 1000 / n_metric

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session.start(experiment="inproc", seed=0)
        scalar = _per_call_ms(lambda i: session.result(f"s{i}", i * 0.5), count)
        array = np.linspace(0.0, 1.0, 1000)
        vector = _per_call_ms(lambda i: session.result(f"a{i}", array), max(10, count // 10))
        session.end()
    return {
        "mlflow_log_metric_ms": metric_ms,
        "result_scalar_ms": scalar,
        "result_array_ms": vector,
    }


def _per_call_ms(call: Any, count: int) -> float:
    batches = []
    per_batch = max(1, count // 5)
    for b in range(5):
        t0 = time.perf_counter()
        for i in range(per_batch):
            call(b * per_batch + i)
        batches.append((time.perf_counter() - t0) * 1000 / per_batch)
    return statistics.median(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one pair, fewer results")
    args = parser.parse_args()
    repeats, count = (1, 20) if args.quick else (5, 200)
    results = Results("bench_magic", params={"repeats": repeats, "results": count})
    base = Path(tempfile.mkdtemp(prefix="bench-magic-"))
    try:
        template = make_template(base)
        ours: list[dict[str, float]] = []
        bare: list[float] = []
        for index in range(repeats):  # A B, B A, A B ...: both sides see the same load
            sides = [
                lambda i=index: ours.append(reprokit_cells(base, template, i, count)),
                lambda i=index: bare.append(bare_cells(base, template, i)),
            ]
            for side in sides if index % 2 == 0 else reversed(sides):
                side()
        local = in_process(base, template, 500 if args.quick else 2000)
    finally:
        os.chdir(ROOT)
        shutil.rmtree(base, ignore_errors=True)
    report(results, ours, bare, local)
    results.write()


def report(
    results: Results, ours: list[dict[str, float]], bare: list[float], local: dict[str, float]
) -> None:
    def pair(name: str, key: str | tuple[str, ...], baseline: tuple[float, ...], **kw: Any) -> None:
        keys = (key,) if isinstance(key, str) else key
        measured = tuple(sum(run[k] for k in keys) for run in ours)
        results.add(Pair(name, measured, baseline, **kw))

    trivial = tuple(run["trivial_cell_s"] for run in ours)
    pair("end_cell_vs_trivial_cell", "end_cell_s", trivial, baseline_name="x = 1 cell",
         target="%repro end <= 0.1 s")  # fmt: skip
    pair("start_end_vs_bare_mlflow", ("start_cell_s", "end_cell_s"), tuple(bare),
         baseline_name="bare MLflow start_run + end_run cells", target="ratio <= 0.5")  # fmt: skip
    pair("start_cell_vs_bare_mlflow", "start_cell_s", tuple(bare),
         baseline_name="bare MLflow start_run + end_run cells")  # fmt: skip
    for key in ("load_ext_cell_s", "end_cell_s", "kernel_result_scalar_ms"):
        results.figure(f"{key}_median", round(statistics.median(run[key] for run in ours), 4))
    for key, value in local.items():
        results.figure(key, round(value, 4))
    results.figure(
        "ratio_result_vs_log_metric",
        round(local["result_scalar_ms"] / local["mlflow_log_metric_ms"], 3),
    )


if __name__ == "__main__":
    main()
