"""End to end: one tiny project run with `dvc repro` (DVC stages -> Snakemake phase targets).

Tests run in file order on the session fixture: the results are committed with dvc.lock,
pushed and pulled into a clone; then an experiment changes train.epochs and DVC restores each
version in turn - Snakemake agrees with DVC after each restore.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import time

import pytest
import yaml

from tests.pipeline.conftest import PipelineRun, mlflow_runs, output_mtimes, run, tool_env

pytestmark = pytest.mark.slow

STAGES = ("data", "features", "train", "evaluate", "tables")
EXPERIMENTS = {"naive_multi": ["tal", "sed", "avel"], "uniav": ["tal", "sed", "avel"]}


def _markdown_table(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_dvc_repro_ran_every_phase(pipeline_project: PipelineRun) -> None:
    for stage in STAGES:
        assert f"Running stage '{stage}'" in pipeline_project.repro_output
    lock = yaml.safe_load((pipeline_project.root / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["epochs"] == 1
    for name in EXPERIMENTS:
        assert (pipeline_project.root / "results" / "models" / name / "model.safetensors").is_file()
        assert (pipeline_project.root / "benchmarks" / f"train_{name}.tsv").is_file()
        assert (pipeline_project.root / "logs" / "train" / f"{name}.log").is_file()
    # resumable checkpoints lived under work/ (outside every output) and went with success
    assert (pipeline_project.root / "work" / "checkpoints").is_dir()
    assert not list((pipeline_project.root / "work" / "checkpoints").glob("*/*"))


def test_main_table_comes_from_the_metrics(pipeline_project: PipelineRun) -> None:
    root = pipeline_project.root
    text = (root / "results" / "tables" / "main.md").read_text()
    rows = _markdown_table(text)
    assert rows[0] == ["Method", "TAL 0.5", "TAL 0.75", "TAL 0.95", "TAL avg", "SED 0.5",
                       "SED 0.7", "SED 0.9", "SED avg", "AVEL 0.5", "AVEL 0.7", "AVEL 0.9",
                       "AVEL avg"]
    assert [row[0] for row in rows[2:]] == ["Naive multi-task", "UniAV"]
    for row in rows[2:]:
        values = [float(cell) for cell in row[1:]]
        assert all(0.0 <= v <= 100.0 for v in values)
    assert "Benchmark: synthetic (scale tiny). Split: test" in text
    # every cell equals its metrics file, in percent with two decimals
    header = next(csv.reader(io.StringIO((root / "results/tables/main.csv").read_text())))
    csv_rows = list(csv.DictReader(io.StringIO((root / "results/tables/main.csv").read_text())))
    sources = {"Naive multi-task": {"tal": "naive_multi", "sed": "naive_multi",
                                    "avel": "naive_multi"},
               "UniAV": {"tal": "uniav", "sed": "uniav", "avel": "uniav"}}
    checked = 0
    for row in csv_rows:
        for column in header[1:-2]:
            task, _, what = column.partition(" ")
            metrics = json.loads((root / "results" / "metrics" / "experiments"
                                  / f"{sources[row['label']][task]}.json").read_text())
            task_metrics = metrics["tasks"][task]
            if what == "avg mAP":
                expected = task_metrics["average_mAP"]
            else:
                threshold = float(what.removeprefix("mAP@"))
                index = [round(t, 6) for t in task_metrics["thresholds"]].index(threshold)
                expected = task_metrics["mAP"][index]
            assert row[column] == f"{100 * expected:.2f}", (row["label"], column)
            checked += 1
    assert checked == 2 * 24
    for name in ("ablation", "sed_extras"):
        for suffix in ("md", "csv", "tex"):
            assert (root / "results" / "tables" / f"{name}.{suffix}").stat().st_size > 0


def test_figures_were_written(pipeline_project: PipelineRun) -> None:
    figures = pipeline_project.root / "results" / "figures"
    for name in EXPERIMENTS:
        curve = (figures / "curves" / f"{name}.csv").read_text().splitlines()
        assert curve[0].startswith("epoch,iteration,lr,train_loss")
        assert len(curve) == 1 + 2  # 1 warm-up + 1 epoch
        assert (figures / "training_curves" / f"{name}.png").stat().st_size > 1000
    # every experiment's curve in one table, the data of the DVC comparison plots
    rows = list(csv.DictReader(io.StringIO((figures / "curves.csv").read_text())))
    assert [row["experiment"] for row in rows] == [name for name in EXPERIMENTS for _ in "12"]
    assert all(float(row["train_loss"]) > 0 for row in rows)
    for task in ("tal", "sed", "avel"):
        assert (figures / "per_class_ap" / f"{task}.png").stat().st_size > 1000
        assert (figures / "timelines" / f"{task}.png").stat().st_size > 1000


def test_mlflow_has_every_run_with_metrics(pipeline_project: PipelineRun) -> None:
    runs = {run.info.run_name: run for run in pipeline_project.runs}
    assert len(pipeline_project.runs) == 2 * len(EXPERIMENTS), sorted(runs)
    for name, tasks in EXPERIMENTS.items():
        train, evaluate = runs[f"{name}/train"], runs[f"{name}/evaluate"]
        assert train.info.status == "FINISHED" and evaluate.info.status == "FINISHED"
        assert "val/best_mean_average_mAP" in train.data.metrics
        assert train.data.tags["experiment"] == name
        for task in tasks:
            assert f"val/{task}/average_mAP" in train.data.metrics
            metrics = json.loads((pipeline_project.root / "results" / "metrics" / "experiments"
                                  / f"{name}.json").read_text())
            assert evaluate.data.metrics[f"test/{task}/average_mAP"] == pytest.approx(
                metrics["tasks"][task]["average_mAP"])


def test_parallel_training_jobs_lost_no_run(pipeline_project: PipelineRun) -> None:
    train_runs = sorted((r for r in pipeline_project.runs if r.info.run_name.endswith("/train")),
                        key=lambda r: r.info.start_time)
    overlapping = [(a.info.run_name, b.info.run_name)
                   for i, a in enumerate(train_runs) for b in train_runs[i + 1:]
                   if b.info.start_time < a.info.end_time]
    assert overlapping, "no two training jobs ran at the same time"
    assert len(train_runs) == len(EXPERIMENTS)


def test_second_dvc_repro_does_nothing(pipeline_project: PipelineRun) -> None:
    result = run(["dvc", "repro"], pipeline_project.root, pipeline_project.env)
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in result.stdout
    assert "Running stage" not in result.stdout
    assert "Data and pipelines are up to date." in result.stdout
    assert output_mtimes(pipeline_project.root) == pipeline_project.mtimes


def test_dvc_metrics_fit_a_terminal(pipeline_project: PipelineRun) -> None:
    root, env = pipeline_project.root, pipeline_project.env
    shown = run(["dvc", "metrics", "show"], root, env).stdout.strip().splitlines()
    assert shown[0].split() == ["Path"] + [f"{name}.{task}" for name in sorted(EXPERIMENTS)
                                           for task in sorted(EXPERIMENTS[name])]
    assert shown[1].split()[0] == "results/metrics/summary.json"
    assert all(0.0 <= float(value) <= 1.0 for value in shown[1].split()[1:])
    assert len(shown) == 2 and max(len(line) for line in shown) < 200
    summary = json.loads((root / "results" / "metrics" / "summary.json").read_text())
    for name, tasks in EXPERIMENTS.items():
        metrics = json.loads((root / "results" / "metrics" / "experiments"
                              / f"{name}.json").read_text())
        assert summary[name] == {task: metrics["tasks"][task]["average_mAP"] for task in tasks}


def test_dvc_plots_compare_the_experiments(pipeline_project: PipelineRun) -> None:
    shown = json.loads(run(["dvc", "plots", "show", "--json"], pipeline_project.root,
                           pipeline_project.env).stdout)
    assert set(shown["data"]) == {"validation_mAP", "training_loss"}
    for plot, field in (("validation_mAP", "val_mean_average_mAP"),
                        ("training_loss", "train_loss")):
        spec = shown["data"][plot][0]["content"]
        assert spec["encoding"]["color"]["field"] == "experiment"
        assert spec["encoding"]["y"]["field"] == field
        values = spec["data"]["values"]
        assert {row["experiment"] for row in values} == set(EXPERIMENTS)   # one plot, all
        assert all(float(row[field]) >= 0 for row in values)


def test_snakemake_default_target_is_up_to_date(pipeline_project: PipelineRun) -> None:
    started = time.perf_counter()
    result = run(["snakemake", "--cores", "2"], pipeline_project.root, pipeline_project.env)
    seconds = time.perf_counter() - started
    print(f"\n[pipeline] no-change `snakemake` rerun: {seconds:.1f} s")
    assert "Nothing to be done" in result.stdout
    assert output_mtimes(pipeline_project.root) == pipeline_project.mtimes


def test_snakemake_report(pipeline_project: PipelineRun) -> None:
    report = pipeline_project.root / "report.html"
    run(["snakemake", "--report", str(report)], pipeline_project.root, pipeline_project.env)
    html = report.read_text(errors="replace")
    assert len(html) > 10_000
    assert "main.md" in html and "timelines" in html


def _git(root, *args: str) -> str:
    return run(["git", "-c", "user.name=uniav tests", "-c", "user.email=tests@uniav.invalid",
                *args], root, tool_env()).stdout


def _committed(pipeline_project: PipelineRun) -> None:
    """Commit the project as it is, if not done yet (the workflow, params.yaml, dvc.lock and
    results/metrics/summary.json; .gitignore keeps out the rest)."""
    root = pipeline_project.root
    if run(["git", "rev-parse", "--verify", "-q", "HEAD"], root, check=False).returncode != 0:
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", "tiny project: dvc repro")


def _snakemake_agrees(root, env) -> str:
    """`dvc status` is clean and `snakemake -n` has nothing to do; returns snakemake's output."""
    status = run(["dvc", "status"], root, env).stdout
    assert "Data and pipelines are up to date." in status, status
    started = time.perf_counter()
    dry = run(["snakemake", "-n"], root, env).stdout
    print(f"\n[pipeline] `snakemake -n` after a DVC restore: {time.perf_counter() - started:.1f} s")
    assert "Nothing to be done" in dry, dry[-3000:]
    return dry


def test_pushed_results_pulled_into_a_clone_are_up_to_date(pipeline_project: PipelineRun
                                                           ) -> None:
    root, env = pipeline_project.root, pipeline_project.env
    _committed(pipeline_project)
    tracked = _git(root, "ls-files").split()
    assert {"dvc.lock", "results/metrics/summary.json", ".dvc/config"} <= set(tracked)
    assert not any(path.startswith(("resources/", "results/models")) for path in tracked)
    started = time.perf_counter()
    run(["dvc", "push"], root, env)         # the default remote: <root>/../uniav-dvc-storage
    assert (root.parent / "uniav-dvc-storage" / "files" / "md5").is_dir()
    clone = root.parent / "clone"
    run(["git", "clone", "-q", str(root), str(clone)], root.parent, env)
    run(["dvc", "pull"], clone, env)
    assert (clone / "results" / "models" / "uniav" / "model.safetensors").is_file()
    dry = _snakemake_agrees(clone, env)
    assert "marked as made with the parameters of dvc.lock" in dry
    print(f"\n[pipeline] commit, push, clone, pull, status, snakemake -n: "
          f"{time.perf_counter() - started:.1f} s")
    # a real change still reruns: a parameter the lock does not have
    changed = run(["snakemake", "-n", "--config", "train={epochs: 5}"], clone, env).stdout
    assert re.search(r"(?m)^rule train:", changed) and "Params have changed" in changed


def test_dvc_checkout_then_snakemake_has_nothing_to_do(pipeline_project: PipelineRun) -> None:
    root, env = pipeline_project.root, pipeline_project.env
    for name in ("models", "predictions", "tables"):
        shutil.rmtree(root / "results" / name)
    run(["dvc", "checkout"], root, env)
    _snakemake_agrees(root, env)
    # and a second look does not ask DVC again
    assert "marked as made" not in run(["snakemake", "-n"], root, env).stdout


def test_changing_train_epochs_reruns_train_onward_only(pipeline_project: PipelineRun) -> None:
    root = pipeline_project.root
    _committed(pipeline_project)
    before = output_mtimes(root)
    result = run(["dvc", "exp", "run", "--name", "epochs2", "-S", "train.epochs=2"], root,
                 pipeline_project.env, timeout=900)
    assert "Stage 'data' didn't change, skipping" in result.stdout
    assert "Stage 'features' didn't change, skipping" in result.stdout
    for stage in ("train", "evaluate", "tables"):
        assert f"Running stage '{stage}'" in result.stdout
    after = output_mtimes(root)
    unchanged = [p for p in before if p.startswith(("resources/", "results/prompts/"))]
    assert unchanged and all(after[p] == before[p] for p in unchanged)
    for name in EXPERIMENTS:
        history = json.loads((root / "results" / "models" / name / "training.json").read_text())
        assert history["epochs"] == 3 and len(history["history"]) == 3
        metrics = f"results/metrics/experiments/{name}.json"
        assert after[metrics] > before[metrics]
    assert after["results/tables/main.md"] > before["results/tables/main.md"]
    train_runs = [r for r in mlflow_runs(root) if r.info.run_name.endswith("/train")]
    assert len(train_runs) == 2 * len(EXPERIMENTS)
    assert re.search(r"(?m)^\s*synthesize\s+\d", result.stdout) is None
    assert "Nothing to be done" in run(["snakemake", "-n"], root, pipeline_project.env).stdout


def _epochs(root) -> int:
    return json.loads((root / "results" / "models" / "uniav" / "training.json").read_text())[
        "epochs"]


def test_checkout_and_exp_apply_after_an_experiment(pipeline_project: PipelineRun) -> None:
    root, env = pipeline_project.root, pipeline_project.env
    # back to the committed results (train.epochs 1): Snakemake's records are the experiment's
    _git(root, "checkout", "-q", "--", ".")
    run(["dvc", "checkout"], root, env)
    assert _epochs(root) == 2
    _snakemake_agrees(root, env)
    # the experiment's results again
    run(["dvc", "exp", "apply", "epochs2"], root, env)
    assert _epochs(root) == 3
    _snakemake_agrees(root, env)
