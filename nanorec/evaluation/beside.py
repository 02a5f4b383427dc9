"""Baselines beside a run: the popularity and transitions baselines scored on the run's own split.

Every GPT run's metrics.json gets a "baselines" section and its final log line the baselines'
figures, so a reader sees at once whether the GPT earns its cost (on a realistic events log the
transitions baseline, fitted in 10 s, has come within 0.2% of a 140-s GPT). Both fit in seconds:
popularity counts the training split; transitions chooses its window on the run's validation users
(as `nanorec train method=transitions` does). They are scored by `evaluate.score_report` on the
same validation and test sets the run reports (holdout=time: multi-target, with the cold users
apart), beyond-accuracy metrics included.
"""
from __future__ import annotations

import time

from .. import methods
from ..data import item_counts


def baselines(ds, sp, cfg, transitions=None, beyond_users: int = 0, exclude_seen: bool = True) -> dict | None:
    """{"popularity": report, "transitions": report} on the run's split (each report as
    evaluate.score_report gives it, plus "fit_seconds"); None when the run holds nothing out
    (holdout=none). transitions: a Transitions table already fitted on this split and selected
    on its validation users (a fused run's), used instead of fitting it again. beyond_users:
    score_report's (an update's sample). exclude_seen: the run's choice (seen.py), so the
    figures compare on one protocol."""
    from .metrics import score_report

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
    """The tail of a run's final log line: its beyond-accuracy figures and the baselines' NDCG@k
    beside its own, on the test split (else validation)."""
    from .metrics import format_beyond
    parts = []
    if results.get("beyond"):
        parts.append(f"beyond ({results['beyond']['split']}): {format_beyond(results['beyond'], k)}")
    side = results.get("baselines")
    split = "test" if "test" in results else "valid"
    if side and split in results:
        figures = ", ".join(f"{name} {r[split][f'NDCG@{k}']:.4f}" for name, r in side.items() if split in r)
        parts.append(f"{split} NDCG@{k}: this run {results[split][f'NDCG@{k}']:.4f}, {figures}")
    return "".join(f"; {p}" for p in parts)
