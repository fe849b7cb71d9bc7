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

#: The model settings that make two models the same architecture (parameter shapes and what
#: they mean): weights of one initialise the other only when all of these are equal
#: (``uniav train --init-from``, ``experiments.<name>.init_from``).  The others - drop-path,
#: dropout, loss settings, the classifier's initial prior, the position-table behaviour at
#: inference, the preset name - may differ between pre-training and fine-tuning.
ARCHITECTURE_KEYS: tuple[str, ...] = (
    "embd_dim", "head_dim", "n_head", "arch", "scale_factor", "regression_ranges",
    "embd_kernel_size", "head_kernel_size", "head_num_layers", "embd_with_ln", "head_with_ln",
    "use_abs_pe", "task_experts", "classifier")


def architecture_differences(ours: Any, theirs: Any) -> dict[str, tuple[Any, Any]]:
    """The :data:`ARCHITECTURE_KEYS` whose values differ between two resolved models.

    Args:
        ours, theirs: :class:`ModelConfig` instances or plain mappings of one.

    Returns:
        ``{"model.<key>": (our value, their value)}`` (lists for tuples), in key order.
    """
    def value(model: Any, key: str) -> Any:
        found = model.get(key) if isinstance(model, dict) else getattr(model, key)
        if isinstance(found, (list, tuple)):
            return [list(v) if isinstance(v, (list, tuple)) else v for v in found]
        return found

    return {f"model.{key}": (value(ours, key), value(theirs, key)) for key in ARCHITECTURE_KEYS
            if value(ours, key) != value(theirs, key)}


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
        init_from: the experiment whose weights training starts from, or None.
        held_out_classes: task -> class names held out of training (empty: none).
    """

    name: str
    tasks: list[str]
    model: ModelConfig
    train: TrainConfig
    specs: dict[str, TaskSpec]
    init_from: str | None = None
    held_out_classes: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (JSON-serialisable), used for hashing and tracking.  ``init_from``
        and ``held_out_classes`` appear only when set, so that the settings (and config
        hashes) of experiments without them are what they were before these keys existed.
        A task's ``concepts`` are left out: neither training nor evaluation reads them (the
        cross-task evaluation records its pairs itself)."""
        from uniav.config.loading import to_plain

        specs = {t: to_plain(s) for t, s in self.specs.items()}
        for spec in specs.values():
            spec["data"].pop("concepts", None)
        data = {"name": self.name, "tasks": list(self.tasks), "model": to_plain(self.model),
                "train": to_plain(self.train), "specs": specs}
        if self.init_from is not None:
            data["init_from"] = {"experiment": self.init_from}
        if self.held_out_classes:
            data["held_out_classes"] = {t: list(c) for t, c in self.held_out_classes.items()}
        return data


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
                              specs={t: task_spec(config, t) for t in tasks},
                              init_from=exp.init_from.experiment if exp.init_from else None,
                              held_out_classes={t: tuple(names) for t, names
                                                in exp.held_out_classes.items()})
