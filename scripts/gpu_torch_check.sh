#!/usr/bin/env bash
# Builds fastext, CUDA kernels included, against the torch of the GPU machine (2.11.0, CUDA
# 13.0; see ../shared/ENVIRONMENT.md) and runs the native ops' CPU tests with it. CI builds
# against the newer torch of requirements.txt; this catches what only the older one breaks
# before a GPU run does: a c10 helper 2.14 has and 2.11 lacks, or torch 2.11's bundled
# pybind11 (3.0.1) meeting another one in the module (a segfault on the first call).
# Its venv (scripts/gpu-torch-requirements.txt) is cached beside .venv's.
# `--copy-tree DEST` only copies the checkout's files to DEST (what the build below uses).
set -euo pipefail
copy_only=
if [ "${1:-}" = --copy-tree ]; then
  [ $# -eq 2 ] || { echo "usage: bash scripts/gpu_torch_check.sh [--copy-tree DEST]" >&2; exit 2; }
  copy_only=$(realpath -m "$2")  # before the cd below: DEST is relative to the caller
fi
cd "$(dirname "$0")/.."

# copy_tree DEST: the checkout's files, tracked and new (untracked, not ignored), into DEST;
# the checkout's own build/ and .venv stay as they are. A tracked file deleted in the work
# tree (and a nested repository, listed as a folder) is skipped: cp would stop on it.
copy_tree() {
  mkdir -p "$1"
  git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
    if [ -f "$f" ]; then printf '%s\0' "$f"; fi
  done | xargs -0 -r cp --parents -t "$1"
}
if [ -n "$copy_only" ]; then
  copy_tree "$copy_only"
  exit 0
fi

venv=$(bash scripts/cached_venv.sh venv-gpu-torch scripts/gpu-torch-requirements.txt)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
copy_tree "$work"
cd "$work"
echo "== building fastext against $("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
# One arch (the GPU machine's sm_90) halves the CUDA compile; what compiles is the same code.
FASTEXT_CUDA=on TORCH_CUDA_ARCH_LIST=9.0 "$venv/bin/pip" install -q --no-build-isolation \
  --no-deps -e .
"$venv/bin/python" - <<'PY'
import fastext
info = fastext.build_info()
print("build_info:", info)
assert info["cuda"], "the CUDA kernels must compile against the GPU machine's torch"
PY
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_ops.py tests/test_optim_parity.py \
  tests/test_optim_cuda.py tests/test_bn_relu.py tests/test_amp.py tests/test_feature_loss.py \
  tests/test_multi_tensor_packing.py tests/test_inplace_abn.py tests/test_arrival_counter_cuda.py
