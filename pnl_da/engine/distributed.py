"""Several processes under torchrun: which one this is, and the few collectives a run needs.

A thin layer over ``torch.distributed``, which does the work: torchrun sets RANK, WORLD_SIZE
and LOCAL_RANK, the process group is NCCL on GPUs and gloo on CPUs, and gradients are averaged
by ``DistributedDataParallel`` (pnl_da/engine/trainer.py). Without torchrun (or with one
process) every helper here is the identity, and nothing is initialised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that writes files and prints (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched() -> bool:
    """Started by torchrun (or another launcher that sets its variables) with several
    processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> World:
    """This process's place, from the process group if there is one, else from torchrun's
    variables (before the group exists), else one process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(),
                     int(os.environ.get("LOCAL_RANK", "0")))
    return World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                 int(os.environ.get("LOCAL_RANK", "0")))


def device_for(name: str) -> str:
    """The device a process trains on: under torchrun, ``cuda`` (or ``auto`` on a GPU machine)
    means this process's GPU, ``cuda:LOCAL_RANK``, as timm's train.py does."""
    if not launched():
        return name
    cuda = name in ("cuda", "auto") and torch.cuda.is_available()
    return f"cuda:{world().local_rank}" if cuda else name


def init(device: torch.device) -> World:
    """Join the process group (once) when torchrun started several processes."""
    if launched() and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` reduced over every process (sum, min or max), in place."""
    if world().distributed:
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN,
                                    "max": dist.ReduceOp.MAX}[op])
    return tensor


def any_process(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds in any process (every process must call it at the same step)."""
    if not world().distributed:
        return flag
    return bool(all_reduce(torch.tensor([float(flag)], device=device), "max").item())


def gather(obj) -> list:
    """Every process's ``obj``, in rank order, on every process."""
    if not world().distributed:
        return [obj]
    out = [None] * world().size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj):
    """Rank 0's ``obj`` on every process."""
    if not world().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world().distributed:
        dist.barrier()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of a random stream in process ``rank``: process 0 keeps the single-process
    seed (one process trains exactly as without torchrun), the others get streams of their
    own."""
    return seed if rank == 0 else seed + 1_000_003 * rank
