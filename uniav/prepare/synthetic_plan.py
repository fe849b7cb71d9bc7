"""The synthetic benchmark's plan: which video gets which instances, drawn from the seed.

Pure computation, no pixels, no samples, no files: :mod:`uniav.prepare.synthetic` renders and
writes what is planned here (docs/synthetic.md describes the benchmark).  It holds:

* :class:`TaskRecipe` and :data:`RECIPES` - per task the classes (each tied to a concept of
  :mod:`uniav.prepare.synthetic_primitives`) with their instance lengths, the video durations,
  the number of events and distractors, the modalities of an event, whether instances may
  overlap, and the amount of background clutter; :func:`task_classes` and :func:`task_recipe`
  look them up;
* :class:`Instance` and :class:`VideoPlan` - one video: its id, subset, length in frames and its
  instances (integer frame spans at the media frame rate, so both modalities align; distractors
  are instances with ``annotated=False``) plus the seed its rendering draws from;
* :func:`plan_video` (one video) and :func:`plan_task` (every video of a task).

**Seeds.**  Video ``index`` of split ``split`` (0 train, 1 validation, 2 test) has the seed
sequence ``(datasets.synthetic.seed, crc32(task), split, index)``; its plan draws from
``[*seeds, 0]`` and its rendering from ``[*seeds, 1]`` (:attr:`VideoPlan.render_seed`), so a
video is the same whether it is generated alone or with the others.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field

import numpy as np

from uniav.config import Config, DatasetTaskConfig, MediaConfig
from uniav.errors import ConfigError

LOG = logging.getLogger(__name__)

# =============================================================================================
# Recipes: what the videos of each task look like
# =============================================================================================


@dataclass(frozen=True)
class TaskRecipe:
    """What the videos of one synthetic task look like.

    Attributes:
        classes: (class name, concept name, (min, max) instance seconds), in class-list order.
        duration: (min, max) video length in seconds.
        events: (min, max) annotated instances per video.
        modalities: modalities in which an annotated instance is rendered.
        overlap: whether instances may overlap in time (different classes only, at most two).
        distractors: (min, max) one-modality instances that are not annotated.
        clutter_blobs: (min, max) desaturated moving blobs in the background video.
        clutter_sounds: rate (per second) of random non-class tone blips in the background audio.
    """

    classes: tuple[tuple[str, str, tuple[float, float]], ...]
    duration: tuple[float, float]
    events: tuple[int, int]
    modalities: tuple[str, ...]
    overlap: bool = False
    distractors: tuple[int, int] = (0, 0)
    clutter_blobs: tuple[int, int] = (0, 2)
    clutter_sounds: float = 0.15


#: The three tasks; class names are real classes of ActivityNet 1.3, DESED and UnAV-100.
RECIPES: dict[str, TaskRecipe] = {
    "tal": TaskRecipe(
        classes=(("Walking the dog", "dog", (3, 20)), ("Playing violin", "violin", (3, 20)),
                 ("Vacuuming floor", "vacuum", (3, 20)), ("Brushing teeth", "brushing", (3, 20)),
                 ("Washing dishes", "dishes", (3, 20)), ("Playing drums", "drums", (3, 20)),
                 ("Chopping wood", "chopping", (3, 20)), ("Mowing the lawn", "mowing", (3, 20))),
        duration=(30, 60), events=(1, 4), modalities=("visual",), clutter_blobs=(0, 2),
        clutter_sounds=0.4),
    "sed": TaskRecipe(
        classes=(("Alarm_bell_ringing", "alarm", (1.0, 4.0)), ("Blender", "blender", (2.0, 6.0)),
                 ("Cat", "cat", (0.8, 2.5)), ("Dishes", "dishes", (0.6, 2.5)),
                 ("Dog", "dog", (0.6, 2.5)),
                 ("Electric_shaver_toothbrush", "brushing", (2.0, 6.0)),
                 ("Frying", "frying", (3.0, 9.0)), ("Running_water", "water", (2.0, 8.0)),
                 ("Speech", "speech", (1.0, 4.0)), ("Vacuum_cleaner", "vacuum", (3.0, 9.0))),
        duration=(10, 10), events=(1, 4), modalities=("audio",), overlap=True,
        clutter_blobs=(1, 4), clutter_sounds=0.1),
    "avel": TaskRecipe(
        classes=(("dog barking", "dog", (1.5, 6.0)), ("playing violin", "violin", (1.5, 6.0)),
                 ("vacuum cleaner cleaning floors", "vacuum", (1.5, 6.0)),
                 ("cat meowing", "cat", (1.5, 6.0)), ("man speaking", "speech", (1.5, 6.0)),
                 ("playing drum kit", "drums", (1.5, 6.0)),
                 ("telephone bell ringing", "alarm", (1.5, 6.0)),
                 ("water burbling", "water", (1.5, 6.0))),
        duration=(12, 25), events=(1, 3), modalities=("visual", "audio"), distractors=(1, 2),
        clutter_blobs=(0, 2), clutter_sounds=0.15),
}


def task_classes(task: str) -> list[str]:
    """The class list of a synthetic task.

    Args:
        task: ``tal``, ``sed`` or ``avel``.

    Returns:
        Class names in label order (the annotation file's ``classes``).
    """
    return [name for name, _, _ in task_recipe(task).classes]


def task_recipe(task: str) -> TaskRecipe:
    """The recipe of a synthetic task.

    Args:
        task: ``tal``, ``sed`` or ``avel``.

    Returns:
        Its :class:`TaskRecipe`.

    Raises:
        ConfigError: the generator knows no such task.
    """
    if task not in RECIPES:
        raise ConfigError(f"datasets.synthetic.tasks.{task}: the synthetic generator knows no "
                          f"task {task!r} (known: {', '.join(RECIPES)})")
    return RECIPES[task]


def default_held_out(recipes: dict[str, TaskRecipe] | None = None) -> dict[str, dict[str, str]]:
    """The synthetic benchmark's default held-out classes of an open-set experiment.

    Per task two classes: one whose concept stays seen through another task (``seen_concept``:
    another task trains a class of the same concept - transfer across tasks can help) and one
    whose concept no task sees (``novel_concept``: every class of that concept, in every task,
    is held out).  Deterministic, from the recipes alone:

    1. novel concepts: tasks with the fewest concepts of their own go first (a task whose every
       concept is shared must hold a shared concept out of every task that has it); each task
       without a novel class yet takes the first of its concepts, in class order - its own
       concepts first, then those shared with the fewest tasks - that no other task has already
       chosen a novel class for; every task with that concept holds its class of it out;
    2. seen concepts: in task order, each task takes its first class (class order) whose concept
       is not novel, is also a class of another task, and is not another task's seen-concept
       pick (so each such concept keeps a trained class in some other task).

    Args:
        recipes: the task recipes (default :data:`RECIPES`).

    Returns:
        ``{task: {"seen_concept": class, "novel_concept": class}}``.

    Raises:
        ConfigError: the recipes admit no such choice.
    """
    recipes = recipes if recipes is not None else RECIPES
    concept_of = {task: {name: concept for name, concept, _ in recipe.classes}
                  for task, recipe in recipes.items()}
    class_of = {task: {concept: name for name, concept in names.items()}
                for task, names in concept_of.items()}
    holders: dict[str, list[str]] = {}
    for task, names in concept_of.items():
        for concept in names.values():
            holders.setdefault(concept, []).append(task)
    order = list(recipes)

    def own(task: str) -> int:
        return sum(len(holders[c]) == 1 for c in concept_of[task].values())

    novel: dict[str, str] = {}
    novel_concepts: set[str] = set()
    for task in sorted(order, key=lambda t: (own(t), order.index(t))):
        if task in novel:
            continue
        candidates = sorted(concept_of[task].values(), key=lambda c: len(holders[c]))
        for concept in candidates:
            if all(other not in novel for other in holders[concept] if other != task):
                for other in holders[concept]:
                    novel[other] = class_of[other][concept]
                novel_concepts.add(concept)
                break
        else:
            raise ConfigError(f"task {task!r}: no concept left to hold out of every task")
    seen: dict[str, str] = {}
    picked: set[str] = set()
    for task in order:
        for name, concept in concept_of[task].items():
            if concept in novel_concepts or concept in picked or len(holders[concept]) < 2:
                continue
            seen[task] = name
            picked.add(concept)
            break
        else:
            raise ConfigError(f"task {task!r}: no class whose concept another task keeps seen")
    return {task: {"seen_concept": seen[task], "novel_concept": novel[task]} for task in order}


def default_held_out_classes(recipes: dict[str, TaskRecipe] | None = None
                             ) -> dict[str, list[str]]:
    """:func:`default_held_out` as ``experiments.<name>.held_out_classes``: per task its two
    held-out classes in class-list order."""
    recipes = recipes if recipes is not None else RECIPES
    chosen = default_held_out(recipes)
    return {task: [name for name, _, _ in recipes[task].classes
                   if name in chosen[task].values()] for task in recipes}


# =============================================================================================
# Planning: which instances a video has, where (integer frames, so both modalities align)
# =============================================================================================


@dataclass(frozen=True)
class Instance:
    """One rendered instance: frames [start, end) at the media frame rate."""

    label: str
    concept: str
    start: int
    end: int
    modalities: tuple[str, ...]
    annotated: bool


@dataclass(frozen=True)
class VideoPlan:
    """Everything needed to render one video and to annotate it."""

    video_id: str
    subset: str
    num_frames: int
    instances: tuple[Instance, ...]
    render_seed: tuple[int, ...] = field(repr=False)


def _disjoint_spans(lengths: list[int], total: int, rng) -> list[tuple[int, int]]:
    """Place spans of the given frame lengths without overlap, random gaps, inside [0, total)."""
    lengths = list(lengths)
    if sum(lengths) > 0.85 * total:  # too long together: shrink proportionally
        factor = 0.85 * total / sum(lengths)
        lengths = [max(8, int(length * factor)) for length in lengths]
    slack = total - sum(lengths)
    gaps = np.floor(rng.dirichlet(np.ones(len(lengths) + 1)) * slack).astype(int)
    spans, position = [], 0
    for length, gap in zip(lengths, gaps):
        position += int(gap)
        spans.append((position, position + length))
        position += length
    return spans


def _overlapping_spans(lengths: list[int], classes: list[str], total: int,
                       rng) -> list[tuple[int, int]] | None:
    """Random placement allowing overlap of different classes, at most two at a time."""
    spans: list[tuple[int, int]] = []
    for length, label in zip(lengths, classes):
        length = min(length, total)
        for _ in range(50):
            start = int(rng.integers(0, total - length + 1))
            end = start + length
            clashes = [j for j, (s, e) in enumerate(spans) if s < end and start < e]
            same_class = any(classes[j] == label for j in clashes)
            cover = np.zeros(total, dtype=int)
            for s, e in spans + [(start, end)]:
                cover[s:e] += 1
            if not same_class and cover.max() <= 2:
                spans.append((start, end))
                break
        else:
            return None
    return spans


def plan_video(task: str, video_id: str, subset: str, seeds: tuple[int, ...],
               media: MediaConfig) -> VideoPlan:
    """Draw the duration and the instances of one video.

    Args:
        task: the synthetic task.
        video_id: the id to give the video.
        subset: its annotation subset name.
        seeds: the per-video seed sequence (see module docs).
        media: frame rate etc. of the media.

    Returns:
        The :class:`VideoPlan`.
    """
    recipe = task_recipe(task)
    rng = np.random.default_rng([*seeds, 0])
    fps = media.fps
    low, high = recipe.duration
    num_frames = int(round(rng.uniform(low, high) * fps))
    count = int(rng.integers(recipe.events[0], recipe.events[1] + 1))
    chosen = [recipe.classes[i] for i in rng.integers(0, len(recipe.classes), size=count)]
    entries = [(name, concept, int(round(rng.uniform(*seconds) * fps)), recipe.modalities, True)
               for name, concept, seconds in chosen]
    n_distract = int(rng.integers(recipe.distractors[0], recipe.distractors[1] + 1))
    for i in rng.integers(0, len(recipe.classes), size=n_distract):
        name, concept, seconds = recipe.classes[i]
        modality = ("visual",) if rng.random() < 0.5 else ("audio",)
        entries.append((name, concept, int(round(rng.uniform(*seconds) * fps)), modality, False))
    order = rng.permutation(len(entries))
    entries = [entries[i] for i in order]
    lengths = [max(8, length) for _, _, length, _, _ in entries]
    spans = None
    if recipe.overlap:
        spans = _overlapping_spans(lengths, [e[0] for e in entries], num_frames, rng)
    if spans is None:
        spans = _disjoint_spans(lengths, num_frames, rng)
    instances = tuple(Instance(label=name, concept=concept, start=start, end=end,
                               modalities=modalities, annotated=annotated)
                      for (name, concept, _, modalities, annotated), (start, end)
                      in sorted(zip(entries, spans), key=lambda pair: pair[1][0]))
    return VideoPlan(video_id=video_id, subset=subset, num_frames=num_frames,
                     instances=instances, render_seed=(*seeds, 1))


def plan_task(config: Config, task: str) -> list[VideoPlan]:
    """Plan every video of a synthetic task.

    Args:
        config: the configuration (sizes, subset names, seed, media).
        task: the task name.

    Returns:
        One :class:`VideoPlan` per video, subsets in train / validation / test order.
    """
    synthetic = config.datasets.synthetic
    data: DatasetTaskConfig = synthetic.tasks[task]
    sizes = synthetic.videos[task]
    if synthetic.media.frame_size % 2 or synthetic.media.frame_size < 8:
        raise ConfigError("datasets.synthetic.media.frame_size: need an even size >= 8")
    task_key = zlib.crc32(task.encode())
    plans = []
    for split_index, split in enumerate(("train", "validation", "test")):
        subset = getattr(data.subsets, split)
        count = getattr(sizes, split)
        if subset is None:
            if count:
                LOG.warning("%s: subsets.validation is null; the %d validation videos are not "
                            "generated", task, count)
            continue
        for index in range(count):
            video_id = f"{task}_{subset}_{index:04d}"
            seeds = (synthetic.seed, task_key, split_index, index)
            plans.append(plan_video(task, video_id, subset, seeds, synthetic.media))
    return plans

