"""``verify --rebuild-env`` for real: a lock pinning an older ``six`` than this venv's and a
package from a local git repository (``git+file://``) is rebuilt into a cached virtual
environment from the package index, the notebook runs in that environment's kernel, and the
report says what matched; without the flag the env diff names the change; a second run reuses
the environment; an unavailable pin refuses with exit 2 before anything runs.

Each environment build costs tens of seconds: one build for the whole module."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.run_helpers import demo_project, reprokit_cli, write_notebook

pytestmark = pytest.mark.slow

OLD_SIX = "1.16.0"
CELLS = [
    "%load_ext reprokit",
    "import six\nimport reprokit\n%repro start --seed 0",
    "try:\n    import fakepkg\n    value = fakepkg.VALUE\nexcept ImportError:\n    value = -1",
    "reprokit.result('six_version', six.__version__)\nreprokit.result('fake', value)",
]


def _git_package(folder: Path) -> tuple[str, str]:
    """A tiny package in a local git repository: its ``file://`` URL and commit."""
    folder.mkdir()
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core>=3.4"]\nbuild-backend = "flit_core.buildapi"\n'
        '[project]\nname = "fakepkg"\nversion = "0.3.0"\ndescription = "x"\n'
    )
    (folder / "fakepkg.py").write_text(
        '"""A package from git."""\n__version__ = "0.3.0"\nVALUE = 42\n'
    )

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fakepkg")
    return folder.resolve().as_uri(), git("rev-parse", "HEAD")


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path) -> dict[str, object]:
    """A project recorded here, its lock then pinning six 1.16.0 and fakepkg from git (as if
    recorded where those were installed): the results say what that environment gave."""
    base = tmp_path_factory.mktemp("rebuild")
    project = demo_project(base, mlflow_template_db)
    write_notebook(project / "nb.ipynb", CELLS)
    url, commit = _git_package(base / "fakepkg-repo")
    cache = base / "envs"
    env = {"REPROKIT_ENV_CACHE": str(cache)}
    assert reprokit_cli("record", "nb.ipynb", "--device", "cpu", cwd=project).returncode == 0
    lock_path = project / "nb.repro.json"
    data = json.loads(lock_path.read_text())
    snapshot = data["snapshot"]
    snapshot["packages"] = {"six": OLD_SIX, "fakepkg": "0.3.0"}
    origin = {"kind": "vcs", "url": url, "local": True, "vcs": "git", "commit": commit}
    snapshot["distributions"] = {"six": {"requested": True}, "fakepkg": {"origin": origin}}
    data["results"]["six_version"]["value"] = OLD_SIX
    data["results"]["fake"]["value"] = 42
    lock_path.write_text(json.dumps(data, indent=1, sort_keys=True))
    return {"project": project, "env": env, "cache": cache, "lock": lock_path}


def test_the_rebuilt_kernel_has_the_locked_versions_and_the_report_says_so(
    locked: dict[str, object],
) -> None:
    project, env = locked["project"], locked["env"]
    assert isinstance(project, Path) and isinstance(env, dict)
    done = reprokit_cli(
        "verify", "nb.ipynb", "--rebuild-env", "--json", "v.json", cwd=project, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "REPRODUCED nb.ipynb" in done.stdout
    assert "built with" in done.stdout and "2 of 2 pins as locked" in done.stdout
    assert "installed from the running reprokit" in done.stdout
    rebuilt = json.loads((project / "v.json").read_text())["verdicts"][0]["rebuilt"]
    assert rebuilt["matched"] == rebuilt["pins"] == 2 and not rebuilt["reused"]
    # a second verification reuses the environment: one folder in the cache, no build
    # (--force: the skip cache would reuse the first verdict without running anything)
    again = reprokit_cli("verify", "nb.ipynb", "--rebuild-env", "--force", cwd=project, env=env)
    assert again.returncode == 0 and "reused from the cache" in again.stdout
    cache = locked["cache"]
    assert isinstance(cache, Path)
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] != []
    assert not [p for p in cache.iterdir() if p.name.startswith(".building-")]
    listed = reprokit_cli("env", "list", cwd=project, env=env)
    assert listed.returncode == 0 and "2 pins" in listed.stdout


def test_without_the_flag_the_env_diff_names_the_locked_version(locked: dict[str, object]) -> None:
    project, env = locked["project"], locked["env"]
    assert isinstance(project, Path) and isinstance(env, dict)
    done = reprokit_cli("verify", "nb.ipynb", "--json", "plain.json", cwd=project, env=env)
    assert done.returncode == 1
    verdict = json.loads((project / "plain.json").read_text())["verdicts"][0]
    changes = {c["key"]: c for c in verdict["env_diff"]["changes"]}
    assert changes["six"]["reference"] == OLD_SIX and changes["six"]["current"] != OLD_SIX
    assert verdict["rebuilt"] is None and "rebuilt" not in done.stdout


def test_an_unavailable_pin_refuses_with_exit_2_before_anything_runs(
    locked: dict[str, object], tmp_path: Path
) -> None:
    project, env = locked["project"], locked["env"]
    lock = locked["lock"]
    assert isinstance(project, Path) and isinstance(env, dict) and isinstance(lock, Path)
    data = json.loads(lock.read_text())
    data["snapshot"]["packages"]["six"] = "99.0.0"
    nb = project / "other.ipynb"
    nb.write_bytes((project / "nb.ipynb").read_bytes())
    data["notebook"]["path"] = "other.ipynb"
    (project / "other.repro.json").write_text(json.dumps(data))
    runs = project / ".reprokit" / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    done = reprokit_cli("verify", "other.ipynb", "--rebuild-env", cwd=project, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "reprokit: unavailable: six 99.0.0 not found" in done.stderr
    assert "nothing was run" in done.stderr and "Traceback" not in done.stderr
    assert (set(runs.iterdir()) if runs.exists() else set()) == before
