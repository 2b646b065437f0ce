rule fetch_model:
    output:
        directory(PATHS.model_dir()),
    log:
        PATHS.log("fetch_model"),
    conda:
        "../../envs/fetch.yaml"
    params:
        code=codegraph.stage_digest("fetch-model"),
        source=PIPELINE.model.source,
        revision=PIPELINE.model.revision or "",
    shell:
        "python -m gsm8k_eval fetch-model --source {params.source:q} --revision={params.revision:q}"
        " --out {output:q} > {log:q} 2>&1"
