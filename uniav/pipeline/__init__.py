"""Workflow support: what the Snakemake rules need from the package besides the commands.

* :mod:`uniav.pipeline.effective` — the effective configuration file that every rule passes to
  its ``uniav`` sub-command, so the CLI sees what Snakemake saw.
* :mod:`uniav.pipeline.gpu` — a per-GPU lock so concurrent local training jobs use distinct
  devices.
* :mod:`uniav.pipeline.cli` — ``uniav tracking-init`` and ``uniav gpu-slot``.

Tables and figures are report output and live in :mod:`uniav.report`.
"""
