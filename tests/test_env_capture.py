"""What a rebuild needs, captured: PEP 610 origins, PEP 376 REQUESTED, dependency edges, wheel
tags; a lock of schema 2 without the machine's paths; schema 1 locks still read; the env diff
names a change of origin."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from reprokit._serde import to_json
from reprokit.capturing.distributions import collect_distributions, origin_from_direct_url
from reprokit.capturing.model import Distribution, PackageOrigin
from reprokit.capturing.pyenv import collect_python
from reprokit.compare.envdiff import diff_snapshots
from reprokit.recording.lock import read_lock
from tests.lock_helpers import make_project, record, scalar_results

TOKEN = "ghp_" + "Zq8" * 12


def _dist_info(site: Path, name: str, version: str, **files: str) -> Path:
    folder = site / f"{name}-{version}.dist-info"
    folder.mkdir(parents=True)
    metadata = files.pop("METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (folder / "METADATA").write_text(metadata + "\nlong description\n")
    for file_name, text in files.items():
        (folder / file_name).write_text(text)
    return folder


def test_origins_requested_and_requires_come_from_the_dist_info_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    vcs = {"url": f"https://u:{TOKEN}@example.org/a/fancy.git"}
    vcs["vcs_info"] = {"vcs": "git", "commit_id": "c" * 40, "requested_revision": "v1"}  # type: ignore[assignment]
    meta = "Metadata-Version: 2.1\nName: Fancy_Pkg\nVersion: 1.0\nLicense: a\n  \n folded\n"
    meta += "Requires-Dist: zzdep>=1\nRequires-Dist: zzother; extra == 'test'\n"
    meta += "Requires-Dist: not-installed\n"
    _dist_info(site, "fancy_pkg", "1.0", METADATA=meta, REQUESTED="", INSTALLER="pip\n")
    (site / "fancy_pkg-1.0.dist-info" / "direct_url.json").write_text(json.dumps(vcs))
    _dist_info(site, "zzdep", "2.0", INSTALLER="pip\n")
    _dist_info(site, "zzother", "3.0")
    monkeypatch.syspath_prepend(str(site))
    found = collect_distributions()
    fancy = found["fancy-pkg"]
    assert fancy.requested is True and fancy.requires == ("zzdep",)
    assert fancy.origin == PackageOrigin(
        "vcs",
        url="https://example.org/a/fancy.git",
        vcs="git",
        commit="c" * 40,
        requested_revision="v1",
    )
    assert found["zzdep"].requested is False  # an installer said so, and no REQUESTED
    assert found["zzother"].requested is None  # nobody said
    assert TOKEN not in to_json(found)


@pytest.mark.parametrize(
    ("direct_url", "expected"),
    [
        (
            {"url": "file:///home/alice/src/proj", "dir_info": {"editable": True}},
            PackageOrigin("directory", local=True, local_name="proj", editable=True),
        ),
        (
            {"url": "file:///home/alice/w/x-1.0-py3-none-any.whl", "archive_info": {}},
            PackageOrigin("archive", local=True, local_name="x-1.0-py3-none-any.whl"),
        ),
        (
            {
                "url": f"https://{TOKEN}@host/x-1.0.tar.gz",
                "archive_info": {"hash": "sha256=ab", "hashes": {"sha256": "cd"}},
            },
            PackageOrigin("archive", url="https://host/x-1.0.tar.gz", archive_hash="sha256=cd"),
        ),
        (
            {"url": "file:///srv/repo", "vcs_info": {"vcs": "git", "commit_id": "d" * 40}},
            PackageOrigin("vcs", url="file:///srv/repo", local=True, vcs="git", commit="d" * 40),
        ),
        ({"url": 3}, None),
        ([], None),
    ],
)
def test_a_direct_url_becomes_an_origin_without_paths_or_credentials(
    direct_url: object, expected: PackageOrigin | None
) -> None:
    assert origin_from_direct_url(direct_url) == expected


def test_python_records_its_wheel_tags() -> None:
    info = collect_python()
    assert info.interpreter_tag and info.interpreter_tag.startswith(("cp", "pp"))
    assert info.platform_tag and "-" not in info.platform_tag and "." not in info.platform_tag


def test_a_lock_keeps_origins_but_not_the_interpreter_paths(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    lock = record(project, scalar_results())
    assert lock.schema_version == 2 and lock.snapshot is not None
    text = project.lock_path.read_text()
    python = json.loads(text)["snapshot"]["python"]
    assert python["executable"] is None and python["prefix"] is None
    assert python["interpreter_tag"] == collect_python().interpreter_tag
    assert lock.snapshot.distributions  # every installed distribution
    # reprokit itself is an editable install of a local folder here: named, never its path
    own = read_lock(project.lock_path).snapshot.distributions["reprokit-nb"]  # type: ignore[union-attr]
    assert own.origin is not None and own.origin.local and own.origin.url is None
    assert str(Path(__file__).resolve().parents[1]) not in text


def test_a_schema_1_lock_reads_and_diffs_without_origins(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    record(project, scalar_results())
    data = json.loads(project.lock_path.read_text())
    data["schema_version"] = 1
    del data["snapshot"]["distributions"]
    for key in ("interpreter_tag", "platform_tag", "libc"):
        del data["snapshot"]["python"][key]
    data["snapshot"]["python"] |= {"executable": "/usr/bin/python3", "prefix": "/usr"}
    project.lock_path.write_text(json.dumps(data))
    old = read_lock(project.lock_path).snapshot
    assert old is not None and old.distributions == {}
    current = replace(old, distributions={"six": Distribution(origin=None)})
    assert not [c for c in diff_snapshots(old, current).changes if "origin" in c.key]


def test_the_env_diff_names_a_change_of_origin(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    snap = record(project, scalar_results()).snapshot
    assert snap is not None
    name = "blake3"
    vcs = PackageOrigin("vcs", url="https://example.org/b3.git", vcs="git", commit="e" * 40)
    changed = replace(snap, distributions=snap.distributions | {name: Distribution(origin=vcs)})
    found = [c for c in diff_snapshots(snap, changed).changes if c.key == f"{name} origin"]
    assert [(c.reference, c.current) for c in found] == [
        ("index", "git+https://example.org/b3.git@eeeeeeeeeeee")
    ]
