"""A virtual environment rebuilt from a lock, cached by the digest of what was installed,
with a private Jupyter kernel (``verify --rebuild-env``).

The cache lives in ``$REPROKIT_ENV_CACHE``, else ``$XDG_CACHE_HOME/reprokit/envs``, else
``~/.cache/reprokit/envs``; one folder per digest. The digest covers what decides the
environment's content: the Python minor and implementation, every pin as a requirement, the
installer, the torch index, the rebuild mode, and the running reprokit's own source (installed
into the environment so that the notebook's ``%load_ext reprokit`` works; the lock's own
reprokit pin is not installed, and the build says so).

A build happens in ``.building-<digest>-<pid>-<random>`` beside the final folder and is
renamed into place only when complete (the manifest ``reprokit-env.json`` written last): two
processes building the same digest each build, the first rename wins and the other discards
its copy; a killed build leaves a ``.building-*`` folder that is never reused and that
``env prune`` removes. The kernelspec is written inside the environment
(``share/jupyter/kernels/reprokit-<digest>``) and given to the runner as a folder: the user's
Jupyter configuration is never touched.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from reprokit._version import __version__
from reprokit.exceptions import EnvUnavailableError, InputError
from reprokit.recording.envspec import EnvSpec, Pin
from reprokit.runner import envresolve
from reprokit.runner.envresolve import Installer, Unavailable

__all__ = [
    "CACHE_ENV",
    "MANIFEST",
    "OWN_DISTRIBUTION",
    "BuiltEnv",
    "EnvBuildEvent",
    "EnvBuildHook",
    "cache_root",
    "env_digest",
    "prepare_env",
]

CACHE_ENV = "REPROKIT_ENV_CACHE"
MANIFEST = "reprokit-env.json"
OWN_DISTRIBUTION = "reprokit-nb"
KERNEL_REQUIREMENTS = ("ipykernel", "blake3", "msgspec", "threadpoolctl")
"""What the kernel needs besides the lock's pins: a Jupyter kernel, and what reprokit's
capture imports (installed without upgrading what the lock pinned)."""
_BUILD_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class BuiltEnv:
    """A rebuilt environment ready to run a notebook in."""

    path: str
    digest: str
    python: str  # the environment's interpreter
    kernel_dir: str  # a folder of kernelspecs holding only ``kernel_name``
    kernel_name: str
    reused: bool  # found in the cache
    installer: str  # "uv" | "pip"
    substituted: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (lock, got)
    dropped: tuple[str, ...] = ()  # pins left out: unavailable with nothing near, unpinnable
    notes: tuple[str, ...] = ()  # one line each: the python used, reprokit's own install
    installed: dict[str, str] = field(default_factory=dict)  # what the environment holds


def cache_root() -> Path:
    """Where rebuilt environments are kept (see the module docstring)."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reprokit" / "envs"


def env_digest(
    spec: EnvSpec, python_minor: str, installer: str, torch_device: str, mode: str
) -> str:
    """The digest naming an environment: everything that decides what is installed."""
    import blake3

    content = {
        "python": [spec.implementation, python_minor],
        "pins": [p.requirement for p in spec.pins],
        "installer": installer,
        "torch_device": torch_device,
        "mode": mode,
        "kernel": list(KERNEL_REQUIREMENTS),
        "reprokit": [__version__, _own_source_digest()],
    }
    text = json.dumps(content, sort_keys=True)
    return blake3.blake3(text.encode("utf-8")).hexdigest()[:32]


def _own_source() -> Path:
    return Path(__file__).resolve().parents[1]  # the reprokit package folder


def _own_source_digest() -> str:
    import blake3

    hasher = blake3.blake3()
    root = _own_source()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            hasher.update(path.relative_to(root).as_posix().encode() + b"\0")
            hasher.update(path.read_bytes())
    return hasher.hexdigest()[:16]


@dataclass(frozen=True)
class EnvBuildEvent:
    """An environment being built from the lock ``lock`` (never one taken from the cache):
    ``elapsed_s`` is None as the build starts, the seconds it took once it is done."""

    lock: str
    pins: int  # the pins to install (the lock's, less what this device leaves out)
    installer: str  # "uv" | "pip"
    elapsed_s: float | None = None


EnvBuildHook = Callable[[EnvBuildEvent], None]
"""``on_build(event)``: told as an environment build starts and once it is done (minutes may
pass between the two: pins are resolved, then installed)."""


def prepare_env(
    spec: EnvSpec,
    source: str,
    *,
    device: str,
    best_effort: bool = False,
    force: bool = False,
    on_build: EnvBuildHook | None = None,
) -> BuiltEnv:
    """The environment of ``spec`` (from the lock ``source``): from the cache, else built.

    Pins that cannot be had raise :class:`EnvUnavailableError` before anything is installed,
    unless ``best_effort`` (then the nearest version is installed and named). ``force``
    rebuilds even when the cache holds it. ``on_build`` is told when a build starts and ends."""
    spec, own = _without_own(spec)
    spec, device_notes = envresolve.for_device(spec, device)
    installer = envresolve.find_installer()
    python, python_note = _choose_python(spec, best_effort)
    minor = _minor_of(python)
    mode = "best-effort" if best_effort else "strict"
    torch_device = device if spec.pin("torch") else ""
    digest = env_digest(spec, minor, installer.name, torch_device, mode)
    final = cache_root() / digest
    if not force and (final / MANIFEST).is_file():
        return _touched(_read_manifest(final, reused=True))
    if python_note and not best_effort:
        raise EnvUnavailableError(source, (python_note,))
    event, started = EnvBuildEvent(source, len(spec.pins), installer.name), time.monotonic()
    if on_build is not None:  # resolving and installing take minutes: say so first
        on_build(event)
    index_args = envresolve.torch_index_args(spec, device, python, installer.name)
    spec, substituted, dropped = _resolved(spec, source, index_args, python, best_effort)
    notes = tuple(n for n in (python_note, *device_notes, _own_note(own)) if n)
    plan = _Build(spec, installer, python, index_args, digest, substituted, dropped, notes)
    built = _build(plan, final, force)
    if on_build is not None:
        on_build(replace(event, elapsed_s=time.monotonic() - started))
    return built


def _without_own(spec: EnvSpec) -> tuple[EnvSpec, Pin | None]:
    own = spec.pin(OWN_DISTRIBUTION)
    pins = tuple(p for p in spec.pins if p.name != OWN_DISTRIBUTION)
    unpinnable = tuple(p for p in spec.unpinnable if p.name != OWN_DISTRIBUTION)
    return replace(spec, pins=pins, unpinnable=unpinnable), own


def _own_note(own: Pin | None) -> str:
    installed = f"reprokit {__version__} installed from the running reprokit"
    if own is None:
        return f"{installed} (the lock pins none)"
    return f"{installed}, not the lock's {own.name} {own.version}"


def _choose_python(spec: EnvSpec, best_effort: bool) -> tuple[str, str | None]:
    """The interpreter to build with: this one when its minor is the lock's, else a
    ``python3.X`` on PATH; else this one and a note naming the difference."""
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if spec.python_minor == here:
        return sys.executable, None
    found = shutil.which(f"python{spec.python_minor}")
    if found:
        return found, None
    note = f"python {spec.python_version}: no Python {spec.python_minor} here (this one is {here})"
    return sys.executable, note + (", built with " + here if best_effort else "")


def _minor_of(python: str) -> str:
    if python == sys.executable:
        return f"{sys.version_info[0]}.{sys.version_info[1]}"
    done = envresolve.run_installer(
        [python, "-c", "import sys;print('%d.%d' % sys.version_info[:2])"]
    )
    return done.stdout.strip()


def _resolved(
    spec: EnvSpec, source: str, index_args: list[str], python: str, best_effort: bool
) -> tuple[EnvSpec, dict[str, tuple[str, str]], tuple[str, ...]]:
    """``spec`` with unavailable pins refused, or (best effort) replaced by the nearest."""
    index_pins = [p for p in spec.pins if p.origin is None]
    _, missing = envresolve.resolve_pins(spec, index_pins, index_args, python)
    if missing and not best_effort:
        raise EnvUnavailableError(source, tuple(_unavailable_line(u) for u in missing))
    substituted = {u.pin.name: (u.pin.version, u.nearest) for u in missing if u.nearest}
    dropped = tuple(u.pin.name for u in missing if not u.nearest)
    pins = tuple(_substitute(p, missing) for p in spec.pins if p.name not in dropped)
    dropped += tuple(p.name for p in spec.unpinnable)
    return replace(spec, pins=pins), substituted, dropped


def _unavailable_line(u: Unavailable) -> str:
    nearest = f"; nearest available: {u.nearest}" if u.nearest else "; no version available"
    return f"{u.pin.name} {u.reason}{nearest}"


def _substitute(pin: Pin, missing: list[Unavailable]) -> Pin:
    for u in missing:
        if u.pin.name == pin.name and u.nearest:
            return replace(pin, version=u.nearest)
    return pin


@dataclass(frozen=True)
class _Build:
    spec: EnvSpec
    installer: Installer
    python: str
    device_args: list[str]
    digest: str
    substituted: dict[str, tuple[str, str]]
    dropped: tuple[str, ...]
    notes: tuple[str, ...]


def _build(plan: _Build, final: Path, force: bool) -> BuiltEnv:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".building-{plan.digest}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        _make_env(plan, tmp, final)
        if force and final.exists():
            _retire(final)
        try:
            tmp.rename(final)
        except OSError:  # another process finished the same environment first: use its
            if not (final / MANIFEST).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return _read_manifest(final, reused=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _touched(_read_manifest(final, reused=False))


def _retire(final: Path) -> None:
    """Move an environment out of the way (a forced rebuild); removed once renamed."""
    old = final.with_name(f".retired-{final.name}-{secrets.token_hex(4)}")
    final.rename(old)
    shutil.rmtree(old, ignore_errors=True)


def _make_env(plan: _Build, tmp: Path, final: Path) -> None:
    _installer_run(plan, _venv_command(plan, tmp), tmp)
    python = str(_env_python(tmp))
    by_index = [p.requirement for p in plan.spec.pins if p.origin is None]
    direct = [p.install_argument for p in plan.spec.pins if p.origin is not None]
    install = [*_install_command(plan, python), *plan.device_args]
    if by_index:
        _installer_run(plan, [*install, "--no-deps", "--only-binary", ":all:", *by_index], tmp)
    if direct:  # a VCS or archive URL the lock names: built from source, as it was
        _installer_run(plan, [*install, "--no-deps", *direct], tmp)
    _installer_run(plan, [*install, "--only-binary", ":all:", *KERNEL_REQUIREMENTS], tmp)
    _install_own(tmp, python)
    _write_kernelspec(tmp, final, plan.digest)
    _write_manifest(tmp, plan, python)


def _venv_command(plan: _Build, tmp: Path) -> list[str]:
    if plan.installer.name == "uv":
        return [plan.installer.command[0], "venv", "--quiet", "--python", plan.python, str(tmp)]
    return [plan.python, "-m", "venv", "--without-pip", str(tmp)]


def _install_command(plan: _Build, python: str) -> list[str]:
    if plan.installer.name == "uv":
        return [*plan.installer.command, "install", "--quiet", "--python", python]
    return [*envresolve.pip_command(python), "install", "--quiet", "--disable-pip-version-check"]


def _installer_run(plan: _Build, command: list[str], tmp: Path) -> None:
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"{tmp.name}: {plan.installer.name} failed: {exc}") from None
    if done.returncode != 0:
        from reprokit.capturing.redact import redact_text

        last = redact_text((done.stderr.strip().splitlines() or ["no message"])[-1][:300])
        raise InputError(f"rebuilding the environment: {plan.installer.name} failed: {last}")


def _env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _site_packages(python: str) -> Path:
    code = "import sysconfig;print(sysconfig.get_paths()['purelib'])"
    done = envresolve.run_installer([python, "-c", code])
    return Path(done.stdout.strip())


def _install_own(env: Path, python: str) -> None:
    """The running reprokit, copied in (with a dist-info, so the kernel's capture lists it)."""
    site = _site_packages(python)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(_own_source(), site / "reprokit", ignore=ignore)
    meta = site / f"reprokit_nb-{__version__}.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {OWN_DISTRIBUTION}\nVersion: {__version__}\n"
    )
    (meta / "INSTALLER").write_text("reprokit\n")
    (meta / "RECORD").write_text("")


def _write_kernelspec(tmp: Path, final: Path, digest: str) -> None:
    name = f"reprokit-{digest[:12]}"
    folder = tmp / "share" / "jupyter" / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [str(_env_python(final)), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"reprokit rebuilt environment {digest[:12]}",
        "language": "python",
        "metadata": {"reprokit": {"digest": digest}},
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))


def _write_manifest(tmp: Path, plan: _Build, python: str) -> None:
    code = (
        "import json,importlib.metadata as m;"
        "print(json.dumps({d.metadata['Name']:d.version for d in m.distributions()}))"
    )
    done = envresolve.run_installer([python, "-c", code])
    installed = json.loads(done.stdout or "{}")
    manifest = {
        "digest": plan.digest,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "installer": plan.installer.name,
        "pins": [p.requirement for p in plan.spec.pins],
        "substituted": {k: list(v) for k, v in plan.substituted.items()},
        "dropped": list(plan.dropped),
        "notes": list(plan.notes),
        "installed": {_norm(k): v for k, v in sorted(installed.items())},
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _norm(name: str) -> str:
    from reprokit.capturing.pyenv import normalize_name

    return normalize_name(name)


def _read_manifest(env: Path, *, reused: bool) -> BuiltEnv:
    data = json.loads((env / MANIFEST).read_text(encoding="utf-8"))
    digest = str(data["digest"])
    return BuiltEnv(
        path=str(env),
        digest=digest,
        python=str(_env_python(env)),
        kernel_dir=str(env / "share" / "jupyter" / "kernels"),
        kernel_name=f"reprokit-{digest[:12]}",
        reused=reused,
        installer=str(data.get("installer", "pip")),
        substituted={k: (v[0], v[1]) for k, v in data.get("substituted", {}).items()},
        dropped=tuple(data.get("dropped", ())),
        notes=tuple(data.get("notes", ())),
        installed=dict(data.get("installed", {})),
    )


def _touched(env: BuiltEnv) -> BuiltEnv:
    """Mark the environment used now (``env prune --older-than`` goes by it)."""
    marker = Path(env.path) / "last-used"
    marker.touch()
    os.utime(marker)
    return env
