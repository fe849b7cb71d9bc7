"""The workflow definition without running jobs: lint, schema, dry runs, effective config."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from uniav.config import load_config
from uniav.pipeline.jobs import JobPlan

from tests.pipeline.conftest import REPO_ROOT, copy_workflow, run


def test_snakemake_lint_is_clean(tmp_path: Path) -> None:
    root = copy_workflow(tmp_path / "project")
    result = run(["snakemake", "--lint"], root, check=False)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Congratulations, your workflow is in a good condition!" in result.stdout
    assert "Lints for" not in result.stdout


def test_schema_file_is_up_to_date() -> None:
    result = run(["uniav", "schema", "--output", "workflow/schemas/params.schema.json", "--check"],
                 REPO_ROOT, check=False)
    assert result.returncode == 0, result.stdout


def _job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_default_target_plans_the_whole_chain(tmp_path: Path) -> None:
    root = copy_workflow(tmp_path / "project")
    counts = _job_counts(run(["snakemake", "-n", "--cores", "2"], root).stdout)
    plan = JobPlan(load_config(root / "params.yaml"))
    experiments = len(plan.experiments())
    cross_task = len(plan.cross_task_experiments())
    assert (experiments, cross_task) == (14, 5)
    assert counts == {"synthesize": 3, "extract_features": 3, "prompts": 3,
                      "train": experiments, "evaluate": experiments, "cross_task": cross_task,
                      "tables": 1, "figures": 1, "reproduce_tables": 1,
                      "total": 12 + 2 * experiments + cross_task}


def test_paper_benchmark_dry_run_plans_the_download(tmp_path: Path) -> None:
    root = copy_workflow(tmp_path / "project")
    result = run(["snakemake", "-n", "--cores", "2", "--config", "benchmark=paper",
                  "prompts={source: npy}",
                  "tables={published: workflow/published/uniav_arxiv2404.03179.yaml}"], root)
    counts = _job_counts(result.stdout)
    # one job per manifest file or unpacked directory
    params = yaml.safe_load((root / "params.yaml").read_text())
    manifest = params["datasets"]["paper"]["manifest"]
    files = {e["dest"] for e in manifest if not e.get("unpack")}
    directories = {e["dest"].rsplit("/", 1)[0] + "/" + e["dest"].rsplit("/", 1)[1].split(".")[0]
                   for e in manifest if e.get("unpack")}
    assert counts["download"] == len(files) > 0
    assert counts.get("download_unpacked", 0) == len(directories)
    assert "synthesize" not in counts and "extract_features" not in counts
    assert counts["prompts"] == 3 and counts["train"] >= 3
    # the downloaded feature directories (unpacked archives) feed training
    assert "resources/paper/desed/av_features" in result.stdout
    assert "workflow/published/uniav_arxiv2404.03179.yaml" in result.stdout


def _effective_config_of(output: str) -> Path:
    paths = set(re.findall(r"--config (\.snakemake/uniav/params-[0-9a-f]+\.yaml)", output))
    assert len(paths) == 1, paths
    return Path(paths.pop())


def test_cli_sees_snakemake_config_overrides(tmp_path: Path) -> None:
    root = copy_workflow(tmp_path / "project")
    extra = root / "extra.yaml"
    extra.write_text(yaml.safe_dump({"eval": {"max_segments": 42}}))
    plain = run(["snakemake", "-n", "-p", "--cores", "2", "train_all"], root).stdout
    overridden = run(["snakemake", "-n", "-p", "--cores", "2", "train_all",
                      "--configfile", str(extra),
                      "--config", "train={epochs: 7, lr: {tal: 0.01}}", "scale=tiny"], root).stdout
    plain_path, override_path = _effective_config_of(plain), _effective_config_of(overridden)
    assert plain_path != override_path
    effective = yaml.safe_load((root / override_path).read_text())
    assert effective["train"]["epochs"] == 7 and effective["train"]["lr"]["tal"] == 0.01
    assert effective["train"]["lr"]["sed"] == 0.001  # merged, not replaced
    assert effective["eval"]["max_segments"] == 42 and effective["scale"] == "tiny"
    baseline = yaml.safe_load((root / plain_path).read_text())
    assert baseline == yaml.safe_load((root / "params.yaml").read_text())
    # the CLI's own loader accepts the file; command-line values win over the tiny scale's
    # own train.epochs (2), as with `uniav --set`, while the rest of the scale applies
    resolved = load_config(root / override_path)
    assert resolved.train.epochs == 7 and resolved.scale == "tiny"
    assert resolved.train.batch_size == load_config(root / "params.yaml", ["scale=tiny"]).train.batch_size
    shown = run(["uniav", "check-config", str(override_path)], root).stdout
    assert "scale=tiny" in shown


def test_invalid_override_is_rejected_naming_the_key(tmp_path: Path) -> None:
    root = copy_workflow(tmp_path / "project")
    result = run(["snakemake", "-n", "--cores", "2", "--config", "train={epochs: many}"], root,
                 check=False)
    assert result.returncode != 0
    assert "epochs" in result.stdout


def test_checkpoint_directory_is_keyed_by_training_settings(tmp_path: Path) -> None:
    root = copy_workflow(tmp_path / "project")

    def work_dirs(*config: str) -> dict[str, str]:
        output = run(["snakemake", "-n", "-p", "--cores", "2", "train_all",
                      *(["--config", *config] if config else [])], root).stdout
        return dict(re.findall(r"--experiment (\S+) .*?--work-dir (\S+)", output))

    plain = work_dirs()
    config = load_config(root / "params.yaml")
    assert set(plain) == set(JobPlan(config).experiments())
    for name, path in plain.items():
        assert re.fullmatch(rf"work/checkpoints/{name}/[0-9a-f]{{12}}", path)
    longer = work_dirs("train={epochs: 9}")
    # experiments with epochs of their own (open set, fine-tuning) keep theirs
    own_epochs = {name for name, e in config.experiments.items() if "epochs" in e.train}
    assert own_epochs and all((longer[name] == plain[name]) == (name in own_epochs)
                              for name in plain)
    assert work_dirs("tracking={enabled: false}") == plain  # not a training setting


def _dry_run_jobs(output: str) -> dict[tuple[str, str], str]:
    """(rule, experiment) -> the block Snakemake prints for that job in a dry run with -p."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        experiment = re.search(r"wildcards: .*?experiment=(\w+)", block)
        if rule and experiment:
            jobs[(rule.group(1), experiment.group(1))] = block
    return jobs


def test_open_set_fine_tuning_and_cross_task_jobs_are_planned(tmp_path: Path) -> None:
    """The open-set, fine-tuning and cross-task work of the synthetic benchmark: the fine-tuning
    job takes UniAV's exported weights as input and passes them with --init-from; the held-out
    evaluation reads the prompt embeddings; the parent is trained plainly; the cross-task job
    scores UniAV's weights on every task's test data."""
    root = copy_workflow(tmp_path / "project")
    parent = "results/models/uniav/model.safetensors"
    output = run(["snakemake", "-n", "-p", "--cores", "2", "--",
                  "results/models/finetune_sed/model.safetensors",
                  "results/metrics/experiments/open_set_single_sed.json",
                  "results/metrics/experiments/uniav.cross_task.json"], root).stdout
    jobs = _dry_run_jobs(output)
    assert set(jobs) == {("train", "finetune_sed"), ("train", "uniav"),
                         ("train", "open_set_single_sed"), ("evaluate", "open_set_single_sed"),
                         ("cross_task", "uniav")}
    finetune = jobs[("train", "finetune_sed")]
    inputs = re.search(r"input: (.*)", finetune).group(1).split(", ")
    assert parent in inputs
    assert re.search(r"uniav train .*--experiment finetune_sed .*--init-from " + re.escape(parent)
                     + r" > logs/train/finetune_sed\.log", finetune)
    for plain in ("uniav", "open_set_single_sed"):
        assert "--init-from" not in jobs[("train", plain)]
        assert re.search(r"input: (.*)", jobs[("train", plain)]).group(1).count(
            "model.safetensors") == 0
    evaluate_inputs = re.search(r"input: (.*)", jobs[("evaluate", "open_set_single_sed")]).group(
        1).split(", ")
    prompts = [path for path in evaluate_inputs if path.endswith("/sed.npy")]
    assert len(prompts) == 1 and "prompts" in prompts[0]
    cross = jobs[("cross_task", "uniav")]
    cross_inputs = re.search(r"input: (.*)", cross).group(1).split(", ")
    assert parent in cross_inputs
    assert {path for path in cross_inputs if path.endswith("annotations.json")} == {
        f"resources/synthetic/{task}/annotations.json" for task in ("tal", "sed", "avel")}
    assert re.search(r"uniav cross-task --config \S+ --experiment uniav --set seed=2024 "
                     r"--weights " + re.escape(parent) + r" --metrics "
                     r"results/metrics/experiments/uniav\.cross_task\.json", cross), cross
    counts = _job_counts(output)
    assert counts["train"] == 3 and counts["evaluate"] == 1 and counts["cross_task"] == 1
    # the other experiments are not planned: the targets need only these
    assert not any(name in {"naive_multi", "linear_cls", "finetune_tal"} for _, name in jobs)


def test_seeds_plan_one_run_per_experiment_and_seed(tmp_path: Path) -> None:
    """`--config scale=tiny 'seeds=[1,2]'`: every experiment trains and evaluates once per
    seed, as runs `<experiment>.seed<s>` (neither seed is the top-level 2024), each command with
    `--experiment <experiment> --set seed=<s>` and the run's own paths; the tables read all."""
    root = copy_workflow(tmp_path / "project")
    output = run(["snakemake", "-n", "-p", "--cores", "2", "--config", "scale=tiny",
                  "seeds=[1,2]"], root).stdout
    config = load_config(root / "params.yaml")
    experiments = JobPlan(config).experiments()
    counts = _job_counts(output)
    assert counts["train"] == counts["evaluate"] == 2 * len(experiments)
    assert counts["cross_task"] == 2 * len(JobPlan(config).cross_task_experiments())
    assert counts["tables"] == counts["figures"] == 1
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        wildcard = re.search(r"wildcards: .*?experiment=([\w.]+)", block)
        if rule and wildcard:
            jobs[(rule.group(1), wildcard.group(1))] = block
    assert {job for job in jobs if job[0] != "cross_task"} == {
        (rule, f"{name}.seed{seed}") for rule in ("train", "evaluate")
        for name in experiments for seed in (1, 2)}
    train = jobs[("train", "uniav.seed2")]
    assert re.search(r"uniav train --config \S+ --experiment uniav --set seed=2 "
                     r"--output-dir results/models/uniav\.seed2 "
                     r"--work-dir work/checkpoints/uniav\.seed2/[0-9a-f]{12} .*"
                     r"> logs/train/uniav\.seed2\.log", train), train
    evaluate = jobs[("evaluate", "uniav.seed1")]
    assert re.search(r"uniav evaluate --config \S+ --experiment uniav --set seed=1 "
                     r"--weights results/models/uniav\.seed1/model\.safetensors "
                     r"--predictions-dir results/predictions/uniav\.seed1 "
                     r"--metrics results/metrics/experiments/uniav\.seed1\.json", evaluate), evaluate
    work = {seed: re.search(r"--work-dir (\S+)", jobs[("train", f"uniav.seed{seed}")]).group(1)
            for seed in (1, 2)}
    assert work[1].rsplit("/", 1)[1] != work[2].rsplit("/", 1)[1]  # the seed is a setting
    tables = re.search(r"rule tables:.*?\n\s+input: (.*)", output, re.S).group(1).split(", ")
    assert {f"results/metrics/experiments/uniav.seed{s}.json" for s in (1, 2)} <= set(tables)
