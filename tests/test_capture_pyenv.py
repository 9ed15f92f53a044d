"""Interpreter, installed distributions and imported-module versions."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from pathlib import Path

import pytest

from reprokit.capturing import pyenv
from reprokit.capturing.pyenv import (
    collect_imported,
    collect_packages,
    collect_python,
    normalize_name,
)


def test_python_facts_describe_this_interpreter() -> None:
    info = collect_python()
    assert info.version == ".".join(map(str, sys.version_info[:3]))
    assert info.implementation == "CPython" or info.implementation
    assert info.executable == sys.executable
    assert info.prefix == sys.prefix
    assert info.in_virtualenv == (sys.prefix != sys.base_prefix)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Foo_Bar.baz", "foo-bar-baz"), ("PyYAML", "pyyaml"), ("a--_.b", "a-b"), ("x", "x")],
)
def test_normalize_name_follows_pep_503(name: str, expected: str) -> None:
    assert normalize_name(name) == expected


def test_packages_match_importlib_metadata() -> None:
    expected: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            expected.setdefault(normalize_name(name), dist.version)  # first on sys.path wins
    packages = collect_packages()
    assert packages == expected
    assert list(packages) == sorted(packages)
    assert packages["reprokit-nb"]  # the distribution (the import name is reprokit)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_broken_and_legacy_distributions_do_not_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    _write(
        site / "Good_Pkg-2.0.dist-info" / "METADATA",
        "Metadata-Version: 2.1\nName: Good_Pkg\nVersion: 2.0\n\nbody",
    )
    (site / "broken_pkg-1.5.dist-info").mkdir()  # METADATA missing: the folder name says it
    (site / "nameless.dist-info").mkdir()  # nothing to go on: skipped
    _write(site / "garbled-3.0.dist-info" / "METADATA", "\x00\x01 no headers here")
    _write(site / "~ip-9.9.dist-info" / "METADATA", "Name: pip\nVersion: 9.9\n")  # pip leftover
    _write(
        site / "legacy_thing-0.3-py3.11.egg-info",
        "Metadata-Version: 1.0\nName: legacy-thing\nVersion: 0.3\n",
    )
    _write(site / "eggdir.egg-info" / "PKG-INFO", "Name: EggDir\nVersion: 4.1\n")
    monkeypatch.syspath_prepend(str(site))
    packages = collect_packages()
    assert packages["good-pkg"] == "2.0"
    assert packages["broken-pkg"] == "1.5"
    assert packages["garbled"] == "3.0"
    assert packages["legacy-thing"] == "0.3"
    assert packages["eggdir"] == "4.1"
    assert "nameless" not in packages
    assert packages.get("pip") != "9.9"


def test_first_distribution_on_sys_path_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for folder, version in (("first", "1.0"), ("second", "2.0")):
        _write(
            tmp_path / folder / f"dup-{version}.dist-info" / "METADATA",
            f"Name: dup\nVersion: {version}\n",
        )
    monkeypatch.syspath_prepend(str(tmp_path / "second"))
    monkeypatch.syspath_prepend(str(tmp_path / "first"))
    assert collect_packages()["dup"] == "1.0"


def test_cache_is_reused_until_an_install_or_removal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    assert "late-pkg" not in collect_packages()
    scan = pyenv._cache
    collect_packages()
    assert pyenv._cache is scan  # nothing changed: no new scan
    _write(site / "late_pkg-1.0.dist-info" / "METADATA", "Name: late-pkg\nVersion: 1.0\n")
    assert collect_packages()["late-pkg"] == "1.0"
    (site / "late_pkg-1.0.dist-info").rename(site / "late_pkg-1.1.dist-info")
    _write(site / "late_pkg-1.1.dist-info" / "METADATA", "Name: late-pkg\nVersion: 1.1\n")
    assert collect_packages()["late-pkg"] == "1.1"
    (site / "late_pkg-1.1.dist-info" / "METADATA").unlink()
    (site / "late_pkg-1.1.dist-info").rmdir()
    assert "late-pkg" not in collect_packages()


def test_imported_versions_by_name_by_top_level_and_by_dunder_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    _write(site / "PyFancy-1.2.dist-info" / "METADATA", "Name: PyFancy\nVersion: 1.2\n")
    _write(
        site / "PyFancy-1.2.dist-info" / "RECORD",
        "fancy/__init__.py,sha256=x,1\nfancy_ext.cpython-311-x86_64-linux-gnu.so,,\n",
    )
    _write(site / "nsa-1.0.dist-info" / "METADATA", "Name: nsa\nVersion: 1.0\n")
    _write(site / "nsa-1.0.dist-info" / "top_level.txt", "shared_ns\n")
    _write(site / "nsb-2.0.dist-info" / "METADATA", "Name: nsb\nVersion: 2.0\n")
    _write(site / "nsb-2.0.dist-info" / "top_level.txt", "shared_ns\n")
    monkeypatch.syspath_prepend(str(site))
    versioned = types.ModuleType("homegrown")
    versioned.__version__ = "0.0.7"  # type: ignore[attr-defined]
    modules = {
        "fancy": types.ModuleType("fancy"),
        "fancy_ext": types.ModuleType("fancy_ext"),
        "pyfancy": types.ModuleType("pyfancy"),
        "shared_ns": types.ModuleType("shared_ns"),
        "homegrown": versioned,
        "localhelper": types.ModuleType("localhelper"),
        "json": sys.modules["json"],
        "_private": types.ModuleType("_private"),
        "fancy.sub": types.ModuleType("fancy.sub"),
        "blocked": None,
        "threadpoolctl": types.ModuleType("threadpoolctl"),  # reprokit's own lazy import
    }
    assert collect_imported(modules) == {
        "fancy": "1.2",
        "fancy_ext": "1.2",
        "homegrown": "0.0.7",
        "pyfancy": "1.2",
        "shared_ns": "nsa==1.0, nsb==2.0",
    }


def test_module_getattr_is_not_triggered() -> None:
    touched: list[str] = []
    lazy = types.ModuleType("lazymod")

    def module_getattr(name: str) -> str:
        touched.append(name)
        return "9.9"

    lazy.__getattr__ = module_getattr  # type: ignore[method-assign]
    assert collect_imported({"lazymod": lazy}) == {}
    assert touched == []


def test_real_imports_are_reported() -> None:
    import yaml  # type: ignore[import-untyped]  # PyYAML: module name differs from the distribution name

    imported = collect_imported()
    assert imported["yaml"] == importlib.metadata.version("PyYAML")
    assert imported["pytest"] == importlib.metadata.version("pytest")
    assert "os" not in imported and "sys" not in imported
    assert yaml
