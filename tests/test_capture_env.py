"""Allow-listed environment variables: what is captured, what is redacted, how to extend."""

from __future__ import annotations

import pytest

from reprokit.capturing import envvars
from reprokit.capturing.envvars import collect_environment, is_allowed
from reprokit.capturing.redact import REDACTED, looks_secret_name

GITHUB_CANARY = "ghp_CANARY0123456789abcdefghijABCDEFGHIJ"


def test_numerics_and_device_variables_are_captured(monkeypatch: pytest.MonkeyPatch) -> None:
    wanted = {
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "4",
        "MKL_CBWR": "COMPATIBLE",
        "CUDA_VISIBLE_DEVICES": "",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "KMP_AFFINITY": "granularity=fine,compact",
        "JAX_ENABLE_X64": "1",
        "XLA_FLAGS": "--xla_gpu_deterministic_ops=true",
        "TF_DETERMINISTIC_OPS": "1",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "NVIDIA_TF32_OVERRIDE": "0",
    }
    for name, value in wanted.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME_SWEET_HOME", "/home/x")
    env = collect_environment()
    assert {k: env[k] for k in wanted} == wanted
    assert "HOME_SWEET_HOME" not in env
    assert "PATH" not in env
    assert list(env) == sorted(env)


def test_no_allow_listed_name_looks_secret() -> None:
    # otherwise its value would always be redacted
    assert not [name for name in envvars.ALLOWED_NAMES if looks_secret_name(name)]
    assert not [p for p in envvars.ALLOWED_PREFIXES if looks_secret_name(p)]


def test_allow_list_extends_with_names_and_globs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYLIB_THREADS", "3")
    monkeypatch.setenv("EXPERIMENT_SEED", "7")
    monkeypatch.setenv("OTHER", "x")
    assert "MYLIB_THREADS" not in collect_environment()
    monkeypatch.setenv("REPROKIT_ENV_ALLOW", "MYLIB_*, *_SEED ,")
    env = collect_environment()
    assert env["MYLIB_THREADS"] == "3"
    assert env["EXPERIMENT_SEED"] == "7"
    assert "OTHER" not in env
    assert is_allowed("ANY_SEED", ("*_SEED",))
    assert not is_allowed("ANY_SEEDS", ("*_SEED",))


def test_allow_listed_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", GITHUB_CANARY)
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x --token=CANARYXLA")
    monkeypatch.setenv("JAX_API_KEY", "plainCANARY")
    env = collect_environment()
    assert env["OMP_NUM_THREADS"] == REDACTED
    assert env["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x --token={REDACTED}"
    assert env["JAX_API_KEY"] == REDACTED
    assert "CANARY" not in repr(env)


def test_explicit_mapping_is_read_instead_of_os_environ() -> None:
    env = collect_environment({"OMP_NUM_THREADS": "2", "REPROKIT_ENV_ALLOW": "X", "X": "1"})
    assert env == {"OMP_NUM_THREADS": "2", "X": "1"}
