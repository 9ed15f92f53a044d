"""Seed every random number generator a notebook is likely to use, and say what was set.

:func:`seed_everything` seeds ``random``, NumPy's global generator (importing numpy if
needed: ~0.1 s) and torch.  Torch is handled so that the result does not depend on
*when* the notebook imports it:

- already imported: ``torch.manual_seed`` now (it seeds the CPU and every CUDA device,
  lazily for devices not yet initialised; ``torch.cuda.manual_seed_all`` is called as
  well when CUDA is initialised);
- installed but not imported: a one-shot import hook (a ``sys.meta_path`` finder that
  wraps torch's loader) seeds it, and applies the determinism switches, right after
  ``import torch`` finishes.  So ``seed_everything(0); import torch; torch.rand(1)``
  equals ``torch.manual_seed(0); torch.rand(1)``, without paying for the import up front:
  importing torch costs about 1.2 s warm (2.8 s cold) on the development machine, the hook
  about 4 ms (``importlib.util.find_spec``).  A later call replaces a pending hook;
  ``"torch"`` is listed in ``seeded`` with a note saying it happens at import;
- not installed: noted, nothing else.

``deterministic=True`` also calls ``torch.use_deterministic_algorithms(True)``, sets
``torch.backends.cudnn.deterministic = True`` and ``benchmark = False``, and sets the
variables of :data:`DETERMINISTIC_ENV` that are unset (``CUBLAS_WORKSPACE_CONFIG=:4096:8``:
cuBLAS needs it for deterministic results and reads it when CUDA initialises; TensorFlow's
``TF_DETERMINISTIC_OPS``/``TF_CUDNN_DETERMINISTIC``).  When CUDA is already initialised, a
one-line warning names the variables that can no longer take effect (the runner's
``--deterministic`` puts them in the kernel's environment before it starts instead).  A kernel
started with ``REPROKIT_DETERMINISTIC=1`` (the runner's ``--deterministic``) is deterministic
whatever ``deterministic`` says.  Nothing is switched back off with ``deterministic=False``:
only what is listed in ``settings`` was touched.

``PYTHONHASHSEED`` only takes effect when the interpreter starts; a
:class:`~reprokit.exceptions.ReprokitWarning` says so when it is unset or ``random`` (string
hashing then varies between runs; any fixed value is deterministic, whether or not it is the
seed), and the record keeps its current value.
"""

from __future__ import annotations

import operator
import os
import random
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec
from types import ModuleType

from reprokit._warn import warn_user
from reprokit.capturing.model import SeedRecord
from reprokit.exceptions import ReprokitWarning, UsageError

CUBLAS_WORKSPACE = ":4096:8"
DETERMINISTIC_ENV = {
    "CUBLAS_WORKSPACE_CONFIG": CUBLAS_WORKSPACE,
    "TF_DETERMINISTIC_OPS": "1",
    "TF_CUDNN_DETERMINISTIC": "1",
    "REPROKIT_DETERMINISTIC": "1",
}
"""Variables of deterministic mode that CUDA libraries read when they initialise; the runner's
``--deterministic`` starts kernels with them, ``%repro start --deterministic`` sets them when
CUDA has not started yet. ``REPROKIT_DETERMINISTIC`` makes the kernel's ``seed_everything``
deterministic."""
_MAX_SEED = 2**32  # numpy.random.seed's limit


def deterministic_requested(deterministic: bool = False) -> bool:
    """``deterministic``, or a kernel started by the runner's ``--deterministic``."""
    return deterministic or os.environ.get("REPROKIT_DETERMINISTIC") == "1"


def seed_everything(seed: int, deterministic: bool = False) -> SeedRecord:
    """Seed random, numpy and torch with ``seed``; optionally make torch deterministic."""
    seed = _validated_seed(seed)
    if not isinstance(deterministic, bool):
        raise UsageError(
            f"deterministic must be True or False, got {deterministic!r}", option="deterministic"
        )
    deterministic = deterministic_requested(deterministic)
    done = _Done()
    random.seed(seed)
    done.seeded.append("random")
    _seed_numpy(seed, done)
    if deterministic:
        _set_deterministic_env(done)
    _seed_torch_now_or_at_import(seed, deterministic, done)
    return SeedRecord(
        seed=seed,
        deterministic=deterministic,
        seeded=tuple(done.seeded),
        settings=done.settings,
        pythonhashseed=_check_pythonhashseed(seed),
        notes=tuple(done.notes),
    )


@dataclass
class _Done:
    seeded: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _validated_seed(seed: object) -> int:
    if isinstance(seed, bool) or not hasattr(type(seed), "__index__"):
        raise UsageError(f"seed must be an integer, got {type(seed).__name__}", option="seed")
    value = operator.index(seed)  # type: ignore[arg-type]
    if not 0 <= value < _MAX_SEED:
        raise UsageError(
            f"seed must be between 0 and 2**32 - 1 (numpy's limit), got {value}", option="seed"
        )
    return value


def _seed_numpy(seed: int, done: _Done) -> None:
    try:
        import numpy
    except ImportError:
        done.notes.append("numpy not installed")
        return
    numpy.random.seed(seed)
    done.seeded.append("numpy")


def _set_deterministic_env(done: _Done) -> None:
    """Set the unset variables of :data:`DETERMINISTIC_ENV`; once CUDA runs, a warning names
    those that come too late."""
    torch = sys.modules.get("torch")
    late = torch is not None and _cuda_initialized(torch)
    missed = []
    for name, value in DETERMINISTIC_ENV.items():
        current = os.environ.get(name)
        if current:
            done.notes.append(f"{name} already set to {current!r}, kept")
            continue
        if name == "REPROKIT_DETERMINISTIC":
            continue  # the runner's message to the kernel, not a setting of the live notebook
        if late:
            missed.append(f"{name}={value}")
            continue
        os.environ[name] = value
        done.settings[name] = value
    if missed:
        warn_user(
            f"CUDA is already initialised in this kernel: {', '.join(missed)} cannot take "
            "effect now; restart the kernel and run %repro start --deterministic first, or "
            "run it with reprokit run/record --deterministic"
        )


def _seed_torch_now_or_at_import(seed: int, deterministic: bool, done: _Done) -> None:
    _uninstall_hook()
    torch = sys.modules.get("torch")
    if torch is not None:
        _seed_torch(torch, seed, deterministic, done)
        return
    import importlib.util

    try:
        installed = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        done.notes.append("torch not installed")
        return
    sys.meta_path.insert(0, _SeedTorchOnImport(seed, deterministic))
    done.seeded.append("torch")
    done.settings.update(_deterministic_settings() if deterministic else {})
    switched = ", determinism switches included," if deterministic else ""
    done.notes.append(f"torch not imported yet: seeded{switched} as soon as it is imported")


def _seed_torch(torch: ModuleType, seed: int, deterministic: bool, done: _Done) -> None:
    torch.manual_seed(seed)
    done.seeded.append("torch")
    if _cuda_initialized(torch):
        torch.cuda.manual_seed_all(seed)
        done.seeded.append("torch.cuda")
    if deterministic:
        _switch_torch(torch, done)


def _switch_torch(torch: ModuleType, done: _Done) -> None:
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    done.settings.update(_deterministic_settings())


def make_deterministic() -> dict[str, str]:
    """Deterministic mode without seeding (``%repro start --deterministic`` without
    ``--seed``): the variables of :data:`DETERMINISTIC_ENV` while CUDA has not started (else
    the one-line warning), torch's switches when torch is imported. Returns what was set."""
    done = _Done()
    _set_deterministic_env(done)
    torch = sys.modules.get("torch")
    if torch is not None:
        _switch_torch(torch, done)
    return done.settings


def _deterministic_settings() -> dict[str, str]:
    return {
        "torch.use_deterministic_algorithms": "True",
        "torch.backends.cudnn.deterministic": "True",
        "torch.backends.cudnn.benchmark": "False",
    }


def _cuda_initialized(torch: ModuleType) -> bool:
    try:
        return bool(torch.cuda.is_initialized())
    except (AttributeError, RuntimeError):
        return False


def _check_pythonhashseed(seed: int) -> str | None:
    """The current ``PYTHONHASHSEED``; a warning when string hashing varies between runs
    (unset or ``random``). A fixed value, whichever, is deterministic: no warning, even when
    it is not ``seed`` (the runner starts kernels with the notebook's ``seed`` parameter or 0,
    and the user cannot change that from inside the notebook)."""
    current = _starting_hashseed()
    if current is not None and current != "random":
        return current
    state = "unset" if current is None else "'random'"
    warn_user(
        f"PYTHONHASHSEED is {state}, so str/bytes hashes (and the iteration order of sets of "
        "strings) change from one Python process to the next; it only takes effect when Python "
        f"starts, so seed_everything cannot set it: start the kernel with PYTHONHASHSEED={seed}"
    )
    return current


def _starting_hashseed() -> str | None:
    """``PYTHONHASHSEED`` as this interpreter started with it, the one that took effect: a
    notebook that sets ``os.environ["PYTHONHASHSEED"]`` later changes the variable, not the
    hashing (a runner's kernel always starts with one). Linux keeps the starting environment
    in ``/proc/self/environ``; where it cannot be read, or holds none, the variable as it is
    now."""
    try:
        with open("/proc/self/environ", "rb") as handle:
            starting = handle.read()
    except OSError:
        starting = b""
    for item in starting.split(b"\0"):
        if item.startswith(b"PYTHONHASHSEED="):
            return item.partition(b"=")[2].decode("utf-8", "replace")
    return os.environ.get("PYTHONHASHSEED")


class _SeedTorchOnImport:
    """A one-shot ``sys.meta_path`` finder: seeds torch as soon as ``import torch`` is done."""

    def __init__(self, seed: int, deterministic: bool) -> None:
        self.seed = seed
        self.deterministic = deterministic

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "torch":
            return None
        spec = _spec_from_other_finders(self, fullname, path, target)
        loader = spec.loader if spec is not None else None
        exec_module: Callable[[ModuleType], None] | None = getattr(loader, "exec_module", None)
        if loader is None or exec_module is None:
            return spec

        def exec_then_seed(module: ModuleType) -> None:
            exec_module(module)
            self._fire(module)

        # The loader instance serves torch/__init__.py only, so patching it is local.
        loader.exec_module = exec_then_seed  # type: ignore[method-assign]
        return spec

    def _fire(self, torch: ModuleType) -> None:
        if self not in sys.meta_path:
            return  # replaced by a later seed_everything call, or already fired
        _uninstall_hook()
        try:
            _seed_torch(torch, self.seed, self.deterministic, _Done())
        except Exception as exc:  # never let seeding break the user's `import torch`
            warnings.warn(f"reprokit could not seed torch: {exc}", ReprokitWarning, stacklevel=2)


def _spec_from_other_finders(
    hook: object, fullname: str, path: Sequence[str] | None, target: ModuleType | None
) -> ModuleSpec | None:
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if finder is hook or find_spec is None:
            continue
        spec: ModuleSpec | None = find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


def _uninstall_hook() -> None:
    """Drop a pending seed-at-import hook (a new seed replaces it; tests clean up with it)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _SeedTorchOnImport)]
