"""What the Snakemake workflow needs beyond the engine: result tables, figures, tracking set-up.

* :mod:`uniav.pipeline.tables` — the paper tables (main, ablation, SED extras, published numbers),
  built from the metrics JSON files only, in Markdown, CSV and LaTeX.
* :mod:`uniav.pipeline.figures` — training curves, per-class AP and prediction timelines.
* :mod:`uniav.pipeline.effective` — the effective configuration file that every rule passes to
  its ``uniav`` sub-command, so the CLI sees what Snakemake saw.
* :mod:`uniav.pipeline.gpu` — a per-GPU lock so concurrent local training jobs use distinct
  devices.
* :mod:`uniav.pipeline.cli` — ``uniav tables``, ``uniav figures``, ``uniav tracking-init``,
  ``uniav gpu-slot``.
"""
