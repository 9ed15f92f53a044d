"""Where a run is recorded: project root, tracking URI, experiment, artifact location.

Resolution order of the tracking URI (first that applies):

1. the ``tracking_uri`` argument (``%repro start --tracking-uri``);
2. ``MLFLOW_TRACKING_URI``;
3. ``[tool.reprokit] tracking_uri`` in the nearest ``pyproject.toml`` (a relative
   ``sqlite:///`` path there is relative to that file's folder, not to the working directory);
4. the embedded default ``sqlite:///<project root>/mlflow.db``.

The project root is the nearest folder, from the notebook's folder (else the working
directory) upwards, holding ``pyproject.toml`` or ``.git``; if none, the notebook's folder.

Artifacts: for every ``sqlite:`` store reprokit creates experiments with the explicit artifact
location ``<database folder>/mlartifacts/<experiment>`` (``[tool.reprokit] artifact_location``
overrides the ``mlartifacts`` folder), so nothing ever lands in ``./mlruns`` and ``mlflow ui``
started beside the database finds every artifact. Other stores (a tracking server, PostgreSQL)
keep their own default. This module imports nothing heavy and never MLflow.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from reprokit.exceptions import UsageError

DEFAULT_DB_NAME = "mlflow.db"
DEFAULT_ARTIFACT_DIR = "mlartifacts"
_MARKERS = ("pyproject.toml", ".git")


@dataclass(frozen=True)
class TrackingTarget:
    """A resolved destination. ``display_uri`` is the URI with credentials removed."""

    uri: str
    display_uri: str
    source: str  # "argument" | "env" | "pyproject" | "default"
    project_root: str
    experiment: str
    artifact_root: str | None  # folder under which experiments get explicit locations

    def artifact_location(self, experiment: str) -> str | None:
        """The artifact location to create ``experiment`` with (None: the store's default)."""
        if self.artifact_root is None:
            return None
        return (Path(self.artifact_root) / _slug(experiment)).as_uri()


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"
    return slug[:100]


def find_project_root(start: str | os.PathLike[str]) -> Path:
    """Nearest folder from ``start`` upwards with ``pyproject.toml`` or ``.git``, else ``start``."""
    origin = Path(start).resolve()
    if origin.is_file():
        origin = origin.parent
    for folder in (origin, *origin.parents):
        if any((folder / marker).exists() for marker in _MARKERS):
            return folder
    return origin


def read_tool_config(project_root: Path) -> tuple[dict[str, Any], Path | None]:
    """``[tool.reprokit]`` of the nearest ``pyproject.toml`` from the project root up."""
    for folder in (project_root, *project_root.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            return _load_tool_table(pyproject), pyproject
    return {}, None


def _load_tool_table(pyproject: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]
    try:
        with pyproject.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(
            f"{pyproject}: cannot read [tool.reprokit]: {exc}", path=str(pyproject)
        ) from None
    table = data.get("tool", {}).get("reprokit", {})
    return table if isinstance(table, dict) else {}


def resolve_target(
    *,
    start: str | os.PathLike[str],
    tracking_uri: str | None = None,
    experiment: str | None = None,
) -> TrackingTarget:
    """Resolve the URI, experiment and artifact root for a run started from ``start``."""
    root = find_project_root(start)
    config, pyproject = read_tool_config(root)
    uri, source = _pick_uri(root, config, pyproject, tracking_uri)
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or config.get("experiment")
    return TrackingTarget(
        uri=uri,
        display_uri=display_uri(uri),
        source=source,
        project_root=str(root),
        experiment=str(name or root.name or "reprokit"),
        artifact_root=_artifact_root(uri, config, pyproject),
    )


def display_uri(uri: str) -> str:
    """The URI with credentials removed (left as is when it has none: ``sqlite:////abs``)."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None and not parts.query:
        return uri
    from reprokit.capturing.redact import redact_url

    return redact_url(uri)


FILE_STORE_REFUSED_SINCE = (3, 13)  # MLflow refuses a file store without MLFLOW_ALLOW_FILE_STORE


def refuses_file_store(uri: str, mlflow_version: str | None) -> bool:
    """Whether MLflow ``mlflow_version`` (None: not installed) refuses ``uri``: a file store (a
    path, ``./mlruns``, or a ``file:`` URI) from MLflow 3.13 on, unless
    ``MLFLOW_ALLOW_FILE_STORE`` is true. Never imports MLflow."""
    scheme = urlsplit(uri).scheme
    if scheme not in ("", "file") or mlflow_version is None:
        return False
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1"):
        return False
    numbers = re.findall(r"\d+", mlflow_version)[:2]
    return tuple(int(n) for n in numbers) >= FILE_STORE_REFUSED_SINCE


def _pick_uri(
    root: Path, config: dict[str, Any], pyproject: Path | None, explicit: str | None
) -> tuple[str, str]:
    if explicit:
        return explicit, "argument"
    from_env = os.environ.get("MLFLOW_TRACKING_URI")
    if from_env:
        return from_env, "env"
    configured = config.get("tracking_uri")
    if isinstance(configured, str) and configured and pyproject is not None:
        return _anchor_sqlite(configured, pyproject.parent), "pyproject"
    return sqlite_uri(root / DEFAULT_DB_NAME), "default"


def sqlite_uri(database: Path) -> str:
    """``sqlite:////abs/path.db``: SQLAlchemy wants the absolute path after three slashes."""
    return "sqlite:///" + database.resolve().as_posix()


def _anchor_sqlite(uri: str, folder: Path) -> str:
    """``sqlite:///rel.db`` → ``sqlite:////abs/folder/rel.db`` (absolute paths unchanged)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.startswith(prefix + "/") or uri == prefix + ":memory:":
        return uri
    return prefix + str((folder / uri[len(prefix) :]).resolve())


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    parts = urlsplit(uri)
    if parts.scheme != "sqlite" or not parts.path or parts.path == "/:memory:":
        return None
    if parts.path.startswith("//"):  # sqlite:////abs/path.db
        return Path(unquote(parts.path[1:]))
    return Path(unquote(parts.path[1:])).resolve()  # sqlite:///rel.db: relative to the cwd


def _artifact_root(uri: str, config: dict[str, Any], pyproject: Path | None) -> str | None:
    configured = config.get("artifact_location")
    if isinstance(configured, str) and configured and pyproject is not None:
        return str((pyproject.parent / configured).resolve())
    database = sqlite_path(uri)
    if database is None:
        return None
    return str(database.parent / DEFAULT_ARTIFACT_DIR)
