"""The effective configuration: what Snakemake saw, written where every ``uniav`` command reads it.

Snakemake merges ``params.yaml`` (its ``configfile``) with ``--configfile`` files and
``--config key=value`` overrides.  The ``uniav`` sub-commands read a YAML file of their own
(``--config PATH``), so if the rules passed ``params.yaml`` the commands would not see a
``snakemake --config 'train={epochs: 3}'``.  Instead, at parse time the Snakefile

1. restores the types of ``--config`` values (:func:`command_line_values`): Snakemake parses a
   nested ``--config`` value with YAML's *base* loader, so ``train={epochs: 3}`` arrives as
   ``{"epochs": "3"}``; :func:`uniav.config.coerce` converts strings where the configuration
   expects a number, a boolean or null (never where it expects a string);
2. puts those values in the ``overrides:`` section too (:func:`with_command_line`), which is
   applied after the overlays - so ``snakemake --config scale=tiny 'train={epochs: 5}'`` trains 5
   epochs although ``scales.tiny`` sets its own, exactly as ``uniav --set`` does;
3. validates the result with the JSON schema and with :func:`uniav.config.config_from_dict`;
4. writes it to ``.snakemake/uniav/params-<hash>.yaml`` (:func:`write_effective_config`), where
   ``<hash>`` is the SHA-256 of its canonical JSON: two invocations with different overrides get
   different files, and re-running with the same configuration reuses the same file.  The write
   is atomic (temp file + rename), so concurrent Snakemake processes never see a partial file;

and every rule passes that path as ``--config``.  The path is *not* a rerun trigger: a change of
configuration reruns exactly the jobs whose settings (:mod:`uniav.pipeline.jobs`) changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from uniav.config import Config, coerce, config_from_dict, config_hash, deep_merge
from uniav.config.sections import OVERLAYS
from uniav.config.validation import partial_type
from uniav.fileio import atomic_write_text

#: Where the effective configuration files go (inside Snakemake's own state directory).
EFFECTIVE_CONFIG_DIR = Path(".snakemake") / "uniav"
_SELECTORS = {name for pair in OVERLAYS for name in pair}


def command_line_values(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split and type Snakemake's ``--config`` values.

    Args:
        values: ``workflow.config_settings.overwrite_config`` (leaves may be strings).

    Returns:
        ``(selectors, settings)``: the values of ``benchmark`` / ``protocol`` / ``scale`` and the
        overlays (applied before the overlays are chosen), and everything else, typed as the
        configuration expects.

    Raises:
        ConfigError: a value that does not convert, naming its key path.
    """
    typed = coerce(partial_type(Config), values)
    selectors = {key: value for key, value in typed.items() if key in _SELECTORS}
    settings = {key: value for key, value in typed.items() if key not in _SELECTORS}
    return selectors, settings


def with_command_line(raw: dict[str, Any], command_line: dict[str, Any]) -> dict[str, Any]:
    """The configuration Snakemake holds with its ``--config`` values made to win over the
    overlays: typed in place and repeated in ``overrides:`` (applied after the overlays).

    Args:
        raw: Snakemake's merged ``config`` (``params.yaml`` + ``--configfile`` + ``--config``).
        command_line: Snakemake's ``overwrite_config`` (the ``--config`` values).

    Returns:
        A new mapping.
    """
    selectors, settings = command_line_values(command_line)
    out = deep_merge(raw, {**selectors, **settings})
    if settings:
        out["overrides"] = deep_merge(raw.get("overrides") or {}, settings)
    return out


def write_effective_config(raw: dict[str, Any], directory: str | Path = EFFECTIVE_CONFIG_DIR
                           ) -> tuple[Path, Config]:
    """Validate a configuration mapping and write it to a content-addressed YAML file.

    Args:
        raw: the configuration as Snakemake holds it, after :func:`with_command_line`.
        directory: where to write; relative paths are relative to the working directory.

    Returns:
        ``(path, config)``: the file to pass as ``uniav ... --config PATH`` and the validated
        :class:`~uniav.config.Config` (with the selected overlays applied).

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
