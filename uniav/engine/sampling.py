"""Deterministic, resumable per-task batch streams.

Every random choice of the data pipeline is a pure function of (seed, task, pass, position):
pass ``k`` over a task's training set uses a permutation drawn from
``Generator(seed, task, k)``, and the random crop of the item at position ``i`` of that pass
uses ``Generator(seed, task, k, 0, i)``.  The whole state of a stream is therefore two integers
(batches consumed, position in the current pass), which makes resuming a killed run - even
mid-epoch - give exactly the same batches as an uninterrupted one.

Under DistributedDataParallel each rank takes a disjoint, equally long shard of every pass
(rank ``r`` of ``W`` takes positions ``r, r + W, r + 2W, ...``), so batch ``j`` of the ``W``
ranks together is batch ``j`` of a single process whose batch is ``W`` times larger - the same
items, and, since crops are keyed by the position in the whole pass (never by the rank), the
same crops.  Together with the global loss normaliser (:meth:`uniav.model.UniAV.loss`) this
makes a run on ``W`` processes follow the one-process run with the same global batch.

With ``reshuffle=False`` (the released sampler: a ``DistributedSampler`` whose epoch is never
set) every pass uses the permutation of pass 0, and :meth:`BatchStream.restart` - called at each
epoch start, as the released loop re-creates its loader iterators - goes back to its start; the
crops still differ at every visit (keyed by the number of batches consumed).
"""

from __future__ import annotations

import hashlib
import numpy as np


def task_seed(seed: int, task: str) -> int:
    """A 32-bit seed for a task, stable across runs and Python versions."""
    digest = hashlib.sha256(f"{seed}:{task}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class BatchStream:
    """An endless stream of index batches over one task's training set.

    Args:
        num_items: size of the training set.
        batch_size: items per batch on this rank.
        seed: run seed.
        task: task name.
        rank, world_size: this process's shard.
        reshuffle: a new permutation every pass (False: the released sampler, see module docs).

    The last incomplete batch of each pass is dropped (as the released code does).
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, task: str, *, rank: int = 0,
                 world_size: int = 1, reshuffle: bool = True):
        if num_items < batch_size * world_size:
            raise ValueError(f"task {task!r}: {num_items} training videos cannot fill one batch "
                             f"of {batch_size} per process on {world_size} process(es)")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = task_seed(seed, task)
        self.rank = rank
        self.world_size = world_size
        self.shard_size = num_items // world_size
        self.batches_per_pass = self.shard_size // batch_size
        self.reshuffle = reshuffle
        self.consumed = 0
        self.position = 0  # batches taken from the current pass (reshuffle=False)

    def _pass_order(self, pass_index: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, pass_index]).permutation(self.num_items)
        return order[self.rank::self.world_size][: self.shard_size]

    def next(self) -> list[tuple[int, np.random.Generator]]:
        """The next batch: ``(dataset index, generator for that item's augmentation)`` pairs."""
        batch = self.peek()
        self.consumed += 1
        self.position += 1
        return batch

    def peek(self) -> list[tuple[int, np.random.Generator]]:
        """The batch :meth:`next` would return, without taking it."""
        if self.reshuffle:
            pass_index, batch_index = divmod(self.consumed, self.batches_per_pass)
            key = pass_index
        else:
            pass_index, batch_index = 0, self.position % self.batches_per_pass
            key = self.consumed  # a new crop at every visit
        order = self._pass_order(pass_index)
        start = batch_index * self.batch_size
        # position p of this rank's shard is position rank + p * world_size of the whole pass
        return [(int(order[p]),
                 np.random.default_rng([self.seed, key, 0, self.rank + p * self.world_size]))
                for p in range(start, start + self.batch_size)]

    def restart(self) -> None:
        """Go back to the start of the pass (the released sampler, at each epoch start)."""
        self.position = 0

    def state_dict(self) -> dict[str, int]:
        return {"consumed": self.consumed, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.consumed = int(state["consumed"])
        self.position = int(state.get("position", 0))
