"""Smoke tests per task on random CPU tensors: loss mode and predict mode, variants."""

from __future__ import annotations

import pytest
import torch

from uniav.config import ModelConfig, parse
from uniav.model import ModelSpec, TaskHeadConfig, UniAV, count_parameters

TASKS = {"tal": TaskHeadConfig(5, 64, False, 0.1, 400.0),
         "sed": TaskHeadConfig(4, 32, True, 0.0, 400.0),
         "avel": TaskHeadConfig(3, 64, True, 0.0, 300.0)}


def _model(**overrides) -> UniAV:
    cfg = parse(ModelConfig, {"embd_dim": 16, "head_dim": 16,
                                 **overrides}, "model")
    torch.manual_seed(0)
    model = UniAV(ModelSpec(cfg, TASKS, visual_dim=12, audio_dim=8, text_dim=6))
    for task, head in TASKS.items():
        model.set_text_embeddings(task, torch.nn.functional.normalize(torch.randn(head.num_classes, 6), dim=1))
    return model


def _batch(task: str, batch: int = 2):
    length = TASKS[task].max_seq_len
    visual, audio = torch.randn(batch, 12, length), torch.randn(batch, 8, length)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, length - 5:] = False
    segments = [torch.tensor([[2.0, 9.5], [20.0, 27.0]]), torch.tensor([[5.0, 12.0]])]
    labels = [torch.tensor([0, 1]), torch.tensor([2])]
    return visual, audio, mask, segments, labels


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("variant", [{}, {"task_experts": False}, {"classifier": "linear"}])
def test_loss_mode_backpropagates(task, variant):
    model = _model(**variant).train()
    visual, audio, mask, segments, labels = _batch(task)
    output = model(visual, audio, mask, task)
    losses = model.loss(output, segments, labels, task)
    assert set(losses) == {"cls_loss", "reg_loss", "final_loss"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["reg_loss"] > 0
    losses["final_loss"].backward()
    grads = [p.grad for n, p in model.named_parameters() if ".experts." in n and p.grad is not None]
    assert grads, "experts received no gradient"


@pytest.mark.parametrize("task", list(TASKS))
def test_predict_mode_shapes(task):
    model = _model().eval()
    visual, audio, mask, _, _ = _batch(task)
    with torch.no_grad():
        output = model(visual, audio, mask, task)
    head = TASKS[task]
    length = head.max_seq_len
    assert output.level_strides == [1, 2, 4, 8, 16, 32]
    for level, stride in enumerate(output.level_strides):
        steps = length // stride
        assert output.cls_logits[level].shape == (2, steps, head.num_classes)
        expected = (2, steps, head.num_classes, 2) if head.class_aware else (2, steps, 2)
        assert output.offsets[level].shape == expected
        assert (output.offsets[level] >= 0).all()
        assert output.masks[level].shape == (2, steps)
    # padded steps of the second video produce zero logits
    assert output.cls_logits[0][1, -5:].abs().sum() == 0


def test_only_the_current_task_expert_runs():
    model = _model().train()
    visual, audio, mask, segments, labels = _batch("sed")
    model.loss(model(visual, audio, mask, "sed"), segments, labels, "sed")["final_loss"].backward()
    touched = {n.split(".experts.")[1].split(".")[0] for n, p in model.named_parameters()
               if ".experts." in n and p.grad is not None and p.grad.abs().sum() > 0}
    assert touched == {"sed"}


def test_state_dict_carries_prompts_and_normalizers():
    model = _model()
    state = model.state_dict()
    assert state["cls_head.prompts.sed"].shape == (4, 6)
    assert state["loss_normalizers.avel"].item() == 300.0
    model.train()
    visual, audio, mask, segments, labels = _batch("avel")
    model.loss(model(visual, audio, mask, "avel"), segments, labels, "avel")
    assert model.state_dict()["loss_normalizers.avel"].item() != 300.0
    clone = _model()
    clone.load_state_dict(model.state_dict())
    assert clone.loss_normalizers["avel"].item() == model.loss_normalizers["avel"].item()


def test_naive_baseline_has_one_shared_expert_per_block():
    full, naive = _model(), _model(task_experts=False)
    expert_keys = {n.split(".experts.")[1].split(".")[0] for n, _ in naive.named_parameters()
                   if ".experts." in n}
    assert expert_keys == {"shared"}
    assert count_parameters(naive)["expert_parameters"] * 3 == count_parameters(full)["expert_parameters"]


def test_wrong_prompt_rows_are_refused():
    model = _model()
    with pytest.raises(ValueError, match="one row per class"):
        model.set_text_embeddings("tal", torch.zeros(4, 6))


def test_model_summary_of_the_paper_preset(capsys):
    """`uniav model-summary --preset paper`: the released implementation's parameter count."""
    import json

    from uniav.cli import main

    assert main(["model-summary", "--preset", "paper"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parameters"] == 130_750_693
    assert summary["expert_parameters"] == 100_835_328
