"""One-line explanations of how an environment difference can move numbers (for ``envdiff``)."""

from __future__ import annotations

FLAGS: dict[str, str] = {
    "cuda_matmul_allow_tf32": (
        "TF32 matmuls round float32 inputs to a 10-bit mantissa: ~1e-3 relative error"
    ),
    "cudnn_allow_tf32": "TF32 convolutions round float32 inputs to a 10-bit mantissa: ~1e-3 rel.",
    "float32_matmul_precision": (
        "'high'/'medium' let float32 matmuls use TF32/bfloat16 internally: ~1e-3 relative or worse"
    ),
    "deterministic_algorithms": (
        "nondeterministic kernels (atomic adds in scatter/index_add, split-K) vary run to run"
    ),
    "deterministic_warn_only": "nondeterministic operations warn instead of failing",
    "cudnn_deterministic": "cuDNN may pick nondeterministic convolution algorithms",
    "cudnn_benchmark": (
        "benchmark mode picks the fastest convolution algorithm per run: summation order varies"
    ),
    "cublas_workspace_config": "deterministic cuBLAS on CUDA >= 10.2 needs ':4096:8' or ':16:8'",
}

FLAGS_UNKNOWN = "not recorded in one run (torch not imported there); "

SEED = "a different seed draws different random numbers: results differ beyond tolerance"
SEEDING = "seeding set in one run only: random streams start from different states"
DETERMINISTIC = "deterministic mode switches torch/cuDNN to reproducible kernels"
SEEDED = "a library seeded in one run only draws from an unseeded stream in the other"
SETTING = "a switch seed_everything sets changed value"
UNSEEDED_GENERATOR = (
    "default_rng() without a seed draws fresh OS entropy on every run; --seed/seed_everything "
    "seed only numpy's global generator: pass the seed, np.random.default_rng(seed)"
)
NO_SEED = "nothing was seeded: %repro start --seed N (or reprokit.seed_everything) seeds them all"
THREAD_SCHEDULING = (
    "threads finish in a different order every run: parallel reductions sum differently; "
    "set OMP_NUM_THREADS=1 to check"
)
UNKNOWN_NOISE = (
    "something in the notebook is not deterministic: an unseeded generator, a clock, thread "
    "scheduling or GPU atomics"
)
NONDETERMINISTIC = (
    "its own runs disagree here: make it deterministic (seed every generator, "
    "--deterministic, OMP_NUM_THREADS=1) or record its spread: record --repeat N --widen-tolerances"
)
HASHSEED = "PYTHONHASHSEED changes set/dict-of-str iteration order (only effective at start)"

DEVICE = "CPU and GPU results differ by design (~1e-6 relative in float32, more after training)"
TORCH = "operator implementations and defaults change between torch releases"
CUDA = "CUDA libraries (cuBLAS, cuFFT) change kernels between releases: last-bit differences"
CUDNN = "cuDNN versions ship different convolution algorithms and heuristics"
DRIVER = "rarely changes results itself; can change JIT-compiled (PTX) kernels"
GPU_COUNT = "a different number of visible GPUs changes data/model parallel splits"
GPU_MODEL = "another GPU architecture runs other kernels and tile sizes: different rounding"
SM_COUNT = "the SM count decides how reductions and split-K matmuls divide work"

BLAS_LIBRARY = (
    "another BLAS uses other blocking and summation order: ~1e-15 relative (float64), "
    "~1e-6 (float32)"
)
BLAS_THREADS = "the thread count changes how dot products and matmuls are split: last-bit changes"
BLAS_ARCH = "another BLAS kernel (AVX2 vs AVX-512) sums in another order: last-bit changes"
LAYER = "another OpenMP/TBB threading layer can change work splits"

NUMERIC_PACKAGE = "numerical library: kernels, defaults and random streams change between versions"
IMPORTED_PACKAGE = "imported by the notebook: its behaviour may have changed"
PACKAGE = "installed but not imported at capture time: unlikely to matter"
ORIGIN = "installed from another source: the same version number may hold other code"
NUMERIC_PACKAGES = frozenset(
    {
        "numpy",
        "scipy",
        "torch",
        "torchvision",
        "torchaudio",
        "jax",
        "jaxlib",
        "tensorflow",
        "keras",
        "scikit-learn",
        "pandas",
        "numba",
        "cupy",
        "xgboost",
        "lightgbm",
        "statsmodels",
        "transformers",
        "triton",
        "mkl",
        "intel-openmp",
        "scipy-openblas64",
        "scipy-openblas32",
        "nvidia-cublas-cu12",
        "nvidia-cudnn-cu12",
    }
)

PYTHON = "the random module, float formatting and some math functions change between versions"
IMPL = "another Python implementation (CPython/PyPy) differs in libm and hashing"
CPU = "another CPU (SIMD width, FMA) changes vectorised sums and libm paths: last-bit changes"
CORES = "default thread counts follow the core count: reductions split differently"
OS = "another OS ships another libm: exp/log/sin may differ in the last bit"
KERNEL = "the kernel release rarely matters for numbers"
MEMORY = "memory size matters only through batch sizes or algorithms chosen by available memory"

ENV_VAR = "an allow-listed environment variable changed"
ENV_VARS: dict[str, tuple[str, int]] = {
    "NVIDIA_TF32_OVERRIDE": ("0 disables TF32 everywhere, overriding torch's switches", 0),
    "CUBLAS_WORKSPACE_CONFIG": (FLAGS["cublas_workspace_config"], 0),
    "TF_DETERMINISTIC_OPS": ("TensorFlow's deterministic kernels switch", 0),
    "TF_CUDNN_DETERMINISTIC": ("TensorFlow's deterministic cuDNN algorithms switch", 0),
    "REPROKIT_DETERMINISTIC": (
        "torch deterministic algorithms switched on at import (--deterministic)",
        0,
    ),
    "MKL_CBWR": ("MKL conditional numerical reproducibility: fixes MKL's code path", 1),
    "CUDA_VISIBLE_DEVICES": ("decides which GPU (or none) the notebook sees", 1),
    "PYTHONHASHSEED": (HASHSEED, 2),
    "OMP_NUM_THREADS": (BLAS_THREADS, 2),
    "MKL_NUM_THREADS": (BLAS_THREADS, 2),
    "OPENBLAS_NUM_THREADS": (BLAS_THREADS, 2),
    "NUMEXPR_NUM_THREADS": (BLAS_THREADS, 2),
    "MKL_ENABLE_INSTRUCTIONS": (BLAS_ARCH, 1),
    "OPENBLAS_CORETYPE": (BLAS_ARCH, 1),
}

GIT = "the notebook ran inside a git repository in one run only"
GIT_COMMIT = "the code changed: the notebook or the modules it imports may differ"
GIT_COMMIT_SAME_SOURCE = (
    "not counted: the notebook's source is unchanged (a lock cannot hold the commit that adds "
    "it); modules it imports are not recorded and may differ"
)
GIT_DIRTY = "uncommitted changes: the code that ran is not the committed one"
GIT_BRANCH = "another branch name (the commit is what matters)"

EXTENSION = "recorded by the reprokit.collectors plugin {plugin!r}"

PARAMETER = "given now (-p), not the value the recorded run had: another input, other results"
SECRET_PARAMETER = "a secret parameter given now, not the value the recorded run had (not shown)"
