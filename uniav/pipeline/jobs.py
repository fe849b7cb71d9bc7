"""The job plan of the Snakemake workflow: for each job, the settings it depends on (its rerun
trigger), its inputs and its outputs - computed from the validated configuration, tested with
pytest, and read by the thin rule files (``workflow/rules/*.smk``).

Settings come from the command that reads them (each command owns the list of settings it
reads): :func:`~uniav.prepare.synthetic.generation_record`,
:func:`~uniav.prepare.extract.extraction_settings`, :func:`~uniav.prepare.prompts.prompt_settings`,
:func:`~uniav.engine.training_data.training_settings`,
:func:`~uniav.engine.inference.evaluation_settings`, :func:`~uniav.report.tables.tables_settings`
and :func:`~uniav.report.figures.figures_settings`.  A job's ``settings`` parameter is their
canonical JSON, so a changed value reruns exactly the jobs that read it.

Runs: with ``seeds:`` every experiment runs once per seed (:mod:`uniav.config.runs`); the
``{experiment}`` wildcard of the train and evaluate jobs is a *run name* (``E``, the run with
the top-level ``seed``, or ``E.seed<s>``), and their settings are those of the configuration
with that seed (:meth:`JobPlan.run_config`), so the primary run's are exactly those of a plan
without ``seeds``.

Paths: every task's data path of the synthetic benchmark must contain the task name once as its
own token (``resources/synthetic/tal/annotations.json``), so one rule with a ``{task}`` wildcard
produces every task's file (:meth:`JobPlan.synthetic_pattern`).  Paper-benchmark inputs are the
download targets of the manifest that contain them (:meth:`JobPlan.paper_source`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from uniav.config import Config, all_runs, experiment_runs, run_name, run_of, run_seeds, to_plain
from uniav.errors import ConfigError

#: The tables' file formats.
TABLE_FORMATS = ("md", "csv", "tex")

#: Where ``uniav evaluate`` writes ``<experiment>.json`` (one DVC output of the evaluate stage).
METRICS_DIR = "results/metrics/experiments"

#: The flat DVC metrics file ``uniav tables`` writes beside it (an output of the tables stage;
#: DVC refuses an output inside another stage's output directory, hence the two places).
SUMMARY_FILE = "results/metrics/summary.json"

#: The phases of the pipeline in order: ``(phase, Snakemake target rule, the rules whose jobs the
#: phase runs)``.  Each phase is one DVC stage of the same name (dvc.yaml) running the target
#: rule; every rule that produces files belongs to exactly one phase.
PHASES = (("data", "data_all", ("synthesize", "download", "download_unpacked")),
          ("features", "features_all", ("extract_features", "prompts")),
          ("train", "train_all", ("train",)),
          ("evaluate", "evaluate_all", ("evaluate", "cross_task")),
          ("tables", "reproduce_tables", ("tables", "figures")))


def canonical(data: Any) -> str:
    """Canonical JSON of plain data or dataclasses (a job's ``settings`` parameter)."""
    return json.dumps(to_plain(data), sort_keys=True, separators=(",", ":"))


def constraint_of(names: list[str]) -> str:
    """A wildcard constraint matching exactly one of ``names`` (nothing when empty)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


class JobPlan:
    """What every job of the workflow reads and writes, for one configuration.

    Args:
        config: the validated configuration (the effective one the jobs read).
    """

    def __init__(self, config: Config):
        self.config = config

    # ---- names -----------------------------------------------------------------------------

    def experiments(self) -> list[str]:
        """Experiment names, in ``experiments:`` order."""
        return list(self.config.experiments)

    def seeds(self) -> list[int]:
        """The seeds every experiment runs with (``seeds``, or ``[seed]``)."""
        return run_seeds(self.config)

    def runs(self) -> list[str]:
        """Every run name: experiments in ``experiments:`` order, each with its seeds in
        ``seeds`` order (without ``seeds``: the experiment names)."""
        return [name for name, _, _ in all_runs(self.config)]

    def experiment_runs(self, experiment: str) -> list[str]:
        """The run names of one experiment, in ``seeds`` order."""
        return [name for name, _ in experiment_runs(self.config, experiment)]

    def run_name(self, experiment: str, seed: int) -> str:
        """``experiment`` for the top-level ``seed``, else ``<experiment>.seed<seed>``."""
        return run_name(experiment, seed, self.config.seed)

    def run_of(self, name: str) -> tuple[str, int]:
        """``(experiment, seed)`` of a run name (:class:`~uniav.errors.ConfigError` if none)."""
        return run_of(self.config, name)

    def run_config(self, name: str) -> Config:
        """The configuration a run's commands see: this one with the run's ``seed`` (itself
        for the primary run, so its settings are a plan's without ``seeds``)."""
        _, seed = self.run_of(name)
        return self.config if seed == self.config.seed else dataclasses.replace(
            self.config, seed=seed)

    def run_arguments(self, name: str) -> str:
        """What a run's train and evaluate commands get: ``--experiment E --set seed=<s>``."""
        experiment, seed = self.run_of(name)
        return f"--experiment {experiment} --set seed={seed}"

    def used_tasks(self) -> list[str]:
        """Tasks trained by at least one experiment, in ``tasks:`` order."""
        used = {task for exp in self.config.experiments.values() for task in exp.tasks}
        return [task for task in self.config.tasks if task in used]

    def prompts_dir(self) -> str:
        """Where ``uniav prompts`` writes ``<task>.npy`` and ``<task>.json``."""
        return self.config.prompts.output_dir.rstrip("/")

    # ---- settings (rerun triggers) ------------------------------------------------------------

    def settings(self, job: str, **wildcards: str) -> str:
        """The canonical JSON of the settings ``job`` reads (see module docs and
        :func:`uniav.pipeline.settings.job_settings`).

        Args:
            job: ``synthesize``, ``download``, ``extract``, ``prompts``, ``train``,
                ``evaluate``, ``cross_task``, ``tables`` or ``figures``.
            wildcards: the job's wildcards (``task``, ``experiment`` - a run name for
                ``train``, ``evaluate`` and ``cross_task`` -, ``target``...).
        """
        from uniav.pipeline.settings import job_settings

        return canonical(job_settings(self, job, **wildcards))

    def train_processes(self, run: str) -> int:
        """Processes (GPUs) of a run's training job (``train.processes``)."""
        return self.config.experiment(self.run_of(run)[0]).train.processes

    def train_launcher(self, run: str) -> str:
        """How the training job starts ``uniav``: directly, or under ``torchrun`` with one
        process per GPU (``train.processes`` > 1)."""
        processes = self.train_processes(run)
        if processes == 1:
            return "uniav"
        return f"torchrun --standalone --nproc_per_node {processes} -m uniav"

    def init_weights(self, run: str) -> str | None:
        """The weights a run's training starts from (``experiments.<name>.init_from``: the
        exported weights of the experiment it names, from its run with the same seed), or
        None."""
        experiment, seed = self.run_of(run)
        source = self.config.experiment(experiment).init_from
        return None if source is None else self.model_path(self.run_name(source, seed))

    def train_arguments(self, run: str) -> str:
        """Options the training job adds to ``uniav train``: ``--init-from WEIGHTS`` for an
        experiment that starts from another's weights (the ``train`` rule appends it; an
        experiment with ``init_from`` refuses to train without it), else nothing."""
        weights = self.init_weights(run)
        return "" if weights is None else f"--init-from {weights}"

    def checkpoint_dir(self, run: str) -> str:
        """Resumable checkpoints of a training job: ``work/checkpoints/<run>/<hash>``.

        Keyed by the job's settings, so a job rerun after a config change starts afresh while a
        killed job rerun with the same settings resumes.  Never a declared output: Snakemake would
        delete it before a rerun.
        """
        digest = hashlib.sha256(self.settings("train", experiment=run).encode())
        return f"work/checkpoints/{run}/{digest.hexdigest()[:12]}"

    # ---- data paths --------------------------------------------------------------------------

    def synthetic_pattern(self, field: str) -> str:
        """``datasets.synthetic.tasks.<task>.<field>`` of every task as one ``{task}`` pattern.

        Raises:
            ConfigError: a task's path does not contain its name exactly once as its own
                token, or the paths differ by more than the task name.
        """
        patterns = set()
        for task, data in self.config.datasets.synthetic.tasks.items():
            path = getattr(data, field)
            key = f"datasets.synthetic.tasks.{task}.{field}"
            if path is None:
                raise ConfigError(f"{key}: not set")
            token = re.compile(rf"(?<![A-Za-z0-9]){re.escape(task)}(?![A-Za-z0-9])")
            if len(token.findall(path)) != 1:
                raise ConfigError(f"{key}: {path!r} must contain the task name {task!r} exactly "
                                  f"once (as its own path component or file stem), so one rule "
                                  f"can produce every task's file")
            patterns.add(token.sub("{task}", path).rstrip("/"))
        if len(patterns) != 1:
            raise ConfigError(f"datasets.synthetic.tasks.<task>.{field}: the per-task paths must "
                              f"differ only by the task name, got {sorted(patterns)}")
        return patterns.pop()

    def synthetic_features_are_directories(self) -> bool:
        """Whether the synthetic feature stores are npy directories (else HDF5 files)."""
        formats = {data.feature_format for data in self.config.datasets.synthetic.tasks.values()}
        if len(formats) != 1:
            raise ConfigError("datasets.synthetic.tasks.<task>.feature_format: use one format for "
                              "every task")
        return formats.pop() == "npy"

    def manifest_targets(self) -> dict[str, tuple[str, bool]]:
        """Where each manifest entry lands: ``{name: (path, is a directory)}`` (an archive: the
        directory it unpacks into, which several archives may share)."""
        from uniav.prepare.download import resolve_dest, unpack_target

        paper = self.config.datasets.paper
        targets = {}
        for entry in paper.manifest:
            dest = resolve_dest(entry, paper.root)
            targets[entry.name] = (str(unpack_target(dest) if entry.unpack else dest),
                                   entry.unpack)
        return targets

    def manifest_outputs(self, directories: bool | None = None) -> list[str]:
        """Distinct download targets (only files, only directories, or both when None)."""
        outputs: list[str] = []
        for path, is_directory in self.manifest_targets().values():
            if (directories is None or is_directory == directories) and path not in outputs:
                outputs.append(path)
        return outputs

    def download_names(self, target: str) -> list[str]:
        """Manifest entries that produce the file or directory ``target``."""
        return [name for name, (path, _) in self.manifest_targets().items() if path == target]

    def paper_source(self, path: str) -> str:
        """The manifest target that is ``path`` or contains it (so the download is planned when
        it is missing); otherwise ``path`` itself, which must then exist (placed by hand)."""
        target = Path(path)
        for dest in self.manifest_outputs():
            if target == Path(dest) or Path(dest) in target.parents:
                return dest
        return str(path)

    def annotations_of(self, task: str) -> str:
        """The annotation file of a task (as an input of the current benchmark)."""
        if self.config.benchmark == "paper":
            return self.paper_source(self.config.task_spec(task).data.annotations)
        return self.synthetic_pattern("annotations").format(task=task)

    def features_of(self, task: str) -> str:
        """The feature store of a task (as an input of the current benchmark)."""
        if self.config.benchmark == "paper":
            return self.paper_source(self.config.task_spec(task).data.features)
        return self.synthetic_pattern("features").format(task=task)

    def prompt_files(self, task: str) -> list[str]:
        """The prompt embeddings and their record, written by ``uniav prompts``."""
        return [f"{self.prompts_dir()}/{task}.npy", f"{self.prompts_dir()}/{task}.json"]

    # ---- phase targets ---------------------------------------------------------------------

    def data_targets(self) -> list[str]:
        """Phase ``data``: what synthesize (or download) produces for every task."""
        if self.config.benchmark == "paper":
            return self.manifest_outputs() or [self.annotations_of(t) for t in self.used_tasks()]
        return [self.synthetic_pattern(field).format(task=task)
                for field in ("annotations", "media") for task in self.used_tasks()]

    def feature_targets(self) -> list[str]:
        """Phase ``features``: every task's feature store and prompt embeddings."""
        return ([self.features_of(task) for task in self.used_tasks()]
                + [path for task in self.used_tasks() for path in self.prompt_files(task)])

    @staticmethod
    def model_path(run: str) -> str:
        """Where a run's training job exports its weights."""
        return f"results/models/{run}/model.safetensors"

    def model_files(self) -> list[str]:
        """Phase ``train``: every run's exported weights and history."""
        return [f"results/models/{name}/{file}" for name in self.runs()
                for file in ("model.safetensors", "training.json")]

    def metrics_files(self) -> list[str]:
        """Every run's metrics JSON."""
        return [self.metrics_file(name) for name in self.runs()]

    @staticmethod
    def metrics_file(run: str) -> str:
        """The metrics JSON of one run."""
        return f"{METRICS_DIR}/{run}.json"

    def cross_task_experiments(self) -> list[str]:
        """Experiments of ``tables.cross_task`` rows with a task that shares concepts with
        another task (those get a ``uniav cross-task`` job per run), no repeats."""
        from uniav.report.tables import cross_task_experiments

        return cross_task_experiments(self.config)

    def cross_task_runs(self) -> list[str]:
        """The runs of :meth:`cross_task_experiments` (every seed)."""
        return [run for name in self.cross_task_experiments()
                for run in self.experiment_runs(name)]

    @staticmethod
    def cross_task_file(run: str) -> str:
        """What a run's ``uniav cross-task`` job writes (beside its metrics JSON)."""
        from uniav.report.tables import cross_task_path

        return str(cross_task_path(METRICS_DIR, run))

    def cross_task_files(self) -> list[str]:
        """Every cross-task metrics file."""
        return [self.cross_task_file(run) for run in self.cross_task_runs()]

    def prediction_dirs(self) -> list[str]:
        """Every run's predictions directory."""
        return [f"results/predictions/{name}" for name in self.runs()]

    def table_files(self) -> list[str]:
        """Every table ``uniav tables`` writes (Markdown, CSV, LaTeX)."""
        from uniav.report.tables import table_names

        return [f"results/tables/{name}.{suffix}" for name in table_names(self.config)
                for suffix in TABLE_FORMATS]

    def table_sidecars(self) -> list[str]:
        """The caption sidecar of every CSV table."""
        from uniav.report.tables import table_names

        return [f"results/tables/{name}.csv-metadata.json" for name in table_names(self.config)]

    def figure_files(self) -> list[str]:
        """Every file ``uniav figures`` writes."""
        from uniav.report.figures import figure_paths

        return [str(path) for path in figure_paths(self.config, "results/figures")]

    def phase_outputs(self) -> dict[str, list[str]]:
        """What the jobs of each phase of :data:`PHASES` write (files and directories)."""
        return {"data": self.data_targets(),
                "features": self.feature_targets(),
                "train": self.model_files(),
                "evaluate": self.metrics_files() + self.prediction_dirs()
                + self.cross_task_files(),
                "tables": (self.table_files() + self.table_sidecars() + [SUMMARY_FILE]
                           + self.figure_files())}

    # ---- inputs ----------------------------------------------------------------------------

    def prompt_inputs(self, task: str) -> dict[str, str]:
        """The class list (annotation file) and, for ``prompts.source: npy``, the file."""
        inputs = {"annotations": self.annotations_of(task)}
        if self.config.prompts.source == "npy":
            inputs["npy"] = self.paper_source(self.config.datasets.paper.prompts[task])
        return inputs

    def experiment_inputs(self, run: str) -> dict[str, str]:
        """Annotations, feature stores and prompt embeddings of the run's experiment's tasks,
        and the weights it starts from (``init_from``), if any."""
        experiment, _ = self.run_of(run)
        inputs = {}
        for task in self.config.experiments[experiment].tasks:
            inputs[f"annotations_{task}"] = self.annotations_of(task)
            inputs[f"features_{task}"] = self.features_of(task)
            inputs[f"prompts_{task}"] = self.prompt_files(task)[0]
        weights = self.init_weights(run)
        if weights is not None:
            inputs["init_from"] = weights
        return inputs

    def evaluation_inputs(self, run: str) -> dict[str, str]:
        """Annotations and feature stores of the run's experiment's tasks (the weights carry
        prompts; an experiment with held-out classes is scored over every class, with the prompt
        embeddings of all of them)."""
        experiment, _ = self.run_of(run)
        inputs = {}
        held_out = self.config.experiments[experiment].held_out_classes
        for task in self.config.experiments[experiment].tasks:
            inputs[f"annotations_{task}"] = self.annotations_of(task)
            inputs[f"features_{task}"] = self.features_of(task)
            if task in held_out:
                inputs[f"prompts_{task}"] = self.prompt_files(task)[0]
        return inputs

    def cross_task_inputs(self, run: str) -> dict[str, str]:
        """Annotations and feature stores of the run's tasks that a cross-task pair scores."""
        from uniav.data.concepts import cross_task_pairs

        experiment, _ = self.run_of(run)
        scored = {pair.task for pair in cross_task_pairs(
            self.config, self.config.experiments[experiment].tasks)}
        inputs = {}
        for task in self.config.experiments[experiment].tasks:
            if task in scored:
                inputs[f"annotations_{task}"] = self.annotations_of(task)
                inputs[f"features_{task}"] = self.features_of(task)
        return inputs

    def published_file(self) -> str | None:
        """The published-numbers file shown in the tables (paper benchmark only), or None."""
        if self.config.benchmark == "paper" and self.config.tables.published:
            return self.config.tables.published
        return None

    def table_inputs(self) -> dict[str, Any]:
        """The metrics of every run of every experiment a table row uses, the cross-task files
        of the ``tables.cross_task`` rows (and the published file, if any)."""
        from uniav.report.tables import table_experiments

        inputs: dict[str, Any] = {"metrics": [self.metrics_file(run)
                                              for name in table_experiments(self.config)
                                              for run in self.experiment_runs(name)]}
        if self.cross_task_files():
            inputs["cross_task"] = self.cross_task_files()
        if self.published_file():
            inputs["published"] = self.published_file()
        return inputs

    def figure_inputs(self) -> dict[str, list[str]]:
        """Training histories of all runs; metrics (every run), predictions (the first seed's
        run) and ground truth of the main-table experiments and tasks."""
        from uniav.report.figures import main_table_sources, main_table_tasks

        tasks = main_table_tasks(self.config)
        shown = sorted({e for t in tasks for _, e in main_table_sources(self.config, t)})
        return {"training": [f"results/models/{name}/training.json" for name in self.runs()],
                "metrics": [self.metrics_file(run) for name in shown
                            for run in self.experiment_runs(name)],
                "predictions": [f"results/predictions/{self.experiment_runs(name)[0]}"
                                for name in shown],
                "annotations": [self.annotations_of(task) for task in tasks]}
