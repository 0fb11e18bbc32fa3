"""torch.distributed under torchrun: set-up, and the few collectives the losses need.

Every loss here is written so that N ranks with local batches give the same value and gradients as one process
with their concatenation: features are gathered (with gradient where they are negatives for other ranks' rows),
and each loss is a sum over local items divided by the *global* item count (`global_mean`). DDP averages
gradients over ranks, so that sum is scaled by the world size; the mean of the ranks' values is the global loss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Dist:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*), or run alone.
    NCCL when each rank has a GPU, gloo on CPU."""
    cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if world > 1:
        return Dist(dist.get_rank(), dist.get_world_size(), local, dev)
    return Dist(device=dev)


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _sizes(n: int, device) -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world()[1])]
    dist.all_gather(sizes, torch.tensor([n], device=device))
    return [int(s) for s in sizes]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each rank the summed gradient of its own rows."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(world()[1])]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        rank, size = world()
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss depends on every row
        n = grad.shape[0] // size
        return grad[rank * n:(rank + 1) * n]


def gather(x: torch.Tensor, grad: bool = False) -> tuple[torch.Tensor, int]:
    """Rows of every rank, in rank order, and where this rank's rows start. Ranks may hold different numbers of
    rows (a skipped image): rows are padded to the largest count for the collective and cut again after.
    With `grad`, gradients flow back to the rank that owns each row (open_clip's gather-with-grad)."""
    rank, size = world()
    if size == 1:
        return x, 0
    sizes = _sizes(x.shape[0], x.device)
    longest = max(sizes)
    padded = torch.cat([x, x.new_zeros(longest - x.shape[0], *x.shape[1:])]) if x.shape[0] < longest else x
    if grad:
        parts = _GatherWithGrad.apply(padded).split(longest)
    else:
        parts = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, sizes)]), sum(sizes[:rank])


def total(value: float | int, device) -> float:
    """Sum of a number over ranks (no gradient)."""
    if world()[1] == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t)


def global_mean(local_sum: torch.Tensor, local_count: int) -> torch.Tensor:
    """local_sum * world / global_count: after DDP's gradient average, the gradient of the global mean; and the
    ranks' values average to it (see the module docstring)."""
    size = world()[1]
    count = total(local_count, local_sum.device)
    return local_sum * (size / max(count, 1.0))


def mean_over_ranks(values: dict[str, float], device) -> dict[str, float]:
    """Logged losses: the average over ranks of each value (the global loss, by `global_mean`)."""
    size = world()[1]
    if size == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / size for k, v in zip(keys, t)}


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
