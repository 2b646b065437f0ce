rule reference:
    input:
        dataset=PATHS.dataset("test"),
        manifest=PATHS.dataset_manifest("test"),
        fewshot=PATHS.fewshot_inputs(PIPELINE),
        model=PATHS.model_dir(),
    output:
        generations=PATHS.generations(PATHS.reference_dir("{checkpoint}")),
        record=PATHS.generation_record(PATHS.reference_dir("{checkpoint}")),
    log:
        PATHS.log("reference/{checkpoint}"),
    conda:
        "../../envs/reference.yaml"
    threads: 4
    resources:
        gpu=targets.reference_gpu_request(PIPELINE),
    params:
        options=PATHS.reference_arguments(PIPELINE),
        # The modules `gsm8k-eval reference` imports (derived from the import graph).
        code=codegraph.stage_digest("reference"),
        checkpoint=lambda wc: (
            "base"
            if PIPELINE.checkpoint(wc.checkpoint).is_base
            else PATHS.checkpoint_dir(wc.checkpoint)
        ),
        output_dir=lambda wc: PATHS.reference_dir(wc.checkpoint),
    shell:
        "python -m gsm8k_eval reference --dataset {input.dataset:q} --dataset-manifest {input.manifest:q}"
        " --model-dir {input.model:q} --checkpoint {params.checkpoint:q}"
        " --checkpoint-name {wildcards.checkpoint} {params.options}"
        " --output-dir {params.output_dir:q} > {log:q} 2>&1"
