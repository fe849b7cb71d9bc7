"""`uniav train --init-from WEIGHTS` (uniav/engine/initialise.py) and
`experiments.<name>.init_from`: the run starts from the weights, fresh optimizer and EMA, the
run's own prompts; incompatible weights are refused listing every difference; a work-dir
checkpoint takes precedence when the run resumes and other weights are refused then."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.engine.conftest import tiny_config, tiny_raw
from uniav.cli import main
from uniav.config import config_from_dict
from uniav.engine.checkpoint import export_weights, load_exported_weights
from uniav.engine.initialise import PROMPTS_PREFIX
from uniav.engine.trainer import Trainer
from uniav.errors import ConfigError, InputError
from uniav.pipeline.jobs import JobPlan


def _trainer(config, root: Path, tag: str, experiment: str = "uniav", **kwargs) -> Trainer:
    prompts = Path(config.datasets.synthetic.tasks["tal"].annotations).parents[1] / "prompts"
    return Trainer(config, experiment, output_dir=root / f"out_{tag}",
                   work_dir=root / f"work_{tag}", prompts_dir=prompts, progress=False, **kwargs)


@pytest.fixture(scope="module")
def pretrained(planted_root, tmp_path_factory) -> dict[str, Path]:
    """Weights of experiments uniav, single_sed and linear_cls, initialised from another seed
    than the runs below (so that loaded and fresh tensors differ)."""
    root = tmp_path_factory.mktemp("pretrained")
    config = tiny_config(planted_root, seed=77)
    out = {}
    for experiment in ("uniav", "single_sed", "linear_cls"):
        trainer = _trainer(config, root, experiment, experiment)
        out[experiment] = root / f"{experiment}.safetensors"
        export_weights(out[experiment], trainer.step.ema.module.state_dict(),
                       trainer.export_metadata())
    return out


@pytest.fixture(scope="module")
def fresh(planted_root, tmp_path_factory) -> Trainer:
    """A run of experiment uniav without --init-from (its fresh initialisation)."""
    return _trainer(tiny_config(planted_root), tmp_path_factory.mktemp("fresh"), "fresh")


def test_run_starts_from_the_weights(planted_root, pretrained, fresh, tmp_path):
    weights = pretrained["uniav"]
    tensors, _ = load_exported_weights(weights)
    trainer = _trainer(tiny_config(planted_root), tmp_path, "init", init_from=weights)
    fresh_state = fresh.model.state_dict()
    compared = 0
    for name, value in trainer.model.state_dict().items():
        if name.startswith(PROMPTS_PREFIX):  # the run's own prompts
            assert torch.equal(value, fresh_state[name])
            continue
        assert torch.equal(value, tensors[name]), name
        assert torch.equal(trainer.step.ema.module.state_dict()[name], tensors[name]), name
        compared += 1
    assert compared == len(tensors) - 3
    assert not any(torch.equal(trainer.model.state_dict()[n], fresh_state[n])
                   for n in ("cls_head.text_proj.weight", "reg_head.offset_heads.sed.conv.weight"))
    assert trainer.step.optimizer.state_dict()["state"] == {} and trainer.iteration == 0
    assert trainer.step.ema.updates == 0
    assert trainer.config_hash != fresh.config_hash
    record = trainer.export_metadata()["init_from"]
    assert record["file"] == str(weights) and record["experiment"] == "uniav"
    assert len(record["sha256"]) == 64 and record["tensors_loaded"] == compared


def test_tasks_missing_from_the_weights_start_fresh(planted_root, pretrained, fresh, tmp_path,
                                                    caplog):
    trainer = _trainer(tiny_config(planted_root), tmp_path, "more",
                       init_from=pretrained["single_sed"])
    tensors, _ = load_exported_weights(pretrained["single_sed"])
    state, fresh_state = trainer.model.state_dict(), fresh.model.state_dict()
    assert torch.equal(state["reg_head.offset_heads.sed.conv.weight"],
                       tensors["reg_head.offset_heads.sed.conv.weight"])
    for task in ("tal", "avel"):
        name = f"reg_head.offset_heads.{task}.conv.weight"
        assert torch.equal(state[name], fresh_state[name])
    assert set(trainer.init_weights.fresh) == {"tal", "avel"}
    assert "task tal is not in the weights" in caplog.text


def test_tensors_the_run_lacks_are_ignored(planted_root, pretrained, tmp_path, caplog):
    trainer = _trainer(tiny_config(planted_root), tmp_path, "fewer", "single_sed",
                       init_from=pretrained["uniav"])
    assert set(trainer.init_weights.ignored) == {"tal", "avel"}
    assert trainer.export_metadata()["init_from"]["tensors_ignored"]["tal"] > 0
    assert "tensors of task avel are not part of this run: ignored" in caplog.text


def test_incompatible_weights_are_refused_listing_every_difference(planted_root, pretrained,
                                                                   tmp_path):
    # naive_multi: task_experts off (uniav's own architecture is pinned by its fine-tunes)
    config = tiny_config(planted_root, **{"model.embd_dim": 32})
    with pytest.raises(InputError) as error:
        _trainer(config, tmp_path, "wide", "naive_multi", init_from=pretrained["uniav"])
    message = str(error.value)
    assert f"file {pretrained['uniav']}" in message and "field 'model_spec'" in message
    assert "model.embd_dim: weights 16, this run 32" in message
    assert "model.task_experts: weights True, this run False" in message


def test_linear_classifier_with_other_classes_is_refused(planted_root, pretrained, tmp_path):
    tensors, metadata = load_exported_weights(pretrained["linear_cls"])
    metadata["classes"]["sed"] = ["Dog", "Speech", "Cat"]
    other = tmp_path / "other_classes.safetensors"
    export_weights(other, tensors, metadata)
    with pytest.raises(InputError, match=r"classes\.sed \(linear classifier: one output per "
                                         r"class\): weights \['Dog', 'Speech', 'Cat'\]"):
        _trainer(tiny_config(planted_root), tmp_path, "linear", "linear_cls", init_from=other)


def test_held_out_classes_take_the_offsets_of_their_classes_by_name(planted_root, pretrained,
                                                                     tmp_path):
    config = tiny_config(planted_root, **{"experiments.uniav.held_out_classes":
                                          {"sed": ["Speech"]}})
    trainer = _trainer(config, tmp_path, "held", init_from=pretrained["uniav"])
    tensors, _ = load_exported_weights(pretrained["uniav"])
    source = tensors["reg_head.offset_heads.sed.conv.weight"]        # Dog, Speech, Blender
    loaded = trainer.model.state_dict()["reg_head.offset_heads.sed.conv.weight"]  # Dog, Blender
    assert torch.equal(loaded[0:2], source[0:2]) and torch.equal(loaded[2:4], source[4:6])
    assert trainer.init_weights.remapped == {"sed": {"from_weights": ["Dog", "Blender"],
                                                      "fresh": []}}


def test_resume_takes_the_checkpoint_and_refuses_other_weights(planted_root, pretrained,
                                                               tmp_path):
    # 5 iterations per epoch: the runs below stop before the first validation
    config = tiny_config(planted_root, **{"train.batch_size": {"tal": 2, "sed": 2, "avel": 2}})
    weights = pretrained["uniav"]
    straight = _trainer(config, tmp_path, "straight", init_from=weights)
    straight.fit(stop_after_iterations=3)
    _trainer(config, tmp_path, "resumed", init_from=weights).fit(stop_after_iterations=2)
    resumed = _trainer(config, tmp_path, "resumed", init_from=weights)
    resumed.fit(stop_after_iterations=3)
    assert resumed.iteration == 3
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(InputError, match="another configuration"):
        _trainer(config, tmp_path, "resumed", init_from=pretrained["single_sed"]).fit(
            stop_after_iterations=4)


def test_configured_init_from_needs_the_named_experiments_weights(planted_root, pretrained,
                                                                  tmp_path):
    config = tiny_config(planted_root, **{"experiments.finetune_sed": {
        "tasks": ["sed"], "init_from": {"experiment": "uniav"}}})
    with pytest.raises(ConfigError, match=r"experiments\.finetune_sed\.init_from: .* pass them "
                                          r"with --init-from"):
        _trainer(config, tmp_path, "ft", "finetune_sed")
    with pytest.raises(InputError, match="names experiment 'uniav', but these weights were "
                                         "trained for 'single_sed'"):
        _trainer(config, tmp_path, "ft", "finetune_sed", init_from=pretrained["single_sed"])
    trainer = _trainer(config, tmp_path, "ft", "finetune_sed", init_from=pretrained["uniav"])
    assert trainer.init_weights.experiment == "uniav"


@pytest.mark.parametrize("experiments, message", [
    ({"ft": {"tasks": ["sed"], "init_from": {"experiment": "nope"}}},
     r"experiments\.ft\.init_from\.experiment: unknown experiment 'nope'"),
    ({"a": {"tasks": ["sed"], "init_from": {"experiment": "b"}},
      "b": {"tasks": ["sed"], "init_from": {"experiment": "a"}}}, r"cycle \(a -> b -> a\)"),
    ({"ft": {"tasks": ["sed"], "init_from": {"experiment": "naive_multi"}}},
     r"experiments\.ft\.init_from: experiment 'naive_multi' has another architecture "
     r"\(model\.task_experts: True here, False in naive_multi\)"),
    ({"ft": {"tasks": ["sed"], "init_from": {"experiment": "uniav", "file": "x"}}},
     r"experiments\.ft\.init_from\.file"),
])
def test_init_from_config_is_validated(planted_root, experiments, message):
    raw = tiny_raw(planted_root)
    raw["experiments"].update(experiments)
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_job_plan_passes_the_init_weights(planted_root):
    plain = JobPlan(tiny_config(planted_root))
    plan = JobPlan(tiny_config(planted_root, **{"experiments.finetune_sed": {
        "tasks": ["sed"], "init_from": {"experiment": "uniav"}}}))
    assert plan.experiment_inputs("finetune_sed")["init_from"] == \
        "results/models/uniav/model.safetensors"
    assert plan.train_arguments("finetune_sed") == \
        "--init-from results/models/uniav/model.safetensors"
    assert plan.train_arguments("uniav") == "" and "init_from" not in plan.experiment_inputs("uniav")
    assert json.loads(plan.settings("train", experiment="finetune_sed"))["experiment"][
        "init_from"] == {"experiment": "uniav"}
    # experiments without the new keys keep their settings (no rerun, same checkpoint dirs)
    assert plan.settings("train", experiment="uniav") == plain.settings("train", experiment="uniav")


def test_cli_refuses_to_export_over_the_init_weights(planted_root, pretrained, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_raw(planted_root)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").symlink_to(pretrained["uniav"])
    before = pretrained["uniav"].read_bytes()
    status = main(["train", "--config", str(params), "--experiment", "uniav", "--output-dir",
                   str(out), "--work-dir", str(tmp_path / "work"), "--init-from",
                   str(pretrained["uniav"]), "--no-tracking", "--no-progress"])
    stderr = capsys.readouterr().err
    assert status == 2 and "--init-from" in stderr and "same file" in stderr
    assert pretrained["uniav"].read_bytes() == before
