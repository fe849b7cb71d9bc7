"""Linear probe of extracted features: are the synthetic events learnable, and does AVEL need
both modalities?

Every feature step gets a label from its centre time ``t_x = (x * stride + window / 2) / fps``:
the class of the annotated instance covering ``t_x``, or *background* when none does.  Steps
covered by two instances of different classes (overlapping sound events) are left out.  A
multinomial logistic regression (scikit-learn, standardised features, C = 1) is trained on the
steps of the train and validation subsets and scored on the test subset, with three inputs:
audio + visual, audio only, visual only.  Reported: accuracy, balanced accuracy (mean recall
over the classes present; chance = 1 / (classes + 1)), macro F1 and, where the task has
distractors (avel), ``distractor_rejection`` (distractor steps called background) and
``hard_accuracy`` (accuracy on the steps that are events or distractors - the steps where one
modality alone cannot decide).

Run ``uniav probe --figure docs/figures/probe_accuracy.png`` (or ``python -m uniav.prepare.probe``)
after ``uniav extract``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from uniav.config import Config
from uniav.data.annotations import VideoAnnotation, load_annotations, load_annotations_under
from uniav.data.features import FeatureStore, layout_of
from uniav.fileio import load_json_file
from uniav.grid import TimeGrid

#: Probe inputs: name -> which modalities are concatenated.
INPUTS = {"A+V": ("audio", "visual"), "A": ("audio",), "V": ("visual",)}
AMBIGUOUS = -1


def step_labels(video: VideoAnnotation, classes: list[str], steps: int, grid: TimeGrid,
                segments: np.ndarray | None = None) -> np.ndarray:
    """Label of every step: class index, ``len(classes)`` for background, -1 when ambiguous.

    Args:
        video: the video's annotation.
        classes: the class list (label order).
        steps: number of feature steps.
        grid: the task's feature grid.
        segments: (M, 2) seconds to use instead of the annotation's (labels then ignored: any
            covered step gets label 0) - used to mark distractor steps.

    Returns:
        (T,) int64.
    """
    centres = grid.step_centres(steps)  # (T,)
    background = len(classes)
    labels = np.full(steps, background, dtype=np.int64)
    if segments is None:
        segments = video.segments
        ids = video.label_ids(classes)
    else:
        ids = np.zeros(len(segments), dtype=np.int64)
    for (start, end), label in zip(segments, ids):
        inside = (centres >= start) & (centres < end)
        clash = inside & (labels != background) & (labels != label)
        labels[inside & (labels == background)] = label
        labels[clash] = AMBIGUOUS
    return labels


def probe_arrays(config: Config, task: str) -> dict[str, dict[str, np.ndarray]]:
    """Stacked per-step features and labels of a task's extracted videos.

    Args:
        config: the configuration (the task's annotation file and feature store).
        task: the task name.

    Returns:
        Per split (``train`` = train + validation subsets, ``test``):
        ``{split: {"visual": (n, Cv), "audio": (n, Ca), "labels": (n,), "distractor": (n,) bool}}``.
    """
    spec = config.task_spec(task)
    data = spec.data
    database = load_annotations(data.annotations)
    raw = load_json_file(data.annotations)  # load_annotations above validated it
    store = FeatureStore(data.features, layout_of(data), data.length_tolerance)
    subsets = {"train": {data.subsets.train} | ({data.subsets.validation}
                                                 if data.subsets.validation else set()),
               "test": {data.subsets.test}}
    out: dict[str, dict[str, list[np.ndarray]]] = {s: {"visual": [], "audio": [], "labels": [],
                                                       "distractor": []} for s in subsets}
    for video_id, video in database.videos.items():
        split = next((s for s, names in subsets.items() if video.subset in names), None)
        if split is None:
            continue
        visual, audio = store.read(video_id)
        steps = len(visual)
        grid = TimeGrid.of(data)
        labels = step_labels(video, database.classes, steps, grid)
        distractors = [d["segment"] for d in raw["database"][video_id].get("distractors", [])]
        distractor = step_labels(video, database.classes, steps, grid,
                                 segments=np.asarray(distractors, dtype=np.float64).reshape(-1, 2))
        parts = out[split]
        parts["visual"].append(visual)
        parts["audio"].append(audio)
        parts["labels"].append(labels)
        parts["distractor"].append((distractor == 0) & (labels == len(database.classes)))
    return {split: {key: np.concatenate(values) for key, values in parts.items()}
            for split, parts in out.items()}


def probe_task(config: Config, task: str, *, seed: int = 0) -> dict[str, Any]:
    """Fit and score the three probes of one task (see module docs).

    Args:
        config: the configuration.
        task: the task name.
        seed: random state of the regression.

    Returns:
        ``{"classes": K, "chance_balanced_accuracy": 1/(K+1), "train_steps", "test_steps",
        "A+V"|"A"|"V": {"accuracy", "balanced_accuracy", "macro_f1"[, "distractor_rejection",
        "hard_accuracy"]}}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    arrays = probe_arrays(config, task)
    train, test = arrays["train"], arrays["test"]
    keep_train, keep_test = train["labels"] != AMBIGUOUS, test["labels"] != AMBIGUOUS
    num_classes = len(load_annotations_under(config.task_spec(task).data.annotations,
                                             config.data).classes)
    result: dict[str, Any] = {"classes": num_classes,
                              "chance_balanced_accuracy": 1.0 / (num_classes + 1),
                              "train_steps": int(keep_train.sum()),
                              "test_steps": int(keep_test.sum())}
    for name, modalities in INPUTS.items():
        x_train = np.concatenate([train[m] for m in modalities], axis=1)[keep_train]
        x_test = np.concatenate([test[m] for m in modalities], axis=1)[keep_test]
        model = make_pipeline(StandardScaler(),
                              LogisticRegression(C=1.0, max_iter=1000, random_state=seed))
        # one BLAS thread: these matrices are small, and threads that spin on a busy machine
        # made a fit 100x slower (4 s instead of 0.03 s)
        with threadpool_limits(limits=1):
            model.fit(x_train, train["labels"][keep_train])
            predicted = model.predict(x_test)
        truth = test["labels"][keep_test]
        with warnings.catch_warnings():  # a class missing from a small test split
            warnings.simplefilter("ignore", UserWarning)
            scores = {"accuracy": float(accuracy_score(truth, predicted)),
                      "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)),
                      "macro_f1": float(f1_score(truth, predicted, average="macro"))}
        distractor = test["distractor"][keep_test]
        if distractor.any():
            hard = distractor | (truth != num_classes)
            scores["distractor_rejection"] = float((predicted[distractor] == num_classes).mean())
            scores["hard_accuracy"] = float((predicted[hard] == truth[hard]).mean())
        result[name] = scores
    return result


def run_probes(config: Config, tasks: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run :func:`probe_task` for several tasks.

    Args:
        config: the configuration.
        tasks: task names (default: every task).

    Returns:
        ``{task: probe_task(...)}``.
    """
    return {task: probe_task(config, task) for task in (tasks or config.task_names)}


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Format probe results as a Markdown table.

    Args:
        results: :func:`run_probes` output.

    Returns:
        A table of accuracy / balanced accuracy per task and input, with the chance level.
    """
    lines = ["| task | classes | test steps | A+V acc / bal. acc | A only | V only "
             "| chance (bal.) |", "|---|---|---|---|---|---|---|"]
    for task, result in results.items():
        cells = [f"{result[name]['accuracy']:.3f} / {result[name]['balanced_accuracy']:.3f}"
                 for name in INPUTS]
        lines.append(f"| {task} | {result['classes']} | {result['test_steps']} | "
                     f"{' | '.join(cells)} | {result['chance_balanced_accuracy']:.3f} |")
    return "\n".join(lines)


def plot_probe(results: dict[str, dict[str, Any]], path: str | Path) -> None:
    """Plot balanced accuracy per task and input (chance dashed) into a small PNG, atomically.

    Args:
        results: :func:`run_probes` output.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from uniav.fileio import atomic_path

    tasks = list(results)
    width = 0.26
    figure, axes = plt.subplots(figsize=(6.0, 3.0), dpi=100)
    colours = {"A+V": "#4c72b0", "A": "#dd8452", "V": "#55a868"}
    for offset, name in enumerate(INPUTS):
        values = [results[t][name]["balanced_accuracy"] for t in tasks]
        positions = np.arange(len(tasks)) + (offset - 1) * width
        axes.bar(positions, values, width, label={"A+V": "audio + visual", "A": "audio only",
                                                   "V": "visual only"}[name],
                 color=colours[name])
    for i, task in enumerate(tasks):
        chance = results[task]["chance_balanced_accuracy"]
        axes.hlines(chance, i - 1.5 * width, i + 1.5 * width, colors="black",
                    linestyles="dashed", linewidth=1)
    axes.set_xticks(np.arange(len(tasks)), tasks)
    axes.set_ylim(0, 1.2)
    axes.set_yticks(np.linspace(0, 1, 6))
    axes.set_ylabel("balanced accuracy")
    axes.set_title("Linear probe of per-step features (dashed: chance)", fontsize=10)
    axes.legend(fontsize=8, loc="upper center", ncol=3, frameon=False)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
