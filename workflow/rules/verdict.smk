# The last stage, after the report: a batch-invariant sampler that diverged fails the run with a
# one-line reason (invariance.fail_on_divergence: false only warns); stock tunix never does.
rule verdict:
    input:
        report=PATHS.report,
        invariance=PATHS.all_invariance(PIPELINE),
    output:
        PATHS.verdict,
    log:
        PATHS.log("verdict"),
    conda:
        "../../envs/report.yaml"
    params:
        fail=targets.verdict_flag(PIPELINE),
        code=codegraph.stage_digest("verdict"),
    shell:
        "python -m gsm8k_eval verdict --invariance {input.invariance:q} {params.fail}"
        " --out {output:q} > {log:q} 2>&1 || {{ tail -n 1 {log:q} >&2; exit 1; }}"
