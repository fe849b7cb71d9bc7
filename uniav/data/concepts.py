"""Classes of different tasks that name the same concept, and the cross-task pairs they make.

Each task's dataset record may map its classes to concepts (``datasets.<benchmark>.tasks.<task>
.concepts``: class name -> concept name).  The synthetic benchmark's concepts are those its
generator renders (``uniav.prepare.synthetic_plan.RECIPES``): SED "Cat" and AVEL "cat meowing"
are the concept ``cat``; TAL "Walking the dog", SED "Dog" and AVEL "dog barking" the concept
``dog``.

A :class:`CrossTaskPair` is an ordered pair of tasks with shared concepts: the test videos of
``task`` scored with the names ``names_from`` gives those concepts (``uniav cross-task``,
:mod:`uniav.engine.cross_task`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from uniav.errors import ConfigError

if TYPE_CHECKING:
    from uniav.config import Config


@dataclass(frozen=True)
class CrossTaskPair:
    """The test videos of ``task``, prompted with the names of ``names_from``.

    Attributes:
        task: the task whose test split is scored (its model head runs).
        names_from: the task whose class names are the prompts.
        classes: ``task``'s class (the ground-truth label) -> ``names_from``'s class of the same
            concept, in ``task``'s concept order.
    """

    task: str
    names_from: str
    classes: dict[str, str]

    @property
    def key(self) -> str:
        """``<task>.<names_from>`` (the pair's name in metrics files and table columns)."""
        return f"{self.task}.{self.names_from}"


def task_concepts(config: Config, task: str) -> dict[str, str]:
    """Class name -> concept of one task of the selected benchmark (empty: none declared).

    Raises:
        ConfigError: two classes of the task name the same concept (which one would prompt for
            it is ambiguous).
    """
    concepts = dict(config.dataset_tasks()[task].concepts)
    seen: dict[str, str] = {}
    for name, concept in concepts.items():
        if concept in seen:
            raise ConfigError(f"datasets.{config.benchmark}.tasks.{task}.concepts: classes "
                              f"{seen[concept]!r} and {name!r} both name the concept "
                              f"{concept!r} (one class per concept and task)")
        seen[concept] = name
    return concepts


def cross_task_pairs(config: Config, tasks: list[str] | None = None) -> list[CrossTaskPair]:
    """Every ordered pair of tasks sharing at least one concept, in ``tasks:`` order.

    Args:
        config: the configuration (the selected benchmark's concepts).
        tasks: only pairs whose scored ``task`` is one of these (default: every task).

    Returns:
        The pairs; empty when no two tasks share a concept.
    """
    concepts = {task: task_concepts(config, task) for task in config.tasks
                if task in config.dataset_tasks()}
    pairs = []
    for task in config.tasks:
        if task not in concepts or (tasks is not None and task not in tasks):
            continue
        for other in config.tasks:
            if other == task or other not in concepts:
                continue
            name_of = {concept: name for name, concept in concepts[other].items()}
            shared = {name: name_of[concept] for name, concept in concepts[task].items()
                      if concept in name_of}
            if shared:
                pairs.append(CrossTaskPair(task, other, shared))
    return pairs
