rule evaluate:
    input:
        dataset=PATHS.dataset("test"),
        manifest=PATHS.dataset_manifest("test"),
        fewshot=PATHS.fewshot_inputs(PIPELINE),
        model=PATHS.model_dir(),
        checkpoint=PATHS.checkpoint_dir("{checkpoint}"),
    output:
        rollouts=PATHS.rollouts("{checkpoint}", "{sampler}", "{batch_size}"),
        summary=PATHS.summary("{checkpoint}", "{sampler}", "{batch_size}"),
    log:
        PATHS.log("evaluate/{checkpoint}/{sampler}/bs{batch_size}"),
    conda:
        "../../envs/evaluate.yaml"
    threads: 4
    resources:
        gpu=targets.gpu_request(PIPELINE),
    params:
        options=PATHS.evaluate_arguments(PIPELINE),
        # The generating code: editing it reruns the evaluations (render-only modules excluded).
        code=fingerprint.code_digest(),
        output_dir=lambda wc: PATHS.eval_dir(wc.checkpoint, wc.sampler, wc.batch_size),
    shell:
        "python -m gsm8k_eval evaluate --dataset {input.dataset:q} --dataset-manifest {input.manifest:q}"
        " --model-dir {input.model:q} --checkpoint {input.checkpoint:q}"
        " --checkpoint-name {wildcards.checkpoint} --sampler {wildcards.sampler}"
        " --batch-size {wildcards.batch_size}"
        " {params.options} --output-dir {params.output_dir:q} > {log:q} 2>&1"
