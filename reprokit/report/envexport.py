"""A lock's environment as the files other tools install from: ``requirements.txt``,
``pylock.toml`` (PEP 751) and conda's ``environment.yml``.

Each starts with comments saying where it came from and which distributions could not be
pinned for reuse (a local directory or archive: the editable install of the project itself,
a wheel built on the author's machine); those are not in the file's requirements.

``pylock.toml`` needs, for a distribution from an index, the wheel or sdist to install and
its hash: the lock does not hold them, so they are what a resolution for this platform found
(:class:`Artifact`, from ``pip install --dry-run --report``); a distribution from a VCS or an
archive URL is written from the lock alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from reprokit.capturing.model import PackageOrigin
from reprokit.recording.envspec import EnvSpec, Pin

__all__ = ["EXPORT_FORMATS", "Artifact", "export_text", "unpinnable_lines"]

EXPORT_FORMATS = ("requirements", "pylock", "conda")
"""The formats of ``reprokit env export --format``."""


@dataclass(frozen=True)
class Artifact:
    """The file an installer would take for an index pin: a wheel or an sdist."""

    url: str
    sha256: str | None = None


def unpinnable_lines(spec: EnvSpec) -> list[str]:
    """One line per distribution the export leaves out: ``name version (why)``."""
    return [f"{p.name} {p.version} ({_origin_words(p.origin)})" for p in spec.unpinnable]


def export_text(
    spec: EnvSpec,
    fmt: str,
    *,
    source: str,
    artifacts: Mapping[str, Artifact] | None = None,
    env_name: str = "reprokit-env",
) -> str:
    """The text of ``spec`` in format ``fmt`` (one of :data:`EXPORT_FORMATS`)."""
    header = _header(spec, source)
    if fmt == "requirements":
        return _lines(header + [p.requirement for p in spec.pins])
    if fmt == "conda":
        return _lines(header + _conda(spec, env_name))
    return _lines(header + _pylock(spec, artifacts or {}))


def _header(spec: EnvSpec, source: str) -> list[str]:
    which = "imported by the notebook, with their dependencies" if spec.only_imported else "all"
    tags = " ".join(t for t in (spec.interpreter_tag, spec.platform_tag) if t)
    lines = [
        f"# exported by reprokit from {_comment(source)}: {which} ({len(spec.pins)} pins)",
        f"# recorded with {spec.implementation} {spec.python_version}"
        + (f", {tags}" if tags else ""),
    ]
    if spec.unpinnable:
        lines.append("# not pinnable for reuse (installed from a local path), left out:")
        lines += [f"#   {_comment(line)}" for line in unpinnable_lines(spec)]
    return lines


def _origin_words(origin: PackageOrigin | None) -> str:
    if origin is None:
        return "index"
    kind = "local directory" if origin.kind == "directory" else f"local {origin.kind}"
    name = f" {origin.local_name}" if origin.local_name else ""
    return kind + name + (", editable" if origin.editable else "")


def _comment(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", "?", text)


def _lines(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _conda(spec: EnvSpec, env_name: str) -> list[str]:
    lines = [
        f"name: {_yaml(re.sub(r'[^A-Za-z0-9_.-]+', '-', env_name) or 'reprokit-env')}",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={spec.python_version}",
        "  - pip",
    ]
    if spec.pins:
        lines += ["  - pip:", *(f"      - {_yaml(p.requirement)}" for p in spec.pins)]
    return lines


def _yaml(text: str) -> str:
    """A YAML scalar: plain when it is safely so, else double-quoted (JSON is valid YAML)."""
    return text if re.fullmatch(r"[A-Za-z0-9_.=<>!~-]+", text) else json.dumps(text)


def _toml(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a TOML basic string uses JSON's escapes


def _pylock(spec: EnvSpec, artifacts: Mapping[str, Artifact]) -> list[str]:
    lines = [
        'lock-version = "1.0"',
        f'requires-python = "=={spec.python_minor}.*"',
        'created-by = "reprokit"',
    ]
    for pin in spec.pins:
        lines += ["", "[[packages]]", f"name = {_toml(pin.name)}"]
        lines += _pylock_source(pin, artifacts.get(pin.name))
    return lines


def _pylock_source(pin: Pin, artifact: Artifact | None) -> list[str]:
    origin = pin.origin
    if origin is None or origin.url is None:
        return [f"version = {_toml(pin.version)}", *_pylock_artifact(pin, artifact)]
    if origin.kind == "vcs":
        table = [f"type = {_toml(origin.vcs or 'git')}", f"url = {_toml(origin.url)}"]
        table += [f"commit-id = {_toml(origin.commit or '')}"]
        if origin.requested_revision:
            table += [f"requested-revision = {_toml(origin.requested_revision)}"]
        return ["[packages.vcs]", *table, *_subdirectory(origin)]
    algorithm, _, digest = (origin.archive_hash or "").partition("=")
    hashes = f"{{ {algorithm} = {_toml(digest)} }}" if digest else "{}"
    return ["[packages.archive]", f"url = {_toml(origin.url)}", f"hashes = {hashes}"]


def _subdirectory(origin: PackageOrigin) -> list[str]:
    return [f"subdirectory = {_toml(origin.subdirectory)}"] if origin.subdirectory else []


def _pylock_artifact(pin: Pin, artifact: Artifact | None) -> list[str]:
    if artifact is None:
        return ["# no file found for this platform: resolve with `pip install --dry-run`"]
    file_name = artifact.url.rstrip("/").rsplit("/", 1)[-1].split("#", 1)[0]
    table = "[[packages.wheels]]" if file_name.endswith(".whl") else "[packages.sdist]"
    hashes = f"{{ sha256 = {_toml(artifact.sha256)} }}" if artifact.sha256 else "{}"
    return [
        table,
        f"name = {_toml(file_name)}",
        f"url = {_toml(artifact.url)}",
        f"hashes = {hashes}",
    ]
