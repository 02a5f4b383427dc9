"""One way into a finished run: `Run.open(run_dir)` is what every surface scores with.

    run = Run.open("runs/beauty", device="cpu")
    run.config      the resolved Config (config.json; a key missing is an error, never a default)
    run.item_ids    (N+1,) internal index -> original item id (items.json; slot 0 = padding)
    run.user_ids    (U,) the users of the saved histories, row u of run.histories
    run.histories   Sequences: every user's history in the run's vocabulary (histories.parquet);
                    user_ids and histories are None for a run from before that file existed
    run.scorer      the scorer exactly as the run ships it: a GPT run's logits plus the fusion
                    terms when it was trained with fusion, or the fitted baseline's scores
    run.num_items   N
    run.exclude_seen whether its lists leave out the user's earlier items by default: the
                    config's exclude_seen, or for auto the choice metrics.json records (seen.py)

`nanorec evaluate`, `recommend`, `serve`, the Python API, tune's winner, the leaderboard
and the benchmarks open runs here, and training builds its end-of-run scorer with the
same builder (`shipped_scorer`), so a run is scored one way wherever it is opened.

The folder is checked as a whole before anything is scored: items.json against the hash
and size data.json recorded at training (an edited vocabulary is refused, naming the
file), the weights and tables against the vocabulary's size, the histories' item indices
against the vocabulary. rundir.py names, reads and writes the files; this module builds
models and scorers from them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import rundir
from .config import Config, resolve
from .data import Sequences
from .errors import DataError, one_line
from .scoring import Scorer


@dataclass
class Run:
    run_dir: str
    config: Config
    item_ids: np.ndarray               # (N+1,)
    user_ids: np.ndarray | None        # (U,)
    histories: Sequences | None        # U rows
    scorer: Scorer
    model: object                      # the GPT (eval mode) or the fitted baseline
    exclude_seen: bool = True          # the run's default for every list (seen.run_excludes)

    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1

    @classmethod
    def open(cls, run_dir: str, device: str = "cpu") -> "Run":
        """The finished run in `run_dir`, checked, with its shipped scorer on `device`."""
        rundir.require_folder(run_dir)
        cfg = rundir.read_config(run_dir)
        item_ids = rundir.read_items(run_dir)
        if cfg.method == "gpt":
            model = load_gpt(run_dir, cfg, item_ids, device)
            fusion = read_fusion_parts(run_dir, cfg, model) if fused(run_dir, cfg, model.num_items) else None
            scorer = shipped_scorer(model, device, fusion)
        else:
            model = load_baseline(cfg.method, os.path.join(run_dir, rundir.BASELINE), len(item_ids) - 1)
            scorer = model.score
        user_ids = histories = None
        if os.path.exists(os.path.join(run_dir, rundir.HISTORIES)):
            user_ids, histories = rundir.read_histories(run_dir, len(item_ids) - 1)
        from .seen import run_excludes
        return cls(run_dir, cfg, item_ids, user_ids, histories, scorer, model, run_excludes(run_dir, cfg))


# -----------------------------------------------------------------------------
# the builders: a run's files -> models -> the shipped scorer

def shipped_scorer(model, device: str = "cpu", fusion: tuple | None = None, gpt: Scorer | None = None) -> Scorer:
    """The scorer a GPT run ships: its logits (`gpt`, default `scoring.gpt_scorer(model, device)`),
    plus, when `fusion` = (tables [transitions, cooccurrence], weights in fusion.SIGNALS order)
    is given, the weighted item-to-item terms and the content term (fusion.fused_scorer).
    Run.open and training's end-of-run both build the scorer here."""
    from . import fusion as fusion_terms
    from .scoring import gpt_scorer
    gpt = gpt if gpt is not None else gpt_scorer(model, device)
    if fusion is None:
        return gpt
    tables, weights = fusion
    content = fusion_terms.content_term(model) if len(weights) > 2 and weights[2] else None
    return fusion_terms.fused_scorer(gpt, tables, content, weights)


def load_gpt(run_dir: str, cfg: Config | None = None, item_ids: np.ndarray | None = None, device: str = "cpu"):
    """The run's GPT with its selected weights (model.safetensors), in eval mode on `device`."""
    from .content import load_content
    from .model import GPT
    cfg = cfg if cfg is not None else rundir.read_config(run_dir)
    item_ids = item_ids if item_ids is not None else rundir.read_items(run_dir)
    content = load_content(cfg.content, item_ids, log=None) if cfg.content else []
    model = GPT(resolve(cfg, len(item_ids) - 1), len(item_ids) - 1, content)  # an old run's autos: unresolved
    rundir.load_weights(model, os.path.join(run_dir, rundir.WEIGHTS))
    return model.to(device).eval()


def load_baseline(method: str, path: str, num_items: int):
    """A fitted baseline (baseline.safetensors, or a fusion table) rebuilt and checked to
    score exactly the run's num_items items."""
    from .baselines import shippable
    state = rundir.read_baseline(path, method)
    try:
        model = shippable()[method].from_state(state)
        width = len(model.score(Sequences(np.array([0, 1], np.int64), np.array([1], np.int64)), None)[0])
    except Exception as e:  # noqa: BLE001 - arrays that do not rebuild the model mean the file is damaged
        raise DataError(f"{path}: not a readable {method} model ({one_line(e)})") from None
    if width != num_items + 1:
        raise DataError(f"{path}: scores {width - 1} items, but {rundir.ITEMS} has {num_items}")
    return model


def fused(run_dir: str, cfg: Config, num_items: int) -> bool:
    """Whether a finished GPT run scores with fusion: fuse_transitions true or auto; a run
    written before fusion was exact had auto off above fusion.LEGACY_AUTO_MAX_ITEMS items
    (it has no fusion.json)."""
    from .fusion import LEGACY_AUTO_MAX_ITEMS, enabled
    legacy = cfg.fuse_transitions == "auto" and num_items > LEGACY_AUTO_MAX_ITEMS \
        and not os.path.exists(os.path.join(run_dir, rundir.FUSION))
    return enabled(cfg.fuse_transitions) and not legacy


def fusion_terms(run: "Run", device: str = "cpu"):
    """A fused GPT run's terms apart, for showing what lifted each item (nanorec inspect):
    (the GPT's own scorer, tables, content term or None, weights), or None for any other run."""
    if run.config.method != "gpt" or not fused(run.run_dir, run.config, run.num_items):
        return None
    from . import fusion
    from .scoring import gpt_scorer
    tables, weights = read_fusion_parts(run.run_dir, run.config, run.model)
    content = fusion.content_term(run.model) if weights[2] else None
    return gpt_scorer(run.model, device), tables, content, weights


def read_fusion_parts(run_dir: str, cfg: Config, model) -> tuple[list, tuple]:
    """(tables, weights) of a fused run: fusion.json's weights and the tables they use
    (a table whose weight is 0 is not read: runs from before co-occurrence have none)."""
    weights = rundir.read_fusion(run_dir)
    tables = [load_baseline("transitions", os.path.join(run_dir, rundir.FUSION_FILES[name]), model.num_items)
              if w else None for name, w in zip(rundir.FUSION_FILES, weights)]
    if weights[2] and not len(model.content):
        raise DataError(f"{os.path.join(run_dir, rundir.FUSION)}: a content weight, but the run has no content")
    return tables, weights
