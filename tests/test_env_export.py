"""``reprokit env export``: requirements.txt, pylock.toml (PEP 751) and environment.yml from a
lock, every distribution or only the imported ones with their dependencies; unpinnable ones
named; hostile locks refused before anything is written."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import tomllib
import yaml
from click.testing import CliRunner

from reprokit.capturing.model import Distribution, PackageOrigin, Snapshot
from reprokit.cli import main
from reprokit.exceptions import LockError
from reprokit.recording.envspec import env_spec
from reprokit.report.envexport import Artifact, export_text
from tests.lock_helpers import make_project, record, scalar_results

VCS = PackageOrigin("vcs", url="https://example.org/a/fancy.git", vcs="git", commit="c" * 40)
EDITABLE = PackageOrigin("directory", local=True, local_name="proj", editable=True)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    project = make_project(tmp_path_factory.mktemp("export"))
    snapshot = record(project, scalar_results()).snapshot
    assert snapshot is not None
    return snapshot


def _snapshot(base: Snapshot) -> Snapshot:
    packages = {"fancy": "1.0", "six": "1.16.0", "proj": "0.3", "idle": "2.0", "dep": "1.1"}
    distributions = {
        "fancy": Distribution(True, VCS, ("dep",)),
        "proj": Distribution(True, EDITABLE, ("six",)),
        "six": Distribution(False),
        "dep": Distribution(False),
        "idle": Distribution(True),
    }
    return replace(
        base,
        packages=packages,
        distributions=distributions,
        imported={"fancy": "1.0", "proj": "0.3"},
        imported_distributions=("fancy", "proj"),
    )


def test_requirements_pin_every_distribution_and_name_the_unpinnable(base: Snapshot) -> None:
    spec = env_spec(_snapshot(base), "fig.repro.json")
    text = export_text(spec, "requirements", source="fig.repro.json")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        "dep==1.1",
        f"fancy @ git+https://example.org/a/fancy.git@{'c' * 40}",
        "idle==2.0",
        "six==1.16.0",
    ]
    assert "#   proj 0.3 (local directory proj, editable)" in text


def test_only_imported_follows_the_recorded_dependency_edges(base: Snapshot) -> None:
    spec = env_spec(_snapshot(base), "x", only_imported=True)
    assert [p.name for p in spec.pins] == ["dep", "fancy", "six"]  # not idle
    assert [p.name for p in spec.unpinnable] == ["proj"]


def test_pylock_has_the_required_fields_of_pep_751(base: Snapshot) -> None:
    pylock = pytest.importorskip("packaging.pylock")
    spec = env_spec(_snapshot(base), "x")
    wheel = "https://files.example.org/six-1.16.0-py2.py3-none-any.whl"
    artifacts = {
        "six": Artifact(wheel, "ab" * 32),
        "dep": Artifact("https://f/dep-1.1.tar.gz", "cd" * 32),
        "idle": Artifact("https://f/idle-2.0-py3-none-any.whl", "ef" * 32),
    }
    text = export_text(spec, "pylock", source="x", artifacts=artifacts)
    data = tomllib.loads(text)
    lock = pylock.Pylock.from_dict(data)  # validates: raises on a missing or wrong field
    assert str(lock.lock_version) == "1.0" and lock.created_by == "reprokit"
    by_name = {p.name: p for p in lock.packages}
    assert by_name["fancy"].vcs.commit_id == "c" * 40
    assert by_name["six"].wheels[0].url == wheel
    assert by_name["dep"].sdist is not None


def test_conda_environment_pins_python_and_lists_pip_requirements(base: Snapshot) -> None:
    spec = env_spec(_snapshot(base), "x")
    data = yaml.safe_load(export_text(spec, "conda", source="x", env_name="fig 3"))
    assert data["name"] == "fig-3"
    assert f"python={base.python.version}" in data["dependencies"]
    pip = next(d["pip"] for d in data["dependencies"] if isinstance(d, dict))
    assert "six==1.16.0" in pip and len(pip) == 4


@pytest.mark.parametrize(
    ("packages", "origin", "field"),
    [
        ({"../../etc": "1.0"}, None, "$.snapshot.packages"),
        ({"six": "1.0\n--index-url http://evil"}, None, "$.snapshot.packages.six"),
        ({"six": "1.0"}, replace(VCS, url="https://h/r.git --pre"), "origin"),
        ({"six": "1.0"}, replace(VCS, commit="../x"), "origin.commit"),
        ({"six": "1.0"}, replace(VCS, vcs="rm -rf"), "origin"),
        ({"six": "1.0"}, replace(VCS, url="ext://sh -c id"), "origin"),
        ({"six": "1.0"}, replace(VCS, url="ext://x"), "origin.url"),
        ({"six": "1.0"}, PackageOrigin("archive", url="ftp://h/six.whl"), "origin.url"),
    ],
)
def test_a_hostile_lock_is_refused_naming_the_field(
    base: Snapshot, packages: dict[str, str], origin: PackageOrigin | None, field: str
) -> None:
    hostile = replace(base, packages=packages, distributions={"six": Distribution(origin=origin)})
    with pytest.raises(LockError) as raised:
        env_spec(hostile, "fig.repro.json")
    assert raised.value.field is not None and field in raised.value.field


def test_the_command_writes_atomically_and_says_what_it_left_out(
    tmp_path: Path, base: Snapshot
) -> None:
    project = make_project(tmp_path)
    record(project, scalar_results())
    data = json.loads(project.lock_path.read_text())
    snap = _snapshot(base)
    token = "ghp_" + "Zq8" * 12
    data["snapshot"]["packages"] = snap.packages
    data["snapshot"]["distributions"] = json.loads(
        json.dumps({k: v.__dict__ for k, v in snap.distributions.items()}, default=vars)
    )
    # a lock written by hand, with a credential capture would never have kept
    data["snapshot"]["distributions"]["fancy"]["origin"]["url"] = f"https://u:{token}@h/f.git"
    project.lock_path.write_text(json.dumps(data))
    out = tmp_path / "requirements.txt"
    done = CliRunner().invoke(main, ["env", "export", str(project.notebook), "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert token not in done.output + out.read_text()
    assert "not pinnable, left out: proj 0.3 (local directory proj, editable)" in done.output
    assert "fancy @ git+https://h/f.git@" in out.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_unknown_lock_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = CliRunner().invoke(main, ["env", "export", str(tmp_path / "nope.repro.json")])
    assert done.exit_code == 2
    assert done.output.count("\n") == 1 and "nope.repro.json" in done.output


def test_an_output_in_a_new_folder_is_written_and_an_unwritable_one_is_one_line(
    tmp_path: Path,
) -> None:
    """``-o env/requirements.txt`` makes its folder, as the report options do; a path that
    cannot be written was a traceback after the export (exit 1): one line naming it, exit 2."""
    project = make_project(tmp_path)
    record(project, scalar_results())
    out = tmp_path / "env" / "nested" / "requirements.txt"
    done = CliRunner().invoke(main, ["env", "export", str(project.notebook), "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert out.read_text().startswith("# exported by reprokit")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    bad = blocked / "requirements.txt"  # its "folder" is a file
    done = CliRunner().invoke(main, ["env", "export", str(project.notebook), "-o", str(bad)])
    assert done.exit_code == 2, done.output
    assert "Traceback" not in done.output and "--output" in done.output and str(bad) in done.output
