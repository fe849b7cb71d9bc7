"""Replay a multi-task training run recorded from the released implementation through this
project's own training code, and measure how far the two trajectories are apart.

A fixture (``tests/fixtures/reference/original_train_steps*/``, its README says what was
recorded) holds the released model's initial weights, fixed per-task batches, and per step the
learning rates, losses, gradient norms and loss normalisers, then the final raw and EMA weights.
:func:`replay_train_steps` rebuilds the model from those weights and runs the steps through
:class:`~uniav.engine.stepper.TrainingStep` - the optimizer groups, schedule, loss scales,
loss normaliser, clipping, EMA and step order that ``uniav train`` uses - configured by the
``protocol: released`` settings of the configuration and the fixture's numbers (learning rates,
weight decay, clipping, EMA decay, warm-up and total iterations).  Nothing here re-implements a
step: a difference shows the training code (or the released protocol's settings) drifting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from uniav.config import Config, TrainConfig, deep_merge, load_config, parse, to_plain
from uniav.engine.stepper import TrainingStep
from uniav.errors import InputError
from uniav.model.released import convert_state_dict, load_released_model, released_model_spec

#: Fixture files.
FIXTURE_FILE = "train_steps.pt"


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual − expected| / max |expected| (at least 1e-6), in float64."""
    actual, expected = actual.double(), expected.double()
    scale = max(float(expected.abs().max()) if expected.numel() else 0.0, 1e-6)
    return float((actual - expected).abs().max()) / scale if expected.numel() else 0.0


def _names(released_names: list[str]) -> set[str]:
    """Released parameter names as this project's names."""
    return set(convert_state_dict({name: torch.empty(0) for name in released_names}))


def released_train_config(config: Config, fixture: dict[str, Any]) -> TrainConfig:
    """The training settings of the replay: the configuration's (``protocol: released``)
    with the fixture's run-specific numbers."""
    training = fixture["config"]["training"]
    tasks = fixture["config"]["tasks"]
    base_lr = training["base_lr"]
    overrides = {
        "lr": {task: base_lr * settings["loss_scale"] for task, settings in tasks.items()},
        "batch_size": {task: settings["batch"] for task, settings in tasks.items()},
        "text_proj_lr": training["clip_proj_lr"], "weight_decay": training["weight_decay"],
        "clip_grad_norm": training["clip_grad_l2norm"], "ema_decay": training["ema_decay"],
    }
    return parse(TrainConfig, deep_merge(to_plain(config.train), overrides), "train")


def replay_train_steps(fixture_dir: str | Path, config: Config | None = None) -> dict[str, Any]:
    """Replay a recorded run (see module docs) and compare.

    Args:
        fixture_dir: a directory holding ``train_steps.pt``.
        config: the configuration whose training settings apply (its protocol must be
            ``released``); default: ``params.yaml`` of the working directory with
            ``protocol=released``.

    Returns:
        ``max_rel_err_params`` (worst per-tensor error of the final raw weights),
        ``max_rel_err_params_all`` (over all tensors at once), ``max_rel_err_ema``,
        ``max_abs_err_lr``, ``max_rel_err_loss`` (worst over steps and the three losses),
        ``max_rel_err_loss_first_iteration``, ``max_rel_err_grad_norm``,
        ``max_rel_err_loss_normalizer``, ``adam_step_counts_equal``, ``param_groups_equal``,
        ``schedule_equal`` and ``steps``.

    Raises:
        InputError: a missing or unreadable fixture, or a configuration whose protocol is not
            ``released``.
    """
    path = Path(fixture_dir) / FIXTURE_FILE
    if not path.exists():
        raise InputError("no recorded training run here", file=path)
    fixture = torch.load(path, map_location="cpu", weights_only=True)
    config = config or load_config("params.yaml", ["protocol=released"])
    if config.protocol != "released":
        raise InputError(f"the replay runs the released protocol's settings; the configuration "
                         f"has protocol {config.protocol!r}", field="protocol")
    meta = fixture["config"]
    train = released_train_config(config, fixture)
    order = [task for task in (train.task_order or meta["task_order"]) if task in meta["tasks"]]
    spec = released_model_spec(meta["model"], {t: meta["tasks"][t] for t in order},
                               prompt_dim=meta["model"]["prompt_dim"],
                               droppath=meta["model"]["droppath"])
    model = load_released_model(fixture["initial_state_dict"], spec, fixture["prompts"]).train()
    training = meta["training"]
    step = TrainingStep.create(model, train, order, warmup_steps=training["warmup_steps"],
                               total_steps=training["max_steps"])
    batches = {}
    for task in order:
        data = fixture[task]
        mask = torch.arange(data["visual"].shape[-1])[None, :] < data["lengths"][:, None]
        batches[task] = (data["visual"], data["audio"], mask,
                         [gt["segments"] for gt in data["gt"]], [gt["labels"] for gt in data["gt"]])

    record: dict[str, list] = {"schedule": [], "lr": [], "losses": [], "grad_norm": [],
                               "normalizer": []}

    def run(task: str):
        record["schedule"].append([iteration, task])
        record["lr"].append([group["lr"] for group in step.optimizer.param_groups])
        result = step.task_step(task, *batches[task])
        record["losses"].append([result.losses[k] for k in ("cls_loss", "reg_loss", "final_loss")])
        record["grad_norm"].append(result.grad_norm)
        record["normalizer"].append(float(model.loss_normalizers[task]))
        return result

    for iteration in range(training["total_iterations"]):
        step.iteration(order, run)
    return _compare(fixture, model, step, record)


def _compare(fixture: dict[str, Any], model: torch.nn.Module, step: TrainingStep,
             record: dict[str, list]) -> dict[str, Any]:
    """The errors of a replay against the fixture (see :func:`replay_train_steps`)."""
    expected_losses = torch.stack([fixture["loss_cls"], fixture["loss_reg"],
                                   fixture["loss_final"]], dim=1).double()   # (S, 3)
    losses = torch.tensor(record["losses"], dtype=torch.float64)
    steps = min(len(losses), len(expected_losses))
    loss_error = ((losses[:steps] - expected_losses[:steps]).abs()
                  / expected_losses[:steps].abs().clamp(min=1e-6))
    first = len(fixture["config"]["task_order"])
    norms = torch.tensor(record["grad_norm"], dtype=torch.float64)[:steps]
    normalizers = torch.tensor(record["normalizer"], dtype=torch.float64)[:steps]
    lrs = torch.tensor(record["lr"], dtype=torch.float64)[:steps]

    own = model.state_dict()
    final = convert_state_dict(fixture["final_state_dict"])
    ema_own = step.ema.module.state_dict()
    ema = convert_state_dict(fixture["final_ema_state_dict"])
    per_tensor = [_relative_error(own[name], tensor) for name, tensor in final.items()]
    all_error = max(float((own[n].double() - t.double()).abs().max()) for n, t in final.items())
    all_scale = max(float(t.abs().max()) for t in final.values())
    ema_error = [_relative_error(ema_own[name], tensor) for name, tensor in ema.items()]

    names = {id(p): n for n, p in model.named_parameters()}
    counts = {names[id(p)]: int(state["step"]) for p, state in step.optimizer.state.items()}
    expected_counts = {new: int(fixture["final_adam_step_counts"][old]) for new, old in
                       convert_state_dict({n: n for n in fixture["final_adam_step_counts"]}).items()}
    groups_equal = len(step.optimizer.param_groups) == len(fixture["param_groups"]) and all(
        {names[id(p)] for p in group["params"]} == _names(list(expected["names"]))
        for group, expected in zip(step.optimizer.param_groups, fixture["param_groups"]))
    return {
        "steps": len(record["losses"]),
        "schedule_equal": record["schedule"] == [list(s) for s in fixture["schedule"]],
        "max_abs_err_lr": float((lrs - fixture["lr"][:steps].double()).abs().max()),
        "max_rel_err_loss": float(loss_error.max()),
        "max_rel_err_loss_first_iteration": float(loss_error[:first].max()),
        "max_rel_err_grad_norm": float(((norms - fixture["grad_norm"][:steps].double()).abs()
                                        / fixture["grad_norm"][:steps].double().abs()).max()),
        "max_rel_err_loss_normalizer": float(
            ((normalizers - fixture["loss_normalizer"][:steps].double()).abs()
             / fixture["loss_normalizer"][:steps].double().abs()).max()),
        "max_rel_err_params": max(per_tensor),
        "max_rel_err_params_all": all_error / all_scale,
        "max_rel_err_ema": max(ema_error),
        "adam_step_counts_equal": counts == expected_counts,
        "param_groups_equal": groups_equal,
    }
