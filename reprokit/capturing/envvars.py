"""The environment variables that change numerical results or device selection.

Only allow-listed variables are captured, never the whole environment; the allowed ones
then still go through :mod:`reprokit.capturing.redact` (a secret-looking name is redacted
whole, a credential-looking value by content), so ``OMP_NUM_THREADS=ghp_...`` leaks nothing.

The allow-list is exact names (:data:`ALLOWED_NAMES`) plus name prefixes
(:data:`ALLOWED_PREFIXES`):

- threads of BLAS/OpenMP runtimes: ``OMP_*``, ``KMP_*`` (Intel OpenMP affinity, blocktime,
  deterministic reduction), ``GOMP_*``, ``MKL_*`` (``MKL_CBWR``, ``MKL_NUM_THREADS``, ...),
  ``OPENBLAS_*``, ``BLIS_*``, ``NUMEXPR_*``, ``VECLIB_MAXIMUM_THREADS``, ``GOTO_NUM_THREADS``,
  Numba's thread settings, oneDNN's ISA and floating-point-math modes;
- Python: ``PYTHONHASHSEED``; reprokit's ``REPROKIT_DETERMINISTIC`` (``--deterministic``);
- CUDA device selection and numerics: ``CUDA_VISIBLE_DEVICES``, ``CUDA_DEVICE_ORDER``,
  ``CUDA_LAUNCH_BLOCKING``, ``CUBLAS_WORKSPACE_CONFIG``, ``NVIDIA_TF32_OVERRIDE``,
  ``NCCL_ALGO``/``NCCL_PROTO`` (reduction order), ROCm's ``HIP_``/``ROCR_VISIBLE_DEVICES``;
- PyTorch: ``PYTORCH_*`` (``PYTORCH_CUDA_ALLOC_CONF``, ...) and the ``TORCH_*`` switches
  that change kernels or precision (TF32 override, cuDNN v8 API, cuBLASLt preference);
- TensorFlow/XLA determinism: ``TF_DETERMINISTIC_OPS``, ``TF_CUDNN_DETERMINISTIC``,
  ``TF_CUDNN_USE_AUTOTUNE``, ``TF_ENABLE_ONEDNN_OPTS``, ``XLA_FLAGS``;
- JAX: ``JAX_*`` (``JAX_ENABLE_X64``, ``JAX_DEFAULT_MATMUL_PRECISION``, ...).

Extend it with ``REPROKIT_ENV_ALLOW``: comma-separated extra names or glob patterns
(``REPROKIT_ENV_ALLOW="MYLIB_*,SEED"``; ``*`` matches any run of characters).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping

from reprokit.capturing.redact import redact_mapping

ALLOW_ENV_VAR = "REPROKIT_ENV_ALLOW"

ALLOWED_NAMES: frozenset[str] = frozenset(
    {
        "PYTHONHASHSEED",
        "REPROKIT_DETERMINISTIC",
        "VECLIB_MAXIMUM_THREADS",
        "GOTO_NUM_THREADS",
        "NUMBA_NUM_THREADS",
        "NUMBA_THREADING_LAYER",
        "NUMBA_DISABLE_JIT",
        "ONEDNN_DEFAULT_FPMATH_MODE",
        "DNNL_DEFAULT_FPMATH_MODE",
        "ONEDNN_MAX_CPU_ISA",
        "DNNL_MAX_CPU_ISA",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "CUDA_LAUNCH_BLOCKING",
        "CUDA_MODULE_LOADING",
        "CUBLAS_WORKSPACE_CONFIG",
        "CUBLASLT_WORKSPACE_SIZE",
        "NVIDIA_TF32_OVERRIDE",
        "NVIDIA_VISIBLE_DEVICES",
        "NCCL_ALGO",
        "NCCL_PROTO",
        "HIP_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
        "TORCH_CUDNN_V8_API_ENABLED",
        "TORCH_CUDNN_V8_API_DISABLED",
        "TORCH_BLAS_PREFER_CUBLASLT",
        "TORCH_BLAS_PREFER_HIPBLASLT",
        "TORCH_LINALG_PREFER_CUSOLVER",
        "TORCH_USE_CUDA_DSA",
        "TORCH_DETERMINISTIC",
        "TF_DETERMINISTIC_OPS",
        "TF_CUDNN_DETERMINISTIC",
        "TF_CUDNN_USE_AUTOTUNE",
        "TF_ENABLE_ONEDNN_OPTS",
        "TF_ENABLE_AUTO_MIXED_PRECISION",
        "XLA_FLAGS",
    }
)
"""Variables captured by exact name."""

ALLOWED_PREFIXES: tuple[str, ...] = (
    "OMP_",
    "KMP_",
    "GOMP_",
    "MKL_",
    "OPENBLAS_",
    "BLIS_",
    "NUMEXPR_",
    "PYTORCH_",
    "JAX_",
)
"""Variables captured by name prefix."""


def is_allowed(name: str, extra: tuple[str, ...] = ()) -> bool:
    """True when ``name`` is on the allow-list or matches one of the ``extra`` patterns."""
    if name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES):
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in extra)


def extra_allowed(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The names and glob patterns of ``REPROKIT_ENV_ALLOW`` (in ``environ``, default ours)."""
    raw = (os.environ if environ is None else environ).get(ALLOW_ENV_VAR, "")
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def collect_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed variables of ``environ`` (default: ``os.environ``), redacted, sorted."""
    env = os.environ if environ is None else environ
    extra = extra_allowed(env)
    allowed = sorted((name, value) for name, value in env.items() if is_allowed(name, extra))
    return redact_mapping(allowed)
