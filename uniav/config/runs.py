"""Runs: one per experiment and seed (``seeds:``), and their names.

Without ``seeds`` (the default) every experiment has one run, with the top-level ``seed``.  With
``seeds: [s1, s2, ...]`` every experiment runs once per seed.  The run of experiment ``E`` with
seed ``s`` is named ``E`` when ``s`` is the top-level ``seed`` (as resolved: after the overlays;
so the default layout - ``results/models/E/``, ``results/metrics/experiments/E.json`` ... - is
unchanged), otherwise ``E.seed<s>``.  Experiment names never contain a dot (``[a-z][a-z0-9_]*``),
so a run name parses back unambiguously (:func:`run_of`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from uniav.errors import ConfigError

if TYPE_CHECKING:
    from uniav.config.sections import Config

#: ``<experiment>.seed<seed>``.
_RUN = re.compile(r"^(?P<experiment>[a-z][a-z0-9_]*)\.seed(?P<seed>0|[1-9][0-9]*)$")


def run_seeds(config: Config) -> list[int]:
    """The seeds every experiment runs with: ``seeds``, or ``[seed]`` when it is not set."""
    return list(config.seeds) if config.seeds is not None else [config.seed]


def run_name(experiment: str, seed: int, primary_seed: int) -> str:
    """``experiment`` for the primary seed, else ``<experiment>.seed<seed>``."""
    return experiment if seed == primary_seed else f"{experiment}.seed{seed}"


def experiment_runs(config: Config, experiment: str) -> list[tuple[str, int]]:
    """``(run name, seed)`` of each run of one experiment, in ``seeds`` order."""
    return [(run_name(experiment, seed, config.seed), seed) for seed in run_seeds(config)]


def all_runs(config: Config) -> list[tuple[str, str, int]]:
    """``(run name, experiment, seed)`` of every run: experiments in ``experiments:`` order,
    then seeds in ``seeds`` order."""
    return [(name, experiment, seed) for experiment in config.experiments
            for name, seed in experiment_runs(config, experiment)]


def run_of(config: Config, name: str) -> tuple[str, int]:
    """``(experiment, seed)`` of a run name.

    Raises:
        ConfigError: ``name`` is not a run of this configuration.
    """
    match = _RUN.match(name)
    experiment, seed = ((match["experiment"], int(match["seed"])) if match
                        else (name, config.seed))
    if (experiment not in config.experiments or seed not in run_seeds(config)
            or run_name(experiment, seed, config.seed) != name):
        known = ", ".join(run for run, _, _ in all_runs(config))
        raise ConfigError(f"no run named {name!r} (runs: {known})")
    return experiment, seed


def check_seeds(seeds: list[int] | None) -> None:
    """``seeds``: unique (types, ranges and a non-empty list are the schema's).

    Raises:
        ConfigError: naming the key and the repeated seed.
    """
    if seeds is None:
        return
    if not seeds:
        raise ConfigError("seeds: an empty list; leave it out (null) for one run with `seed`")
    for i, seed in enumerate(seeds):
        if seed in seeds[:i]:
            raise ConfigError(f"seeds[{i}]: seed {seed} is listed twice; each seed is one run "
                              f"of every experiment")
