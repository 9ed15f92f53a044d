"""Results: the outcomes a notebook declares, as a stage-neutral data model.

Used by the record stage (MLflow metrics and artifacts), the notebook itself (``display_data``
outputs) and, later, the runner and the comparison engine. Importing this package imports
neither numpy nor MLflow.
"""

from __future__ import annotations

from reprokit.exceptions import ResultValueError
from reprokit.results.arrays import load_array
from reprokit.results.encode import decode_result, encode_result
from reprokit.results.model import (
    INLINE_LIMIT_BYTES,
    RESULT_MIME,
    RESULT_SCHEMA_VERSION,
    SNAPSHOT_MIME,
    ArrayData,
    ArraySample,
    ArrayStats,
    Column,
    Result,
)
from reprokit.results.notebook import NotebookResults, ResultOutput, read_notebook

__all__ = [
    "INLINE_LIMIT_BYTES",
    "RESULT_MIME",
    "RESULT_SCHEMA_VERSION",
    "SNAPSHOT_MIME",
    "ArrayData",
    "ArraySample",
    "ArrayStats",
    "Column",
    "NotebookResults",
    "Result",
    "ResultOutput",
    "ResultValueError",
    "decode_result",
    "encode_result",
    "load_array",
    "read_notebook",
]
