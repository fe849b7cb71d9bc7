"""What the paper replica holds: the three datasets, their sizes and the planted quirks.

Everything here is pure computation from the seed (no files): :func:`plan_dataset` draws the
videos of one dataset - ids, subsets, durations, annotations and the feature lengths - and marks
the videos that carry a planted quirk.  :mod:`uniav.prepare.paper_replica` writes the files.

The time grid is the released one: 16 fps, 16-frame windows, a stride of 8 frames (ActivityNet,
0.5 s) or 4 frames (DESED, UnAV-100, 0.25 s).  A video of ``duration`` seconds has
``nominal_steps = (floor(duration * 16) - 16) // stride + 1`` feature steps, and ``T`` steps end
at ``feature_end_seconds = ((T - 1) * stride + 16) / 16``.

Quirks of the real files, each planted on its own videos of the training and the test subset
(``SizeSpec.quirks``), all other videos being clean (T = nominal_steps for both modalities,
annotations of positive length inside ``[0, duration]``, no repeats):

* ``missing_features``: listed, with annotations, but no feature file at all;
* ``zero_length``: one extra annotation ``[t, t]``;
* ``duplicate``: one annotation repeated exactly (same label and segment);
* ``av_length_mismatch``: audio has ``AV_DIFFERENCES`` steps more or fewer than visual;
* ``features_short``: both modalities 10-25 % shorter than nominal, every annotation inside them;
* ``past_features`` (ActivityNet training only): features shortened likewise and one extra
  annotation starting after their end (but inside the video);
* ``past_duration``: one extra annotation ending 0.1-0.5 s after the duration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from uniav.prepare.replica_classes import ACTIVITYNET_CLASSES, DESED_CLASSES, UNAV100_CLASSES

FPS = 16
WINDOW_FRAMES = 16
FEATURE_DIM = 1536
VISUAL_SUFFIX = "_one_peace_video_finetune"
AUDIO_SUFFIX = "_one_peace_audio"
MODALITY_SUFFIXES = {"visual": VISUAL_SUFFIX, "audio": AUDIO_SUFFIX}

#: The planted quirks (see the module docstring).
QUIRKS = ("missing_features", "zero_length", "duplicate", "av_length_mismatch", "features_short",
          "past_features", "past_duration")
#: Audio-minus-visual step differences of ``av_length_mismatch`` videos, used in turn; the
#: test subset starts half-way so that both subsets together use every difference.
AV_DIFFERENCES = (1, -1, 2, -2, 3, -3)
_YOUTUBE_ALPHABET = np.array(
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"))


@dataclass(frozen=True)
class ArchiveSpec:
    """One feature archive: its file name under downloads/<dataset>/, the modalities it holds
    and the single top-level folder its members sit in ("" for none)."""

    file_name: str
    modalities: tuple[str, ...]
    top_folder: str


@dataclass(frozen=True)
class DatasetSpec:
    """One released dataset: file names, subsets, id style, time grid and event modalities."""

    task: str
    task_code: int
    folder: str
    annotation_file: str
    prompt_file: str
    version: str
    classes: tuple[str, ...]
    subsets: tuple[str, ...]
    train_subset: str
    test_subset: str
    unlabelled_subsets: tuple[str, ...]
    id_style: str                      # "youtube" (11 characters) or "desed" (Y<id>_<s>_<e>)
    id_prefix: str
    feat_stride: int
    event_modalities: tuple[str, ...]  # modalities whose features carry the events
    archives: tuple[ArchiveSpec, ...]
    decimals: int                      # of segment bounds
    entry_keys: tuple[str, ...]        # per-video keys, in the order of the released file
    min_event_seconds: float


DATASETS = (
    DatasetSpec("tal", 1, "activitynet13", "anet1.3_all.json", "anet_prompt.npy", "VERSION 1.3",
                ACTIVITYNET_CLASSES, ("training", "validation", "testing"), "training",
                "validation", ("testing",), "youtube", "v_", 8, ("visual",),
                (ArchiveSpec("av_features.tar.gz", ("visual", "audio"), "av_features"),), 2,
                ("duration", "subset", "resolution", "url", "annotations"), 2.0),
    DatasetSpec("sed", 2, "desed", "dcase_all.json", "dcase_prompt.npy", "desed",
                DESED_CLASSES, ("validation", "public_eval"), "validation", "public_eval", (),
                "desed", "", 4, ("audio",),
                (ArchiveSpec("desed_onepeace_audio_features.tar.gz", ("audio",),
                             "onepeace_finetune_features_025s"),
                 ArchiveSpec("desed_onepeace_visual_features.tar.gz", ("visual",),
                             "onepeace_finetune_features_025s")), 3,
                ("subset", "duration", "annotations"), 0.5),
    DatasetSpec("avel", 3, "unav100", "unav100_all.json", "unav100_prompt.npy", "unav100",
                UNAV100_CLASSES, ("train", "validation", "test"), "train", "test", (),
                "youtube", "", 4, ("visual", "audio"),
                (ArchiveSpec("av_features.tar.gz", ("visual", "audio"), ""),), 5,
                ("duration", "annotations", "subset"), 1.0),
)


@dataclass(frozen=True)
class SizeSpec:
    """Videos per subset, their durations and events, and the quirk videos per subset role.

    ``quirks_included``: the quirk videos are part of ``videos`` (real) or added on top (tiny).
    """

    videos: dict[str, int]
    duration_seconds: tuple[float, float]
    events_per_video: tuple[int, int]
    quirks: dict[str, dict[str, int]]          # "train" / "test" -> quirk -> videos
    quirks_included: bool


def _quirk_counts(missing: int, zero: int, duplicate: int, mismatch: int, short: int,
                  past_features: int, past_duration: int) -> dict[str, int]:
    return dict(zip(QUIRKS, (missing, zero, duplicate, mismatch, short, past_features,
                             past_duration)))


_TINY_QUIRKS = {"train": _quirk_counts(2, 2, 2, 3, 2, 2, 2),
                "test": _quirk_counts(2, 1, 1, 3, 1, 0, 1)}
_REAL_QUIRKS = {"train": _quirk_counts(60, 20, 40, 90, 30, 25, 15),
                "test": _quirk_counts(30, 10, 20, 45, 15, 0, 8)}
# DESED: users of the share report features for 975 of 1,168 validation and 564 of 692
# public_eval clips (docs/datasets.md)
_DESED_REAL_QUIRKS = {"train": {**_REAL_QUIRKS["train"], "missing_features": 193},
                      "test": {**_REAL_QUIRKS["test"], "missing_features": 128}}

SIZES = {
    "tiny": {
        "tal": SizeSpec({"training": 24, "validation": 12, "testing": 4}, (20.0, 60.0), (1, 3),
                        _TINY_QUIRKS, False),
        "sed": SizeSpec({"validation": 24, "public_eval": 12}, (10.0, 10.0), (1, 4),
                        _TINY_QUIRKS, False),
        "avel": SizeSpec({"train": 24, "validation": 8, "test": 12}, (10.0, 40.0), (1, 3),
                         _TINY_QUIRKS, False),
    },
    "real": {
        "tal": SizeSpec({"training": 10024, "validation": 4926, "testing": 5044}, (15.0, 219.0),
                        (1, 2), _REAL_QUIRKS, True),
        "sed": SizeSpec({"validation": 1168, "public_eval": 692}, (10.0, 10.0), (1, 6),
                        _DESED_REAL_QUIRKS, True),
        "avel": SizeSpec({"train": 6474, "validation": 2158, "test": 2158}, (10.0, 60.0), (1, 5),
                         _REAL_QUIRKS, True),
    },
}


@dataclass
class VideoPlan:
    """One listed video: its annotations as written, its feature lengths and its quirk.

    ``steps`` maps modality to T (empty: no feature files); ``details`` holds the quirk's
    numbers (e.g. ``audio_minus_visual_steps``) for replica.json.
    """

    video_id: str
    subset: str
    duration: float
    number: int
    quirk: str | None = None
    annotations: list[tuple[float, float, int]] = field(default_factory=list)
    steps: dict[str, int] = field(default_factory=dict)
    resolution: str = ""
    details: dict = field(default_factory=dict)


def nominal_steps(duration: float, stride: int) -> int:
    """Feature steps the released grid gives a video of ``duration`` seconds (at least 1)."""
    frames = math.floor(duration * FPS + 1e-6)
    return max(1, (frames - WINDOW_FRAMES) // stride + 1)


def feature_end_seconds(steps: int, stride: int) -> float:
    """End in seconds of the last of ``steps`` feature windows."""
    return ((steps - 1) * stride + WINDOW_FRAMES) / FPS


def event_step_range(start: float, end: float, stride: int, steps: int) -> tuple[int, int]:
    """Steps ``[first, last)`` whose window centre lies in ``[start, end]`` (at least the nearest
    one), clipped to ``steps``."""
    half = WINDOW_FRAMES / 2
    first = int(np.ceil((start * FPS - half) / stride))
    last = int(np.floor((end * FPS - half) / stride)) + 1
    if last <= first:
        first = int(round(((start + end) / 2 * FPS - half) / stride))
        last = first + 1
    return max(first, 0), min(last, steps)


def quirk_role(spec: DatasetSpec, subset: str) -> str | None:
    """``"train"`` / ``"test"`` for the subsets that get quirks, else ``None``."""
    return {spec.train_subset: "train", spec.test_subset: "test"}.get(subset)


def _new_id(rng: np.random.Generator, spec: DatasetSpec, taken: set[str]) -> str:
    while True:
        core = "".join(rng.choice(_YOUTUBE_ALPHABET, 11))
        if core[0] in "-_":
            continue
        if spec.id_style == "desed":
            start = 10 * int(rng.integers(0, 30))
            core = f"Y{core}_{start:.3f}_{start + 10:.3f}"
        if core not in taken:
            taken.add(core)
            return core


def _max_events(span: float, spec: DatasetSpec) -> int:
    return max(1, int(span // (1.5 * spec.min_event_seconds)))


def _place_events(rng: np.random.Generator, span: float, labels: list[int],
                  spec: DatasetSpec) -> list[tuple[float, float, int]]:
    """Disjoint events inside ``[0, span]``, one per label, in time order."""
    count = len(labels)
    room = span / count
    lengths = rng.uniform(spec.min_event_seconds, max(spec.min_event_seconds, 0.8 * room), count)
    gaps = rng.dirichlet(np.ones(count + 1)) * (span - lengths.sum())
    events, time = [], 0.0
    for length, gap, label in zip(lengths, gaps, labels):
        start = time + gap
        time = start + length
        events.append((round(start, spec.decimals), min(round(time, spec.decimals), span), label))
    return events


def _plan_videos(rng: np.random.Generator, spec: DatasetSpec, size: SizeSpec) -> list[VideoPlan]:
    taken: set[str] = set()
    videos = []
    for subset in spec.subsets:
        role = quirk_role(spec, subset)
        kinds: list[str | None] = []
        for quirk, count in (size.quirks[role] if role else {}).items():
            if quirk != "past_features" or spec.task == "tal":
                kinds += [quirk] * count
        regular = size.videos[subset] - (len(kinds) if size.quirks_included else 0)
        for quirk in [None] * regular + kinds:
            duration = round(float(rng.uniform(*size.duration_seconds)), 2)
            videos.append(VideoPlan(_new_id(rng, spec, taken), subset, duration, len(videos),
                                    quirk))
    return videos


def _event_labels(rng: np.random.Generator, spec: DatasetSpec, size: SizeSpec,
                  videos: list[VideoPlan]) -> list[list[int]]:
    """Labels per video; every class occurs at least once among the regular videos."""
    classes = len(spec.classes)
    lo, hi = size.events_per_video
    counts = [0 if video.subset in spec.unlabelled_subsets else int(rng.integers(lo, hi + 1))
              for video in videos]
    regular = [i for i, video in enumerate(videos)
               if video.quirk is None and video.subset not in spec.unlabelled_subsets]
    slots = sum(counts[i] for i in regular)
    while slots < classes:  # few videos (tiny): more events per video until every class fits
        grown = [i for i in regular if counts[i] < _max_events(videos[i].duration, spec)]
        if not grown:
            raise ValueError(f"{spec.folder}: too few regular videos to use all {classes} classes")
        for i in grown[:classes - slots]:
            counts[i] += 1
        slots = sum(counts[i] for i in regular)
    pool = np.concatenate([rng.permutation(classes), rng.integers(0, classes, slots - classes)])
    rng.shuffle(pool)
    labels, used, regular_set = [], 0, set(regular)
    for i, video in enumerate(videos):
        if i in regular_set:
            labels.append([int(x) for x in pool[used:used + counts[i]]])
            used += counts[i]
        else:
            count = counts[i] if video.quirk is None else max(1, counts[i])
            labels.append([int(x) for x in rng.integers(0, classes, count)])
    return labels


def _shortened_steps(rng: np.random.Generator, steps: int) -> tuple[int, float]:
    """Steps 10-25 % fewer than ``steps``, and the fraction removed."""
    removed = int(round(rng.uniform(0.10, 0.25) * steps))
    removed = min(max(removed, math.ceil(0.10 * steps)), math.floor(0.25 * steps))
    return steps - removed, removed / steps


def _apply_quirk(rng: np.random.Generator, spec: DatasetSpec, video: VideoPlan,
                 labels: list[int], mismatch_index: int) -> None:
    """Fill in the annotations and feature lengths of one video, planting its quirk."""
    steps = nominal_steps(video.duration, spec.feat_stride)
    span, quirk, dec, classes = video.duration, video.quirk, spec.decimals, len(spec.classes)
    video.steps = {"visual": steps, "audio": steps}
    if quirk == "missing_features":
        video.steps = {}
    elif quirk in ("features_short", "past_features"):
        short, fraction = _shortened_steps(rng, steps)
        video.steps = {"visual": short, "audio": short}
        span = feature_end_seconds(short, spec.feat_stride)
        video.details = {"nominal_steps": steps, "steps": short,
                         "fraction_missing": round(fraction, 4), "feature_end_seconds": span}
    elif quirk == "av_length_mismatch":
        difference = AV_DIFFERENCES[mismatch_index % len(AV_DIFFERENCES)]
        video.steps["audio"] = steps + difference
        video.details = {"audio_minus_visual_steps": difference}
    elif quirk == "past_duration":
        span = 0.8 * video.duration
    labels = labels[:_max_events(span, spec)]
    annotations = _place_events(rng, span, labels, spec) if labels else []
    if quirk == "zero_length":
        at = round(float(rng.uniform(0.2, 0.8)) * span, dec)
        annotations.append((at, at, int(rng.integers(0, classes))))
    elif quirk == "duplicate":
        annotations.append(annotations[int(rng.integers(0, len(annotations)))])
    elif quirk == "past_features":
        start = round(float(rng.uniform(span + 0.1, video.duration - 0.6)), dec)
        end = min(round(float(rng.uniform(start + 0.5, video.duration)), dec), video.duration)
        annotations.append((start, end, int(rng.integers(0, classes))))
    elif quirk == "past_duration":
        past = round(float(rng.uniform(0.11, 0.49)), 2)
        start = round(float(rng.uniform(0.82, 0.9)) * video.duration, dec)
        end = round(video.duration + past, dec)
        annotations.append((start, end, int(rng.integers(0, classes))))
        video.details = {"seconds_past_duration": past}
    video.annotations = sorted(annotations, key=lambda a: (a[0], a[1]))


def plan_dataset(spec: DatasetSpec, size: SizeSpec, seed: int) -> list[VideoPlan]:
    """Draw every video of one dataset, in the order they are listed in its annotation file.

    Args:
        spec: the dataset.
        size: videos per subset, durations, events and quirks.
        seed: the replica's seed (with ``spec.task_code``, the stream of every draw).

    Returns:
        The videos, each with annotations, feature lengths and its quirk (or ``None``).
    """
    rng = np.random.default_rng([seed, spec.task_code, 0])
    videos = _plan_videos(rng, spec, size)
    labels = _event_labels(rng, spec, size, videos)
    mismatches = {subset: 0 for subset in spec.subsets}
    for video, video_labels in zip(videos, labels):
        role = quirk_role(spec, video.subset)
        offset = len(AV_DIFFERENCES) // 2 if role == "test" else 0
        _apply_quirk(rng, spec, video, video_labels, offset + mismatches[video.subset])
        if video.quirk == "av_length_mismatch":
            mismatches[video.subset] += 1
        if "resolution" in spec.entry_keys:
            video.resolution = str(rng.choice(["1280x720", "640x360", "480x360", "1920x1080"]))
    return [videos[i] for i in rng.permutation(len(videos))]
