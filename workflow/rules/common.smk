# Helpers shared by the rule files -- the effective configuration, per-job settings (what goes
# into `params:` so a change reruns the job), path patterns and phase targets.
# Functions only (snakemake --lint wants functions apart from rules).

import hashlib
import json
import os
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError

from uniav.config import to_plain
from uniav.prepare.download import resolve_dest, unpack_target
from uniav.errors import UniAVError
from uniav.pipeline.effective import with_command_line, write_effective_config
from uniav.report.figures import figure_paths, main_table_tasks, main_table_sources
from uniav.report.tables import table_experiments, table_names

#: The conda environment every job runs in (relative to the rule files).
UNIAV_ENV = "../envs/uniav.yaml"


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def normalise_config(snakemake_config):
    """In place: restore the types of nested `--config` values (Snakemake parses them as
    strings) and let command-line values win over the selected scale, as `uniav --set` does
    (see uniav.pipeline.effective)."""
    command_line = dict(workflow.config_settings.overwrite_config or {})
    try:
        typed = with_command_line(dict(snakemake_config), command_line)
    except UniAVError as exc:
        raise WorkflowError(f"invalid configuration: {exc}") from None
    snakemake_config.clear()
    snakemake_config.update(typed)


def effective_config(snakemake_config):
    """Validate strictly (uniav.config) and write the content-addressed effective config.

    Returns:
        (the validated uniav Config, the path every job passes as `uniav ... --config`).
    """
    try:
        path, validated = write_effective_config(snakemake_config)
    except UniAVError as exc:
        raise WorkflowError(f"invalid configuration: {exc}") from None
    return validated, str(path)


def effective_config_param(wildcards, input):
    """The effective config path, as a *derived* parameter.

    Snakemake compares only non-derived params between runs; a param function that takes
    `input` is derived.  So the path (which changes whenever any config value changes) is not a
    rerun trigger by itself -- the per-rule `settings` params are, and they hold only the
    values the job uses.
    """
    return EFFECTIVE_CONFIG


def constraint_of(names):
    """A wildcard constraint matching exactly one of `names`."""
    return "|".join(re.escape(name) for name in names)


def settings(data):
    """Canonical JSON of the config values a job depends on (its rerun-trigger param)."""
    return json.dumps(to_plain(data), sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# Tasks and experiments
# --------------------------------------------------------------------------------------------


def used_tasks():
    """Tasks trained by at least one experiment, in `tasks:` order."""
    used = {task for experiment in UNIAV.experiments.values() for task in experiment.tasks}
    return [task for task in UNIAV.tasks if task in used]


def experiments():
    """Experiment names, in `experiments:` order."""
    return list(UNIAV.experiments)


def prompts_dir():
    """Where `uniav prompts` writes <task>.npy and <task>.json."""
    return UNIAV.prompts.output_dir.rstrip("/")


def task_pattern(paths, what):
    """Turn per-task paths into one pattern with a {task} wildcard.

    Each task's path must contain the task name exactly once as a separate token
    (e.g. resources/synthetic/tal/annotations.json); all must give the same pattern.
    """
    patterns = set()
    for task, path in paths.items():
        if path is None:
            raise WorkflowError(f"{what}.{task} is not set")
        token = re.compile(rf"(?<![A-Za-z0-9]){re.escape(task)}(?![A-Za-z0-9])")
        if len(token.findall(path)) != 1:
            raise WorkflowError(
                f"{what}.{task} = {path!r}: the path must contain the task name {task!r} "
                "exactly once (as its own path component or file stem), so one rule can "
                "produce every task's file"
            )
        patterns.add(token.sub("{task}", path).rstrip("/"))
    if len(patterns) != 1:
        raise WorkflowError(
            f"{what}: the per-task paths must differ only by the task name, got {sorted(patterns)}"
        )
    return patterns.pop()


def synthetic_pattern(field):
    """Path pattern of datasets.synthetic.tasks.<task>.<field>."""
    return task_pattern(
        {task: getattr(data, field) for task, data in UNIAV.datasets.synthetic.tasks.items()},
        f"datasets.synthetic.tasks.<task>.{field}",
    )


# --------------------------------------------------------------------------------------------
# Where each task's data comes from (synthetic: synthesize/extract; paper: download)
# --------------------------------------------------------------------------------------------


def manifest_targets():
    """Where each manifest entry lands: {entry name: (path, is a directory)}.

    A plain entry lands at <root>/<dest>; an archive in the directory it unpacks into
    (several archives may share one, e.g. one per modality).
    """
    root = UNIAV.datasets.paper.root
    targets = {}
    for entry in UNIAV.datasets.paper.manifest:
        try:
            dest = resolve_dest(entry, root)
            targets[entry.name] = (str(unpack_target(dest) if entry.unpack else dest), entry.unpack)
        except UniAVError as exc:
            raise WorkflowError(f"datasets.paper.manifest: {exc}") from None
    return targets


def manifest_outputs(directories=None):
    """Distinct download targets (only files, only directories, or both when None)."""
    outputs = []
    for path, is_directory in manifest_targets().values():
        if directories is not None and is_directory != directories:
            continue
        if path not in outputs:
            outputs.append(path)
    return outputs


def exact_paths(paths):
    """A wildcard constraint matching exactly these paths (nothing when there are none)."""
    return "|".join(re.escape(path) for path in paths) or "(?!)"


def download_names(wildcards):
    """Manifest entries that produce the requested file or directory."""
    target = wildcards.get("paper_file") or wildcards.get("paper_directory")
    return [name for name, (path, _) in manifest_targets().items() if path == target]


def download_settings(wildcards):
    """Where the requested target's entries come from (a changed source refetches them).

    Checksums and descriptions are left out: `uniav download` verifies checksums itself and
    keeps files that already match, so pinning a hash must not make Snakemake delete an
    unpacked archive first.
    """
    names = set(download_names(wildcards))
    return settings(
        [
            {"name": e.name, "url": e.url, "dest": e.dest, "unpack": e.unpack}
            for e in UNIAV.datasets.paper.manifest
            if e.name in names
        ]
    )


def model_dir(wildcards, output):
    """The directory of the exported weights (derived from the output, not a trigger)."""
    return os.path.dirname(output.weights)


def prompts_dir_param(wildcards, input):
    """The prompts directory (derived: its files are inputs already)."""
    return prompts_dir()


def paper_source(path):
    """The Snakemake input standing for a paper-benchmark file.

    The manifest destination that is `path` or contains it (so the download rule is
    planned when it is missing); otherwise the path itself, which must then exist (placed by
    hand, see docs/datasets.md).
    """
    target = Path(path)
    for dest in manifest_outputs():
        if target == Path(dest) or Path(dest) in target.parents:
            return dest
    return str(path)


def annotations_of(task):
    """The annotation file of a task (as an input of the current benchmark)."""
    data = UNIAV.task_spec(task).data
    if UNIAV.benchmark == "paper":
        return paper_source(data.annotations)
    return synthetic_pattern("annotations").format(task=task)


def features_of(task):
    """The feature store of a task (as an input of the current benchmark)."""
    data = UNIAV.task_spec(task).data
    if UNIAV.benchmark == "paper":
        return paper_source(data.features)
    return synthetic_pattern("features").format(task=task)


def prompt_files(task):
    """The prompt embeddings and their metadata written by `uniav prompts`."""
    return [f"{prompts_dir()}/{task}.npy", f"{prompts_dir()}/{task}.json"]


def data_targets():
    """Phase `data`: what synthesize (or download) produces for every task."""
    if UNIAV.benchmark == "paper":
        return manifest_outputs() or [annotations_of(task) for task in used_tasks()]
    return [synthetic_pattern("annotations").format(task=t) for t in used_tasks()] + [
        synthetic_pattern("media").format(task=t) for t in used_tasks()
    ]


def feature_targets():
    """Phase `features`: the feature store of every task."""
    return [features_of(task) for task in used_tasks()]


def prompt_targets():
    """Phase `features` (continued): the prompt embeddings of every task."""
    return [path for task in used_tasks() for path in prompt_files(task)]


# --------------------------------------------------------------------------------------------
# Per-job settings (rerun triggers) and inputs
# --------------------------------------------------------------------------------------------


def synthesize_settings(wildcards):
    """What `uniav synthesize --task T` output depends on: the generator's record (generator
    version, seed, subset names and sizes, media format)."""
    from uniav.prepare.synthetic import generation_record

    record = generation_record(UNIAV, wildcards.task)
    record.pop("fingerprint", None)
    return settings(record)


def extract_settings(wildcards):
    """What `uniav extract --task T` output depends on: the encoders and the task's grid and
    store layout."""
    data = UNIAV.datasets.synthetic.tasks[wildcards.task]
    grid = ("fps", "feat_stride", "window_frames", "feature_format", "id_prefix",
            "visual_suffix", "audio_suffix")
    return settings(
        {"features": UNIAV.features, "grid": {key: getattr(data, key) for key in grid}}
    )


def synthetic_feature_output():
    """The feature-store output pattern: a directory (npy) or one file (hdf5)."""
    formats = {data.feature_format for data in UNIAV.datasets.synthetic.tasks.values()}
    if len(formats) != 1:
        raise WorkflowError(
            "datasets.synthetic.tasks.<task>.feature_format: use one format for every task"
        )
    pattern = synthetic_pattern("features")
    return directory(pattern) if formats.pop() == "npy" else pattern


def prompt_settings(wildcards):
    """What `uniav prompts --task T` reads: source, encoder model, template (and npy file)."""
    task = wildcards.task
    source = UNIAV.prompts.source
    return settings(
        {
            "source": source,
            "model": UNIAV.prompts.model if source == "sentence-transformer" else None,
            "template": UNIAV.tasks[task].prompt_template,
            "npy": UNIAV.datasets.paper.prompts.get(task) if source == "npy" else None,
            "benchmark": UNIAV.benchmark,
        }
    )


def prompt_inputs(wildcards):
    """Inputs of the prompts job: the class list (annotation file) and, for npy, the file."""
    task = wildcards.task
    inputs = {"annotations": annotations_of(task)}
    if UNIAV.prompts.source == "npy":
        if UNIAV.benchmark != "paper":
            raise WorkflowError(
                "prompts.source: npy reads datasets.paper.prompts; the synthetic benchmark "
                "uses prompts.source: sentence-transformer"
            )
        path = UNIAV.datasets.paper.prompts.get(task)
        if path is None:
            raise WorkflowError(
                f"prompts.source is npy but datasets.paper.prompts.{task} is not set"
            )
        inputs["npy"] = paper_source(path)
    return inputs


def train_settings(wildcards):
    """What `uniav train` depends on: the resolved experiment (tasks, model, train, task
    specs), the seed and the evaluation settings used for validation."""
    experiment = UNIAV.experiment(wildcards.experiment)
    return settings(
        {"experiment": experiment.to_dict(), "seed": UNIAV.seed, "eval": UNIAV.eval}
    )


def checkpoint_dir(wildcards):
    """Resumable checkpoints of a training job: work/checkpoints/<experiment>/<settings hash>.

    Keyed by the job's settings, so a job rerun after a config change starts afresh while a
    killed job rerun with the same settings resumes.  Never a declared output: Snakemake would
    delete it before a rerun.
    """
    digest = train_settings(wildcards).encode()
    return f"work/checkpoints/{wildcards.experiment}/{hashlib.sha256(digest).hexdigest()[:12]}"


def experiment_inputs(wildcards):
    """Annotations, feature stores and prompt embeddings of the experiment's tasks."""
    tasks = UNIAV.experiments[wildcards.experiment].tasks
    inputs = {}
    for task in tasks:
        inputs[f"annotations_{task}"] = annotations_of(task)
        inputs[f"features_{task}"] = features_of(task)
        inputs[f"prompts_{task}"] = prompt_files(task)[0]
    return inputs


def evaluation_inputs(wildcards):
    """Annotations and feature stores of the experiment's tasks (the weights carry prompts)."""
    tasks = UNIAV.experiments[wildcards.experiment].tasks
    inputs = {}
    for task in tasks:
        inputs[f"annotations_{task}"] = annotations_of(task)
        inputs[f"features_{task}"] = features_of(task)
    return inputs


def evaluate_settings(wildcards):
    """What `uniav evaluate` depends on besides the weights: task specs and eval settings."""
    experiment = UNIAV.experiment(wildcards.experiment)
    return settings(
        {
            "tasks": experiment.tasks,
            "specs": experiment.to_dict()["specs"],
            "eval": UNIAV.eval,
            "seed": UNIAV.seed,
        }
    )


# --------------------------------------------------------------------------------------------
# Tables and figures
# --------------------------------------------------------------------------------------------


def published_file():
    """The published-numbers file shown in the tables (paper benchmark only), or None."""
    if UNIAV.benchmark == "paper" and UNIAV.tables.published:
        return UNIAV.tables.published
    return None


def tables_settings(wildcards):
    """What `uniav tables` reads from the config: rows, experiments' task sets, task subsets
    and names (captions), benchmark and scale."""
    return settings(
        {
            "tables": UNIAV.tables,
            "experiments": {name: e.tasks for name, e in UNIAV.experiments.items()},
            "tasks": list(UNIAV.tasks),
            "subsets": {t: UNIAV.task_spec(t).data.subsets.test for t in UNIAV.tasks},
            "benchmark": UNIAV.benchmark,
            "scale": UNIAV.scale,
            "published": published_file(),
        }
    )


def table_inputs(wildcards):
    """The metrics of every experiment a table row uses (and the published file, if shown)."""
    inputs = {
        "metrics": [f"results/metrics/{name}.json" for name in table_experiments(UNIAV)]
    }
    if published_file():
        inputs["published"] = published_file()
    return inputs


def figures_settings(wildcards):
    """What `uniav figures` reads from the config: experiments and their tasks, main-table
    rows and the test subsets of the tasks."""
    return settings(
        {
            "experiments": {name: e.tasks for name, e in UNIAV.experiments.items()},
            "main": UNIAV.tables.main,
            "subsets": {t: UNIAV.task_spec(t).data.subsets.test for t in UNIAV.tasks},
        }
    )


def figure_inputs(wildcards):
    """Training histories of all experiments; metrics, predictions and ground truth of the
    main-table experiments and tasks."""
    tasks = main_table_tasks(UNIAV)
    shown = sorted({e for t in tasks for _, e in main_table_sources(UNIAV, t)})
    return {
        "training": [f"results/models/{name}/training.json" for name in experiments()],
        "metrics": [f"results/metrics/{name}.json" for name in shown],
        "predictions": [f"results/predictions/{name}" for name in shown],
        "annotations": [annotations_of(task) for task in tasks],
    }


def table_files():
    """Every file `uniav tables` writes."""
    return [
        f"results/tables/{name}.{suffix}"
        for name in table_names(UNIAV)
        for suffix in ("md", "csv", "tex")
    ]


def figure_files():
    """Every file `uniav figures` writes."""
    return [str(path) for path in figure_paths(UNIAV, "results/figures")]
