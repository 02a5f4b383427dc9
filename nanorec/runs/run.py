"""One way into a finished run: `run = Run.open("runs/beauty", device="cpu")` is what every surface
scores with (its fields below; user_ids and histories are None for a run older than histories.parquet).

Every surface (evaluate, recommend, serve, the Python API, tune's winner, the leaderboard, the
benchmarks) opens runs here, and training builds its end-of-run scorer with the same builder
(methods/gpt.py's `shipped_scorer`): a run is scored one way wherever it is opened. The folder
is checked as a whole first: items.json against data.json's hash and size, the weights and
tables against the vocabulary's size, the histories' item indices against the vocabulary.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .. import methods
from ..config import Config
from ..data import Sequences
from ..methods.gpt import shipped_scorer  # noqa: F401 - train's end of run imports it from here
from ..scoring import fusion
from ..scoring.scorer import Scorer, gpt_scorer
from ..scoring.seen import run_excludes
from . import rundir


@dataclass
class Run:
    run_dir: str
    config: Config                     # resolved (config.json; a key missing is an error, never a default)
    item_ids: np.ndarray               # (N+1,) internal index -> original item id (items.json; 0 = padding)
    user_ids: np.ndarray | None        # (U,) the users of the saved histories
    histories: Sequences | None        # U rows, in the run's vocabulary (histories.parquet)
    scorer: Scorer                     # as the run ships it: GPT logits (+ fusion terms) or the baseline's
    model: object                      # the GPT (eval mode) or the fitted baseline
    exclude_seen: bool = True          # the run's default for every list (config, or auto's choice: seen.py)

    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1

    @classmethod
    def open(cls, run_dir: str, device: str = "cpu") -> "Run":
        """The finished run in `run_dir`, checked, with its shipped scorer on `device`."""
        rundir.require_folder(run_dir)
        cfg = rundir.read_config(run_dir)
        item_ids = rundir.read_items(run_dir)
        model, scorer = methods.get(cfg.method).open(run_dir, cfg, item_ids, device)
        user_ids = histories = None
        if os.path.exists(os.path.join(run_dir, rundir.HISTORIES)):
            user_ids, histories = rundir.read_histories(run_dir, len(item_ids) - 1)
        return cls(run_dir, cfg, item_ids, user_ids, histories, scorer, model, run_excludes(run_dir, cfg))


def fusion_terms(run: "Run", device: str = "cpu"):
    """A fused GPT run's terms apart (nanorec inspect): (the GPT's own scorer, tables, content
    term or None, weights), or None for any other run."""
    if getattr(run.model, "fusion", None) is None:  # the parts Run.open read (methods/gpt.py)
        return None
    tables, weights = run.model.fusion
    content = fusion.content_term(run.model) if weights[2] else None
    return gpt_scorer(run.model, device), tables, content, weights
