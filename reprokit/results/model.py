"""The data model of a declared result: what a comparison engine needs, and nothing else.

A :class:`Result` is self-contained: from it alone a later stage can decide whether two
executions agree (exact digest, or within the declared tolerance) and explain how they
differ (dtype/shape change, summary statistics, a sample of elements).

JSON encoding of values (``Result.value``, ``ArrayData.inline`` when it is a JSON list,
``ArraySample.values``):

- ``None``, ``bool``, ``int``, finite ``float`` and ``str`` are themselves;
- a non-finite float is the object ``{"$float": "NaN" | "Infinity" | "-Infinity"}`` (plain JSON
  has no such numbers, and Jupyter front ends reject the bare ``NaN`` token);
- lists are lists (tuples become lists); dicts are objects with ``str`` keys, a key that starts
  with ``$`` is written with one more ``$`` in front so it cannot be taken for a marker.

Array payloads (``ArrayData``) are either *inline* or *by reference*:

- up to :data:`INLINE_LIMIT_BYTES` the array travels inside the notebook: ``encoding="npy"`` is
  the ``.npy`` file (exact dtype, byte order, NaN and inf) in base64, ``encoding="json"`` a
  nested list (object/string arrays, which ``.npy`` could only hold as pickles);
- above it, the ``.npy``/``.json`` file is written into the run's local folder and ``file`` is
  its path relative to that folder (``arrays/<name>-<digest16>.npy``); ``location`` is the
  absolute folder at writing time, ``artifact`` the path inside the MLflow run. A seeded
  ``sample`` of elements and the ``stats`` still travel inline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RESULT_SCHEMA_VERSION = 2
"""Version of the Result JSON schema; bumped on incompatible change. 2: a pandas result keeps
each array's pandas dtype (``ArrayData.source_dtype``: ``Int64``, ``category([...])``) and the
names of its index and columns axis; a result of version 1 is compared without them."""

RESULT_MIME = "application/vnd.reprokit.result+json"
SNAPSHOT_MIME = "application/vnd.reprokit.snapshot+json"
RUN_ENDED_MIME = "application/vnd.reprokit.run-ended+json"
"""``%repro end``'s line: ``{"status", "results"}`` (nothing that changes between runs: nbval
compares it as it is); the run id and the store are in its ``text/plain`` only."""
RUN_STATUS_MIME = "application/vnd.reprokit.run-status+json"
"""Beside a :class:`~reprokit.recording.recorded_run.RunStatus` a cell's last line displays
(``reprokit.start()``, ``reprokit.end()``, ``reprokit.status()``): ``{"active", "status"}``.
It marks the output as reprokit's own, so that its ``text/plain`` (a run folder, a run id) is
not compared as the notebook's output."""
SNAPSHOT_SUMMARY_MIME = "application/vnd.reprokit.snapshot-summary+json"
"""Beside a snapshot whose data file lists were left out: what was left out
(:class:`~reprokit.capturing.summary.SnapshotSummary`)."""

INLINE_LIMIT_BYTES = 64 * 1024
"""Arrays whose payload is at most this many bytes are carried inside the notebook."""

SAMPLE_SIZE = 64
"""Elements kept in the seeded sample of an array stored by reference."""

SAMPLE_SEED = 0
"""Seed of the sample's index choice: the same shape gives the same indices everywhere."""

# kinds of Result
SCALAR_KINDS = ("none", "bool", "int", "float", "str")
KINDS = (*SCALAR_KINDS, "json", "array", "series", "dataframe", "plugin")
"""``plugin``: a value of a type a ``reprokit.comparators`` plugin handles; ``value`` is the
plugin's JSON payload (encoded like any value) and ``plugin`` the entry point's name."""


@dataclass(frozen=True)
class ArrayStats:
    """Summary statistics over the finite elements (None where no element is finite)."""

    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    nan_count: int
    posinf_count: int
    neginf_count: int


@dataclass(frozen=True)
class ArraySample:
    """Elements at seeded flat (C-order) indices, values JSON-encoded like ``Result.value``."""

    seed: int
    indices: tuple[int, ...]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class ArrayData:
    """One array: metadata always, elements inline or by reference (see the module docstring)."""

    dtype: str  # numpy dtype name: "float32", "int64", "bool", "<U5", "object", "datetime64[ns]"
    shape: tuple[int, ...]
    digest: str  # "ALGO:HEX" content digest of the stored array
    encoding: str  # "npy" | "json"
    inline: Any = None  # base64 .npy text, or the nested JSON list
    file: str | None = None  # relative to the run's local folder, when not inline
    location: str | None = None  # absolute local folder ``file`` was written into
    artifact: str | None = None  # path of the file inside the MLflow run's artifacts
    stats: ArrayStats | None = None  # numeric (non-complex) arrays only
    sample: ArraySample | None = None  # arrays stored by reference only
    # the dtype the value had: a tensor's when it had to change ("torch.bfloat16"); a pandas
    # column's, index's or Series' always ("int64", "Int64", "category(['a', 'b'])")
    source_dtype: str | None = None

    @property
    def size(self) -> int:
        count = 1
        for extent in self.shape:
            count *= extent
        return count


@dataclass(frozen=True)
class Column:
    """One column of a DataFrame result."""

    name: str
    data: ArrayData


@dataclass(frozen=True)
class Result:
    """A named outcome declared by a notebook, with the tolerance to compare it under."""

    name: str
    kind: str  # one of KINDS
    value: Any = None  # JSON-encoded value for the scalar kinds and "json"
    array: ArrayData | None = None  # "array" and "series" values
    index: ArrayData | None = None  # pandas index unless it is the default RangeIndex
    columns: tuple[Column, ...] = ()  # "dataframe"
    type_name: str = ""  # the Python type declared: "float", "numpy.float32", "torch.Tensor"
    dtype: str | None = None  # numpy scalar dtype for scalars that came from numpy/torch
    device: str | None = None  # torch tensor device ("cuda:0")
    rtol: float | None = None
    atol: float | None = None
    device_rtol: float | None = None  # tolerance when verified on another kind of device
    device_atol: float | None = None
    schema_version: int = RESULT_SCHEMA_VERSION
    plugin: str | None = None  # "plugin" kind: the comparator plugin that encoded the value
    index_names: tuple[str | None, ...] | None = None  # pandas: the index's level names
    columns_names: tuple[str | None, ...] | None = None  # a DataFrame's columns axis names

    @property
    def is_numeric_scalar(self) -> bool:
        """True when the value is a finite-or-not number that belongs in an MLflow metric."""
        return self.kind in ("bool", "int", "float")
