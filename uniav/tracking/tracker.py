"""What the engine logs through: the :class:`Tracker` protocol and its two implementations.

Metric names are stable (``train/<task>/cls_loss``, ``val/<task>/average_mAP``,
``test/<task>/mAP_0.50`` ...) so runs compare side by side in ``mlflow ui``; metrics are
buffered and sent in batches to keep the number of store transactions small, and every write is
retried while SQLite is locked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from uniav.tracking.signals import is_interruption, signals_raise
from uniav.tracking.store import client_for, init_store, resolve_tracking_uri, retry

LOGGER = logging.getLogger(__name__)


class Tracker(Protocol):
    """What the engine needs from a tracker.  ``run_id`` is the MLflow run (None: none)."""

    run_id: str | None

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def flush(self) -> None: ...


class NullTracker:
    """A tracker that records nothing (tracking disabled, or non-zero ranks)."""

    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def log_dict(self, data: Any, artifact_file: str) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def flush(self) -> None:
        pass


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
    """Records into one MLflow run.  Use :func:`mlflow_run` (or :mod:`uniav.tracking.runs`) to
    open one.

    Attributes:
        default_step: the step of metrics logged without one.
        model_id: a logged model the metrics are also attributed to (MLflow 3), if any.
    """

    def __init__(self, client: Any, run_id: str, experiment_id: str | None = None,
                 flush_every: int = 200):
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.flush_every = flush_every
        self.default_step = 0
        self.model_id: str | None = None
        self._pending: list[Any] = []
        #: metric key -> last step already in the store (a reopened run logs only later steps)
        self._logged_through: dict[str, int] = {}

    def skip_logged_steps(self) -> dict[str, int]:
        """Read the last recorded step of every metric of the run: later calls drop values at
        or before it, so a resumed training that recomputes a few iterations never writes a
        step twice.  Returns ``{key: last step}``."""
        run = retry(lambda: self.client.get_run(self.run_id), "get run")
        for key in run.data.metrics:
            history = retry(lambda: self.client.get_metric_history(self.run_id, key),
                            "metric history")
            if history:
                self._logged_through[key] = max(int(m.step) for m in history)
        return dict(self._logged_through)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):
            chunk = items[start:start + 100]
            retry(lambda: self.client.log_batch(self.run_id, params=chunk), "log params")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        step = self.default_step if step is None else int(step)
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            if step <= self._logged_through.get(key, -1):
                continue
            self._pending.append(Metric(key, float(value), now, step, model_id=self.model_id,
                                        run_id=self.run_id if self.model_id else None))
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        while self._pending:
            chunk, self._pending = self._pending[:900], self._pending[900:]
            retry(lambda: self.client.log_batch(self.run_id, metrics=chunk), "log metrics")

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        retry(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path),
              "log artifact")

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        retry(lambda: self.client.log_artifacts(self.run_id, str(directory), artifact_path),
              "log artifacts")

    def log_dict(self, data: Any, artifact_file: str) -> None:
        """Write ``data`` as JSON to the artifact ``artifact_file`` (replacing it)."""
        path = Path(artifact_file)
        with tempfile.TemporaryDirectory(prefix="uniav-artifact-") as tmp:
            local = Path(tmp) / path.name
            local.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            parent = str(path.parent) if str(path.parent) != "." else None
            self.log_artifact(local, parent)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:8000]) for k, v in tags.items()]
        retry(lambda: self.client.log_batch(self.run_id, tags=items), "set tags")


@contextlib.contextmanager
def recording_status(tracker: MlflowTracker, record: Callable[[str], None],
                     what: str) -> Iterator[None]:
    """Run the block with SIGTERM/SIGHUP raising (:mod:`uniav.tracking.signals`), then flush
    ``tracker`` and ``record`` how it ended: FINISHED, KILLED (SIGTERM, SIGHUP, Ctrl-C) or
    FAILED (an exception), also when the flush fails.

    Args:
        tracker: the run's tracker.
        record: stores the status (closes the run, or sets a tag).
        what: the start of the log line naming the run (``"MLflow run"``).
    """
    status = "FAILED"
    try:
        with signals_raise():
            try:
                yield
                status = "FINISHED"
            except BaseException as exc:
                status = "KILLED" if is_interruption(exc) else "FAILED"
                raise
            finally:
                try:
                    tracker.flush()
                finally:
                    record(status)
    finally:
        LOGGER.info("%s %s: %s", what, tracker.run_id, status)


@contextlib.contextmanager
def closing_run(tracker: MlflowTracker) -> Iterator[MlflowTracker]:
    """Close ``tracker``'s run when the block ends: FINISHED, KILLED (SIGTERM, SIGHUP, Ctrl-C:
    see :mod:`uniav.tracking.signals`, active in the block) or FAILED (an exception)."""
    def terminate(status: str) -> None:
        retry(lambda: tracker.client.set_terminated(tracker.run_id, status), "end run")

    with recording_status(tracker, terminate, "MLflow run"):
        yield tracker


@contextlib.contextmanager
def mlflow_run(uri: str, experiment_name: str, run_name: str, tags: dict[str, str] | None = None
               ) -> Iterator[MlflowTracker]:
    """Open a new MLflow run, yield a tracker, close it as FINISHED, KILLED or FAILED."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    experiment_id = init_store(uri, experiment_name)  # first: opening a new store migrates it
    client = client_for(uri)
    run = retry(lambda: client.create_run(experiment_id, run_name=run_name, tags=tags or {}),
                "create run")
    with closing_run(MlflowTracker(client, run.info.run_id, experiment_id)) as tracker:
        yield tracker


@contextlib.contextmanager
def open_tracker(enabled: bool, uri: str | None, experiment_name: str, run_name: str,
                 tags: dict[str, str] | None = None) -> Iterator[Tracker]:
    """An MLflow tracker on a new run when ``enabled``, else a :class:`NullTracker`."""
    if not enabled:
        yield NullTracker()
        return
    with mlflow_run(resolve_tracking_uri(uri), experiment_name, run_name, tags) as tracker:
        yield tracker
