"""The lock file's data model: frozen dataclasses that round-trip JSON with ``reprokit._serde``.

A lock (``<notebook stem>.repro.json`` beside the notebook) is the reference a reviewer
verifies against. Paths inside it are relative and "/"-separated: the notebook and the data
relative to the project root, by-reference arrays relative to the lock's own folder (the
sidecar ``<stem>.repro/``), so a lock travels with its repository.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reprokit.capturing.model import DataManifest, Snapshot
from reprokit.results.model import Result

LOCK_SCHEMA_VERSION = 2
"""Version of the lock JSON schema; a lock with a larger number is refused. Version 2 added,
all optional: ``spreads``, ``volatile``, ``calibration`` and ``parameters.deterministic``
(``record --repeat``, ``calibrate``, ``--deterministic``), ``snapshot.distributions`` and the
wheel tags of ``snapshot.python``, and left the interpreter's paths out; a version 1 lock is
read as one without them."""

OUTPUT_TEXT_LIMIT = 16_384
"""A cell's masked text output up to this many characters is kept in the lock (for
``verify --outputs``: numbers compared within tolerance); a longer one keeps only its digest."""


@dataclass(frozen=True)
class CellSource:
    """One source cell (code or markdown) of the notebook and the digest of its text."""

    index: int  # position in the notebook (papermill's injected-parameters cell not counted)
    cell_type: str  # "code" | "markdown" | "raw"
    digest: str  # "blake3:<hex>" of cell_type and source


@dataclass(frozen=True)
class NotebookSource:
    path: str  # relative to the project root, "/"-separated
    digest: str  # "blake3:<hex>" over every cell's digest, in order (outputs not included)
    cells: tuple[CellSource, ...] = ()


@dataclass(frozen=True)
class LockParameters:
    seed: int | None = None
    device: str = "cpu"  # "cpu" | "cuda"
    values: dict[str, Any] = field(default_factory=dict)  # declared notebook parameters (JSON)
    deterministic: bool = False  # executed with the determinism settings (--deterministic)


@dataclass(frozen=True)
class DeviceTolerance:
    """Tolerance of one result when it is verified on another device than the reference's.

    CPU and CUDA kernels differ by design (reduction order, fused multiply-add, TF32), so a
    result that must be bit-identical on the same device may need slack across devices.
    """

    rtol: float | None = None
    atol: float | None = None


@dataclass(frozen=True)
class CellFingerprint:
    """Digest of a code cell's text output after masking what changes every run."""

    index: int  # cell position in the notebook (injected-parameters cell not counted)
    digest: str  # "blake3:<hex>" of mask_volatile(text output)
    text: str | None = None  # the masked text itself, when at most OUTPUT_TEXT_LIMIT long


@dataclass(frozen=True)
class ResultSpread:
    """How far a result moved between the repeated runs of ``record --repeat N``: the largest
    deviation of any run from the first (the one whose values the lock keeps)."""

    runs: int  # executions compared (N)
    max_abs_error: float | str = 0.0  # "inf"/"nan" when not finite
    max_rel_error: float | str = 0.0
    mismatched_fraction: float = 0.0  # largest fraction of elements that moved
    widened: bool = False  # the result's tolerance in this lock was widened to cover it
    factor: float | None = None  # the multiple of the spread the tolerance was widened to
    declared_rtol: float | None = None  # the tolerance the notebook declared, when widened
    declared_atol: float | None = None


@dataclass(frozen=True)
class VolatileCell:
    """A code cell whose text output changed between repeated runs, as a template:
    ``literals[0] span[0] literals[1] span[1] ... literals[-1]``. Each span is a kind of text
    (``number``, ``word``, ``text`` within a line) that is masked, not compared, by
    ``verify --outputs``; the literals must match as usual."""

    index: int  # cell position (injected-parameters cell not counted)
    literals: tuple[str, ...]  # one more than spans
    spans: tuple[str, ...]  # "number" | "word" | "text"
    runs: int = 2  # executions that showed it


@dataclass(frozen=True)
class DeviceCalibration:
    """Where the lock's ``device_tolerances`` came from, when ``reprokit calibrate`` measured
    them."""

    measured_at: str  # ISO 8601, UTC
    devices: tuple[str, ...]  # ("cpu", "cuda")
    gpu: str | None = None  # the GPU model measured on
    factor: float = 4.0  # device tolerance = factor x measured deviation (at least declared)
    reprokit_version: str = ""


@dataclass(frozen=True)
class Lock:
    schema_version: int
    reprokit_version: str
    created_at: str  # ISO 8601, UTC
    notebook: NotebookSource
    parameters: LockParameters
    results: dict[str, Result]
    snapshot: Snapshot | None = None
    data: DataManifest | None = None  # paths relative to the project root
    outputs: tuple[CellFingerprint, ...] = ()
    device_tolerances: dict[str, DeviceTolerance] = field(default_factory=dict)  # name -> tol
    run_id: str | None = None  # the reference MLflow run, when known
    spreads: dict[str, ResultSpread] = field(default_factory=dict)  # record --repeat N
    volatile: tuple[VolatileCell, ...] = ()  # cells whose output moved between runs
    calibration: DeviceCalibration | None = None  # device_tolerances measured by calibrate
