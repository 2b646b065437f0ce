#!/usr/bin/env bash
# The prepared GPU benchmark (benchmarks/gpu_bench.py; docs/gpu.md) on a box with its own JAX:
#   benchmarks/gpu_bench.sh [args for gpu_bench.py]
# Environment: benchmarks/gpu_env.sh (offline wheels from .gpu/wheels). Output under $OUT
# (default ./gpu-bench-out): gpu_bench.json (rewritten after every section) and gpu_bench.log.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_env.sh
stamp "gpu_bench.py $*"
"$py" benchmarks/gpu_bench.py --out "$out" "$@" 2>&1 | tee "$out/gpu_bench.log"
