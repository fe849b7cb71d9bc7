"""Compatibility with checkpoints of the released implementation (ttgeng233/UniAV).

The released code names tasks by position (``TASK1`` = ActivityNet/TAL, ``TASK2`` = UnAV-100/
AVEL, ``TASK3`` = DESED/SED in its config) and experts by type (``mlp_TAL``, ``ln2_SED``...),
saves from DistributedDataParallel (``module.`` prefix) and keeps EMA weights under
``state_dict_ema``.  Its checkpoints hold no prompt embeddings (they ship as ``.npy`` files)
and no loss normalisers.  :func:`convert_state_dict` maps its names onto this project's;
:func:`load_released_model` builds a ready :class:`~uniav.model.UniAV` from such a checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch

from uniav.errors import InputError
from uniav.model.model import ModelSpec, TaskHeadConfig, UniAV

#: Task keys of the released config -> task names.
RELEASED_TASK_KEYS = {"TASK1": "tal", "TASK2": "avel", "TASK3": "sed"}
#: Expert suffixes of the released blocks -> task names.
RELEASED_EXPERT_TYPES = {"TAL": "tal", "AVEL": "avel", "SED": "sed"}

_MODULE_RENAMES = [
    (r"^backbone\.embd_V\.", "backbone.visual_embed."),
    (r"^backbone\.embd_A\.", "backbone.audio_embed."),
    (r"^backbone\.embd_norm_V\.", "backbone.visual_embed_norms."),
    (r"^backbone\.embd_norm_A\.", "backbone.audio_embed_norms."),
    (r"^backbone\.self_att_V\.", "backbone.visual_stem."),
    (r"^backbone\.self_att_A\.", "backbone.audio_stem."),
    (r"^backbone\.ori_cross_att_Va\.", "backbone.visual_fusion."),
    (r"^backbone\.ori_cross_att_Av\.", "backbone.audio_fusion."),
    (r"^backbone\.cross_att_Va\.", "backbone.visual_pyramid."),
    (r"^backbone\.cross_att_Av\.", "backbone.audio_pyramid."),
    (r"^cls_head\.clip_proj\.", "cls_head.text_proj."),
    (r"^cls_head\.vis_proj\.", "cls_head.visual_proj."),
]


def convert_state_dict(released: Mapping[str, torch.Tensor],
                       task_keys: Mapping[str, str] = RELEASED_TASK_KEYS,
                       expert_types: Mapping[str, str] = RELEASED_EXPERT_TYPES
                       ) -> dict[str, torch.Tensor]:
    """Rename a released state dict to this project's parameter names.

    Args:
        released: the released ``state_dict`` (an optional ``module.`` prefix is stripped).
        task_keys: released task keys (``TASK1``...) -> task names.
        expert_types: released expert suffixes (``TAL``...) -> task names.

    Returns:
        A state dict for :class:`~uniav.model.UniAV` (without prompts and loss normalisers).
    """
    converted = {}
    for name, tensor in released.items():
        new = name[len("module."):] if name.startswith("module.") else name
        for pattern, replacement in _MODULE_RENAMES:
            new = re.sub(pattern, replacement, new)
        expert = re.search(r"\.(ln2|mlp)_([A-Z]+)\.", new)
        if expert:
            kind, task_type = expert.groups()
            if task_type not in expert_types:
                raise InputError(f"parameter {name}: unknown expert type {task_type!r}",
                                 field="state_dict")
            target = "norm." if kind == "ln2" else "mlp."
            new = new.replace(f".{kind}_{task_type}.", f".experts.{expert_types[task_type]}.{target}")
        offset = re.match(r"^reg_head\.offset_head\.([A-Za-z0-9_]+)\.", new)
        if offset:
            key = offset.group(1)
            if key not in task_keys:
                raise InputError(f"parameter {name}: unknown task key {key!r} "
                                 f"(known: {', '.join(task_keys)})", field="state_dict")
            new = new.replace(f"reg_head.offset_head.{key}.",
                              f"reg_head.offset_heads.{task_keys[key]}.")
        converted[new] = tensor
    return converted


def released_model_spec(model: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]], *,
                        prompt_dim: int, droppath: float = 0.0) -> ModelSpec:
    """The :class:`~uniav.model.ModelSpec` of a model configured as the released code does.

    Args:
        model: the released ``model`` config keys (``input_dim_V``, ``input_dim_A``,
            ``embd_dim``, ``head_dim``, ``n_head``, ``backbone_arch``, ``scale_factor``,
            ``regression_range``, ``embd_kernel_size``, ``head_kernel_size``,
            ``head_num_layers``, ``embd_with_ln``, ``head_with_ln``, ``use_abs_pe``; optional
            ``dropout``, ``cls_prior_prob``, ``loss_normalizer_momentum``).
        tasks: per task ``num_classes``, ``max_seq_len``, ``class_aware``,
            ``label_smoothing``, ``init_loss_norm`` (in the released task order).
        prompt_dim: width of the prompt embeddings.
        droppath: the drop-path rate.

    Returns:
        The spec, with the released position interpolation.
    """
    from uniav.config import ModelConfig, parse

    config = parse(ModelConfig, {
        "preset": "paper", "embd_dim": model["embd_dim"], "head_dim": model["head_dim"],
        "n_head": model["n_head"], "arch": list(model["backbone_arch"]),
        "scale_factor": model["scale_factor"], "regression_ranges": model["regression_range"],
        "embd_kernel_size": model["embd_kernel_size"],
        "head_kernel_size": model["head_kernel_size"],
        "head_num_layers": model["head_num_layers"], "embd_with_ln": model["embd_with_ln"],
        "head_with_ln": model["head_with_ln"], "use_abs_pe": model["use_abs_pe"],
        "droppath": droppath, "dropout": model.get("dropout", 0.0),
        "cls_prior_prob": model.get("cls_prior_prob", 0.01),
        "loss_norm_momentum": model.get("loss_normalizer_momentum", 0.9),
        "position_interpolation": "released"}, "model")
    heads = {name: TaskHeadConfig(num_classes=task["num_classes"],
                                  max_seq_len=task["max_seq_len"],
                                  class_aware=task["class_aware"],
                                  label_smoothing=task["label_smoothing"],
                                  init_loss_norm=task["init_loss_norm"])
             for name, task in tasks.items()}
    return ModelSpec(model=config, tasks=heads, visual_dim=model["input_dim_V"],
                     audio_dim=model["input_dim_A"], text_dim=prompt_dim)


def read_released_checkpoint(path: str | Path, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """Load the weights of a released checkpoint file (``weights_only=True``, on CPU).

    Args:
        path: the ``.pth.tar`` file.
        use_ema: take ``state_dict_ema`` when present (the evaluated weights).

    Returns:
        The released state dict (original names).
    """
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError("checkpoint not found", file=path) from None
    except Exception as exc:  # truncated zip, empty file, refused pickle
        detail = str(exc).splitlines()[0] if str(exc) else "empty file"
        raise InputError(f"cannot read checkpoint ({type(exc).__name__}: {detail})",
                         file=path) from None
    if not isinstance(checkpoint, dict):
        raise InputError("expected a dict checkpoint", file=path)
    for key in (("state_dict_ema", "state_dict") if use_ema else ("state_dict",)):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            check_finite(checkpoint[key], file=path, prefix=f"{key}.")
            return checkpoint[key]
    if all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        check_finite(checkpoint, file=path, prefix="")
        return checkpoint  # a bare state dict
    raise InputError("no 'state_dict_ema' or 'state_dict' in the checkpoint", file=path,
                     field="state_dict")


def load_released_model(checkpoint: str | Path | Mapping[str, torch.Tensor], spec: ModelSpec,
                        text_embeddings: Mapping[str, torch.Tensor], *, use_ema: bool = True,
                        task_keys: Mapping[str, str] = RELEASED_TASK_KEYS) -> UniAV:
    """Build a :class:`~uniav.model.UniAV` holding the weights of a released checkpoint.

    Args:
        checkpoint: a checkpoint file or an already-loaded released state dict.
        spec: the architecture (its ``position_interpolation`` should be ``"released"`` to
            reproduce the released outputs exactly).
        text_embeddings: task name -> (K, D) prompt embeddings (the released ``.npy`` files).
        use_ema: prefer the EMA weights of a checkpoint file.
        task_keys: released task keys -> task names.

    Returns:
        The model in eval mode.

    Raises:
        InputError: unknown names, missing or unexpected parameters, shape mismatches.
    """
    released = (read_released_checkpoint(checkpoint, use_ema)
                if isinstance(checkpoint, (str, Path)) else checkpoint)
    where = checkpoint if isinstance(checkpoint, (str, Path)) else None
    if where is None:  # read_released_checkpoint checked a file's weights already
        check_finite(released)
    model = UniAV(spec)
    state = convert_state_dict(released, task_keys)
    own = model.state_dict()
    carried_by_us = {k for k in own if k.startswith(("cls_head.prompts.", "loss_normalizers."))}
    missing = sorted(set(own) - set(state) - carried_by_us)
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise InputError(f"checkpoint does not fit the architecture: missing {missing[:5]} "
                         f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})",
                         file=where, field="state_dict")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise InputError(f"parameter {name}: shape {tuple(tensor.shape)} in the checkpoint, "
                             f"{tuple(own[name].shape)} in the model", file=where,
                             field="state_dict")
    model.load_state_dict(state, strict=False)
    for task in spec.tasks:
        if task not in text_embeddings:
            raise InputError(f"no prompt embeddings for task {task!r}", field="prompts")
        model.set_text_embeddings(task, torch.as_tensor(text_embeddings[task], dtype=torch.float32))
    return model.eval()


def check_finite(state: Mapping[str, Any], *, file: str | Path | None = None,
                 prefix: str = "state_dict.") -> None:
    """Refuse a state dict with NaN or infinite weights (a diverged or corrupted model would
    otherwise import silently and predict nothing useful).

    Raises:
        InputError: naming the first offending tensor and how many values are not finite.
    """
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise InputError(f"parameter {name}: expected a tensor, got {type(tensor).__name__}",
                             file=file, field=f"{prefix}{name}")
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise InputError(f"parameter {name}: {bad} of {tensor.numel()} values are NaN "
                                 f"or infinite", file=file, field=f"{prefix}{name}")


def infer_released_layout(released: Mapping[str, torch.Tensor],
                          task_keys: Mapping[str, str] = RELEASED_TASK_KEYS) -> dict[str, Any]:
    """Read widths and depths off a released state dict.

    Returns:
        ``{"visual_dim", "audio_dim", "embd_dim", "head_dim", "text_dim", "arch",
        "offset_channels": {task: channels}, "droppath": bool}``.
    """
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in released.items()}
    try:
        embd_dim, visual_dim, _ = state["backbone.embd_V.0.conv.weight"].shape
        audio_dim = state["backbone.embd_A.0.conv.weight"].shape[1]
        head_dim, text_dim = state["cls_head.clip_proj.weight"].shape
    except KeyError as exc:
        raise InputError(f"not a released UniAV state dict (no {exc.args[0]})",
                         field="state_dict") from None

    def count(prefix: str) -> int:
        indices = {int(m.group(1)) for k in state if (m := re.match(prefix + r"\.(\d+)\.", k))}
        return len(indices)

    arch = (count(r"backbone\.embd_V"), count(r"backbone\.self_att_V") + 1,
            count(r"backbone\.cross_att_Va"))
    offsets = {task_keys[m.group(1)]: state[k].shape[0] for k in state
               if (m := re.match(r"reg_head\.offset_head\.([A-Za-z0-9_]+)\.conv\.weight$", k))
               and m.group(1) in task_keys}
    droppath = any(".drop_path_attn.scale" in k for k in state)
    return {"visual_dim": int(visual_dim), "audio_dim": int(audio_dim), "embd_dim": int(embd_dim),
            "head_dim": int(head_dim), "text_dim": int(text_dim), "arch": arch,
            "offset_channels": offsets, "droppath": droppath}
