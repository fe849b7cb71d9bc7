"""The one dataset class of every task and benchmark, and batching (DESIGN sections 4 and 6.9).

:class:`LocalizationDataset` is driven by a task spec (``config.task_spec(name)``): the annotation
file, the feature store and the time grid come from ``spec.data``, the training-time sampling
(``trunc_thresh``, ``crop_ratio``) from ``spec.task``.  There are no per-dataset subclasses.

Splits
    ``train``, ``validation`` and ``test`` map to the annotation ``subset`` names of
    ``spec.data.subsets``.  When ``subsets.validation`` is ``null`` the validation split is a
    seeded hold-out of the training subset (:func:`holdout_split`) and the train split excludes
    exactly those videos.  The test subset is never used for validation.

Checks at construction (all :class:`~uniav.errors.InputError` naming file, video and field)
    every video of the split has features (one error listing every missing id); the shapes of
    all feature matrices, read from the ``.npy`` headers / HDF5 dataset shapes without loading the
    data: rank 2, one ``(visual_dim, audio_dim)`` for the whole split (and ``expected_dims``),
    ``T > 0``, audio/visual lengths within the store's tolerance, and ``T`` against the duration
    (:func:`expected_steps`; a warning beyond :data:`LENGTH_WARN_STEPS` steps, an error beyond
    :func:`length_limit` steps).  With ``preload=True`` every matrix is then read and fully
    validated (NaN/Inf, dtype) by :class:`~uniav.data.features.FeatureStore`; otherwise that
    happens when an item is read.

Time grid
    Feature step ``x`` covers frames ``[x·stride, x·stride + window)``; seconds ``t`` map to
    ``x = (t·fps − 0.5·window) / stride``.  When ``spec.data.resize_length`` is set (ActivityNet)
    both modalities are linearly interpolated to that many steps and the effective
    ``stride = window = ((T − 1)·stride + window) / L`` (floats), so the formula still holds.

Training-time sampling (``get(i, rng)``), as in the released implementation
    1. instances starting at or after the end of the features (``T + offset``, with
       ``offset = 0.5·window / stride``) are dropped, those with at least ``trunc_thresh`` of their
       length before that end are kept and clamped to it;
    2. a random crop: if ``T <= max_seq_len`` a length drawn uniformly from
       ``[round(crop_ratio[0]·T), round(crop_ratio[1]·T)]`` (no crop when it equals ``T``), else
       ``max_seq_len``; its start is drawn uniformly; instances whose intersection with the window
       extended by ``offset`` on both sides covers at least ``trunc_thresh`` of their length are
       kept, clipped to that extended window and shifted.  Up to :data:`MAX_CROP_TRIALS` starts
       are tried until one keeps an instance.  **If none does** (or the video has no instances
       left), the last window is returned *without instances* - the loss handles videos with zero
       positives - rather than biasing the crop or failing.
    Every random draw comes from the ``rng`` argument, so an item is a pure function of
    ``(index, rng state)``; this is what makes a resumed training run identical.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from uniav.config import TaskSpec
from uniav.data.annotations import VideoAnnotation, duplicate_mask, load_annotations
from uniav.data.features import MODALITIES, FeatureStore, layout_of
from uniav.errors import ConfigError, InputError

LOGGER = logging.getLogger(__name__)

Split = Literal["train", "validation", "test"]
SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: Random crop starts tried until one keeps an instance (as the released ``truncate_feats``).
MAX_CROP_TRIALS = 200
#: ``|T - expected T|`` above this many steps is logged as a warning.
LENGTH_WARN_STEPS = 3
#: Relative part of the hard limit on ``|T - expected T|`` (see :func:`length_limit`).
LENGTH_LIMIT_FRACTION = 0.25
#: Absolute part (steps) of the hard limit on ``|T - expected T|``.
LENGTH_LIMIT_STEPS = 4
#: Missing ids quoted in the missing-features error (the rest are counted).
MISSING_IDS_SHOWN = 5
#: Preloading more than this many bytes logs a hint to use ``preload=False``.
PRELOAD_WARN_BYTES = 8 * 2**30


# --------------------------------------------------------------------------------------------
# Items and batches
# --------------------------------------------------------------------------------------------

@dataclass
class VideoItem:
    """One video (or, in training, one random crop of it) on the feature grid.

    Attributes:
        video_id: the video id of the annotation file.
        visual: (C_visual, T) float32 features.
        audio: (C_audio, T) float32 features.
        segments: (N, 2) float32 instances ``[start, end]`` in grid units of this item (a crop's
            instances are shifted by ``crop_start``).
        labels: (N,) int64 class indices into the dataset's ``classes``.
        duration: video length in seconds.
        fps: frame rate of the feature grid.
        feat_stride: frames between consecutive steps (effective value after resizing).
        window_frames: frames covered by one step (effective value after resizing).
        crop_start: the step of the whole video where this item starts (0 without a crop).
    """

    video_id: str
    visual: torch.Tensor
    audio: torch.Tensor
    segments: torch.Tensor
    labels: torch.Tensor
    duration: float
    fps: float
    feat_stride: float
    window_frames: float
    crop_start: int = 0

    @property
    def length(self) -> int:
        """Number of feature steps T."""
        return int(self.visual.shape[-1])


@dataclass(frozen=True)
class VideoMeta:
    """What post-processing needs of one video of a batch (grid -> seconds, clamping)."""

    video_id: str
    duration: float
    fps: float
    feat_stride: float
    window_frames: float
    length: int


@dataclass
class Batch:
    """Padded model inputs of several videos.

    Attributes:
        visual: (B, C_visual, T) float32, zero beyond each video's length.
        audio: (B, C_audio, T) float32, zero beyond each video's length.
        mask: (B, T) bool, True on valid steps.
        segments: per video an (N_i, 2) float32 tensor in grid units.
        labels: per video an (N_i,) int64 tensor.
        videos: per video its :class:`VideoMeta`.
    """

    visual: torch.Tensor
    audio: torch.Tensor
    mask: torch.Tensor
    segments: list[torch.Tensor]
    labels: list[torch.Tensor]
    videos: list[VideoMeta]

    def __len__(self) -> int:
        return int(self.visual.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """A copy of the batch with every tensor on ``device``.

        Args:
            device: the target device.
            non_blocking: passed to ``Tensor.to``.

        Returns:
            A new :class:`Batch` (``videos`` is shared).
        """
        def move(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(device, non_blocking=non_blocking)

        return Batch(visual=move(self.visual), audio=move(self.audio), mask=move(self.mask),
                     segments=[move(s) for s in self.segments],
                     labels=[move(lab) for lab in self.labels], videos=list(self.videos))


def padded_length(lengths: Sequence[int], *, max_seq_len: int, max_stride: int,
                  training: bool) -> int:
    """The padded length T of a batch.

    Args:
        lengths: the items' lengths.
        max_seq_len: the task's training length.
        max_stride: the largest pyramid stride (the padded length must be a multiple of it).
        training: training batches always have ``max_seq_len`` steps.

    Returns:
        ``max_seq_len`` in training; at inference the larger of ``max_seq_len`` and the longest
        item rounded up to a multiple of ``max_stride``.

    Raises:
        ValueError: no lengths, or (training) an item longer than ``max_seq_len``.
    """
    if not lengths:
        raise ValueError("padded_length: no items")
    longest = max(int(n) for n in lengths)
    if training:
        if longest > max_seq_len:
            raise ValueError(f"a training item has {longest} steps > max_seq_len {max_seq_len} "
                             f"(training items must be cropped first)")
        return max_seq_len
    rounded = -(-longest // max_stride) * max_stride  # ceil to a multiple of max_stride
    return max(max_seq_len, rounded)


def collate(items: Sequence[VideoItem], length: int) -> Batch:
    """Pad items to ``length`` steps and stack them.

    Args:
        items: the videos (same channel counts).
        length: the padded length (see :func:`padded_length`).

    Returns:
        The :class:`Batch`; padding is zero and masked out.

    Raises:
        ValueError: no items, an item longer than ``length``, or mismatched channel counts.
    """
    if not items:
        raise ValueError("collate: no items")
    visual_dim, audio_dim = items[0].visual.shape[0], items[0].audio.shape[0]
    visual = torch.zeros((len(items), visual_dim, length), dtype=torch.float32)
    audio = torch.zeros((len(items), audio_dim, length), dtype=torch.float32)
    mask = torch.zeros((len(items), length), dtype=torch.bool)
    videos = []
    for row, item in enumerate(items):
        steps = item.length
        if item.visual.shape[0] != visual_dim or item.audio.shape[0] != audio_dim:
            raise ValueError(f"collate: video {item.video_id!r} has dims "
                             f"({item.visual.shape[0]}, {item.audio.shape[0]}), the batch has "
                             f"({visual_dim}, {audio_dim})")
        if item.audio.shape[-1] != steps:
            raise ValueError(f"collate: video {item.video_id!r}: audio has {item.audio.shape[-1]} "
                             f"steps, visual {steps}")
        if steps > length:
            raise ValueError(f"collate: video {item.video_id!r} has {steps} steps > padded "
                             f"length {length}")
        visual[row, :, :steps] = item.visual
        audio[row, :, :steps] = item.audio
        mask[row, :steps] = True
        videos.append(VideoMeta(video_id=item.video_id, duration=item.duration, fps=item.fps,
                                feat_stride=item.feat_stride, window_frames=item.window_frames,
                                length=steps))
    return Batch(visual=visual, audio=audio, mask=mask,
                 segments=[item.segments for item in items],
                 labels=[item.labels for item in items], videos=videos)


# --------------------------------------------------------------------------------------------
# Pure helpers (time grid, hold-out, training-time sampling)
# --------------------------------------------------------------------------------------------

def seconds_to_grid(seconds: np.ndarray, *, fps: float, feat_stride: float,
                    window_frames: float) -> np.ndarray:
    """Seconds to feature-grid units: ``x = (t·fps − 0.5·window) / stride``.

    Args:
        seconds: any shape, in seconds.
        fps, feat_stride, window_frames: the (effective) grid.

    Returns:
        float64 array of the same shape.
    """
    return (np.asarray(seconds, dtype=np.float64) * fps - 0.5 * window_frames) / feat_stride


def expected_steps(duration: float, *, fps: float, feat_stride: int, window_frames: int) -> float:
    """Feature steps a video of ``duration`` seconds should have: ``(duration·fps − window) /
    stride + 1``, at least 1 (the extractor pads a video shorter than one window)."""
    return max(1.0, (duration * fps - window_frames) / feat_stride + 1.0)


def length_limit(expected: float) -> float:
    """Largest tolerated ``|T − expected|`` (steps): 25 % of the expected length plus 4 steps.

    Tolerant on purpose: ActivityNet has videos with missing frames (a comment in the released
    ``anet.py``), whose features are shorter than the duration says."""
    return LENGTH_LIMIT_FRACTION * expected + LENGTH_LIMIT_STEPS


def resized_grid(num_steps: int, *, feat_stride: int, window_frames: int,
                 resize_length: int) -> float:
    """Effective stride (= effective window) after resizing ``num_steps`` steps to
    ``resize_length``: ``((T − 1)·stride + window) / L`` frames."""
    return ((num_steps - 1) * feat_stride + window_frames) / resize_length


def holdout_split(video_ids: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The videos held out of a training subset for validation.

    The videos are ranked by ``sha256(f"{seed}:{video_id}")`` and the first
    ``n = max(1, round_half_up(fraction · N))`` (at most ``N − 1``) are held out.  The choice
    depends only on the seed and the ids - not on their order in the file - and a video's rank
    does not depend on the other videos, so adding videos to the file moves few others.

    Args:
        video_ids: the training subset's ids (N >= 2).
        fraction: share to hold out, in (0, 1).
        seed: the run seed.

    Returns:
        The held-out ids.

    Raises:
        ValueError: fewer than 2 videos or ``fraction`` outside (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"hold-out fraction must be in (0, 1), got {fraction}")
    unique_ids = sorted(set(video_ids))
    if len(unique_ids) < 2:
        raise ValueError(f"cannot hold out validation videos from {len(unique_ids)} video(s)")
    count = min(len(unique_ids) - 1, max(1, math.floor(fraction * len(unique_ids) + 0.5)))

    def rank(video_id: str) -> tuple[bytes, str]:
        return hashlib.sha256(f"{seed}:{video_id}".encode()).digest(), video_id

    return set(sorted(unique_ids, key=rank)[:count])


def filter_training_instances(segments: np.ndarray, labels: np.ndarray, num_steps: int,
                              offset: float, trunc_thresh: float
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Drop instances beyond the features (released ``anet.py`` training filter).

    The features end at ``end = num_steps + offset``.  An instance starting at or after ``end``
    is dropped; one with at least ``trunc_thresh`` of its length before ``end`` is kept with its
    end clamped to ``end``; the others are dropped.

    Args:
        segments: (N, 2) grid units.
        labels: (N,).
        num_steps: feature length T.
        offset: ``0.5·window / stride``.
        trunc_thresh: the task's threshold.

    Returns:
        ``(segments, labels)`` of the kept instances.
    """
    end = num_steps + offset
    lengths = segments[:, 1] - segments[:, 0]
    inside = np.minimum(segments[:, 1], end) - segments[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (segments[:, 0] < end) & (inside / lengths >= trunc_thresh)
    kept = segments[keep].copy()
    kept[:, 1] = np.minimum(kept[:, 1], end)
    return kept, labels[keep]


class IntegerSource(Protocol):
    """What the sampling needs of a random generator (``np.random.Generator`` has it)."""

    def integers(self, low: int, high: int, *, endpoint: bool) -> int: ...


@dataclass(frozen=True)
class Truncation:
    """A training crop: steps ``[start, start + length)`` and the instances it keeps (shifted)."""

    start: int
    length: int
    segments: np.ndarray
    labels: np.ndarray


def sample_truncation(num_steps: int, segments: np.ndarray, labels: np.ndarray,
                      rng: IntegerSource, *, max_seq_len: int, crop_ratio: tuple[float, float],
                      trunc_thresh: float, offset: float,
                      max_trials: int = MAX_CROP_TRIALS) -> Truncation:
    """Random crop / truncation of one training video (the released ``truncate_feats``).

    Draws, in this order: the crop length (only when ``num_steps <= max_seq_len``:
    ``rng.integers(max(round(r0·T), 1), min(round(r1·T), T), endpoint=True)`` with Python's
    ``round`` as in the released code; no crop when it equals ``T``), then per trial the start
    ``rng.integers(0, T − length, endpoint=True)``.  An instance is kept when its intersection
    with ``[start − offset, start + length + offset]`` covers at least ``trunc_thresh`` of it;
    kept instances are clipped to that extended window and shifted by ``−start``.  Trials stop at
    the first window that keeps an instance; after ``max_trials`` failures the last window is
    returned without instances.  A video without instances gets one window.

    Args:
        num_steps: feature length T.
        segments: (N, 2) grid units.
        labels: (N,).
        rng: the only source of randomness.
        max_seq_len: the task's training length.
        crop_ratio: ``(r0, r1)`` of the random crop of short videos.
        trunc_thresh: share of an instance that must stay inside.
        offset: ``0.5·window / stride`` (grid units).
        max_trials: windows tried.

    Returns:
        The :class:`Truncation`.
    """
    if num_steps <= max_seq_len:
        low = max(round(crop_ratio[0] * num_steps), 1)
        high = min(round(crop_ratio[1] * num_steps), num_steps)
        crop_length = int(rng.integers(low, high, endpoint=True))
        if crop_length == num_steps:
            return Truncation(0, num_steps, segments.copy(), labels.copy())
    else:
        crop_length = max_seq_len
    lengths = segments[:, 1] - segments[:, 0]
    trials = max(1, max_trials) if len(segments) else 1
    for _ in range(trials):
        start = int(rng.integers(0, num_steps - crop_length, endpoint=True))
        left = np.maximum(start - offset, segments[:, 0])
        right = np.minimum(start + crop_length + offset, segments[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            keep = np.clip(right - left, 0.0, None) / lengths >= trunc_thresh
        if keep.any():
            break
    kept = np.stack([left[keep], right[keep]], axis=1) - start  # (N_kept, 2)
    if len(segments) and not keep.any():
        LOGGER.debug("no crop of %d tried kept an instance; returning one without", trials)
    return Truncation(start, crop_length, kept, labels[keep])


# --------------------------------------------------------------------------------------------
# Feature shapes without loading the data
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _MatrixInfo:
    """Shape and dtype of one stored feature matrix (read from its header)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    file: Path


def _npy_info(file: Path, video_id: str, modality: str) -> _MatrixInfo:
    """Shape and dtype from a ``.npy`` header; checks the data is all there (no reading)."""
    try:
        with open(file, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            data_start = handle.tell()
    except FileNotFoundError:
        raise InputError("feature file missing", file=file, video=video_id,
                         field=modality) from None
    except (ValueError, EOFError, OSError) as exc:
        raise InputError(f"unreadable .npy ({exc or 'file is empty'})", file=file,
                         video=video_id, field=modality) from None
    if dtype.hasobject:
        raise InputError("holds Python objects (a pickled array); refused - features must be "
                         "numeric", file=file, video=video_id, field=modality)
    needed = data_start + math.prod(shape) * dtype.itemsize
    size = file.stat().st_size
    if size < needed:
        raise InputError(f"truncated .npy: the header promises {needed} bytes, the file has "
                         f"{size} (file not fully written?)", file=file, video=video_id,
                         field=modality)
    return _MatrixInfo(tuple(int(n) for n in shape), dtype, file)


def _matrix_infos(store: FeatureStore, video_ids: Sequence[str]
                  ) -> dict[str, tuple[_MatrixInfo, _MatrixInfo]]:
    """(visual, audio) header info of every video, from ``.npy`` headers or HDF5 shapes."""
    infos: dict[str, tuple[_MatrixInfo, _MatrixInfo]] = {}
    if store.layout.format == "npy":
        for video_id in video_ids:
            infos[video_id] = tuple(_npy_info(store.file_of(video_id, m), video_id, m)
                                    for m in MODALITIES)  # type: ignore[assignment]
        return infos
    import h5py

    try:
        with h5py.File(store.path, "r") as handle:
            for video_id in video_ids:
                pair = []
                for modality in MODALITIES:
                    # same key layout as FeatureStore: /<id_prefix><video>/<modality>
                    node = handle.get(f"{store.layout.id_prefix}{video_id}/{modality}")
                    if not isinstance(node, h5py.Dataset):
                        raise InputError("no such dataset in the HDF5 file", file=store.path,
                                         video=video_id, field=modality)
                    pair.append(_MatrixInfo(tuple(int(n) for n in node.shape), node.dtype,
                                            store.path))
                infos[video_id] = (pair[0], pair[1])
    except OSError as exc:
        raise InputError(f"cannot read HDF5 file ({exc})", file=store.path) from None
    return infos


def _store_sample(store: FeatureStore, count: int = 3) -> str:
    """A few entry names of a store (file names or HDF5 groups), for error messages."""
    if store.layout.format == "npy":
        names = sorted(p.name for p in store.path.iterdir() if p.suffix == ".npy")
    else:
        import h5py

        with h5py.File(store.path, "r") as handle:
            names = sorted(handle.keys())
    return ", ".join(repr(n) for n in names[:count]) or "nothing"


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _VideoRecord:
    """One video of the split, ready for :meth:`LocalizationDataset.get`."""

    video_id: str
    duration: float
    stored_steps: int       # T on disk (after A/V truncation), before any resizing
    num_steps: int          # T the model sees (resize_length when resizing)
    feat_stride: float      # effective
    window_frames: float    # effective
    segments: np.ndarray    # (N, 2) float64, grid units of the whole video
    labels: np.ndarray      # (N,) int64


class LocalizationDataset:
    """One task's videos of one split on the feature grid (the one dataset class).

    Args:
        spec: the task spec (``config.task_spec(name)``).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        seed: the run seed; only the validation hold-out depends on it (training-time sampling
            uses the ``rng`` passed to :meth:`get`).
        remove_duplicate_gt: drop annotations repeating an earlier one (same label, bounds within
            1e-3 s); the count is kept in ``duplicates_removed``.
        expected_dims: ``(visual_dim, audio_dim)`` the caller needs (e.g. another task's dims in
            multi-task training); by default the store's metadata, else the split's own dims.
        preload: read, validate and keep every video's features in memory now (right for the
            synthetic benchmark, DESED and UnAV-100); otherwise each item is read from the store.

    Attributes:
        spec, split: as given.
        classes: class names of the annotation file (the same for every split).
        video_ids: ids of the split's videos, in file order.
        dims: ``(visual_dim, audio_dim)``.
        lengths: per video the number of steps the model sees (before any crop).
        duplicates_removed: annotations dropped as duplicates.
        store: the :class:`~uniav.data.features.FeatureStore`.

    Raises:
        InputError: bad annotations, an empty split, missing features (all listed at once), bad
            feature shapes or values, a length inconsistent with the duration.
        ConfigError: a hold-out fraction outside (0, 1), or a validation subset equal to the test
            subset.
    """

    def __init__(self, spec: TaskSpec, split: Split, *, seed: int,
                 remove_duplicate_gt: bool = True, expected_dims: tuple[int, int] | None = None,
                 preload: bool = True):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.spec = spec
        self.split = split
        self.seed = seed
        data = spec.data
        database = load_annotations(data.annotations)
        self.annotation_file = database.path
        self.classes: list[str] = list(database.classes)
        videos = self._select_videos(database.subset, split, seed)
        self.video_ids: list[str] = [video.video_id for video in videos]

        self.store = FeatureStore(data.features, layout_of(data), data.length_tolerance)
        self._check_missing(split, videos)
        infos = _matrix_infos(self.store, self.video_ids)
        self.dims: tuple[int, int] = self._check_dims(infos, expected_dims)
        stored_steps = self._check_lengths(videos, infos)

        self.duplicates_removed = 0
        self._records = [self._make_record(video, steps, remove_duplicate_gt)
                         for video, steps in zip(videos, stored_steps)]
        if self.duplicates_removed:
            LOGGER.info("%s/%s: removed %d duplicate annotation(s)", spec.name, split,
                        self.duplicates_removed)
        self.lengths: list[int] = [record.num_steps for record in self._records]

        self._features: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if preload:
            total = sum(n * sum(self.dims) * 4 for n in self.lengths)
            if total > PRELOAD_WARN_BYTES:
                LOGGER.warning("%s/%s: preloading %.1f GiB of features; pass preload=False to "
                               "read them per item", spec.name, split, total / 2**30)
            self._features = [self._load(i) for i in range(len(self._records))]

    # ---- construction ---------------------------------------------------------------------

    def _config_key(self, key: str) -> str:
        return f"datasets.{self.spec.benchmark}.tasks.{self.spec.name}.{key}"

    def _select_videos(self, subset_of: Callable[[str], list[VideoAnnotation]], split: str,
                       seed: int) -> list[VideoAnnotation]:
        """The split's videos in file order (see module docs for the hold-out)."""
        subsets = self.spec.data.subsets
        if subsets.validation is not None and subsets.validation == subsets.test:
            raise ConfigError(f"{self._config_key('subsets.validation')}: the validation subset "
                              f"must not be the test subset {subsets.test!r}")
        if split == "test":
            return subset_of(subsets.test)
        if subsets.validation is not None:
            return subset_of(subsets.train if split == "train" else subsets.validation)
        training = subset_of(subsets.train)
        fraction = self.spec.data.holdout_fraction
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"{self._config_key('holdout_fraction')}: must be in (0, 1), "
                              f"got {fraction}")
        if len(training) < 2:
            raise InputError(f"subset {subsets.train!r} has {len(training)} video(s): too few to "
                             f"hold out validation videos", file=self.spec.data.annotations,
                             field="subset")
        held_out = holdout_split([v.video_id for v in training], fraction, seed)
        return [v for v in training if (v.video_id in held_out) == (split == "validation")]

    def _subset_name(self) -> str:
        subsets = self.spec.data.subsets
        if self.split == "test":
            return subsets.test
        if self.split == "validation" and subsets.validation is not None:
            return subsets.validation
        return subsets.train

    def _check_missing(self, split: str, videos: list[VideoAnnotation]) -> None:
        available = self.store.video_ids()
        missing = [v.video_id for v in videos if v.video_id not in available]
        if not missing:
            return
        shown = ", ".join(repr(v) for v in missing[:MISSING_IDS_SHOWN])
        hidden = len(missing) - MISSING_IDS_SHOWN
        more = f" and {hidden} more" if hidden > 0 else ""
        hint = ""
        if len(missing) == len(videos):
            layout = self.store.layout
            hint = (f"; no video of the split has features - check id_prefix "
                    f"{layout.id_prefix!r} and the suffixes {layout.visual_suffix!r} / "
                    f"{layout.audio_suffix!r} (the store holds e.g. {_store_sample(self.store)})")
        raise InputError(
            f"{len(missing)} of {len(videos)} videos of split {split!r} (subset "
            f"{self._subset_name()!r} of {self.spec.data.annotations}) have no features "
            f"(visual and audio needed): {shown}{more}{hint}",
            file=self.store.path, video=missing[0] if len(missing) == 1 else None,
            field="features")

    def _check_dims(self, infos: dict[str, tuple[_MatrixInfo, _MatrixInfo]],
                    expected_dims: tuple[int, int] | None) -> tuple[int, int]:
        """Rank, dtype and channel checks; returns the split's (visual_dim, audio_dim)."""
        for video_id, pair in infos.items():
            for modality, info in zip(MODALITIES, pair):
                if info.dtype.kind not in "iuf":
                    raise InputError(f"expected numeric features, found dtype {info.dtype}",
                                     file=info.file, video=video_id, field=modality)
                if len(info.shape) != 2:
                    raise InputError(f"expected a T x C matrix, found shape {info.shape}",
                                     file=info.file, video=video_id, field=modality)
        store_dims = self.store.dims()
        if (expected_dims is not None and store_dims is not None
                and store_dims != tuple(expected_dims)):
            meta_file = (self.store.path / "meta.json" if self.store.layout.format == "npy"
                         else self.store.path)
            raise InputError(f"the store's features are {store_dims} (visual, audio) but "
                             f"{tuple(expected_dims)} are needed", file=meta_file,
                             field="visual_dim/audio_dim")
        dims = expected_dims or store_dims
        source = "expected" if expected_dims else "recorded in the store's metadata"
        if dims is None:  # the split's own, by majority, so the error names the odd videos
            counts = Counter((pair[0].shape[1], pair[1].shape[1]) for pair in infos.values())
            dims, count = counts.most_common(1)[0]
            source = f"as {count} of {len(infos)} videos have"
        dims = (int(dims[0]), int(dims[1]))
        for video_id, pair in infos.items():
            for modality, info, dim in zip(MODALITIES, pair, dims):
                steps, channels = info.shape
                if channels == dim:
                    continue
                if steps == dim:
                    raise InputError(f"axes look swapped: shape {info.shape} is C x T, expected "
                                     f"T x {dim}", file=info.file, video=video_id, field=modality)
                raise InputError(f"expected {dim} channels ({source}), found {channels}",
                                 file=info.file, video=video_id, field=modality)
        return dims

    def _check_lengths(self, videos: list[VideoAnnotation],
                       infos: dict[str, tuple[_MatrixInfo, _MatrixInfo]]) -> list[int]:
        """T > 0, A/V agreement and T against the duration; returns the stored T per video."""
        data = self.spec.data
        steps_per_video, warnings = [], []
        for video in videos:
            visual, audio = infos[video.video_id]
            for modality, info in zip(MODALITIES, (visual, audio)):
                if info.shape[0] == 0:
                    raise InputError("empty feature sequence (T = 0)", file=info.file,
                                     video=video.video_id, field=modality)
            difference = abs(visual.shape[0] - audio.shape[0])
            if difference > self.store.length_tolerance:
                raise InputError(
                    f"audio has {audio.shape[0]} steps but visual has {visual.shape[0]} "
                    f"(difference {difference} > tolerance {self.store.length_tolerance})",
                    file=audio.file, video=video.video_id, field="audio")
            steps = min(visual.shape[0], audio.shape[0])
            expected = expected_steps(video.duration, fps=data.fps, feat_stride=data.feat_stride,
                                      window_frames=data.window_frames)
            deviation = abs(steps - expected)
            if deviation > length_limit(expected):
                swapped = (abs(visual.shape[1] - expected) <= LENGTH_WARN_STEPS
                           or abs(audio.shape[1] - expected) <= LENGTH_WARN_STEPS)
                raise InputError(
                    f"{steps} feature steps, but a {video.duration} s video on this grid (fps "
                    f"{data.fps}, stride {data.feat_stride}, window {data.window_frames}) has "
                    f"about {expected:.1f}; more than {length_limit(expected):.1f} steps off"
                    + (" (axes swapped? the channel count matches the expected length)"
                       if swapped else ""),
                    file=visual.file, video=video.video_id, field="visual")
            if deviation > LENGTH_WARN_STEPS:
                warnings.append(f"{video.video_id} ({steps} vs {expected:.1f})")
            steps_per_video.append(steps)
        if warnings:
            LOGGER.warning("%s/%s: %d video(s) have a feature length more than %d steps off the "
                           "duration (kept): %s%s", self.spec.name, self.split, len(warnings),
                           LENGTH_WARN_STEPS, ", ".join(warnings[:MISSING_IDS_SHOWN]),
                           " ..." if len(warnings) > MISSING_IDS_SHOWN else "")
        return steps_per_video

    def _make_record(self, video: VideoAnnotation, stored_steps: int,
                     remove_duplicate_gt: bool) -> _VideoRecord:
        data = self.spec.data
        segments, labels = video.segments, video.label_ids(self.classes)
        if remove_duplicate_gt and len(labels):
            duplicates = duplicate_mask(segments, labels)
            self.duplicates_removed += int(duplicates.sum())
            segments, labels = segments[~duplicates], labels[~duplicates]
        if data.resize_length:
            stride = window = resized_grid(stored_steps, feat_stride=data.feat_stride,
                                           window_frames=data.window_frames,
                                           resize_length=data.resize_length)
            num_steps = data.resize_length
        else:
            stride, window = float(data.feat_stride), float(data.window_frames)
            num_steps = stored_steps
        grid = seconds_to_grid(segments, fps=data.fps, feat_stride=stride, window_frames=window)
        return _VideoRecord(video_id=video.video_id, duration=video.duration,
                            stored_steps=stored_steps, num_steps=num_steps, feat_stride=stride,
                            window_frames=window, segments=grid.reshape(-1, 2),
                            labels=labels.astype(np.int64))

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Read, validate and (if configured) resize one video: ``(C_v, T)``, ``(C_a, T)``."""
        record = self._records[index]
        visual, audio = self.store.read(record.video_id, expected_dims=self.dims)
        if visual.shape[0] != record.stored_steps:
            raise InputError(f"has {visual.shape[0]} steps now but {record.stored_steps} when "
                             f"the dataset was built (file changed?)",
                             file=self.store.file_of(record.video_id, "visual"),
                             video=record.video_id, field="visual")
        visual_t = torch.from_numpy(np.ascontiguousarray(visual.T))  # (T, Cv) -> (Cv, T)
        audio_t = torch.from_numpy(np.ascontiguousarray(audio.T))    # (T, Ca) -> (Ca, T)
        if self.spec.data.resize_length:
            size = self.spec.data.resize_length
            # (C, T) -> (1, C, T) -> (1, C, L) -> (C, L)
            visual_t = F.interpolate(visual_t[None], size=size, mode="linear",
                                     align_corners=False)[0]
            audio_t = F.interpolate(audio_t[None], size=size, mode="linear",
                                    align_corners=False)[0]
        return visual_t.contiguous(), audio_t.contiguous()

    # ---- access ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> VideoItem:
        return self.get(index)

    def get(self, index: int, rng: np.random.Generator | None = None) -> VideoItem:
        """One video as a :class:`VideoItem`.

        Args:
            index: position in ``video_ids``.
            rng: ``None`` for the whole video with all its instances (evaluation); a generator
                for a training item (instance filter + random crop, see module docs) - the only
                source of randomness.

        Returns:
            The item; its tensors never share memory with the dataset's cache.
        """
        record = self._records[index]
        if self._features is not None:
            visual, audio = self._features[index]
        else:
            visual, audio = self._load(index)
        segments, labels = record.segments, record.labels
        crop_start = 0
        if rng is not None:
            task = self.spec.task
            offset = 0.5 * record.window_frames / record.feat_stride
            segments, labels = filter_training_instances(segments, labels, record.num_steps,
                                                         offset, task.trunc_thresh)
            crop = sample_truncation(record.num_steps, segments, labels, rng,
                                     max_seq_len=self.spec.data.max_seq_len,
                                     crop_ratio=task.crop_ratio, trunc_thresh=task.trunc_thresh,
                                     offset=offset)
            crop_start, segments, labels = crop.start, crop.segments, crop.labels
            visual = visual[:, crop.start:crop.start + crop.length]
            audio = audio[:, crop.start:crop.start + crop.length]
        return VideoItem(
            video_id=record.video_id, visual=visual.clone(), audio=audio.clone(),
            segments=torch.from_numpy(np.asarray(segments, dtype=np.float32).reshape(-1, 2)),
            labels=torch.from_numpy(np.asarray(labels, dtype=np.int64)),
            duration=record.duration, fps=float(self.spec.data.fps),
            feat_stride=record.feat_stride, window_frames=record.window_frames,
            crop_start=crop_start)

    def __repr__(self) -> str:
        return (f"LocalizationDataset(task={self.spec.name!r}, split={self.split!r}, "
                f"videos={len(self)}, classes={len(self.classes)}, dims={self.dims})")
