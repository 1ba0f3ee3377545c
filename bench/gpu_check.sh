#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (see ../shared/ENVIRONMENT.md):
# build against the torch installed there, run the CUDA tests, run the GPU benchmarks.
# Usage: bash bench/gpu_check.sh OUTDIR   -> OUTDIR/gpu_check.log, OUTDIR/*-cuda.json
# Each step has its own time limit and writes its own file, so a slow or failing step
# still leaves the others' results. The train suite needs MNIST in .devdata/mnist (an
# ignored folder: copy ../shared/data/mnist there and name .devdata in the run's carry).
set -uo pipefail
# Refuse up front: without set -e, ${1:?} would only end the $(...) subshell and every step
# would run, writing to /; an option (--help) or a folder that cannot be made would leave
# every step writing nowhere.
if [ $# -ne 1 ] || [ -z "$1" ] || [ "${1#-}" != "$1" ]; then
  echo "usage: bash bench/gpu_check.sh OUTDIR" >&2
  exit 2
fi
out=$(realpath -m -- "$1") && mkdir -p -- "$out" && [ -w "$out" ] || {
  echo "gpu_check.sh: cannot create or write the folder $1" >&2
  exit 2
}
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} FASTEXT_CUDA=on
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
[ -d .devdata ] && export FASTEXT_DATA=$PWD/.devdata
PY=${PYTHON:-python3}
log="$out/gpu_check.log"
status=0
step() { echo "== $(date -u +%T) $*" | tee -a "$log"; "$@" 2>&1 | tee -a "$log"; local rc=${PIPESTATUS[0]}; [ "$rc" = 0 ] || status=$rc; return "$rc"; }

# The toolchain facts a build depends on (on 2026-11-28 the GPU machine's toolchain linked
# libstdc++ into the module statically: see CMakeLists.txt).
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import sys, torch; print('torch', torch.__version__, 'python', sys.version.split()[0])"
  "${CXX:-c++}" --version | head -1; echo "libstdc++.so: $("${CXX:-c++}" -print-file-name=libstdc++.so)"
  env | grep -E '^(CFLAGS|CXXFLAGS|LDFLAGS|CMAKE_[A-Z_]*FLAGS)=' || echo "no compiler flags in the environment"
} 2>&1 | tee "$log"
step "$PY" -m pip install -q --no-build-isolation --no-deps -e . || { echo "build failed" | tee -a "$log"; exit 1; }
step "$PY" -c "import fastext, json; print(json.dumps(fastext.build_info()))"
# Refused calls must come back as exceptions: on 2026-11-28 every message formatting a number
# crashed the process here (bench/error_paths.py), ending a test file at its first such test.
step timeout 120 "$PY" bench/error_paths.py
# Steps in order of what the open work needs first (a run cut short by the device's time
# keeps what ran): BatchNorm + ReLU / InPlace-ABN tests and benchmark, then the rest.
# Every CUDA twin of the test suite (ids carry 'cuda') and the CUDA-only modules, in five
# processes: a crash in one (a segfault stopped the whole list once) leaves the others' results.
cuda_tests() { step timeout "$1" "$PY" -m pytest -q -p no:cacheprovider -rfE --tb=short "${@:2}"; }
cuda_tests 150 -k "cuda or shared_cxx_runtime" tests/test_bn_relu.py tests/test_inplace_abn.py \
  tests/test_ops.py
step timeout 240 "$PY" -m fastext.bench bn_relu --device cuda --json "$out/bn_relu-cuda.json"
cuda_tests 150 -k cuda tests/test_optim_parity.py tests/test_optim_compat.py tests/test_optim_cuda.py
cuda_tests 150 -k cuda tests/test_amp.py
cuda_tests 150 -k cuda tests/test_arrival_counter_cuda.py
cuda_tests 150 -k cuda tests/test_feature_loss.py
step timeout 120 "$PY" -m fastext.bench optim --device cuda --json "$out/optim-cuda.json"
step timeout 60 "$PY" -m fastext.bench amp --device cuda --json "$out/amp-cuda.json"
step timeout 90 "$PY" -m fastext.bench feature_loss --device cuda --json "$out/feature_loss-cuda.json"
# Host vs device time and launches of the BatchNorm + ReLU cases and of the optimizer steps,
# and one BatchNorm case timed three ways (bench/gpu_diag.py; 9 s on the H200 at 11:04).
step timeout 120 "$PY" bench/gpu_diag.py "$out/gpu_diag.json"
[ -n "${FASTEXT_DATA:-}" ] && step timeout 150 "$PY" -m fastext.bench train --device cuda \
  --reps 3 --json "$out/train-cuda.json"
echo "== $(date -u +%T) done (status $status)" | tee -a "$log"
exit "$status"
