"""How long ``%repro start`` and ``reprokit.result`` keep a researcher waiting, vs bare MLflow.

Run from the repository root::

    python benchmarks/bench_magic.py           # full run (about two minutes)
    python benchmarks/bench_magic.py --quick   # CI smoke test (under 30 s)

Figures, each with its ratio to a baseline measured in the same run:

- ``start_cell_s``: the time a ``%repro start --seed 0 --data data --experiment bench`` cell
  blocks, measured in a real kernel (nbclient, ``record_timing``: the kernel's
  ``execute_input`` → ``execute_reply``), against ``bare_cell_s``: a cell with
  ``import mlflow; mlflow.set_tracking_uri(...); mlflow.start_run(); mlflow.log_params(...)``
  on the same kind of store (a copy of one migrated SQLite database), also in a fresh kernel.
  The requirement is ratio <= 1.5; reprokit hands MLflow's import and connection to a
  background thread, so the figure is the capture (environment, seed, data hash) alone.
- ``load_ext_cell_s``: the ``%load_ext reprokit`` cell; ``end_cell_s``: the ``%repro end`` cell
  that waits for everything to reach MLflow (where the deferred cost is paid, if the notebook
  ran for less time than MLflow takes to import);
- ``result_scalar_ms``: in-process cost of one ``reprokit.result(name, float)`` (median of
  batches; no IPython, so no display_data), against ``mlflow_log_metric_ms``: one
  ``MlflowClient.log_metric`` on SQLite; ``result_array_ms`` for a 1,000-element float64 array;
- ``kernel_result_scalar_ms``: the same scalar call timed inside a real kernel right after
  ``%repro start`` (display_data over ZMQ, and MLflow's import competing for the GIL), and
  ``kernel_result_scalar_idle_ms`` once ``reprokit.flush()`` returned, against
  ``kernel_bare_display_ms``: a bare ``publish_display_data`` of a bundle of the same size.

Results go to ``benchmarks/results/bench_magic.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
RESULTS = ROOT / "benchmarks" / "results" / "bench_magic.json"

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
# the same once MLflow's import is done, and a bare display_data of the same size as baseline
KERNEL_RESULTS_IDLE = (
    "from reprokit.api import session\n"
    "session.flush(120)\n"
    "from IPython.display import publish_display_data\n"
    "t0 = time.perf_counter()\n"
    "for i in range({n}):\n"
    "    reprokit.result(f'i{{i}}', i * 0.5)\n"
    "print('IDLE_RESULT_MS', (time.perf_counter() - t0) * 1000 / {n})\n"
    "bundle = {{'text/plain': 'x' * 60, 'text/html': '<table>' + 'x' * 300 + '</table>',\n"
    "          'application/json': {{'name': 'x', 'value': 0.5, 'kind': 'float'}}}}\n"
    "t0 = time.perf_counter()\n"
    "for i in range({n}):\n"
    "    publish_display_data(bundle)\n"
    "print('BARE_DISPLAY_MS', (time.perf_counter() - t0) * 1000 / {n})"
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


def bare_cell(base: Path, template: Path, index: int) -> float:
    project = make_project(base, f"bare-{index}", template)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    nb = execute([WARMUP, BARE_CELL.format(uri=uri), "mlflow.end_run()"], project)
    return cell_seconds(nb.cells[1])


def reprokit_cells(base: Path, template: Path, index: int, results: int) -> dict[str, float]:
    project = make_project(base, f"repro-{index}", template)
    cells = [
        WARMUP,
        "%load_ext reprokit",
        "%repro start --experiment bench --seed 0 --data data",
        KERNEL_RESULTS.format(n=results),
        KERNEL_RESULTS_IDLE.format(n=results),
        "%repro end",
    ]
    nb = execute(cells, project)
    return {
        "load_ext_cell_s": cell_seconds(nb.cells[1]),
        "start_cell_s": cell_seconds(nb.cells[2]),
        "end_cell_s": cell_seconds(nb.cells[5]),
        "kernel_result_scalar_ms": printed_figure(nb.cells[3], "PER_RESULT_MS"),
        "kernel_result_scalar_idle_ms": printed_figure(nb.cells[4], "IDLE_RESULT_MS"),
        "kernel_bare_display_ms": printed_figure(nb.cells[4], "BARE_DISPLAY_MS"),
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
    parser.add_argument("--quick", action="store_true", help="one repeat, fewer results")
    args = parser.parse_args()
    repeats, results = (1, 50) if args.quick else (3, 200)

    base = Path(tempfile.mkdtemp(prefix="bench-magic-"))
    try:
        template = make_template(base)
        bare = [bare_cell(base, template, i) for i in range(repeats)]
        ours = [reprokit_cells(base, template, i, results) for i in range(repeats)]
        local = in_process(base, template, 500 if args.quick else 2000)
    finally:
        os.chdir(ROOT)
        shutil.rmtree(base, ignore_errors=True)

    med = {key: statistics.median(run[key] for run in ours) for key in ours[0]}
    bare_s = statistics.median(bare)
    figures = {
        "bare_cell_s": bare_s,
        **med,
        **local,
        "ratio_start_vs_bare": med["start_cell_s"] / bare_s,
        "ratio_load_ext_vs_bare": med["load_ext_cell_s"] / bare_s,
        "ratio_end_vs_bare": med["end_cell_s"] / bare_s,
        "ratio_result_vs_log_metric": local["result_scalar_ms"] / local["mlflow_log_metric_ms"],
        "ratio_kernel_result_idle_vs_bare_display": (
            med["kernel_result_scalar_idle_ms"] / med["kernel_bare_display_ms"]
        ),
    }
    for key, value in figures.items():
        print(f"{key:32s} {value:10.4f}")
    report = {
        "benchmark": "bench_magic",
        "quick": args.quick,
        "repeats": repeats,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "figures": figures,
        "raw": {"bare_cell_s": bare, "reprokit": ours},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
