#!/usr/bin/env bash
# The prepared GPU benchmark (benchmarks/gpu_bench.py; docs/gpu.md) on a box with its own JAX.
#   benchmarks/gpu_bench.sh [args for gpu_bench.py]        # from anywhere; writes $OUT
# If .gpu/wheels holds wheels (tunix, qwix and their import-time deps; see docs/gpu.md), they are
# installed offline into a fresh .gpu/site (the box's jax/flax stay: never bring flax) for this
# interpreter's CPython tag, and put first on PYTHONPATH. Output: $OUT (default ./gpu-bench-out):
# gpu_bench.json (rewritten after every section) and gpu_bench.log (this run's stdout/stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
py="${PYTHON:-python3}"
out="${OUT:-$root/gpu-bench-out}"
mkdir -p "$out"
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }
if compgen -G ".gpu/wheels/*.whl" >/dev/null; then
  tag="$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
  wheels=()
  for whl in .gpu/wheels/*.whl; do
    # CPython-specific wheels (e.g. cffi-...-cp312-cp312-...) only for this interpreter;
    # pure-Python and abi3 wheels always.
    if [[ "$(basename "$whl")" =~ -(cp3[0-9]+)-cp3[0-9]+m?- ]] && [[ "${BASH_REMATCH[1]}" != "$tag" ]]; then
      continue
    fi
    wheels+=("$whl")
  done
  rm -rf .gpu/site
  stamp "installing ${#wheels[@]} wheels for $tag into .gpu/site"
  "$py" -m pip install --quiet --no-index --no-deps --disable-pip-version-check \
    --target .gpu/site "${wheels[@]}"
fi
export PYTHONPATH="$root/.gpu/site:$root/workflow${PYTHONPATH:+:$PYTHONPATH}"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cuda}"
"$py" -c 'import jax, flax, tunix, qwix, yaml, numpy; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())'
stamp "gpu_bench.py $*"
"$py" benchmarks/gpu_bench.py --out "$out" "$@" 2>&1 | tee "$out/gpu_bench.log"
