"""Starting a training run from exported weights: ``uniav train --init-from WEIGHTS``
(pre-training / fine-tuning; ``experiments.<name>.init_from`` in the pipeline).

WEIGHTS is a ``model.safetensors`` written by ``uniav train`` or ``uniav import-checkpoint``.
The run's model is built from the run's own configuration and data as usual; then, before the
optimizer, the schedule and the EMA are created (so all three start fresh and the EMA starts
as a copy of the loaded weights):

* **Compatibility.**  The architecture (:data:`~uniav.config.ARCHITECTURE_KEYS`), the feature
  widths and - with the prompt classifier - the text width must be equal, and so must
  ``class_aware`` of every task both have; with the linear classifier every task both have must
  have the same class list (its classifier has one output per class).  One
  :class:`~uniav.errors.InputError` names the weights file and lists every difference with
  both values.
* **What is loaded**: every tensor of the run's model that the weights have - shared layers,
  the experts, regression heads and loss normalisers of the tasks both have.
* **Prompt embeddings are the run's own** (its ``--prompts-dir``), never the weights'.
* **Tasks the weights lack** (a task added in fine-tuning): their task-specific tensors keep the
  run's fresh initialisation (logged).  **Tensors of the weights the run lacks** (tasks
  dropped in fine-tuning) are ignored (logged).
* **Another class list of a class-aware task** (prompt classifier; e.g. classes held out of the
  pre-training): its per-class regression channels are copied by class name; classes the
  weights lack keep fresh channels (logged).

A resumed run (a checkpoint in the work directory) continues from its checkpoint, not from
WEIGHTS; the weights' SHA-256 is part of the run's config hash, so a resume with other
``--init-from`` weights is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from uniav.config import architecture_differences
from uniav.errors import InputError
from uniav.fileio import sha256_file

LOGGER = logging.getLogger(__name__)

#: State-dict prefixes of the per-task prompt embeddings (the run's own, never loaded).
PROMPTS_PREFIX = "cls_head.prompts."


@dataclass(frozen=True)
class InitialWeights:
    """What a run took from its ``--init-from`` weights.

    Attributes:
        path: the weights file.
        sha256: its SHA-256.
        experiment: the experiment the weights record.
        config_hash: the config hash the weights record.
        loaded: tensors loaded (all of them, or part of their channels).
        fresh: tensors kept at the run's initialisation, by task.
        ignored: tensors of the weights the run does not have, by task.
        remapped: per class-aware task whose class list differs, the classes found in the
            weights and those started fresh.
    """

    path: Path
    sha256: str
    experiment: str | None
    config_hash: str | None
    loaded: int
    fresh: dict[str, list[str]] = field(default_factory=dict)
    ignored: dict[str, list[str]] = field(default_factory=dict)
    remapped: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What the run's metadata and history record."""
        return {"file": str(self.path), "sha256": self.sha256, "experiment": self.experiment,
                "config_hash": self.config_hash, "tensors_loaded": self.loaded,
                "tensors_fresh": {task: len(names) for task, names in self.fresh.items()},
                "tensors_ignored": {task: len(names) for task, names in self.ignored.items()},
                "classes_remapped": self.remapped}


def _task_of(name: str, tasks: set[str]) -> str:
    """The task a tensor belongs to (a path component naming a task), else ``shared``."""
    for part in name.split("."):
        if part in tasks:
            return part
    return "shared"


def compatibility_differences(spec: Any, theirs: dict[str, Any], run_classes: dict[str, list[str]],
                              their_classes: dict[str, list[str]]) -> dict[str, tuple[Any, Any]]:
    """Every setting that keeps the weights from initialising the run's model.

    Args:
        spec: the run's :class:`~uniav.model.ModelSpec`.
        theirs: the weights' ``model_spec`` metadata.
        run_classes, their_classes: class lists per task.

    Returns:
        ``{key: (weights' value, run's value)}``.
    """
    differences = {key: (their, our) for key, (our, their)
                   in architecture_differences(spec.model, theirs.get("model") or {}).items()}
    keys = ["visual_dim", "audio_dim"] + (["text_dim"] if spec.model.classifier == "prompt"
                                          else [])
    for key in keys:
        if theirs.get(key) != getattr(spec, key):
            differences[key] = (theirs.get(key), getattr(spec, key))
    their_tasks = theirs.get("tasks") or {}
    for task, head in spec.tasks.items():
        if task not in their_tasks:
            continue
        aware = (their_tasks[task] or {}).get("class_aware")
        if aware != head.class_aware:
            differences[f"tasks.{task}.class_aware"] = (aware, head.class_aware)
        if spec.model.classifier == "linear" and their_classes.get(task) != run_classes[task]:
            differences[f"classes.{task} (linear classifier: one output per class)"] = (
                their_classes.get(task), run_classes[task])
    return differences


def load_initial_weights(model: torch.nn.Module, path: str | Path, *,
                         run_classes: dict[str, list[str]], experiment: str,
                         expected_experiment: str | None = None) -> InitialWeights:
    """Load ``--init-from`` weights into a freshly built model (see module docs).

    Args:
        model: the run's :class:`~uniav.model.UniAV`, its prompts installed.
        path: the weights file.
        run_classes: the run's class list per task.
        experiment: the run's experiment (named by errors).
        expected_experiment: the experiment the weights must come from
            (``experiments.<name>.init_from``), or None.

    Raises:
        InputError: not a weights file, weights of another experiment than configured,
            incompatible settings (every difference listed), a tensor of unexpected shape.
    """
    from uniav.engine.checkpoint import load_exported_weights

    path = Path(path)
    tensors, metadata = load_exported_weights(path)
    if metadata.get("format") != "uniav-weights-v1" or not isinstance(
            metadata.get("model_spec"), dict):
        raise InputError("not a weights file written by `uniav train` or `uniav "
                         "import-checkpoint`", file=path, field="metadata")
    if expected_experiment is not None and metadata.get("experiment") != expected_experiment:
        raise InputError(f"experiments.{experiment}.init_from names experiment "
                         f"{expected_experiment!r}, but these weights were trained for "
                         f"{metadata.get('experiment')!r}", file=path, field="experiment")
    theirs = metadata["model_spec"]
    their_classes = metadata.get("classes") or {}
    differences = compatibility_differences(model.spec, theirs, run_classes, their_classes)
    if differences:
        listed = "; ".join(f"{key}: weights {a!r}, this run {b!r}"
                           for key, (a, b) in differences.items())
        raise InputError(f"cannot initialise experiment {experiment!r} from these weights, "
                         f"their settings differ: {listed}", file=path, field="model_spec")

    run_tasks = set(model.spec.tasks)
    all_tasks = run_tasks | set(theirs.get("tasks") or {})
    own = model.state_dict()
    state = dict(own)
    loaded = 0
    fresh: dict[str, list[str]] = {}
    remapped: dict[str, dict[str, list[str]]] = {}
    remap_tasks = {task for task, head in model.spec.tasks.items()
                   if head.class_aware and task in their_classes
                   and their_classes[task] != run_classes[task]}
    for name, tensor in own.items():
        if name.startswith(PROMPTS_PREFIX):
            continue
        task = _task_of(name, run_tasks)
        if name not in tensors:
            fresh.setdefault(task, []).append(name)
            continue
        source = tensors[name]
        if task in remap_tasks and name.startswith(f"reg_head.offset_heads.{task}."):
            state[name] = _copy_class_channels(tensor, source, run_classes[task],
                                               their_classes[task], name, path)
            found = [c for c in run_classes[task] if c in their_classes[task]]
            remapped[task] = {"from_weights": found,
                              "fresh": [c for c in run_classes[task] if c not in found]}
            loaded += 1
            continue
        if tuple(source.shape) != tuple(tensor.shape):
            raise InputError(f"tensor {name!r} has shape {tuple(source.shape)} in the weights but "
                             f"{tuple(tensor.shape)} in experiment {experiment!r}'s model",
                             file=path, field=name)
        state[name] = source.to(tensor.dtype)
        loaded += 1
    shared_missing = fresh.get("shared")
    if shared_missing:
        raise InputError(f"the weights lack {len(shared_missing)} shared tensor(s) of experiment "
                         f"{experiment!r}'s model, e.g. {shared_missing[0]!r}", file=path,
                         field=shared_missing[0])
    ignored: dict[str, list[str]] = {}
    for name in tensors:
        if name not in own:
            ignored.setdefault(_task_of(name, all_tasks), []).append(name)
    model.load_state_dict(state)
    result = InitialWeights(path=path, sha256=sha256_file(path),
                            experiment=metadata.get("experiment"),
                            config_hash=metadata.get("config_hash"), loaded=loaded,
                            fresh=fresh, ignored=ignored, remapped=remapped)
    LOGGER.info("initialised from %s (experiment %s): %d tensors loaded; prompt embeddings are "
                "this run's own", path, result.experiment, loaded)
    for task, names in fresh.items():
        LOGGER.warning("task %s is not in the weights: its %d task-specific tensors (experts, "
                       "regression head, loss normaliser) start from fresh initialisation",
                       task, len(names))
    for task, names in ignored.items():
        LOGGER.warning("the weights' %d tensors of %s are not part of this run: ignored",
                       len(names), f"task {task}" if task != "shared" else "the model")
    for task, classes in remapped.items():
        LOGGER.warning("task %s: other classes than the weights'; regression channels copied by "
                       "class name for %s, fresh for %s", task, classes["from_weights"],
                       classes["fresh"] or "none")
    return result


def _copy_class_channels(own: torch.Tensor, source: torch.Tensor, run_classes: list[str],
                         their_classes: list[str], name: str, path: Path) -> torch.Tensor:
    """A class-aware offset tensor (2 channels per class, class-major) with the channels of
    every class the weights have copied by name."""
    if source.shape[0] != 2 * len(their_classes) or tuple(source.shape[1:]) != tuple(own.shape[1:]):
        raise InputError(f"tensor {name!r} has shape {tuple(source.shape)}, which does not fit "
                         f"{len(their_classes)} classes", file=path, field=name)
    out = own.clone()
    position = {c: j for j, c in enumerate(their_classes)}
    for i, name_i in enumerate(run_classes):
        if name_i in position:
            j = position[name_i]
            out[2 * i:2 * i + 2] = source[2 * j:2 * j + 2].to(own.dtype)
    return out
