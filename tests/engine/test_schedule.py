"""LR schedule, EMA, plateau gate, optimizer groups, batch streams: hand-checked behaviour."""

from __future__ import annotations

import pytest
import torch

from uniav.config import ModelConfig, parse
from uniav.engine.optim import parameter_groups
from uniav.engine.sampling import BatchStream
from uniav.engine.schedule import ModelEMA, PlateauGate, warmup_cosine_factor
from uniav.model import ModelSpec, TaskHeadConfig, UniAV


def test_warmup_then_cosine():
    assert warmup_cosine_factor(0, 10, 110) == 0.0
    assert warmup_cosine_factor(5, 10, 110) == 0.5
    assert warmup_cosine_factor(10, 10, 110) == 1.0
    assert warmup_cosine_factor(60, 10, 110) == pytest.approx(0.5)
    assert warmup_cosine_factor(110, 10, 110) == pytest.approx(0.0)


def test_plateau_gate_follows_released_rule():
    gate = PlateauGate(patience=1, threshold=0.001, continue_threshold=0.005, cooldown=1)
    for value in (0.10, 0.20):            # improving
        gate.step(value)
    assert not gate.gated and gate.best == 0.20
    gate.step(0.2001)                      # not better by 0.1 % -> bad epoch 1
    assert not gate.gated
    gate.step(0.2001)                      # bad epoch 2 > patience -> gated, cooldown 1
    assert gate.gated
    gate.step(0.199)                       # within 0.5 % of best: stays gated (cooldown tick)
    assert gate.gated
    gate.step(0.19)                        # fell below best * (1 - 0.005): released
    assert not gate.gated


def test_ema_warmup_and_buffers():
    model = torch.nn.BatchNorm1d(3)
    ema = ModelEMA(model, decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)        # (1 + 0) / (10 + 0)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.running_mean.fill_(5.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, torch.full((3,), 1.0 + 0.9 * 1.0))  # 1 -> 2 by 0.9
    assert torch.equal(ema.module.running_mean, model.running_mean)           # copied


def _tiny_model(classifier="prompt"):
    cfg = parse(ModelConfig, {"embd_dim": 16, "head_dim": 16,
                                 "classifier": classifier}, "m")
    return UniAV(ModelSpec(cfg, {"tal": TaskHeadConfig(3, 32, False, 0.0, 100.0)}, 4, 4, 6))


def test_parameter_groups_decay_only_conv_and_linear_weights():
    model = _tiny_model()
    groups = {g["name"]: g for g in parameter_groups(model, base_lr=1e-3, weight_decay=1e-4,
                                                      text_proj_lr=5e-3)}
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups["decay"]["params"]}
    assert all(n.endswith("weight") for n in decayed)
    assert not any("norm" in n or "ln1" in n for n in decayed)
    plain = {names[id(p)] for p in groups["no_decay"]["params"]}
    assert "cls_head.logit_scale" in plain and "reg_head.scale.0.scale" in plain
    assert {names[id(p)] for p in groups["text_proj"]["params"]} == {"cls_head.text_proj.weight"}
    assert groups["text_proj"]["lr"] == 5e-3 and groups["text_proj_bias"]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))
    linear = {g["name"] for g in parameter_groups(_tiny_model("linear"), base_lr=1e-3,
                                                   weight_decay=1e-4, text_proj_lr=5e-3)}
    assert linear == {"decay", "no_decay"}


def test_batch_stream_is_a_pure_function_of_its_counter():
    stream = BatchStream(10, 3, seed=1, task="sed")
    batches = [[i for i, _ in stream.next()] for _ in range(7)]
    assert stream.batches_per_pass == 3
    for pass_start in (0, 3):                      # each pass: 9 distinct of the 10 videos
        seen = sum(batches[pass_start:pass_start + 3], [])
        assert len(set(seen)) == 9
    assert batches[:3] != batches[3:6]              # a new permutation every pass
    again = BatchStream(10, 3, seed=1, task="sed")
    again.load_state_dict({"consumed": 4})
    assert [i for i, _ in again.next()] == batches[4]
    first = BatchStream(10, 3, seed=1, task="sed").next()[0][1].integers(0, 1 << 30)
    assert first == BatchStream(10, 3, seed=1, task="sed").next()[0][1].integers(0, 1 << 30)


def test_batch_stream_shards_are_disjoint():
    ranks = [BatchStream(12, 2, seed=0, task="tal", rank=r, world_size=2) for r in range(2)]
    first_pass = [sum(([i for i, _ in s.next()] for _ in range(3)), []) for s in ranks]
    assert not set(first_pass[0]) & set(first_pass[1])
    with pytest.raises(ValueError, match="cannot fill one batch"):
        BatchStream(3, 2, seed=0, task="tal", world_size=2)
