"""The effective configuration: what Snakemake saw, written where every ``uniav`` command reads it.

Snakemake merges ``params.yaml`` (its ``configfile``) with ``--configfile`` files and
``--config key=value`` overrides.  The ``uniav`` sub-commands read a YAML file of their own
(``--config PATH``), so if the rules passed ``params.yaml`` the commands would not see a
``snakemake --config 'train={epochs: 3}'``.  Instead, at parse time the Snakefile

1. restores the types of ``--config`` values (:func:`coerce_types`): Snakemake parses a nested
   ``--config`` value with YAML's *base* loader, so ``train={epochs: 3}`` arrives as
   ``{"epochs": "3"}``; strings are converted where the configuration expects a number, a
   boolean or null (never where it expects a string);
2. makes command-line values (``--config``, ``--configfile``) win over the selected scale, as
   ``uniav --set`` does (:func:`pin_over_scale`): ``snakemake --config scale=tiny
   'train={epochs: 5}'`` trains 5 epochs although ``scales.tiny`` sets its own;
3. validates the result with the JSON schema and with :func:`uniav.config.config_from_dict`;
4. writes it to ``.snakemake/uniav/params-<hash>.yaml`` (:func:`write_effective_config`), where
   ``<hash>`` is the SHA-256 of its canonical JSON: two invocations with different overrides get
   different files, and re-running with the same configuration reuses the same file.  The write
   is atomic (temp file + rename), so concurrent Snakemake processes never see a partial file;

and every rule passes that path as ``--config``.  The path is *not* a rerun trigger: a change of
configuration reruns exactly the rules whose ``params:`` (the config values they use) changed.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from uniav.config import (Config, ExperimentConfig, ModelConfig, TrainConfig,
                          config_from_dict, config_hash, deep_merge)
from uniav.errors import ConfigError
from uniav.fileio import atomic_write_text

#: Where the effective configuration files go (inside Snakemake's own state directory).
EFFECTIVE_CONFIG_DIR = Path(".snakemake") / "uniav"

#: Sections typed ``dict[str, Any]`` in :class:`~uniav.config.Config` whose keys do have types.
_PARTIAL_SECTIONS: dict[tuple[type, str], Any] = {
    (Config, "model"): ModelConfig,
    (ExperimentConfig, "model"): ModelConfig,
    (ExperimentConfig, "train"): TrainConfig,
    (Config, "scales"): dict[str, Config],
}
_NULL_WORDS = ("null", "Null", "NULL", "~", "None")


def coerce_types(value: Any, tp: Any = Config) -> Any:
    """Convert strings to the number, boolean or null the configuration expects there.

    Args:
        value: plain data (a configuration mapping or part of it).
        tp: the type expected at this place (default: the whole :class:`~uniav.config.Config`).

    Returns:
        A copy with converted leaves; anything that does not convert is returned unchanged (so
        the validation that follows reports it with its key path).
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        hints = typing.get_type_hints(tp)
        out = {}
        for key, item in value.items():
            hint = _PARTIAL_SECTIONS.get((tp, key), hints.get(key, Any))
            out[key] = coerce_types(item, hint)
        return out
    if origin is dict and isinstance(value, dict):
        return {key: coerce_types(item, args[1]) for key, item in value.items()}
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return [coerce_types(item, args[i]) if i < len(args) else item
                    for i, item in enumerate(value)]
        return [coerce_types(item, args[0]) for item in value]
    if not isinstance(value, str):
        return value
    if origin in (Union, types.UnionType):
        if type(None) in args and value in _NULL_WORDS:
            return None
        if str in args or any(typing.get_origin(a) is Literal for a in args):
            return value
        for arg in args:
            converted = coerce_types(value, arg)
            if converted is not value:
                return converted
        return value
    if tp in (int, float, bool):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if tp is bool and isinstance(parsed, bool):
            return parsed
        if tp is int and isinstance(parsed, int) and not isinstance(parsed, bool):
            return parsed
        if tp is float and isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
            return float(parsed)
    return value


def pin_over_scale(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Copy command-line overrides into the selected scale so they win over it.

    :func:`uniav.config.config_from_dict` merges ``scales.<scale>`` on top of the configuration;
    ``uniav --set key=value`` is applied after that.  Snakemake has already merged its
    ``--config``/``--configfile`` values into the configuration, *under* the scale; writing them
    into ``scales.<scale>`` as well restores the ``--set`` order.

    Args:
        raw: the merged configuration (types restored).
        overrides: what came from the command line (Snakemake's ``overwrite_config``).

    Returns:
        ``raw`` itself when no scale is selected or nothing needs pinning, else a new mapping.
    """
    scale = raw.get("scale", "default")
    pinned = {key: value for key, value in (overrides or {}).items()
              if key not in ("scale", "scales")}
    if scale == "default" or not pinned:
        return raw
    scales = raw.get("scales") or {}
    if not isinstance(scales, dict) or not isinstance(scales.get(scale) or {}, dict):
        raise ConfigError(f"scales.{scale}: expected a mapping")
    out = copy.deepcopy(raw)
    out["scales"] = dict(scales)
    out["scales"][scale] = deep_merge(scales.get(scale) or {}, pinned)
    return out


def write_effective_config(raw: dict[str, Any], directory: str | Path = EFFECTIVE_CONFIG_DIR
                           ) -> tuple[Path, Config]:
    """Validate a configuration mapping and write it to a content-addressed YAML file.

    Args:
        raw: the configuration as Snakemake holds it (``params.yaml`` merged with overrides,
            types restored by :func:`coerce_types`).
        directory: where to write; relative paths are relative to the working directory.

    Returns:
        ``(path, config)``: the file to pass as ``uniav ... --config PATH`` and the validated
        :class:`~uniav.config.Config` (with the selected scale applied).

    Raises:
        ConfigError: naming the key path of the first problem.
    """
    config = config_from_dict(raw)
    text = ("# Effective configuration written by the Snakefile (params.yaml + --config/--configfile).\n"
            "# Content-addressed: do not edit; see docs/pipeline.md.\n"
            + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    path = Path(directory) / f"params-{config_hash(raw)}.yaml"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return path, config
