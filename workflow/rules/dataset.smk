rule download_dataset:
    input:
        lambda wc: targets.local_dataset_inputs(PIPELINE, wc.split),
    output:
        data=PATHS.dataset("{split}"),
        manifest=PATHS.dataset_manifest("{split}"),
    log:
        PATHS.log("download_dataset/{split}"),
    conda:
        "../../envs/fetch.yaml"
    params:
        code=codegraph.stage_digest("download-dataset"),
        source=lambda wc: PIPELINE.dataset.source_for(wc.split),
        revision=PIPELINE.dataset.revision or "",
        sha256=lambda wc: PIPELINE.dataset.sha256_for(wc.split) or "",
        config_name=PIPELINE.dataset.config_name,
    shell:
        "python -m gsm8k_eval download-dataset --source {params.source:q} --split {wildcards.split}"
        " --config-name {params.config_name:q} --revision={params.revision:q}"
        " --sha256={params.sha256:q} --out {output.data:q} --manifest {output.manifest:q}"
        " > {log:q} 2>&1"
