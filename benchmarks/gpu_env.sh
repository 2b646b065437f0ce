# Sourced by benchmarks/gpu_*.sh (from the repository root): the Python environment on a GPU box
# with its own JAX. If .gpu/wheels holds wheels (tunix, qwix and their import-time deps, and for
# the pipeline snakemake's; see docs/gpu.md), they are installed offline into a fresh .gpu/site
# (removed first: an old flax left there would shadow the box's; never bring flax), choosing the
# CPython-specific wheels of this interpreter; .gpu/site and workflow go first on PYTHONPATH.
# Sets: py (the interpreter; PYTHON=... overrides), root, out ($OUT, default ./gpu-bench-out).
root="$PWD"
py="${PYTHON:-python3}"
out="${OUT:-$root/gpu-bench-out}"
mkdir -p "$out"
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }
if compgen -G ".gpu/wheels/*.whl" >/dev/null; then
  tag="$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
  wheels=()
  for whl in .gpu/wheels/*.whl; do
    # CPython-specific wheels (cffi-...-cp312-cp312-...) only for this interpreter; pure-Python
    # and abi3 wheels always.
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
export PATH="$root/.gpu/site/bin:$PATH"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cuda}"
"$py" -c 'import sys, jax, flax, tunix, qwix, yaml, numpy; print("python", sys.version.split()[0], "jax", jax.__version__, "flax", flax.__version__, jax.devices())'
# The GPU and its compute mode (the benchmark's flag-variant workers share the GPU with the main
# process: an Exclusive_Process mode would make them fail)
nvidia-smi --query-gpu=name,compute_mode,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
