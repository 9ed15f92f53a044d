"""The texts of a bundle (``reprokit bundle``): its ``README.md``, a ``CITATION.cff`` stub, the
data manifest, and the ``pyproject.toml`` that marks the bundle's root as a project root.

Everything here is a function of :class:`BundleContents` alone (no clock, no user name, no
machine path), so the same inputs give the same bytes. ``CITATION.cff`` names the authors
given with ``--author`` and otherwise asks for them: reprokit never guesses an author from
git or the system, and never writes an e-mail address.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from reprokit.capturing.model import DataEntry

__all__ = [
    "Bundle",
    "BundleContents",
    "BundledFile",
    "BundledNotebook",
    "BundledVerification",
    "citation_cff",
    "data_manifest_json",
    "describe_bundle",
    "project_marker",
    "readme",
]


@dataclass(frozen=True)
class Bundle:
    """What ``reprokit bundle`` wrote: the archive, its file names, and what it left out."""

    path: str
    files: tuple[str, ...]
    data_included: bool
    data_bytes: int  # of the locks' data, packed or not
    left_out: tuple[str, ...]  # "path (why)", one per file not packed
    unverified: tuple[str, ...]  # notebooks with no verification report packed
    unpinnable: tuple[str, ...]  # distributions the environment files could not pin
    changed_data: tuple[str, ...] = ()  # "notebook: path status", data that differs from its lock


def describe_bundle(done: Bundle) -> list[str]:
    """The lines ``reprokit bundle`` prints: what was written, then (``reprokit:`` lines, for
    stderr) what was left out."""
    data = "with its data" if done.data_included else "without its data"
    lines = [f"wrote {done.path}: {len(done.files)} files, {data} ({_size(done.data_bytes)})"]
    if done.data_bytes and not done.data_included:
        lines.append("reprokit: the data is not in the bundle: --with-data packs it")
    lines += [f"reprokit: left out: {item}" for item in done.left_out]
    lines += [
        f"reprokit: no verification of {nb} since its lock: `reprokit verify {nb}` first "
        "packs its report"
        for nb in done.unverified
    ]
    lines += [f"reprokit: not pinnable, left out of the environment: {d}" for d in done.unpinnable]
    lines += [
        f"reprokit: warning: data changed since the lock of {line}: a verification of the "
        "bundle stops on it; record the notebook again first"
        for line in done.changed_data
    ]
    return lines


@dataclass(frozen=True)
class BundledFile:
    name: str  # inside the bundle, "/"-separated
    size: int
    role: str  # notebook | lock | sidecar | data | environment | report | readme | citation | ...
    notebook: str | None = None  # the notebook it belongs to


@dataclass(frozen=True)
class BundledVerification:
    verdict: str  # "reproduced" | "not reproduced"
    started: str | None  # ISO 8601
    ended: str | None
    reports: tuple[str, ...]  # names inside the bundle
    command: str | None = None
    reprokit_version: str | None = None  # of the verification's snapshot, when it has one


@dataclass(frozen=True)
class BundledNotebook:
    path: str
    lock: str
    created_at: str
    reprokit_version: str  # that wrote the lock
    sidecars: tuple[str, ...]
    data: tuple[str, ...]  # the lock's data paths, packed or not
    environment: tuple[str, ...]
    verification: BundledVerification | None


@dataclass(frozen=True)
class BundleContents:
    archive_name: str
    title: str
    authors: tuple[str, ...]
    notebooks: tuple[BundledNotebook, ...]
    data: tuple[DataEntry, ...]
    data_included: bool
    data_limit: int
    left_out: tuple[str, ...]
    reprokit_version: str
    license: str | None = None  # an SPDX identifier

    @property
    def published(self) -> str:
        """The newest lock's time: the bundle's date (never the clock's)."""
        return max(nb.created_at for nb in self.notebooks)


def project_marker() -> str:
    return (
        "# Written by reprokit bundle: this folder is the project root of the bundled\n"
        "# notebooks (their locks' paths are relative to it).\n"
        "[tool.reprokit]\n"
    )


def data_manifest_json(entries: Sequence[DataEntry], included: bool) -> str:
    """Every data path the locks name: kind, size, digest, and whether the bundle holds it."""
    listed = [
        {
            "path": e.path,
            "kind": e.kind,
            "size": e.size,
            "digest": e.tagged_digest,
            "files": [{"path": f.path, "size": f.size, "digest": f.digest} for f in e.files],
            "included": included,
        }
        for e in entries
    ]
    return json.dumps({"data": listed}, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} bytes"  # pragma: no cover


def readme(contents: BundleContents) -> str:
    """``README.md``: how to verify the bundle in one command, and what it holds."""
    zip_name = contents.archive_name
    lines = [
        f"# {contents.title}",
        "",
        "A reprokit bundle: notebooks with their locks (the results they must reproduce, "
        "within their tolerances), the data they read, the environment they were recorded "
        "in and the report of their last verification.",
        "",
        "## Verify in one command",
        "",
        f"With reprokit installed (this bundle was made by reprokit {contents.reprokit_version}):",
        "",
        "```bash",
        f"reprokit verify {zip_name}",
        "```",
        "",
        "or, to run the notebooks in a virtual environment rebuilt from each lock's packages:",
        "",
        "```bash",
        f"reprokit verify {zip_name} --rebuild-env",
        "```",
        "",
        f"`reprokit verify {zip_name}` checks the archive (no absolute paths, no `..`, no "
        "links, bounded size), unpacks it into a fresh folder "
        f"`{zip_name.removesuffix('.zip')}.verify/<UTC time>-<hex>/bundle/` beside it, verifies "
        "every notebook there and writes the executed notebooks and the reports into "
        "`.../runs/` (`--output-dir DIR` puts them in DIR). Exit code 0: every result "
        "reproduced; 1: not reproduced or the data changed; 2: bad input; 3: a notebook "
        "failed to execute.",
        "",
        *_notebook_table(contents.notebooks),
        *_data_section(contents),
        *_environment_section(contents.notebooks),
        "## Metadata",
        "",
        "- `ro-crate-metadata.json`: RO-Crate metadata (Process Run Crate profile): every "
        "file, the recording and the verification as actions with their inputs and results.",
        "- `CITATION.cff`: a citation stub; fill in the authors before you publish it.",
        "- `data-manifest.json`: every data path with its size and digest.",
        "",
    ]
    return "\n".join(lines)


def _notebook_table(notebooks: Sequence[BundledNotebook]) -> list[str]:
    lines = [
        "## Notebooks",
        "",
        "| notebook | lock | recorded | last verification |",
        "|---|---|---|---|",
    ]
    for nb in notebooks:
        lines.append(
            f"| `{nb.path}` | `{nb.lock}` | {nb.created_at} (reprokit {nb.reprokit_version}) "
            f"| {_verification_words(nb)} |"
        )
    return [*lines, ""]


def _verification_words(nb: BundledNotebook) -> str:
    found = nb.verification
    if found is None:
        return "none since the lock was written (`reprokit verify` before bundling packs it)"
    when = f" ({found.started} to {found.ended})" if found.started and found.ended else ""
    reports = ", ".join(f"`{name}`" for name in found.reports)
    return f"{found.verdict}{when}: {reports}"


def _data_section(contents: BundleContents) -> list[str]:
    size = sum(entry.size for entry in contents.data)
    if not contents.data:
        lines = ["The locks name no data."]
    elif contents.data_included:
        lines = [f"The data ({_size(size)}) is in the bundle, at the paths the locks name."]
    else:
        lines = [
            f"The data ({_size(size)}) is **not** in the bundle (bundles hold it up to "
            f"{_size(contents.data_limit)}, or with `reprokit bundle --with-data`). Put each "
            "path of `data-manifest.json` at that path in the unpacked folder, then run "
            "`reprokit verify NOTEBOOK` there; its digests are checked before any cell runs.",
        ]
    lines += ["", *[f"- `{e.path}` ({e.kind}, {_size(e.size)})" for e in contents.data]]
    if contents.left_out:
        lines += ["", "Left out of the bundle:", ""]
        lines += [f"- {item}" for item in contents.left_out]
    return ["## Data", "", *lines, ""]


def _environment_section(notebooks: Sequence[BundledNotebook]) -> list[str]:
    lines = [
        "## Environment",
        "",
        "Each lock's packages, exported with exact pins (`reprokit env export`):",
        "",
    ]
    for nb in notebooks:
        lines += [f"- `{nb.path}`: " + ", ".join(f"`{name}`" for name in nb.environment)]
    return [*lines, ""]


def citation_cff(contents: BundleContents) -> str:
    """A ``CITATION.cff`` (CFF 1.2.0) stub: the given authors, or a line asking for them."""
    authors = contents.authors or ("FILL IN: the authors (family-names, given-names, orcid)",)
    lines = [
        "# CITATION.cff written by reprokit bundle: check it, and fill in the authors.",
        "cff-version: 1.2.0",
        'message: "If you use these notebooks or their results, please cite them as below."',
        "type: dataset",
        f"title: {_quoted(contents.title)}",
        "authors:",
        *[f"  - name: {_quoted(author)}" for author in authors],
        f"date-released: {_quoted(contents.published[:10])}",
        *([f"license: {_quoted(contents.license)}"] if contents.license else []),
        "keywords:",
        "  - reproducibility",
        "  - jupyter",
        "  - reprokit",
    ]
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar (JSON's escapes are YAML's), on one line."""
    return json.dumps(" ".join(text.split()), ensure_ascii=False)
