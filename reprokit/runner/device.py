"""Which device a notebook runs on, and what that means for its kernel's environment.

``cpu`` hides every GPU from the kernel (``CUDA_VISIBLE_DEVICES=""``); ``cuda`` requires a
visible CUDA device (asked of NVML through the capture stage: no torch import, no subprocess);
``auto`` is ``cuda`` where one is visible, else ``cpu``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from reprokit.capturing.accelerator import cuda_visible
from reprokit.exceptions import UsageError

DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class DeviceChoice:
    """The device a kernel gets and the environment variables that give it."""

    requested: str
    device: str  # "cpu" | "cuda"
    env: dict[str, str] = field(default_factory=dict)


def resolve_device(requested: str, *, probe: Callable[[], bool] = cuda_visible) -> DeviceChoice:
    """Turn ``cpu|cuda|auto`` into a :class:`DeviceChoice`.

    Raises :class:`~reprokit.exceptions.UsageError` for another value, or for ``cuda`` where
    no CUDA device is visible.
    """
    name = requested.strip().lower()
    if name not in DEVICES:
        raise UsageError(
            f"--device {requested!r}: expected one of {', '.join(DEVICES)}",
            option="--device",
            value=requested,
        )
    if name == "cpu":
        return DeviceChoice(name, "cpu", {"CUDA_VISIBLE_DEVICES": ""})
    available = probe()
    if name == "cuda" and not available:
        raise UsageError(
            "--device cuda: no CUDA device is visible on this machine (NVML found none, or "
            "CUDA_VISIBLE_DEVICES hides them); use --device cpu or --device auto",
            option="--device",
            value=requested,
        )
    if available:
        return DeviceChoice(name, "cuda", {})
    return DeviceChoice(name, "cpu", {"CUDA_VISIBLE_DEVICES": ""})
