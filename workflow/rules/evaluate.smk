rule evaluate:
    input:
        dataset=PATHS.dataset("test"),
        manifest=PATHS.dataset_manifest("test"),
        fewshot=PATHS.fewshot_inputs(PIPELINE),
        model=PATHS.model_dir(),
        checkpoint=PATHS.checkpoint_dir("{checkpoint}"),
    output:
        # The evaluation's folder, or one part folder of it with evaluation.parallel_jobs > 1.
        rollouts=targets.job_output(
            PIPELINE,
            PATHS.eval_dir("{checkpoint}", "{sampler}", "{batch_size}"),
            "rollouts.jsonl",
        ),
        summary=targets.job_output(
            PIPELINE,
            PATHS.eval_dir("{checkpoint}", "{sampler}", "{batch_size}"),
            "summary.json",
        ),
    log:
        PATHS.log(
            targets.job_log(PIPELINE, "evaluate/{checkpoint}/{sampler}/bs{batch_size}")
        ),
    conda:
        "../../envs/evaluate.yaml"
    threads: 4
    resources:
        gpu=targets.gpu_request(PIPELINE),
    params:
        options=PATHS.evaluate_arguments(PIPELINE),
        # The generating code: editing it reruns the evaluations (render-only modules excluded).
        code=fingerprint.code_digest(),
        output_dir=lambda wc, output: os.path.dirname(output.rollouts),
        part=lambda wc: targets.part_argument(wc.get("part")),
        cache=targets.cache_argument(PATHS, PIPELINE),
    shell:
        "python -m gsm8k_eval evaluate --dataset {input.dataset:q} --dataset-manifest {input.manifest:q}"
        " --model-dir {input.model:q} --checkpoint {input.checkpoint:q}"
        " --checkpoint-name {wildcards.checkpoint} --sampler {wildcards.sampler}"
        " --batch-size {wildcards.batch_size}"
        " {params.options} {params.part} {params.cache} --output-dir {params.output_dir:q}"
        " > {log:q} 2>&1"
