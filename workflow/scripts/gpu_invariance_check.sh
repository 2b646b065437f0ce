#!/usr/bin/env bash
# One-GPU invariance check (see docs/sampler.md). Usage:
#   workflow/scripts/gpu_invariance_check.sh [plain|deterministic] [extra args for the .py]
# "deterministic" adds the XLA flags to try when the plain run reports invariant=false.
set -euo pipefail
cd "$(dirname "$0")/../.."
mode="${1:-plain}"
shift || true
if [[ "$mode" == "deterministic" ]]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_deterministic_ops=true --xla_gpu_autotune_level=0"
fi
export JAX_PLATFORMS="${JAX_PLATFORMS:-cuda}"
exec timeout 480 .venv/bin/python workflow/scripts/gpu_invariance_check.py \
  --out "gpu_invariance_${mode}.json" "$@"
