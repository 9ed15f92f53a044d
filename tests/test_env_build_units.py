"""The rebuilt-environment machinery without building one: the digest, torch on the CPU, the
nearest version, the cache (listing, pruning, killed builds), the private kernel and the
command line's refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from reprokit.capturing.model import PackageOrigin
from reprokit.cli import main
from reprokit.exceptions import EnvUnavailableError
from reprokit.recording.envspec import EnvSpec, Pin
from reprokit.runner.envbuild import MANIFEST, env_digest, prepare_env
from reprokit.runner.envcache import list_envs, prune_envs
from reprokit.runner.envresolve import for_device, nearest_version
from reprokit.runner.execute import kernel_manager_for

SPEC = EnvSpec("3.11.7", "CPython", "cp311", "linux_x86_64", (Pin("six", "1.16.0"),))


def test_the_digest_names_what_is_installed() -> None:
    digest = env_digest(SPEC, "3.11", "pip", "", "strict")
    assert digest == env_digest(SPEC, "3.11", "pip", "", "strict")
    other_pin = replace(SPEC, pins=(Pin("six", "1.17.0"),))
    assert (
        len(
            {
                digest,
                env_digest(other_pin, "3.11", "pip", "", "strict"),
                env_digest(SPEC, "3.12", "pip", "", "strict"),
                env_digest(SPEC, "3.11", "uv", "", "strict"),
                env_digest(SPEC, "3.11", "pip", "", "best-effort"),
            }
        )
        == 5
    )


def test_on_the_cpu_torch_loses_its_cuda_build_and_libraries() -> None:
    pins = (
        Pin("nvidia-cublas-cu12", "12.1"),
        Pin("nvidia-ml-py", "13.0"),  # NVML bindings: no CUDA, kept
        Pin("six", "1.0"),
        Pin("torch", "2.4.0+cu121"),
        Pin("triton", "3.0"),
    )
    spec, notes = for_device(replace(SPEC, pins=pins), "cpu")
    kept = [(p.name, p.version) for p in spec.pins]
    assert kept == [("nvidia-ml-py", "13.0"), ("six", "1.0"), ("torch", "2.4.0")]
    assert notes and "nvidia-cublas-cu12" in notes[0]
    assert for_device(replace(SPEC, pins=pins), "cuda")[0].pins == pins


def test_the_nearest_version_is_the_newest_not_above_else_the_oldest_above() -> None:
    assert nearest_version("1.16.5", ["1.15.0", "1.16.0", "1.17.0"]) == "1.16.0"
    assert nearest_version("0.1", ["1.15.0", "1.16.0"]) == "1.15.0"
    assert nearest_version("1.0", []) is None


def test_a_vcs_pin_is_given_to_the_installer_as_a_url() -> None:
    origin = PackageOrigin("vcs", url="file:///r", local=True, vcs="git", commit="a" * 40)
    pin = Pin("fake", "0.3", origin)
    assert pin.requirement == f"fake @ git+file:///r@{'a' * 40}"
    assert pin.install_argument == f"git+file:///r@{'a' * 40}#egg=fake"


def _fake_env(root: Path, digest: str, age_s: float = 0) -> Path:
    env = root / digest
    env.mkdir(parents=True)
    (env / MANIFEST).write_text(json.dumps({"digest": digest, "pins": ["six==1.16.0"]}))
    (env / "last-used").touch()
    then = os.path.getmtime(env / "last-used") - age_s
    os.utime(env / "last-used", (then, then))
    return env


def test_prune_by_age_keeps_recent_ones_and_removes_killed_builds(tmp_path: Path) -> None:
    _fake_env(tmp_path, "a" * 32, age_s=10 * 86400)
    _fake_env(tmp_path, "b" * 32)
    code = "import os;print(os.getpid())"
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    killed = tmp_path / f".building-{'c' * 32}-{dead.stdout.strip()}-ab12"
    killed.mkdir()
    running = tmp_path / f".building-{'d' * 32}-{os.getpid()}-ab12"
    running.mkdir()
    assert [e.digest for e in list_envs(tmp_path)] == ["b" * 32, "a" * 32]  # no half env listed
    removed = prune_envs(7 * 86400, tmp_path)
    assert [e.digest for e in removed] == ["a" * 32]
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name, "b" * 32]
    assert [e.digest for e in prune_envs(None, tmp_path)] == ["b" * 32]


def test_a_cached_env_is_reused_without_resolving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPROKIT_ENV_CACHE", str(tmp_path))
    monkeypatch.setattr("shutil.which", lambda name: None)  # pip, whatever is on PATH
    digest = env_digest(SPEC, f"{sys.version_info[0]}.{sys.version_info[1]}", "pip", "", "strict")
    _fake_env(tmp_path, digest)
    spec = replace(SPEC, python_version=".".join(map(str, sys.version_info[:3])))
    built = prepare_env(spec, "x.repro.json", device="cpu")
    assert built.reused and built.kernel_name == f"reprokit-{digest[:12]}"
    assert built.kernel_dir == str(tmp_path / digest / "share" / "jupyter" / "kernels")


def test_another_python_minor_is_refused_before_anything_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPROKIT_ENV_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no python2.7 to be found
    with pytest.raises(EnvUnavailableError) as raised:
        prepare_env(replace(SPEC, python_version="2.7.18"), "x.repro.json", device="cpu")
    assert raised.value.pins[0].startswith("python 2.7.18: no Python 2.7 here")
    assert "\n" not in str(raised.value) and list(tmp_path.iterdir()) == []


def test_a_private_kernel_is_looked_up_in_its_folder_and_loses_the_python_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    spec_dir = tmp_path / "k" / "reprokit-abc"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": ["/env/bin/python", "-f", "{connection_file}"],
                "display_name": "x",
                "language": "python",
            }
        )
    )
    manager = kernel_manager_for({}, kernel_dir=str(tmp_path / "k"))(kernel_name="reprokit-abc")
    assert manager.kernel_spec.argv[0] == "/env/bin/python"
    assert "PYTHONPATH" not in manager.kernel_env
    assert "PYTHONPATH" in kernel_manager_for({})().kernel_env  # an ordinary kernel keeps it


def test_the_command_line_explains_a_path_after_rebuild_env(tmp_path: Path) -> None:
    done = CliRunner().invoke(main, ["verify", "--rebuild-env", "nb.ipynb"])
    assert done.exit_code == 2
    assert "put --rebuild-env after the notebook" in done.output
    pruned = CliRunner().invoke(main, ["env", "prune"])
    assert pruned.exit_code == 2 and "exactly one of --older-than DAYS and --all" in pruned.output


def test_a_build_that_loses_the_race_takes_the_winner_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reprokit.runner import envbuild
    from reprokit.runner.envresolve import Installer

    final = tmp_path / ("e" * 32)

    def finished_elsewhere_meanwhile(plan: object, tmp: Path, final_path: Path) -> None:
        tmp.mkdir()
        (tmp / MANIFEST).write_text(json.dumps({"digest": "e" * 32, "installer": "pip"}))
        final_path.mkdir()  # another process renamed its complete build into place first
        (final_path / MANIFEST).write_text(json.dumps({"digest": "e" * 32, "installer": "uv"}))

    monkeypatch.setattr(envbuild, "_make_env", finished_elsewhere_meanwhile)
    plan = envbuild._Build(SPEC, Installer("pip", ()), sys.executable, [], "e" * 32, {}, (), ())
    built = envbuild._build(plan, final, force=False)
    assert built.reused and built.installer == "uv"
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def test_pip_s_refusal_names_the_pin_and_the_versions_there_are() -> None:
    from reprokit.runner.envresolve import _failing_pin

    stderr = (
        "ERROR: Could not find a version that satisfies the requirement Six==99.0.0 "
        "(from versions: 1.15.0, 1.16.0)\nERROR: No matching distribution found for six==99.0.0\n"
    )
    pins = [Pin("attrs", "1"), Pin("six", "99.0.0")]
    assert _failing_pin(stderr, pins) == (pins[1], ["1.15.0", "1.16.0"])
    none = "ERROR: ... satisfies the requirement zz==1.0 (from versions: none)"
    assert _failing_pin(none, [Pin("zz", "1.0")]) == (Pin("zz", "1.0"), [])
    assert _failing_pin("ERROR: network unreachable", pins) is None


def test_a_build_is_announced_before_it_starts_and_when_it_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reprokit.runner import envbuild

    monkeypatch.setenv("REPROKIT_ENV_CACHE", str(tmp_path))
    events: list[envbuild.EnvBuildEvent] = []
    built = envbuild.BuiltEnv("/env", "e" * 32, "/env/bin/python", "/k", "reprokit-e", False, "pip")

    def resolved(spec: EnvSpec, *args: object) -> tuple[EnvSpec, dict[str, str], tuple[()]]:
        assert len(events) == 1  # announced before pip or uv is asked anything
        return spec, {}, ()

    def build(plan: object, final: Path, force: bool) -> envbuild.BuiltEnv:
        assert len(events) == 1 and events[0].elapsed_s is None
        return built

    monkeypatch.setattr(envbuild, "_resolved", resolved)
    monkeypatch.setattr(envbuild, "_build", build)
    monkeypatch.setattr(envbuild.envresolve, "torch_index_args", lambda *args: [])
    spec = replace(SPEC, python_version=".".join(map(str, sys.version_info[:3])))
    assert prepare_env(spec, "x.repro.json", device="cpu", on_build=events.append) is built
    installer = envbuild.envresolve.find_installer().name
    assert events[0] == envbuild.EnvBuildEvent("x.repro.json", 1, installer)
    assert events[1].elapsed_s is not None and events[1].elapsed_s >= 0


def test_a_cached_env_is_not_announced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPROKIT_ENV_CACHE", str(tmp_path))
    monkeypatch.setattr("shutil.which", lambda name: None)  # pip, whatever is on PATH
    digest = env_digest(SPEC, f"{sys.version_info[0]}.{sys.version_info[1]}", "pip", "", "strict")
    _fake_env(tmp_path, digest)
    spec = replace(SPEC, python_version=".".join(map(str, sys.version_info[:3])))
    events: list[object] = []
    assert prepare_env(spec, "x.repro.json", device="cpu", on_build=events.append).reused
    assert events == []


def test_verify_rebuild_env_prints_a_line_before_and_after_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reprokit.runner import envbuild
    from reprokit.runner.envbuild import EnvBuildEvent
    from tests.lock_helpers import make_project, record, scalar_results

    project = make_project(tmp_path)
    record(project, scalar_results())

    def building(spec: EnvSpec, source: str, **kwargs: object) -> envbuild.BuiltEnv:
        on_build = kwargs["on_build"]
        assert callable(on_build)
        on_build(EnvBuildEvent(source, 42, "uv"))
        on_build(EnvBuildEvent(source, 42, "uv", 212.44))
        raise EnvUnavailableError(source, ("six 9.9 no such version; no version available",))

    monkeypatch.setattr(envbuild, "prepare_env", building)
    args = ["verify", str(project.notebook), "--rebuild-env", "--device", "cpu", "--no-record"]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 2, done.output
    lock = str(project.lock_path)
    assert done.stderr.splitlines()[:2] == [
        f"building the environment from {lock} (42 pins, uv): this can take minutes",
        f"built the environment from {lock} in 212.4 s",
    ]
