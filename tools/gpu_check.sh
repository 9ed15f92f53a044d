#!/usr/bin/env bash
# The CUDA paths of reprokit, for real, on a machine with an NVIDIA GPU (CI never has one).
#
#   tools/gpu_check.sh wheels DIR [PYTHON_VERSION]   # on a connected machine: DIR gets reprokit's
#                                                    # wheel and its dependencies (manylinux
#                                                    # x86-64, Python 3.12 unless given), for a
#                                                    # GPU machine without a network; torch,
#                                                    # numpy and pytest are expected there
#   tools/gpu_check.sh run OUT [DIR]                 # on the GPU machine, from the repository
#                                                    # root: the checks, logs and reports in OUT
#                                                    # (with DIR: its wheels installed first, in
#                                                    # a temporary folder, nothing else touched)
#
# `run` does what was first done by hand on an NVIDIA H200 (2026-12-04, CONTRIBUTING.md):
#  1. the `gpu`-marked tests and the modules that hold them;
#  2. capture leaves CUDA alone in a process that imported torch;
#  3. the published notebooks/mlp_classifier.ipynb (a CPU lock) verified on CUDA, calibrated
#     CPU against CUDA, recorded on CUDA and verified there and on the CPU;
#  4. benchmarks/bench_arrays.py --device cuda.
# Exit 0 when every step passed, 1 when one failed, 2 for bad usage or no GPU.
set -u

usage() { sed -n '3,12p' "$0" >&2; exit 2; }

wheels() {
    local dir=$1 version=${2:-3.12}
    mkdir -p "$dir" || exit 2
    python3 -m pip wheel -q --no-deps -w "$dir" . || exit 1
    local platforms=() n
    for n in 17 24 26 27 28 31 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
    platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
    python3 -m pip download -q --only-binary=:all: --python-version "$version" \
        --implementation cp "${platforms[@]}" -d "$dir" "$(ls "$dir"/reprokit_nb-*.whl)" \
        || exit 1
    # what a CUDA image already holds (a second copy would shadow it): torch and its own
    rm -f "$dir"/torch-* "$dir"/nvidia_* "$dir"/triton-* "$dir"/numpy-*
    echo "wheels in $dir: $(ls "$dir" | wc -l) files, $(du -sh "$dir" | cut -f1)"
}

step() { echo; echo "=== $* ($(date -u +%T))"; }

failed=0
check() {  # a step's command; its exit status counted
    "$@"
    local rc=$?
    echo "rc=$rc"
    [ "$rc" -eq 0 ] || failed=1
}

cuda_left_alone() {
    (cd "$(mktemp -d)" && python3 -W ignore -c "
import torch, reprokit
reprokit.start(experiment='gpu-check', seed=1)
assert not torch.cuda.is_initialized(), 'start() initialised CUDA'
reprokit.result('x', 1.0)
reprokit.end()
assert not torch.cuda.is_initialized(), 'end() initialised CUDA'
print('CUDA left alone by start() and end()')
")
}

mlp_across_devices() {
    local out=$1 work
    work=$(mktemp -d) && cp -r notebooks "$work/" && cd "$work" || return 1
    git init -q . 2>/dev/null
    local nb=notebooks/mlp_classifier.ipynb
    step "verify the CPU lock on cuda"
    check python3 -m reprokit verify "$nb" --device cuda --report "$out/verify_cpu_lock_on_cuda.html"
    step "calibrate cpu,cuda (a copy of the lock)"
    check python3 -m reprokit calibrate "$nb" --devices cpu,cuda
    step "record on cuda, verify on cuda and on the cpu"
    check python3 -m reprokit record "$nb" --device cuda
    cp notebooks/mlp_classifier.repro.json "$out/lock_recorded_on_cuda.json"
    check python3 -m reprokit verify "$nb" --device cuda --report "$out/verify_cuda_lock_on_cuda.html"
    check python3 -m reprokit verify "$nb" --device cpu
    return "$failed"
}

run() {
    local out=$1 dir=${2:-}
    [ -f pyproject.toml ] && [ -d notebooks ] || { echo "run from the repository root" >&2; exit 2; }
    nvidia-smi -L >/dev/null 2>&1 || { echo "no NVIDIA GPU visible (nvidia-smi -L)" >&2; exit 2; }
    mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
    if [ -n "$dir" ]; then
        local site
        site=$(mktemp -d)
        python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$dir"/*.whl \
            || exit 1
        export PYTHONPATH="$site" PATH="$site/bin:$PATH"
    fi
    export PYTHONUNBUFFERED=1 PYTHONHASHSEED=0
    exec > >(tee "$out/log.txt") 2>&1
    step versions
    nvidia-smi -L
    python3 -c "import sys, torch, numpy, reprokit; print(sys.version.split()[0], 'torch', \
torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), 'numpy', numpy.__version__)"
    step "the gpu tests and their modules"
    check python3 -m pytest -p no:cacheprovider -q -n 4 tests/test_capture_accelerator.py \
        tests/test_compare_arrays.py tests/test_session.py tests/test_repeat.py \
        --junitxml="$out/junit.xml"
    step "capture and CUDA"
    check cuda_left_alone
    (mlp_across_devices "$out") || failed=1
    step "bench_arrays --device cuda"
    check python3 benchmarks/bench_arrays.py --device cuda --repeat 3
    cp benchmarks/results/bench_arrays.json "$out/" 2>/dev/null
    step "done: $([ "$failed" -eq 0 ] && echo 'every step passed' || echo 'a step failed')"
    exit "$failed"
}

case "${1:-}" in
    wheels) [ $# -ge 2 ] || usage; wheels "$2" "${3:-}" ;;
    run) [ $# -ge 2 ] || usage; run "$2" "${3:-}" ;;
    *) usage ;;
esac
