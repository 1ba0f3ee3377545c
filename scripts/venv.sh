#!/usr/bin/env bash
# Makes ./.venv ready: a link to the cached virtual environment with requirements.txt
# (scripts/cached_venv.sh: keyed by that file's hash, so clones share the 5.6 GB torch
# install); then builds and installs fastext into it (editable).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(bash scripts/cached_venv.sh venv requirements.txt)
hash=${venv##*-}
if [ "$(readlink .venv 2>/dev/null)" != "$venv" ]; then
  rm -rf .venv
  ln -s "$venv" .venv
fi

# Rebuild when sources changed or when the shared venv's editable install points elsewhere.
stamp=build/.installed-$hash
srcs=$(find csrc CMakeLists.txt pyproject.toml -type f -newer "$stamp" 2>/dev/null | head -1 || true)
owner=$(.venv/bin/python - <<'PY' 2>/dev/null || true
import importlib.util, os
spec = importlib.util.find_spec("fastext")
print(os.path.dirname(os.path.dirname(spec.origin)) if spec and spec.origin else "")
PY
)
if [ ! -f "$stamp" ] || [ -n "$srcs" ] || [ "$owner" != "$PWD" ]; then
  echo "== building fastext (C++/CUDA extension)"
  mkdir -p build
  .venv/bin/pip install -q --no-build-isolation --no-deps -e .
  touch "$stamp"
fi
