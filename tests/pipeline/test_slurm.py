"""The tiny pipeline through `workflow/profiles/slurm` on a one-node SLURM cluster.

The ``slurm_cluster`` fixture (tests/pipeline/slurm_cluster.py) starts munged, slurmctld and
slurmd on this machine (root only: the fixture skips otherwise, saying why).  The project is
the tiny test project of ``pipeline_project`` with that run's synthetic data, features and
prompts copied in (the data phase is not what this test is about, and it saves about a minute);
Snakemake then runs training, evaluation, tables and figures as SLURM jobs.  The tests check that
every training and evaluation job was a SLURM job and that the tables equal those of the local
run, byte for byte (same configuration, same thread counts).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pipeline.conftest import (PipelineRun, copy_workflow, mlflow_runs, run,
                                     table_texts, tiny_params, tool_env)
from tests.pipeline.slurm_cluster import NEEDS_ROOT, SlurmCluster, clean_env, is_root

pytestmark = pytest.mark.slow
#: The cluster tests.  Not root: skip before any fixture runs (the session's local run would be
#: built for nothing).
needs_root = pytest.mark.skipif(not is_root(), reason=NEEDS_ROOT)

EXPERIMENTS = ("naive_multi", "uniav")
#: Settings for this one-node, two-core, GPU-less cluster, on top of the SLURM profile.
LOCAL_CLUSTER_ARGS = [
    # the thread counts of the local run (pipeline_project): training is deterministic on the
    # CPU for a given thread count, so the tables must come out identical; one CPU per job
    # (the executor asks sbatch for --cpus-per-task = the job's threads)
    "--set-threads", "train=1", "evaluate=1", "extract_features=1",
    # the profile asks for a GPU and 64 GB per training job, 32 GB per evaluation: no such node
    "--set-resources", "train:gpu=0", "train:mem_mb=1500", "evaluate:mem_mb=1500",
    "--default-resources", "mem_mb=1000", "runtime=30",
    # no slurmdbd, so no sacct: track jobs with squeue (the cluster keeps finished jobs for
    # MinJobAge = 900 s, far above 3x the first status-check delay)
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
    "--seconds-between-status-checks", "2",
    # keep every job's SLURM log (the evidence below); by default only failed jobs' stay
    "--slurm-keep-successful-logs",
]
#: The executor's line for each submitted job.
SUBMITTED = re.compile(
    r"Job (?P<job>\d+) has been submitted with SLURM jobid (?P<slurm_id>\d+) "
    r"\(log: (?P<log>\S+)\)\.")
#: Wall-clock limit of the SLURM run (it takes about 100-120 s on two busy cores).
TIMEOUT = 420


@dataclass
class SlurmRun:
    root: Path
    output: str
    seconds: float
    #: SLURM job id -> (rule, SLURM log file) of every job Snakemake submitted
    jobs: dict[str, tuple[str, Path]]


def _run_with_timeout(command: list[str], cwd: Path, env: dict[str, str], log: Path,
                      cluster: SlurmCluster) -> subprocess.CompletedProcess:
    """Run `command` (output to `log`); on timeout stop it (its process group, by PID) and fail
    with the end of its output and the cluster's queue."""
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            queue = cluster.command("squeue", "--states=all")
            pytest.fail(f"snakemake on SLURM did not finish within {TIMEOUT} s\n"
                        f"{log.read_text()[-6000:]}\n--- squeue --states=all\n{queue}")
    return subprocess.CompletedProcess(command, process.returncode, log.read_text())


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster: SlurmCluster, pipeline_project: PipelineRun,
              tmp_path_factory) -> SlurmRun:
    root = copy_workflow(tmp_path_factory.mktemp("slurm-project"), tiny_params)
    # the local run's data, features and prompts (copied with their mtimes: up to date)
    shutil.copytree(pipeline_project.root / "resources", root / "resources")
    shutil.copytree(pipeline_project.root / "results" / "prompts", root / "results" / "prompts")
    env = clean_env(tool_env())
    command = ["snakemake", "--workflow-profile", "workflow/profiles/slurm",
               *LOCAL_CLUSTER_ARGS]
    started = time.perf_counter()
    result = _run_with_timeout(command, root, env, root.parent / "snakemake-slurm.log",
                               slurm_cluster)
    seconds = time.perf_counter() - started
    print(f"\n[slurm] {' '.join(slurm_cluster.setup_notes)}; "
          f"snakemake through SLURM: {seconds:.1f} s")
    assert result.returncode == 0, result.stdout[-8000:]
    jobs = {}
    slurm_logs = (root / ".snakemake" / "slurm_logs").resolve()
    for match in SUBMITTED.finditer(result.stdout):
        log = Path(match["log"])
        rule = log.resolve().relative_to(slurm_logs).parts[0].removeprefix("rule_")
        jobs[match["slurm_id"]] = (rule, log)
    return SlurmRun(root=root, output=result.stdout, seconds=seconds, jobs=jobs)


def _job_log(slurm_run: SlurmRun, rule: str, experiment: str) -> tuple[str, str]:
    """The SLURM job id and log text of the one job of `rule` for `experiment`."""
    found = [(slurm_id, log.read_text()) for slurm_id, (name, log) in slurm_run.jobs.items()
             if name == rule and log.is_file()
             and re.search(rf"(?m)^\s+wildcards: experiment={experiment}$", log.read_text())]
    assert len(found) == 1, (rule, experiment, slurm_run.jobs)
    return found[0]


@needs_root
def test_every_training_and_evaluation_job_was_a_slurm_job(
        slurm_run: SlurmRun, slurm_cluster: SlurmCluster) -> None:
    rules = sorted(rule for rule, _ in slurm_run.jobs.values())
    assert rules.count("train") == len(EXPERIMENTS), slurm_run.output[-6000:]
    assert rules.count("evaluate") == len(EXPERIMENTS), slurm_run.output[-6000:]
    # nothing but the target rule ran in the Snakemake process itself
    local = set(re.findall(r"(?m)^localrule (\w+):$", slurm_run.output))
    assert local <= {"reproduce_tables"}, local
    jobcomp = slurm_cluster.jobcomp_log.read_text()
    for rule in ("train", "evaluate"):
        for experiment in EXPERIMENTS:
            slurm_id, log = _job_log(slurm_run, rule, experiment)
            # the job's own output: the TaskProlog saw SLURM_JOB_ID in the batch step and in
            # step 0 (the srun the job-step plugin starts), and that step ran the rule
            assert f"uniav-slurm-test: SLURM_JOB_ID={slurm_id} SLURM_STEP_ID= " in log
            assert f"uniav-slurm-test: SLURM_JOB_ID={slurm_id} SLURM_STEP_ID=0 " in log
            step = log.split(f"SLURM_JOB_ID={slurm_id} SLURM_STEP_ID=0 ", 1)[1]
            assert re.search(rf"(?m)^localrule {rule}:$", step)
            assert re.search(r"(?m)^Shell command: .* --threads 1 ", step)
            assert re.search(rf"(?m)^Finished jobid: \d+ \(Rule: {rule}\)$", step)
            # the controller's record of the job
            record = slurm_cluster.show_job(slurm_id)
            assert record["JobState"] == "COMPLETED", record
            assert record["ExitCode"] == "0:0", record
            assert record["NodeList"] == "localhost", record
            assert record["NumCPUs"] == "1", record  # = the job's threads
            assert record["Comment"] == f"rule_{rule}_wildcards_{experiment}", record
            assert record["WorkDir"] == str(slurm_run.root), record
            assert re.search(rf"(?m)^JobId={slurm_id} .*JobState=COMPLETED", jobcomp)
    # every job Snakemake submitted completed in SLURM
    for slurm_id in slurm_run.jobs:
        assert slurm_cluster.show_job(slurm_id)["JobState"] == "COMPLETED", slurm_id


@needs_root
def test_tables_equal_the_local_run(slurm_run: SlurmRun, pipeline_project: PipelineRun) -> None:
    assert pipeline_project.tables, "the local run wrote no tables"
    assert table_texts(slurm_run.root) == pipeline_project.tables


@needs_root
def test_mlflow_recorded_the_slurm_jobs(slurm_run: SlurmRun) -> None:
    runs = {run.info.run_name: run for run in mlflow_runs(slurm_run.root)}
    assert sorted(runs) == sorted(EXPERIMENTS)  # one run per experiment: training + evaluation
    assert all(run.info.status == "FINISHED" for run in runs.values())
    assert all("test/tal/average_mAP" in run.data.metrics for run in runs.values())


def _planned(output: str, rule: str) -> list[str]:
    """The dry-run blocks of `rule`'s jobs."""
    blocks = re.split(r"\n(?=\[[^\]]+\]\n)", output)
    return [block for block in blocks if re.search(rf"(?m)^rule {rule}:$", block)]


def test_slurm_profile_requests(tmp_path: Path) -> None:
    """What the profile asks SLURM for, as Snakemake plans it (no cluster needed).  Used as the
    workflow profile it replaces the automatic local one; a `--profile` would be overridden by it
    (docs/pipeline.md)."""
    root = copy_workflow(tmp_path / "project", tiny_params)
    (root / "profiles").symlink_to("workflow/profiles")  # as in the repository
    dry_run = ["snakemake", "-n", "--cores", "64", "evaluate_all"]
    planned = run([*dry_run, "--workflow-profile", "workflow/profiles/slurm"], root).stdout
    assert "Using workflow specific profile workflow/profiles/slurm" in planned
    trains, evaluations = _planned(planned, "train"), _planned(planned, "evaluate")
    assert len(trains) == len(evaluations) == len(EXPERIMENTS), planned[-4000:]
    for block in trains:
        assert re.search(r"(?m)^Shell command: .* --threads 8 ", block), block
        assert re.search(r"resources: .*mem_mb=64000.*runtime=720.*gpu=1", block), block
    for block in evaluations:
        assert re.search(r"(?m)^Shell command: .* --threads 4 ", block), block
        assert re.search(r"resources: .*mem_mb=32000.*runtime=120", block), block
    # the pitfall: as a --profile, the local workflow profile's keys win
    combined = run([*dry_run, "--profile", "workflow/profiles/slurm"], root).stdout
    assert "and workflow specific profile profiles/default" in combined
    for block in _planned(combined, "train"):
        assert re.search(r"(?m)^Shell command: .* --threads 1 ", block), block
