"""The fixed-shape training loss (masked sums, no host synchronisation) equals the released
boolean-indexing loss, normaliser update included (with and without a count reducer)."""

from __future__ import annotations

import pytest
import torch

from uniav.config import ModelConfig, parse
from uniav.model import ModelSpec, TaskHeadConfig, UniAV
from uniav.model.losses import centre_diou_loss, sigmoid_focal_loss

TASKS = {"tal": TaskHeadConfig(5, 64, False, 0.1, 400.0),
         "sed": TaskHeadConfig(4, 32, True, 0.0, 400.0),
         "avel": TaskHeadConfig(3, 64, True, 0.0, 300.0)}


def _model() -> UniAV:
    cfg = parse(ModelConfig, {"embd_dim": 16, "head_dim": 16, "droppath": 0.0}, "model")
    torch.manual_seed(0)
    model = UniAV(ModelSpec(cfg, TASKS, visual_dim=12, audio_dim=8, text_dim=6))
    for task, head in TASKS.items():
        model.set_text_embeddings(
            task, torch.nn.functional.normalize(torch.randn(head.num_classes, 6), dim=1))
    return model


def _batch(task: str, *, empty: bool = False):
    length = TASKS[task].max_seq_len
    generator = torch.Generator().manual_seed(7)
    visual = torch.randn(3, 12, length, generator=generator)
    audio = torch.randn(3, 8, length, generator=generator)
    mask = torch.ones(3, length, dtype=torch.bool)
    mask[1, length - 5:] = False
    mask[2, length // 2:] = False
    if empty:   # no instance in the whole batch: no positive point
        segments = [torch.zeros((0, 2))] * 3
        labels = [torch.zeros(0, dtype=torch.long)] * 3
    else:       # the third video has none
        segments = [torch.tensor([[2.0, 9.5], [20.0, 27.0], [4.0, 30.0]]),
                    torch.tensor([[5.0, 12.0]]), torch.zeros((0, 2))]
        labels = [torch.tensor([0, 1, 1]), torch.tensor([2]), torch.zeros(0, dtype=torch.long)]
    return visual, audio, mask, segments, labels


def reference_loss(model: UniAV, output, segments, labels, task, count_reducer=None):
    """The loss as released (and as this project computed it before the fixed-shape rewrite):
    gathered rows by boolean indexing, ``.item()`` counts, the normaliser updated with Python
    numbers."""
    cfg = model.spec.model
    head = model.spec.tasks[task]
    length = output.masks[0].shape[1]
    cls_targets, reg_targets = model.targets(length, segments, labels, task, "cpu")
    valid = torch.cat(output.masks, dim=1)
    positive = (cls_targets.sum(-1) > 0) & valid
    num_positive = int(positive.sum().item())
    normalizer = model.loss_normalizers[task]
    if model.training:
        momentum = cfg.loss_norm_momentum
        batch_positive = num_positive
        if count_reducer is not None:
            batch_positive = int(count_reducer(positive.sum()).item())
        normalizer.mul_(momentum).add_((1 - momentum) * max(batch_positive, 1))
    logits = torch.cat(output.cls_logits, dim=1)[valid]
    smoothing = head.label_smoothing
    soft_targets = cls_targets[valid] * (1 - smoothing) + smoothing / (head.num_classes + 1)
    cls_loss = sigmoid_focal_loss(logits, soft_targets, alpha=cfg.focal_alpha,
                                  gamma=cfg.focal_gamma) / normalizer.float()
    predicted = torch.cat(output.offsets, dim=1)[positive]
    target = reg_targets[positive]
    if head.class_aware:
        regressed = (target > 0).any(-1)
        predicted, target = predicted[regressed], target[regressed]
    if num_positive == 0:
        reg_loss = 0.0 * predicted.sum()
    else:
        reg_loss = centre_diou_loss(predicted, target) / normalizer.float()
    return {"cls_loss": cls_loss, "reg_loss": reg_loss,
            "final_loss": cls_loss + cfg.reg_loss_weight * reg_loss}


def _losses_and_grads(model, task, batch, loss_fn, **kwargs):
    visual, audio, mask, segments, labels = batch
    model.zero_grad(set_to_none=True)
    output = model(visual, audio, mask, task)
    losses = loss_fn(model, output, segments, labels, task, **kwargs)
    losses["final_loss"].backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads


def _new_loss(model, output, segments, labels, task, **kwargs):
    return model.loss(output, segments, labels, task, **kwargs)


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("empty", [False, True])
@pytest.mark.parametrize("reducer", [None, "times3"])
def test_static_loss_equals_reference(task, empty, reducer):
    count_reducer = (lambda count: count * 3) if reducer else None
    batch = _batch(task, empty=empty)
    reference_model, model = _model().train(), _model().train()
    for _ in range(2):   # twice: the normaliser's moving average moves
        expected, expected_grads = _losses_and_grads(reference_model, task, batch, reference_loss,
                                                     count_reducer=count_reducer)
        actual, grads = _losses_and_grads(model, task, batch, _new_loss,
                                          count_reducer=count_reducer)
        # the normaliser update is the released one to the last bit
        assert torch.equal(model.loss_normalizers[task], reference_model.loss_normalizers[task])
        for name in expected:
            torch.testing.assert_close(actual[name], expected[name], rtol=1e-6, atol=1e-7,
                                       msg=name)
        assert grads.keys() == expected_grads.keys()
        for name in grads:
            torch.testing.assert_close(grads[name], expected_grads[name], rtol=1e-5, atol=1e-7,
                                       msg=name)
    assert all(torch.isfinite(g).all() for g in grads.values())


def test_count_reducer_decides_the_normaliser():
    """The reducer's (global) count - not the local one - moves the normaliser."""
    batch = _batch("tal")
    local, reduced = _model().train(), _model().train()
    calls = []

    def reducer(count):
        calls.append(count.clone())
        return count * 100

    _losses_and_grads(local, "tal", batch, _new_loss)
    _losses_and_grads(reduced, "tal", batch, _new_loss, count_reducer=reducer)
    assert len(calls) == 1 and calls[0].dtype == torch.int64
    momentum = local.spec.model.loss_norm_momentum
    start = TASKS["tal"].init_loss_norm
    assert float(reduced.loss_normalizers["tal"]) == pytest.approx(
        start * momentum + (1 - momentum) * 100 * int(calls[0]))
    assert not torch.equal(local.loss_normalizers["tal"], reduced.loss_normalizers["tal"])


def test_eval_mode_leaves_the_normaliser():
    model = _model().eval()
    visual, audio, mask, segments, labels = _batch("sed")
    before = model.loss_normalizers["sed"].clone()
    with torch.no_grad():
        model.loss(model(visual, audio, mask, "sed"), segments, labels, "sed")
    assert torch.equal(model.loss_normalizers["sed"], before)


@pytest.mark.parametrize("task", ["tal", "sed"])
def test_loss_terms_trace_as_one_graph(task):
    """No ``.item()``, no boolean indexing, no data-dependent shape: ``fullgraph=True`` refuses
    any graph break."""
    torch._dynamo.reset()
    model = _model().train()
    visual, audio, mask, segments, labels = _batch(task)
    output = model(visual, audio, mask, task)
    targets = model.targets(visual.shape[-1], segments, labels, task, "cpu")

    def terms(cls_targets, reg_targets):
        return model.loss_terms(output, cls_targets, reg_targets, task)

    compiled = torch.compile(terms, fullgraph=True, backend="eager", dynamic=False)
    got = compiled(*targets)
    expected = model.loss_terms(output, *targets, task)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
