# The adapter between Snakemake and the package's job plan (uniav/pipeline/jobs.py, tested with
# pytest): the effective configuration, and the settings (rerun triggers), inputs and paths of
# each job as the small functions the rules name.  No logic of its own.

import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from uniav.errors import UniAVError
from uniav.pipeline.effective import with_command_line, write_effective_config
from uniav.pipeline.dvc_sync import reconcile
from uniav.pipeline.jobs import METRICS_DIR, PHASES, SUMMARY_FILE, JobPlan, constraint_of

#: The conda environment every job runs in (relative to the rule files).
UNIAV_ENV = "../envs/uniav.yaml"


def normalise_config(snakemake_config):
    """In place: restore the types of `--config` values and let them win over the overlays,
    as `uniav --set` does (see uniav.pipeline.effective)."""
    command_line = dict(workflow.config_settings.overwrite_config or {})
    try:
        typed = with_command_line(dict(snakemake_config), command_line)
    except UniAVError as exc:
        raise WorkflowError(f"invalid configuration: {exc}") from None
    snakemake_config.clear()
    snakemake_config.update(typed)


def effective_config(snakemake_config):
    """Validate strictly, write the content-addressed effective config, build the job plan.

    Returns:
        (the validated uniav Config, the path every job passes as `uniav ... --config`, the
        JobPlan).
    """
    try:
        path, validated = write_effective_config(snakemake_config)
        plan = JobPlan(validated)
        plan.synthetic_pattern("annotations")  # path rules fail here, with their key
    except UniAVError as exc:
        raise WorkflowError(f"invalid configuration: {exc}") from None
    return validated, str(path), plan


def reconcile_with_dvc(plan):
    """Before Snakemake plans: make its records agree with outputs DVC restored (dvc pull,
    checkout, exp apply; uniav/pipeline/dvc_sync.py).  Main process only.  Returns the
    reconciliation (its record_success() goes into onsuccess), or None."""
    if not workflow.is_main_process:
        return None
    return reconcile(
        Path.cwd(),
        plan.phase_outputs(),
        phase_rules={phase: rules for phase, _, rules in PHASES},
        snakefile=workflow.main_snakefile,
        log=lambda message: print(message, file=sys.stderr),
    )


def effective_config_param(wildcards, input):
    """The effective config path, as a *derived* parameter (it takes `input`): Snakemake
    compares only non-derived params between runs, so the path (which changes with any config
    value) is not a rerun trigger by itself - each job's `settings` are."""
    return EFFECTIVE_CONFIG


def settings_of(job):
    """The rerun-trigger param of `job`: the canonical JSON of the settings it reads."""

    def settings(wildcards):
        names = {key: value for key, value in wildcards.items()}
        if "paper_file" in names or "paper_directory" in names:
            names = {"target": names.get("paper_file") or names.get("paper_directory")}
        return PLAN.settings(job, **names)

    return settings


def download_names(wildcards):
    """Manifest entries that produce the requested file or directory."""
    return PLAN.download_names(wildcards.get("paper_file") or wildcards.get("paper_directory"))


def exact_paths(paths):
    """A wildcard constraint matching exactly these paths (nothing when there are none)."""
    return constraint_of(paths)


def synthetic_feature_output():
    """The feature-store output pattern: a directory (npy) or one file (hdf5)."""
    pattern = PLAN.synthetic_pattern("features")
    return directory(pattern) if PLAN.synthetic_features_are_directories() else pattern


def prompt_inputs(wildcards):
    return PLAN.prompt_inputs(wildcards.task)


def experiment_inputs(wildcards):
    return PLAN.experiment_inputs(wildcards.experiment)


def evaluation_inputs(wildcards):
    return PLAN.evaluation_inputs(wildcards.experiment)


def cross_task_inputs(wildcards):
    return PLAN.cross_task_inputs(wildcards.experiment)


def table_inputs(wildcards):
    return PLAN.table_inputs()


def figure_inputs(wildcards):
    return PLAN.figure_inputs()


def model_dir(wildcards, output):
    """The directory of the exported weights (derived from the output, not a trigger)."""
    return str(Path(output.weights).parent)


def checkpoint_dir(wildcards):
    return PLAN.checkpoint_dir(wildcards.experiment)


def train_launcher(wildcards):
    return PLAN.train_launcher(wildcards.experiment)


def train_arguments(wildcards, input):
    """Options the experiment's training adds to `uniav train` (`--init-from WEIGHTS` for an
    experiment with `init_from`; the weights are an input already).  Derived (it takes `input`):
    not a rerun trigger of its own - `settings` and the input are."""
    return PLAN.train_arguments(wildcards.experiment)


def run_arguments(wildcards, input):
    """`--experiment E --set seed=<s>` of the run the `{experiment}` wildcard names (a run name:
    `E` or `E.seed<s>`).  Derived (it takes `input`): the run's `settings` are its trigger."""
    return PLAN.run_arguments(wildcards.experiment)


def train_gpus(wildcards):
    return PLAN.train_processes(wildcards.experiment)


def prompts_dir_param(wildcards, input):
    """The prompts directory (derived: its files are inputs already)."""
    return PLAN.prompts_dir()
