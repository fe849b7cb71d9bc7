"""Training batches prepared ahead: each task's next batch is read, cropped, collated and given
its targets in a background thread while the current step runs.

Which batch a step gets is decided by the task's :class:`~uniav.engine.sampling.BatchStream`
alone: a batch is prepared from :meth:`~uniav.engine.sampling.BatchStream.peek` - the indices
and crop generators that :meth:`~uniav.engine.sampling.BatchStream.next` returns next - and is
handed out only if the stream is still at the state it was prepared for (``consumed``,
``position``); otherwise (a restart of the released sampler, a loaded checkpoint) it is
discarded and the batch is prepared again.  Items are pure functions of (index, generator), so a
run with prefetching gets exactly the batches of a run without, and the streams' state - what
checkpoints save - is untouched by it.

Every preparation runs on the one worker thread (a batch needed at once is queued there too),
so a dataset and its feature cache are never used by two threads.  On CUDA the worker stages
the batch in pinned (page-locked) memory and copies it to the device on a copy stream of its
own; the step's stream waits for that copy (an event), so the transfer overlaps the previous
step instead of preceding the next one.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from uniav.engine.sampling import BatchStream

#: ``(dataset index, crop generator)`` pairs of one batch (:meth:`BatchStream.peek`).
Picks = list[tuple[int, np.random.Generator]]


@dataclass
class StepBatch:
    """The inputs of one task step.

    Attributes:
        visual, audio: (B, C, T) padded features; mask: (B, T) bool.
        segments, labels: per video (N_i, 2) grid units and (N_i,) class indices (CPU).
        targets: ``(cls_targets (B, P, K), reg_targets)`` of the batch
            (:meth:`uniav.model.UniAV.targets`), on the device of ``visual``.
        video_ids: the videos of the batch, in order.
        ready: on CUDA, the event that completes the copy to the device.
    """

    visual: torch.Tensor
    audio: torch.Tensor
    mask: torch.Tensor
    segments: list[torch.Tensor]
    labels: list[torch.Tensor]
    targets: tuple[torch.Tensor, torch.Tensor]
    video_ids: list[str] = field(default_factory=list)
    ready: Any = None

    def device_tensors(self) -> list[torch.Tensor]:
        return [self.visual, self.audio, self.mask, *self.targets]

    def wait(self) -> None:
        """Make the current CUDA stream wait for the copy to the device (no-op on the CPU)."""
        if self.ready is None:
            return
        stream = torch.cuda.current_stream(self.visual.device)
        stream.wait_event(self.ready)
        for tensor in self.device_tensors():   # allocated on the copy stream, used on this one
            tensor.record_stream(stream)
        self.ready = None


@dataclass
class _Pending:
    key: tuple[int, int]
    future: Future


class BatchPrefetcher:
    """Hands out each task's next :class:`StepBatch`, prepared ahead (see module docs).

    Args:
        streams: task -> its batch stream (advanced here, by :meth:`next`).
        prepare: ``prepare(task, picks) -> StepBatch`` on the CPU (a pure function of its
            arguments).
        device: where the steps run (CUDA: pinned memory and a copy stream).
        enabled: prepare in a background thread; False prepares each batch when it is needed,
            in the calling thread.
    """

    def __init__(self, streams: dict[str, BatchStream],
                 prepare: Callable[[str, Picks], StepBatch], *, device: torch.device,
                 enabled: bool = True):
        self.streams = streams
        self.prepare = prepare
        self.device = device
        self.enabled = enabled
        self._executor: ThreadPoolExecutor | None = None
        self._pending: dict[str, _Pending] = {}
        self._copy_stream = None

    @staticmethod
    def _key(stream: BatchStream) -> tuple[int, int]:
        return stream.consumed, stream.position

    def start(self) -> None:
        """Start preparing the next batch of every task (call after loading stream states)."""
        if not self.enabled:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uniav-batches")
        self.refresh()

    def refresh(self) -> None:
        """Re-prepare the batches of streams whose state changed (e.g. restarted) since their
        batch was prepared."""
        if self._executor is None:
            return
        for task, stream in self.streams.items():
            pending = self._pending.get(task)
            if pending is None or pending.key != self._key(stream):
                if pending is not None:
                    pending.future.cancel()
                self._submit(task)

    def _submit(self, task: str) -> None:
        assert self._executor is not None
        stream = self.streams[task]
        self._pending[task] = _Pending(self._key(stream),
                                       self._executor.submit(self._build, task, stream.peek()))

    def _build(self, task: str, picks: Picks) -> StepBatch:
        return self._stage(self.prepare(task, picks))

    def next(self, task: str) -> StepBatch:
        """The batch of the task's next step (the stream advances by one batch)."""
        stream = self.streams[task]
        pending = self._pending.pop(task, None)
        if pending is not None and pending.key == self._key(stream):
            batch = pending.future.result()
        else:
            if pending is not None:
                pending.future.cancel()
            picks = stream.peek()
            if self._executor is not None:   # the worker owns the datasets: queue it there
                batch = self._executor.submit(self._build, task, picks).result()
            else:
                batch = self._build(task, picks)
        stream.next()
        if self._executor is not None:
            self._submit(task)
        batch.wait()
        return batch

    def _stage(self, batch: StepBatch) -> StepBatch:
        """The batch on the device (CUDA: pinned memory, copied on the copy stream)."""
        if self.device.type == "cpu":
            return batch
        if self.device.type != "cuda":
            return _moved(batch, lambda t: t.to(self.device))
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            moved = _moved(batch, lambda t: t.pin_memory().to(self.device, non_blocking=True))
            moved.ready = torch.cuda.Event()
            moved.ready.record(self._copy_stream)
        return moved

    def close(self) -> None:
        """Stop the worker (batches being prepared are dropped)."""
        for pending in self._pending.values():
            pending.future.cancel()
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def _moved(batch: StepBatch, move: Callable[[torch.Tensor], torch.Tensor]) -> StepBatch:
    return StepBatch(visual=move(batch.visual), audio=move(batch.audio), mask=move(batch.mask),
                     segments=batch.segments, labels=batch.labels,
                     targets=(move(batch.targets[0]), move(batch.targets[1])),
                     video_ids=batch.video_ids)
