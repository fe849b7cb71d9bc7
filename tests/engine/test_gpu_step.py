"""The throughput changes of the training step change nothing on the CPU: multi-tensor EMA,
prefetched batches (also across a resume), ``train.compile`` (``auto`` = eager on the CPU,
``on`` compiles or stops with a clear error, ``auto``'s fallback redoes the step eagerly)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine.conftest import tiny_config
from uniav.engine.prefetch import BatchPrefetcher, StepBatch
from uniav.engine.sampling import BatchStream
from uniav.engine.schedule import ModelEMA
from uniav.engine.stepper import CompileError
from uniav.engine.trainer import Trainer

# ---- EMA --------------------------------------------------------------------------------


def _loop_ema_update(ema: ModelEMA, model: torch.nn.Module) -> None:
    """The per-tensor EMA update this project used before the multi-tensor one."""
    decay = ema.current_decay()
    with torch.no_grad():
        for ema_param, param in zip(ema.module.parameters(), model.parameters()):
            ema_param.lerp_(param.detach(), 1.0 - decay)
        for ema_buffer, buffer in zip(ema.module.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)
    ema.updates += 1


@pytest.mark.parametrize("warmup", [False, True])
def test_foreach_ema_equals_the_loop(warmup):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3), torch.nn.BatchNorm1d(8),
                                torch.nn.Linear(5, 3))
    fast, slow = ModelEMA(model, 0.999, warmup=warmup), ModelEMA(model, 0.999, warmup=warmup)
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(torch.randn(8))
            model[1].num_batches_tracked.add_(1)
        fast.update(model)
        _loop_ema_update(slow, model)
    assert fast.updates == slow.updates == 5
    for (name, a), b in zip(fast.module.state_dict().items(), slow.module.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(fast.module[0].weight, model[0].weight)


# ---- prefetching ------------------------------------------------------------------------


def _prepare(task: str, picks) -> StepBatch:
    """A pure function of the picks (as the trainer's is): indices and a draw of each crop
    generator."""
    indices = torch.tensor([index for index, _ in picks])
    draws = torch.tensor(np.array([rng.random(3) for _, rng in picks]))
    return StepBatch(visual=draws, audio=indices, mask=indices > -1, segments=[], labels=[],
                     targets=(indices, draws), video_ids=[f"{task}{i}" for i in indices.tolist()])


def _streams(reshuffle: bool) -> dict[str, BatchStream]:
    return {"a": BatchStream(10, 3, 0, "a", reshuffle=reshuffle),
            "b": BatchStream(7, 2, 0, "b", reshuffle=reshuffle)}


def _take(prefetcher, streams, schedule):
    """Batches of the schedule: task names, "restart" (the released sampler at an epoch end)
    or ("resume", states) (a loaded checkpoint)."""
    out = []
    for what in schedule:
        if what == "restart":
            for stream in streams.values():
                stream.restart()
            prefetcher.refresh()
        elif isinstance(what, tuple):
            for task, state in what[1].items():
                streams[task].load_state_dict(state)
            prefetcher.refresh()
        else:
            batch = prefetcher.next(what)
            out.append((what, batch.video_ids, batch.visual.clone()))
    return out


@pytest.mark.parametrize("reshuffle", [True, False])
def test_prefetched_batches_are_the_batches(reshuffle):
    resume_state = {"a": {"consumed": 2, "position": 1}, "b": {"consumed": 5, "position": 0}}
    schedule = (["a", "b"] * 6 + ["restart"] + ["a", "a", "b"] * 3 + [("resume", resume_state)]
                + ["b", "a"] * 4)
    results = {}
    for enabled in (False, True):
        streams = _streams(reshuffle)
        prefetcher = BatchPrefetcher(streams, _prepare, device=torch.device("cpu"),
                                     enabled=enabled)
        prefetcher.start()
        try:
            results[enabled] = _take(prefetcher, streams, schedule)
        finally:
            prefetcher.close()
        results[enabled, "state"] = {t: s.state_dict() for t, s in streams.items()}
    # the reference: the streams' own batches, no prefetcher at all
    streams = _streams(reshuffle)
    reference = []
    for what in schedule:
        if what == "restart":
            for stream in streams.values():
                stream.restart()
        elif isinstance(what, tuple):
            for task, state in what[1].items():
                streams[task].load_state_dict(state)
        else:
            batch = _prepare(what, streams[what].next())
            reference.append((what, batch.video_ids, batch.visual))
    for enabled in (False, True):
        assert len(results[enabled]) == len(reference)
        for (task, ids, draws), (ref_task, ref_ids, ref_draws) in zip(results[enabled], reference):
            assert (task, ids) == (ref_task, ref_ids)
            assert torch.equal(draws, ref_draws)
        assert results[enabled, "state"] == {t: s.state_dict() for t, s in streams.items()}


def test_prefetch_runs_ahead_in_one_worker_thread():
    threads = []

    def prepare(task, picks):
        import threading
        threads.append(threading.current_thread().name)
        return _prepare(task, picks)

    streams = _streams(True)
    prefetcher = BatchPrefetcher(streams, prepare, device=torch.device("cpu"))
    prefetcher.start()
    try:
        prefetcher.next("a")
        prefetcher.next("a")
    finally:
        prefetcher.close()
    assert threads and all(name.startswith("uniav-batches") for name in threads)
    assert streams["a"].consumed == 2 and streams["b"].consumed == 0


# ---- the trainer: prefetch, compile ------------------------------------------------------


def _trainer(config, root: Path, tag: str, experiment: str = "uniav") -> Trainer:
    prompts = Path(config.datasets.synthetic.tasks["tal"].annotations).parents[1] / "prompts"
    return Trainer(config, experiment, output_dir=root / f"out_{tag}",
                   work_dir=root / f"work_{tag}", prompts_dir=prompts, progress=False)


def _assert_same_training(a: Trainer, b: Trainer) -> None:
    assert a.iteration == b.iteration
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name
    for x, y in zip(a.step.ema.module.state_dict().values(), b.step.ema.module.state_dict().values()):
        assert torch.equal(x, y)
    assert a.history == b.history


ITERATIONS = 4


@pytest.fixture(scope="module")
def eager_run(planted_root, tmp_path_factory):
    """compile off, prefetch off: the reference run."""
    config = tiny_config(planted_root, **{"train.compile": False, "train.prefetch": False})
    trainer = _trainer(config, tmp_path_factory.mktemp("eager"), "eager")
    assert trainer.step.captured is None
    trainer.fit(stop_after_iterations=ITERATIONS)
    return trainer


def test_prefetch_and_compile_auto_train_bitwise_like_eager_on_cpu(eager_run, planted_root,
                                                                  tmp_path):
    config = tiny_config(planted_root, **{"train.compile": "auto", "train.prefetch": True})
    trainer = _trainer(config, tmp_path, "auto")
    assert trainer.step.captured is None   # auto: eager on the CPU
    trainer.fit(stop_after_iterations=ITERATIONS)
    _assert_same_training(trainer, eager_run)


def test_prefetch_across_a_resume(eager_run, planted_root, tmp_path):
    config = tiny_config(planted_root, **{"train.prefetch": True})
    _trainer(config, tmp_path, "resumed").fit(stop_after_iterations=1)   # "killed"
    resumed = _trainer(config, tmp_path, "resumed")
    resumed.fit(stop_after_iterations=ITERATIONS)
    _assert_same_training(resumed, eager_run)


def test_compile_on_without_a_compiler_stops_clearly(planted_root, tmp_path, monkeypatch):
    def broken_compile(*args, **kwargs):
        raise RuntimeError("no compiler here\nlong details")

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.raises(CompileError, match="train.compile is on .*RuntimeError: no compiler"):
        _trainer(tiny_config(planted_root, **{"train.compile": True}), tmp_path, "on")


def _failing_backend(graph_module, example_inputs):
    raise RuntimeError("this backend cannot compile")


def test_compile_failing_at_the_first_step(eager_run, planted_root, tmp_path, caplog):
    """A failure in a task's first compiled step: ``on`` raises; the fallback (``auto``'s) logs
    one warning, undoes the attempt and trains exactly like eager mode."""
    torch._dynamo.reset()
    config = tiny_config(planted_root, **{"train.prefetch": False})
    strict = _trainer(config, tmp_path, "strict")
    assert strict.step.enable_compile(backend=_failing_backend, required=True)
    with pytest.raises(CompileError, match="train.compile is on .*_failing_backend"):
        strict.fit(stop_after_iterations=1)

    torch._dynamo.reset()
    lenient = _trainer(config, tmp_path, "lenient")
    assert lenient.step.enable_compile(backend=_failing_backend, required=False)
    with caplog.at_level(logging.WARNING, logger="uniav.engine.stepper"):
        lenient.fit(stop_after_iterations=ITERATIONS)
    warnings = [r for r in caplog.records if "training continues in eager mode" in r.message]
    assert len(warnings) == 1 and "_failing_backend" in lenient.step.compile_fallback
    assert lenient.step.captured is None
    _assert_same_training(lenient, eager_run)


def test_compiled_step_trains_like_eager(planted_root, tmp_path):
    """``train.compile: on`` on the CPU, through torch.compile (the aot_eager backend: the
    same graph capture as inductor without a C++ toolchain): the same losses and weights as the
    eager run.  One task (single_sed): capturing a graph per task of the multi-task model costs
    a minute on this CPU and proves nothing more."""
    torch._dynamo.reset()
    config = tiny_config(planted_root, **{"train.prefetch": False})
    eager = _trainer(tiny_config(planted_root, **{"train.compile": False,
                                                  "train.prefetch": False}),
                     tmp_path, "eager_sed", "single_sed")
    eager.fit(stop_after_iterations=ITERATIONS)
    trainer = _trainer(config, tmp_path, "compiled", "single_sed")
    assert trainer.step.enable_compile(backend="aot_eager", required=True)
    trainer.fit(stop_after_iterations=ITERATIONS)
    assert trainer.step.captured is not None and trainer.step.compile_fallback is None
    assert trainer.iteration == eager.iteration == ITERATIONS
    for (name, x), y in zip(trainer.model.state_dict().items(),
                            eager.model.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)

