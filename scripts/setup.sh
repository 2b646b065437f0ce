#!/usr/bin/env bash
# Idempotent setup: a virtual environment in .venv/ at the repository root with the pinned
# package (editable) and, with --test, the test tools. Reinstalls only when pyproject changes.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
# --test: the test tools, the cluster plugins and the [reference] extra (torch, for the
# JAX vs PyTorch tests).
[[ "${1:-}" == "--test" ]] && extras="[test,cluster,reference]"
python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)${extras:+-test}"
if [[ ! -f "$stamp" ]]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${extras}"
  touch "$stamp"
fi
