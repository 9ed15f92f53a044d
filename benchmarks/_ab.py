"""Paired measurements shared by every benchmark: a command and its baseline, alternated.

On a shared machine the load drifts during a run; timing all of A and then all of B puts
that drift into the ratio. :func:`alternate` runs ``A B A B …`` (after one untimed warm-up
of each, unless ``warmup=False``), so both sides see the same load, and keeps every time.
:class:`Pair` reports the min and median of each side and their ratios; :class:`Results`
collects pairs and plain figures and writes the JSON every benchmark leaves in
``benchmarks/results/<name>.json``.

A ratio is always ``measured / baseline`` (below 1: reprokit is faster than its baseline),
written as ``ratio_min`` (best of each side: the least noisy figure) and ``ratio_median``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def timed(run: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


@dataclass(frozen=True)
class Pair:
    """Times of a measured command and its baseline, taken alternately in the same run."""

    name: str
    measured: tuple[float, ...]
    baseline: tuple[float, ...]
    baseline_name: str
    target: str | None = None

    @property
    def ratio_min(self) -> float:
        return min(self.measured) / min(self.baseline)

    @property
    def ratio_median(self) -> float:
        return statistics.median(self.measured) / statistics.median(self.baseline)

    def as_json(self) -> dict[str, Any]:
        def side(times: tuple[float, ...]) -> dict[str, Any]:
            return {
                "min_s": round(min(times), 4),
                "median_s": round(statistics.median(times), 4),
                "times_s": [round(t, 4) for t in times],
            }

        return {
            "measured": side(self.measured),
            "baseline": {"name": self.baseline_name, **side(self.baseline)},
            "ratio_min": round(self.ratio_min, 3),
            "ratio_median": round(self.ratio_median, 3),
            "target": self.target,
        }

    def line(self) -> str:
        return (
            f"  {self.name:44s} min {min(self.measured):8.3f} s  median "
            f"{statistics.median(self.measured):8.3f} s | {self.baseline_name}: min "
            f"{min(self.baseline):8.3f} s  median {statistics.median(self.baseline):8.3f} s"
            f" | ratio min {self.ratio_min:5.2f} median {self.ratio_median:5.2f}"
            + (f"  (target {self.target})" if self.target else "")
        )


def alternate(
    name: str,
    measured: Callable[[], object],
    baseline: Callable[[], object],
    *,
    repeat: int,
    baseline_name: str,
    target: str | None = None,
    before: Callable[[], object] | None = None,
    warmup: bool = True,
) -> Pair:
    """Run ``measured`` and ``baseline`` alternately ``repeat`` times each (A B A B …).

    ``before`` runs untimed before every timed call (e.g. to reset a cache or a folder).
    The order flips every round (A B, B A, A B …) so neither side always runs second.
    """
    if warmup:
        for run in (measured, baseline):
            if before is not None:
                before()
            run()
    times: dict[str, list[float]] = {"a": [], "b": []}
    for index in range(repeat):
        order = (("a", measured), ("b", baseline))
        for key, run in order if index % 2 == 0 else reversed(order):
            if before is not None:
                before()
            times[key].append(timed(run))
    return Pair(name, tuple(times["a"]), tuple(times["b"]), baseline_name, target)


def command(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Callable[[], object]:
    """A callable running ``args`` as a subprocess (output discarded, failure raised).

    A failure raises :class:`CommandFailed` with the end of the command's standard error, so a
    benchmark that breaks says why (the output is read, not shown, when it succeeds).
    """

    def run() -> object:
        done = subprocess.run(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd, check=False
        )
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace")[-3000:]
            raise CommandFailed(f"{' '.join(args)} exited {done.returncode}:\n{tail}")
        return done

    return run


class CommandFailed(RuntimeError):
    """A benchmarked command exited non-zero; the message ends with its standard error."""


@dataclass
class Results:
    """Figures of one benchmark run, written as ``benchmarks/results/<name>.json``."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    pairs: dict[str, Pair] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, pair: Pair) -> Pair:
        self.pairs[pair.name] = pair
        print(pair.line(), flush=True)
        return pair

    def figure(self, name: str, value: Any) -> None:
        self.figures[name] = value
        print(f"  {name:44s} {value}", flush=True)

    def write(self) -> Path:
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        document = {
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cores": os.cpu_count(),
                "load_average_at_end": [round(x, 2) for x in load] if load else None,
            },
            "params": self.params,
            "pairs": {name: pair.as_json() for name, pair in self.pairs.items()},
            "figures": self.figures,
        }
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
        print(f"\nwrote {path}")
        return path
