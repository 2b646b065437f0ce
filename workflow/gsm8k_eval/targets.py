"""The names the Snakefile (and older code) reads, from the modules that own them:

- `paths`: where every output of a run lives (`RunPaths`, part folders);
- `commands`: each rule's command-line flags and job parameters;
- `ownership`: the default run name and which config files a run folder belongs to;
- `environment`: `export_environment`, called explicitly (Snakefile `onstart`), never on import.

`RunPaths` here adds the old `evaluate_arguments`/`reference_arguments` methods.
"""

from __future__ import annotations

from gsm8k_eval import commands, paths
from gsm8k_eval.commands import (
    cache_argument,
    gpu_request,
    list_steps,
    local_dataset_inputs,
    part_argument,
    reference_gpu_request,
    spot_check_arguments,
    step_argument,
    verdict_flag,
)
from gsm8k_eval.config import PipelineConfig
from gsm8k_eval.environment import export_environment
from gsm8k_eval.invariance import BATCH_DEPENDENT_SAMPLERS
from gsm8k_eval.ownership import EMBEDDED_CONFIG, EMBEDDED_RUN, check_owner, claim_run, default_run
from gsm8k_eval.paths import (
    GENERATION_RECORD,
    GENERATIONS,
    PART_WILDCARD,
    REPORT_NAME,
    RESULTS,
    job_dir,
    job_log,
    job_output,
    part_dir,
    part_dirs,
    reference_checkpoints,
    report_templates,
)

__all__ = [
    "BATCH_DEPENDENT_SAMPLERS",
    "EMBEDDED_CONFIG",
    "EMBEDDED_RUN",
    "GENERATIONS",
    "GENERATION_RECORD",
    "PART_WILDCARD",
    "REPORT_NAME",
    "RESULTS",
    "RunPaths",
    "cache_argument",
    "check_owner",
    "claim_run",
    "default_run",
    "export_environment",
    "gpu_request",
    "job_dir",
    "job_log",
    "job_output",
    "list_steps",
    "local_dataset_inputs",
    "part_argument",
    "part_dir",
    "part_dirs",
    "reference_checkpoints",
    "reference_gpu_request",
    "report_templates",
    "spot_check_arguments",
    "step_argument",
    "verdict_flag",
]


class RunPaths(paths.RunPaths):
    """`paths.RunPaths` with the rules' command-line flags as methods (old names)."""

    def evaluate_arguments(self, cfg: PipelineConfig) -> str:
        return commands.evaluate_arguments(self, cfg)

    def reference_arguments(self, cfg: PipelineConfig) -> str:
        return commands.reference_arguments(self, cfg)
