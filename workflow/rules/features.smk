# Phase `features` (synthetic benchmark): decode each task's media and encode it on the task's
# feature grid.  The paper benchmark ships pre-extracted ONE-PEACE features (phase `data`).


rule extract_features:
    """Decode, window and encode one task's videos into its feature store."""
    input:
        annotations=PLAN.synthetic_pattern("annotations"),
        media=PLAN.synthetic_pattern("media"),
    output:
        features=synthetic_feature_output(),
    params:
        config=effective_config_param,
        settings=settings_of("extract"),
    log:
        "logs/extract_features/{task}.log",
    benchmark:
        "benchmarks/extract_features_{task}.tsv"
    threads: 2
    conda:
        UNIAV_ENV
    shell:
        "uniav extract --config {params.config} --task {wildcards.task} --jobs {threads}"
        " > {log} 2>&1"
