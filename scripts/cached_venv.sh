#!/usr/bin/env bash
# Usage: scripts/cached_venv.sh NAME REQUIREMENTS -> prints the path of a virtual environment
# with REQUIREMENTS installed. It lives in a cache folder outside the checkout (so clones
# share the multi-GB torch installs), at NAME-<hash of the file>, and is rebuilt from nothing
# when missing or incomplete. Progress goes to stderr.
set -euo pipefail
name=${1:?usage: cached_venv.sh NAME REQUIREMENTS}
req=${2:?usage: cached_venv.sh NAME REQUIREMENTS}
PY=${PYTHON:-python3}
hash=$(sha256sum "$req" | cut -c1-12)
cache=${FASTEXT_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fastext}
venv="$cache/$name-$hash"
if [ ! -f "$venv/.complete" ]; then
  echo "== creating $venv (from $req: a few minutes the first time)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  "$PY" -m venv "$venv" >&2
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q -r "$req" >&2
  touch "$venv/.complete"
fi
echo "$venv"
