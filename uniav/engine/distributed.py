"""Process-group set-up: single process by default, DistributedDataParallel under ``torchrun``.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; with them present the process
group is initialised with NCCL on GPUs and Gloo on CPU and the model is wrapped in
DistributedDataParallel - also for a single process (``--nproc_per_node 1``), which exercises
the same code path on a one-GPU machine.  Rank 0 logs, evaluates and saves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: rank, world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    enabled: bool = False  # a process group is initialised (launched by torchrun)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(requested: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def init_distributed(requested_device: str = "auto") -> DistributedContext:
    """Initialise the process group when launched by ``torchrun``; otherwise a 1-process context."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistributedContext(0, 1, 0, resolve_device(requested_device))
    world_size = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(requested_device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, local_rank, device, enabled=True)


def barrier(context: DistributedContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if context.enabled:
        dist.barrier()


def broadcast_object(context: DistributedContext, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (pickled only between our own processes)."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def shutdown(context: DistributedContext) -> None:
    """Destroy the process group if this module created one."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def sum_over_processes(value: torch.Tensor) -> torch.Tensor:
    """The sum of ``value`` over every process of the group (a new tensor; ``value`` itself
    when no process group is initialised)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total
