#!/usr/bin/env bash
# Set up (idempotently) and run every check: pytest runs ruff, snakefmt --check and
# snakemake --lint (tests/test_lint.py) and every test, slow real-model and SLURM tests
# included. Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export JAX_PLATFORMS=cpu
exec .venv/bin/pytest "$@"
