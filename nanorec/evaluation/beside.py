"""Baselines beside a run: popularity and transitions (seconds to fit) scored on the run's own
split by `score_report`, in metrics.json's "baselines" and the final log line, so a reader sees at
once whether the GPT earns its cost (on a realistic events log transitions came within 0.2%).
"""
from __future__ import annotations

import time

from .. import methods
from ..data import item_counts
from .metrics import format_beyond, score_report


def baselines(ds, sp, cfg, transitions=None, beyond_users: int = 0, exclude_seen: bool = True) -> dict | None:
    """{"popularity": report, "transitions": report} (score_report's, plus "fit_seconds"), or None
    for holdout=none. transitions: a fused run's table, fitted on this split, used as it is."""

    if sp.valid is None and sp.test is None:
        return None
    counts = item_counts(sp.train, ds.num_items)
    out = {}
    given = {"transitions": transitions} if transitions is not None else {}
    for name in ("popularity", "transitions"):
        t0 = time.time()
        model = given.get(name) or methods.get(name).fit(sp.train, ds.num_items, sp.valid)
        fit_seconds = round(time.time() - t0, 2)
        report = score_report(model.score, sp, ds.num_items, counts, cfg.eval_batch_size,
                              split_time=cfg.split_time, seed=cfg.seed, beyond_users=beyond_users,
                              exclude_seen=exclude_seen)
        report.pop("test_ranks", None)
        out[name] = {**report, "fit_seconds": fit_seconds}
    return out


def summary(results: dict, k: int = 10) -> str:
    """The final log line's tail: beyond-accuracy figures, the baselines' NDCG@k beside the run's."""
    parts = []
    if results.get("beyond"):
        parts.append(f"beyond ({results['beyond']['split']}): {format_beyond(results['beyond'], k)}")
    side = results.get("baselines")
    split = "test" if "test" in results else "valid"
    if side and split in results:
        figures = ", ".join(f"{name} {r[split][f'NDCG@{k}']:.4f}" for name, r in side.items() if split in r)
        parts.append(f"{split} NDCG@{k}: this run {results[split][f'NDCG@{k}']:.4f}, {figures}")
    return "".join(f"; {p}" for p in parts)
