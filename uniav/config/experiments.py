"""Resolved views of a validated configuration: a task's full spec, the model of an
experiment, an experiment with every value resolved."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from uniav.config.sections import DatasetTaskConfig, ModelConfig, TaskConfig, TrainConfig
from uniav.config.validation import parse
from uniav.errors import ConfigError

if TYPE_CHECKING:
    from uniav.config.sections import Config

#: The widths each model preset sets (the presets differ in nothing else).  ``paper`` is the
#: published model (130,750,693 parameters with the paper's tasks and 1536-d ONE-PEACE inputs);
#: ``cpu`` is sized for the synthetic benchmark on 2 cores.
MODEL_PRESETS: dict[str, dict[str, int]] = {
    "paper": {"embd_dim": 512, "head_dim": 512},
    "cpu": {"embd_dim": 64, "head_dim": 64},
}


@dataclass(frozen=True)
class TaskSpec:
    """Everything the one dataset class, the model and the evaluator need to know about a task."""

    name: str
    benchmark: str
    data: DatasetTaskConfig
    task: TaskConfig

    @property
    def prompt_template(self) -> str:
        return self.task.prompt_template

    @property
    def class_aware(self) -> bool:
        return self.task.class_aware

    @property
    def max_seq_len(self) -> int:
        return self.data.max_seq_len


@dataclass(frozen=True)
class ResolvedExperiment:
    """An experiment with every value resolved.

    Attributes:
        name: the experiment's name.
        tasks: its tasks in step order (``train.task_order`` applied).
        model: the resolved model (preset widths filled in).
        train: the training settings with the experiment's overrides.
        specs: task name -> :class:`TaskSpec`.
    """

    name: str
    tasks: list[str]
    model: ModelConfig
    train: TrainConfig
    specs: dict[str, TaskSpec]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (JSON-serialisable), used for hashing and tracking."""
        from uniav.config.loading import to_plain

        return {"name": self.name, "tasks": list(self.tasks), "model": to_plain(self.model),
                "train": to_plain(self.train),
                "specs": {t: to_plain(s) for t, s in self.specs.items()}}


def task_spec(config: Config, task: str) -> TaskSpec:
    """The full spec record of one task (benchmark part + task part)."""
    if task not in config.tasks:
        raise ConfigError(f"tasks.{task}: unknown task (known: {', '.join(config.tasks)})")
    dataset_tasks = config.dataset_tasks()
    if task not in dataset_tasks:
        raise ConfigError(f"datasets.{config.benchmark}.tasks.{task}: missing")
    return TaskSpec(name=task, benchmark=config.benchmark, data=dataset_tasks[task],
                    task=config.tasks[task])


def resolve_model(section: ModelConfig, overrides: dict[str, Any] | None = None,
                  path: str = "model") -> ModelConfig:
    """The model: the section, then ``overrides`` key by key, then the preset's widths for
    ``embd_dim`` / ``head_dim`` left null.

    Args:
        section: the validated ``model:`` section.
        overrides: a partial model mapping (an experiment's ``model:``).
        path: key path of ``overrides`` for error messages.
    """
    merged = {**dataclasses.asdict(section), **(overrides or {})}
    model = parse(ModelConfig, merged, path if overrides else "model")
    widths = {key: value for key, value in MODEL_PRESETS[model.preset].items()
              if getattr(model, key) is None}
    return dataclasses.replace(model, **widths)


def resolve_experiment(config: Config, name: str) -> ResolvedExperiment:
    """Resolve a named experiment into its tasks, model and training config."""
    from uniav.config.loading import deep_merge, to_plain

    if name not in config.experiments:
        raise ConfigError(f"experiments.{name}: unknown experiment "
                          f"(known: {', '.join(config.experiments)})")
    exp = config.experiments[name]
    model = resolve_model(config.model, exp.model, f"experiments.{name}.model")
    train = parse(TrainConfig, deep_merge(to_plain(config.train), exp.train),
                  f"experiments.{name}.train")
    tasks = list(exp.tasks)
    if train.task_order is not None:
        rank = {task: i for i, task in enumerate(train.task_order)}
        tasks.sort(key=lambda task: rank.get(task, len(rank)))
    return ResolvedExperiment(name=name, tasks=tasks, model=model, train=train,
                              specs={t: task_spec(config, t) for t in tasks})
