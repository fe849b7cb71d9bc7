"""The runs of the pipeline: one MLflow run per experiment (and seed) holds everything.

``uniav train`` opens the run (:class:`TrainingRun`): named after the experiment, tagged with
the standard source tags and ``experiment``, ``seed``, ``config_hash``, ``protocol``; its
params are the effective training settings; it records the curves and, when training
finishes, the history, the training-curve figure and the exported weights as an MLflow logged
model registered as a model version.  The run id goes into the exported weights' metadata
(``mlflow_run_id``) and ``training.json``, and into ``<work dir>/mlflow_run.json``, beside the
resumable checkpoints: a resumed training reopens the same run and writes no step twice.

``uniav evaluate`` (:class:`EvaluationRun`) reads the run id from the weights and logs the
test metrics, the metrics JSON, the full data report and the per-class AP and timeline
figures into that run - when it evaluates with the settings the run was trained with (the
pipeline always does).  Otherwise (other settings, weights of another experiment, imported
weights, a store without the run) it opens a run of its own, ``<experiment>/evaluate``, a
child (``mlflow.parentRunId``) of the training run when the store has it.

docs/pipeline.md ("MLflow") describes the layout, the steps and the tags.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any, Iterator

from uniav.fileio import atomic_write_json, load_json_file, parse_json_text, read_json_object
from uniav.tracking.outputs import MODEL_ID_TAG, log_figures, log_weights_model
from uniav.tracking.source import source_tags
from uniav.tracking.store import client_for, init_store, resolve_tracking_uri, retry
from uniav.tracking.tracker import (MlflowTracker, NullTracker, Tracker, closing_run,
                                    recording_status)

LOGGER = logging.getLogger(__name__)

#: The file beside the resumable checkpoints that names the training's run.
RUN_FILE = "mlflow_run.json"
#: Run tag: the iteration at which the exported weights were taken (test metrics' step).
WEIGHTS_ITERATION_TAG = "uniav.weights_iteration"
#: Run tag: the hash of the evaluation settings the run was trained with.
EVALUATION_HASH_TAG = "uniav.evaluation_settings_hash"


def run_tags(config: Any, experiment: str, entry_point: str) -> dict[str, str]:
    """Standard tags of a run of ``experiment`` (source, experiment, seed, protocol, ...)."""
    resolved = config.experiment(experiment)
    tags = {**source_tags(entry_point), "experiment": experiment, "seed": str(config.seed),
            "protocol": config.protocol, "benchmark": config.benchmark, "scale": config.scale,
            "tasks": ",".join(resolved.tasks)}
    description = config.experiments[experiment].description
    if description:
        tags["mlflow.note.content"] = description
    return tags


def evaluation_settings_hash(config: Any, experiment: str) -> str:
    """The hash of what ``uniav evaluate`` reads from the configuration (besides the weights):
    evaluation logs into the training's run only when it equals the run's."""
    from uniav.config import config_hash
    from uniav.engine.inference import evaluation_settings

    return config_hash(evaluation_settings(config, experiment))


def weights_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a ``model.safetensors`` (empty when unreadable: evaluation reports
    that itself)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            raw = handle.metadata() or {}
        return {key: parse_json_text(value, file=path) for key, value in raw.items()}
    except Exception:  # noqa: BLE001 - any unreadable file: no metadata
        return {}


def _yaml_text(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _open_store(config: Any) -> tuple[str, str, Any]:
    """The configuration's tracking URI, its experiment's id (store and experiment created or
    migrated first, under the store lock) and a client."""
    uri = resolve_tracking_uri(config.tracking.uri)
    return uri, init_store(uri, config.tracking.experiment_name), client_for(uri)


class _Delegate:
    """A :class:`~uniav.tracking.tracker.Tracker` that forwards to ``self.tracker`` (a
    :class:`NullTracker` until the run is open)."""

    tracker: Any

    @property
    def run_id(self) -> str | None:
        return self.tracker.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        self.tracker.log_params(params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.tracker.log_metrics(metrics, step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.tracker.log_artifact(path, artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tracker.set_tags(tags)

    def flush(self) -> None:
        self.tracker.flush()


class TrainingRun(_Delegate):
    """The tracker of ``uniav train`` (see module docs); give it to the trainer, then open it
    with :meth:`open` once the trainer knows its config hash.

    Args:
        config: the validated configuration.
        experiment: the experiment name.
        work_dir: the training's work directory (where :data:`RUN_FILE` goes).
        enabled: False: record nothing (tracking off, or a non-zero rank).
        run_name: the run's name (default: the experiment; ``<experiment>.seed<s>`` for a run of
            another seed, :func:`uniav.config.run_name`).
    """

    def __init__(self, config: Any, experiment: str, *, work_dir: str | Path, enabled: bool,
                 run_name: str | None = None):
        self.config = config
        self.experiment = experiment
        self.run_name = run_name or experiment
        self.run_file = Path(work_dir) / RUN_FILE
        self.enabled = enabled
        self.tracker: Tracker = NullTracker()
        self.reopened = False

    def _previous_run(self, client: Any, experiment_id: str, config_hash: str) -> str | None:
        """The run of an interrupted training of the same settings, if the store has it."""
        record = read_json_object(self.run_file)
        if not record or record.get("config_hash") != config_hash:
            return None
        try:
            run = client.get_run(str(record.get("run_id")))
        except Exception:  # noqa: BLE001 - another store, deleted for good, ...
            LOGGER.info("%s names run %s, which this store does not have: new run",
                        self.run_file, record.get("run_id"))
            return None
        if run.info.lifecycle_stage != "active" or run.info.experiment_id != experiment_id:
            return None
        return run.info.run_id

    @contextlib.contextmanager
    def open(self, trainer: Any) -> Iterator["TrainingRun"]:
        """Open (or, after an interruption, reopen) the run for ``trainer`` (its
        ``config_hash`` and ``data_report``), closed as FINISHED, KILLED or FAILED."""
        if not self.enabled:
            yield self
            return
        config, name = self.config, self.experiment
        uri, experiment_id, client = _open_store(config)
        tags = {**run_tags(config, name, "uniav train"), "config_hash": trainer.config_hash,
                EVALUATION_HASH_TAG: evaluation_settings_hash(config, name)}
        run_id = self._previous_run(client, experiment_id, trainer.config_hash)
        self.reopened = run_id is not None
        if run_id is not None:
            previous = client.get_run(run_id)
            attempts = int(previous.data.tags.get("uniav.attempts", "1")) + 1
            retry(lambda: client.update_run(run_id, status="RUNNING"), "reopen run")
            tags["uniav.attempts"] = str(attempts)
            LOGGER.info("MLflow: reopened run %s (attempt %d, was %s)", run_id, attempts,
                        previous.info.status)
        else:
            tags["uniav.attempts"] = "1"
            run_id = retry(lambda: client.create_run(experiment_id, run_name=self.run_name,
                                                     tags=tags),
                           "create run").info.run_id
            atomic_write_json(self.run_file, {"run_id": run_id, "experiment_id": experiment_id,
                                              "config_hash": trainer.config_hash,
                                              "tracking_uri": uri})
            LOGGER.info("MLflow: run %s in %s", run_id, uri)
        tracker = MlflowTracker(client, run_id, experiment_id)
        with closing_run(tracker):
            if self.reopened:
                tracker.skip_logged_steps()
            self.tracker = tracker
            tracker.set_tags(tags)
            from uniav.config import to_plain
            from uniav.engine.training_data import training_settings

            tracker.log_params({**training_settings(config, name),
                                "benchmark": config.benchmark, "scale": config.scale})
            with tempfile.TemporaryDirectory(prefix="uniav-config-") as tmp:
                effective = Path(tmp) / "effective.yaml"
                effective.write_text(_yaml_text(to_plain(config)), encoding="utf-8")
                tracker.log_artifact(effective, "config")
            tracker.log_dict(trainer.data_report, "data_report.json")
            yield self

    def log_result(self, result: Any) -> None:
        """What a finished training produced (``result``: its ``TrainResult``): the best
        validation mAP at its step, ``training.json``, the curves (CSV and figure), and the
        weights as a logged model and a registered model version."""
        tracker = self.tracker
        if not isinstance(tracker, MlflowTracker):
            return
        training = load_json_file(result.history)
        step = weights_iteration(training)
        tracker.log_metrics({"val/best_mean_average_mAP": result.best_metric}, step=step)
        tracker.set_tags({"best_epoch": str(training.get("best_epoch")),
                          WEIGHTS_ITERATION_TAG: str(step)})
        tracker.log_artifact(result.history, "training")
        with tempfile.TemporaryDirectory(prefix="uniav-curves-") as tmp:
            from uniav.report.figures import plot_training_curves, write_curve_csv

            tracker.log_artifact(write_curve_csv(training, Path(tmp) / "curves.csv"), "training")
            log_figures(tracker, lambda out: plot_training_curves(
                training, out / "training_curves.png"))
        tracker.flush()
        log_weights_model(tracker, self.config, self.experiment, Path(result.weights),
                          config_hash=training.get("config_hash"), step=step)


def weights_iteration(training: dict[str, Any]) -> int:
    """The iteration at which the exported weights were taken (the selected epoch's end)."""
    best = training.get("best_epoch")
    for entry in training.get("history") or []:
        if entry.get("epoch") == best and isinstance(entry.get("iteration"), int):
            return int(entry["iteration"])
    return int(training.get("iterations") or 0)


class EvaluationRun(_Delegate):
    """The tracker of ``uniav evaluate`` (see module docs).

    Args:
        config: the validated configuration.
        experiment: the experiment evaluated.
        weights: the weights file evaluated.
        split: the split evaluated.
        enabled: False: record nothing.
        run_name: the name of the run evaluated (default: the experiment; see
            :class:`TrainingRun`); a run of its own is named ``<run_name>/evaluate``.
    """

    def __init__(self, config: Any, experiment: str, *, weights: str | Path, split: str,
                 enabled: bool, run_name: str | None = None):
        self.config = config
        self.experiment = experiment
        self.run_name = run_name or experiment
        self.weights = Path(weights)
        self.split = split
        self.enabled = enabled
        self.tracker: Tracker = NullTracker()

    def _training_run(self, client: Any, experiment_id: str, metadata: dict[str, Any]
                      ) -> Any | None:
        run_id = metadata.get("mlflow_run_id")
        if not isinstance(run_id, str) or not run_id:
            return None
        try:
            run = client.get_run(run_id)
        except Exception:  # noqa: BLE001 - not in this store
            LOGGER.info("MLflow: the weights' run %s is not in this store", run_id)
            return None
        if run.info.lifecycle_stage != "active" or run.info.experiment_id != experiment_id:
            return None
        return run

    @contextlib.contextmanager
    def open(self) -> Iterator["EvaluationRun"]:
        """Attach to the training's run, or open a run of its own (see module docs)."""
        if not self.enabled:
            yield self
            return
        config, name = self.config, self.experiment
        _, experiment_id, client = _open_store(config)
        metadata = weights_metadata(self.weights)
        parent = self._training_run(client, experiment_id, metadata)
        settings_hash = evaluation_settings_hash(config, name)
        evaluation_tags = {"evaluation.split": self.split, "evaluation.weights": str(self.weights)}
        if (parent is not None and metadata.get("experiment") == name and self.split == "test"
                and parent.data.tags.get(EVALUATION_HASH_TAG) == settings_hash):
            tracker = MlflowTracker(client, parent.info.run_id, experiment_id)
            tracker.default_step = int(parent.data.tags.get(WEIGHTS_ITERATION_TAG, "0") or 0)
            tracker.model_id = parent.data.tags.get(MODEL_ID_TAG)
            self.tracker = tracker
            LOGGER.info("MLflow: evaluation logged into the training's run %s", tracker.run_id)
            with self._attached(tracker, evaluation_tags):
                yield self
            return
        tags = {**run_tags(config, name, "uniav evaluate"), **evaluation_tags,
                "config_hash": str(metadata.get("config_hash")),
                EVALUATION_HASH_TAG: settings_hash}
        if parent is not None:
            tags["mlflow.parentRunId"] = parent.info.run_id
        run = retry(lambda: client.create_run(experiment_id, run_name=f"{self.run_name}/evaluate",
                                              tags=tags), "create run")
        LOGGER.info("MLflow: evaluation run %s of its own (%s)", run.info.run_id,
                    "child of the training's run" if parent is not None else
                    "the weights name no run of this store")
        with closing_run(MlflowTracker(client, run.info.run_id, experiment_id)) as tracker:
            from uniav.engine.inference import evaluation_settings

            if parent is not None:
                tracker.default_step = int(parent.data.tags.get(WEIGHTS_ITERATION_TAG, "0") or 0)
            tracker.log_params({**evaluation_settings(config, name), "split": self.split,
                                "weights": str(self.weights)})
            self.tracker = tracker
            yield self

    @contextlib.contextmanager
    def _attached(self, tracker: MlflowTracker, tags: dict[str, str]) -> Iterator[None]:
        """Evaluate inside the training's run, which stays as training left it (FINISHED);
        the tag ``evaluation.status`` says how the evaluation went."""
        tracker.set_tags({**tags, "evaluation.status": "RUNNING"})
        with recording_status(tracker, lambda status: tracker.set_tags(
                {"evaluation.status": status}), "MLflow: evaluation in run"):
            yield

    def log_result(self, summary: dict[str, Any], *, predictions_dir: str | Path) -> None:
        """The mean test mAP over the tasks, the full data report (training and test splits)
        and the per-class AP and timeline figures of every task."""
        tracker = self.tracker
        if not isinstance(tracker, MlflowTracker):
            return
        values = [m["average_mAP"] for m in summary["tasks"].values()]
        if values:
            tracker.log_metrics({f"{self.split}/mean_average_mAP": sum(values) / len(values)})
        tracker.log_dict(summary.get("data_report") or {}, "data_report.json")
        log_figures(tracker, lambda out: self._figures(summary, Path(predictions_dir), out))
        tracker.flush()

    def _figures(self, summary: dict[str, Any], predictions_dir: Path, out: Path) -> None:
        from uniav.data.annotations import load_annotations
        from uniav.report.figures import (per_class_average, pick_videos, plot_per_class_ap,
                                          plot_timelines, read_predictions)

        resolved = self.config.experiment(self.experiment)
        for task, metrics in summary["tasks"].items():
            plot_per_class_ap(task, [(self.experiment, per_class_average(metrics))],
                              out / f"per_class_ap_{task}.png")
            data = resolved.specs[task].data
            subset = getattr(data.subsets, self.split, None)
            predictions = predictions_dir / f"{task}.json"
            if subset is None or not predictions.exists():
                continue
            database = load_annotations(data.annotations)
            plot_timelines(task, pick_videos(database.subset(subset), 3), database.classes,
                           [(self.experiment, read_predictions(predictions))],
                           out / f"timelines_{task}.png")
