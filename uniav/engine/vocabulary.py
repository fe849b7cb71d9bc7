"""Open vocabulary at inference: which classes a trained model localizes, chosen when it runs.

A model with the prompt classifier scores each point against the text embeddings of its
task's class prompts (docs/architecture.md, "The network"); replacing those embeddings
replaces the classes.  ``uniav predict`` and ``uniav evaluate`` take the same options, handled
here for both:

* ``--classes NAME [NAME ...]`` or ``--classes-file FILE`` (one name per line; blank lines
  and lines starting with ``#`` are skipped; a repeated name is an error) - the names are
  embedded with the text encoder the weights' prompts came from (their ``prompts`` metadata:
  ``prompts.model``, as ``uniav prompts`` does) through each task's ``prompt_template`` (from
  the weights' task metadata), e.g. "A sound event of dog barking.";
* ``--class-embeddings FILE.npy`` together with the names: the embeddings themselves, one row
  per name (float, finite, 2-D, the model's text width) - the way in for a model whose text
  encoder is not available here (prompts from ``prompts.source: npy``, such as an imported
  released checkpoint with ONE-PEACE's 1536-d text space) or whose encoder's width differs
  from the model's text input.

Refused, with an error naming the weights file and the reason: a model trained with the linear
classifier (``model.classifier: linear`` - one output per trained class, no text input); names
without ``--class-embeddings`` when the weights' prompts came from precomputed embeddings, when
their encoder cannot be loaded, or when its width differs from the model's text width (both
widths named).

The chosen names replace the trained class list of every task run (``--tasks``); labels in the
outputs are the given names.  The embeddings go into the model through
:meth:`~uniav.model.UniAV.set_text_embeddings`; the model still returns raw outputs.  A
class-aware task (per-class offsets) has regression channels for its trained classes only: a
name equal to a trained class uses that class's channels, any other name those of the trained
class nearest to it in the model's projected text space (recorded as ``offsets_from``).

For evaluation, ground-truth instances whose label is not in the vocabulary are left out of
the scoring (counted: ``ground_truth_dropped``), classes of the vocabulary that the split lacks
are listed, and when the vocabulary differs from the trained classes the metrics add
``class_groups``: the per-class AP averaged over the ``seen`` classes (trained on) and over the
``novel`` ones (:func:`class_groups`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from uniav.errors import ConfigError, InputError

LOGGER = logging.getLogger(__name__)

#: The prompt sources whose text encoder this project can run (``prompts.source``).
ENCODER_SOURCE = "sentence-transformer"


# ---- what was asked for ---------------------------------------------------------------------

@dataclass(frozen=True)
class VocabularyRequest:
    """A vocabulary given on the command line.

    Attributes:
        names: the class names, in output order.
        embeddings_file: ``--class-embeddings`` (one row per name), or None: embed the names.
        names_file: ``--classes-file`` when the names came from a file.
    """

    names: tuple[str, ...]
    embeddings_file: Path | None = None
    names_file: Path | None = None

    def inputs(self) -> dict[str, Path]:
        """The files it reads, by option (for the outputs-are-not-inputs check)."""
        found = {"--classes-file": self.names_file, "--class-embeddings": self.embeddings_file}
        return {option: path for option, path in found.items() if path is not None}


def vocabulary_request(classes: list[str] | None = None, classes_file: str | Path | None = None,
                       class_embeddings: str | Path | None = None) -> VocabularyRequest | None:
    """The :class:`VocabularyRequest` of the three options, or None when none is given.

    Raises:
        InputError: both name options, embeddings without names, an empty or blank name, a
            repeated name (naming the option or the file and line).
    """
    if classes is not None and classes_file is not None:
        raise InputError("give the class names with --classes or --classes-file, not both",
                         field="--classes")
    if classes is None and classes_file is None:
        if class_embeddings is not None:
            raise InputError("--class-embeddings needs --classes or --classes-file: the names "
                             "of its rows, in order", file=class_embeddings,
                             field="--class-embeddings")
        return None
    if classes_file is not None:
        names = read_class_names(classes_file)
    else:
        names = check_class_names(list(classes or []), "--classes")
    return VocabularyRequest(tuple(names),
                             Path(class_embeddings) if class_embeddings is not None else None,
                             Path(classes_file) if classes_file is not None else None)


def check_class_names(names: list[str], option: str) -> list[str]:
    """Names given on the command line: stripped, none empty, none repeated."""
    stripped = [name.strip() for name in names]
    if not stripped:
        raise InputError("no class names given", field=option)
    for position, name in enumerate(stripped):
        if not name:
            raise InputError(f"name {position + 1} is empty", field=option)
        if name in stripped[:position]:
            raise InputError(f"class {name!r} is given twice", field=option)
    return stripped


def read_class_names(path: str | Path) -> list[str]:
    """The class names of a ``--classes-file``: one per line, surrounding blanks stripped,
    blank lines and ``#`` comment lines skipped.

    Raises:
        InputError: unreadable file, no names, a name repeated (naming both lines).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("class-name file not found", file=path, field="--classes-file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the class names ({exc})", file=path,
                         field="--classes-file") from None
    names: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if name in first_line:
            raise InputError(f"class {name!r} is listed twice (lines {first_line[name]} and "
                             f"{number})", file=path, field=f"line {number}")
        first_line[name] = number
        names.append(name)
    if not names:
        raise InputError("no class names in the file (only blank or # comment lines)",
                         file=path, field="--classes-file")
    return names


def load_class_embeddings(path: str | Path, names: list[str] | tuple[str, ...]) -> np.ndarray:
    """A ``--class-embeddings`` file: float (K, D), finite, no all-zero row, K = the names.

    Raises:
        InputError: naming the file and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("class-embedding file not found", file=path, field="--class-embeddings")
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"not a readable .npy array ({exc or 'empty file'})", file=path,
                         field="--class-embeddings") from None
    if not isinstance(rows, np.ndarray):  # an .npz archive
        rows.close()
        raise InputError("expected a .npy array, found an .npz archive", file=path,
                         field="--class-embeddings")
    if rows.dtype.kind != "f":
        raise InputError(f"expected floating-point embeddings, found dtype {rows.dtype}",
                         file=path, field="--class-embeddings")
    if rows.ndim != 2:
        raise InputError(f"expected a (classes x dim) matrix, found shape {tuple(rows.shape)}",
                         file=path, field="--class-embeddings")
    if rows.shape[0] != len(names):
        raise InputError(f"{rows.shape[0]} rows but {len(names)} class names: one row per name, "
                         f"in the order given", file=path, field="--class-embeddings")
    if not np.isfinite(rows).all():
        raise InputError("NaN or infinite values in the class embeddings", file=path,
                         field="--class-embeddings")
    zero = [names[i] for i in np.flatnonzero(np.linalg.norm(rows, axis=1) == 0)]
    if zero:
        raise InputError(f"all-zero rows for {zero}", file=path, field="--class-embeddings")
    return np.ascontiguousarray(rows, dtype=np.float32)


# ---- the vocabulary of one task --------------------------------------------------------------

@dataclass(frozen=True)
class TaskVocabulary:
    """The classes one task of a model is run with, and their text embeddings.

    Attributes:
        task: the task.
        classes: the class names (labels of the outputs), in column order.
        embeddings: float32 (K, D) - the prompt embeddings installed in the model.
        trained_classes: the classes the weights were trained with.
        offset_classes: for a class-aware task, per class the index of the trained class whose
            regression channels it uses; None otherwise.
        record: what the outputs record (``source``, ``classes``, ``template``, ``model``,
            ``file``, ``offsets_from``).
    """

    task: str
    classes: list[str]
    embeddings: np.ndarray
    trained_classes: list[str]
    offset_classes: list[int] | None = None
    record: dict[str, Any] = field(default_factory=dict)

    def install(self, model: torch.nn.Module) -> None:
        """Put the embeddings into ``model`` (its task's prompt bank takes K rows)."""
        model.set_text_embeddings(self.task, torch.from_numpy(self.embeddings), resize=True)

    def adapt(self, output: Any) -> Any:
        """A :class:`~uniav.model.ModelOutput` whose class-aware offsets have one entry per
        class of the vocabulary (the logits have it already)."""
        if self.offset_classes is None:
            return output
        index = torch.as_tensor(self.offset_classes, dtype=torch.long,
                                device=output.offsets[0].device)
        return dataclasses.replace(output, offsets=[level.index_select(2, index)
                                                    for level in output.offsets])

    @property
    def seen(self) -> list[str]:
        """Classes of the vocabulary the model was trained on (by name)."""
        trained = set(self.trained_classes)
        return [name for name in self.classes if name in trained]

    @property
    def novel(self) -> list[str]:
        """Classes of the vocabulary the model was not trained on."""
        trained = set(self.trained_classes)
        return [name for name in self.classes if name not in trained]

    @property
    def is_trained(self) -> bool:
        return self.classes == self.trained_classes


def trained_vocabulary(metadata: dict[str, Any], task: str) -> dict[str, Any]:
    """The record of a task run with the classes it was trained with."""
    return {"source": "trained", "classes": list(metadata["classes"][task])}


def prompt_record(metadata: dict[str, Any]) -> dict[str, Any]:
    """How the weights' prompt embeddings were made: ``{"source": ..., "model": ...}``.

    Weights written before this was recorded: imported released checkpoints (experiment
    ``released-import``) carry ONE-PEACE prompts (``npy``); weights of ``uniav train`` are
    taken to come from the default sentence encoder (the width check still guards them).
    """
    from uniav.config import PromptsConfig
    from uniav.engine.inference import IMPORTED_EXPERIMENT

    record = metadata.get("prompts")
    if isinstance(record, dict) and isinstance(record.get("source"), str):
        return record
    if metadata.get("experiment") == IMPORTED_EXPERIMENT:
        return {"source": "npy"}
    return {"source": ENCODER_SOURCE, "model": PromptsConfig().model, "recorded": False}


def _refuse_linear(metadata: dict[str, Any], weights: str | Path) -> None:
    classifier = ((metadata.get("model_spec") or {}).get("model") or {}).get("classifier")
    if classifier != "prompt":
        raise InputError(f"the model was trained with the {classifier} classifier (model."
                         f"classifier: {classifier}): it has one output per trained class and "
                         f"no text input, so it cannot localize other classes (--classes needs "
                         f"a model with the prompt classifier)", file=weights,
                         field="model_spec.model.classifier")


def resolve_vocabulary(model: torch.nn.Module, metadata: dict[str, Any], weights: str | Path,
                       task: str, request: VocabularyRequest, *,
                       text_encoder: Callable[[list[str]], np.ndarray] | None = None
                       ) -> TaskVocabulary:
    """The vocabulary a request gives one task of a model (see module docs).

    Args:
        model: the loaded model (its trained embeddings are still installed).
        metadata: the weights' metadata.
        weights: the weights file (named by errors).
        task: the task.
        request: the names and, optionally, their embeddings file.
        text_encoder: the sentence encoder to use instead of loading the recorded one.

    Raises:
        InputError: the refusals of the module docs.
    """
    _refuse_linear(metadata, weights)
    names = list(request.names)
    if request.embeddings_file is not None:
        embeddings = load_class_embeddings(request.embeddings_file, names)
        record: dict[str, Any] = {"source": "embeddings-file",
                                  "file": str(request.embeddings_file)}
        return vocabulary_of(model, metadata, task, names, embeddings, record,
                             where=request.embeddings_file, field="--class-embeddings")
    prompts = prompt_record(metadata)
    if prompts["source"] != ENCODER_SOURCE:
        raise InputError(f"the model's class prompts came from precomputed embeddings "
                         f"(prompts.source: {prompts['source']}, e.g. ONE-PEACE's "
                         f"{model.spec.text_dim}-d text space) whose text encoder is not "
                         f"available here: give --class-embeddings FILE.npy with one "
                         f"{model.spec.text_dim}-d row per class name", file=weights,
                         field="prompts.source")
    template = metadata["tasks"][task]["task"]["prompt_template"]
    if text_encoder is None:
        from uniav.prepare.prompts import shared_sentence_encoder

        try:
            text_encoder = shared_sentence_encoder(prompts["model"])
        except ConfigError as exc:
            raise InputError(f"the model's prompts were embedded with {prompts['model']!r}, "
                             f"which cannot be loaded here ({exc}); give --class-embeddings "
                             f"FILE.npy instead", file=weights, field="prompts.model") from None
    from uniav.prepare.prompts import embed_class_names

    embeddings = embed_class_names(names, template, text_encoder, weights)
    record = {"source": "text-encoder", "model": prompts["model"], "template": template}
    if embeddings.shape[1] != model.spec.text_dim:
        raise InputError(f"the text encoder {prompts['model']!r} embeds names in "
                         f"{embeddings.shape[1]} dimensions but the model's text input "
                         f"(model_spec.text_dim) has {model.spec.text_dim}: give "
                         f"--class-embeddings FILE.npy with {model.spec.text_dim}-d rows",
                         file=weights, field="model_spec.text_dim")
    return vocabulary_of(model, metadata, task, names, embeddings, record, where=weights,
                         field="prompts")


def vocabulary_of(model: torch.nn.Module, metadata: dict[str, Any], task: str,
                  names: list[str], embeddings: np.ndarray, record: dict[str, Any], *,
                  where: str | Path, field: str) -> TaskVocabulary:
    """A :class:`TaskVocabulary` from names and their embeddings (width checked; for a
    class-aware task, each name mapped onto a trained class's regression channels)."""
    text_dim = model.spec.text_dim
    if embeddings.shape[1] != text_dim:
        raise InputError(f"the class embeddings are {embeddings.shape[1]}-d but the model's text "
                         f"input (model_spec.text_dim) is {text_dim}-d", file=where, field=field)
    trained = list(metadata["classes"][task])
    offset_classes = None
    record = {**record, "classes": list(names)}
    if model.spec.tasks[task].class_aware:
        offset_classes = _nearest_trained(model, task, trained, names, embeddings)
        moved = {name: trained[j] for name, j in zip(names, offset_classes)
                 if name not in trained}
        if moved:
            record["offsets_from"] = moved
    return TaskVocabulary(task=task, classes=list(names), embeddings=embeddings,
                          trained_classes=trained, offset_classes=offset_classes, record=record)


@torch.no_grad()
def _nearest_trained(model: torch.nn.Module, task: str, trained: list[str], names: list[str],
                     embeddings: np.ndarray) -> list[int]:
    """Per name: the trained class of that name, else the trained class nearest to it (cosine
    in the model's projected text space, the space the classifier compares in)."""
    head = model.cls_head
    bank = head.prompts[task]
    projected_trained = F.normalize(head.text_proj(bank.float()), dim=1)
    projected = F.normalize(head.text_proj(torch.from_numpy(embeddings).to(bank.device).float()),
                            dim=1)
    nearest = (projected @ projected_trained.T).argmax(dim=1).tolist()
    position = {name: i for i, name in enumerate(trained)}
    return [position.get(name, int(j)) for name, j in zip(names, nearest)]


# ---- scoring against a vocabulary --------------------------------------------------------------

def restrict_ground_truth(videos: list[Any], classes: list[str]
                          ) -> tuple[list[Any], dict[str, int]]:
    """The ground truth without instances whose label is not in ``classes``.

    Returns:
        ``(videos, dropped)``: the :class:`~uniav.data.annotations.VideoAnnotation` list (every
        video kept, even without instances left) and the count dropped per label.
    """
    allowed = set(classes)
    kept, dropped = [], {}
    for video in videos:
        keep = np.asarray([label in allowed for label in video.labels], dtype=bool)
        for label, kept_label in zip(video.labels, keep):
            if not kept_label:
                dropped[label] = dropped.get(label, 0) + 1
        if keep.all():
            kept.append(video)
            continue
        kept.append(dataclasses.replace(
            video, segments=np.asarray(video.segments).reshape(-1, 2)[keep],
            labels=tuple(label for label, k in zip(video.labels, keep) if k)))
    return kept, dict(sorted(dropped.items()))


def class_groups(per_class: dict[str, list[float]], thresholds: list[float],
                 groups: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Per-class AP averaged over groups of classes (e.g. ``seen`` and ``novel``).

    Args:
        per_class: AP per threshold of every class with ground truth (the metrics'
            ``per_class``).
        thresholds: the tIoU thresholds.
        groups: group name -> its classes.

    Returns:
        Per group ``{"classes", "classes_with_ground_truth", "thresholds", "mAP" (per
        threshold), "average_mAP"}``; ``mAP`` / ``average_mAP`` are None when no class of the
        group has ground truth in the split.
    """
    out = {}
    for name, members in groups.items():
        scored = [c for c in members if c in per_class]
        if scored:
            values = np.mean(np.asarray([per_class[c] for c in scored], dtype=np.float64), axis=0)
            map_values: list[float] | None = [float(v) for v in values]
            average: float | None = float(np.mean(values))
        else:
            map_values, average = None, None
        out[name] = {"classes": list(members), "classes_with_ground_truth": scored,
                     "thresholds": list(thresholds), "mAP": map_values, "average_mAP": average}
    return out
