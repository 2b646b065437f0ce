rule fetch_checkpoint:
    output:
        directory(PATHS.checkpoint_dir("{checkpoint}")),
    log:
        PATHS.log("fetch_checkpoint/{checkpoint}"),
    conda:
        "../../envs/fetch.yaml"
    params:
        code=codegraph.stage_digest("fetch-checkpoint"),
        source=lambda wc: PIPELINE.checkpoint(wc.checkpoint).source,
        step=lambda wc: targets.step_argument(PIPELINE, wc.checkpoint),
    shell:
        "python -m gsm8k_eval fetch-checkpoint --source {params.source:q} --step={params.step:q}"
        " --out {output:q} > {log:q} 2>&1"
