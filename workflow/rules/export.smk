# Every evaluation in lm-eval's own output shapes (gsm8k_eval/lm_eval_export.py).
rule export_lm_eval:
    input:
        rollouts=PATHS.rollouts("{checkpoint}", "{sampler}", "{batch_size}"),
        summary=PATHS.summary("{checkpoint}", "{sampler}", "{batch_size}"),
        dataset=PATHS.dataset("test"),
    output:
        results=lm_eval_export.results_path(
            PATHS.eval_dir("{checkpoint}", "{sampler}", "{batch_size}")
        ),
        samples=lm_eval_export.samples_path(
            PATHS.eval_dir("{checkpoint}", "{sampler}", "{batch_size}")
        ),
    log:
        PATHS.log("export_lm_eval/{checkpoint}/{sampler}/bs{batch_size}"),
    localrule: True
    conda:
        "../../envs/report.yaml"
    params:
        # The modules `gsm8k-eval export-lm-eval` imports (derived from the import graph).
        code=codegraph.stage_digest("export-lm-eval"),
        out_dir=lambda wc, output: os.path.dirname(output.results),
    shell:
        "python -m gsm8k_eval export-lm-eval --rollouts {input.rollouts:q}"
        " --summary {input.summary:q} --dataset {input.dataset:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"
