"""The ``datasets:`` and ``data:`` sections of ``params.yaml`` (where each task's files are, the
synthetic benchmark's generator, the paper benchmark's manifest, the data policy); part of
:mod:`uniav.config.sections`, whose docstring explains the conventions."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal

from pydantic import Field

from uniav.config.fields import (NonEmpty, NonNegativeFloat, NonNegativeInt, OpenFraction,
                                 PositiveFloat, PositiveInt, TaskName, section)

# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------

@section
class SplitSizes:
    """Number of synthetic videos per subset."""

    train: PositiveInt
    validation: PositiveInt
    test: PositiveInt


@section
class SubsetNames:
    """Names of the annotation ``subset`` values used for training, model selection and test.

    ``validation: null`` means the dataset has no separate validation subset: a seeded
    ``holdout_fraction`` of the training videos is held out instead.  (Which split validation
    reads is a protocol choice: ``train.validation_split``.)
    """

    train: NonEmpty
    test: NonEmpty
    validation: NonEmpty | None = None


@section
class DatasetTaskConfig:
    """Where one task's data lives and its time grid (benchmark-specific part of a task spec)."""

    annotations: NonEmpty
    features: NonEmpty
    fps: PositiveFloat
    feat_stride: PositiveInt
    window_frames: PositiveInt
    max_seq_len: PositiveInt
    subsets: SubsetNames
    feature_format: Literal["npy", "hdf5"] = "npy"
    media: NonEmpty | None = None
    id_prefix: str = ""
    visual_suffix: str = "_visual"
    audio_suffix: str = "_audio"
    resize_length: PositiveInt | None = None
    #: the number of classes the annotation file must have (null: whatever it has)
    num_classes: PositiveInt | None = None
    holdout_fraction: OpenFraction = 0.1
    length_tolerance: NonNegativeInt = 2
    #: drop training instances past the end of the features (the released code does it for
    #: ActivityNet only)
    filter_past_features: bool = True
    #: read (and validate) every video's features when a dataset is opened
    preload_features: bool = True
    #: bound of each dataset's feature cache: a process's memory does not grow with the data
    feature_cache_mb: NonNegativeInt = 1024
    #: class name -> the concept it names; classes of different tasks naming the same concept
    #: ("Cat" in SED, "cat meowing" in AVEL) make the cross-task evaluation (uniav/data/concepts.py)
    concepts: dict[NonEmpty, NonEmpty] = field(default_factory=dict)


@section
class MediaConfig:
    """Raw media written by the synthetic generator."""

    fps: PositiveInt = 16
    sample_rate: Annotated[int, Field(ge=1000)] = 16000
    frame_size: Annotated[int, Field(ge=8)] = 32


@section
class SyntheticConfig:
    """The embedded synthetic benchmark (``benchmark: synthetic``)."""

    root: NonEmpty
    seed: NonNegativeInt
    videos: dict[TaskName, SplitSizes]
    tasks: dict[TaskName, DatasetTaskConfig]
    media: MediaConfig = field(default_factory=MediaConfig)


@section
class ManifestEntry:
    """One file of the paper benchmark: where to get it, its checksum and where it goes.

    ``url`` is tried first, then each of ``mirrors`` (e.g. a hand-downloaded copy first, the
    public address after it)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    url: NonEmpty
    dest: NonEmpty
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] | None = None
    unpack: bool = False
    description: str = ""
    mirrors: list[NonEmpty] = field(default_factory=list)


@section
class PaperConfig:
    """ActivityNet 1.3 / DESED / UnAV-100 with the released ONE-PEACE features (``benchmark: paper``)."""

    root: NonEmpty
    manifest: list[ManifestEntry]
    tasks: dict[TaskName, DatasetTaskConfig]
    prompts: dict[TaskName, NonEmpty] = field(default_factory=dict)
    #: width of the released ONE-PEACE features and prompt embeddings (checked on loading)
    feature_dim: PositiveInt = 1536


@section
class DatasetsConfig:
    """The two benchmarks; ``benchmark:`` selects one."""

    synthetic: SyntheticConfig
    paper: PaperConfig


@section
class DataPolicy:
    """What the data loader does with the quirks of real data; every case is counted in the
    ``data_report`` of the metrics (docs/protocol.md)."""

    #: videos listed in the annotation file without feature files
    missing_features: Literal["error", "skip"] = "error"
    #: ``drop_in_training``: dropped from training, kept as ground truth no prediction matches
    #: in evaluation (the released behaviour); ``drop``: dropped everywhere
    zero_length_segments: Literal["error", "drop", "drop_in_training"] = "error"
    #: segments sticking out of [0, duration] by at most this many seconds are accepted
    segment_tolerance: NonNegativeFloat = 1.0
    #: what happens to the accepted part outside [0, duration]
    segments_past_duration: Literal["clamp", "keep"] = "clamp"
    #: audio/visual lengths that differ by more than the dataset's length_tolerance
    length_mismatch: Literal["error", "cut"] = "error"
    #: a feature length far from what the duration implies
    duration_mismatch: Literal["error", "warn"] = "error"
