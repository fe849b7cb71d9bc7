"""The training engine: single- and multi-task, resumable, optionally distributed.

Schedule of one run (docs/protocol.md has the released loop step by step)::

    iterations per epoch = max over tasks of (training batches per pass)
    for each iteration:
        TrainingStep.iteration: for each task in step order that its plateau gate lets through,
            one optimizer step and one EMA update; then one scheduler step
    at the end of every `val_every_epochs`-th epoch (and of the last):
        validation mAP per task -> plateau gates (fed by the EMA or the raw model)
        -> best weights (mean validation average mAP of the EMA model) kept
        -> checkpoint (also every `checkpoint_every_iters` iterations when set)

Outputs: ``<output_dir>/model.safetensors`` (EMA weights of the best validation epoch, or of the
last epoch with ``train.exported_weights: last_epoch``, with the model spec, class lists,
feature metadata and data report as safetensors metadata) and ``<output_dir>/training.json``
(history, selected epoch, data report, timings; epochs counted from 1), both written when
training finishes.
Resumable checkpoints and the best weights so far live in ``work_dir`` (outside the Snakemake
outputs, so a failed job keeps them); a killed run resumes exactly where its last checkpoint
stopped.

``init_from`` (``uniav train --init-from``) starts the run from exported weights with a fresh
optimizer, schedule and EMA (:mod:`uniav.engine.initialise`); their SHA-256 is part of the
config hash, and a checkpoint in ``work_dir`` takes precedence over them when the run resumes.
"""

from __future__ import annotations

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

from uniav.config import Config, config_hash
from uniav.data.batching import collate
from uniav.engine.checkpoint import (export_weights, load_latest_checkpoint,
                                     save_training_checkpoint, weights_metadata)
from uniav.engine.distributed import (DistributedContext, barrier, broadcast_object,
                                      init_distributed)
from uniav.engine.prefetch import BatchPrefetcher, Picks, StepBatch
from uniav.engine.sampling import BatchStream
from uniav.engine.schedule import PlateauGate
from uniav.engine.stepper import StepResult, TrainingStep
from uniav.engine.training_data import (build_model_spec, configure_torch, load_task_data,
                                         training_settings)
from uniav.errors import ConfigError, InputError
from uniav.fileio import atomic_path, atomic_write_json, remove_stale_temporaries
from uniav.model import UniAV
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


class Trainer:
    """Runs one experiment's training (see module docs).

    Args:
        config: the validated configuration.
        experiment: experiment name (``experiments.<name>``).
        output_dir: where the exported weights and ``training.json`` go.
        work_dir: where resumable checkpoints go.
        prompts_dir: directory of ``<task>.npy`` prompt embeddings (prompt classifier).
        tracker: experiment tracker (rank 0 only).
        threads: CPU threads for torch.
        progress: show progress bars.
        init_from: exported weights to start from (fine-tuning); required when the experiment
            names one (``experiments.<name>.init_from``), which they must then come from.
    """

    BEST_WEIGHTS = "best.safetensors"

    def __init__(self, config: Config, experiment: str, *, output_dir: str | Path,
                 work_dir: str | Path, prompts_dir: str | Path | None = None,
                 tracker: Tracker | None = None, threads: int | None = None,
                 progress: bool = True, init_from: str | Path | None = None):
        self.config = config
        self.experiment = config.experiment(experiment)
        self.output_dir, self.work_dir = Path(output_dir), Path(work_dir)
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
        self.init_weights = self._initialise(init_from)
        self.model.to(self.device)
        self.network: nn.Module = self.model
        if self.context.enabled:
            self.network = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)

        world = self.context.world_size
        self.streams = {}
        for task in self.experiment.tasks:
            if train_cfg.batch_size[task] % world:
                raise ConfigError(
                    f"experiment {self.experiment.name!r}: train.batch_size.{task} = "
                    f"{train_cfg.batch_size[task]} is the global batch and must divide among "
                    f"the {world} processes; choose a multiple of {world}")
            per_rank = train_cfg.batch_size[task] // world
            self.streams[task] = BatchStream(len(self.data[task].train), per_rank, config.seed,
                                             task, rank=self.context.rank, world_size=world,
                                             reshuffle=train_cfg.sampler == "reshuffle")
        self.iterations_per_epoch = max(s.batches_per_pass for s in self.streams.values())
        self.total_epochs = train_cfg.epochs + train_cfg.warmup_epochs
        self.total_iterations = self.total_epochs * self.iterations_per_epoch
        self.step = TrainingStep.create(
            self.model, train_cfg, self.experiment.tasks,
            warmup_steps=train_cfg.warmup_epochs * self.iterations_per_epoch,
            total_steps=self.total_iterations, network=self.network,
            autocast_dtype=self._autocast_dtype(), world_size=world)
        self.batches = BatchPrefetcher(self.streams, self._prepare_batch, device=self.device,
                                       enabled=train_cfg.prefetch)
        gate_cfg = train_cfg.plateau_gate
        self.gates = {task: PlateauGate(gate_cfg.patience, gate_cfg.threshold,
                                        gate_cfg.continue_threshold, gate_cfg.cooldown)
                      for task in self.experiment.tasks}
        hashed = {
            **training_settings(config, experiment), "world_size": world,
            "model_spec": self.spec.to_dict(),
            "classes": {t: d.train.classes for t, d in self.data.items()},
            "prompts": {t: None if d.prompts is None else
                        float(np.asarray(d.prompts, dtype=np.float64).sum())
                        for t, d in self.data.items()}}
        if self.init_weights is not None:
            hashed["init_from_sha256"] = self.init_weights.sha256
        self.config_hash = config_hash(hashed)
        self.iteration = 0
        self.best_metric = -math.inf
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        self.epoch_losses: dict[str, list[float]] = {t: [] for t in self.experiment.tasks}
        self.elapsed = 0.0

    def _initialise(self, init_from: str | Path | None) -> Any:
        """Load ``init_from`` into the fresh model (before the optimizer and the EMA exist)."""
        configured = self.experiment.init_from
        if init_from is None:
            if configured is not None:
                raise ConfigError(f"experiments.{self.experiment.name}.init_from: the experiment "
                                  f"starts from experiment {configured!r}'s weights: pass them "
                                  f"with --init-from (the pipeline passes "
                                  f"results/models/{configured}/model.safetensors)")
            return None
        from uniav.engine.initialise import load_initial_weights

        return load_initial_weights(
            self.model, init_from, experiment=self.experiment.name,
            run_classes={t: d.train.classes for t, d in self.data.items()},
            expected_experiment=configured)

    def _autocast_dtype(self) -> torch.dtype | None:
        precision = self.experiment.train.precision
        if precision == "bf16" or (precision == "auto" and self.device.type == "cuda"):
            if self.device.type != "cuda":
                LOGGER.warning("bf16 autocast requested on %s: running in fp32", self.device)
                return None
            return torch.bfloat16
        return None

    @property
    def data_report(self) -> dict[str, dict[str, Any]]:
        """``{task: {"train": ..., "validation": ...}}`` (see :mod:`uniav.data.report`)."""
        return {task: {"train": d.train.report.to_dict(),
                       "validation": d.validation.report.to_dict()}
                for task, d in self.data.items()}

    # ---- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly."""
        state = {
            "config_hash": self.config_hash,
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            **self.step.state_dict(),
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
        self.step.load_state_dict(state)
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
        if self.init_weights is not None:
            LOGGER.info("the checkpoint's weights take precedence over --init-from %s",
                        self.init_weights.path)
        return True

    def save_checkpoint(self) -> None:
        if self.context.is_main:
            self.tracker.flush()  # tracked steps never lag a checkpoint: a resume leaves no gap
            save_training_checkpoint(self.work_dir, self.state_dict(),
                                     name=f"iter_{self.iteration:07d}.pt")
        barrier(self.context)

    # ---- one iteration ---------------------------------------------------------------------

    def _runs_task(self, task: str) -> bool:
        gate_cfg = self.experiment.train.plateau_gate
        if not gate_cfg.enabled or not self.gates[task].gated:
            return True
        return self.iteration % gate_cfg.iteration_gap == 0

    def _prepare_batch(self, task: str, picks: Picks) -> StepBatch:
        """A training batch on the CPU: items (crops), padding, targets (a pure function of the
        picks; runs on the prefetch thread)."""
        dataset = self.data[task].train
        items = [dataset.get(index, rng) for index, rng in picks]
        length = self.experiment.specs[task].data.max_seq_len
        batch = collate(items, length)
        targets = self.model.targets(length, batch.segments, batch.labels, task, "cpu")
        return StepBatch(visual=batch.visual, audio=batch.audio, mask=batch.mask,
                         segments=batch.segments, labels=batch.labels, targets=targets,
                         video_ids=[video.video_id for video in batch.videos])

    def _task_step(self, task: str) -> StepResult | None:
        """The next batch of ``task`` through one optimizer step (None: gated this iteration)."""
        if not self._runs_task(task):
            return None
        batch = self.batches.next(task)
        result = self.step.task_step(task, batch.visual, batch.audio, batch.mask,
                                     batch.segments, batch.labels, targets=batch.targets)
        if not all(math.isfinite(v) for v in result.losses.values()):
            raise FloatingPointError(f"task {task!r}: non-finite loss {result.losses} at "
                                     f"iteration {self.iteration}")
        return result

    # ---- validation ------------------------------------------------------------------------

    def validate(self, model: nn.Module) -> dict[str, Any]:
        """Validation metrics of ``model`` per task (rank 0 computes, all ranks receive)."""
        from uniav.engine.inference import evaluate_dataset

        results = None
        if self.context.is_main:
            results = {task: evaluate_dataset(model, self.data[task].validation,
                                              self.experiment.specs[task], self.config.eval,
                                              self.device, autocast_dtype=self.step.autocast_dtype)[0]
                       for task in self.experiment.tasks}
        return broadcast_object(self.context, results)

    def _end_of_epoch(self, epoch: int, train_losses: dict[str, list[float]]) -> None:
        train_cfg = self.experiment.train
        record: dict[str, Any] = {"epoch": epoch + 1, "iteration": self.iteration,
                                  "lr": self.step.lr,
                                  "train_loss": {t: float(np.mean(v)) if v else None
                                                 for t, v in train_losses.items()}}
        if (epoch + 1) % train_cfg.val_every_epochs == 0 or epoch + 1 == self.total_epochs:
            models = {"ema": self.step.ema.module, "raw": self.model}
            needed = {train_cfg.plateau_gate.model} | (
                {"ema"} if train_cfg.exported_weights == "best_validation" else set())
            metrics = {name: self.validate(models[name]) for name in sorted(needed)}
            values = {name: {task: m["average_mAP"] for task, m in per_task.items()}
                      for name, per_task in metrics.items()}
            for task, value in values[train_cfg.plateau_gate.model].items():
                self.gates[task].step(value)
            selection = values.get("ema", values[train_cfg.plateau_gate.model])
            mean_val = float(np.mean(list(selection.values())))
            record.update({"val_average_mAP": selection, "val_mean_average_mAP": mean_val,
                           "gated": {t: g.gated for t, g in self.gates.items()}})
            if "raw" in values:
                record["val_average_mAP_raw_model"] = values["raw"]
            logged = {f"val/{t}/average_mAP": v for t, v in selection.items()}
            logged.update({"val/mean_average_mAP": mean_val, "epoch": epoch + 1})
            self.tracker.log_metrics(logged, step=self.iteration)
            if train_cfg.exported_weights == "best_validation" and mean_val > self.best_metric:
                self.best_metric, self.best_epoch = mean_val, epoch + 1
                self._export_best()
            if self.context.is_main:
                LOGGER.info("epoch %d/%d: validation average mAP %s (best epoch %s)", epoch + 1,
                            self.total_epochs, {t: round(v, 4) for t, v in selection.items()},
                            self.best_epoch)
        if train_cfg.exported_weights == "last_epoch" and epoch + 1 == self.total_epochs:
            self.best_metric = record.get("val_mean_average_mAP", math.nan)
            self.best_epoch = epoch + 1
            self._export_best()
        self.history.append(record)

    def _export_best(self) -> None:
        """Save the EMA weights selected so far in the work directory (they move to the output
        directory when training finishes, so a killed and resumed run still has them)."""
        if self.context.is_main:
            export_weights(self.work_dir / self.BEST_WEIGHTS, self.step.ema.module.state_dict(),
                           self.export_metadata())

    def export_metadata(self) -> dict[str, Any]:
        """Metadata stored beside the exported weights (:func:`uniav.engine.checkpoint.
        weights_metadata`)."""
        return weights_metadata(self)

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
        self.tracker.log_params({"experiment": self.experiment.to_dict(),
                                 "protocol": self.config.protocol,
                                 "iterations_per_epoch": self.iterations_per_epoch,
                                 "total_iterations": self.total_iterations,
                                 "world_size": self.context.world_size})
        bar = tqdm(total=self.total_iterations, initial=self.iteration, unit="it",
                   desc=f"train {self.experiment.name}",
                   disable=not (self.progress and self.context.is_main), mininterval=2.0)
        self.network.train()
        self.batches.start()
        try:
            return self._loop(bar, stop_after_iterations)
        finally:
            self.batches.close()

    def _loop(self, bar: Any, stop_after_iterations: int | None) -> TrainResult:
        train_cfg = self.experiment.train
        started = time.perf_counter() - self.elapsed
        while self.iteration < self.total_iterations:
            if self.iteration % self.iterations_per_epoch == 0 and train_cfg.sampler == "released":
                for stream in self.streams.values():
                    stream.restart()
                self.batches.refresh()
            lr = self.step.lr
            results = self.step.iteration(self.experiment.tasks, self._task_step)
            step_metrics = {"train/lr": lr}
            for task, result in results.items():
                self.epoch_losses[task].append(result.losses["final_loss"])
                step_metrics.update({f"train/{task}/{k}": v for k, v in result.losses.items()})
            self.iteration += 1
            # tracked step = iterations done, shared with validation (docs/pipeline.md, MLflow)
            self.tracker.log_metrics(step_metrics, step=self.iteration)
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
        return self._finish()

    def _finish(self) -> TrainResult:
        """Move the selected weights into place and write ``training.json``."""
        history_path = self.output_dir / "training.json"
        weights_path = self.output_dir / "model.safetensors"
        if self.context.is_main:
            best = self.work_dir / self.BEST_WEIGHTS
            if not best.exists():
                raise InputError("training ended without selected weights (no validation ran?)",
                                 file=best)
            with atomic_path(weights_path) as tmp:
                shutil.copyfile(best, tmp)
            atomic_write_json(history_path, {
                "experiment": self.experiment.name, "tasks": self.experiment.tasks,
                "protocol": self.config.protocol, "config_hash": self.config_hash,
                "exported_weights": self.experiment.train.exported_weights,
                "first_epoch": 1, "best_epoch": self.best_epoch,
                "mlflow_run_id": self.tracker.run_id,
                "best_validation_mean_average_mAP": self.best_metric,
                "iterations": self.iteration, "iterations_per_epoch": self.iterations_per_epoch,
                "epochs": self.total_epochs, "seconds": round(self.elapsed, 2),
                "world_size": self.context.world_size, "data_report": self.data_report,
                **({"init_from": self.init_weights.record()} if self.init_weights else {}),
                "history": self.history})
        barrier(self.context)
        return TrainResult(weights_path, history_path, self.best_epoch,
                           self.best_metric, self.iteration, finished=True)
