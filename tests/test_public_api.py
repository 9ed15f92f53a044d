"""The public surface of ``reprokit`` is deliberate: adding or removing a name is a decision."""

from __future__ import annotations

import subprocess
import sys

import reprokit

EXPECTED = [
    "AcceleratorInfo",
    "Calibration",
    "ComparisonOptions",
    "DataEntry",
    "DataManifest",
    "Diff",
    "ExecutionOptions",
    "GitInfo",
    "RecordOutcome",
    "RepeatOptions",
    "ReprokitError",
    "ReprokitWarning",
    "Result",
    "RunOutcome",
    "RunStatus",
    "SeedRecord",
    "Snapshot",
    "Verdict",
    "Verification",
    "VerifyOutcome",
    "__version__",
    "calibrate",
    "capture",
    "data",
    "device",
    "diff",
    "end",
    "env",
    "flush",
    "hash_path",
    "hash_paths",
    "hash_value",
    "load_ipython_extension",
    "read_notebook",
    "record",
    "result",
    "run",
    "seed",
    "seed_everything",
    "start",
    "status",
    "unload_ipython_extension",
    "verify",
]


def test_public_names_are_pinned_and_sorted() -> None:
    assert reprokit.__all__ == EXPECTED


def test_every_public_name_resolves() -> None:
    for name in reprokit.__all__:
        assert getattr(reprokit, name) is not None, name


def test_unknown_attribute_raises_attribute_error() -> None:
    try:
        reprokit.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_reprokit_is_light() -> None:
    code = (
        "import sys, reprokit\n"
        "heavy = {'mlflow', 'torch', 'numpy', 'pandas', 'papermill', 'rich', 'IPython', 'dask',\n"
        "         'distributed'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
