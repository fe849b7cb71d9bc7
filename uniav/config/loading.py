"""Reading ``params.yaml``: strict YAML, overlays, overrides, validation, relations.

Resolution order of a value (later wins):

1. ``params.yaml`` as written;
2. the overlay of the selected benchmark (``benchmarks.<benchmark>``), then of the protocol
   (``protocols.<protocol>``; ``protocol: auto`` is ``released`` for the paper benchmark and
   ``clean`` for the synthetic one), then of the scale (``scales.<scale>``), each deep-merged;
3. the ``overrides:`` section (where the Snakefile puts Snakemake's ``--config`` values), then
   ``--set key=value`` overrides of the command;
4. for the model, the preset fills ``embd_dim`` / ``head_dim`` left null; per experiment,
   ``experiments.<name>.model`` / ``.train`` override keys again (``Config.experiment``).

Overrides that set a selector (``benchmark``, ``protocol``, ``scale``) or an overlay are applied
before the overlays are chosen.  The document is validated as written (so an error in an overlay
names its place in the file), then again after merging, then the relations between settings are
checked (:mod:`uniav.config.relations`) - all before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from uniav.config.sections import OVERLAYS, Config
from uniav.config.validation import parse
from uniav.errors import ConfigError
from uniav.fileio import load_yaml_file, parse_yaml_text

#: The protocol ``protocol: auto`` stands for, per benchmark.
DEFAULT_PROTOCOL = {"paper": "released", "synthetic": "clean"}
#: Keys an override applies before the overlays are chosen.
_SELECTORS = {name for pair in OVERLAYS for name in pair}


def load_config(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Config:
    """Read, merge and validate ``params.yaml``.

    Args:
        path: the YAML file (duplicate keys are refused, naming the file, line and key).
        overrides: ``key.path=value`` strings (value parsed as YAML) applied as described in
            the module docs, e.g. ``["scale=tiny", "train.epochs=1"]``.

    Returns:
        The validated :class:`Config` with the selected overlays applied.

    Raises:
        ConfigError: naming the key path of the first problem found.
    """
    raw = load_yaml_file(Path(path), missing="configuration file not found")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return config_from_dict(raw, [parse_override(item) for item in overrides or []])


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"train.epochs=3"`` → ``(["train", "epochs"], 3)`` (the value is parsed as YAML)."""
    key, sep, value = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: expected key.path=value")
    parsed = parse_yaml_text(value, error=lambda message: ConfigError(
        f"override {item!r}: the value: {message}"))
    return key.split("."), parsed


def config_from_dict(raw: dict[str, Any],
                     overrides: list[tuple[list[str], Any]] | None = None) -> Config:
    """Validate an already-parsed configuration mapping (see :func:`load_config`).

    Args:
        raw: the parsed ``params.yaml``.
        overrides: ``(key path, value)`` pairs.
    """
    raw = copy.deepcopy(raw)
    overrides = overrides or []
    for keys, value in overrides:
        if keys[0] in _SELECTORS:
            set_path(raw, keys, value)
    written = parse(Config, raw)  # the document as written: errors name their place in it
    protocol = DEFAULT_PROTOCOL[written.benchmark] if written.protocol == "auto" else written.protocol
    merged = {key: value for key, value in raw.items() if key != "overrides"}
    merged["protocol"] = protocol
    for selector, overlays in OVERLAYS:
        choice = merged.get(selector, "default")
        overlay = (raw.get(overlays) or {}).get(choice)
        if overlay is None:
            if selector == "scale" and choice != "default":
                known = ", ".join(["default", *(raw.get("scales") or {})])
                raise ConfigError(f"scale: unknown scale {choice!r} (known: {known})")
            continue
        merged = deep_merge(merged, overlay)
    merged = deep_merge(merged, raw.get("overrides") or {})
    for keys, value in overrides:
        if keys[0] not in _SELECTORS:
            set_path(merged, keys, value)
    config = rooted(parse(Config, merged))
    from uniav.config.relations import check_relations

    check_relations(config)
    return config


def rooted(config: Config) -> Config:
    """The configuration with the relative data paths of each benchmark joined onto its root.

    ``datasets.<benchmark>.tasks.<task>.{annotations, features, media}`` and
    ``datasets.paper.prompts.<task>`` are relative to ``datasets.<benchmark>.root`` (absolute
    paths stay as they are), so moving a benchmark is one setting:
    ``--set datasets.paper.root=/data/uniav``.
    """
    def join(root: str, path: str | None) -> str | None:
        return path if path is None or Path(path).is_absolute() else str(Path(root) / path)

    benchmarks = {}
    for name in ("synthetic", "paper"):
        bench = getattr(config.datasets, name)
        tasks = {task: dataclasses.replace(data, annotations=join(bench.root, data.annotations),
                                           features=join(bench.root, data.features),
                                           media=join(bench.root, data.media))
                 for task, data in bench.tasks.items()}
        changes: dict[str, Any] = {"tasks": tasks}
        if name == "paper":
            changes["prompts"] = {task: join(bench.root, path)
                                  for task, path in bench.prompts.items()}
        benchmarks[name] = dataclasses.replace(bench, **changes)
    return dataclasses.replace(config, datasets=dataclasses.replace(config.datasets, **benchmarks))


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


def set_path(data: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set ``data[k0][k1]...[kn] = value``, creating mappings on the way."""
    for key in keys[:-1]:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise ConfigError(f"override {'.'.join(keys)}: {key} is not a mapping")
    data[keys[-1]] = value


def config_hash(data: Any) -> str:
    """A stable SHA-256 (first 16 hex digits) of plain data or a dataclass."""
    text = json.dumps(to_plain(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples and paths to plain JSON-compatible data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
