"""Resumable training checkpoints and exported weights.

* **Training checkpoints** (``torch.save``, read back with ``weights_only=True``) hold the
  unwrapped model, the EMA model, optimizer, scheduler, plateau gates, data-stream positions,
  RNG states, iteration, best metric, history and the hash of the configuration that produced
  them.  Only plain Python types and tensors go in, so ``weights_only`` loading works.  Each is
  written atomically (temp file, fsync, rename); a small pointer file ``latest.json`` is written
  the same way *after* the checkpoint, so resume always finds a complete one.  A checkpoint
  whose config hash differs from the current run is refused.
* **Exported weights** (``safetensors``) hold the EMA weights plus string metadata (model spec,
  class lists, feature encoders, config hash) - everything evaluation and ``uniav predict``
  need, and nothing that can execute code when loaded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from uniav.errors import InputError
from uniav.fileio import atomic_path, atomic_write_json, load_json_file, parse_json_text

LOGGER = logging.getLogger(__name__)
POINTER = "latest.json"


def save_training_checkpoint(directory: str | Path, state: dict[str, Any], *, name: str,
                             keep: int = 2) -> Path:
    """Write ``state`` to ``directory/name`` atomically, then move the pointer to it.

    Args:
        directory: checkpoint directory (created if needed).
        state: plain data and tensors only.
        name: file name, e.g. ``iter_000120.pt``.
        keep: how many checkpoint files to keep (older ones are deleted after the pointer moved).

    Returns:
        The checkpoint path.
    """
    directory = Path(directory)
    path = directory / name
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    atomic_write_json(directory / POINTER, {"checkpoint": name,
                                            "iteration": state.get("iteration"),
                                            "config_hash": state.get("config_hash")})
    checkpoints = sorted(directory.glob("iter_*.pt"), key=lambda p: p.stat().st_mtime)
    for old in checkpoints[:-keep] if keep > 0 else []:
        if old.name != name:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint with ``weights_only=True`` onto the CPU.

    Raises:
        InputError: missing, empty, truncated or otherwise unreadable file (naming it).
    """
    path = Path(path)
    if not path.exists():
        raise InputError("checkpoint not found", file=path)
    if path.stat().st_size == 0:
        raise InputError("checkpoint is empty", file=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated archive, refused pickle, ...
        raise InputError(f"cannot read checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})",
                         file=path) from None
    if not isinstance(state, dict):
        raise InputError("checkpoint does not hold a dict", file=path)
    return state


def load_latest_checkpoint(directory: str | Path, config_hash: str) -> dict[str, Any] | None:
    """The checkpoint the pointer names, or None when there is none yet.

    Raises:
        InputError: the pointer names a missing/corrupt file, or the checkpoint was written
            by a run with another configuration (its hash differs from ``config_hash``).
    """
    directory = Path(directory)
    pointer = directory / POINTER
    if not pointer.exists():
        return None
    try:
        name = load_json_file(pointer)["checkpoint"]
    except (InputError, KeyError, TypeError):
        raise InputError("checkpoint pointer is unreadable", file=pointer) from None
    if not isinstance(name, str) or Path(name).name != name:
        raise InputError(f"checkpoint pointer names {name!r}, not a file of {directory}",
                         file=pointer, field="checkpoint")
    state = load_checkpoint_file(directory / name)
    found = state.get("config_hash")
    if found != config_hash:
        raise InputError(f"checkpoint was written by another configuration (config hash {found}, "
                         f"this run {config_hash}); delete {directory} to start afresh",
                         file=directory / name, field="config_hash")
    return state


def export_weights(path: str | Path, state_dict: dict[str, torch.Tensor],
                   metadata: dict[str, Any]) -> None:
    """Write weights to safetensors atomically; ``metadata`` values are JSON-encoded strings."""
    from safetensors.torch import save_file

    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in state_dict.items()}
    text_metadata = {key: json.dumps(value) for key, value in metadata.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=text_metadata)


def load_exported_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read weights and metadata written by :func:`export_weights`.

    Raises:
        InputError: missing or corrupt file, metadata that is not JSON (or repeats a key),
            NaN or infinite weights (naming the tensor).
    """
    from safetensors import SafetensorError, safe_open

    from uniav.model.released import check_finite

    path = Path(path)
    if not path.exists():
        raise InputError("weights file not found", file=path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            raw_metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"cannot read weights ({exc})", file=path) from None
    metadata = {}
    for key, value in raw_metadata.items():
        try:
            metadata[key] = parse_json_text(value, file=path)
        except InputError as exc:
            raise InputError(f"metadata {key!r}: {exc.message}", file=path,
                             field=f"metadata.{key}") from None
    check_finite(tensors, file=path, prefix="")
    return tensors, metadata


def weights_metadata(trainer: Any) -> dict[str, Any]:
    """Metadata stored beside a trainer's exported weights: what evaluation and ``uniav
    predict`` need to rebuild the model and to turn a new video into its inputs.

    Args:
        trainer: the :class:`~uniav.engine.trainer.Trainer` (its data, experiment, config,
            model spec, selection state and tracker).
    """
    from uniav.config import to_plain

    experiment, config = trainer.experiment, trainer.config
    features = {task: data.train.store.meta for task, data in trainer.data.items()}
    optional: dict[str, Any] = {}
    if experiment.held_out_classes:
        optional["held_out_classes"] = {t: list(c) for t, c
                                        in experiment.held_out_classes.items()}
    if trainer.init_weights is not None:
        optional["init_from"] = trainer.init_weights.record()
    prompts = {"source": config.prompts.source}
    if config.prompts.source == "sentence-transformer":
        prompts["model"] = config.prompts.model
    return {"format": "uniav-weights-v1", "experiment": experiment.name,
            "protocol": config.protocol, "model_spec": trainer.spec.to_dict(),
            "classes": {t: d.train.classes for t, d in trainer.data.items()},
            "tasks": {t: {"data": to_plain(s.data), "task": to_plain(s.task)}
                      for t, s in experiment.specs.items()},
            "features": features, "features_config": to_plain(config.features),
            "eval": to_plain(config.eval), "data_report": trainer.data_report,
            "config_hash": trainer.config_hash, "best_epoch": trainer.best_epoch,
            "exported_weights": experiment.train.exported_weights,
            "best_validation_mAP": trainer.best_metric, "mlflow_run_id": trainer.tracker.run_id,
            "prompts": prompts, **optional}
