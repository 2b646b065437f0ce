rule render_report:
    input:
        summaries=PATHS.all_summaries(PIPELINE),
        invariance=PATHS.all_invariance(PIPELINE),
        reference=PATHS.all_reference_summaries(PIPELINE),
        checkpoints=PATHS.all_checkpoint_dirs(PIPELINE),
        dataset=PATHS.dataset_manifest("test"),
        templates=targets.report_templates(workflow.basedir),
    output:
        report=report(
            PATHS.report,
            caption="../../report/captions/report.rst",
            category="Report",
        ),
        figures=report(
            directory(PATHS.figures),
            patterns=["{name}.png"],
            caption="../../report/captions/figures.rst",
            category="Figures",
        ),
    log:
        PATHS.log("render_report"),
    conda:
        "../../envs/report.yaml"
    params:
        config=json.dumps(config, sort_keys=True),
        # The modules `gsm8k-eval render-report` imports (derived from the import graph).
        code=codegraph.stage_digest("render-report"),
        # config files, --config overrides and profile, as Snakemake reports them
        command=provenance.snakemake_command(
            workflow.overwrite_configfiles,
            workflow.config_settings.config_args,
            sys.argv,
        ),
        manifests=PATHS.checkpoint_manifests(PIPELINE),
        templates=lambda wc, input: os.path.dirname(input.templates[0]),
        # the workflow folder (report/templates/*.j2 lies two levels below it): its git commit
        workflow_dir=lambda wc, input: os.path.dirname(
            os.path.dirname(os.path.dirname(input.templates[0]))
        ),
    shell:
        "python -m gsm8k_eval render-report --summaries {input.summaries:q}"
        " --invariance {input.invariance:q} --reference {input.reference:q}"
        " --checkpoint-manifests {params.manifests:q}"
        " --dataset-manifest {input.dataset:q} --template-dir {params.templates:q}"
        " --config-json {params.config:q} --command-line {params.command:q}"
        " --workflow-dir {params.workflow_dir:q}"
        " --out {output.report:q} > {log:q} 2>&1"
