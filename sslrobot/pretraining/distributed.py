"""torch.distributed: join a ``torchrun`` group, agree on flags across ranks.

Launch ``torchrun --nproc_per_node N -m sslrobot pretrain ...``; each process reads ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment. Gloo serves CPU runs, NCCL CUDA runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sslrobot.utils.device import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly one-process) group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every file; the others only compute."""
        return self.rank == 0


def init_distributed(device_name: str) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    A group that already exists (a caller set it up) is used as is and left to its owner.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, False)
    uses_cuda = device_name.startswith("cuda") or (
        device_name == "auto" and torch.cuda.is_available()
    )
    backend = "nccl" if uses_cuda else "gloo"
    if uses_cuda:
        torch.cuda.set_device(resolve_device(device_name, local_rank))
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, True)


def close_distributed(context: DistributedContext) -> None:
    """Leave the group if this context created it."""
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, context: DistributedContext, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank (so that all ranks stop together)."""
    if not context.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def barrier(context: DistributedContext) -> None:
    """Wait for every rank (no-op alone)."""
    if context.enabled:
        dist.barrier()


def group_rank() -> int:
    """This process's rank in the default group; 0 alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0
    return dist.get_rank()


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Average a (no-grad) tensor over the ranks of the default group; itself when alone.

    For batch statistics inside a training step (the centre of ``fdm``'s targets): every
    rank then uses the global batch's value, so N ranks compute what one process with their
    batches together would, as ``SyncBatchNorm`` does. All ranks must call it.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()
