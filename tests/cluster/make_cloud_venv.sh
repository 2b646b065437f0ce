#!/usr/bin/env bash
# Create (idempotently) a SEPARATE virtual environment for submitting to Google Batch or
# Kubernetes: snakemake-executor-plugin-googlebatch 0.5.1 pins google-cloud-storage<3, which
# would break the project's gcsfs, so it must never go into .venv.
#
#   tests/cluster/make_cloud_venv.sh [VENV_DIR]   (default: $GSM8K_CLOUD_VENV or /tmp/gsm8k-cloud-venv)
#
# Holds only snakemake and the cloud plugins (not the project's JAX stack): enough to submit,
# and to dry-run (-n) the profiles against tests/cluster/Snakefile.
# Exit status 77 (with a "CANNOT INSTALL" line) only when the package index cannot be reached
# at all; any other failure (a pin conflict, a broken build) is an ordinary failure.
set -euo pipefail

VENV="${1:-${GSM8K_CLOUD_VENV:-/tmp/gsm8k-cloud-venv}}"
PYTHON="${PYTHON:-python3}"
PINS=(
  "snakemake==9.27.1"
  "snakemake-executor-plugin-googlebatch==0.5.1"
  "snakemake-executor-plugin-kubernetes==0.5.1"
  "snakemake-storage-plugin-gcs==1.1.4"
)
stamp="$VENV/.gsm8k-cloud-$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-16)"

if [[ -f "$stamp" && -x "$VENV/bin/snakemake" ]]; then
  echo "$VENV"
  exit 0
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# Can the index be reached? Probe with pip's own version, which every index has.
pip_version="$("$VENV/bin/python" -c 'import pip; print(pip.__version__)')"
probe="$(mktemp -d)"
if ! "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --retries 1 \
  --no-deps -d "$probe" "pip==$pip_version" >&2; then
  rm -rf "$probe" "$VENV"
  echo "[make_cloud_venv] CANNOT INSTALL: the package index is unreachable" >&2
  exit 77
fi
rm -rf "$probe"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2
"$VENV/bin/python" -m pip check >&2
touch "$stamp"
echo "$VENV"
