#!/usr/bin/env bash
# The pipeline itself on one GPU, no download (configs/gpu-smoke.yaml: random:gemma3-1b, 64
# questions from .gpu/data/gsm8k/test.jsonl, samplers fixed and tunix at bs 1 and 64):
#   benchmarks/gpu_pipeline.sh [extra snakemake args]
# Needs snakemake and its dependencies as wheels in .gpu/wheels too (docs/gpu.md; no pulp: the
# greedy scheduler) and the data file. Output under $OUT: gpu_pipeline.json (each evaluate job's
# times and rates, the invariance verdicts), gpu_pipeline.log, the run's logs.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_env.sh
data=.gpu/data/gsm8k/test.jsonl
if [[ ! -s "$data" ]]; then
  echo "missing $data (head -64 ../shared/data/gsm8k/test.jsonl > $data)" >&2
  exit 2
fi
rm -rf results/gpu-smoke
start=$(date +%s)
status=0
"$py" -m snakemake results/gpu-smoke/invariance/base/fixed.json \
  results/gpu-smoke/invariance/base/tunix.json --profile profiles/local-gpu --scheduler greedy \
  --configfile configs/gpu-smoke.yaml "$@" >"$out/gpu_pipeline.log" 2>&1 || status=$?
tail -40 "$out/gpu_pipeline.log"
cp -r results/gpu-smoke/logs "$out/gpu_pipeline_logs" 2>/dev/null || true
"$py" benchmarks/gpu_pipeline_report.py results/gpu-smoke "$out/gpu_pipeline.json" \
  --wall "$(($(date +%s) - start))" --status "$status"
exit "$status"
