# Grading: an evaluation's (a spot check's, or the PyTorch reference's) generations -> rollouts.jsonl and
# summary.json. Cheap; changing scoring.* or the grading code reruns this (and what reads it),
# never the generation.
wildcard_constraints:
    kind="eval|spot|reference",


rule score:
    input:
        generations=PATHS.generations(f"{PATHS.root}/{{kind}}/{{job}}"),
        record=PATHS.generation_record(f"{PATHS.root}/{{kind}}/{{job}}"),
    output:
        rollouts=f"{PATHS.root}/{{kind}}/{{job}}/rollouts.jsonl",
        summary=f"{PATHS.root}/{{kind}}/{{job}}/summary.json",
    log:
        PATHS.log("score/{kind}/{job}"),
    conda:
        "../../envs/report.yaml"
    params:
        primary=PIPELINE.primary_method,
        folder=lambda wc, input: os.path.dirname(input.generations),
        # The modules `gsm8k-eval score` imports (derived from the import graph).
        code=codegraph.stage_digest("score"),
    shell:
        "python -m gsm8k_eval score --generations-dir {params.folder:q}"
        " --primary-method {params.primary:q} > {log:q} 2>&1"
