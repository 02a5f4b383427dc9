"""exclude_seen: whether a run's lists may hold the user's earlier items (repeat purchases).

Groceries want last month's items on the list; one-off purchases do not (an earlier item only
takes a slot from a new one). "true", "false", or "auto": `decide` ranks each validation target
twice in one pass, earlier items excluded and allowed, and allows them only when the mean per-user
NDCG@10 gain exceeds SEEN_Z standard errors (a log without repeats always gives "exclude").
metrics.json records the choice and why; `run_excludes` reads it back for every surface, unless a
call says otherwise (--include-seen / --exclude-seen, exclude_seen=).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import DataError
from ..evaluation.metrics import as_scores, factor_ranks, length_batches, metrics_from_ranks, target_ranks
from ..runs import rundir

# "allow" needs the validation gain above this many standard errors of the paired per-user
# difference: a one-sided test at about 2.3% (z = 2), so a run without a real repeat signal
# keeps "exclude", the default every earlier run used.
SEEN_Z = 2.0
CHOICES = ("exclude", "allow")


def paired_ranks(scorer, evalset, batch_size: int = 1024, max_rank: int = 10) -> np.ndarray:
    """(2, M) each target's rank with the user's earlier items excluded (row 0) and allowed (row 1),
    capped at max_rank + 1; each batch is scored once and ranked twice."""
    ranks = np.zeros((2, len(evalset.targets)), dtype=np.int64)
    factors = getattr(scorer, "factors", None)
    for rows, hist in length_batches(evalset, batch_size):
        users, targets = evalset.users[rows], evalset.targets[rows]
        if factors is not None:
            f = factors(hist, users)
            for i, exclude in enumerate((True, False)):
                ranks[i, rows] = factor_ranks(f, hist, targets, exclude, max_rank=max_rank)[0]
            continue
        with torch.no_grad():
            scores = as_scores(scorer(hist, users))
        t = torch.from_numpy(targets)
        ranks[0, rows] = target_ranks(scores.clone(), hist, t, True).numpy()
        ranks[1, rows] = target_ranks(scores, hist, t, False).numpy()
    return np.minimum(ranks, max_rank + 1)


def repeat_share(evalset) -> float:
    """The share of targets that are one of their user's earlier items (seen_items)."""
    seen = evalset.histories.seen_items()
    rows = np.repeat(np.arange(len(seen)), seen.lengths)
    hit = np.zeros(len(seen), dtype=bool)
    hit[rows[seen.items == evalset.targets[rows]]] = True
    return float(hit.mean()) if len(hit) else 0.0


def decide(scorer, valid, cfg, batch_size: int = 1024) -> tuple[bool, dict]:
    """The run's choice -> (exclude, metrics.json's "exclude_seen" entry); no validation: exclude."""
    setting = cfg.exclude_seen
    if setting != "auto":
        choice = "exclude" if setting == "true" else "allow"
        return setting == "true", {"setting": setting, "choice": choice, "why": f"exclude_seen={setting}"}
    if valid is None or not len(valid.targets):
        return True, {"setting": "auto", "choice": "exclude",
                      "why": "no validation users to choose on (holdout=none): the default, exclude"}
    import time

    t0 = time.time()
    ranks = paired_ranks(scorer, valid, batch_size)
    ndcg = np.where(ranks <= 10, 1.0 / np.log2(ranks + 1.0), 0.0)  # (2, M) per-user NDCG@10
    diff = ndcg[1] - ndcg[0]
    gain = float(diff.mean())
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    allow = gain > 0 and gain > SEEN_Z * se
    figures = [metrics_from_ranks(r, (10,))["NDCG@10"] for r in ranks]
    share = repeat_share(valid)
    z = f"{gain / se:.1f}" if se > 0 else ("+inf" if gain > 0 else "0")
    why = (f"validation NDCG@10 {figures[1]:.4f} with earlier items allowed, {figures[0]:.4f} excluded: "
           f"gain {gain:+.4f}, {z} standard errors ({'above' if allow else 'not above'} {SEEN_Z:g}); "
           f"{share:.1%} of the {len(diff):,} validation targets are an earlier item of their user"
           + (" (all_data: the validation targets were trained on)" if cfg.all_data else ""))
    return not allow, {"setting": "auto", "choice": "allow" if allow else "exclude", "why": why,
                       "valid_NDCG@10": {"exclude": figures[0], "allow": figures[1]}, "gain": gain,
                       "standard_error": se, "repeat_targets": share, "users": len(diff),
                       "seconds": round(time.time() - t0, 2)}


def log_line(record: dict) -> str:
    """The training log's line for metrics.json's "exclude_seen" entry."""
    what = "earlier items excluded from the lists" if record["choice"] == "exclude" else \
        "earlier items may be listed (repeat purchases)"
    return f"exclude_seen={record['setting']}: {what} ({record['why']})"


def run_excludes(run_dir: str, cfg) -> bool:
    """A finished run's choice: auto reads metrics.json's (a run from before the key: exclude)."""
    if cfg.exclude_seen != "auto":
        return cfg.exclude_seen == "true"
    path = os.path.join(run_dir, rundir.METRICS)
    record = rundir.read_metrics(run_dir).get("exclude_seen") if os.path.exists(path) else None
    if record is None:
        return True
    choice = record.get("choice") if isinstance(record, dict) else None
    if choice not in CHOICES:
        raise DataError(f"{path}: exclude_seen's choice {choice!r}: expected exclude or allow")
    return choice == "exclude"

