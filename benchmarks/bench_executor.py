"""What the dask executor costs over the local pool.

Run from the repository root (needs ``pip install -e ".[dask]"``)::

    python benchmarks/bench_executor.py           # 32 notebooks, 3 repeats (a few minutes)
    python benchmarks/bench_executor.py --quick   # CI smoke test: 6 notebooks, 1 repeat

Figures, each alternated (A B A B, :mod:`_ab`) with its baseline, on tiny notebooks (one
``x = 1`` cell each, kernel ``python3``, ``record=False``: execution only):

- ``dask_cluster_jobs2``: ``reprokit.run(..., executor="dask", scheduler=<address>)`` on an
  already running ``LocalCluster`` of 2 single-threaded worker processes, against
  ``jobs=2`` local (target: ratio <= 1.10);
- ``dask_embedded_jobs2``: ``executor="dask"`` with no scheduler: reprokit starts and stops
  its own ``LocalCluster`` of 2 workers inside the timed call, against ``jobs=2`` local;
- ``dask_cluster_jobs1``: one worker against ``jobs=1``, on the first 8 notebooks; the
  per-notebook overhead of the Dask path is ``(dask - local) / 8``.
- ``import_distributed_s``: what ``import distributed`` costs a fresh interpreter (paid only
  with ``--executor dask``);
- ``scheduler_ms_per_task``: a trivial task's round trip through the 2-worker cluster
  (``client.map`` of ``20 x notebooks`` no-op tasks, gathered), in milliseconds;
- ``task_bytes_tiny_notebook``: the pickled size of one notebook's task.

Results go to ``benchmarks/results/bench_executor.json``.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from _ab import Results, alternate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _notebooks(folder: Path, count: int) -> list[Path]:
    (folder / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
    paths = []
    for index in range(count):
        node = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
        node.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
        node.cells = [nbformat.v4.new_code_cell("x = 1")]  # type: ignore[no-untyped-call]
        path = folder / "nbs" / f"nb{index:02d}.ipynb"
        path.parent.mkdir(exist_ok=True)
        nbformat.write(node, path)  # type: ignore[no-untyped-call]
        paths.append(path)
    return paths


def _runner(paths: list[Path], out: Path, **options: object) -> object:
    from reprokit.api.run import run
    from reprokit.options import ExecutionOptions

    def go() -> object:
        execution = ExecutionOptions(device="cpu", output_dir=out, **options)  # type: ignore[arg-type]
        outcomes = run(paths, execution=execution, record=False)
        assert all(outcome.ok for outcome in outcomes), [o.message for o in outcomes]
        return outcomes

    return go


def _import_time() -> float:
    code = (
        "import time; t = time.perf_counter(); import distributed; print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def _noop(value: int) -> int:
    return value


def scheduler_overhead_ms(address: str, tasks: int) -> float:
    """Milliseconds per trivial task through the scheduler (submit, run, gather), batched."""
    import time

    from distributed import Client

    with Client(address, set_as_default=False) as client:
        client.gather(client.map(_noop, range(100), pure=False))  # warm
        start = time.perf_counter()
        client.gather(client.map(_noop, range(tasks), pure=False))
        return (time.perf_counter() - start) / tasks * 1000


def task_bytes(path: Path) -> int:
    """The pickled size of one tiny notebook's task (what the scheduler holds while it waits)."""
    import pickle

    from reprokit.options import ExecutionOptions
    from reprokit.runner.dask_executor import make_task
    from reprokit.runner.device import resolve_device
    from reprokit.runner.plan import plan_runs

    choice = resolve_device("cpu")
    (plan,) = plan_runs([path], path.parent / "out", choice, {})
    return len(pickle.dumps(make_task(plan, choice, ExecutionOptions(device="cpu"))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count, repeat = (6, 1) if args.quick else (32, 3)
    results = Results("bench_executor", {"notebooks": count, "repeat": repeat})
    from distributed import LocalCluster

    with tempfile.TemporaryDirectory(prefix="bench-executor-") as tmp:
        paths, out = _notebooks(Path(tmp), count), Path(tmp) / "out"
        for workers, subset in ((2, paths), (1, paths[: min(8, count)])):
            with LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, silence_logs=logging.ERROR,
            ) as cluster:  # fmt: skip
                dask = _runner(subset, out, executor="dask", scheduler=cluster.scheduler_address)
                local = _runner(subset, out, jobs=workers)
                pair = alternate(
                    f"dask_cluster_jobs{workers}", dask, local, repeat=repeat,
                    baseline_name=f"local --jobs {workers}",
                    target="<= 1.10" if workers == 2 else None,
                )  # fmt: skip
                results.add(pair)
                if workers == 2:
                    overhead = scheduler_overhead_ms(cluster.scheduler_address, 20 * count)
                    results.figure("scheduler_ms_per_task", round(overhead, 3))
        results.figure("task_bytes_tiny_notebook", task_bytes(paths[0]))
        per_notebook = (min(pair.measured) - min(pair.baseline)) / len(subset)
        results.figure("dask_overhead_per_notebook_s", round(per_notebook, 4))
        embedded = _runner(paths, out, executor="dask", jobs=2)
        results.add(
            alternate(
                "dask_embedded_jobs2",
                embedded,
                _runner(paths, out, jobs=2),
                repeat=repeat,
                baseline_name="local --jobs 2",
                warmup=False,
            )
        )
    results.figure("import_distributed_s", round(_import_time(), 3))
    print(f"wrote {results.write()}")


if __name__ == "__main__":
    main()
