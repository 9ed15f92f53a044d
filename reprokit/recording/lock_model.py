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
"""Version of the lock JSON schema; a lock with a larger number is refused. Schema 2 added
(optionally) ``snapshot.distributions`` and the wheel tags of ``snapshot.python``, and left
the interpreter's paths out; a schema 1 lock reads as one without them."""

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
