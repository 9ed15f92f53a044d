"""What is running: a notebook (which one, if it can be told) or a script.

The notebook's path is found, in order, from ``REPROKIT_NOTEBOOK`` (set by reprokit's runner),
``JPY_SESSION_NAME`` (set by Jupyter Server for each kernel it starts), VS Code's
``__vsc_ipynb_file__`` and IPython's ``__session__`` in the user namespace. A script is
``sys.argv[0]``. None when nothing tells (e.g. nbclient without a path).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOTEBOOK_ENV = "REPROKIT_NOTEBOOK"


@dataclass(frozen=True)
class SourceInfo:
    path: str | None  # absolute path of the notebook or script, when known
    in_notebook: bool  # an IPython kernel (Jupyter, VS Code, papermill), not a terminal or script


def ipython_shell() -> Any:
    """The running IPython shell, or None (IPython is never imported to find out)."""
    module = sys.modules.get("IPython")
    return None if module is None else module.get_ipython()


def detect_source() -> SourceInfo:
    shell = ipython_shell()
    in_kernel = shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
    if shell is not None:
        return SourceInfo(_notebook_path(getattr(shell, "user_ns", {})), in_kernel)
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
    return SourceInfo(
        str(Path(script).resolve()) if script and Path(script).is_file() else None, False
    )


def _notebook_path(user_ns: dict[str, Any]) -> str | None:
    candidates = [os.environ.get(NOTEBOOK_ENV), os.environ.get("JPY_SESSION_NAME")]
    candidates += [user_ns.get("__vsc_ipynb_file__"), user_ns.get("__session__")]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.endswith((".ipynb", ".py", ".md")):
            path = Path(candidate)
            return str(path if path.is_absolute() else path.resolve())
    return None
