"""A deliberately plain, loop-by-loop ActivityNet AP, written from the protocol description
(docs/evaluation.md), to cross-check the vectorised evaluator on random data.

Tie rules as documented by the evaluator (score ties: input order; tIoU ties: first listed
instance) - random float inputs have no ties anyway.
"""

from __future__ import annotations

from typing import Sequence


def tiou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def average_precision(gt: list[tuple[str, float, float]],
                      predictions: list[tuple[str, float, float, float]],
                      threshold: float) -> float:
    """AP of one class: ``gt`` as (video, t0, t1), ``predictions`` as (video, t0, t1, score)."""
    ranked = sorted(range(len(predictions)), key=lambda i: (-predictions[i][3], i))
    locked = [False] * len(gt)
    flags = []
    for i in ranked:
        video, start, end, _ = predictions[i]
        candidates = sorted((j for j, g in enumerate(gt) if g[0] == video),
                            key=lambda j: (-tiou((start, end), gt[j][1:]), j))
        hit = False
        for j in candidates:
            if tiou((start, end), gt[j][1:]) < threshold:
                break
            if locked[j]:
                continue
            locked[j] = True
            hit = True
            break
        flags.append(hit)
    precisions, recalls, true_positives = [], [], 0
    for rank, hit in enumerate(flags, start=1):
        true_positives += hit
        precisions.append(true_positives / rank)
        recalls.append(true_positives / len(gt))
    # all-point interpolation (VOC 2011)
    precisions = [0.0] + precisions + [0.0]
    recalls = [0.0] + recalls + [1.0]
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = max(precisions[i], precisions[i + 1])
    return sum((recalls[i] - recalls[i - 1]) * precisions[i]
               for i in range(1, len(recalls)) if recalls[i] != recalls[i - 1])
