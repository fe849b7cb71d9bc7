"""``uniav import-checkpoint``: the authors' pre-trained model in this project's format.

Reads a checkpoint of the released implementation, infers its widths and depths, takes the
class counts from the prompt embeddings shipped with it (``anet_prompt.npy``...), the task
settings (max_seq_len, grid) from ``params.yaml``'s paper benchmark, and writes
``model.safetensors`` exactly like ``uniav train`` does - so ``uniav evaluate`` runs the
authors' model without training.  The position-table behaviour of the released code is kept
(``position_interpolation: released``) so outputs match it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from uniav.config import Config, ModelConfig, resolve_model, to_plain
from uniav.engine.checkpoint import export_weights
from uniav.errors import InputError
from uniav.fileio import sha256_file
from uniav.model import ModelSpec, TaskHeadConfig
from uniav.model.released import (RELEASED_TASK_KEYS, infer_released_layout,
                                  load_released_model, read_released_checkpoint)

LOGGER = logging.getLogger(__name__)


def _class_names(config: Config, task: str, count: int) -> list[str]:
    """Class names of a paper task from its annotation file, when present."""
    from uniav.data.annotations import load_annotations_under

    path = Path(config.datasets.paper.tasks[task].annotations)
    if path.exists():
        classes = load_annotations_under(path, config.data).classes
        if len(classes) != count:
            raise InputError(f"{len(classes)} classes in the annotations but {count} prompt rows",
                             file=path, field="classes")
        return classes
    LOGGER.warning("task %s: %s not found; classes are named class_0..class_%d", task, path,
                   count - 1)
    return [f"class_{i}" for i in range(count)]


def import_released_checkpoint(config: Config, checkpoint: str | Path, output: str | Path, *,
                               prompts: Mapping[str, str | Path],
                               task_keys: Mapping[str, str] | None = None, use_ema: bool = True,
                               n_head: int = 4) -> Path:
    """Convert a released checkpoint to ``model.safetensors`` (see module docs).

    Args:
        config: the configuration (its paper benchmark supplies the task settings).
        checkpoint: the released ``.pth.tar``.
        output: the ``.safetensors`` file to write.
        prompts: task name -> prompt-embedding ``.npy`` (one row per class).
        task_keys: released task keys -> task names (default TASK1=tal, TASK2=avel, TASK3=sed).
        use_ema: take the EMA weights.
        n_head: attention heads (not recoverable from the weights; the paper uses 4).

    Returns:
        The written path.
    """
    checkpoint = Path(checkpoint)
    task_keys = dict(task_keys or RELEASED_TASK_KEYS)
    released = read_released_checkpoint(checkpoint, use_ema)
    layout = infer_released_layout(released, task_keys)
    embeddings: dict[str, torch.Tensor] = {}
    tasks: dict[str, TaskHeadConfig] = {}
    for task, channels in layout["offset_channels"].items():
        if task not in prompts:
            raise InputError(f"no prompt embeddings given for task {task!r} (--prompts {task}=...)",
                             file=checkpoint, field="prompts")
        path = Path(prompts[task])
        try:
            rows = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"cannot read prompt embeddings ({exc or 'empty file'})",
                             file=path, field="prompts") from None
        if not isinstance(rows, np.ndarray):  # an .npz archive
            rows.close()
            raise InputError("not a .npy array (an .npz archive?)", file=path, field="prompts")
        if rows.dtype.kind not in "iuf":
            raise InputError(f"prompt embeddings must be numbers, got dtype {rows.dtype}",
                             file=path, field="prompts")
        if not np.isfinite(rows).all():
            raise InputError("prompt embeddings hold NaN or infinite values", file=path,
                             field="prompts")
        if rows.ndim != 2 or rows.shape[1] != layout["text_dim"]:
            raise InputError(f"prompt embeddings of shape {rows.shape}, expected (K, "
                             f"{layout['text_dim']})", file=path)
        num_classes = rows.shape[0]
        if channels not in (2, 2 * num_classes):
            raise InputError(f"task {task!r}: offset head has {channels} channels, which fits "
                             f"neither class-agnostic (2) nor class-aware ({2 * num_classes}) "
                             f"regression for {num_classes} classes", file=checkpoint)
        if task not in config.tasks or task not in config.datasets.paper.tasks:
            raise InputError(f"task {task!r} is not configured under tasks: / "
                             f"datasets.paper.tasks:", field="tasks")
        settings = config.tasks[task]
        tasks[task] = TaskHeadConfig(num_classes=num_classes,
                                     max_seq_len=config.datasets.paper.tasks[task].max_seq_len,
                                     class_aware=channels == 2 * num_classes and num_classes > 1,
                                     label_smoothing=settings.label_smoothing,
                                     init_loss_norm=settings.init_loss_norm)
        embeddings[task] = torch.from_numpy(rows.astype(np.float32))
    model_cfg = resolve_model(ModelConfig(preset="paper"), {
        "embd_dim": layout["embd_dim"], "head_dim": layout["head_dim"], "n_head": n_head,
        "arch": list(layout["arch"]), "droppath": 0.1 if layout["droppath"] else 0.0,
        "position_interpolation": "released"})
    spec = ModelSpec(model=model_cfg, tasks=tasks, visual_dim=layout["visual_dim"],
                     audio_dim=layout["audio_dim"], text_dim=layout["text_dim"])
    model = load_released_model(released, spec, embeddings, task_keys=task_keys)
    metadata = {
        "format": "uniav-weights-v1", "experiment": "released-import",
        "source_checkpoint": {"file": checkpoint.name, "sha256": sha256_file(checkpoint),
                              "weights": "state_dict_ema" if use_ema else "state_dict"},
        "model_spec": spec.to_dict(),
        "classes": {t: _class_names(config, t, h.num_classes) for t, h in tasks.items()},
        "tasks": {t: {"data": to_plain(config.datasets.paper.tasks[t]),
                      "task": to_plain(config.tasks[t])} for t in tasks},
        "features": {t: {"visual_encoder": "one-peace-video", "audio_encoder": "one-peace-audio",
                         "visual_dim": layout["visual_dim"], "audio_dim": layout["audio_dim"]}
                     for t in tasks},
        "eval": to_plain(config.eval),
        # precomputed prompt embeddings (ONE-PEACE's text space): no text encoder here can add
        # classes to this model; `uniav predict/evaluate --classes` need --class-embeddings
        "prompts": {"source": "npy", "files": {t: Path(prompts[t]).name for t in tasks}}}
    output = Path(output)
    export_weights(output, model.state_dict(), metadata)
    return output
