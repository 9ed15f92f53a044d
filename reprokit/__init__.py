"""reprokit: make a notebook's results checkable."""

from reprokit._version import __version__

__all__ = ["__version__"]
