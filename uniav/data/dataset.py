"""The one dataset class of every task and benchmark.

:class:`LocalizationDataset` is driven by a task spec (``config.task_spec(name)``): the annotation
file, the feature store and the time grid come from ``spec.data``, the training-time sampling
(``trunc_thresh``, ``crop_ratio``) from ``spec.task``, and what happens to real-data quirks from
the data policy (``config.data``).  There are no per-dataset subclasses.

Splits
    ``train``, ``validation`` and ``test`` map to the annotation ``subset`` names of
    ``spec.data.subsets``.  When ``subsets.validation`` is ``null`` the validation split is a
    seeded hold-out of the training subset (:func:`~uniav.data.crops.holdout_split`) and the
    train split excludes exactly those videos.

Checks at construction (all :class:`~uniav.errors.InputError` naming file, video and field)
    every video of the split has features (one error listing every missing id, unless the policy
    skips them); the shapes of all feature matrices, read from the ``.npy`` headers / HDF5 shapes
    without loading the data: rank 2, one ``(visual_dim, audio_dim)`` for the whole split (and
    ``expected_dims``), ``T > 0``, audio/visual lengths within the store's tolerance (or cut, by
    policy), and ``T`` against the duration (:meth:`~uniav.grid.TimeGrid.expected_steps`: an
    error beyond :func:`~uniav.grid.length_limit` steps, or a count, by policy).  Feature values (NaN/Inf,
    dtype) are checked when a video is read - all at construction with ``preload``.  Every quirk
    accepted is counted in :attr:`LocalizationDataset.report` (:mod:`uniav.data.report`).

Memory
    Features are read per item into a bounded LRU cache (``cache_bytes``): memory does not grow
    with the dataset; ``preload`` reads (and validates) every video at construction.

Training-time sampling (``get(i, rng)``), as in the released implementation
    1. (``spec.data.filter_past_features``) instances starting at or after the end of the
       features are dropped, those with at least ``trunc_thresh`` of their length before it are
       kept and clamped to it (:func:`~uniav.data.crops.filter_training_instances`);
    2. a random crop (:func:`~uniav.data.crops.sample_truncation`).
    Every random draw comes from ``rng``: an item is a pure function of ``(index, rng state)``,
    which makes a resumed training run identical.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch

from uniav.config import DataPolicy, TaskSpec
from uniav.data.annotations import (MIN_SEGMENT_LENGTH, VideoAnnotation, duplicate_mask,
                                    load_annotations_under, seen_classes)
from uniav.data.batching import VideoItem, task_inputs
from uniav.data.crops import filter_training_instances, holdout_split, sample_truncation
from uniav.data.features import (MODALITIES, FeatureStore, MatrixInfo, layout_of, matrix_infos,
                                 store_sample)
from uniav.data.report import DataReport
from uniav.errors import ConfigError, InputError
from uniav.grid import LENGTH_WARN_STEPS, TimeGrid, length_limit

LOGGER = logging.getLogger(__name__)

Split = Literal["train", "validation", "test"]
SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: Missing ids quoted in the missing-features error (the rest are counted).
MISSING_IDS_SHOWN = 5
#: Default bound of the feature cache of one dataset (bytes).
DEFAULT_CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class _VideoRecord:
    """One video of the split, ready for :meth:`LocalizationDataset.get`."""

    annotation: VideoAnnotation  # the ground truth as evaluated (after the data policy)
    stored_steps: int            # T on disk (after A/V truncation), before any resizing
    num_steps: int               # T the model sees (resize_length when resizing)
    grid: TimeGrid               # effective
    segments: np.ndarray         # (N, 2) float64 training instances, grid units of the video
    labels: np.ndarray           # (N,) int64

    @property
    def video_id(self) -> str:
        return self.annotation.video_id


class LocalizationDataset:
    """One task's videos of one split on the feature grid (the one dataset class).

    Args:
        spec: the task spec (``config.task_spec(name)``).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        seed: the run seed; only the validation hold-out depends on it (training-time sampling
            uses the ``rng`` passed to :meth:`get`).
        policy: what to do with real-data quirks (``config.data``).
        remove_duplicate_gt: drop annotations repeating an earlier one (same label, bounds within
            1e-3 s); counted in the report.
        expected_dims: ``(visual_dim, audio_dim)`` the caller needs (e.g. another task's dims in
            multi-task training); by default the store's metadata, else the split's own dims.
        preload: read and validate every video's features now.
        cache_bytes: bound of the feature cache (``None``: unbounded).
        holdout: hold validation videos out of a training subset that has no validation
            subset (``False`` when validation reads the test split, as the released protocol
            does: the whole training subset trains).
        held_out_classes: classes left out (an open-set experiment's training and validation
            data): instances removed, not relabelled (``annotations_dropped.held_out``).

    Attributes:
        spec, split: as given.
        classes: class names of the annotation file without the held-out ones (the labels of
            the items index this list).
        all_classes: every class name of the annotation file.
        video_ids: ids of the split's videos (without skipped ones), in file order.
        dims: ``(visual_dim, audio_dim)``.
        lengths: per video the number of steps the model sees (before any crop).
        report: the :class:`~uniav.data.report.DataReport` of the split.
        store: the :class:`~uniav.data.features.FeatureStore`.

    Raises:
        InputError: bad annotations, an empty split, missing features, bad feature shapes or
            values, a length inconsistent with the duration (as the policy says).
        ConfigError: a hold-out fraction outside (0, 1); held-out classes the annotation file
            does not have, or all of its classes held out.
    """

    def __init__(self, spec: TaskSpec, split: Split, *, seed: int,
                 policy: DataPolicy = DataPolicy(), remove_duplicate_gt: bool = True,
                 expected_dims: tuple[int, int] | None = None, preload: bool = True,
                 cache_bytes: int | None = DEFAULT_CACHE_BYTES, holdout: bool = True,
                 held_out_classes: tuple[str, ...] | list[str] = ()):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.spec, self.split, self.seed, self.policy = spec, split, seed, policy
        self.holdout = holdout
        data = spec.data
        database = load_annotations_under(data.annotations, policy)
        self.annotation_file = database.path
        self.all_classes: list[str] = list(database.classes)
        if data.num_classes is not None and len(self.all_classes) != data.num_classes:
            raise InputError(f"{len(self.all_classes)} classes in the annotation file, "
                             f"{self._config_key('num_classes')} says {data.num_classes}",
                             file=database.path, field="classes")
        self.held_out_classes: frozenset[str] = frozenset(held_out_classes)
        self.classes: list[str] = seen_classes(self.all_classes, held_out_classes, spec.name,
                                               database.path)
        videos = self._select_videos(database.subset, split, seed)
        self.report = DataReport(task=spec.name, split=split, subset=self._subset_name(),
                                 videos_listed=len(videos),
                                 annotations_listed=sum(len(v.labels) for v in videos))
        tolerance = None if policy.length_mismatch == "cut" else data.length_tolerance
        self.store = FeatureStore(data.features, layout_of(data), tolerance)
        videos = self._check_missing(split, videos)
        infos = matrix_infos(self.store, [v.video_id for v in videos])
        self.dims: tuple[int, int] = self._check_dims(infos, expected_dims)
        stored_steps = self._check_lengths(videos, infos)
        self._records = [self._make_record(video, steps, remove_duplicate_gt)
                         for video, steps in zip(videos, stored_steps)]
        self.video_ids: list[str] = [record.video_id for record in self._records]
        self.lengths: list[int] = [record.num_steps for record in self._records]
        self._cache: OrderedDict[int, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0
        if preload:
            for index in range(len(self._records)):
                self._features(index)
        self.report.log()

    # ---- construction ---------------------------------------------------------------------

    def _config_key(self, key: str) -> str:
        return f"datasets.{self.spec.benchmark}.tasks.{self.spec.name}.{key}"

    def _select_videos(self, subset_of: Callable[[str], list[VideoAnnotation]], split: str,
                       seed: int) -> list[VideoAnnotation]:
        """The split's videos in file order (see module docs for the hold-out)."""
        subsets = self.spec.data.subsets
        if split == "test":
            return subset_of(subsets.test)
        if subsets.validation is not None:
            return subset_of(subsets.train if split == "train" else subsets.validation)
        training = subset_of(subsets.train)
        if not self.holdout:
            if split == "validation":
                raise ConfigError(f"{self._config_key('subsets.validation')}: no validation "
                                  f"subset and no hold-out (validation reads the test split)")
            return training
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

    def _check_missing(self, split: str, videos: list[VideoAnnotation]) -> list[VideoAnnotation]:
        """The videos that have features; the others are an error or skipped and counted."""
        available = self.store.video_ids()
        missing = [v for v in videos if v.video_id not in available]
        if not missing:
            return videos
        ids = [v.video_id for v in missing]
        hint = ""
        if len(missing) == len(videos):
            layout = self.store.layout
            hint = (f"; no video of the split has features - check id_prefix "
                    f"{layout.id_prefix!r} and the suffixes {layout.visual_suffix!r} / "
                    f"{layout.audio_suffix!r} (the store holds e.g. {store_sample(self.store)})")
        shown = ", ".join(repr(v) for v in ids[:MISSING_IDS_SHOWN])
        more = f" and {len(ids) - MISSING_IDS_SHOWN} more" if len(ids) > MISSING_IDS_SHOWN else ""
        message = (f"{len(missing)} of {len(videos)} videos of split {split!r} (subset "
                   f"{self._subset_name()!r} of {self.spec.data.annotations}) have no features "
                   f"(visual and audio needed): {shown}{more}{hint}")
        if self.policy.missing_features == "error" or len(missing) == len(videos):
            raise InputError(message + ("; data.missing_features: skip would leave them out"
                                        if len(missing) < len(videos) else ""),
                             file=self.store.path, video=ids[0] if len(ids) == 1 else None,
                             field="features")
        for video in missing:
            self.report.add("videos_skipped.missing_features", video=video.video_id)
        return [v for v in videos if v.video_id in available]

    def _check_dims(self, infos: dict[str, tuple[MatrixInfo, MatrixInfo]],
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
                       infos: dict[str, tuple[MatrixInfo, MatrixInfo]]) -> list[int]:
        """T > 0, A/V agreement and T against the duration; returns the stored T per video."""
        data = self.spec.data
        grid = TimeGrid.of(data)
        steps_per_video = []
        for video in videos:
            visual, audio = infos[video.video_id]
            for modality, info in zip(MODALITIES, (visual, audio)):
                if info.shape[0] == 0:
                    raise InputError("empty feature sequence (T = 0)", file=info.file,
                                     video=video.video_id, field=modality)
            difference = abs(visual.shape[0] - audio.shape[0])
            tolerance = self.store.length_tolerance
            if tolerance is not None and difference > tolerance:
                raise InputError(
                    f"audio has {audio.shape[0]} steps but visual has {visual.shape[0]} "
                    f"(difference {difference} > tolerance {self.store.length_tolerance}; "
                    f"data.length_mismatch: cut would cut both to the shorter)",
                    file=audio.file, video=video.video_id, field="audio")
            if difference:
                self.report.add("videos_adjusted.av_length_mismatch", video=video.video_id)
            steps = min(visual.shape[0], audio.shape[0])
            expected = grid.expected_steps(video.duration)
            # against the longer stream: cutting to the shorter is counted as a mismatch already
            deviation = max(visual.shape[0], audio.shape[0]) - expected
            if abs(deviation) > length_limit(expected) and self.policy.duration_mismatch == "error":
                swapped = (abs(visual.shape[1] - expected) <= LENGTH_WARN_STEPS
                           or abs(audio.shape[1] - expected) <= LENGTH_WARN_STEPS)
                raise InputError(
                    f"{steps} feature steps, but a {video.duration} s video on this grid (fps "
                    f"{data.fps}, stride {data.feat_stride}, window {data.window_frames}) has "
                    f"about {expected:.1f}; more than {length_limit(expected):.1f} steps off"
                    + (" (axes swapped? the channel count matches the expected length)"
                       if swapped else "; data.duration_mismatch: warn would accept it"),
                    file=visual.file, video=video.video_id, field="visual")
            if deviation < -LENGTH_WARN_STEPS:
                self.report.add("videos_adjusted.features_short", video=video.video_id)
            elif deviation > LENGTH_WARN_STEPS:
                self.report.add("videos_adjusted.features_long", video=video.video_id)
            steps_per_video.append(steps)
        return steps_per_video

    def _make_record(self, video: VideoAnnotation, stored_steps: int,
                     remove_duplicate_gt: bool) -> _VideoRecord:
        """Apply the data policy to a video's annotations (counting it) and put them on its
        effective grid."""
        data, report, vid = self.spec.data, self.report, video.video_id
        segments, labels = video.segments, list(video.labels)
        keep = np.ones(len(labels), dtype=bool)
        if self.held_out_classes:
            held_out = np.asarray([label in self.held_out_classes for label in labels],
                                  dtype=bool)
            report.add("annotations_dropped.held_out", int(held_out.sum()), vid)
            keep &= ~held_out
        if remove_duplicate_gt and len(labels) > 1:
            duplicates = duplicate_mask(segments, labels) & keep
            report.add("annotations_dropped.duplicate", int(duplicates.sum()), vid)
            keep &= ~duplicates
        zero = (segments[:, 1] - segments[:, 0]) < MIN_SEGMENT_LENGTH
        zero &= keep
        if zero.any():
            if self.policy.zero_length_segments == "drop" or self.split == "train":
                report.add("annotations_dropped.zero_length", int(zero.sum()), vid)
                keep &= ~zero
            else:  # drop_in_training, evaluated: kept as ground truth nothing matches
                report.add("annotations_kept.zero_length", int(zero.sum()), vid)
        if video.clipped:
            case = ("annotations_kept.past_duration" if self.policy.segments_past_duration == "keep"
                    else "annotations_clamped.past_duration")
            report.add(case, video.clipped, vid)
        kept_labels = tuple(label for label, kept in zip(labels, keep) if kept)
        annotation = VideoAnnotation(video_id=vid, subset=video.subset, duration=video.duration,
                                     fps=video.fps, segments=segments[keep], labels=kept_labels,
                                     clipped=video.clipped)
        grid = TimeGrid.of(data).for_video(stored_steps, data.resize_length)
        num_steps = data.resize_length or stored_steps
        train_segments = grid.to_steps(annotation.segments).reshape(-1, 2)
        train_labels = annotation.label_ids(self.classes)
        if self.split == "train" and data.filter_past_features and len(train_labels):
            end = num_steps + grid.offset
            filtered, train_labels = filter_training_instances(
                train_segments, train_labels, num_steps, grid.offset, self.spec.task.trunc_thresh)
            dropped = len(train_segments) - len(filtered)
            report.add("annotations_dropped.past_features", dropped, vid)
            # every dropped instance ends past the features too; the others there are clamped
            report.add("annotations_clamped.past_features",
                       int(np.count_nonzero(train_segments[:, 1] > end)) - dropped, vid)
            train_segments = filtered
        return _VideoRecord(annotation=annotation, stored_steps=stored_steps,
                            num_steps=num_steps, grid=grid, segments=train_segments,
                            labels=train_labels.astype(np.int64))

    # ---- features -------------------------------------------------------------------------

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Read, validate and (if configured) resize one video: ``(C_v, T)``, ``(C_a, T)``."""
        record = self._records[index]
        visual, audio = self.store.read(record.video_id, expected_dims=self.dims)
        if visual.shape[0] != record.stored_steps:
            raise InputError(f"has {visual.shape[0]} steps now but {record.stored_steps} when "
                             f"the dataset was built (file changed?)",
                             file=self.store.file_of(record.video_id, "visual"),
                             video=record.video_id, field="visual")
        visual_t, audio_t, _ = task_inputs(visual, audio, TimeGrid.of(self.spec.data),
                                           self.spec.data.resize_length)
        return visual_t, audio_t

    def _features(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A video's features through the bounded LRU cache."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        features = self._load(index)
        size = sum(t.numel() * t.element_size() for t in features)
        if self._cache_bytes is None or size <= self._cache_bytes:
            self._cache[index] = features
            self._cached_bytes += size
            while self._cache_bytes is not None and self._cached_bytes > self._cache_bytes:
                _, evicted = self._cache.popitem(last=False)
                self._cached_bytes -= sum(t.numel() * t.element_size() for t in evicted)
        return features

    # ---- access ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> VideoItem:
        return self.get(index)

    def ground_truth(self) -> list[VideoAnnotation]:
        """The split's ground truth as evaluated: after the data policy (skipped videos left
        out, duplicates and dropped annotations removed, zero-length ones kept by
        ``drop_in_training``)."""
        return [record.annotation for record in self._records]

    def get(self, index: int, rng: np.random.Generator | None = None) -> VideoItem:
        """One video as a :class:`~uniav.data.batching.VideoItem`.

        Args:
            index: position in ``video_ids``.
            rng: ``None`` for the whole video with all its instances (evaluation); a generator
                for a training item (random crop, see module docs) - the only source of
                randomness.

        Returns:
            The item; its tensors never share memory with the dataset's cache.
        """
        record = self._records[index]
        visual, audio = self._features(index)
        segments, labels = record.segments, record.labels
        crop_start = 0
        if rng is not None:
            crop = sample_truncation(record.num_steps, segments, labels, rng,
                                     max_seq_len=self.spec.data.max_seq_len,
                                     crop_ratio=self.spec.task.crop_ratio,
                                     trunc_thresh=self.spec.task.trunc_thresh,
                                     offset=record.grid.offset)
            crop_start, segments, labels = crop.start, crop.segments, crop.labels
            visual = visual[:, crop.start:crop.start + crop.length]
            audio = audio[:, crop.start:crop.start + crop.length]
        return VideoItem(
            video_id=record.video_id, visual=visual.clone(), audio=audio.clone(),
            segments=torch.from_numpy(np.asarray(segments, dtype=np.float32).reshape(-1, 2)),
            labels=torch.from_numpy(np.asarray(labels, dtype=np.int64)),
            duration=record.annotation.duration, grid=record.grid, crop_start=crop_start)

    def __repr__(self) -> str:
        return (f"LocalizationDataset(task={self.spec.name!r}, split={self.split!r}, "
                f"videos={len(self)}, classes={len(self.classes)}, dims={self.dims})")
