#!/usr/bin/env bash
# One-GPU invariance check (see docs/sampler.md), one command under 8 minutes. Usage:
#   benchmarks/gpu_invariance_check.sh [deterministic|plain] [extra args for the .py]
# "deterministic" (the default) adds the XLA flags that `gsm8k-eval evaluate` adds on GPUs
# (gsm8k_eval.device.GPU_DETERMINISM_FLAGS); "plain" runs with XLA's defaults, to see whether
# they are needed. Every batch size runs in its own process and then all in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-deterministic}"
shift || true
case "$mode" in
  deterministic) flags=(--deterministic) ;;
  plain) flags=() ;;
  *) echo "usage: $0 [deterministic|plain] [args]" >&2; exit 2 ;;
esac
export JAX_PLATFORMS="${JAX_PLATFORMS:-cuda}"
exec timeout 480 .venv/bin/python benchmarks/gpu_invariance_check.py "${flags[@]}" \
  --out "gpu_invariance_${mode}.json" "$@"
