"""seed_everything: the same streams as the libraries' own seeding, determinism switches,
validation, the PYTHONHASHSEED warning, and seeding torch when it is imported later."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import warnings
from typing import Any

import numpy
import pytest

from reprokit.capturing.seeds import seed_everything
from reprokit.exceptions import ReprokitWarning, UsageError

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def restore_global_state(restore_seeding: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every generator and switch seed_everything touches is put back afterwards
    (``restore_seeding``, conftest.py)."""
    monkeypatch.setenv("PYTHONHASHSEED", "0")  # no warning for seed 0


def test_streams_equal_the_libraries_own_seeding() -> None:
    record = seed_everything(0)
    ours = (random.random(), numpy.random.rand(), torch.rand(1))
    random.seed(0)
    numpy.random.seed(0)
    torch.manual_seed(0)
    reference = (random.random(), numpy.random.rand(), torch.rand(1))
    assert ours[:2] == reference[:2]
    assert torch.equal(ours[2], reference[2])
    assert record.seed == 0 and record.deterministic is False
    assert record.seeded[:3] == ("random", "numpy", "torch")
    assert record.settings == {}


def test_deterministic_switches_are_set_and_recorded() -> None:
    record = seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic is True
    assert torch.backends.cudnn.benchmark is False
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert record.settings == {
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "TF_DETERMINISTIC_OPS": "1",
        "TF_CUDNN_DETERMINISTIC": "1",
        "torch.use_deterministic_algorithms": "True",
        "torch.backends.cudnn.deterministic": "True",
        "torch.backends.cudnn.benchmark": "False",
    }


def test_existing_cublas_workspace_config_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    record = seed_everything(0, deterministic=True)
    assert "CUBLAS_WORKSPACE_CONFIG" not in record.settings
    assert any(":16:8" in note for note in record.notes)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "0", True, None])
def test_invalid_seeds_are_usage_errors(bad: Any) -> None:
    with pytest.raises(UsageError, match="seed must be"):
        seed_everything(bad)


def test_integer_like_seeds_are_accepted() -> None:
    assert seed_everything(numpy.int64(0)).seed == 0
    assert seed_everything(2**32 - 1, deterministic=False).seed == 2**32 - 1


def test_deterministic_must_be_a_bool() -> None:
    with pytest.raises(UsageError, match="deterministic"):
        seed_everything(0, deterministic="yes")  # type: ignore[arg-type]


def test_pythonhashseed_warning_and_record(monkeypatch: pytest.MonkeyPatch) -> None:
    from reprokit.capturing import seeds

    def starting(value: str | None) -> None:
        monkeypatch.setattr(seeds, "_starting_hashseed", lambda: value)

    starting(None)
    with pytest.warns(ReprokitWarning, match="PYTHONHASHSEED is unset"):
        assert seed_everything(0).pythonhashseed is None
    starting("random")
    with pytest.warns(ReprokitWarning, match="PYTHONHASHSEED is 'random'.*PYTHONHASHSEED=11"):
        assert seed_everything(11).pythonhashseed == "random"
    for fixed in ("0", "7", "11"):  # any fixed value is deterministic, the seed's or not
        starting(fixed)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert seed_everything(11).pythonhashseed == fixed


def test_the_recorded_pythonhashseed_is_the_one_the_interpreter_started_with() -> None:
    """A notebook's own ``seed_everything`` that sets ``os.environ["PYTHONHASHSEED"]`` changes
    the variable, not the hashing: the record took the variable, and verify then started its
    kernel with a seed the reference never had (a false alarm)."""
    code = (
        "import os; os.environ['PYTHONHASHSEED'] = '42'\n"
        "from reprokit.capturing.seeds import seed_everything\n"
        "print(seed_everything(3).pythonhashseed)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "7"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "7"


LATE_IMPORT = """
import json, sys
from reprokit.capturing.seeds import seed_everything
seed_everything(1)                      # replaced by the next call before torch is imported
record = seed_everything(0, deterministic=True)
pending = sum(type(f).__name__ == "_SeedTorchOnImport" for f in sys.meta_path)
assert "torch" not in sys.modules
import torch
after_import = torch.rand(3).tolist()
deterministic = torch.are_deterministic_algorithms_enabled()
torch.manual_seed(0)
reference = torch.rand(3).tolist()
print(json.dumps({
    "pending": pending,
    "left": sum(type(f).__name__ == "_SeedTorchOnImport" for f in sys.meta_path),
    "same": after_import == reference,
    "deterministic": deterministic,
    "cudnn_deterministic": torch.backends.cudnn.deterministic,
    "seeded": record.seeded,
    "notes": record.notes,
}))
"""


def test_torch_imported_after_seeding_is_seeded_at_import() -> None:
    out = subprocess.run(
        [sys.executable, "-c", LATE_IMPORT],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    report = json.loads(out.stdout)
    assert report["pending"] == 1
    assert report["left"] == 0
    assert report["same"] is True
    assert report["deterministic"] is True
    assert report["cudnn_deterministic"] is True
    assert "torch" in report["seeded"]
    assert any("imported" in note for note in report["notes"])
