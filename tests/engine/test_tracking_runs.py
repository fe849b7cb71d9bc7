"""MLflow runs of `uniav train` + `uniav evaluate`: one complete run per experiment, also after
a kill and a resume; asserted through the REST client of a real `mlflow server`.

The server (module scope, on 127.0.0.1, started and stopped by PID) serves one SQLite store.
The jobs write either through the server (``server``: the mode the SLURM profile recommends)
or straight into the same SQLite file (``sqlite``: the default of a local project).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.engine.conftest import REPO_ROOT, tiny_raw

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on a SQLite store: yields ``(http URI, sqlite URI)``."""
    root = tmp_path_factory.mktemp("mlflow-server")
    database = root / "mlflow.db"
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job-runner processes
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(root / "server.log", "w")
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{database}",
         "--artifacts-destination", str(root / "mlartifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n"
                                   f"{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, f"sqlite:///{database}"
    finally:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(server.pid, sig)  # the server and the uvicorn worker it started
            except ProcessLookupError:
                break
            try:
                server.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


def _client(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def _project(tmp_path: Path, planted_root: Path, uri: str, name: str, **overrides) -> Path:
    raw = tiny_raw(planted_root, **{"tracking.enabled": True, "tracking.uri": uri,
                                    "tracking.experiment_name": name, **overrides})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    return params


def _train_args(params: Path, root: Path, experiment: str) -> list[str]:
    return ["train", "--config", str(params), "--experiment", experiment,
            "--output-dir", str(root / "out"), "--work-dir", str(root / "work"),
            "--prompts-dir", str(root.parent / "planted_prompts"), "--no-progress",
            "--threads", "1"]


def _evaluate_args(params: Path, root: Path, experiment: str, *extra: str) -> list[str]:
    return ["evaluate", "--config", str(params), "--experiment", experiment,
            "--weights", str(root / "out" / "model.safetensors"),
            "--predictions-dir", str(root / "predictions"),
            "--metrics", str(root / f"{experiment}.json"), "--no-progress", "--threads", "1",
            *extra]


@pytest.fixture
def project(tmp_path, planted_root, monkeypatch):
    """A run directory whose prompts sit where :func:`_train_args` looks for them."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "planted_prompts").symlink_to(planted_root / "prompts")
    root = tmp_path / "run"
    root.mkdir()
    return root


def _uniav(argv: list[str]) -> None:
    from uniav.cli import main

    assert main(argv) == 0


def _runs(client, name: str) -> list:
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], max_results=100)


def _steps(client, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for info in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return found


@pytest.mark.parametrize("mode", ["sqlite", "server"])
def test_train_and_evaluate_make_one_complete_run(mode, mlflow_server, project, tmp_path,
                                                  planted_root):
    url, sqlite_uri = mlflow_server
    name = f"complete-{mode}"
    params = _project(tmp_path, planted_root, url if mode == "server" else sqlite_uri, name)
    _uniav(_train_args(params, project, "uniav"))
    _uniav(_evaluate_args(params, project, "uniav"))

    client = _client(url)  # REST, whichever way the jobs wrote
    runs = _runs(client, name)
    assert len(runs) == 1, [r.info.run_name for r in runs]
    run = runs[0]
    run_id, data = run.info.run_id, run.data
    assert run.info.run_name == "uniav" and run.info.status == "FINISHED"

    training = json.loads((project / "out" / "training.json").read_text())
    metrics = json.loads((project / "uniav.json").read_text())
    # standard tags and ours
    tags = data.tags
    assert re.fullmatch(r"[0-9a-f]{40}", tags["mlflow.source.git.commit"])
    assert tags["mlflow.source.name"] == "uniav train"
    assert tags["mlflow.runName"] == "uniav"
    assert tags["experiment"] == "uniav" and tags["seed"] == "2024"
    assert tags["protocol"] == "clean" and tags["config_hash"] == training["config_hash"]
    assert tags["evaluation.status"] == "FINISHED"
    # the effective settings
    assert data.params["seed"] == "2024" and data.params["protocol"] == "clean"
    assert data.params["experiment.train.epochs"] == "2"
    assert data.params["experiment.model.task_experts"] == "True"
    # curves, validation and test metrics, on one step axis (iterations done)
    total = training["iterations"]
    per_epoch = training["iterations_per_epoch"]
    assert _steps(client, run_id, "train/lr") == list(range(1, total + 1))
    val_steps = list(range(per_epoch, total + 1, per_epoch))
    assert _steps(client, run_id, "val/tal/average_mAP") == val_steps
    assert [e["iteration"] for e in training["history"]] == val_steps
    assert [e["epoch"] for e in training["history"]] == [1, 2, 3]
    assert [m.value for m in client.get_metric_history(run_id, "epoch")] == [1, 2, 3]
    best_step = val_steps[training["best_epoch"] - 1]
    assert _steps(client, run_id, "val/best_mean_average_mAP") == [best_step]
    for task in ("tal", "sed", "avel"):
        assert f"train/{task}/final_loss" in data.metrics
        assert data.metrics[f"test/{task}/average_mAP"] == pytest.approx(
            metrics["tasks"][task]["average_mAP"])
        assert _steps(client, run_id, f"test/{task}/average_mAP") == [best_step]
    assert "test/mean_average_mAP" in data.metrics
    # artifacts: configuration, data report (training and test splits), history, figures
    artifacts = _artifacts(client, run_id)
    assert {"config/effective.yaml", "data_report.json", "training/training.json",
            "training/curves.csv", "uniav.json", "figures/training_curves.png",
            "figures/per_class_ap_tal.png", "figures/timelines_sed.png"} <= artifacts
    report = client.download_artifacts(run_id, "data_report.json", str(tmp_path))
    assert set(json.loads(Path(report).read_text())["tal"]) == {"train", "validation", "test"}
    curves = client.download_artifacts(run_id, "training/curves.csv", str(tmp_path))
    rows = list(csv.DictReader(io.StringIO(Path(curves).read_text())))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [int(r["iteration"]) for r in rows] == val_steps
    # the weights: a logged model of the run, registered as a model version
    (output,) = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.source_run_id == run_id and str(model.status).endswith("READY")
    assert output.step == best_step and tags["uniav.model_id"] == model.model_id
    assert {f.path for f in client.list_logged_model_artifacts(model.model_id)} == \
        {"model.safetensors", "README.md"}
    from mlflow.artifacts import download_artifacts

    downloaded = Path(download_artifacts(f"{model.artifact_location}/model.safetensors",
                                         dst_path=str(tmp_path / "model"), tracking_uri=url))
    exported = project / "out" / "model.safetensors"
    assert hashlib.sha256(downloaded.read_bytes()).digest() == \
        hashlib.sha256(exported.read_bytes()).digest()
    (version,) = client.search_model_versions(f"name='{name}-uniav'")
    assert version.run_id == run_id and version.source == model.artifact_location
    from uniav.engine.inference import load_model_from_weights

    _, metadata = load_model_from_weights(downloaded)  # safetensors: no pickle involved
    assert metadata["mlflow_run_id"] == run_id == training["mlflow_run_id"]


#: Runs `uniav train` and stops it for good at the start of iteration N (argv[1]): the N-1
#: iterations before are done and their metrics buffered; the file argv[2] says it is there.
STALL = """
import sys, time
from pathlib import Path
from uniav.engine.stepper import TrainingStep

stall_at, ready = int(sys.argv[1]), Path(sys.argv[2])
original, calls = TrainingStep.iteration, []

def iteration(self, tasks, step):
    calls.append(1)
    if len(calls) == stall_at:
        ready.touch()
        time.sleep(600)
    return original(self, tasks, step)

TrainingStep.iteration = iteration
from uniav.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("mode, kill", [("sqlite", signal.SIGTERM), ("server", signal.SIGKILL)],
                         ids=["sqlite-SIGTERM", "server-SIGKILL"])
def test_a_killed_training_resumes_its_run(mode, kill, mlflow_server, project, tmp_path,
                                           planted_root):
    """Killed at iteration 8 (checkpoint at 6: steps 7 is logged - on SIGTERM - but recomputed
    by the resume); the resume continues the same run with every step once."""
    url, sqlite_uri = mlflow_server
    name = f"resume-{mode}"
    params = _project(tmp_path, planted_root, url if mode == "server" else sqlite_uri, name,
                      **{"train.epochs": 4})
    ready = tmp_path / "stalled"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    job = subprocess.Popen([sys.executable, "-c", STALL, "8", str(ready),
                            *_train_args(params, project, "uniav")], cwd=REPO_ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert job.poll() is None, job.communicate()[0][-4000:]
            assert time.monotonic() < deadline, "the training never reached iteration 8"
            time.sleep(0.2)
        job.send_signal(kill)
        output = job.communicate(timeout=120)[0]
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    client = _client(url)
    (killed,) = _runs(client, name)
    if kill == signal.SIGTERM:
        assert job.returncode == 128 + signal.SIGTERM, output[-4000:]
        assert killed.info.status == "KILLED"
        assert _steps(client, killed.info.run_id, "train/lr") == list(range(1, 8))
    else:
        assert job.returncode == -signal.SIGKILL
        assert killed.info.status == "RUNNING"  # nothing can run on SIGKILL: until resumed
        assert _steps(client, killed.info.run_id, "train/lr") == list(range(1, 7))
    assert json.loads((project / "work" / "latest.json").read_text())["iteration"] == 6

    _uniav(_train_args(params, project, "uniav"))
    (run,) = _runs(client, name)
    assert run.info.run_id == killed.info.run_id
    assert run.info.status == "FINISHED" and run.data.tags["uniav.attempts"] == "2"
    training = json.loads((project / "out" / "training.json").read_text())
    total, per_epoch = training["iterations"], training["iterations_per_epoch"]
    assert total == 10 and per_epoch == 2
    assert _steps(client, run.info.run_id, "train/lr") == list(range(1, total + 1))
    assert _steps(client, run.info.run_id, "val/mean_average_mAP") == \
        list(range(per_epoch, total + 1, per_epoch))
    for key in run.data.metrics:
        steps = _steps(client, run.info.run_id, key)
        assert not [s for s, n in Counter(steps).items() if n > 1], key
    experiment = client.get_experiment_by_name(name)
    assert not client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")


def test_evaluation_with_other_settings_gets_a_child_run(mlflow_server, project, tmp_path,
                                                         planted_root):
    """The training's run keeps the test metrics of its own settings; an evaluation with
    other settings is a run of its own, a child of the training's."""
    url, sqlite_uri = mlflow_server
    name = "child"
    params = _project(tmp_path, planted_root, sqlite_uri, name, **{"train.epochs": 1})
    _uniav(_train_args(params, project, "single_sed"))
    _uniav(_evaluate_args(params, project, "single_sed", "--set", "eval.min_score=0.01"))
    client = _client(url)
    runs = {r.info.run_name: r for r in _runs(client, name)}
    assert sorted(runs) == ["single_sed", "single_sed/evaluate"]
    parent, child = runs["single_sed"], runs["single_sed/evaluate"]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.info.status == parent.info.status == "FINISHED"
    assert "test/sed/average_mAP" in child.data.metrics
    assert "test/sed/average_mAP" not in parent.data.metrics
    assert child.data.params["eval.min_score"] == "0.01"


def test_tables_become_the_experiment_description(tmp_path, planted_root, monkeypatch):
    from tests.engine.conftest import tiny_config
    from uniav.tracking import init_store, publish_tables, runs_table_url

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tiny_config(planted_root, **{"tracking.uri": uri})
    table = tmp_path / "main.md"
    table.write_text("## Main\n\n| Method | TAL avg |\n|:---|---:|\n| UniAV | 12.34 |\n")
    assert publish_tables(config, [table]) is None  # no store: none is created for the tables
    assert not (tmp_path / "mlflow.db").exists()
    experiment_id = init_store(uri, config.tracking.experiment_name)
    assert publish_tables(config, [table, tmp_path / "main.csv"]) == experiment_id
    experiment = _client(uri).get_experiment(experiment_id)
    assert "| UniAV | 12.34 |" in experiment.tags["mlflow.note.content"]
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert runs_table_url(experiment_id) == (
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs"
        "?workflowType=machine_learning")


def test_sigterm_raises_and_handlers_come_back():
    from uniav.tracking import SignalExit, signals_raise

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SignalExit) as caught, signals_raise():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert caught.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
