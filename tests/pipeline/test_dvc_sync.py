"""Reconciling Snakemake with DVC (uniav/pipeline/dvc_sync.py): what changed outside Snakemake,
what DVC says about it, and what is done - without running DVC or Snakemake (the end-to-end
round trip is in test_pipeline_run.py)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from uniav.pipeline import dvc_sync
from uniav.pipeline.dvc_sync import (Decision, LockedStage, changed_data_deps, changed_outs,
                                     decide, read_lock, reconcile, signature, stages_to_ask,
                                     touch_batches, with_locked)
from uniav.pipeline.jobs import PHASES

PHASE_NAMES = [phase for phase, _, _ in PHASES]
OUTS = {"data": ["resources/synthetic/tal/annotations.json", "resources/synthetic/tal/media"],
        "features": ["resources/synthetic/tal/features", "results/prompts"],
        "train": ["results/models"],
        "evaluate": ["results/predictions", "results/metrics/experiments"],
        "tables": ["results/tables", "results/figures", "results/metrics/summary.json"]}
OUTPUTS = {"data": ["resources/synthetic/tal/annotations.json", "resources/synthetic/tal/media"],
           "features": ["resources/synthetic/tal/features", "results/prompts/tal.npy"],
           "train": ["results/models/a/model.safetensors", "results/models/b/model.safetensors"],
           "evaluate": ["results/metrics/experiments/a.json", "results/predictions/a"],
           "tables": ["results/tables/main.md", "results/metrics/summary.json"]}
LOCK = {phase: LockedStage(outs, {"scale": "tiny", f"{phase}.x": 1})
        for phase, outs in OUTS.items()}
ALL = [path for paths in OUTPUTS.values() for path in paths]


def _only(*phases: str) -> dict[str, list[str]]:
    return {phase: OUTPUTS[phase] if phase in phases else [] for phase in PHASE_NAMES}


def test_every_rule_belongs_to_one_phase():
    text = "".join(p.read_text() for p in [REPO_ROOT / "Snakefile",
                                           *(REPO_ROOT / "workflow" / "rules").glob("*.smk")])
    rules = set(re.findall(r"(?m)^rule (\w+):", text))
    in_phases = [rule for _, _, phase_rules in PHASES for rule in phase_rules]
    targets = {target for _, target, _ in PHASES}
    assert len(in_phases) == len(set(in_phases))
    assert rules == set(in_phases) | targets


def test_signature_follows_files_and_directories(tmp_path: Path):
    file, folder = tmp_path / "a.json", tmp_path / "media"
    assert signature(file) is None
    file.write_text("1")
    first = signature(file)
    os.utime(file, ns=(1, 1))
    assert signature(file) not in (None, first)
    folder.mkdir()
    (folder / "x.mp4").write_text("x")
    before = signature(folder)
    os.utime(folder / "x.mp4", ns=(5, 5))
    assert signature(folder) != before
    (folder / "x.mp4").unlink()
    (folder / "y.mp4").write_text("x")
    assert signature(folder) != before


def test_the_lock_and_the_status_are_read(tmp_path: Path):
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  train:\n    cmd: x\n    params:\n      params.yaml:\n"
        "        train:\n          epochs: 1\n    outs:\n    - path: results/models\n"
        "      md5: abc.dir\n")
    assert read_lock(tmp_path) == {"train": LockedStage(["results/models"],
                                                        {"train": {"epochs": 1}})}
    assert read_lock(tmp_path / "nowhere") == {}
    status = [{"changed deps": {"results/models": "modified", "uniav/engine": "modified",
                                "params.yaml": {"train": "modified"}}},
              {"changed outs": {"results/predictions": "modified"}}, "changed command"]
    assert changed_outs(status) == {"results/predictions"}
    assert changed_data_deps(status, LOCK) == {"results/models"}
    assert changed_outs(None) == set() and changed_data_deps(None, LOCK) == set()
    assert with_locked({"train": {"epochs": 2, "lr": 1}, "scale": "tiny"},
                       {"train": {"epochs": 1}, "datasets.synthetic": {"seed": 3}}) == {
        "train": {"epochs": 1}, "scale": "tiny", "datasets": {"synthetic": {"seed": 3}}}


def test_restored_outputs_of_up_to_date_stages_are_touched():
    assert stages_to_ask(OUTPUTS, PHASE_NAMES, None) == PHASE_NAMES
    decision = decide(OUTPUTS, OUTPUTS, LOCK, status={})
    assert decision == Decision(touch=OUTPUTS)
    assert touch_batches(decision, OUTPUTS, LOCK) == [PHASE_NAMES]
    # after `dvc checkout` of the results of an experiment only the later stages changed...
    assert stages_to_ask(_only("train"), PHASE_NAMES, None) == ["train", "evaluate", "tables"]
    # ... and the stages after the first touched one are touched too (outputs newer than inputs)
    decision = decide(OUTPUTS, _only("train"), LOCK, status={})
    assert list(decision.touch) == ["train", "evaluate", "tables"]


def test_changed_parameters_touch_with_the_locked_ones_changed_inputs_age():
    status = {"train": [{"changed deps": {"params.yaml": {"train": "modified"}}}],
              "evaluate": [{"changed deps": {"results/models": "modified"}}],
              "tables": [{"changed outs": {"results/tables": "modified"}}]}
    decision = decide(OUTPUTS, OUTPUTS, LOCK, status)
    # a parameter changed: touched with the parameters of dvc.lock (Snakemake's params trigger
    # then reruns the jobs whose settings changed)
    assert list(decision.touch) == ["data", "features", "train", "tables"]
    # inputs differ from those of dvc.lock: older than any input, so they are remade
    assert decision.age == OUTPUTS["evaluate"]
    # an out DVC reports modified (an edit): Snakemake's own rules; the rest of the stage is touched
    assert decision.adopt == ["results/tables/main.md"]
    assert decision.touch["tables"] == ["results/metrics/summary.json"]
    # one touch run; a stage with outputs left alone ends a run (a later stage in the same run
    # would bring its other jobs into the DAG)
    assert touch_batches(decision, OUTPUTS, LOCK) == [["data", "features", "train", "tables"]]
    partial = Decision(touch={"data": OUTPUTS["data"][:1], "features": OUTPUTS["features"]})
    assert touch_batches(partial, OUTPUTS, LOCK) == [["data"], ["features"]]


def test_a_stage_dvc_never_ran_is_left_to_snakemake():
    lock = {k: v for k, v in LOCK.items() if k != "tables"}
    decision = decide(OUTPUTS, OUTPUTS, lock, {"tables": ["changed command"]})
    assert decision.adopt == OUTPUTS["tables"] and "tables" not in decision.touch


def test_inside_a_dvc_stage_only_earlier_stages_are_asked():
    assert stages_to_ask(OUTPUTS, PHASE_NAMES, "train") == ["data", "features"]
    decision = decide(OUTPUTS, OUTPUTS, LOCK, {}, running="train")
    assert list(decision.touch) == ["data", "features"]
    assert decision.age == OUTPUTS["train"]          # DVC runs the stage: something changed
    assert decision.pending == OUTPUTS["evaluate"] + OUTPUTS["tables"]
    first = decide(OUTPUTS, OUTPUTS, LOCK, {}, running="data")
    assert list(first.touch) == ["data"]            # no inputs: the locked parameters decide
    assert stages_to_ask(OUTPUTS, PHASE_NAMES, "deploy") is None
    assert decide(OUTPUTS, OUTPUTS, LOCK, {}, running="deploy").pending == ALL


def test_batches_split_where_the_locked_parameters_differ():
    lock = {**LOCK, "features": LockedStage(OUTS["features"], {"scale": "default"})}
    decision = decide(OUTPUTS, OUTPUTS, lock, status={})
    assert touch_batches(decision, OUTPUTS, lock) == [["data"], ["features"],
                                                      ["train", "evaluate", "tables"]]


@dataclass
class Project:
    root: Path
    calls: list = field(default_factory=list)
    #: what the fake `dvc status` answers (stage -> changes)
    status: dict = field(default_factory=dict)

    def reconcile(self, log=lambda message: None):
        return reconcile(self.root, OUTPUTS, {p: rules for p, _, rules in PHASES}, "Snakefile",
                         log=log)


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Project:
    """A DVC project (a .dvc directory and a dvc.lock) with its outputs restored (no Snakemake
    records); DVC and the touch run are replaced by recorders."""
    (tmp_path / ".dvc").mkdir()
    lines = ["schema: '2.0'", "stages:"]
    for phase, paths in OUTS.items():
        lines += [f"  {phase}:", "    cmd: x", "    outs:"] + [f"    - path: {p}" for p in paths]
    (tmp_path / "dvc.lock").write_text("\n".join(lines) + "\n")
    for path in ALL:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    monkeypatch.delenv(dvc_sync.SWITCH, raising=False)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    project = Project(tmp_path)
    monkeypatch.setattr(dvc_sync, "dvc_status", lambda root, stages: (
        project.calls.append(("status", stages)) or project.status))
    monkeypatch.setattr(dvc_sync, "touch", lambda root, snakefile, rules, targets, locked: (
        project.calls.append(("touch", targets))))
    return project


def test_reconcile_asks_dvc_once_then_records(project: Project):
    result = project.reconcile()
    assert project.calls == [("status", PHASE_NAMES), ("touch", ALL)]
    assert list(result.decision.touch) == PHASE_NAMES
    project.calls.clear()
    project.reconcile()                     # nothing changed since: no DVC, no touch
    assert project.calls == []
    os.utime(project.root / OUTPUTS["train"][0], ns=(7, 7))    # e.g. `dvc checkout`
    project.reconcile()
    later = OUTPUTS["train"] + OUTPUTS["evaluate"] + OUTPUTS["tables"]
    assert project.calls == [("status", ["train", "evaluate", "tables"]), ("touch", later)]


def test_outputs_whose_inputs_changed_are_aged(project: Project):
    project.status = {"evaluate": [{"changed deps": {"results/models": "modified"}}]}
    messages: list[str] = []
    result = project.reconcile(log=messages.append)
    assert result.decision.age == OUTPUTS["evaluate"]
    assert (project.root / OUTPUTS["evaluate"][0]).stat().st_mtime == dvc_sync.AGED
    assert "to be remade" in messages[-1]
    project.calls.clear()
    assert project.reconcile().decision == Decision() and project.calls == []


def test_pending_outputs_stay_unresolved_until_their_stage(project: Project, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "train")
    result = project.reconcile()
    assert result.decision.pending == OUTPUTS["evaluate"] + OUTPUTS["tables"]
    result.record_success()                 # the train stage's run did not rewrite them
    monkeypatch.setenv("DVC_STAGE", "evaluate")
    project.calls.clear()
    again = project.reconcile()
    assert project.calls == []              # nothing changed before evaluate: no DVC call
    assert again.decision.age == OUTPUTS["evaluate"]
    assert again.decision.pending == OUTPUTS["tables"]


def test_snakemake_records_without_a_stamp_are_kept(project: Project):
    (project.root / ".snakemake" / "metadata").mkdir(parents=True)
    (project.root / ".snakemake" / "metadata" / "x").write_text("{}")
    assert project.reconcile().decision == Decision() and project.calls == []
    assert (project.root / dvc_sync.STAMP).is_file()


def test_failures_and_switches_leave_snakemake_alone(project: Project, monkeypatch):
    def busy(root, stages):
        raise RuntimeError("lock busy")

    monkeypatch.setattr(dvc_sync, "dvc_status", busy)
    messages: list[str] = []
    assert project.reconcile(log=messages.append).decision == Decision()
    assert "lock busy" in messages[0]
    assert not (project.root / dvc_sync.STAMP).exists()
    monkeypatch.setenv(dvc_sync.SWITCH, "0")
    assert project.reconcile() is None
    monkeypatch.delenv(dvc_sync.SWITCH)
    (project.root / "dvc.lock").unlink()     # DVC never ran: Snakemake's own rules
    assert project.reconcile().decision.adopt == ALL
