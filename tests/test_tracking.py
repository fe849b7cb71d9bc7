"""Tracking store: safe creation by concurrent jobs, whoever launches them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO_ROOT

JOB = """
import sys, time
from pathlib import Path
from uniav.tracking import open_tracker
uri, go, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
while not go.exists():  # start all jobs at the same moment, mlflow already imported
    time.sleep(0.01)
with open_tracker(True, uri, "concurrent", name, {"job": name}) as tracker:
    tracker.log_metrics({"train/loss": 1.0}, step=1)
print("ok", name)
"""


def test_four_concurrent_jobs_on_a_new_sqlite_store(tmp_path: Path) -> None:
    """Item 8: without the store lock, 3 of 4 jobs failed ('duplicate column name: step')."""
    import mlflow.tracking  # noqa: F401 - warm the import cache before timing the start

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    go = tmp_path / "go"
    jobs = [subprocess.Popen([sys.executable, "-c", "import mlflow.tracking\n" + JOB, uri,
                              str(go), f"job{i}"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for i in range(4)]
    time.sleep(8)  # let every job import mlflow first, so the store creations overlap
    go.touch()
    results = [job.communicate(timeout=300) + (job.returncode,) for job in jobs]
    for stdout, stderr, code in results:
        assert code == 0, stderr[-3000:]
        assert "Traceback" not in stderr
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("concurrent")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == [f"job{i}" for i in range(4)]
    assert all(run.info.status == "FINISHED" for run in runs)
    assert (tmp_path / "mlflow.db.lock").exists()  # the lock lives beside the database
