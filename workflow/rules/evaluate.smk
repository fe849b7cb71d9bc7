# Phase `evaluate`: test-split predictions (ActivityNet results format) and metrics per run
# (per experiment and seed; the `{experiment}` wildcard is the run name, see train.smk).


rule evaluate:
    """Run the exported weights on the test split of each task; score them."""
    input:
        unpack(evaluation_inputs),
        weights="results/models/{experiment}/model.safetensors",
    output:
        metrics=f"{METRICS_DIR}/{{experiment}}.json",
        predictions=directory("results/predictions/{experiment}"),
    params:
        config=effective_config_param,
        settings=settings_of("evaluate"),
        run=run_arguments,
    log:
        "logs/evaluate/{experiment}.log",
    benchmark:
        "benchmarks/evaluate_{experiment}.tsv"
    threads: 2
    conda:
        UNIAV_ENV
    shell:
        "uniav evaluate --config {params.config} {params.run}"
        " --weights {input.weights} --predictions-dir {output.predictions}"
        " --metrics {output.metrics} --threads {threads} > {log} 2>&1"
