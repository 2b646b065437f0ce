#!/usr/bin/env bash
# Set up (idempotently) and run every check: ruff, snakefmt, snakemake --lint, then pytest
# (slow real-model and SLURM tests included; pass pytest arguments to narrow it down).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export JAX_PLATFORMS=cpu
echo "== ruff" && .venv/bin/ruff check workflow tests
echo "== snakefmt" && .venv/bin/snakefmt --check Snakefile workflow/rules
echo "== snakemake --lint" && .venv/bin/snakemake --lint --cores 1
echo "== pytest" && exec .venv/bin/pytest "$@"
