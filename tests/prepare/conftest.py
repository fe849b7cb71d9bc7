"""Fixtures of the synthetic-data tests (names prefixed ``synth_``: other data tests share this
directory).

``synth_make_config(root, *overrides)`` loads the repository's ``params.yaml`` at ``scale=tiny``
with every synthetic path (annotations, media, features, prompts) moved under ``root``;
``synth_benchmark`` is the whole tiny benchmark, synthesized and extracted once per session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from uniav.config import Config, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]
SYNTH_TASKS = ("tal", "sed", "avel")


def synth_overrides(root: Path) -> list[str]:
    """``--set`` style overrides that put the tiny synthetic benchmark under ``root``."""
    overrides = ["scale=tiny", f"datasets.synthetic.root={root}",
                 f"prompts.output_dir={root}/prompts"]
    for task in SYNTH_TASKS:
        overrides += [f"datasets.synthetic.tasks.{task}.annotations={root}/{task}/annotations.json",
                      f"datasets.synthetic.tasks.{task}.media={root}/{task}/media",
                      f"datasets.synthetic.tasks.{task}.features={root}/{task}/features"]
    return overrides


@pytest.fixture(scope="session")
def synth_overrides_for() -> Callable[[Path], list[str]]:
    """Factory: ``root -> overrides`` (see :func:`synth_overrides`), e.g. for ``--set``."""
    return synth_overrides


@pytest.fixture(scope="session")
def synth_make_config() -> Callable[..., Config]:
    """Factory: ``(root, *extra_overrides) -> Config`` of a tiny synthetic project in ``root``."""
    def make(root: Path, *extra: str) -> Config:
        return load_config(REPO_ROOT / "params.yaml", synth_overrides(Path(root)) + list(extra))
    return make


@pytest.fixture(scope="session")
def synth_benchmark(tmp_path_factory, synth_make_config) -> Config:
    """The tiny synthetic benchmark (all tasks), synthesized and extracted once per session."""
    from uniav.prepare.extract import extract
    from uniav.prepare.synthetic import synthesize

    root = tmp_path_factory.mktemp("synth_benchmark")
    config = synth_make_config(root)
    synthesize(config, progress=False)
    extract(config, progress=False)
    return config
