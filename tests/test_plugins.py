"""Plugins through entry points: collectors and comparators from really installed packages.

The packages are ``tests/plugins/reprokit_demo_plugin`` (a working collector and comparator)
and ``tests/plugins/reprokit_broken_plugin`` (entry points broken in every way the loader must
survive), pip-installed once per session (see ``plugin_helpers``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from plugin_helpers import BROKEN, DEMO, install_plugin, python_path

from reprokit import plugins
from reprokit._serde import from_json, to_json
from reprokit.capturing.extensions import flat_facts, json_data
from reprokit.capturing.model import ExtensionInfo, Snapshot
from reprokit.capturing.snapshot import capture
from reprokit.cli import main
from reprokit.compare.plugged import compare_with_plugin
from reprokit.compare.values import compare_values
from reprokit.comparison import Tolerance
from reprokit.exceptions import InputError, ReprokitWarning, ResultValueError
from reprokit.report.render import result_summary
from reprokit.results import Result, decode_result, encode_result
from reprokit.results.plugged import PluginValue

INSTRUMENT = {"firmware": "1.0", "model": "DemoScope 3000", "serial": "DS-0042"}


@pytest.fixture(scope="session")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_plugin(DEMO, tmp_path_factory)


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_plugin(BROKEN, tmp_path_factory)


@pytest.fixture(autouse=True)
def _fresh_plugins() -> Iterator[None]:
    """Every test loads plugins from its own sys.path, and leaves none cached behind."""
    plugins.clear_cache()
    yield
    plugins.clear_cache()


@pytest.fixture
def demo(demo_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(demo_site))
    monkeypatch.delenv("REPROKIT_DEMO_FIRMWARE", raising=False)
    return demo_site


@pytest.fixture
def broken(broken_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(broken_site))
    return broken_site


def _measurement(value: float, unit: str = "mV") -> Any:
    from reprokit_demo_plugin import Measurement  # importable once `demo` put it on sys.path

    return Measurement(value, unit)


def _messages(caught: list[warnings.WarningMessage]) -> str:
    return "\n".join(str(w.message) for w in caught if issubclass(w.category, ReprokitWarning))


# ------------------------------------------------------------------------------ collectors


def test_collector_facts_land_in_the_snapshot_and_round_trip(demo: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReprokitWarning)  # a working plugin warns about nothing
        snapshot = capture(root=tmp_path)
    assert snapshot.extensions == {"instrument": ExtensionInfo(True, None, INSTRUMENT)}
    assert from_json(to_json(snapshot), Snapshot) == snapshot


def test_a_snapshot_written_before_plugins_reads_with_no_extensions(tmp_path: Path) -> None:
    data = json.loads(to_json(capture(root=tmp_path)))
    del data["extensions"]
    assert from_json(json.dumps(data), Snapshot).extensions == {}


def test_reprokit_env_shows_the_plugin_facts(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPROKIT_DEMO_FIRMWARE", "2.1")
    out = CliRunner().invoke(main, ["env", "--root", str(tmp_path)])
    assert out.exit_code == 0, out.output
    section = out.output.split("Plugins\n", 1)[1].strip().splitlines()
    assert [line.split() for line in section] == [
        ["instrument.firmware", "2.1"],
        ["instrument.model", "DemoScope", "3000"],
        ["instrument.serial", "DS-0042"],
    ]
    plugins.clear_cache()
    out = CliRunner().invoke(main, ["env", "--json", "--root", str(tmp_path)])
    assert json.loads(out.output)["extensions"]["instrument"]["data"]["firmware"] == "2.1"


def test_without_plugins_env_has_no_plugin_section(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["env", "--root", str(tmp_path)])
    assert out.exit_code == 0 and "Plugins" not in out.output


def test_broken_collectors_warn_and_are_recorded_unavailable(
    demo: Path, broken: Path, tmp_path: Path
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        snapshot = capture(root=tmp_path)
    ext = snapshot.extensions
    assert ext["instrument"].data == INSTRUMENT  # the working plugin is unaffected
    assert not ext["raises"].available and ext["raises"].reason is not None
    assert "RuntimeError: instrument offline" in ext["raises"].reason
    assert "hunter2" not in ext["raises"].reason  # an exception message is redacted too
    assert not ext["not_json"].available
    assert ext["not_json"].reason == "collector returned a builtins.object (not JSON) at $.handle"
    # a secret-looking key and URL credentials never reach the snapshot
    assert ext["secretive"].data == {
        "api_token": "<redacted>",
        "gain": 2,
        "url": "https://lab.example/api",
    }
    # entry points that could not be loaded are left out, not recorded
    assert "missing_module" not in ext and "not_callable" not in ext
    text = _messages(caught)
    assert "reprokit plugin 'raises' (reprokit.collectors): collector raised RuntimeError" in text
    assert "'not_json'" in text and "recorded as unavailable" in text
    assert "'missing_module' (reprokit.collectors = reprokit_broken_plugin.nowhere:collect" in text
    assert "from reprokit-broken-plugin) could not be loaded: ModuleNotFoundError" in text
    assert "'not_callable'" in text and "is not callable (a int)" in text
    assert from_json(to_json(snapshot), Snapshot) == snapshot


def test_json_data_normalises_or_names_what_is_not_json() -> None:
    assert json_data({"a": (1, 2.5), "b": [None, True]}) == {"a": [1, 2.5], "b": [None, True]}
    with pytest.raises(ValueError, match=r"the float nan at \$.x\[1\]"):
        json_data({"x": [1.0, float("nan")]})
    with pytest.raises(ValueError, match=r"a int dict key at \$\[3\]"):
        json_data({3: "three"})


def test_flat_facts_are_dotted_paths_with_unavailable_in_one_entry() -> None:
    facts = flat_facts(
        {
            "jax": ExtensionInfo(True, data={"version": "0.4", "x64": False, "devices": ["cpu"]}),
            "lab": ExtensionInfo(False, reason="no instrument"),
            "plain": ExtensionInfo(True, data=3),
        }
    )
    assert facts == {
        "jax.devices": '["cpu"]',
        "jax.version": "0.4",
        "jax.x64": "false",
        "lab": "unavailable (no instrument)",
        "plain": "3",
    }


# ------------------------------------------------------------------------------ loading


def test_plugins_are_loaded_on_first_use_and_cached(demo: Path) -> None:
    assert plugins._cache == {}
    encode_result("x", 1.5)
    compare_values([1.0, "a"], [1.0, "a"])
    assert plugins.COMPARATORS not in plugins._cache  # built-in values never look plugins up
    first = plugins.comparators()
    assert [p.name for p in first] == ["measurement"]
    assert plugins.comparators() is first
    assert plugins.comparator_named("measurement") is first[0]
    assert plugins.comparator_for(_measurement(1.0)) is first[0]
    assert plugins.comparator_for(object()) is None


def test_import_and_reprokit_hash_load_no_plugin(demo_site: Path, tmp_path: Path) -> None:
    data = tmp_path / "f.txt"
    data.write_text("x\n")
    code = (
        "import sys\n"
        "import reprokit, reprokit.capturing.snapshot\n"
        "from reprokit.cli import main\n"
        f"sys.argv = ['reprokit', 'hash', {str(data)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "watched = {'reprokit_demo_plugin', 'reprokit.capturing.extensions'}\n"
        "print(sorted(watched & set(sys.modules)))"
        "\nfrom reprokit import plugins\n"
        "print(sorted(plugins._cache))\n"
    )
    env = {**os.environ, "PYTHONPATH": python_path(demo_site)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    # capture's module imports the collector runner, but nothing asked for entry points yet
    assert done.stdout.splitlines()[-2:] == ["['reprokit.capturing.extensions']", "[]"]


def test_broken_comparators_warn_naming_them_and_are_left_out(broken: Path) -> None:
    with pytest.warns(ReprokitWarning) as caught:
        loaded = plugins.comparators()
    assert [p.name for p in loaded] == ["failing"]
    text = _messages(list(caught))
    assert "'import_error' (reprokit.comparators = reprokit_broken_plugin.fails_on_import" in text
    assert "No module named 'reprokit_no_such_dependency'; it is ignored" in text
    assert "'incomplete'" in text and "is not a comparator: it has no compare" in text
    assert "'bad_types'" in text and "could not be loaded: TypeError" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cached: the warnings come once per process
        assert plugins.comparators() is loaded


# ------------------------------------------------------------------------------ comparators


def test_a_plugin_type_is_encoded_as_a_plugin_result_and_read_back(demo: Path) -> None:
    result = encode_result("voltage", _measurement(1.5), rtol=1e-3)
    assert (result.kind, result.plugin, result.value) == (
        "plugin",
        "measurement",
        {"unit": "mV", "value": 1.5},
    )
    assert result.type_name == "reprokit_demo_plugin.Measurement"
    assert from_json(to_json(result), Result) == result
    assert decode_result(result) == PluginValue("measurement", {"unit": "mV", "value": 1.5})
    # reports and the notebook show the plugin's own rendering, or the payload without one
    assert (
        result_summary(result) == "voltage = 1.5 mV (reprokit_demo_plugin.Measurement; rtol=0.001)"
    )
    orphan = Result("g", "plugin", value={"a": 1}, type_name="lab.G", plugin="uninstalled")
    assert result_summary(orphan) == "g = {'a': 1} (lab.G)"


@pytest.mark.parametrize(
    ("value", "unit", "status", "message"),
    [
        (1.5, "mV", "reproduced", "1.5 mV against 1.5 mV: off by 0 mV"),
        (1.5009, "mV", "within_tolerance", "1.5009 mV against 1.5 mV: off by 0.0009 mV"),
        (1.6, "mV", "differs", "1.6 mV against 1.5 mV: off by 0.1 mV"),
        (1.5, "V", "differs", "unit 'V', reference 'mV'"),
    ],
)
def test_the_plugin_compares_payloads_under_the_tolerance(
    demo: Path, value: float, unit: str, status: str, message: str
) -> None:
    reference = decode_result(encode_result("v", _measurement(1.5)))
    current = decode_result(encode_result("v", _measurement(value, unit)))
    comparison = compare_values(reference, current, Tolerance(rtol=1e-3))
    assert (comparison.status, comparison.deviation.message) == (status, message)
    assert comparison.tolerance_applied == Tolerance(rtol=1e-3)
    # live objects compare the same way as their payloads read back from a lock
    assert compare_values(_measurement(1.5), _measurement(value, unit), Tolerance(1e-3)) == (
        comparison
    )


def test_a_plugin_value_against_a_builtin_value_is_a_type_change(demo: Path) -> None:
    comparison = compare_values(decode_result(encode_result("v", _measurement(1.5))), 1.5)
    assert comparison.status == "differs"
    assert comparison.deviation.type_change == ("plugin measurement", "float")


def test_builtin_types_never_reach_a_plugin_declaring_them(broken: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReprokitWarning)  # the broken entry points
        assert plugins.comparator_for(1.5) is not None  # `failing` does declare float...
        assert encode_result("x", 1.5).kind == "float"  # ...and is never asked
        assert compare_values(1.5, 1.5).status == "reproduced"
        assert compare_with_plugin(1.5, 2.5, Tolerance()) is None


def test_a_failing_plugin_is_an_input_error_naming_it(broken: Path) -> None:
    from reprokit_broken_plugin import Gadget

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReprokitWarning)
        with pytest.raises(InputError, match=r"result 'g': plugin 'failing' .* not JSON: "):
            encode_result("g", Gadget())
        value = PluginValue("failing", {})
        with pytest.raises(InputError, match=r"'failing' .*failed to compare: ZeroDivisionError"):
            compare_values(value, value)
        gone = PluginValue("uninstalled", {})
        with pytest.raises(InputError, match=r"'uninstalled' .*is not installed here"):
            compare_values(gone, gone)


def test_an_unknown_type_without_a_plugin_is_still_an_error(demo: Path) -> None:
    with pytest.raises(ResultValueError, match="result 'x': cannot record a value of type"):
        encode_result("x", object())
    with pytest.raises(InputError, match="cannot compare a value of type object"):
        compare_values(object(), object())
    with pytest.raises(ResultValueError, match=r"at \['m'\]"):  # plugins handle whole values
        encode_result("x", {"m": _measurement(1.0)})


# ------------------------------------------------------------------------------ verification


def _verify_voltage(tmp_path: Path, value: float, **kwargs: Any) -> Any:
    """verify_results on a lock holding a plugin result (written without a kernel)."""
    from lock_helpers import executed, make_project, record

    from reprokit.compare.verify import verify_results
    from reprokit.options import ComparisonOptions
    from reprokit.results import read_notebook

    def voltage(v: float) -> Result:
        payload = {"unit": "mV", "value": v}
        return Result("voltage", "plugin", value=payload, plugin="measurement", rtol=1e-3)

    project = make_project(tmp_path)
    lock = record(project, [voltage(1.5)])
    current = read_notebook(executed(project, [voltage(value)], snapshot=False))
    comparison = ComparisonOptions(**kwargs)
    folder = project.lock_path.parent
    (check,) = verify_results(lock, current, comparison=comparison, lock_dir=folder).checks
    return check


def test_verify_hands_the_tolerance_in_force_to_the_plugin(demo: Path, tmp_path: Path) -> None:
    declared = _verify_voltage(tmp_path / "a", 1.65)
    assert (declared.status, declared.message) == (
        "differs",
        "1.65 mV against 1.5 mV: off by 0.15 mV",
    )
    override = _verify_voltage(tmp_path / "b", 1.65, rtol=0.2)  # reprokit verify --rtol 0.2
    assert (override.status, override.tolerance_source) == ("within_tolerance", "override")
    assert (override.reference, override.obtained) == ("1.5 mV", "1.65 mV")


def test_verify_without_the_plugin_installed_differs_naming_it(tmp_path: Path) -> None:
    check = _verify_voltage(tmp_path, 1.5)
    assert check.status == "differs"
    assert "plugin 'measurement' (reprokit.comparators) is not installed here" in check.message
