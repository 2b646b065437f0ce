"""GSM8K evaluation of JAX/tunix checkpoints, batch-invariant by construction.

dataset → model, checkpoints → evaluate (checkpoint × batch size) → invariance → report.
Every rule is thin wiring around one `gsm8k-eval` subcommand (workflow/gsm8k_eval).
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/checkpoints.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/invariance.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    download_dataset,
    fetch_model,
    fetch_checkpoint,
    check_invariance,
    render_report,


rule all:
    default_target: True
    input:
        targets.REPORT,
