"""From a trained model (or a run directory) to scores over items.

Shared by training (validation), `nanorec evaluate`, `nanorec recommend` and
the server, so every path scores a history exactly the same way: its last
`block_size` items, positions from 0, the prediction read after the last item.
"""
from __future__ import annotations

import contextlib
import json
import os

import numpy as np
import torch

from .config import Config
from .data import DataError, Sequences
from .model import GPT
from .packing import left_aligned


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def autocast(cfg: Config, device: str):
    """bf16 autocast on CUDA (unless dtype=float32), plain fp32 on CPU (unless dtype=bfloat16)."""
    use_bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and device.startswith("cuda"))
    if use_bf16:
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_scorer(model: GPT, cfg: Config, device: str):
    """A `nanorec.evaluate.Scorer`: (histories, users) -> (B, N+1) CPU float scores."""

    def scorer(histories: Sequences, users=None) -> torch.Tensor:
        tokens, seq_ids, pos_ids, last = left_aligned(histories, cfg.block_size)
        t = lambda a: torch.from_numpy(a).to(device)
        was_training = model.training
        model.eval()
        with autocast(cfg, device):
            scores = model.score(t(tokens), t(pos_ids), t(seq_ids), t(last))
        model.train(was_training)
        return scores.float().cpu()

    return scorer


def load_content(cfg: Config, item_ids: np.ndarray, log=print) -> list:
    """The frozen content tables named in cfg.content, aligned to the item vocabulary:
    [(table (N+1, D) float32, has_content (N+1,) bool), ...] (see nanorec.content)."""
    if not cfg.content:
        return []
    from .content import load_content as load_tables
    return load_tables(cfg.content, item_ids, log)


def read_items(run_dir: str) -> np.ndarray:
    """items.json: position i = original id of internal index i (position 0 = null, padding)."""
    with open(os.path.join(run_dir, "items.json")) as f:
        ids = json.load(f)
    arr = np.array(ids[1:])
    out = np.empty(len(ids), dtype=arr.dtype if arr.dtype.kind in "iu" else object)
    out[1:] = arr
    out[0] = -1 if out.dtype.kind in "iu" else ""
    return out


def write_items(run_dir: str, item_ids: np.ndarray) -> None:
    ids = [None] + [x.item() if hasattr(x, "item") else x for x in item_ids[1:]]
    with open(os.path.join(run_dir, "items.json"), "w") as f:
        json.dump(ids, f)


def load_run(run_dir: str, device: str = "cpu", weights: str = "model.safetensors"):
    """(cfg, model in eval mode, item_ids) from a run directory; no unpickling."""
    from safetensors.torch import load_file

    for name in ("config.json", "items.json", weights):
        if not os.path.exists(os.path.join(run_dir, name)):
            raise DataError(f"{run_dir}: not a finished run directory ({name} is missing)")
    cfg = Config.load(os.path.join(run_dir, "config.json"))
    item_ids = read_items(run_dir)
    content = load_content(cfg, item_ids, log=lambda *_: None)
    model = GPT(cfg, len(item_ids) - 1, content)
    model.load_state_dict(load_file(os.path.join(run_dir, weights)))
    model.to(device).eval()
    return cfg, model, item_ids
