"""Shared fixtures.  Tests run on CPU, offline, from the repository root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Hand-checked expected values the tests compare against (detection AP cases, NMS cases, a
#: small model run through the released implementation): a copy of the team's shared
#: reference folder, kept in the repository so that a clean clone tests on its own.
SHARED_REFERENCE = REPO_ROOT / "tests" / "fixtures" / "reference"

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT
