import json
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))

from gsm8k_eval import codegraph, lm_eval_export, provenance, targets, validation
from gsm8k_eval.config import load_config

# `--config` strings coerced; a bad config exits with one line per problem (`key.path: what is
# wrong`); then the schema's defaults and `run` filled in (in `config` too) and typed.
PIPELINE = load_config(
    config,
    targets.list_steps,
    default_run=targets.default_run(workflow.overwrite_configfiles),
    exit_on_error=True,
)
# An enabled reference needs torch here, unless --sdm conda gives its job envs/reference.yaml.
validation.reference_runtime_or_exit(
    PIPELINE.reference.enabled,
    uses_conda=any(
        m.name == "CONDA" for m in workflow.deployment_settings.deployment_method
    ),
)
PATHS = targets.RunPaths(config["run"])
targets.check_owner(PATHS, workflow.overwrite_configfiles)


onstart:
    targets.claim_run(PATHS, workflow.overwrite_configfiles)
    # Rules run `python -m gsm8k_eval`: this interpreter first on PATH (a conda env, when used,
    # goes before it) and the package importable without installation (for --sdm conda too).
    # Set here, before any job starts (jobs inherit it), not while the Snakefile is parsed.
    targets.export_environment(workflow.basedir)


wildcard_constraints:
    checkpoint="[A-Za-z0-9][A-Za-z0-9_.-]*",
    sampler="[a-z]+",
    batch_size="[0-9]+",
    split="test|train",
