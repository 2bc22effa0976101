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
    check_distributed_device(device_name, world_size)
    uses_cuda = device_name.startswith("cuda") or (
        device_name == "auto" and torch.cuda.is_available()
    )
    if uses_cuda:  # barriers and NCCL's collectives use the current device
        torch.cuda.set_device(resolve_device(device_name, local_rank))
    if dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, False)
    backend = "nccl" if uses_cuda else "gloo"
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, True)


def check_distributed_device(device_name: str, world_size: int) -> None:
    """Refuse the devices a process group cannot use: a GPU index (every rank would take
    that one GPU, and NCCL fails on duplicates or hangs) and MPS (gloo, the only backend
    there, reduces CPU tensors only).

    Raises:
        ValueError: naming the device and what to use instead.
    """
    kind, _, index = device_name.partition(":")
    if kind == "cuda" and index:
        raise ValueError(
            f"device {device_name!r} under torchrun ({world_size} processes): each process "
            "takes the GPU of its LOCAL_RANK, so use --device cuda (or auto), and "
            "CUDA_VISIBLE_DEVICES to choose which GPUs"
        )
    mps_auto = (
        device_name == "auto"
        and not torch.cuda.is_available()
        and hasattr(torch.backends, "mps")
        and torch.backends.mps.is_available()
    )
    if kind == "mps" or mps_auto:
        raise ValueError(
            f"device {device_name!r} resolves to MPS, which torchrun's gloo backend cannot "
            f"reduce across {world_size} processes; use --device cpu, or one process on MPS"
        )


def close_distributed(context: DistributedContext) -> None:
    """Leave the group if this context created it."""
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool | torch.Tensor, context: DistributedContext, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank (so that all ranks stop together).

    A 0-d boolean tensor on the device is reduced as it is, so that reading the answer is the
    step's one wait for the device (reading the flag first and then the reduction was two).
    """
    if isinstance(flag, torch.Tensor):
        value = flag.to(device=device, dtype=torch.float32).reshape(1)
    else:
        value = torch.tensor([1.0 if flag else 0.0], device=device)
    if context.enabled:
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def least_and_greatest(
    values: list[int], context: DistributedContext, device: torch.device
) -> tuple[list[int], list[int]]:
    """Each of ``values``' least and greatest over the ranks (``values`` twice alone), in one
    reduction; each value below 2**53."""
    if not context.enabled:
        return list(values), list(values)
    # float64 holds such integers exactly (process groups are refused on MPS, which lacks it)
    mine = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    value = torch.cat([mine, -mine])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    n = len(values)
    return [int(-v) for v in value[n:].tolist()], [int(v) for v in value[:n].tolist()]


def step_range(step: int, context: DistributedContext, device: torch.device) -> tuple[int, int]:
    """The least and the greatest of every rank's ``step`` (``(step, step)`` alone)."""
    (least,), (greatest,) = least_and_greatest([step], context, device)
    return least, greatest


def differs_across_ranks(
    values: list[int], context: DistributedContext, device: torch.device
) -> bool:
    """Whether any rank holds other ``values`` (each below 2**53; False alone)."""
    least, greatest = least_and_greatest(values, context, device)
    return least != greatest


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
