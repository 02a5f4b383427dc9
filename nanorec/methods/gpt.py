"""The GPT behind the methods' interface: trained by train.py's loop, opened from its run folder with
its selected weights (model.safetensors) and, when fused, the fusion terms (fusion.json, its tables)."""
from __future__ import annotations

import os

import numpy as np

from ..config import Config, resolve
from ..content.tables import load_content
from ..core.model import GPT
from ..errors import DataError
from ..runs import rundir
from ..scoring import fusion as fusion_terms
from ..scoring.scorer import Scorer, gpt_scorer
from .base import Method
from .transitions import Transitions

TABLE = Method("transitions", Transitions)  # a fusion table (co-occurrence too) loads as transitions


class GPTMethod(Method):
    """The GPT: trained by train.run; `open` builds the scorer the run ships (shipped_scorer)."""
    trains = True

    def __init__(self):
        super().__init__("gpt", GPT, takes_weights=True)

    def open(self, run_dir: str, cfg, item_ids: np.ndarray, device: str = "cpu"):
        model = load_gpt(run_dir, cfg, item_ids, device)
        # (tables, weights) or None, kept for showing the terms apart (run.fusion_terms)
        model.fusion = read_fusion_parts(run_dir, model) if fused(run_dir, cfg, model.num_items) else None
        return model, shipped_scorer(model, device, model.fusion)


def shipped_scorer(model, device: str = "cpu", fusion: tuple | None = None, gpt: Scorer | None = None) -> Scorer:
    """The scorer a GPT run ships: its logits (`gpt`), plus with `fusion` = (tables, weights) the fusion terms."""
    gpt = gpt if gpt is not None else gpt_scorer(model, device)
    if fusion is None:
        return gpt
    tables, weights = fusion
    content = fusion_terms.content_term(model) if len(weights) > 2 and weights[2] else None
    return fusion_terms.fused_scorer(gpt, tables, content, weights)


def load_gpt(run_dir: str, cfg: Config | None = None, item_ids: np.ndarray | None = None, device: str = "cpu"):
    """The run's GPT with its selected weights (model.safetensors), in eval mode on `device`."""
    cfg = cfg if cfg is not None else rundir.read_config(run_dir)
    item_ids = item_ids if item_ids is not None else rundir.read_items(run_dir)
    content = load_content(cfg.content, item_ids, log=None) if cfg.content else []
    model = GPT(resolve(cfg, len(item_ids) - 1), len(item_ids) - 1, content)  # an old run's autos: unresolved
    rundir.load_weights(model, os.path.join(run_dir, rundir.WEIGHTS))
    return model.to(device).eval()


def fused(run_dir: str, cfg: Config, num_items: int) -> bool:
    """Whether a GPT run scores with fusion (older runs: auto off above LEGACY_AUTO_MAX_ITEMS items)."""
    legacy = cfg.fuse_transitions == "auto" and num_items > fusion_terms.LEGACY_AUTO_MAX_ITEMS \
        and not os.path.exists(os.path.join(run_dir, rundir.FUSION))
    return fusion_terms.enabled(cfg.fuse_transitions) and not legacy


def read_fusion_parts(run_dir: str, model) -> tuple[list, tuple]:
    """(tables, weights) of a fused run (a table of weight 0 is not read: older runs have none)."""
    weights = rundir.read_fusion(run_dir)
    tables = [TABLE.load(os.path.join(run_dir, rundir.FUSION_FILES[name]), model.num_items) if w else None
              for name, w in zip(rundir.FUSION_FILES, weights)]
    if weights[2] and not len(model.content):
        raise DataError(f"{os.path.join(run_dir, rundir.FUSION)}: a content weight, but the run has no content")
    return tables, weights
