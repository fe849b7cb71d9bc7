# Phase `evaluate`: test-split predictions (ActivityNet results format) and metrics per run
# (per experiment and seed; the `{experiment}` wildcard is the run name, see train.smk).
# One thread per job: a job is mostly start-up and the small test splits, so two jobs side by
# side (or beside a training job) finish sooner than one job with two threads.


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
    threads: 1
    conda:
        UNIAV_ENV
    shell:
        "uniav evaluate --config {params.config} {params.run}"
        " --weights {input.weights} --predictions-dir {output.predictions}"
        " --metrics {output.metrics} --threads {threads} > {log} 2>&1"


rule cross_task:
    """Score a run's weights on each task's test videos with another task's names of the
    concepts they share (the `tables.cross_task` rows' experiments; evaluation only)."""
    input:
        unpack(cross_task_inputs),
        weights="results/models/{experiment}/model.safetensors",
    output:
        metrics=f"{METRICS_DIR}/{{experiment}}.cross_task.json",
    params:
        config=effective_config_param,
        settings=settings_of("cross_task"),
        run=run_arguments,
    log:
        "logs/cross_task/{experiment}.log",
    threads: 1
    conda:
        UNIAV_ENV
    shell:
        "uniav cross-task --config {params.config} {params.run}"
        " --weights {input.weights} --metrics {output.metrics} --threads {threads}"
        " --no-progress > {log} 2>&1"
