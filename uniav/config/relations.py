"""Relations between settings, checked after the types and ranges (every one names its key).

What the JSON schema cannot say: names that must refer to each other (tasks, experiments,
encoders), sizes that must divide each other (a task's ``max_seq_len`` and the model's largest
stride, the embedding width and the heads), counts that must leave something to train on, and
protocol rules (only ``protocol: released`` may validate on the test subset), experiments
that start from another experiment's weights (it must exist, no cycles, the same architecture)
and held-out classes (of the experiment's tasks, with the prompt classifier).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from uniav.errors import ConfigError

if TYPE_CHECKING:
    from uniav.config.sections import Config, ModelConfig


def check_relations(config: Config) -> None:
    """Raise :class:`~uniav.errors.ConfigError` on the first broken relation."""
    from uniav.config.runs import check_seeds

    check_seeds(config.seeds)
    _check_task_names(config)
    _check_tasks(config)
    _check_data(config)
    for path, model in [("model", config.model_config())] + [
            (f"experiments.{name}.model", config.experiment(name).model)
            for name in config.experiments]:
        _check_model(config, model, path)
    _check_training(config)
    _check_features(config)
    _check_experiment_links(config)
    _check_tables(config)


def _check_tables(config: Config) -> None:
    """Rows name known experiments; open-set rows experiments with held-out classes;
    cross-task rows prompt-classifier experiments, and some tasks share concepts."""
    from uniav.data.concepts import cross_task_pairs

    for table in ("main", "ablation", "open_set", "cross_task", "pretraining"):
        for i, row in enumerate(getattr(config.tables, table)):
            path = f"tables.{table}[{i}].experiments"
            for name in row.experiments:
                if name not in config.experiments:
                    raise _unknown(path, name, list(config.experiments), "experiment")
                if table == "open_set" and not config.experiments[name].held_out_classes:
                    raise ConfigError(f"{path}: experiment {name!r} holds no classes out "
                                      f"(experiments.{name}.held_out_classes), so it has no "
                                      f"novel classes to score")
                if table == "cross_task" and config.experiment(name).model.classifier != "prompt":
                    raise ConfigError(f"{path}: experiment {name!r} has the linear classifier, "
                                      f"which cannot be prompted with other names")
    pairs = cross_task_pairs(config)   # also checks: one class per concept and task
    if config.tables.cross_task and not pairs:
        raise ConfigError(f"tables.cross_task: no two tasks share a concept (declare them under "
                          f"datasets.{config.benchmark}.tasks.<task>.concepts, or leave "
                          f"tables.cross_task empty)")


def _unknown(path: str, name: str, known: list[str], what: str = "task") -> ConfigError:
    return ConfigError(f"{path}: unknown {what} {name!r} (known: {', '.join(known)})")


def _check_task_names(config: Config) -> None:
    tasks = list(config.tasks)
    for bench in ("synthetic", "paper"):
        for name in getattr(config.datasets, bench).tasks:
            if name not in config.tasks:
                raise ConfigError(f"datasets.{bench}.tasks.{name}: no such task under tasks:")
    for name in tasks:
        if name not in config.dataset_tasks():
            raise ConfigError(f"datasets.{config.benchmark}.tasks.{name}: missing "
                              f"(task {name!r} is listed under tasks:)")
    for name in config.datasets.synthetic.videos:
        if name not in config.tasks:
            raise ConfigError(f"datasets.synthetic.videos.{name}: no such task under tasks:")
    for name in config.datasets.paper.prompts:
        if name not in config.tasks:
            raise ConfigError(f"datasets.paper.prompts.{name}: no such task under tasks:")
    for key in ("batch_size", "lr"):
        values = getattr(config.train, key)
        for name in tasks:
            if name not in values:
                raise ConfigError(f"train.{key}.{name}: missing")
        for name in values:
            if name not in config.tasks:
                raise ConfigError(f"train.{key}.{name}: no such task under tasks:")
    for name, exp in config.experiments.items():
        for task in exp.tasks:
            if task not in config.tasks:
                raise _unknown(f"experiments.{name}.tasks", task, tasks)
        if len(set(exp.tasks)) != len(exp.tasks):
            raise ConfigError(f"experiments.{name}.tasks: a task is listed twice")
        config.experiment(name)  # validates the experiment's model/train overrides
    order = config.train.task_order or []
    for task in order:
        if task not in config.tasks:
            raise _unknown("train.task_order", task, tasks)
    if len(set(order)) != len(order):
        raise ConfigError("train.task_order: a task is listed twice")


def _check_tasks(config: Config) -> None:
    for name, task in config.tasks.items():
        if "{}" not in task.prompt_template:
            raise ConfigError(f"tasks.{name}.prompt_template: must contain '{{}}' for the "
                              f"class name, got {task.prompt_template!r}")
        low, high = task.crop_ratio
        if low > high:
            raise ConfigError(f"tasks.{name}.crop_ratio: need low <= high, got [{low}, {high}]")
    if config.eval.voting_threshold > 0 and config.eval.multiclass_nms:
        raise ConfigError("eval.voting_threshold: score voting works with class-agnostic NMS "
                          "only (set eval.multiclass_nms: false or voting_threshold: 0)")


def _check_data(config: Config) -> None:
    bench = config.benchmark
    for name in config.tasks:
        data = config.dataset_tasks()[name]
        path = f"datasets.{bench}.tasks.{name}"
        subsets = data.subsets
        if subsets.validation is not None and subsets.validation == subsets.test:
            raise ConfigError(f"{path}.subsets.validation: the validation subset must not be "
                              f"the test subset {subsets.test!r} (train.validation_split: test "
                              f"is how the released protocol validates on the test split)")
        if subsets.train == subsets.test:
            raise ConfigError(f"{path}.subsets.train: the training subset must not be the test "
                              f"subset {subsets.test!r}")
    if bench == "synthetic":
        for name, sizes in config.datasets.synthetic.videos.items():
            data = config.datasets.synthetic.tasks[name]
            train = sizes.train
            if data.subsets.validation is None:
                train -= max(1, math.floor(data.holdout_fraction * sizes.train + 0.5))
            batch = config.train.batch_size.get(name, 1)
            if train < batch:
                raise ConfigError(f"datasets.synthetic.videos.{name}.train: {sizes.train} "
                                  f"videos leave {train} for training, fewer than one batch "
                                  f"(train.batch_size.{name} = {batch})")
    if config.prompts.source == "npy":
        if bench != "paper":
            raise ConfigError("prompts.source: npy reads datasets.paper.prompts; the synthetic "
                              "benchmark uses prompts.source: sentence-transformer")
        for name in config.tasks:
            if name not in config.datasets.paper.prompts:
                raise ConfigError(f"datasets.paper.prompts.{name}: missing (prompts.source is "
                                  f"npy)")
    names: set[str] = set()
    for i, entry in enumerate(config.datasets.paper.manifest):
        if entry.name in names:
            raise ConfigError(f"datasets.paper.manifest[{i}].name: {entry.name!r} is used twice")
        names.add(entry.name)


def _check_model(config: Config, model: ModelConfig, path: str) -> None:
    if model.embd_dim % model.n_head:
        raise ConfigError(f"{path}.n_head: {model.n_head} heads do not divide embd_dim "
                          f"{model.embd_dim}")
    levels = model.arch[2] + 1
    if len(model.regression_ranges) != levels:
        raise ConfigError(f"{path}.regression_ranges: {len(model.regression_ranges)} ranges for "
                          f"{levels} pyramid levels (arch[2] + 1)")
    for i, (low, high) in enumerate(model.regression_ranges):
        if low >= high:
            raise ConfigError(f"{path}.regression_ranges[{i}]: need low < high, got "
                              f"[{low}, {high}]")
    for key in ("embd_kernel_size", "head_kernel_size"):
        if getattr(model, key) % 2 == 0:
            raise ConfigError(f"{path}.{key}: must be odd (same-length convolutions), got "
                              f"{getattr(model, key)}")
    stride = model.scale_factor ** model.arch[2]
    for name, data in config.dataset_tasks().items():
        if data.max_seq_len % stride:
            raise ConfigError(f"datasets.{config.benchmark}.tasks.{name}.max_seq_len: "
                              f"{data.max_seq_len} is not divisible by the model's largest "
                              f"stride {stride} ({path}: scale_factor ** arch[2])")


def _check_training(config: Config) -> None:
    train = config.train
    total = train.epochs + train.warmup_epochs
    if train.val_every_epochs > total:
        raise ConfigError(f"train.val_every_epochs: {train.val_every_epochs} is more than the "
                          f"{total} epochs of the schedule (epochs + warmup_epochs)")
    if train.validation_split == "test" and config.protocol != "released":
        raise ConfigError("train.validation_split: test selects on the test split; only "
                          "protocol: released does that (as the released code does)")
    if train.exported_weights == "best_validation" and config.protocol == "released":
        raise ConfigError("train.exported_weights: protocol: released exports the last epoch's "
                          "weights (best_validation would select on the test subset)")


def _check_features(config: Config) -> None:
    from uniav.prepare.encoders import BUILTIN_ENCODERS

    features = config.features
    for name in features.custom_encoders:
        if name in BUILTIN_ENCODERS:
            raise ConfigError(f"features.custom_encoders.{name}: the name of a built-in encoder")
    modalities = {name: factory.modality for name, factory in BUILTIN_ENCODERS.items()}
    modalities.update({name: spec.modality for name, spec in features.custom_encoders.items()})
    for key, modality in (("visual_encoder", "visual"), ("audio_encoder", "audio")):
        name = getattr(features, key)
        if name not in modalities:
            raise _unknown(f"features.{key}", name, sorted(modalities), "encoder")
        if modalities[name] != modality:
            raise ConfigError(f"features.{key}: {name!r} encodes {modalities[name]}, not "
                              f"{modality}")


def _check_experiment_links(config: Config) -> None:
    """``experiments.<name>.init_from`` and ``.held_out_classes`` (class names are checked
    against the annotation file when the data are read: :mod:`uniav.engine.training_data`)."""
    from uniav.config.experiments import architecture_differences

    for name, exp in config.experiments.items():
        path = f"experiments.{name}"
        for task, classes in exp.held_out_classes.items():
            if task not in exp.tasks:
                raise ConfigError(f"{path}.held_out_classes.{task}: the experiment does not train "
                                  f"task {task!r} (its tasks: {', '.join(exp.tasks)})")
            repeated = sorted({c for c in classes if classes.count(c) > 1})
            if repeated:
                raise ConfigError(f"{path}.held_out_classes.{task}: {repeated[0]!r} is listed "
                                  f"twice")
        if exp.held_out_classes and config.experiment(name).model.classifier != "prompt":
            raise ConfigError(f"{path}.held_out_classes: needs the prompt classifier (model."
                              f"classifier: prompt): a linear classifier cannot score classes "
                              f"it was not trained on")
        if exp.init_from is None:
            continue
        source = exp.init_from.experiment
        if source not in config.experiments:
            raise _unknown(f"{path}.init_from.experiment", source, list(config.experiments),
                           "experiment")
        chain = [name]
        while source is not None:
            if source in chain:
                raise ConfigError(f"{path}.init_from: experiments start from each other in a "
                                  f"cycle ({' -> '.join(chain + [source])})")
            chain.append(source)
            link = config.experiments[source].init_from
            source = link.experiment if link else None
        source = exp.init_from.experiment
        differences = architecture_differences(config.experiment(name).model,
                                               config.experiment(source).model)
        if differences:
            listed = "; ".join(f"{key}: {ours!r} here, {theirs!r} in {source}"
                               for key, (ours, theirs) in differences.items())
            raise ConfigError(f"{path}.init_from: experiment {source!r} has another "
                              f"architecture ({listed})")
