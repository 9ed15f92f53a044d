"""Charts of the benchmark results: runner scaling and hashing throughput, as PNG files.

Run from the repository root after the benchmarks::

    python benchmarks/bench_run.py && python benchmarks/bench_hash.py
    python benchmarks/plot.py                      # -> benchmarks/figures/*.png

Reads ``benchmarks/results/bench_run.json`` and ``bench_hash.json`` (the JSON the benchmark
scripts write; ``--results DIR`` to read elsewhere) and writes, into ``--out``:

- ``runner.png``: 8 notebooks with bare papermill (the baseline), ``reprokit run`` with
  ``--jobs 1`` and ``--jobs 2``, and ``--jobs 1`` with MLflow recording, in seconds;
- ``hashing.png``: one large file, GiB/s of reprokit's API and CLI against ``b3sum``,
  ``sha256sum`` and ``md5sum`` (and hashlib on bytes in memory, the ceiling); many small files,
  files per second of reprokit (first hash, cached) against ``find | xargs b3sum`` and a
  ``scandir`` + ``stat`` walk; each bar is the best time of its side of an alternated pair.

A missing results file or figure (a baseline tool that was not installed) is left out, with
a note on standard error. Uses matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BASELINE = "#8c959f"  # grey: a baseline measured in the same run
OURS = "#1f6feb"  # blue: reprokit
CEILING = "#d0d7de"


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    if not path.is_file():
        print(f"plot: {path} not found; {name} skipped", file=sys.stderr)
        return None
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, 1, figsize=(width, height), layout="constrained")


def _subtitle(data: dict[str, Any], machine: str) -> str:
    quick = " (quick mode)" if data.get("quick") or data.get("params", {}).get("quick") else ""
    return f"{machine}{quick}"


def _compact(value: float, _position: int | None = None) -> str:
    """Axis ticks: ``150k`` rather than ``150000`` (they would overlap)."""
    return f"{value / 1000:g}k" if value >= 10_000 else f"{value:g}"


def _bars(axis: Any, rows: list[tuple[str, float, str]], unit: str, fmt: str) -> None:
    """Horizontal bars, first row on top, each labelled with its value."""
    labels = [r[0] for r in rows][::-1]
    values = [r[1] for r in rows][::-1]
    colours = [r[2] for r in rows][::-1]
    bars = axis.barh(labels, values, color=colours)
    axis.bar_label(bars, labels=[fmt.format(v) for v in values], padding=3, fontsize=9)
    axis.set_xlabel(unit)
    axis.set_xlim(0, max(values) * 1.25 if values else 1)
    axis.xaxis.set_major_formatter(_compact)
    axis.spines[["top", "right"]].set_visible(False)


def plot_runner(data: dict[str, Any], out: Path) -> Path:
    """``runner.png`` from bench_run.json (its ``figures``: medians of the paired runs)."""
    figures = data["figures"]
    count = figures["notebooks"]
    rows = [
        ("bare papermill (baseline)", figures["bare_papermill_s"], BASELINE),
        ("reprokit run --jobs 1", figures["run_jobs1_s"], OURS),
        ("reprokit run --jobs 2", figures["run_jobs2_s"], OURS),
        ("--jobs 1 + MLflow recording", figures["run_record_s"], OURS),
    ]
    figure, axis = _figure(8, 3.2)
    _bars(axis, rows, f"seconds for {count} notebooks (lower is better)", "{:.2f} s")
    machine = f"{figures.get('cpu_count', '?')} cores, Python {figures.get('python', '?')}"
    axis.set_title(
        f"Runner: --jobs 2 is {figures['speedup_jobs2']:.2f}x faster than --jobs 1, "
        f"{figures['overhead_per_notebook_s']:+.2f} s per notebook against papermill\n"
        + _subtitle(figures, machine),
        fontsize=10,
        loc="left",
    )
    return _save(figure, out / "runner.png")


# (label, pair in bench_hash.json, side, colour); a pair missing from the results is left out
_BIG_FILE = [
    ("b3sum", "blake3, API", "baseline", BASELINE),
    ("reprokit BLAKE3, API", "blake3, API", "measured", OURS),
    ("reprokit hash --no-cache (CLI)", "blake3, reprokit hash --no-cache", "measured", OURS),
    ("sha256sum", "sha256, API", "baseline", BASELINE),
    ("reprokit sha256, API", "sha256, API", "measured", OURS),
    ("md5sum", "md5, API", "baseline", BASELINE),
    ("reprokit md5, API", "md5, API", "measured", OURS),
]
_SMALL_FILES = [
    ("find | xargs b3sum", "first hash (cache written)", "baseline", BASELINE),
    ("reprokit, first hash (cache written)", "first hash (cache written)", "measured", OURS),
    ("reprokit, no cache", "no cache", "measured", OURS),
    ("scandir + stat walk (floor of a cached run)", "cached re-hash", "baseline", BASELINE),
    ("reprokit, cached re-hash", "cached re-hash", "measured", OURS),
]
_CEILING = "sha256, hashlib in memory (ceiling) s"


def _rows(
    data: dict[str, Any], table: list[tuple[str, str, str, str]], amount: float
) -> list[tuple[str, float, str]]:
    """(label, amount per second of the side's best time, colour) for each pair present."""
    pairs = data.get("pairs", {})
    rows = []
    for label, name, side, colour in table:
        seconds = pairs.get(name, {}).get(side, {}).get("min_s")
        if seconds:
            rows.append((label, amount / seconds, colour))
    return rows


def plot_hashing(data: dict[str, Any], out: Path) -> Path:
    """``hashing.png`` from bench_hash.json: throughput, so longer bars are better."""
    import matplotlib.pyplot as plt

    params = data.get("params", {})
    gib, files = params.get("big_bytes", 0) / 2**30, params.get("files", 0)
    big_rows = _rows(data, _BIG_FILE, gib)
    ceiling = data.get("figures", {}).get(_CEILING)
    if ceiling:
        big_rows.insert(5, ("hashlib sha256 in memory (ceiling)", gib / ceiling, CEILING))
    small_rows = _rows(data, _SMALL_FILES, files)
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(7.5, 6.4), layout="constrained", height_ratios=[len(big_rows) or 1, 4]
    )
    _bars(top, big_rows, "GiB/s (higher is better)", "{:.2f}")
    top.set_title(f"One file of {gib:.2f} GiB, in the page cache", fontsize=10, loc="left")
    _bars(bottom, small_rows, "files per second (higher is better)", "{:,.0f}")
    size = params.get("file_bytes", 0)
    bottom.set_title(f"{files:,} small files of {size:,} bytes", fontsize=10, loc="left")
    machine = data.get("machine", {})
    figure.suptitle(
        "Hashing: reprokit against the tools it replaces (best of alternated runs)\n"
        + _subtitle(
            data, f"{machine.get('cores', '?')} cores, Python {machine.get('python', '?')}"
        ),
        fontsize=10,
        x=0.01,
        ha="left",
    )
    return _save(figure, out / "hashing.png")


def _save(figure: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results", help="JSON folder")
    parser.add_argument("--out", type=Path, default=HERE / "figures", help="PNG folder")
    args = parser.parse_args(argv)
    written = []
    run = _load(args.results, "bench_run")
    if run is not None:
        written.append(plot_runner(run, args.out))
    hashing = _load(args.results, "bench_hash")
    if hashing is not None:
        written.append(plot_hashing(hashing, args.out))
    for path in written:
        print(f"wrote {path}")
    return 0 if written else 2


if __name__ == "__main__":
    sys.exit(main())
