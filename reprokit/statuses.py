"""How an execution ended: the one status vocabulary that the runner produces and the record
stage maps onto MLflow's run statuses (``ok`` → FINISHED, ``interrupted`` → KILLED, the rest
→ FAILED)."""

from __future__ import annotations

from typing import Literal

__all__ = ["ExecutionStatus"]

ExecutionStatus = Literal["ok", "failed", "timeout", "kernel_died", "interrupted"]
"""How one execution ended (``interrupted`` also for a notebook the runner never started)."""
