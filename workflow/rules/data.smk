# Phase `data`: the embedded synthetic benchmark (raw media + annotations, generated from a
# seed) or the paper benchmark's files (manifest downloads, one job per file or unpacked
# directory, so changing one entry never deletes another's data).


rule synthesize:
    """Generate one task's synthetic videos (16 fps / 16 kHz media) and annotations."""
    output:
        annotations=PLAN.synthetic_pattern("annotations"),
        media=directory(PLAN.synthetic_pattern("media")),
    params:
        config=effective_config_param,
        settings=settings_of("synthesize"),
    log:
        "logs/synthesize/{task}.log",
    threads: 2
    conda:
        UNIAV_ENV
    shell:
        "uniav synthesize --config {params.config} --task {wildcards.task} --jobs {threads}"
        " > {log} 2>&1"


rule download:
    """Fetch (or take) one file of datasets.paper.manifest and verify its SHA-256."""
    output:
        "{paper_file}",
    params:
        config=effective_config_param,
        names=download_names,
        settings=settings_of("download"),
    log:
        "logs/download/{paper_file}.log",
    wildcard_constraints:
        paper_file=exact_paths(PLAN.manifest_outputs(directories=False)),
    conda:
        UNIAV_ENV
    shell:
        "uniav download --config {params.config} --only {params.names} > {log} 2>&1"


rule download_unpacked:
    """Fetch, verify and safely unpack the archive(s) that fill one directory."""
    output:
        directory("{paper_directory}"),
    params:
        config=effective_config_param,
        names=download_names,
        settings=settings_of("download"),
    log:
        "logs/download/{paper_directory}.log",
    wildcard_constraints:
        paper_directory=exact_paths(PLAN.manifest_outputs(directories=True)),
    conda:
        UNIAV_ENV
    shell:
        "uniav download --config {params.config} --only {params.names} > {log} 2>&1"
