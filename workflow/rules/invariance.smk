rule check_invariance:
    input:
        lambda wc: PATHS.checkpoint_rollouts(PIPELINE, wc.checkpoint),
    output:
        PATHS.invariance("{checkpoint}"),
    log:
        PATHS.log("check_invariance/{checkpoint}"),
    conda:
        "../../envs/report.yaml"
    params:
        rollouts=lambda wc: PATHS.rollouts_argument(PIPELINE, wc.checkpoint),
        fail="--fail-on-divergence" if PIPELINE.fail_on_divergence else "",
    shell:
        "python -m gsm8k_eval check-invariance --checkpoint {wildcards.checkpoint}"
        " --rollouts {params.rollouts} {params.fail} --out {output:q} > {log:q} 2>&1"
