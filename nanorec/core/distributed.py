"""Data-parallel training across processes and machines, started by torchrun.

    torchrun --standalone --nproc_per_node=8 -m nanorec.cli train --data D --out R ...
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \
        -m nanorec.cli train --data D --out R ...

Without torchrun's RANK / WORLD_SIZE everything here is a no-op with world size 1. A W-process
run is the same optimisation as one process: `batch_size` stays the GLOBAL rows a step, every
process builds the same packed epoch, takes every W-th row of each batch and scales its mean loss
by its share of the target slots, so DDP's gradient average is the one-process gradient (a test
checks the weights). Validation, checkpoints and the final test are rank 0's; the others wait.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .packing import IGNORE


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:  # the process that logs, validates and writes files
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device: str) -> tuple[Dist, str]:
    """Join the process group when started by torchrun -> (Dist, this process's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    d = Dist(rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if device.startswith("cuda"):
        device = f"cuda:{d.local_rank}"  # one GPU per process
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return d, device


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, d: Dist, device: str) -> torch.nn.Module:
    """DDP-wrap for training (rank 0's initial weights are broadcast to all)."""
    if not d.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [int(device.split(":")[1])] if device.startswith("cuda") else None
    return DDP(model, device_ids=ids)


def shard_rows(rows: np.ndarray, targets: np.ndarray, d: Dist,
               slot_weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(this process's rows of the global batch, its loss weight W * local slots / global slots (with
    slot_weights: of the weight sum), so the mean of weighted local losses is the global mean). A
    process left without rows gets row 0 with weight 0 (DDP needs every process in the all-reduce)."""
    if not d.enabled:
        return rows, 1.0
    local = rows[d.rank::d.world]
    if len(local) == 0:
        return rows[:1], 0.0
    if slot_weights is not None:
        w_global = float(slot_weights[rows].astype(np.float64).sum())
        w_local = float(slot_weights[local].astype(np.float64).sum())
        return local, d.world * w_local / w_global if w_global > 0 else 0.0
    n_global = int((targets[rows] != IGNORE).sum())
    n_local = int((targets[local] != IGNORE).sum())
    return local, d.world * n_local / max(n_global, 1)


def total(value, d: Dist, device: str):
    """The sum of a count (int) or a number (float) over every process (one all-reduce)."""
    if not d.enabled:
        return value
    exact = not isinstance(value, float)
    t = torch.tensor([value], dtype=torch.int64 if exact else torch.float64, device=device)  # nccl: CUDA tensors
    dist.all_reduce(t)
    return int(t.item()) if exact else float(t.item())


def global_mean(value: float, d: Dist, device: str) -> float:
    """The mean of a number over every process: for logging."""
    return total(value, d, device) / d.world


def broadcast_flag(flag: bool, d: Dist, device: str) -> bool:
    """Rank 0's decision (e.g. early stop) for every process."""
    if not d.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def gather_rng(d: Dist) -> torch.Tensor | None:
    """(W, S) every process's CPU RNG state, for an exact resume; None on one process."""
    if not d.enabled:
        return None
    states = [None] * d.world
    dist.all_gather_object(states, torch.get_rng_state())
    return torch.stack(states)


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()
