rule evaluate:
    input:
        dataset=PATHS.dataset("test"),
        manifest=PATHS.dataset_manifest("test"),
        fewshot=PATHS.fewshot_inputs(PIPELINE),
        model=PATHS.model_dir(),
        checkpoint=PATHS.checkpoint_dir("{checkpoint}"),
    output:
        # The evaluation's folder, or one part folder of it with evaluation.parallel_jobs > 1:
        # what the model produced (graded by rule score).
        generations=targets.job_output(
            PIPELINE,
            PATHS.eval_dir("{checkpoint}", "{sampler}", "{batch_size}"),
            targets.GENERATIONS,
        ),
        record=targets.job_output(
            PIPELINE,
            PATHS.eval_dir("{checkpoint}", "{sampler}", "{batch_size}"),
            targets.GENERATION_RECORD,
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
        # The modules `gsm8k-eval evaluate` imports (derived from the import graph; grading
        # is not among them).
        code=codegraph.stage_digest("evaluate"),
        output_dir=lambda wc, output: os.path.dirname(output.generations),
        part=lambda wc: targets.part_argument(wc.get("part")),
        cache=targets.cache_argument(PATHS, PIPELINE),
    shell:
        "python -m gsm8k_eval evaluate --dataset {input.dataset:q} --dataset-manifest {input.manifest:q}"
        " --model-dir {input.model:q} --checkpoint {input.checkpoint:q}"
        " --checkpoint-name {wildcards.checkpoint} --sampler {wildcards.sampler}"
        " --batch-size {wildcards.batch_size}"
        " {params.options} {params.part} {params.cache} --output-dir {params.output_dir:q}"
        " > {log:q} 2>&1"


# spot_check: the first spot_check.examples examples at one more batch size, for the samplers
# whose batch_sizes lack it; rule check_invariance compares them with the full run on those
# examples only. Always one job (no parts).
rule evaluate_spot_check:
    input:
        dataset=PATHS.dataset("test"),
        manifest=PATHS.dataset_manifest("test"),
        fewshot=PATHS.fewshot_inputs(PIPELINE),
        model=PATHS.model_dir(),
        checkpoint=PATHS.checkpoint_dir("{checkpoint}"),
    output:
        generations=PATHS.generations(
            PATHS.spot_dir("{checkpoint}", "{sampler}", "{batch_size}")
        ),
        record=PATHS.generation_record(
            PATHS.spot_dir("{checkpoint}", "{sampler}", "{batch_size}")
        ),
    log:
        PATHS.log("evaluate_spot_check/{checkpoint}/{sampler}/bs{batch_size}"),
    conda:
        "../../envs/evaluate.yaml"
    threads: 4
    resources:
        gpu=targets.gpu_request(PIPELINE),
    params:
        options=targets.spot_check_arguments(PATHS, PIPELINE),
        code=codegraph.stage_digest("evaluate"),
        output_dir=lambda wc, output: os.path.dirname(output.generations),
        cache=targets.cache_argument(PATHS, PIPELINE),
    shell:
        "python -m gsm8k_eval evaluate --dataset {input.dataset:q} --dataset-manifest {input.manifest:q}"
        " --model-dir {input.model:q} --checkpoint {input.checkpoint:q}"
        " --checkpoint-name {wildcards.checkpoint} --sampler {wildcards.sampler}"
        " --batch-size {wildcards.batch_size}"
        " {params.options} {params.cache} --output-dir {params.output_dir:q}"
        " > {log:q} 2>&1"
