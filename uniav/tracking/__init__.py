"""Experiment tracking: MLflow on a SQLite store by default (or a tracking server), or nothing.

One MLflow run per experiment (and seed) holds the effective settings (params), the training
curves, the validation and test metrics, the data report, the effective configuration, the
history, the figures and the exported weights (a logged model, registered as a model version):
``uniav train`` opens it and ``uniav evaluate`` writes into it.  ``uniav tables`` puts the
tables into the experiment's description.

* :mod:`uniav.tracking.store`   - the store's URI, its safe creation, retries, the UI's URL;
* :mod:`uniav.tracking.tracker` - the :class:`Tracker` protocol the engine logs through;
* :mod:`uniav.tracking.runs`    - the training and evaluation runs (resume, kill, layout);
* :mod:`uniav.tracking.outputs` - weights as a logged model, figures, tables;
* :mod:`uniav.tracking.source`  - the git commit and the standard source tags;
* :mod:`uniav.tracking.signals` - SIGTERM as an exception, so a killed run is closed.

MLflow itself is imported inside the functions: ``import uniav.tracking`` is cheap.
docs/pipeline.md ("MLflow") describes the runs, steps, tags and artifacts.
"""

from uniav.tracking.outputs import publish_tables, registered_model_name
from uniav.tracking.runs import RUN_FILE, EvaluationRun, TrainingRun
from uniav.tracking.signals import SignalExit, signals_raise
from uniav.tracking.source import git_commit, source_tags
from uniav.tracking.store import (default_tracking_uri, init_store, resolve_tracking_uri,
                                  runs_table_url, store_lock, store_lock_path)
from uniav.tracking.tracker import (MlflowTracker, NullTracker, Tracker, flatten, mlflow_run,
                                    open_tracker)

__all__ = ["EvaluationRun", "MlflowTracker", "NullTracker", "RUN_FILE", "SignalExit", "Tracker",
           "TrainingRun", "default_tracking_uri", "flatten", "git_commit", "init_store",
           "mlflow_run", "open_tracker", "publish_tables", "registered_model_name",
           "resolve_tracking_uri", "runs_table_url", "signals_raise", "source_tags",
           "store_lock", "store_lock_path"]
