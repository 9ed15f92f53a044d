"""``reprokit bundle``: what goes into the zip (and what never does), the same bytes for the same
inputs, RO-Crate metadata against the Process Run Crate profile's required fields, a
CITATION.cff stub; and ``reprokit verify artifact.zip`` refusing malicious archives.

Locks are built without a kernel (tests/lock_helpers.py); the round trip through real kernels
is in test_bundle_roundtrip.py.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from reprokit._archive import ZipLimits, extract_zip
from reprokit.api.bundle import bundle, unpack_bundles
from reprokit.cli import main
from reprokit.exceptions import PathError, UsageError
from reprokit.options import BundleOptions, ExecutionOptions
from reprokit.recording.lock import build_lock, write_lock
from reprokit.report.rocrate import PROCESS_RUN_CRATE, RO_CRATE
from reprokit.results import encode_result
from tests.lock_helpers import Project, executed, make_project

SECRET = "sk-canary-bundle-parameter-5521"
ENV_SECRET = "canary-dotenv-password-8813"
JOURNAL_SECRET = "canary-journal-line-3307"


def _record(project: Project, results: list[Any] | None = None) -> None:
    results = results or [encode_result("acc", 0.93), encode_result("big", list(range(3)))]
    lock = build_lock(
        project.notebook,
        executed(project, results),
        project_root=project.root,
        parameters={"epochs": 2, "api_key": SECRET},
    )
    write_lock(lock, project.lock_path)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    made = make_project(tmp_path)
    (made.root / ".env").write_text(f"PASSWORD={ENV_SECRET}\n")  # the project's, not data
    journal = made.root / ".reprokit" / "journal"
    journal.mkdir(parents=True)
    (journal / "run.jsonl").write_text(JOURNAL_SECRET)
    _record(made)
    return made


def _names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def _member(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(name)


def test_the_bundle_holds_notebook_lock_data_environment_and_metadata(project: Project) -> None:
    out = project.root.parent / "artifact.zip"
    done = bundle([project.notebook], out)
    assert _names(out) == sorted(_names(out))
    assert set(_names(out)) == {
        "CITATION.cff",
        "README.md",
        "data-manifest.json",
        "data/a.csv",
        "data/b.csv",
        "environment/notebooks/fig3/environment.yml",
        "environment/notebooks/fig3/requirements.txt",
        "notebooks/fig3.ipynb",
        "notebooks/fig3.repro.json",
        "pyproject.toml",
        "ro-crate-metadata.json",
    }
    assert done.data_included
    assert done.left_out == ()
    assert done.unverified == ("notebooks/fig3.ipynb",)
    assert _member(out, "notebooks/fig3.ipynb") == project.notebook.read_bytes()
    readme = _member(out, "README.md").decode()
    assert "reprokit verify artifact.zip\n" in readme
    assert "reprokit verify artifact.zip --rebuild-env" in readme
    assert "none since the lock was written" in readme


def test_no_secret_reaches_the_bundle(project: Project) -> None:
    out = project.root.parent / "artifact.zip"
    bundle([project.root], out, BundleOptions(data="always"))
    with zipfile.ZipFile(out) as archive:
        contents = b"".join(archive.read(name) for name in archive.namelist())
    for canary in (SECRET, ENV_SECRET, JOURNAL_SECRET):
        assert canary.encode() not in contents
    assert not [n for n in _names(out) if n.startswith(".reprokit/") or n.endswith(".env")]
    assert str(project.root).encode() not in contents  # no machine path either


def test_credentials_recorded_in_the_data_stop_the_bundle(project: Project) -> None:
    (project.data / ".env").write_text(f"PASSWORD={ENV_SECRET}\n")
    (project.data / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    _record(project)  # the lock records every file of the data folder, these two too
    out = project.root.parent / "artifact.zip"
    with pytest.raises(UsageError, match=r"^data/\.env, data/id_rsa: in a lock's data"):
        bundle([project.notebook], out)
    assert not out.exists()
    result = CliRunner().invoke(main, ["bundle", str(project.notebook), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert "move them out of the data folder and record again" in result.output
    assert not out.exists()
    assert not bundle([project.notebook], out, BundleOptions(data="never")).data_included


def test_same_inputs_give_the_same_bytes(project: Project) -> None:
    first, second = project.root.parent / "a" / "x.zip", project.root.parent / "b" / "x.zip"
    first.parent.mkdir()
    second.parent.mkdir()
    bundle([project.notebook], first)
    os.utime(project.notebook, (1, 1))  # times of the inputs do not matter
    (project.data / "a.csv").touch()
    bundle([project.notebook], second)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_data_over_the_limit_or_refused_stays_out_but_is_listed(project: Project) -> None:
    out = project.root.parent / "artifact.zip"
    for options in (BundleOptions(data_limit=10), BundleOptions(data="never")):
        done = bundle([project.notebook], out, options)
        assert not done.data_included
        assert not [n for n in _names(out) if n.startswith("data/")]
        manifest = json.loads(_member(out, "data-manifest.json"))
        assert [entry["path"] for entry in manifest["data"]] == ["data"]
        assert "**not** in the bundle" in _member(out, "README.md").decode()
    done = bundle([project.notebook], out, BundleOptions(data="always", data_limit=10))
    assert done.data_included


def test_a_file_leading_outside_the_project_is_refused(project: Project, tmp_path: Path) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text("secret,1\n")
    (project.data / "b.csv").unlink()
    (project.data / "b.csv").symlink_to(outside)
    out = project.root.parent / "artifact.zip"
    with pytest.raises(PathError, match="leads outside the project") as caught:
        bundle([project.notebook], out)
    assert "\n" not in str(caught.value)
    assert not out.exists()
    result = CliRunner().invoke(main, ["bundle", str(project.notebook), "-o", str(out)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "leads outside the project" in result.output


@pytest.mark.parametrize("made", ["after the lock", "recorded in the lock", "a folder"])
@pytest.mark.filterwarnings("ignore:data link outside")
def test_a_data_link_leading_outside_the_project_stops_the_bundle(
    project: Project, tmp_path: Path, made: str
) -> None:
    outside = tmp_path / "passwd"
    outside.write_text("root:x:0:0\n")
    if made == "a folder":  # a folder of the data, recorded in the lock with its files
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "c.csv").write_text("x,y\n5,6\n")
        (project.data / "more").symlink_to(tmp_path / "elsewhere")
    else:
        (project.data / "pw.csv").symlink_to(outside)
    if made != "after the lock":
        _record(project)
    out = project.root.parent / "artifact.zip"
    with pytest.raises(PathError, match="a link in the data that leads outside the project"):
        bundle([project.notebook], out)
    assert not out.exists()
    result = CliRunner().invoke(main, ["bundle", str(project.notebook), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "data/" in result.output
    assert not out.exists()
    assert not bundle([project.notebook], out, BundleOptions(data="never")).data_included


def test_a_bundle_needs_a_zip_name_and_a_lock(project: Project) -> None:
    with pytest.raises(UsageError, match=r"ending in \.zip"):
        bundle([project.notebook], project.root / "artifact.tar")
    project.lock_path.unlink()
    with pytest.raises(UsageError, match="no lock"):
        bundle([project.notebook], project.root / "artifact.zip")


# ----------------------------------------------------------------------------- RO-Crate


def _add_verification(project: Project) -> None:
    """A verification's output folder as ``reprokit verify`` leaves it, newer than the lock."""
    folder = project.root / ".reprokit" / "runs" / "29991231T235959Z-abcdef" / "fig3"
    (folder / "verification").mkdir(parents=True)
    verdict = {"notebook": "notebooks/fig3.ipynb", "reproduced": True, "command": "reprokit v"}
    document = {"report_version": 1, "reproduced": True, "verdicts": [verdict]}
    (folder / "verification" / "verdict.json").write_text(json.dumps(document))
    (folder / "verification" / "report.html").write_text("<html>REPRODUCED</html>")
    node = json.loads(project.notebook.read_text())
    node["metadata"]["papermill"] = {
        "start_time": "2999-12-31T23:59:59.5+00:00",
        "end_time": "2999-12-31T23:59:59.9+00:00",
    }
    (folder / "fig3.ipynb").write_text(json.dumps(node))


def _entities(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entity["@id"]: entity for entity in document["@graph"]}


def _ids(value: Any) -> list[str]:
    listed = value if isinstance(value, list) else [value]
    return [item["@id"] for item in listed]


def _types(entity: dict[str, Any]) -> set[str]:
    kind = entity["@type"]
    return set(kind if isinstance(kind, list) else [kind])


ISO_8601 = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d{3})?[+-]\d{2}:\d{2})?$")
"""ISO 8601 as rocrate-validator's Process Run Crate shapes take it: seconds, milliseconds at
most, a numeric offset."""


def profile_problems(document: dict[str, Any], files: set[str]) -> list[str]:
    """What ``document`` lacks of RO-Crate 1.1 and the Process Run Crate 0.5 profile (their
    MUSTs, and the SHOULDs this bundle promises: names, versions, times, status)."""
    problems: list[str] = []
    entities = _entities(document)
    descriptor = entities.get("ro-crate-metadata.json", {})
    if descriptor.get("conformsTo") != {"@id": RO_CRATE} or descriptor.get("about") != {
        "@id": "./"
    }:
        problems.append("metadata descriptor: conformsTo RO-Crate 1.1 and about ./")
    root = entities.get("./", {"@type": "none"})
    if "Dataset" not in _types(root):
        problems.append("root: a Dataset")
    for field in ("name", "description", "datePublished", "license"):
        if field not in root:
            problems.append(f"root: {field}")
    if not ISO_8601.match(root.get("datePublished", "")):
        problems.append("root: datePublished in ISO 8601")
    profile = entities.get(PROCESS_RUN_CRATE, {"@type": "none"})
    if PROCESS_RUN_CRATE not in _ids(root.get("conformsTo", [])) or "CreativeWork" not in _types(
        profile
    ):
        problems.append("root: conformsTo the profile's permalink, a CreativeWork entity")
    for part in _ids(root.get("hasPart", [])):
        if part not in files or not _types(entities.get(part, {"@type": []})) & {"File"}:
            problems.append(f"hasPart {part}: a File entity of a file in the crate")
    actions = [e for e in entities.values() if _types(e) & {"CreateAction"}]
    if not actions:
        problems.append("no CreateAction")
    for action in actions:
        problems += _action_problems(action, entities, _ids(root.get("mentions", [])))
    return problems


def _action_problems(
    action: dict[str, Any], entities: dict[str, dict[str, Any]], mentions: list[str]
) -> list[str]:
    where = f"action {action['@id']}"
    problems = [] if action["@id"] in mentions else [f"{where}: listed in the root's mentions"]
    tool = entities.get(action.get("instrument", {}).get("@id", ""), {"@type": "none"})
    if "SoftwareApplication" not in _types(tool):
        problems.append(f"{where}: instrument is a SoftwareApplication entity")
    if not (tool.get("softwareVersion") or tool.get("version")) or not tool.get("name"):
        problems.append(f"{where}: the instrument has a name and a version")
    for field in ("name", "description", "endTime", "result", "actionStatus"):
        if field not in action:
            problems.append(f"{where}: {field}")
    for field in ("startTime", "endTime"):
        if field in action and not ISO_8601.match(action[field]):
            problems.append(f"{where}: {field} in ISO 8601")
    status = action.get("actionStatus", "")  # a string: the validator's shapes take no @id
    if status not in (
        "http://schema.org/CompletedActionStatus",
        "http://schema.org/FailedActionStatus",
    ):
        problems.append(f"{where}: actionStatus Completed or Failed")
    for ref in _ids(action.get("object", [])) + _ids(action.get("result", [])):
        if ref not in entities:
            problems.append(f"{where}: {ref} is not an entity of the crate")
    return problems


def test_ro_crate_metadata_has_the_profiles_required_fields(project: Project) -> None:
    _add_verification(project)
    out = project.root.parent / "artifact.zip"
    done = bundle([project.notebook], out, BundleOptions(license="CC-BY-4.0"))
    assert done.unverified == ()
    document = json.loads(_member(out, "ro-crate-metadata.json"))
    files = set(_names(out)) - {"ro-crate-metadata.json"}
    assert profile_problems(document, files) == []
    entities = _entities(document)
    assert set(_ids(entities["./"]["hasPart"])) == files  # every file described
    verify = entities["#verify-0"]
    assert verify["name"] == "Verify notebooks/fig3.ipynb: reproduced"
    assert verify["startTime"] == "2999-12-31T23:59:59+00:00"  # whole seconds
    assert set(_ids(verify["object"])) >= {"notebooks/fig3.ipynb", "notebooks/fig3.repro.json"}
    assert set(_ids(verify["object"])) >= {"data/a.csv", "data/b.csv"}
    assert _ids(verify["result"]) == [
        "reports/notebooks/fig3/report.html",
        "reports/notebooks/fig3/verdict.json",
    ]
    assert _member(out, "reports/notebooks/fig3/report.html") == b"<html>REPRODUCED</html>"
    assert entities["https://spdx.org/licenses/CC-BY-4.0"]["name"] == "CC-BY-4.0"


def test_the_checker_catches_a_crate_without_an_instrument(project: Project) -> None:
    out = project.root.parent / "artifact.zip"
    bundle([project.notebook], out)
    document = json.loads(_member(out, "ro-crate-metadata.json"))
    files = set(_names(out)) - {"ro-crate-metadata.json"}
    assert profile_problems(document, files) == []  # a recording alone is a process run too
    for entity in document["@graph"]:
        if entity["@id"] == "#record-0":
            del entity["instrument"]
        if entity["@id"] == "./":
            entity["conformsTo"] = {"@id": RO_CRATE}
    assert len(profile_problems(document, files)) == 3


def test_a_verification_older_than_the_lock_is_not_packed(project: Project) -> None:
    _add_verification(project)
    runs = project.root / ".reprokit" / "runs"
    (runs / "29991231T235959Z-abcdef").rename(runs / "20000101T000000Z-abcdef")
    done = bundle([project.notebook], project.root.parent / "artifact.zip")
    assert done.unverified == ("notebooks/fig3.ipynb",)


# ----------------------------------------------------------------------------- CITATION.cff

CFF_KEYS = {
    "abstract", "authors", "cff-version", "commit", "contact", "date-released", "doi",
    "identifiers", "keywords", "license", "license-url", "message", "preferred-citation",
    "references", "repository", "repository-artifact", "repository-code", "title", "type",
    "url", "version",
}  # fmt: skip


def test_citation_cff_is_a_valid_stub_without_guessed_authors(project: Project) -> None:
    out = project.root.parent / "artifact.zip"
    bundle([project.notebook], out)
    cff = yaml.safe_load(_member(out, "CITATION.cff"))
    assert set(cff) <= CFF_KEYS
    assert {"cff-version", "message", "title", "authors"} <= set(cff)
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "dataset"
    assert cff["authors"][0]["name"].startswith("FILL IN")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", cff["date-released"])
    bundle([project.notebook], out, BundleOptions(authors=("Ada Lovelace",), license="MIT"))
    cff = yaml.safe_load(_member(out, "CITATION.cff"))
    assert cff["authors"] == [{"name": "Ada Lovelace"}] and cff["license"] == "MIT"
    assert b"@" not in _member(out, "CITATION.cff")  # never an e-mail address


# ----------------------------------------------------------------------------- hostile zips


def _zip_with(path: Path, name: str, data: bytes = b"x", mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.create_system = 3
            info.external_attr = mode << 16
        archive.writestr(info, data)
    return path


@pytest.mark.parametrize(
    ("name", "mode", "why"),
    [
        ("../evil.txt", None, "leaves the archive's folder"),
        ("a/../../evil.txt", None, "leaves the archive's folder"),
        ("/tmp/evil.txt", None, "absolute or malformed"),
        ("C:/evil.txt", None, "absolute or malformed"),
        ("a\\..\\evil.txt", None, "absolute or malformed"),
        ("link", 0o120777, "symbolic link"),
    ],
)
def test_malicious_entries_are_refused_before_anything_is_written(
    tmp_path: Path, name: str, mode: int | None, why: str
) -> None:
    archive = _zip_with(tmp_path / "bad.zip", name, b"/etc/passwd", mode)
    with pytest.raises(PathError, match=re.escape(why)):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_too_many_entries_or_bytes_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for k in range(5):
            out.writestr(f"f{k}", b"\0" * 1000)
    with pytest.raises(PathError, match="5 entries, more than 4"):
        extract_zip(archive, tmp_path / "a", ZipLimits(max_entries=4))
    with pytest.raises(PathError, match="5000 bytes once unpacked"):
        extract_zip(archive, tmp_path / "b", ZipLimits(max_bytes=4999))
    assert extract_zip(archive, tmp_path / "c", ZipLimits(max_entries=5, max_bytes=5000))


def _forged_bomb(archive: Path, entries: int, size: int) -> Path:
    """A zip whose ``entries`` members each declare ``size`` uncompressed bytes (in the local
    and the central header) while holding 100: a bomb's headers, without writing gigabytes."""
    with zipfile.ZipFile(archive, "w") as out:
        for k in range(entries):
            out.writestr(f"part{k}.ipynb", b"\0" * 100)
    data = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        for found in re.finditer(re.escape(signature), bytes(data)):
            data[found.start() + offset : found.start() + offset + 4] = struct.pack("<I", size)
    archive.write_bytes(bytes(data))
    return archive


def test_verify_refuses_a_bomb_in_one_line_with_exit_2(tmp_path: Path) -> None:
    archive = _forged_bomb(tmp_path / "bomb.zip", 5, 0xFFFF_FFFE)  # 21 GB declared
    result = CliRunner().invoke(main, ["verify", str(archive)])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert "once unpacked, more than the limit of 17179869184" in result.output
    assert not (tmp_path / "bomb.verify").exists() or not list(
        (tmp_path / "bomb.verify").rglob("*.ipynb")
    )


def test_verify_refuses_a_zip_slip_with_exit_2(tmp_path: Path) -> None:
    archive = _zip_with(tmp_path / "slip.zip", "../../escaped.txt")
    result = CliRunner().invoke(main, ["verify", str(archive)])
    assert result.exit_code == 2
    assert "leaves the archive's folder" in result.output and "Traceback" not in result.output
    assert not list(tmp_path.rglob("escaped.txt"))


def test_unpacking_puts_runs_beside_the_zip_unless_an_output_folder_is_given(
    project: Project,
) -> None:
    out = project.root.parent / "artifact.zip"
    bundle([project.notebook], out)
    paths, execution = unpack_bundles([out], None)
    assert execution is not None and execution.output_dir is not None
    unpacked = Path(paths[0])
    assert unpacked.name == "bundle" and unpacked.parent.parent == out.with_suffix(".verify")
    assert Path(execution.output_dir) == unpacked.parent / "runs"
    assert (unpacked / "notebooks" / "fig3.repro.json").is_file()
    given = ExecutionOptions(output_dir=project.root.parent / "mine", jobs=2)
    paths, execution = unpack_bundles([out], given)
    assert execution == given  # every other option passes through unchanged
    assert Path(paths[0]).parent.parent == project.root.parent / "mine"


def test_data_changed_since_the_lock_is_named_when_bundling(project: Project) -> None:
    out = project.root.parent / "artifact.zip"
    assert bundle([project.notebook], out).changed_data == ()
    (project.data / "a.csv").write_text("x,y\n9,9\n")
    result = CliRunner().invoke(main, ["bundle", str(project.notebook), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "data changed since the lock of notebooks/fig3.ipynb: data changed" in result.output


def test_the_bundle_folder_is_made_and_a_zip_without_a_lock_is_refused(
    project: Project, tmp_path: Path
) -> None:
    out = project.root / "out" / "deep" / "a.zip"
    bundle([project.notebook], out)  # its folder made, as for --report
    assert out.is_file()
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("notes.txt", "not a bundle")
    with pytest.raises(UsageError, match=r"plain\.zip: not a reprokit bundle"):
        unpack_bundles([plain], None)
    assert not (tmp_path / "plain.verify").exists() or not any(
        (tmp_path / "plain.verify").iterdir()
    )  # nothing unpacked is left behind


# ----------------------------------------------------------------------------- incomplete bundles


def _without(archive: Path, target: Path, *dropped: str) -> Path:
    """``archive`` copied to ``target`` without the members ``dropped``."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(target, "w") as out:
        for info in source.infolist():
            if info.filename not in dropped:
                out.writestr(info, source.read(info))
    return target


def _two_notebooks(project: Project) -> Path:
    """A bundle of fig3 and a second notebook, fig4, each with its lock."""
    second = project.notebook.with_name("fig4.ipynb")
    second.write_bytes(project.notebook.read_bytes())
    lock = build_lock(
        second, executed(project, [encode_result("acc", 0.5)]), project_root=project.root
    )
    write_lock(lock, second.with_name("fig4.repro.json"))
    out = project.root.parent / "artifact.zip"
    bundle([project.root / "notebooks"], out)
    return out


def test_a_bundle_that_lost_a_listed_notebooks_lock_is_refused(project: Project) -> None:
    out = _two_notebooks(project)
    lost = _without(out, project.root.parent / "nolock.zip", "notebooks/fig4.repro.json")
    with pytest.raises(UsageError, match=r"lists notebooks/fig4\.ipynb without its lock"):
        unpack_bundles([lost], None)
    assert not any(p.is_file() for p in (project.root.parent / "nolock.verify").rglob("*"))
    result = CliRunner().invoke(main, ["verify", str(lost), "--device", "cpu", "--no-record"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert "notebooks/fig4.ipynb without its lock notebooks/fig4.repro.json" in result.output
    gone = _without(out, project.root.parent / "gone.zip", "notebooks/fig4.ipynb")
    with pytest.raises(UsageError, match=r"notebooks/fig4\.ipynb \(not in the bundle\)"):
        unpack_bundles([gone], None)


def test_a_bundle_without_its_crate_metadata_is_refused(project: Project) -> None:
    out = _two_notebooks(project)
    bare = _without(out, project.root.parent / "bare.zip", "ro-crate-metadata.json")
    with pytest.raises(UsageError, match=r"no readable ro-crate-metadata\.json"):
        unpack_bundles([bare], None)


def test_a_listed_notebook_hidden_from_discovery_is_still_verified(project: Project) -> None:
    out = _two_notebooks(project)
    with zipfile.ZipFile(out, "a") as archive:
        archive.writestr("notebooks/.reprokit-output", "")  # discovery skips this folder
    paths, _ = unpack_bundles([out], None)
    unpacked = Path(paths[0])
    assert paths[1:] == [unpacked / "notebooks/fig3.ipynb", unpacked / "notebooks/fig4.ipynb"]
    paths, _ = unpack_bundles([_two_notebooks(project)], None)
    assert len(paths) == 1  # found by discovery: given once
