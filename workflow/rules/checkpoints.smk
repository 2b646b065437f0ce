rule fetch_checkpoint:
    output:
        directory(targets.checkpoint_dir("{checkpoint}")),
    log:
        "results/logs/fetch_checkpoint/{checkpoint}.log",
    conda:
        "../../envs/fetch.yaml"
    params:
        source=lambda wc: PIPELINE.checkpoint(wc.checkpoint).source,
        step=lambda wc: targets.step_argument(PIPELINE, wc.checkpoint),
    shell:
        "python -m gsm8k_eval fetch-checkpoint --source {params.source:q} --step={params.step:q}"
        " --out {output:q} > {log:q} 2>&1"
