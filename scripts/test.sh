#!/usr/bin/env bash
# Set up (idempotently) and run every check: pytest runs ruff, snakefmt --check and
# snakemake --lint (tests/test_lint.py) and every test, slow real-model and SLURM tests
# included. Two pytest-xdist workers share the machine (most tests leave a core idle: Python
# start-up, compiling, snakemake's scheduling); a test module stays in one worker
# (tests/conftest.py). Extra arguments go to pytest and win, e.g. `bash scripts/test.sh -n 0`
# (one process) or `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export JAX_PLATFORMS=cpu
exec .venv/bin/pytest -n 2 --dist loadfile "$@"
