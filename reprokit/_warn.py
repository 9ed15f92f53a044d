"""Warnings that point at the user's line, not at reprokit's own."""

from __future__ import annotations

import sys
import warnings
from types import FrameType

from reprokit.exceptions import ReprokitWarning


def warn_user(message: str, category: type[Warning] = ReprokitWarning) -> None:
    """Warn with the location of the first calling frame outside the ``reprokit`` package."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("reprokit."):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
