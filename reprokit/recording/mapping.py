"""How reprokit's data model maps onto MLflow's: tags, params, metrics, dataset inputs.

Pure functions returning plain values; :mod:`reprokit.recording.writer` turns them into MLflow
entities. MLflow's standard tags are used where they exist (``mlflow.source.*``,
``mlflow.note.content``, ``mlflow.user``), ``reprokit.*`` tags for the rest.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from reprokit._version import __version__
from reprokit.capturing.model import AcceleratorInfo, DataEntry, SeedRecord, Snapshot
from reprokit.capturing.redact import redact_text
from reprokit.results.model import Result

MAX_TAG_LENGTH = 8000  # MLflow's limit on a tag value (longer ones are truncated, we say so)
MAX_DATASET_DIGEST = 36  # MLflow's column width for a dataset digest
_METRIC_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. :/]")
MAX_METRIC_KEY = 250  # MLflow's limit on a metric key
_METRIC_KEY_DIGESTED = re.compile(r"_-[0-9a-f]{8}\Z")  # the digest a changed name ends with
SOURCE_NAME_TAG = "mlflow.source.name"  # the notebook a run came from (MLflow's own tag)


@dataclass(frozen=True)
class DatasetSpec:
    """An MLflow dataset input. ``digest`` is what fits MLflow's 36-character column; the
    full ``ALGO:HEX`` digest travels in ``source`` and ``profile`` (JSON)."""

    name: str
    digest: str
    source_type: str
    source: str
    profile: str
    context: str = "input"


def accelerator_tags(acc: AcceleratorInfo) -> dict[str, str]:
    """The GPU/CUDA tags: set when the run opens, and again when it ends if the notebook
    imported torch or started CUDA meanwhile."""
    return {
        "reprokit.gpu": ", ".join(d.name for d in acc.devices) or "none",
        "reprokit.cuda": acc.cuda_runtime or "none",
        "reprokit.cudnn": acc.cudnn_version or "none",
        "reprokit.driver": acc.driver_version or "none",
        "reprokit.torch": acc.torch_version or "not imported",
    }


def run_tags(
    snapshot: Snapshot,
    *,
    notebook: str | None,
    in_notebook: bool,
    device: str,
    local_dir: str | None,
    tracking_uri: str,
    note: str = "",
) -> dict[str, str]:
    """Tags set when the run opens. ``tracking_uri`` must already be redacted; ``note`` is the
    run's Markdown description (written by the report stage), shown by the MLflow UI."""
    git, acc = snapshot.git, snapshot.accelerator
    tags = {
        "mlflow.source.type": "NOTEBOOK" if in_notebook else "LOCAL",
        "mlflow.user": _user(),
        "reprokit.version": __version__,
        "reprokit.python": snapshot.python.version,
        "reprokit.platform": f"{snapshot.platform.system} {snapshot.platform.machine}",
        "reprokit.device": device,
        **accelerator_tags(acc),
        "reprokit.dirty": str(git.dirty).lower() if git.available else "no git",
        "reprokit.tracking_uri": tracking_uri,
    }
    if note:
        tags["mlflow.note.content"] = _clip(note)
    if notebook:
        tags[SOURCE_NAME_TAG] = notebook
    if local_dir:
        tags["reprokit.local_dir"] = local_dir
    if git.available and git.commit:
        tags["mlflow.source.git.commit"] = git.commit
    if git.available and git.branch:
        tags["mlflow.source.git.branch"] = git.branch
    if git.available and git.remote_url:
        tags["mlflow.source.git.repoURL"] = redact_text(git.remote_url)
    return tags | seed_tags(snapshot.seeds)


def seed_tags(seeds: SeedRecord | None) -> dict[str, str]:
    if seeds is None:
        return {"reprokit.deterministic": "false"}
    return {
        "reprokit.seed": str(seeds.seed),
        "reprokit.deterministic": str(seeds.deterministic).lower(),
    }


def seed_params(seeds: SeedRecord) -> dict[str, str]:
    return {"seed": str(seeds.seed), "deterministic": str(seeds.deterministic).lower()}


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry in some containers
        return "unknown"


def _clip(text: str) -> str:
    if len(text) <= MAX_TAG_LENGTH:
        return text
    return text[: MAX_TAG_LENGTH - 40] + "\n\n… (truncated; see reprokit/snapshot.json)\n"


def metric_key(name: str) -> str:
    """A result name as an MLflow metric key: the name itself when MLflow takes it as it is;
    else characters MLflow refuses become ``_``, the name is cut to fit
    :data:`MAX_METRIC_KEY`, and ``_-`` and 8 hex digits of the name's SHA-256 are appended, so
    that two names never share a key (two Greek letters, ``a\\tb`` and ``a_b``). A name that
    already ends like such a key gets its digest too."""
    key = _METRIC_KEY_BAD.sub("_", name)
    if key == name and 0 < len(key) <= MAX_METRIC_KEY and not _METRIC_KEY_DIGESTED.search(key):
        return key
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return key[: MAX_METRIC_KEY - len(digest) - 2] + "_-" + digest


def metric_value(result: Result) -> float | None:
    """The metric a numeric scalar result becomes (NaN and ±inf included), else None: also for
    an int beyond the float range (MLflow metrics are float64), which stays a result only."""
    if not result.is_numeric_scalar:
        return None
    value = result.value
    if isinstance(value, dict):  # the {"$float": ...} marker of a non-finite float
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[value["$float"]]
    try:
        return float(value)
    except OverflowError:
        return None


def dataset_spec(entry: DataEntry, project_root: str) -> DatasetSpec:
    """A data entry as an MLflow dataset carrying reprokit's full digest."""
    path = Path(entry.path)
    absolute = path if path.is_absolute() else Path(project_root) / path
    full = entry.tagged_digest
    source = {"uri": absolute.as_uri(), "digest": full}
    profile = {"digest": full, "kind": entry.kind, "size": entry.size, "files": entry.file_count}
    return DatasetSpec(
        name=entry.path,
        digest=entry.digest[:MAX_DATASET_DIGEST],
        source_type="local",
        source=json.dumps(source, sort_keys=True),
        profile=json.dumps(profile, sort_keys=True),
    )


def requirements_text(snapshot: Snapshot) -> str:
    """``name==version`` lines of every installed distribution, sorted."""
    lines = [f"{name}=={version}" for name, version in sorted(snapshot.packages.items())]
    return "\n".join(lines) + "\n"
