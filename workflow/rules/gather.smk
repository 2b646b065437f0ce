# evaluation.parallel_jobs > 1: rule evaluate writes parts/K-of-N, this joins them.
wildcard_constraints:
    part="[0-9]+-of-[0-9]+",


if PIPELINE.parallel_jobs > 1:

    rule gather_evaluation:
        input:
            parts=lambda wc: [
                f"{d}/{name}"
                for d in targets.part_dirs(
                    PIPELINE, PATHS.eval_dir(wc.checkpoint, wc.sampler, wc.batch_size)
                )
                for name in (targets.GENERATIONS, targets.GENERATION_RECORD)
            ],
        output:
            generations=PATHS.generations(
                PATHS.eval_dir("{checkpoint}", "{sampler}", "{batch_size}")
            ),
            record=PATHS.generation_record(
                PATHS.eval_dir("{checkpoint}", "{sampler}", "{batch_size}")
            ),
        log:
            PATHS.log("gather_evaluation/{checkpoint}/{sampler}/bs{batch_size}"),
        localrule: True
        conda:
            "../../envs/evaluate.yaml"
        params:
            parts=lambda wc: targets.part_dirs(
                PIPELINE, PATHS.eval_dir(wc.checkpoint, wc.sampler, wc.batch_size)
            ),
            output_dir=lambda wc, output: os.path.dirname(output.generations),
            code=codegraph.stage_digest("gather"),
        shell:
            "python -m gsm8k_eval gather --parts {params.parts:q}"
            " --output-dir {params.output_dir:q} > {log:q} 2>&1"
