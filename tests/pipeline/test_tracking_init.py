"""`uniav tracking-init`: creates the SQLite store and the experiment once, idempotently."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.pipeline.conftest import REPO_ROOT, run


def _params(tmp_path: Path, **tracking) -> Path:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["tracking"].update(tracking)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_creates_store_and_experiment_once(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    params = _params(tmp_path, experiment_name="pipeline-test")
    first = run(["uniav", "tracking-init", "--config", str(params)], tmp_path).stdout
    second = run(["uniav", "tracking-init", "--config", str(params)], tmp_path).stdout
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert f"tracking store {uri}" in first and "ready" in second
    experiments = MlflowClient(tracking_uri=uri).search_experiments()
    assert [e.name for e in experiments].count("pipeline-test") == 1
    (experiment,) = [e for e in experiments if e.name == "pipeline-test"]
    # the classic runs table, not the GenAI pages; artifacts beside the database
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert (f"runs table: http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs"
            "?workflowType=machine_learning") in first
    assert experiment.artifact_location == str(tmp_path / "mlruns" / "pipeline-test")


def test_disabled_tracking_touches_nothing(tmp_path: Path) -> None:
    params = _params(tmp_path, enabled=False)
    output = run(["uniav", "tracking-init", "--config", str(params)], tmp_path).stdout
    assert "tracking disabled" in output
    assert not (tmp_path / "mlflow.db").exists()
