"""``reprokit hash`` and ``reprokit env`` from the command line: output, exit codes, errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
from click.testing import CliRunner

from reprokit._serde import from_json
from reprokit.capturing.model import DataManifest, Snapshot
from reprokit.cli import main


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("REPROKIT_CACHE_DIR", str(cache_dir))
    return cache_dir


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.csv").write_bytes(b"x,y\n1,2\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    return root


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reprokit", *args],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ.copy(),
    )


def test_hash_file_matches_reference_digests(data: Path) -> None:
    target = data / "a.csv"
    runner = CliRunner()
    out = runner.invoke(main, ["hash", str(target)])
    assert out.exit_code == 0, out.output
    assert out.output == f"{blake3.blake3(target.read_bytes()).hexdigest()}  {target}\n"
    out = runner.invoke(main, ["hash", "--algo", "sha256", str(target)])
    assert out.output.split()[0] == hashlib.sha256(target.read_bytes()).hexdigest()
    out = runner.invoke(main, ["hash", "--algo", "md5", str(target)])
    assert out.output.split()[0] == hashlib.md5(target.read_bytes()).hexdigest()


def test_hash_directory_lists_files_on_request(data: Path) -> None:
    out = CliRunner().invoke(main, ["hash", "--files", str(data)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("# ") and "Merkle digest of 2 files" in lines[0]
    assert lines[1].endswith(f"{data}/a.csv")
    assert lines[2].endswith(f"{data}/sub/b.bin")


def test_hash_json_is_a_manifest(data: Path) -> None:
    out = CliRunner().invoke(main, ["hash", "--json", str(data), str(data / "a.csv")])
    assert out.exit_code == 0, out.output
    manifest = from_json(out.output, DataManifest)
    assert [entry.kind for entry in manifest.entries] == ["dir", "file"]
    assert len(manifest.entries[0].files) == 2


def test_expect_match_and_mismatch_exit_codes(data: Path) -> None:
    target = data / "a.csv"
    good = "sha256:" + hashlib.sha256(target.read_bytes()).hexdigest()
    bad = "sha256:" + "0" * 64
    assert CliRunner().invoke(main, ["hash", str(target), "--expect", good]).exit_code == 0
    result = _cli("hash", str(target), "--expect", bad)
    assert result.returncode == 1
    assert str(target) in result.stderr
    assert "mismatch" in result.stderr
    assert "Traceback" not in result.stderr


def test_expect_with_other_algorithm_than_default(data: Path) -> None:
    target = data / "a.csv"
    md5 = "md5:" + hashlib.md5(target.read_bytes()).hexdigest()
    out = CliRunner().invoke(main, ["hash", "--algo", "blake3", str(target), "--expect", md5])
    assert out.exit_code == 0, out.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["hash", "{data}/missing.csv"], "missing.csv"),
        (["hash", "{data}/a.csv", "--expect", "crc32:abcd"], "crc32"),
        (["hash", "{data}/a.csv", "--expect", "sha256:zz"], "sha256"),
        (["hash", "{data}/a.csv", "{data}", "--expect", "md5:" + "0" * 32], "--expect"),
        (["hash", "--algo", "sha1", "{data}/a.csv"], "sha1"),
        (["hash", ""], "empty path"),
    ],
)
def test_bad_input_exits_two_with_one_clear_line(data: Path, args: list[str], needle: str) -> None:
    result = _cli(*[arg.format(data=data) for arg in args])
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_cache_is_written_unless_disabled(data: Path, private_cache: Path) -> None:
    assert CliRunner().invoke(main, ["hash", "--no-cache", str(data)]).exit_code == 0
    assert not private_cache.exists() or not any(private_cache.iterdir())
    assert CliRunner().invoke(main, ["hash", str(data)]).exit_code == 0
    assert any(private_cache.iterdir())


def test_env_text_and_json() -> None:
    out = CliRunner().invoke(main, ["env"])
    assert out.exit_code == 0, out.output
    for section in ("Python", "Platform", "Packages", "Git", "GPU / CUDA"):
        assert section in out.output
    out = CliRunner().invoke(main, ["env", "--json"])
    snapshot = from_json(out.output, Snapshot)
    assert snapshot.python.version.startswith(f"{sys.version_info[0]}.{sys.version_info[1]}")


def test_version_and_module_entry_point() -> None:
    result = _cli("--version")
    assert result.returncode == 0
    assert "reprokit" in result.stdout


def test_hash_command_imports_nothing_heavy(data: Path) -> None:
    code = (
        "import sys\n"
        "from reprokit.cli import main\n"
        f"sys.argv = ['reprokit', 'hash', {str(data)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = {'mlflow', 'torch', 'numpy', 'pandas', 'papermill', 'IPython', 'rich'}\n"
        "heavy |= {'msgspec'}\n"
        "print(sorted(heavy & set(sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stderr.strip().splitlines()[-1] == "[]"


def test_env_json_is_valid_json_even_for_empty_sections() -> None:
    out = CliRunner().invoke(main, ["env", "--json"])
    data = json.loads(out.output)
    assert data["schema_version"] >= 1


def test_files_listing_is_a_valid_checksum_file(data: Path, tmp_path: Path) -> None:
    import shutil

    if shutil.which("sha256sum") is None:
        pytest.skip("sha256sum not installed")
    out = CliRunner().invoke(main, ["hash", "--algo", "sha256", "--files", str(data)])
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(out.output)
    check = subprocess.run(
        ["sha256sum", "-c", str(sums)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 2


def test_one_file_folder_is_singular(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "x").write_text("x")
    out = CliRunner().invoke(main, ["hash", str(tmp_path / "one")])
    assert "Merkle digest of 1 file," in out.output
