"""A bundle's RO-Crate metadata (``ro-crate-metadata.json``), Process Run Crate profile 0.5.

RO-Crate 1.1 asks for a metadata descriptor (``ro-crate-metadata.json``, a ``CreativeWork``
that ``conformsTo`` RO-Crate 1.1 and is ``about`` the root) and a root ``Dataset`` (``./``)
with ``name``, ``description``, ``datePublished`` and ``license``; each file of the crate is a
``File`` data entity listed in the root's ``hasPart``. The Process Run Crate profile
(https://w3id.org/ro/wfrun/process/0.5) adds: the root ``conformsTo`` the profile's permalink
(a ``CreativeWork`` entity), each execution is a ``CreateAction`` (listed in the root's
``mentions``) whose ``instrument`` is a ``SoftwareApplication`` with a version, with its
inputs as ``object``, its outputs as ``result``, ``startTime``/``endTime`` and
``actionStatus``.

Here each notebook has up to two actions: its recording (inputs: the notebook and its data;
results: the lock and its sidecar arrays; ended when the lock was written) and its last
verification (inputs: notebook, lock, sidecars, data; results: the reports). The JSON is
written by hand, not with the ``rocrate`` package: every byte must follow from the bundle's
contents (no clock, no random identifiers) so that bundles compare byte for byte, and a test
checks the document against the profile's required fields. The forms follow what
rocrate-validator's Process Run Crate shapes take (``actionStatus`` as a string, times in
whole seconds with a numeric offset, one value rather than a list of one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote

from reprokit.report.bundle import BundleContents, BundledFile, BundledNotebook

__all__ = ["PROCESS_RUN_CRATE", "RO_CRATE", "crate_metadata", "crate_notebooks"]

RO_CRATE = "https://w3id.org/ro/crate/1.1"
PROCESS_RUN_CRATE = "https://w3id.org/ro/wfrun/process/0.5"
_CONTEXT = [
    "https://w3id.org/ro/crate/1.1/context",
    "https://w3id.org/ro/terms/workflow-run/context",
]
_COMPLETED = "http://schema.org/CompletedActionStatus"  # a string: what validators expect
_FORMATS = {
    ".ipynb": "application/x-ipynb+json",
    ".json": "application/json",
    ".html": "text/html",
    ".md": "text/markdown",
    ".txt": "text/plain",
    ".csv": "text/csv",
    ".py": "text/x-python",
    ".toml": "application/toml",
    ".yml": "application/yaml",
    ".cff": "application/yaml",
    ".npy": "application/octet-stream",
}
_ROLES = {
    "notebook": "a notebook",
    "lock": "the lock of {nb}: the results it must reproduce, with their tolerances",
    "sidecar": "an array of {nb}'s lock",
    "data": "input data",
    "environment": "the packages {nb} was recorded with",
    "report": "the report of {nb}'s last verification",
    "readme": "how to verify this bundle",
    "citation": "how to cite this bundle",
    "marker": "marks this folder as the notebooks' project root",
}


def crate_metadata(contents: BundleContents, files: Sequence[BundledFile]) -> str:
    """The ``ro-crate-metadata.json`` of a bundle holding ``files``."""
    graph: list[dict[str, Any]] = [
        {
            "@id": "ro-crate-metadata.json",
            "@type": "CreativeWork",
            "conformsTo": {"@id": RO_CRATE},
            "about": {"@id": "./"},
        },
        _root(contents, files),
        {
            "@id": PROCESS_RUN_CRATE,
            "@type": "CreativeWork",
            "name": "Process Run Crate",
            "version": "0.5",
        },
        _license(contents.license),
        *[_person(k, name) for k, name in enumerate(contents.authors)],
        *_applications(contents),
        *[_file(f) for f in files],
        *[a for k, nb in enumerate(contents.notebooks) for a in _actions(k, nb, files, contents)],
    ]
    document = {"@context": _CONTEXT, "@graph": graph}
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def _id(name: str) -> str:
    return quote(name, safe="/")


def _ref(name: str) -> dict[str, str]:
    return {"@id": _id(name)}


def _root(contents: BundleContents, files: Sequence[BundledFile]) -> dict[str, Any]:
    actions = [f"#{kind}-{k}" for k, nb in enumerate(contents.notebooks) for kind in _kinds(nb)]
    return {
        "@id": "./",
        "@type": "Dataset",
        "conformsTo": {"@id": PROCESS_RUN_CRATE},
        "name": contents.title,
        "description": (
            "Jupyter notebooks with their reprokit locks, data, environment and verification "
            f"reports. Verify with: reprokit verify {contents.archive_name}"
        ),
        "datePublished": contents.published,
        "license": {"@id": _license_id(contents.license)},
        **({"author": _one_or_many(_authors(contents))} if contents.authors else {}),
        "hasPart": [_ref(f.name) for f in files],
        "mentions": _one_or_many([{"@id": action} for action in actions]),
    }


def _one_or_many(values: list[dict[str, str]]) -> dict[str, str] | list[dict[str, str]]:
    """One value as itself, not a list of one (RO-Crate's recommendation)."""
    return values[0] if len(values) == 1 else values


def _person(k: int, name: str) -> dict[str, Any]:
    return {"@id": f"#author-{k}", "@type": "Person", "name": name}


def _authors(contents: BundleContents) -> list[dict[str, str]]:
    return [{"@id": f"#author-{k}"} for k in range(len(contents.authors))]


def _kinds(nb: BundledNotebook) -> list[str]:
    return ["record", "verify"] if nb.verification is not None else ["record"]


def _license_id(spdx: str | None) -> str:
    return f"https://spdx.org/licenses/{spdx}" if spdx else "#license-not-chosen"


def _license(spdx: str | None) -> dict[str, Any]:
    if spdx:
        return {"@id": _license_id(spdx), "@type": "CreativeWork", "name": spdx}
    return {
        "@id": _license_id(None),
        "@type": "CreativeWork",
        "name": "No license chosen",
        "description": "Choose one before publishing: reprokit bundle --license SPDX-ID",
    }


def _application_id(version: str | None) -> str:
    return f"#reprokit-{version}" if version else "#reprokit"


def _applications(contents: BundleContents) -> list[dict[str, Any]]:
    versions: set[str | None] = {nb.reprokit_version for nb in contents.notebooks}
    versions |= {nb.verification.reprokit_version for nb in contents.notebooks if nb.verification}
    return [
        {"@id": _application_id(v), "@type": "SoftwareApplication", "name": "reprokit"}
        | ({"softwareVersion": v} if v else {})
        for v in sorted(versions, key=lambda v: v or "")
    ]


def _file(file: BundledFile) -> dict[str, Any]:
    suffix = "." + file.name.rsplit(".", 1)[-1] if "." in file.name else ""
    entity: dict[str, Any] = {
        "@id": _id(file.name),
        "@type": "File",
        "name": file.name,
        "contentSize": str(file.size),
    }
    if suffix in _FORMATS:
        entity["encodingFormat"] = _FORMATS[suffix]
    if file.role in _ROLES:
        entity["description"] = _ROLES[file.role].format(nb=file.notebook or "the notebook")
    return entity


def _actions(
    k: int, nb: BundledNotebook, files: Sequence[BundledFile], contents: BundleContents
) -> list[dict[str, Any]]:
    names = {f.name for f in files}
    data = [f.name for f in files if f.role == "data" and _under(f.name, nb.data)]
    # data left out of the bundle is described by the manifest
    inputs = [nb.path, *data] + (["data-manifest.json"] if nb.data and not data else [])
    record = {
        "@id": f"#record-{k}",
        "@type": "CreateAction",
        "name": f"Record {nb.path}",
        "description": f"reprokit record {nb.path}",
        "endTime": _iso(nb.created_at),
        "instrument": {"@id": _application_id(nb.reprokit_version)},
        "object": _one_or_many([_ref(n) for n in inputs if n in names]),
        "result": _one_or_many([_ref(n) for n in (nb.lock, *nb.sidecars)]),
        "actionStatus": _COMPLETED,
    }
    if contents.authors:  # the authors recorded the notebooks; who verified, nobody said
        record["agent"] = _one_or_many(_authors(contents))
    found = nb.verification
    if found is None:
        return [record]
    verify: dict[str, Any] = {
        "@id": f"#verify-{k}",
        "@type": "CreateAction",
        "name": f"Verify {nb.path}: {found.verdict}",
        "description": found.command or f"reprokit verify {nb.path}",
        "instrument": {"@id": _application_id(found.reprokit_version)},
        "object": _one_or_many([_ref(n) for n in (nb.path, nb.lock, *nb.sidecars, *data)]),
        "result": _one_or_many([_ref(n) for n in found.reports]),
        "actionStatus": _COMPLETED,
    }
    verify |= {"startTime": _iso(found.started)} if found.started else {}
    verify |= {"endTime": _iso(found.ended)} if found.ended else {}
    return [record, verify]


def _iso(time: str) -> str:
    """``2026-12-02T07:42:20.200605Z`` → ``2026-12-02T07:42:20+00:00``: whole seconds and a
    numeric offset, the ISO 8601 form RO-Crate validators take."""
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?", time)
    if match is None:
        return time
    offset = match.group(3) or "+00:00"
    return match.group(1) + ("+00:00" if offset == "Z" else offset)


def _under(name: str, paths: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p.rstrip("/") + "/") for p in paths)


def crate_notebooks(document: Any) -> tuple[str, ...] | None:
    """The notebooks that the RO-Crate metadata ``document`` (read back from a bundle, untrusted)
    lists: the first ``object`` of each recording action (``#record-K``), as
    :func:`crate_metadata` writes them. ``None`` when it is not such metadata."""
    graph = document.get("@graph") if isinstance(document, dict) else None
    if not isinstance(graph, list):
        return None
    found: list[str] = []
    for entity in graph:
        if not isinstance(entity, dict) or not str(entity.get("@id")).startswith("#record-"):
            continue
        objects = entity.get("object")
        first = objects[0] if isinstance(objects, list) and objects else objects
        ref = first.get("@id") if isinstance(first, dict) else None
        if not isinstance(ref, str):
            return None
        found.append(unquote(ref))
    return tuple(found)
