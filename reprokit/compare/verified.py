"""The skip cache: verdicts already reached, reused while nothing they depend on changed.

A REPRODUCED verification is remembered in ``<project root>/.reprokit/verified/<id>.json``
(one file per notebook and lock, written atomically), or in ``<output dir>/.verified/`` when
the verification's runs go to a folder given with ``--output-dir`` (a verification writes only
where its runs go: a reviewer's checkout stays untouched), under a **key**: one digest over

- ``reprokit``: this cache's format and reprokit's version;
- ``notebook``: the notebook's path and its source (one digest per cell, as the lock's);
- ``lock``: the lock file's bytes and the name, size and mtime of every file of its sidecar;
- ``data``: the current digest of every data path the lock names (the data check, which trusts
  the hash cache unless ``--rehash``);
- ``environment``: the kernel's interpreter (its distributions and their versions, Python
  version and implementation, executable), ``PYTHONPATH``, the environment variables a lock
  captures (``OMP_NUM_THREADS``, ``CUBLAS_WORKSPACE_CONFIG``, ``REPROKIT_ENV_ALLOW``'s...),
  the platform (OS, kernel release, machine, CPU model, logical cores) and the GPUs NVML sees
  (names, driver);
- ``execution``: the kernel's name, the device asked for and the device it resolves to, the
  parameters given, the time and memory limits;
- ``comparison``: ``--rtol``, ``--atol``, ``--outputs`` and the per-device tolerances.

The key is recomputed from the files every time and compared with the stored one: the stored
verdict is never believed for its own sake, so an entry edited by hand to claim a verdict for
changed inputs is simply not found. An unreadable or malformed file is ignored with a warning
(and replaced by the next REPRODUCED verdict); a verification with secret parameters is never
cached (their values could change the result, and no digest of them is written anywhere), nor
one given a ``-p`` that redaction changes (a secret-named one, or a list or mapping holding a
secret-named key: it reaches the kernel like a secret parameter).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reprokit._fsutil import atomic_write_text
from reprokit._serde import from_builtins, to_builtins
from reprokit._version import __version__
from reprokit._warn import warn_user
from reprokit.capturing.redact import sensitive_parameters
from reprokit.compare.verify import DataCheck, Verdict
from reprokit.exceptions import InputError
from reprokit.notebook.files import load_notebook
from reprokit.options import ComparisonOptions, ExecutionOptions
from reprokit.recording.lock import sidecar_for, source_cells
from reprokit.recording.target import find_project_root

__all__ = [
    "CACHE_FOLDER",
    "CACHE_VERSION",
    "VerifiedKey",
    "environment_digest",
    "forget_verified",
    "lookup_verified",
    "remember_verified",
    "verified_key",
]

CACHE_VERSION = 1
CACHE_FOLDER = Path(".reprokit") / "verified"
_MAX_ENTRY_BYTES = 32 * 1024 * 1024  # a cache file larger than this is not read


@dataclass(frozen=True)
class VerifiedKey:
    """Where a notebook's entry lives and the key its inputs give now."""

    entry: Path
    digest: str
    parts: dict[str, str]  # component -> its digest (stored, to say what changed)


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).hexdigest()


def verified_key(
    source: Path,
    lock_path: Path,
    data: DataCheck,
    environment: str,
    execution: tuple[ExecutionOptions, dict[str, Any], str, str],
    comparison: ComparisonOptions,
) -> VerifiedKey | None:
    """The key of verifying ``source`` against ``lock_path`` now (``None``: never cached).

    ``execution`` is the options, the parameters given, the kernel's name and the device the
    notebook would run on; ``environment`` is :func:`environment_digest` of that kernel."""
    options, parameters, kernel, device = execution
    # a -p that redaction changes (``api_token=…``, a mapping with a ``password``) is passed
    # like a secret parameter: its digest would be a digest of the secret
    if options.secret_parameters or sensitive_parameters(parameters) or not data.ok:
        return None
    parts = {
        "reprokit": _digest([CACHE_VERSION, __version__]),
        "notebook": _notebook_part(source),
        "lock": _lock_part(lock_path),
        "data": _digest([(e.path, e.algorithm, e.current_digest) for e in data.entries]),
        "environment": environment,
        "execution": _digest(_execution_part(options, parameters, kernel, device)),
        "comparison": _digest(_comparison_part(comparison)),
    }
    name = _digest([str(source.resolve()), str(lock_path.resolve())])
    return VerifiedKey(_folder(source, options) / f"{name}.json", _digest(parts), parts)


def _folder(source: Path, options: ExecutionOptions) -> Path:
    """``<project>/.reprokit/verified``, or ``<output dir>/.verified`` with ``--output-dir``."""
    if options.output_dir is not None:
        return Path(options.output_dir).resolve() / ".verified"
    return find_project_root(source.resolve().parent) / CACHE_FOLDER


def _notebook_part(source: Path) -> str:
    node = load_notebook(source)
    cells = [(c.cell_type, c.digest) for c in source_cells(node)]
    return _digest([str(source.resolve()), cells])


def _lock_part(lock_path: Path) -> str:
    sidecar = sidecar_for(lock_path)
    files = []
    if sidecar.is_dir():
        for path in sorted(sidecar.rglob("*")):
            st = path.lstat()
            files.append((path.relative_to(sidecar).as_posix(), st.st_size, st.st_mtime_ns))
    content = hashlib.blake2b(lock_path.read_bytes(), digest_size=20).hexdigest()
    return _digest([str(lock_path.resolve()), content, files])


def _execution_part(
    options: ExecutionOptions, parameters: dict[str, Any], kernel: str, device: str
) -> list[Any]:
    limits = [options.timeout, options.notebook_timeout, options.memory_limit]
    # the determinism settings and the rebuild mode change what the kernel runs with
    modes = [options.deterministic, options.rebuild_env]
    return [kernel, options.device, device, sorted(parameters.items()), limits, modes]


def _comparison_part(comparison: ComparisonOptions) -> list[Any]:
    per_device = sorted((k, to_builtins(v)) for k, v in comparison.device_tolerance.items())
    return [comparison.rtol, comparison.atol, comparison.outputs, per_device]


# ----------------------------------------------------------------------------- environment

_PROBE = r"""
import json, os, platform, sys
from importlib import metadata
dists = sorted({(d.metadata["Name"] or "", d.version) for d in metadata.distributions()})
print(json.dumps({"packages": dists, "python": [platform.python_version(),
    platform.python_implementation(), sys.executable, sys.prefix]}))
"""


@functools.cache
def _interpreter_facts(executable: str) -> str:
    """The distributions and Python of ``executable``: this process's own, read in process
    (milliseconds), or another interpreter's, asked once in a subprocess."""
    if Path(executable).resolve() == Path(sys.executable).resolve():
        from reprokit.capturing.pyenv import collect_packages, collect_python

        python = collect_python()
        facts = [
            sorted(collect_packages().items()),
            [python.version, python.implementation, python.executable, python.prefix],
        ]
        return _digest(facts)
    try:
        probe = subprocess.run(
            [executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown:" + os.urandom(8).hex()  # never equal: nothing is reused
    return _digest(probe.stdout)


def environment_digest(kernel: str, python: str | None = None) -> str:
    """The digest of what the ``kernel`` runs with (see the module docstring); ``python``: its
    interpreter when known (a rebuilt environment's), else read from the kernel's spec."""
    from reprokit.capturing.accelerator import collect_accelerator
    from reprokit.capturing.envvars import collect_environment
    from reprokit.capturing.system import collect_platform

    platform_info = collect_platform()
    accelerator = collect_accelerator()
    return _digest(
        [
            _interpreter_facts(python or _kernel_executable(kernel)),
            os.environ.get("PYTHONPATH", ""),
            # the kernel inherits them: thread counts, determinism switches (as the lock has them)
            sorted(collect_environment().items()),
            [platform_info.system, platform_info.release, platform_info.machine],
            [platform_info.os_name, platform_info.cpu_model, platform_info.logical_cores],
            [accelerator.driver_version, [to_builtins(d) for d in accelerator.devices]],
        ]
    )


# a kernel spec starting one of these runs this interpreter (jupyter_client's own rule)
_THIS_PYTHON = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info)}


@functools.cache
def _kernel_executable(kernel: str) -> str:
    """The program a kernel starts: ``sys.executable`` where the spec says ``python``, as
    jupyter_client's ``format_kernel_cmd`` decides (the native kernel's usual spec)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = KernelSpecManager().get_kernel_spec(kernel).argv
    except NoSuchKernel:
        return f"<no kernel {kernel}>"
    if not argv:
        return f"<kernel {kernel}>"
    return sys.executable if argv[0] in _THIS_PYTHON else str(argv[0])


# ----------------------------------------------------------------------------- the entries


def lookup_verified(key: VerifiedKey) -> Verdict | None:
    """The REPRODUCED verdict stored under ``key`` (its ``cached_at`` set), or ``None``."""
    entry = _read_entry(key.entry)
    if entry is None or entry.get("key") != key.digest:
        return None
    try:
        verdict = from_builtins(entry.get("verdict"), Verdict, source=str(key.entry))
        verified_at = entry.get("verified_at")
        if not isinstance(verified_at, str) or not verdict.reproduced or not verdict.data_ok:
            raise InputError(f"{key.entry}: not a reproduced verdict", path=str(key.entry))
    except InputError:
        warn_user(_ignored(key.entry, "not a verdict reprokit wrote"))
        return None
    return replace(verdict, cached_at=verified_at)


def _linked(path: Path) -> bool:
    """The entry or its folder is a symbolic link: the cache is the project's own files only."""
    return path.is_symlink() or path.parent.is_symlink()


def _read_entry(path: Path) -> dict[str, Any] | None:
    try:
        if _linked(path):
            raise ValueError("a symbolic link")
        if not path.is_file():
            return None
        if path.stat().st_size > _MAX_ENTRY_BYTES:
            raise ValueError("too large")
        entry = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        warn_user(_ignored(path, type(exc).__name__ if isinstance(exc, OSError) else str(exc)))
        return None
    if not isinstance(entry, dict) or entry.get("cache_version") != CACHE_VERSION:
        warn_user(_ignored(path, "not a skip-cache entry of this reprokit"))
        return None
    return entry


def _ignored(path: Path, why: str) -> str:
    short = why.splitlines()[0][:120] if why else "unreadable"
    return f"skip cache {path} ignored ({short}): the notebook is verified again"


def remember_verified(key: VerifiedKey, verdict: Verdict) -> None:
    """Store a REPRODUCED ``verdict`` under ``key``; a cache that cannot be written only warns."""
    entry = {
        "cache_version": CACHE_VERSION,
        "key": key.digest,
        "parts": key.parts,
        "verified_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "verdict": to_builtins(replace(verdict, cached_at=None)),
    }
    try:
        key.entry.parent.mkdir(parents=True, exist_ok=True)
        if _linked(key.entry):
            raise ValueError("a symbolic link")
        atomic_write_text(key.entry, json.dumps(entry, sort_keys=True, indent=1) + "\n")
    except (OSError, ValueError) as exc:
        warn_user(f"skip cache {key.entry} not written ({exc}): the next verify runs again")


def forget_verified(key: VerifiedKey) -> None:
    """Remove the entry of a notebook that did not reproduce now (same inputs, other verdict)."""
    try:
        key.entry.unlink(missing_ok=True)
    except OSError as exc:
        warn_user(f"skip cache {key.entry} not removed ({exc})")
