rule check_invariance:
    input:
        full=lambda wc: PATHS.checkpoint_rollouts(PIPELINE, wc.checkpoint, wc.sampler),
        spot=lambda wc: PATHS.spot_rollouts(PIPELINE, wc.checkpoint, wc.sampler),
    output:
        PATHS.invariance("{checkpoint}", "{sampler}"),
    log:
        PATHS.log("check_invariance/{checkpoint}/{sampler}"),
    conda:
        "../../envs/report.yaml"
    params:
        rollouts=lambda wc: PATHS.rollouts_argument(PIPELINE, wc.checkpoint, wc.sampler),
        spot=lambda wc: PATHS.spot_argument(PIPELINE, wc.checkpoint, wc.sampler),
        code=codegraph.stage_digest("check-invariance"),
    shell:
        "python -m gsm8k_eval check-invariance --checkpoint {wildcards.checkpoint}"
        " --sampler {wildcards.sampler}"
        " --rollouts {params.rollouts} {params.spot} --out {output:q} > {log:q} 2>&1"
