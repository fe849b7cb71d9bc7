"""What a run records besides numbers: the weights as a logged model, figures, the tables.

The exported weights are logged as an MLflow 3 *logged model* of the run (``model_type``
:data:`MODEL_TYPE`; artifacts ``model.safetensors`` and a README saying how to load it) and
registered as a new version of the registered model ``<tracking experiment>-<experiment>``.
They are never pickled: safetensors holds tensors and JSON metadata only, and nothing here
loads a model from the store.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from uniav.tracking.store import client_for, resolve_tracking_uri, retry, sqlite_database
from uniav.tracking.tracker import MlflowTracker

LOGGER = logging.getLogger(__name__)

#: Logged models of the exported weights carry this ``model_type``.
MODEL_TYPE = "uniav-safetensors"
#: Run tag: the id of the run's logged model.
MODEL_ID_TAG = "uniav.model_id"

_MODEL_README = """\
UniAV weights ({experiment}, config hash {config_hash}), exported by `uniav train`.

model.safetensors holds the EMA weights and, as safetensors metadata, the model spec, class
lists, feature settings and data report.  Nothing in it executes code when loaded.

    uniav evaluate --experiment {experiment} --weights model.safetensors ...
    uniav predict VIDEO --weights model.safetensors

or in Python: uniav.engine.inference.load_model_from_weights("model.safetensors").
"""


def log_figures(tracker: MlflowTracker, draw: Callable[[Path], None]) -> None:
    """Draw figures into a temporary directory and log them under ``figures/``; a figure
    that cannot be drawn is a warning, not a failed job."""
    with tempfile.TemporaryDirectory(prefix="uniav-figures-") as tmp:
        try:
            draw(Path(tmp))
        except Exception as exc:  # noqa: BLE001 - figures are a convenience
            LOGGER.warning("MLflow: figures not logged (%s: %s)", type(exc).__name__, exc)
        if any(Path(tmp).iterdir()):
            tracker.log_artifacts(tmp, "figures")


def registered_model_name(config: Any, experiment: str) -> str:
    """The registered model of an experiment's weights: ``<tracking experiment>-<experiment>``."""
    return f"{config.tracking.experiment_name}-{experiment}"


def log_weights_model(tracker: MlflowTracker, config: Any, experiment: str, weights: Path, *,
                      config_hash: str | None, step: int) -> str:
    """Log ``weights`` as an MLflow logged model of the run (an output at ``step``) and
    register it as a new version of :func:`registered_model_name`.  Once per run: a run that
    already has one (a training resumed after it finished) keeps it.  Returns the model id."""
    from mlflow.entities import LoggedModelOutput

    client, run_id = tracker.client, tracker.run_id
    existing = retry(lambda: client.get_run(run_id), "get run").data.tags.get(MODEL_ID_TAG)
    if existing:
        tracker.model_id = existing
        return existing
    model_tags = {"experiment": experiment, "config_hash": str(config_hash),
                  "protocol": config.protocol, "format": "safetensors"}
    model = retry(lambda: client.create_logged_model(
        tracker.experiment_id, name=experiment, source_run_id=run_id, tags=model_tags,
        model_type=MODEL_TYPE), "create logged model")
    try:
        with tempfile.TemporaryDirectory(prefix="uniav-model-") as tmp:
            shutil.copyfile(weights, Path(tmp) / "model.safetensors")
            (Path(tmp) / "README.md").write_text(
                _MODEL_README.format(experiment=experiment, config_hash=config_hash),
                encoding="utf-8")
            retry(lambda: client.log_model_artifacts(model.model_id, tmp),
                  "log model artifacts")
    except BaseException:
        with contextlib.suppress(Exception):
            client.finalize_logged_model(model.model_id, "FAILED")
        raise
    retry(lambda: client.finalize_logged_model(model.model_id, "READY"), "finalize model")
    retry(lambda: client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)]),
          "log model output")
    tracker.model_id = model.model_id
    tags = {MODEL_ID_TAG: model.model_id}
    name = registered_model_name(config, experiment)
    try:
        retry(lambda: client.create_registered_model(name), "register model")
    except Exception as exc:  # noqa: BLE001 - exists already (another run registered it)
        if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
            raise
    # source: the model's storage location, not models:/<id> - MLflow's SQL registry resolves
    # that through the process's global tracking URI, not this client's
    version = retry(lambda: client.create_model_version(
        name, source=model.artifact_location, run_id=run_id, model_id=model.model_id,
        tags=model_tags, await_creation_for=0), "create model version")
    tags["uniav.registered_model"] = f"{name}/{version.version}"
    tracker.set_tags(tags)
    return model.model_id


def publish_tables(config: Any, table_files: list[Path]) -> str | None:
    """Put the Markdown tables into the description of the MLflow experiment (the experiment
    page shows it above the runs).  Only an existing store and experiment are written to: the
    tables never create one.  Returns the experiment id, or None when there was none."""
    uri = resolve_tracking_uri(config.tracking.uri)
    database = sqlite_database(uri)
    if database is not None and not database.exists():
        return None
    client = client_for(uri)
    experiment = retry(lambda: client.get_experiment_by_name(config.tracking.experiment_name),
                       "get experiment")
    if experiment is None:
        return None
    sections = ["Tables of the last `uniav tables` run (results/tables/; each run of this "
                "experiment holds one row's settings, curves, test metrics and weights)."]
    for path in table_files:
        if path.suffix == ".md" and path.exists():
            sections.append(path.read_text(encoding="utf-8").strip())
    text = "\n\n".join(sections) + "\n"
    retry(lambda: client.set_experiment_tag(experiment.experiment_id, "mlflow.note.content",
                                            text), "set experiment description")
    return experiment.experiment_id
