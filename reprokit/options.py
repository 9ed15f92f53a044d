"""Options as values: one frozen object per concern, passed from the front ends to the API.

- :class:`ExecutionOptions` — how notebooks execute: device, kernel, time limits, memory limit,
  parallel jobs, output folder and secret parameters (``run``, ``record``, ``verify``);
- :class:`ComparisonOptions` — how results are compared: tolerances, cell outputs, data drift
  (``verify``, ``diff``);
- :class:`RepeatOptions` — how many times a notebook runs to measure its noise, and what to do
  with what was measured (``record --repeat``, ``verify --repeat``, ``calibrate``).

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

__all__ = [
    "WIDEN_FACTOR",
    "BundleOptions",
    "ComparisonOptions",
    "ExecutionOptions",
    "Executor",
    "RebuildMode",
    "RepeatOptions",
]

RebuildMode = Literal["off", "strict", "best-effort"]
"""``verify --rebuild-env``: off; ``strict`` (refuse a lock with unavailable pins, exit 2);
``best-effort`` (install the nearest available versions and say which)."""

Executor = Literal["local", "dask"]
"""Where notebooks execute: ``local`` (kernels of this machine) or ``dask`` (a Dask cluster)."""

_SCHEDULER = re.compile(r"^(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


@dataclass(frozen=True)
class ExecutionOptions:
    """How each notebook is executed.

    ``device``: ``cpu`` (GPUs hidden from the kernel), ``cuda`` (refused where no GPU is
    visible) or ``auto``. ``kernel``: the Jupyter kernel (default: the notebook's).
    ``timeout``: seconds each cell may run; ``notebook_timeout``: seconds the whole notebook may
    run; ``start_timeout``: seconds a kernel may take to start and answer (a kernel silent that
    long is started anew, at most twice); ``memory_limit``: bytes each kernel may allocate.
    ``jobs``: notebooks at once.
    ``output_dir``: where executed notebooks go (default ``<project>/.reprokit/runs/<time>``).
    ``secret_parameters``: name -> value, given to the kernel but never written anywhere (kept
    out of this object's ``repr``). ``deterministic``: the kernel starts with the determinism
    settings (``CUBLAS_WORKSPACE_CONFIG``, ``TF_DETERMINISTIC_OPS``, ...; see
    :data:`reprokit.runner.plan.DETERMINISTIC_ENV`) in its environment. ``rebuild_env``: run
    in a virtual environment rebuilt from the lock (:data:`RebuildMode`), ``rebuild_force``:
    rebuild it even when cached.
    ``kernel_dir``: a folder of private kernelspecs where ``kernel`` is looked up (set by
    ``verify`` to the rebuilt environment's; the user's Jupyter configuration is not used).
    ``hash_seed``: the kernels' ``PYTHONHASHSEED`` (None: the notebook's ``seed``, see
    :func:`reprokit.runner.plan.kernel_env`; ``verify`` gives the one its lock recorded).
    ``executor``: where notebooks execute, ``local`` (a pool of
    ``jobs`` kernels here) or ``dask`` (a Dask cluster: an embedded ``LocalCluster`` of ``jobs``
    workers, or the existing one whose ``scheduler`` is given as ``tcp://HOST:PORT``).
    """

    device: str = "auto"
    kernel: str | None = None
    timeout: float | None = None
    notebook_timeout: float | None = None
    start_timeout: float = 60.0
    memory_limit: int | None = None
    jobs: int = 1
    output_dir: str | os.PathLike[str] | None = None
    secret_parameters: Mapping[str, str] = field(default_factory=dict, repr=False)
    deterministic: bool = False
    rebuild_env: RebuildMode = "off"
    rebuild_force: bool = False
    kernel_dir: str | None = None
    executor: Executor = "local"
    scheduler: str | None = None
    hash_seed: str | None = None

    def __post_init__(self) -> None:
        _check_executor(self.executor, self.scheduler)
        if self.jobs < 1:
            raise UsageError(
                f"--jobs must be at least 1, got {self.jobs}", option="--jobs", value=str(self.jobs)
            )
        for option, value in (
            ("--timeout", self.timeout),
            ("--notebook-timeout", self.notebook_timeout),
            ("--start-timeout", self.start_timeout),
            ("--memory-limit", self.memory_limit),
        ):
            if value is not None and not 0 < value < math.inf:
                raise UsageError(
                    f"{option} must be a positive number (and finite), got {value}",
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
    through a shared ``mmap``). ``force``: execute every notebook, also one whose inputs are
    unchanged since its last REPRODUCED verdict (which is otherwise reused from the skip cache,
    ``.reprokit/verified/``).
    """

    rtol: float | None = None
    atol: float | None = None
    outputs: bool = False
    allow_data_drift: bool = False
    device_tolerance: Mapping[str, Tolerance] = field(default_factory=dict)
    rehash: bool = False
    force: bool = False

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


WIDEN_FACTOR = 4.0
"""``record --repeat N --widen-tolerances``: a result's tolerance becomes
``max(declared, WIDEN_FACTOR x measured spread)``, and so does a device tolerance measured by
``calibrate``. Four times the largest deviation seen leaves room for runs the N did not see."""


@dataclass(frozen=True)
class RepeatOptions:
    """How often each notebook runs to measure its noise (run-to-run spread).

    ``runs``: executions of each notebook (1: no measurement; at least 2 to measure).
    ``widen_tolerances``: a result whose spread exceeds its declared tolerance gets the
    tolerance ``max(declared, factor x spread)`` in the lock instead of failing ``record``.
    ``factor``: that multiple of the spread (:data:`WIDEN_FACTOR`).
    """

    runs: int = 1
    widen_tolerances: bool = False
    factor: float = WIDEN_FACTOR

    def __post_init__(self) -> None:
        if isinstance(self.runs, bool) or not isinstance(self.runs, int) or self.runs < 1:
            raise UsageError(
                f"--repeat must be a whole number >= 1 (2 or more measure the noise), "
                f"got {self.runs}",
                option="--repeat",
                value=str(self.runs),
            )
        if self.widen_tolerances and self.runs < 2:
            raise UsageError(
                "--widen-tolerances widens to the spread measured by --repeat N: give N >= 2",
                option="--widen-tolerances",
            )
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise UsageError(f"the widening factor must be >= 1, got {self.factor}")

    @property
    def measures(self) -> bool:
        """True when the notebook runs more than once (its spread is measured)."""
        return self.runs > 1


@dataclass(frozen=True)
class BundleOptions:
    """What ``reprokit bundle`` packs besides the notebooks, locks and reports.

    ``data``: ``auto`` packs the locks' data when it is at most ``data_limit`` bytes in all
    (default 50 MB), ``always`` packs it whatever its size, ``never`` leaves it out (the
    manifest still lists it). ``pylock``: also export ``pylock.toml``, which asks the package
    index for each pin's file. ``title``, ``authors`` and ``license`` (an SPDX identifier): for
    ``CITATION.cff`` and the RO-Crate metadata (never guessed: the stub asks for them).
    """

    data: str = "auto"
    data_limit: int = 50 * 1000 * 1000
    pylock: bool = False
    title: str | None = None
    authors: tuple[str, ...] = ()
    license: str | None = None

    def __post_init__(self) -> None:
        if self.license is not None and not re.fullmatch(r"[A-Za-z0-9.+-]+", self.license):
            raise UsageError(
                f"--license takes an SPDX identifier (MIT, CC-BY-4.0), got {self.license!r}",
                option="--license",
            )
        if self.data not in ("auto", "always", "never"):
            raise UsageError(f"data must be auto, always or never, got {self.data!r}")
        if self.data_limit < 0:
            raise UsageError(
                f"--data-limit must be at least 0, got {self.data_limit}", option="--data-limit"
            )
