"""Experiment tracking: MLflow on a SQLite store by default, or nothing.

One MLflow run per training job and per evaluation job, named after the experiment, with
flattened params, per-step losses and learning rate, per-epoch validation mAP, final test
metrics, artifacts and tags (git commit, task set, benchmark).  Metric names are stable
(``train/<task>/cls_loss``, ``val/<task>/average_mAP``, ``test/<task>/mAP_0.50`` ...) so runs
compare side by side in ``mlflow ui``.

SQLite and parallel jobs: a *new* store created by two processes at once can be corrupted, so
:func:`init_store` creates and migrates it once before jobs fan out (the Snakefile's
``onstart``); afterwards every write is retried with back-off while the database is locked, and
metrics are buffered and sent in batches to keep the number of transactions small.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

LOGGER = logging.getLogger(__name__)


class Tracker(Protocol):
    """What the engine needs from a tracker."""

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def flush(self) -> None: ...


class NullTracker:
    """A tracker that records nothing (tracking disabled, or non-zero ranks)."""

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def flush(self) -> None:
        pass


def default_tracking_uri(project_root: str | Path | None = None) -> str:
    """``sqlite:///<absolute project root>/mlflow.db`` (an absolute path, whatever the cwd)."""
    root = Path(project_root or os.getcwd()).resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def resolve_tracking_uri(configured: str | None, project_root: str | Path | None = None) -> str:
    """The URI to use: ``MLFLOW_TRACKING_URI`` from the environment, else the configured one,
    else :func:`default_tracking_uri`.  A relative ``sqlite:///`` path is made absolute."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured or default_tracking_uri(project_root)
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        root = Path(project_root or os.getcwd()).resolve()
        uri = prefix + str(root / uri[len(prefix):])
    return uri


def _retry(action: Callable[[], Any], what: str, attempts: int = 12) -> Any:
    """Run ``action``, retrying with jittered back-off while SQLite reports a lock."""
    delay = 0.2
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:  # mlflow wraps sqlalchemy errors in several types
            text = str(exc).lower()
            if "locked" not in text and "busy" not in text or attempt == attempts - 1:
                raise
            LOGGER.debug("%s: store busy, retrying (%s)", what, exc)
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 5.0)
    return None  # pragma: no cover


def init_store(uri: str, experiment_name: str) -> str:
    """Create (and migrate) the store and the experiment once; returns the experiment id.

    Call this before parallel jobs start so that they never race to create the schema.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)

    def ensure() -> str:
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(experiment_name)
        except Exception:  # created meanwhile by another process
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                raise
            return experiment.experiment_id

    return _retry(ensure, "create experiment")


def git_commit(directory: str | Path | None = None) -> str:
    """The current git commit (with ``-dirty`` if the tree has changes), or ``unknown``."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=directory, capture_output=True, text=True, timeout=10).stdout
        return commit + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists to ``a.b.0.c`` keys (values stringified by MLflow)."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(data, (list, tuple)) and data and isinstance(data[0], (dict, list, tuple)):
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = data
    return out


class MlflowTracker:
    """Records into one MLflow run (see module docs).  Use :func:`mlflow_run` to open one."""

    def __init__(self, client: Any, run_id: str, flush_every: int = 200):
        self.client = client
        self.run_id = run_id
        self.flush_every = flush_every
        self._pending: list[Any] = []

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):
            chunk = items[start:start + 100]
            _retry(lambda: self.client.log_batch(self.run_id, params=chunk), "log params")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, step or 0) for k, v in metrics.items())
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        while self._pending:
            chunk, self._pending = self._pending[:900], self._pending[900:]
            _retry(lambda: self.client.log_batch(self.run_id, metrics=chunk), "log metrics")

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        _retry(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path),
               "log artifact")

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        _retry(lambda: self.client.log_batch(self.run_id, tags=items), "set tags")


@contextlib.contextmanager
def mlflow_run(uri: str, experiment_name: str, run_name: str, tags: dict[str, str] | None = None
               ) -> Iterator[MlflowTracker]:
    """Open an MLflow run, yield a tracker, close it as FINISHED (or FAILED on an exception)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_id = init_store(uri, experiment_name)
    run = _retry(lambda: client.create_run(experiment_id, run_name=run_name, tags=tags or {}),
                 "create run")
    tracker = MlflowTracker(client, run.info.run_id)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    finally:
        try:
            tracker.flush()
        finally:
            _retry(lambda: client.set_terminated(run.info.run_id, status), "end run")


@contextlib.contextmanager
def open_tracker(enabled: bool, uri: str | None, experiment_name: str, run_name: str,
                 tags: dict[str, str] | None = None) -> Iterator[Tracker]:
    """An MLflow tracker when ``enabled``, else a :class:`NullTracker`."""
    if not enabled:
        yield NullTracker()
        return
    with mlflow_run(resolve_tracking_uri(uri), experiment_name, run_name, tags) as tracker:
        yield tracker
