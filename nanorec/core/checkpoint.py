"""A training checkpoint (ckpt.pt): the loop's progress (TrainState), model, optimizer, config
and every process's RNG state, so that --resume draws the same batches, dropout and negatives."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch

from ..config import Config
from ..errors import DataError
from ..runs import rundir
from . import distributed


@dataclass
class TrainState:
    """Everything about the loop's progress that a checkpoint must restore."""
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0          # batches of `epoch` already trained on
    best_ndcg: float = -1.0
    best_step: int = 0
    bad_evals: int = 0               # validations since the last improvement
    history: list = field(default_factory=list)
    loss_sum: float = 0.0            # sum of training losses since the last validation...
    loss_steps: int = 0              # ...over this many steps
    train_seconds: float = 0.0       # time in training steps only (validation excluded), across resumes
    train_tokens: int = 0            # target slots trained on, all processes


def save_checkpoint(path: str, model, optimizer, state: TrainState, cfg: Config, dd, device: str) -> None:
    """Every process takes part (the RNG states are gathered); rank 0 writes."""
    rng_ranks = distributed.gather_rng(dd)
    if not dd.main:
        return
    ck = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
          "state": json.dumps(asdict(state)), "config": json.dumps(cfg.to_dict()),
          "rng_cpu": torch.get_rng_state()}
    if device.startswith("cuda"):
        ck["rng_cuda"] = torch.cuda.get_rng_state()
    if rng_ranks is not None:
        ck["rng_cpu_ranks"] = rng_ranks
    rundir.save_checkpoint(ck, path)


def restore_checkpoint(ck: dict, path: str, model, optimizer, dd, device: str) -> TrainState:
    rundir.load_state(model, ck["model"], path)
    try:
        optimizer.load_state_dict(ck["optimizer"])
    except (ValueError, KeyError) as e:
        raise DataError(f"{path}: optimizer state does not fit the model ({e})") from None
    ranks = ck.get("rng_cpu_ranks")
    same_world = ranks is not None and ranks.shape[0] == dd.world
    # clone: set_rng_state reads a row view of the stacked states from the wrong offset (segfaults)
    torch.set_rng_state(ranks[dd.rank].clone() if same_world else ck["rng_cpu"])
    if device.startswith("cuda") and "rng_cuda" in ck:
        torch.cuda.set_rng_state(ck["rng_cuda"].cpu())
    return TrainState(**json.loads(ck["state"]))
