"""Helpers for the workflow tests: a temporary copy of the workflow and a tool environment.

The end-to-end fixture (``pipeline_project``, session scope) builds one tiny project in a git
checkout and runs it once with ``dvc repro`` (each DVC stage runs a Snakemake phase target);
several tests then inspect that single run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
#: What a project copy needs: the workflow, its configuration, and the package sources the DVC
#: stages list as dependencies (the jobs run the installed package); .gitignore, so that a
#: commit of the copy holds what the repository's would.
WORKFLOW_FILES = ("Snakefile", "workflow", "params.yaml", "dvc.yaml", ".dvcignore", ".gitignore",
                  "uniav")


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for snakemake/dvc/uniav subprocesses: the venv first on PATH, offline,
    no telemetry, no inherited tracking URI or profile."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "SNAKEMAKE_PROFILE", "CUDA_VISIBLE_DEVICES")}
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
                "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "PYTHONDONTWRITEBYTECODE": "1"})
    env.update(extra)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, return the completed process (stdout and stderr merged)."""
    result = subprocess.run(command, cwd=cwd, env=env or tool_env(), timeout=timeout,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n"
                             f"{result.stdout[-6000:]}")
    return result


def copy_workflow(destination: Path, edit_params: Callable[[dict[str, Any]], None] | None = None
                  ) -> Path:
    """Copy the workflow files of the repository into ``destination``; optionally edit its
    params.yaml (parsed, edited in place, written back)."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, destination / name)
    if edit_params is not None:
        params = yaml.safe_load((destination / "params.yaml").read_text())
        edit_params(params)
        (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return destination


def tiny_params(params: dict[str, Any]) -> None:
    """The test configuration: scale tiny, two three-task experiments (they become ready at
    the same moment, so on two cores their training jobs overlap), 1 + 1 epochs set at top
    level (so the DVC test can change train.epochs), UniAV's cross-task scores, tracking on."""
    params["scale"] = "tiny"
    tiny_train = params["scales"]["tiny"]["train"]
    tiny_train.pop("epochs", None)
    tiny_train.pop("warmup_epochs", None)
    params["train"]["epochs"] = 1
    params["train"]["warmup_epochs"] = 1
    params["experiments"] = {name: params["experiments"][name]
                             for name in ("naive_multi", "uniav")}
    params["tables"]["main"] = [
        {"label": "Naive multi-task", "experiments": ["naive_multi"]},
        {"label": "UniAV", "experiments": ["uniav"]}]
    params["tables"]["ablation"] = [{"label": "w/o task experts",
                                     "experiments": ["naive_multi"]}]
    # beyond the main table: only the cross-task scores of UniAV (evaluation only, cheap); the
    # open-set and fine-tuning experiments are planned by test_workflow.py and trained by
    # tests/engine (their tables: tests/report)
    params["benchmarks"]["synthetic"] = {"tables": {"cross_task": [
        {"label": "UniAV", "experiments": ["uniav"]}]}}
    params["tracking"]["enabled"] = True
    params["tracking"]["uri"] = None


def init_dvc_project(root: Path, env: dict[str, str]) -> None:
    """``git init`` and ``dvc init`` in a project copy, with the repository's .dvc/config (its
    default remote: ``<root>/../uniav-dvc-storage``)."""
    run(["git", "init", "-q"], root, env)
    run(["dvc", "init", "-q"], root, env)
    shutil.copy2(REPO_ROOT / ".dvc" / "config", root / ".dvc" / "config")


@dataclass
class PipelineRun:
    """One end-to-end run of the tiny project (see :func:`pipeline_project`)."""

    root: Path
    env: dict[str, str]
    repro_output: str
    repro_seconds: float
    mtimes: dict[str, float]
    runs: list[Any] = field(default_factory=list)
    #: results/tables/* of the first run (file name -> text), before any test changes the project
    tables: dict[str, str] = field(default_factory=dict)


def output_mtimes(root: Path) -> dict[str, float]:
    """mtime of every file under resources/ and results/ (relative path -> mtime)."""
    found = {}
    for top in ("resources", "results"):
        for path in (root / top).rglob("*"):
            if path.is_file() and path.name != ".gitignore":
                found[str(path.relative_to(root))] = path.stat().st_mtime
    return found


def table_texts(root: Path) -> dict[str, str]:
    """Every file under results/tables (file name -> text)."""
    return {path.name: path.read_text() for path in sorted((root / "results" / "tables").iterdir())
            if path.is_file()}


def mlflow_runs(root: Path, experiment_name: str = "uniav") -> list[Any]:
    """Every MLflow run of the project's SQLite store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, "the MLflow experiment was never created"
    return client.search_runs([experiment.experiment_id], max_results=1000)


@pytest.fixture(scope="session")
def pipeline_project(tmp_path_factory) -> PipelineRun:
    """A tiny project in a fresh git + DVC checkout, run once with ``dvc repro``.

    A global Snakemake profile (SNAKEMAKE_PROFILE) sets one thread per training, evaluation
    and extraction job, so on two cores two training jobs run at the same time (the MLflow
    tests check that both were recorded).
    """
    root = copy_workflow(tmp_path_factory.mktemp("project"), tiny_params)
    profile = root.parent / "test-profile"
    profile.mkdir()
    (profile / "profile.yaml").write_text(yaml.safe_dump(
        {"set-threads": {"train": 1, "evaluate": 1, "extract_features": 1}}))
    env = tool_env(SNAKEMAKE_PROFILE=str(profile))
    init_dvc_project(root, env)
    started = time.perf_counter()
    result = run(["dvc", "repro"], root, env, timeout=900)
    seconds = time.perf_counter() - started
    print(f"\n[pipeline] first `dvc repro` of the tiny project: {seconds:.1f} s")
    return PipelineRun(root=root, env=env, repro_output=result.stdout, repro_seconds=seconds,
                       mtimes=output_mtimes(root), runs=mlflow_runs(root),
                       tables=table_texts(root))


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A one-node SLURM cluster on this machine, up while the requesting module runs.

    Needs root (it may apt-get install slurmctld, slurmd, slurm-client and munge, writes
    /etc/slurm/slurm.conf and starts munged, slurmctld and slurmd); see
    tests/pipeline/slurm_cluster.py.  Skips, saying why, only when not root.
    """
    from tests.pipeline.slurm_cluster import NEEDS_ROOT, is_root, local_slurm_cluster

    if not is_root():
        pytest.skip(NEEDS_ROOT)
    with local_slurm_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster
