"""The training engine: single- and multi-task, resumable, optionally distributed (DESIGN §7).

Schedule of one run::

    iterations per epoch = max over tasks of (training batches per pass)
    for each iteration:
        for each task (in experiment order) that its plateau gate lets through:
            next batch of that task -> forward -> loss x (task lr / base lr) -> backward
            -> clip grad norm -> optimizer step -> EMA update
        scheduler step (linear warm-up, then cosine)
    at the end of every `val_every_epochs`-th epoch:
        validation mAP of the EMA model per task (validation split, never test)
        -> plateau gates -> best model (mean validation average mAP) exported
        -> checkpoint (also every `checkpoint_every_iters` iterations when set)

Outputs: ``<output_dir>/model.safetensors`` (EMA weights of the best validation epoch, with the
model spec, class lists and feature metadata as safetensors metadata) and
``<output_dir>/training.json`` (history, best epoch, timings), both written when training
finishes.  Resumable checkpoints and the best weights so far live in ``work_dir`` (outside the
Snakemake outputs, so a failed job keeps them); a killed run resumes exactly where its last
checkpoint stopped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from uniav.config import Config, ResolvedExperiment, config_hash, to_plain
from uniav.engine.checkpoint import export_weights, load_latest_checkpoint, save_training_checkpoint
from uniav.engine.distributed import (DistributedContext, barrier, broadcast_object,
                                      init_distributed)
from uniav.engine.optim import make_optimizer
from uniav.engine.sampling import BatchStream
from uniav.engine.schedule import ModelEMA, PlateauGate, make_scheduler
from uniav.errors import InputError
from uniav.fileio import atomic_path, atomic_write_json, remove_stale_temporaries
from uniav.model import ModelSpec, TaskHeadConfig, UniAV
from uniav.tracking import NullTracker, Tracker

LOGGER = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    weights: Path | None
    history: Path | None
    best_epoch: int | None
    best_metric: float
    iterations_done: int
    finished: bool


@dataclass
class TaskData:
    """One task's training and validation data."""

    train: Any
    validation: Any
    prompts: np.ndarray | None


def configure_torch(deterministic: bool, device: torch.device, threads: int | None) -> None:
    """Threads and determinism for this process."""
    if threads:
        torch.set_num_threads(threads)
    if deterministic:
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        else:
            import os
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False


def load_task_data(config: Config, experiment: ResolvedExperiment, prompts_dir: Path | None
                   ) -> dict[str, TaskData]:
    """Training/validation datasets and prompt embeddings of every task of the experiment."""
    from uniav.data.dataset import LocalizationDataset

    data = {}
    dims = None
    for task in experiment.tasks:
        spec = experiment.specs[task]
        preload = spec.data.preload_features
        train = LocalizationDataset(spec, "train", seed=config.seed,
                                    remove_duplicate_gt=config.eval.remove_duplicate_gt,
                                    expected_dims=dims, preload=preload)
        dims = dims or train.dims
        validation = LocalizationDataset(spec, "validation", seed=config.seed,
                                         remove_duplicate_gt=config.eval.remove_duplicate_gt,
                                         expected_dims=dims, preload=preload)
        prompts = None
        if prompts_dir is not None:
            from uniav.prepare.prompts import load_prompt_embeddings
            prompts = load_prompt_embeddings(Path(prompts_dir) / f"{task}.npy", train.classes)
        elif experiment.model.classifier == "prompt":
            raise InputError(f"task {task!r}: the prompt classifier needs prompt embeddings "
                             f"(run `uniav prompts` and pass --prompts-dir)", field="prompts")
        data[task] = TaskData(train, validation, prompts)
    return data


def build_model_spec(experiment: ResolvedExperiment, data: dict[str, TaskData]) -> ModelSpec:
    """The :class:`ModelSpec` of an experiment given its datasets and prompts."""
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


class Trainer:
    """Runs one experiment's training (see module docs).

    Args:
        config: the validated configuration.
        experiment: experiment name (``experiments.<name>``).
        output_dir: where the exported best weights and ``training.json`` go.
        work_dir: where resumable checkpoints go.
        prompts_dir: directory of ``<task>.npy`` prompt embeddings (prompt classifier).
        tracker: experiment tracker (rank 0 only).
        threads: CPU threads for torch.
        progress: show progress bars.
    """

    def __init__(self, config: Config, experiment: str, *, output_dir: str | Path,
                 work_dir: str | Path, prompts_dir: str | Path | None = None,
                 tracker: Tracker | None = None, threads: int | None = None,
                 progress: bool = True):
        self.config = config
        self.experiment = config.experiment(experiment)
        self.output_dir = Path(output_dir)
        self.work_dir = Path(work_dir)
        self.progress = progress
        train_cfg = self.experiment.train
        self.context: DistributedContext = init_distributed(train_cfg.device)
        self.device = self.context.device
        self.tracker = tracker if (tracker is not None and self.context.is_main) else NullTracker()
        configure_torch(train_cfg.deterministic, self.device, threads)
        torch.manual_seed(config.seed)

        self.data = load_task_data(config, self.experiment,
                                   Path(prompts_dir) if prompts_dir else None)
        self.spec = build_model_spec(self.experiment, self.data)
        self.model = UniAV(self.spec)
        for task, task_data in self.data.items():
            if task_data.prompts is not None:
                self.model.set_text_embeddings(task, torch.from_numpy(task_data.prompts))
        self.model.to(self.device)
        self.ema = ModelEMA(self.model, train_cfg.ema_decay)
        self.network: nn.Module = self.model
        if self.context.enabled:
            self.network = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)

        lrs = {task: train_cfg.lr[task] for task in self.experiment.tasks}
        self.base_lr = min(lrs.values())
        self.loss_scale = {task: lr / self.base_lr for task, lr in lrs.items()}
        self.optimizer = make_optimizer(self.model, base_lr=self.base_lr,
                                        weight_decay=train_cfg.weight_decay,
                                        text_proj_lr=train_cfg.text_proj_lr)
        world = self.context.world_size
        self.streams = {}
        for task in self.experiment.tasks:
            per_rank = max(1, train_cfg.batch_size[task] // world)
            self.streams[task] = BatchStream(len(self.data[task].train), per_rank, config.seed,
                                             task, rank=self.context.rank, world_size=world)
        self.iterations_per_epoch = max(s.batches_per_pass for s in self.streams.values())
        self.total_epochs = train_cfg.epochs + train_cfg.warmup_epochs
        self.total_iterations = self.total_epochs * self.iterations_per_epoch
        self.scheduler = make_scheduler(self.optimizer,
                                        train_cfg.warmup_epochs * self.iterations_per_epoch,
                                        self.total_iterations)
        gate_cfg = train_cfg.plateau_gate
        self.gates = {task: PlateauGate(gate_cfg.patience, gate_cfg.threshold,
                                        gate_cfg.continue_threshold, gate_cfg.cooldown)
                      for task in self.experiment.tasks}
        self.autocast_dtype = self._autocast_dtype()
        self.config_hash = config_hash({
            "experiment": self.experiment.to_dict(), "seed": config.seed, "world_size": world,
            "model_spec": self.spec.to_dict(), "eval": to_plain(config.eval),
            "classes": {t: d.train.classes for t, d in self.data.items()},
            "prompts": {t: None if d.prompts is None else
                        float(np.asarray(d.prompts, dtype=np.float64).sum())
                        for t, d in self.data.items()}})
        self.iteration = 0
        self.best_metric = -math.inf
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        self.epoch_losses: dict[str, list[float]] = {t: [] for t in self.experiment.tasks}
        self.elapsed = 0.0

    # ---- precision -------------------------------------------------------------------------

    def _autocast_dtype(self) -> torch.dtype | None:
        precision = self.experiment.train.precision
        if precision == "bf16" or (precision == "auto" and self.device.type == "cuda"):
            if self.device.type != "cuda":
                LOGGER.warning("bf16 autocast requested on %s: running in fp32", self.device)
                return None
            return torch.bfloat16
        return None

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ---- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly."""
        state = {
            "config_hash": self.config_hash,
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "gates": {t: g.state_dict() for t, g in self.gates.items()},
            "streams": {t: s.state_dict() for t, s in self.streams.items()},
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "epoch_losses": self.epoch_losses,
            "elapsed": self.elapsed,
            "torch_rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for task, gate in self.gates.items():
            gate.load_state_dict(state["gates"][task])
        for task, stream in self.streams.items():
            stream.load_state_dict(state["streams"][task])
        self.iteration = int(state["iteration"])
        self.best_metric = float(state["best_metric"])
        self.best_epoch = state["best_epoch"]
        self.history = list(state["history"])
        self.epoch_losses = {t: list(v) for t, v in state["epoch_losses"].items()}
        self.elapsed = float(state.get("elapsed", 0.0))
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    def resume(self) -> bool:
        """Load the latest checkpoint of ``work_dir`` if there is one (config hash must match)."""
        state = load_latest_checkpoint(self.work_dir, self.config_hash)
        if state is None:
            return False
        self.load_state_dict(state)
        LOGGER.info("resumed from iteration %d of %d", self.iteration, self.total_iterations)
        return True

    def save_checkpoint(self) -> None:
        if self.context.is_main:
            save_training_checkpoint(self.work_dir, self.state_dict(),
                                     name=f"iter_{self.iteration:07d}.pt")
        barrier(self.context)

    # ---- one iteration ---------------------------------------------------------------------

    def _task_step(self, task: str) -> dict[str, float]:
        spec = self.experiment.specs[task]
        dataset = self.data[task].train
        from uniav.data.dataset import collate

        items = [dataset.get(index, rng) for index, rng in self.streams[task].next()]
        batch = collate(items, spec.data.max_seq_len).to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            output = self.network(batch.visual, batch.audio, batch.mask, task)
        losses = self.model.loss(output, batch.segments, batch.labels, task)
        (losses["final_loss"] * self.loss_scale[task]).backward()
        clip = self.experiment.train.clip_grad_norm
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        self.ema.update(self.model)
        return {name: float(value.detach()) for name, value in losses.items()}

    def _runs_task(self, task: str) -> bool:
        gate_cfg = self.experiment.train.plateau_gate
        if not gate_cfg.enabled or not self.gates[task].gated:
            return True
        return self.iteration % gate_cfg.iteration_gap == 0

    # ---- validation ------------------------------------------------------------------------

    def validate(self, epoch: int) -> dict[str, Any]:
        """Validation mAP of the EMA model per task (rank 0 computes, all ranks receive)."""
        from uniav.engine.inference import evaluate_dataset

        results = None
        if self.context.is_main:
            results = {}
            for task in self.experiment.tasks:
                metrics, _ = evaluate_dataset(self.ema.module, self.data[task].validation,
                                              self.experiment.specs[task], self.config.eval,
                                              self.device, autocast_dtype=self.autocast_dtype)
                results[task] = metrics
        return broadcast_object(self.context, results)

    def _end_of_epoch(self, epoch: int, train_losses: dict[str, list[float]]) -> None:
        record: dict[str, Any] = {"epoch": epoch, "iteration": self.iteration,
                                  "lr": self.scheduler.get_last_lr()[0],
                                  "train_loss": {t: float(np.mean(v)) if v else None
                                                 for t, v in train_losses.items()}}
        if (epoch + 1) % self.experiment.train.val_every_epochs == 0 or epoch + 1 == self.total_epochs:
            metrics = self.validate(epoch)
            val = {task: m["average_mAP"] for task, m in metrics.items()}
            for task, value in val.items():
                self.gates[task].step(value)
            mean_val = float(np.mean(list(val.values())))
            record.update({"val_average_mAP": val, "val_mean_average_mAP": mean_val,
                           "gated": {t: g.gated for t, g in self.gates.items()}})
            self.tracker.log_metrics({**{f"val/{t}/average_mAP": v for t, v in val.items()},
                                      "val/mean_average_mAP": mean_val}, step=epoch)
            if mean_val > self.best_metric:
                self.best_metric = mean_val
                self.best_epoch = epoch
                self._export_best()
            if self.context.is_main:
                LOGGER.info("epoch %d/%d: validation average mAP %s (best epoch %s)", epoch + 1,
                            self.total_epochs, {t: round(v, 4) for t, v in val.items()},
                            self.best_epoch)
        self.history.append(record)

    BEST_WEIGHTS = "best.safetensors"

    def _export_best(self) -> None:
        """Save the EMA weights of the new best epoch in the work directory (they move to the
        output directory when training finishes, so a killed and resumed run still has them)."""
        if not self.context.is_main:
            return
        export_weights(self.work_dir / self.BEST_WEIGHTS, self.ema.module.state_dict(),
                       self.export_metadata())

    def export_metadata(self) -> dict[str, Any]:
        """Metadata stored beside the exported weights: what evaluation and ``uniav predict``
        need to rebuild the model and to turn a new video into its inputs."""
        features = {task: data.train.store.meta for task, data in self.data.items()}
        return {"format": "uniav-weights-v1", "experiment": self.experiment.name,
                "model_spec": self.spec.to_dict(),
                "classes": {t: d.train.classes for t, d in self.data.items()},
                "tasks": {t: {"data": to_plain(s.data), "task": to_plain(s.task)}
                          for t, s in self.experiment.specs.items()},
                "features": features, "features_config": to_plain(self.config.features),
                "eval": to_plain(self.config.eval),
                "config_hash": self.config_hash, "best_epoch": self.best_epoch,
                "best_validation_mAP": self.best_metric}

    # ---- the loop --------------------------------------------------------------------------

    def fit(self, *, stop_after_iterations: int | None = None) -> TrainResult:
        """Train until the end of the schedule (or ``stop_after_iterations``, for tests).

        Returns:
            :class:`TrainResult`.
        """
        from tqdm import tqdm

        if self.context.is_main:  # what a killed save left (.iter_*.pt.XXXXXXXX.tmp, ...)
            remove_stale_temporaries(self.work_dir)
        self.resume()
        train_cfg = self.experiment.train
        self.tracker.log_params({"experiment": self.experiment.to_dict(),
                                 "iterations_per_epoch": self.iterations_per_epoch,
                                 "total_iterations": self.total_iterations,
                                 "world_size": self.context.world_size})
        bar = tqdm(total=self.total_iterations, initial=self.iteration, unit="it",
                   desc=f"train {self.experiment.name}",
                   disable=not (self.progress and self.context.is_main), mininterval=2.0)
        self.network.train()
        started = time.perf_counter() - self.elapsed
        while self.iteration < self.total_iterations:
            step_metrics = {}
            for task in self.experiment.tasks:
                if not self._runs_task(task):
                    continue
                losses = self._task_step(task)
                if not all(math.isfinite(v) for v in losses.values()):
                    raise FloatingPointError(f"task {task!r}: non-finite loss {losses} at "
                                             f"iteration {self.iteration}")
                self.epoch_losses[task].append(losses["final_loss"])
                step_metrics.update({f"train/{task}/{k}": v for k, v in losses.items()})
            step_metrics["train/lr"] = self.scheduler.get_last_lr()[0]
            self.scheduler.step()
            self.tracker.log_metrics(step_metrics, step=self.iteration)
            self.iteration += 1
            bar.update(1)
            self.elapsed = time.perf_counter() - started
            if self.iteration % self.iterations_per_epoch == 0:
                epoch = self.iteration // self.iterations_per_epoch - 1
                self.network.eval()
                self._end_of_epoch(epoch, self.epoch_losses)
                self.network.train()
                self.epoch_losses = {t: [] for t in self.experiment.tasks}
                self.save_checkpoint()
            elif train_cfg.checkpoint_every_iters and self.iteration % train_cfg.checkpoint_every_iters == 0:
                self.save_checkpoint()
            if stop_after_iterations is not None and self.iteration >= stop_after_iterations:
                if self.iteration % self.iterations_per_epoch and not (
                        train_cfg.checkpoint_every_iters
                        and self.iteration % train_cfg.checkpoint_every_iters == 0):
                    self.save_checkpoint()
                bar.close()
                return TrainResult(None, None, self.best_epoch, self.best_metric, self.iteration,
                                   finished=False)
        bar.close()
        self.tracker.flush()
        history_path = self.output_dir / "training.json"
        weights_path = self.output_dir / "model.safetensors"
        if self.context.is_main:
            best = self.work_dir / self.BEST_WEIGHTS
            if not best.exists():
                raise InputError("training ended without best weights (no validation ran?)",
                                 file=best)
            with atomic_path(weights_path) as tmp:
                shutil.copyfile(best, tmp)
            atomic_write_json(history_path, {
                "experiment": self.experiment.name, "tasks": self.experiment.tasks,
                "config_hash": self.config_hash, "best_epoch": self.best_epoch,
                "best_validation_mean_average_mAP": self.best_metric,
                "iterations": self.iteration, "iterations_per_epoch": self.iterations_per_epoch,
                "epochs": self.total_epochs, "seconds": round(self.elapsed, 2),
                "world_size": self.context.world_size, "history": self.history})
        barrier(self.context)
        return TrainResult(weights_path, history_path, self.best_epoch,
                           self.best_metric, self.iteration, finished=True)
