#!/usr/bin/env bash
# Set up (idempotently) and run the whole pipeline on the embedded default config.yaml.
# Extra arguments go to snakemake, e.g. `bash scripts/run.sh --configfile configs/x.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/snakemake --cores all "$@"
