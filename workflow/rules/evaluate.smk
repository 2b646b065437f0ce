rule evaluate:
    input:
        dataset=targets.dataset_path("test"),
        manifest=targets.dataset_manifest("test"),
        fewshot=targets.fewshot_inputs(PIPELINE),
        model=targets.model_dir(),
        checkpoint=targets.checkpoint_dir("{checkpoint}"),
    output:
        rollouts=targets.rollouts("{checkpoint}", "{batch_size}"),
        summary=targets.summary("{checkpoint}", "{batch_size}"),
    log:
        "results/logs/evaluate/{checkpoint}/bs{batch_size}.log",
    conda:
        "../../envs/evaluate.yaml"
    threads: 4
    resources:
        gpu=targets.gpu_request(PIPELINE),
    params:
        options=targets.evaluate_arguments(PIPELINE),
        output_dir=lambda wc: targets.eval_dir(wc.checkpoint, wc.batch_size),
    shell:
        "python -m gsm8k_eval evaluate --dataset {input.dataset:q} --dataset-manifest {input.manifest:q}"
        " --model-dir {input.model:q} --checkpoint {input.checkpoint:q}"
        " --checkpoint-name {wildcards.checkpoint} --batch-size {wildcards.batch_size}"
        " {params.options} --output-dir {params.output_dir:q} > {log:q} 2>&1"
