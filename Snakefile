# The UniAV pipeline: data -> features -> prompts -> training -> evaluation -> tables.
#
#   snakemake --cores all                    # = reproduce_tables (the default target)
#   snakemake --cores all train_all          # a phase target (data_all, features_all, train_all,
#                                            #   evaluate_all, reproduce_tables; DVC calls these)
#   snakemake --cores all --config scale=tiny 'train={epochs: 1}'
#
# Rules are thin: each calls one `uniav` sub-command with --config <effective config>, the
# content-addressed copy of the configuration Snakemake itself sees (params.yaml merged with
# --configfile/--config), written at parse time by workflow/rules/common.smk.  The job plan
# (uniav/pipeline/jobs.py) gives each job its inputs and the settings it reads, as its `settings`
# param, so changing a value reruns exactly the jobs that read it.
# See docs/pipeline.md.

import os

from snakemake.utils import min_version, validate

min_version("9.0")


# UNIAV_PARAMS_FILE: only for the touch run of the DVC reconciliation (params.yaml with the values
# dvc.lock records; uniav/pipeline/dvc_sync.py).
configfile: os.environ.get("UNIAV_PARAMS_FILE", "params.yaml")


include: "workflow/rules/common.smk"


# `--config 'train={epochs: 3}'` arrives as {"epochs": "3"} (Snakemake reads nested --config
# values as strings): restore the types the configuration expects first, and let command-line
# values win over the selected scale (as `uniav --set` does).  Then validate twice:
# the JSON schema (generated from uniav/config.py by `uniav schema`) and the package's strict
# loader, which also checks cross-references and applies the scale.  The validated result is
# written to .snakemake/uniav/params-<hash>.yaml, the --config of every job.
normalise_config(config)
validate(config, "workflow/schemas/params.schema.json", set_default=False)
UNIAV, EFFECTIVE_CONFIG, PLAN = effective_config(config)
# After `dvc pull` / `dvc checkout` / `dvc exp apply`, the restored outputs have new modification
# times and no (or another version's) Snakemake metadata: make Snakemake agree with `dvc status`
# before it plans (docs/pipeline.md, "DVC").
DVC_SYNC = reconcile_with_dvc(PLAN)


wildcard_constraints:
    experiment=constraint_of(PLAN.runs()),  # run names: E, or E.seed<s> with `seeds`
    task=constraint_of(list(UNIAV.tasks)),


report: "workflow/report/workflow.rst"


include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"


onstart:
    if UNIAV.tracking.enabled:
        shell("uniav tracking-init --config {EFFECTIVE_CONFIG}")


onsuccess:
    if DVC_SYNC is not None:
        DVC_SYNC.record_success()


rule reproduce_tables:
    """Default target: every table and figure, and every experiment evaluated."""
    default_target: True
    input:
        PLAN.table_files(),
        PLAN.figure_files(),
        PLAN.metrics_files(),


rule data_all:
    """Phase target `data` (DVC stage data): annotations and media, or the paper downloads."""
    input:
        PLAN.data_targets(),


rule features_all:
    """Phase target `features` (DVC stage features): feature stores and class prompts."""
    input:
        PLAN.feature_targets(),


rule train_all:
    """Phase target `train` (DVC stage train): exported weights and history of every run."""
    input:
        PLAN.model_files(),


rule evaluate_all:
    """Phase target `evaluate` (DVC stage evaluate): metrics and predictions of every run, and
    the cross-task scores of the `tables.cross_task` runs."""
    input:
        PLAN.metrics_files(),
        PLAN.prediction_dirs(),
        PLAN.cross_task_files(),
