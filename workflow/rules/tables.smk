# Phase `tables`: the paper tables and the figures, from the metrics, histories and
# predictions only.


rule tables:
    """Main, ablation, open-set, cross-task, pre-training and SED-extras tables (Markdown, CSV
    with its caption sidecar, LaTeX) and the flat DVC metrics file results/metrics/summary.json
    (SUMMARY_FILE)."""
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
            for path in PLAN.table_files()
        ],
        PLAN.table_sidecars(),
        summary=SUMMARY_FILE,
    params:
        config=effective_config_param,
        settings=settings_of("tables"),
        metrics_dir=METRICS_DIR,
    log:
        "logs/tables.log",
    conda:
        UNIAV_ENV
    shell:
        "uniav tables --config {params.config} --metrics-dir {params.metrics_dir}"
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
            for path in PLAN.figure_files()
        ],
    params:
        config=effective_config_param,
        settings=settings_of("figures"),
        metrics_dir=METRICS_DIR,
    log:
        "logs/figures.log",
    conda:
        UNIAV_ENV
    shell:
        "uniav figures --config {params.config} --metrics-dir {params.metrics_dir}"
        " --models-dir results/models --predictions-dir results/predictions"
        " --output-dir results/figures > {log} 2>&1"
