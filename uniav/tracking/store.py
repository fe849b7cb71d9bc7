"""The tracking store: its URI, its safe creation by concurrent jobs, retries, the UI's URL.

SQLite and parallel jobs: a *new* store created by two processes at once can be corrupted (or
fail with ``duplicate column name``, both running the schema migrations), so :func:`init_store`
creates and migrates it under an inter-process file lock (:func:`store_lock`), whoever launches
the jobs; the Snakefile's ``onstart`` still creates it once up front.  Afterwards every write is
retried with back-off while the database is locked (:func:`retry`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from uniav.fileio import exclusive_lock

LOGGER = logging.getLogger(__name__)

#: Experiment tag of MLflow 3 that says what kind of work an experiment holds; the UI uses it
#: to choose between its GenAI pages and the classic runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


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


def sqlite_database(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URI, else None."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and uri[len(prefix):] not in ("", ":memory:"):
        return Path(uri[len(prefix):].split("?", 1)[0])
    return None


def retry(action: Callable[[], Any], what: str, attempts: int = 12) -> Any:
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
    database = sqlite_database(uri)
    if database is not None:
        return database.with_name(database.name + ".lock")
    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "uniav-tracking-locks" / f"{digest}.lock"


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive inter-process lock (``flock``) for the store at ``uri``; the kernel
    releases it when the process ends, so a killed job never leaves it held."""
    path = store_lock_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path):
        yield


def client_for(uri: str) -> Any:
    """An ``MlflowClient`` on ``uri`` (telemetry off)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def init_store(uri: str, experiment_name: str, *, upgrade: bool = False) -> str:
    """Create (and migrate) the store and the experiment; returns the experiment id.

    Safe to call from many processes at once: the store is opened (which creates and migrates
    its schema) and the experiment created under :func:`store_lock`.  The experiment is tagged
    as classic model development (:data:`EXPERIMENT_KIND_TAG`).

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
    client = client_for(uri)  # opens the store: creates/migrates the schema

    def ensure() -> str:
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            try:
                return client.create_experiment(
                    experiment_name, artifact_location=artifact_location(uri, experiment_name),
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            except Exception:  # created meanwhile by another process
                experiment = client.get_experiment_by_name(experiment_name)
                if experiment is None:
                    raise
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG,
                                      EXPERIMENT_KIND)
        return experiment.experiment_id

    return retry(ensure, "create experiment")


def artifact_location(uri: str, experiment_name: str) -> str | None:
    """Where a new experiment's artifacts go: for a SQLite store, ``mlruns/<name>/`` beside the
    database (MLflow's default, ``./mlruns`` of whatever directory the first job ran in,
    would scatter them); for a server, its own choice (None)."""
    database = sqlite_database(uri)
    if database is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment_name).strip("._") or "experiment"
    return str(database.resolve().parent / "mlruns" / safe)


def runs_table_url(experiment_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """The address that opens ``mlflow ui``/``mlflow server`` (MLflow 3.17) directly on the
    classic runs table of an experiment: the ``runs`` tab, with ``workflowType=machine_learning``
    (without it the UI opens on its GenAI pages, "Model training" being a toggle)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
