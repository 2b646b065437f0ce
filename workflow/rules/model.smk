rule fetch_model:
    output:
        directory(targets.model_dir()),
    log:
        "results/logs/fetch_model.log",
    conda:
        "../../envs/fetch.yaml"
    params:
        source=PIPELINE.model.source,
        revision=PIPELINE.model.revision or "",
    shell:
        "python -m gsm8k_eval fetch-model --source {params.source:q} --revision={params.revision:q}"
        " --out {output:q} > {log:q} 2>&1"
