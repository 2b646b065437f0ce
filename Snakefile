"""GSM8K evaluation of JAX/tunix checkpoints, batch-invariant by construction.

dataset → model, checkpoints → evaluate (checkpoint × sampler × batch size: generations) →
score (grading) → invariance
(checkpoint × sampler) → report → verdict (a batch-invariant sampler that diverged fails the run).
Every rule is thin wiring around one `gsm8k-eval` subcommand (workflow/gsm8k_eval), and every
output of a run lives under results/<run>/ (the `run` config key).
"""

from snakemake.utils import min_version

min_version("9.0")


# The embedded demo config applies only when no --configfile is given: a user's config file
# is completed by the schema's defaults, never by the demo's settings.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/checkpoints.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/gather.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/invariance.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/verdict.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/export.smk"


localrules:
    all,
    download_dataset,
    fetch_model,
    fetch_checkpoint,
    check_invariance,
    render_report,
    verdict,
    score,


rule all:
    default_target: True
    input:
        PATHS.report,
        PATHS.verdict,
        lm_eval_export.export_targets(PATHS.all_summaries(PIPELINE)),
