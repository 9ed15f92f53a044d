"""Options as values: one frozen object per concern, passed from the front ends to the API.

- :class:`ExecutionOptions` — how notebooks execute: device, kernel, time limits, memory limit,
  parallel jobs, output folder and secret parameters (``run``, ``record``, ``verify``);
- :class:`ComparisonOptions` — how results are compared: tolerances, cell outputs, data drift
  (``verify``, ``diff``).

Adding an option means adding a field here and its flag in the CLI decorator that builds the
object (:mod:`reprokit.cli._options`); the API passes the object down unchanged. Values are
checked when the object is made, so a bad option is a
:class:`~reprokit.exceptions.UsageError` before anything runs.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from reprokit.comparison import Tolerance
from reprokit.exceptions import UsageError

__all__ = ["ComparisonOptions", "ExecutionOptions", "Executor"]

Executor = Literal["local", "dask"]
"""Where notebooks execute: ``local`` (kernels of this machine) or ``dask`` (a Dask cluster)."""

_SCHEDULER = re.compile(r"^(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


@dataclass(frozen=True)
class ExecutionOptions:
    """How each notebook is executed.

    ``device``: ``cpu`` (GPUs hidden from the kernel), ``cuda`` (refused where no GPU is
    visible) or ``auto``. ``kernel``: the Jupyter kernel (default: the notebook's).
    ``timeout``: seconds each cell may run; ``notebook_timeout``: seconds the whole notebook may
    run; ``memory_limit``: bytes each kernel may allocate. ``jobs``: notebooks at once.
    ``output_dir``: where executed notebooks go (default ``<project>/.reprokit/runs/<time>``).
    ``secret_parameters``: name -> value, given to the kernel but never written anywhere (kept
    out of this object's ``repr``). ``executor``: where notebooks execute, ``local`` (a pool of
    ``jobs`` kernels here) or ``dask`` (a Dask cluster: an embedded ``LocalCluster`` of ``jobs``
    workers, or the existing one whose ``scheduler`` is given as ``tcp://HOST:PORT``).
    """

    device: str = "auto"
    kernel: str | None = None
    timeout: float | None = None
    notebook_timeout: float | None = None
    memory_limit: int | None = None
    jobs: int = 1
    output_dir: str | os.PathLike[str] | None = None
    secret_parameters: Mapping[str, str] = field(default_factory=dict, repr=False)
    executor: Executor = "local"
    scheduler: str | None = None

    def __post_init__(self) -> None:
        _check_executor(self.executor, self.scheduler)
        if self.jobs < 1:
            raise UsageError(
                f"--jobs must be at least 1, got {self.jobs}", option="--jobs", value=str(self.jobs)
            )
        for option, value in (
            ("--timeout", self.timeout),
            ("--notebook-timeout", self.notebook_timeout),
            ("--memory-limit", self.memory_limit),
        ):
            if value is not None and not value > 0:
                raise UsageError(
                    f"{option} must be a positive number, got {value}",
                    option=option,
                    value=str(value),
                )
        object.__setattr__(self, "secret_parameters", dict(self.secret_parameters))


def _check_executor(executor: str, scheduler: str | None) -> None:
    if executor not in get_args(Executor):
        raise UsageError(
            f"--executor {executor!r}: expected one of {', '.join(get_args(Executor))}",
            option="--executor",
            value=str(executor),
        )
    if scheduler is None:
        return
    if executor != "dask":
        raise UsageError(
            f"--scheduler {scheduler} needs --executor dask (the local executor has no scheduler)",
            option="--scheduler",
            value=scheduler,
        )
    match = _SCHEDULER.match(scheduler)
    if match is None or not 0 < int(match.group(3)) < 65536:
        raise UsageError(
            f"--scheduler {scheduler!r}: expected a Dask scheduler address tcp://HOST:PORT "
            "(or tls://HOST:PORT)",
            option="--scheduler",
            value=scheduler,
        )


@dataclass(frozen=True)
class ComparisonOptions:
    """How a verification compares.

    ``rtol``/``atol``: tolerance for every result, overriding the declared and per-device ones
    (a part left ``None`` keeps the tolerance otherwise chosen). ``outputs``: compare every code
    cell's text output too. ``allow_data_drift``: execute even when the lock's data changed.
    ``device_tolerance``: result name (or ``"*"`` for every result) -> the tolerance used when
    the devices differ (CPU against CUDA), instead of the lock's ``device_tolerances``.
    ``rehash``: re-read every data file for the data check instead of trusting the hash cache
    (which misses a file rewritten in place without a change of size, mtime or ctime, e.g.
    through a shared ``mmap``).
    """

    rtol: float | None = None
    atol: float | None = None
    outputs: bool = False
    allow_data_drift: bool = False
    device_tolerance: Mapping[str, Tolerance] = field(default_factory=dict)
    rehash: bool = False

    def __post_init__(self) -> None:
        for option, value in (("--rtol", self.rtol), ("--atol", self.atol)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise UsageError(
                    f"{option} must be a finite number >= 0, got {value}",
                    option=option,
                    value=str(value),
                )

    @property
    def overrides_tolerance(self) -> bool:
        return self.rtol is not None or self.atol is not None
