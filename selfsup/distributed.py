"""Data-parallel training under torchrun: who this process is, and the one process that logs and writes.

A stage started by `torchrun --nproc-per-node N` (selfsup.launch does that when compute.processes > 1)
finds WORLD_SIZE, RANK and LOCAL_RANK in its environment; `init` then joins the process group (NCCL on
CUDA, gloo on the CPU). Without torchrun every function here describes a single process of rank 0, so
the same stage code runs either way.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def all_mean(values: list[float], device: torch.device) -> list[float]:
    """The mean of each value over all ranks (the values themselves in a single process)."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def all_gathered(t: torch.Tensor) -> torch.Tensor:
    """`t` of every rank (each of the same shape), concatenated in rank order; `t` itself in a single process."""
    if not dist.is_initialized():
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def all_min(value: int, device: torch.device) -> int:
    """The smallest of each rank's `value` (the value itself in a single process)."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def rank() -> int:
    """This process's rank; before the group is joined, the one torchrun assigned (0 without torchrun)."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True in the process that logs and writes outputs: rank 0, or the only process."""
    return rank() == 0


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> torch.device:
    """Join the process group when torchrun started several processes; the device this rank trains on
    (on CUDA, one GPU per rank: cuda:LOCAL_RANK)."""
    if not launched() or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class NullLive:
    """Stands in for dvclive's Live on the ranks that do not log: accepts every call, writes nothing."""

    def __init__(self):
        self.step, self.summary = 0, {}

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

    def next_step(self):
        self.step += 1
