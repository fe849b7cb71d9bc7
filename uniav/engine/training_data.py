"""What a training run reads and builds before its first step: each task's datasets and prompt
embeddings, the model spec, and the process's torch settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from uniav.config import Config, ResolvedExperiment, to_plain
from uniav.data.dataset import LocalizationDataset
from uniav.errors import ConfigError, InputError
from uniav.model import ModelSpec, TaskHeadConfig


@dataclass
class TaskData:
    """One task's training and validation data."""

    train: LocalizationDataset
    validation: LocalizationDataset
    prompts: np.ndarray | None


def training_settings(config: Config, experiment: str) -> dict:
    """Every setting a training run reads from the configuration: the resolved experiment
    (tasks, model, training settings, task specs), the seed, the evaluation settings used for
    validation, the data policy and the protocol.  The run's config hash covers them (with what
    it reads from its inputs); the pipeline reruns the job when they change."""
    return {"experiment": config.experiment(experiment).to_dict(), "seed": config.seed,
            "eval": to_plain(config.eval), "data": to_plain(config.data),
            "protocol": config.protocol}


def configure_torch(deterministic: bool, device: torch.device, threads: int | None) -> None:
    """Threads and determinism for this process."""
    if threads:
        torch.set_num_threads(threads)
    if deterministic:
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        else:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False


def open_dataset(config: Config, spec, split: str, expected_dims: tuple[int, int] | None = None,
                 validation_split: str = "validation",
                 held_out_classes: tuple[str, ...] = ()) -> LocalizationDataset:
    """A task's split as the configuration says: data policy, duplicates, cache, preloading;
    with ``validation_split="test"`` (the released protocol) no videos are held out of the
    training subset; ``held_out_classes`` are left out of the data and the class list."""
    return LocalizationDataset(spec, split, seed=config.seed, policy=config.data,
                               remove_duplicate_gt=config.eval.remove_duplicate_gt,
                               expected_dims=expected_dims, preload=spec.data.preload_features,
                               cache_bytes=spec.data.feature_cache_mb * 2**20,
                               holdout=validation_split != "test",
                               held_out_classes=held_out_classes)


def load_task_data(config: Config, experiment: ResolvedExperiment, prompts_dir: Path | None
                   ) -> dict[str, TaskData]:
    """Training/validation datasets and prompt embeddings of every task of the experiment.

    Classes the experiment holds out (``held_out_classes``) are left out of both datasets and
    of the training vocabulary: the prompt file's rows of the other classes are used.

    Raises:
        InputError: bad data (see :class:`~uniav.data.dataset.LocalizationDataset`), or no
            prompts for the prompt classifier.
        ConfigError: a held-out class the task's annotation file does not have (naming the
            experiment, the task and the class).
    """
    data = {}
    paper = config.datasets.paper
    # the released features are ONE-PEACE's: a store of another width is the wrong download
    dims = (paper.feature_dim,) * 2 if config.benchmark == "paper" else None
    for task in experiment.tasks:
        spec = experiment.specs[task]
        # the released protocol validates on the test split (train.validation_split: test)
        on = experiment.train.validation_split
        held_out = experiment.held_out_classes.get(task, ())
        try:
            train = open_dataset(config, spec, "train", dims, on, held_out)
        except ConfigError as exc:
            if not held_out:
                raise
            raise ConfigError(f"experiments.{experiment.name}.held_out_classes.{task}: "
                              f"{exc}") from None
        dims = dims or train.dims
        validation = open_dataset(config, spec, on, dims, on, held_out)
        prompts = None
        if prompts_dir is not None:
            from uniav.prepare.prompts import load_prompt_embeddings

            prompts = load_prompt_embeddings(Path(prompts_dir) / f"{task}.npy", train.all_classes)
            prompts = prompts[[train.all_classes.index(c) for c in train.classes]]
            if config.benchmark == "paper" and prompts.shape[1] != paper.feature_dim:
                raise InputError(f"prompt embeddings of width {prompts.shape[1]}, the released "
                                 f"ones are {paper.feature_dim}-d (datasets.paper.feature_dim)",
                                 file=Path(prompts_dir) / f"{task}.npy", field="prompts")
        elif experiment.model.classifier == "prompt":
            raise InputError(f"task {task!r}: the prompt classifier needs prompt embeddings "
                             f"(run `uniav prompts` and pass --prompts-dir)", field="prompts")
        data[task] = TaskData(train, validation, prompts)
    return data


def build_model_spec(experiment: ResolvedExperiment, data: dict[str, TaskData]) -> ModelSpec:
    """The :class:`~uniav.model.ModelSpec` of an experiment given its datasets and prompts."""
    first = next(iter(data.values()))
    visual_dim, audio_dim = first.train.dims
    text_dims = {t.prompts.shape[1] for t in data.values() if t.prompts is not None}
    if len(text_dims) > 1:
        raise InputError(f"prompt embeddings of different widths across tasks: {sorted(text_dims)}",
                         field="prompts")
    text_dim = text_dims.pop() if text_dims else 1
    tasks = {}
    for task, task_data in data.items():
        spec = experiment.specs[task]
        tasks[task] = TaskHeadConfig(num_classes=len(task_data.train.classes),
                                     max_seq_len=spec.data.max_seq_len,
                                     class_aware=spec.task.class_aware,
                                     label_smoothing=spec.task.label_smoothing,
                                     init_loss_norm=spec.task.init_loss_norm)
    return ModelSpec(model=experiment.model, tasks=tasks, visual_dim=visual_dim,
                     audio_dim=audio_dim, text_dim=text_dim)
