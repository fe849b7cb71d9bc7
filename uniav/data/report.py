"""The data report: what the loader did with each split's videos and annotations, counted.

Real datasets have quirks (docs/protocol.md): videos listed without feature files, zero-length or
duplicate annotations, audio and visual streams of slightly different lengths, features shorter
than the stated duration, annotations past the end of the video or of its features.  Whatever
the data policy (``data:`` in ``params.yaml``) does with them - skip, drop, keep, clamp, cut - is
counted here, never silent: the report goes into ``training.json``, the exported weights and the
metrics JSON (``data_report``), and its summary into the log.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

LOGGER = logging.getLogger(__name__)

#: Video ids quoted per case (the counts are complete).
EXAMPLES_KEPT = 5

#: What each counter means (also the documentation of the report's keys).
MEANING = {
    "videos_skipped.missing_features": "listed in the annotation file without feature files",
    "annotations_dropped.duplicate": "repeat an earlier annotation (same label, bounds within 1 ms)",
    "annotations_dropped.zero_length": "zero-length segments (no step lies inside them)",
    "annotations_dropped.past_features": "training instances (mostly) past the end of the features",
    "annotations_dropped.held_out": "instances of classes the experiment holds out of training "
                                    "and validation (experiments.<name>.held_out_classes)",
    "annotations_kept.zero_length": "zero-length ground truth kept (no prediction can match it)",
    "annotations_kept.past_duration": "segments sticking out of [0, duration], kept as they are",
    "annotations_clamped.past_duration": "segments clamped into [0, duration]",
    "annotations_clamped.past_features": "training instances clamped to the end of the features",
    "videos_adjusted.av_length_mismatch": "audio and visual lengths differ: both cut to the shorter",
    "videos_adjusted.features_short": "features shorter than the duration implies (kept)",
    "videos_adjusted.features_long": "features longer than the duration implies (kept)",
}


@dataclass
class DataReport:
    """Counts of one task's split (see :data:`MEANING` for the keys).

    Attributes:
        task, split: the task and ``train`` / ``validation`` / ``test``.
        subset: the annotation subset the split reads.
        videos_listed: videos of the subset (before any is skipped).
        annotations_listed: their annotations.
    """

    task: str
    split: str
    subset: str
    videos_listed: int = 0
    annotations_listed: int = 0
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, case: str, count: int = 1, video: str | None = None) -> None:
        """Count ``count`` occurrences of ``case`` (a key of :data:`MEANING`) in ``video``."""
        if case not in MEANING:
            raise KeyError(f"unknown data-report case {case!r}")
        if count <= 0:
            return
        self.counts[case] += count
        if video is not None:
            shown = self.examples.setdefault(case, [])
            if len(shown) < EXAMPLES_KEPT and video not in shown:
                shown.append(video)

    @property
    def videos_used(self) -> int:
        return self.videos_listed - self.counts["videos_skipped.missing_features"]

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``{"subset", "videos_listed", "videos_used", "annotations_listed",
        "videos_skipped": {...}, "annotations_dropped": {...}, ..., "examples": {...}}``."""
        out: dict[str, Any] = {"subset": self.subset, "videos_listed": self.videos_listed,
                               "videos_used": self.videos_used,
                               "annotations_listed": self.annotations_listed}
        for group in ("videos_skipped", "annotations_dropped", "annotations_kept",
                      "annotations_clamped", "videos_adjusted"):
            out[group] = {case.split(".", 1)[1]: int(self.counts[case]) for case in MEANING
                          if case.startswith(group + ".") and self.counts[case]}
        out["examples"] = {case: list(videos) for case, videos in self.examples.items()}
        return out

    def summary(self) -> str:
        """One log line: ``tal/train (training): 37 of 39 videos; skipped: 2 missing_features;
        dropped: 2 duplicate, ...``."""
        parts = [f"{self.task}/{self.split} ({self.subset}): {self.videos_used} of "
                 f"{self.videos_listed} videos, {self.annotations_listed} annotations"]
        data = self.to_dict()
        for group in ("videos_skipped", "annotations_dropped", "annotations_kept",
                      "annotations_clamped", "videos_adjusted"):
            if data[group]:
                cases = ", ".join(f"{count} {case}" for case, count in data[group].items())
                parts.append(f"{group.replace('_', ' ')}: {cases}")
        return "; ".join(parts)

    def log(self) -> None:
        """Write :meth:`summary` to the log (a warning when anything was skipped or dropped)."""
        level = logging.WARNING if any(
            key.startswith(("videos_skipped", "annotations_dropped")) and value
            for key, value in self.counts.items()) else logging.INFO
        LOGGER.log(level, "data: %s", self.summary())
