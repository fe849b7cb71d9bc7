# Phase `tables`: the paper tables and the figures, from the metrics, histories and
# predictions only.


rule tables:
    """Main, ablation and SED-extras tables (Markdown, CSV with its caption sidecar, LaTeX) and
    the flat DVC metrics file results/metrics/summary.json."""
    input:
        unpack(table_inputs),
    output:
        [
            report(
                path,
                caption=f"../report/{Path(path).stem}.rst",
                category="Tables",
                subcategory=Path(path).stem,
                labels={"table": Path(path).stem, "format": Path(path).suffix.lstrip(".")},
            )
            for path in table_files()
        ],
        [f"results/tables/{name}.csv-metadata.json" for name in table_names(UNIAV)],
        summary="results/metrics/summary.json",
    params:
        config=effective_config_param,
        settings=tables_settings,
    log:
        "logs/tables.log",
    conda:
        UNIAV_ENV
    shell:
        "uniav tables --config {params.config} --metrics-dir results/metrics"
        " --output-dir results/tables --summary {output.summary} > {log} 2>&1"


rule figures:
    """Training curves, per-class AP and ground truth vs prediction timelines."""
    input:
        unpack(figure_inputs),
    output:
        [
            report(
                path,
                caption=f"../report/{Path(path).parent.name}.rst",
                category="Figures",
                subcategory=Path(path).parent.name,
                labels={"figure": Path(path).parent.name, "name": Path(path).stem},
            )
            if path.endswith(".png")
            else path
            for path in figure_files()
        ],
    params:
        config=effective_config_param,
        settings=figures_settings,
    log:
        "logs/figures.log",
    conda:
        UNIAV_ENV
    shell:
        "uniav figures --config {params.config} --metrics-dir results/metrics"
        " --models-dir results/models --predictions-dir results/predictions"
        " --output-dir results/figures > {log} 2>&1"
