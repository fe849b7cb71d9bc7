"""Experiment tracking: MLflow on a SQLite store by default, or nothing.

One MLflow run per training job and per evaluation job, named after the experiment, with
flattened params, per-step losses and learning rate, per-epoch validation mAP, final test
metrics, artifacts and tags (git commit, task set, benchmark).  Metric names are stable
(``train/<task>/cls_loss``, ``val/<task>/average_mAP``, ``test/<task>/mAP_0.50`` ...) so runs
compare side by side in ``mlflow ui``.

SQLite and parallel jobs: a *new* store created by two processes at once can be corrupted (or
fail with ``duplicate column name``, both running the schema migrations), so :func:`init_store`
creates and migrates it under an inter-process file lock (:func:`store_lock`), whoever launches
the jobs; the Snakefile's ``onstart`` still creates it once up front.  Afterwards every write is
retried with back-off while the database is locked, and metrics are buffered and sent in
batches to keep the number of transactions small.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import subprocess
import sys
import tempfile
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


def store_lock_path(uri: str) -> Path:
    """The lock file that serialises creating and migrating the store at ``uri``: beside the
    database for ``sqlite:///PATH`` (``PATH.lock``), else one per URI in the temp directory."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and uri[len(prefix):] not in ("", ":memory:"):
        database = Path(uri[len(prefix):].split("?", 1)[0])
        return database.with_name(database.name + ".lock")
    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "uniav-tracking-locks" / f"{digest}.lock"


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive inter-process lock (``flock``) for the store at ``uri``; the kernel
    releases it when the process ends, so a killed job never leaves it held."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX platforms: no inter-process lock
        yield
        return
    path = store_lock_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def init_store(uri: str, experiment_name: str, *, upgrade: bool = False) -> str:
    """Create (and migrate) the store and the experiment; returns the experiment id.

    Safe to call from many processes at once: the store is opened (which creates and migrates
    its schema) and the experiment created under :func:`store_lock`.

    Args:
        uri: the tracking URI.
        experiment_name: the MLflow experiment.
        upgrade: upgrade a store with an out-of-date schema (``mlflow db upgrade``) instead of
            failing.
    """
    with store_lock(uri):
        try:
            return _init_store_locked(uri, experiment_name)
        except Exception as exc:  # mlflow raises MlflowException for an old schema
            if not upgrade or "out-of-date database schema" not in str(exc).lower():
                raise
        LOGGER.info("upgrading the tracking store schema of %s", uri)
        subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", uri], check=True)
        return _init_store_locked(uri, experiment_name)


def _init_store_locked(uri: str, experiment_name: str) -> str:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)  # opens the store: creates/migrates the schema

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

    experiment_id = init_store(uri, experiment_name)  # first: opening a new store migrates it
    client = MlflowClient(tracking_uri=uri)
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
