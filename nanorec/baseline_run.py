"""A baseline trained into a run folder, so it ships like a GPT run.

`nanorec train --data D --out R method=transitions` fits the baseline on the
training split (its own hyper-parameters chosen on validation, as in the
leaderboard), scores validation and test with the one evaluator, and writes
the same run folder as a GPT run, with baseline.safetensors in place of the
weights. `nanorec recommend`, `evaluate`, `serve` and `Recommender.load`
then use it exactly as they use a GPT.
"""
from __future__ import annotations

import dataclasses
import os
import time

from . import rundir
from .data import item_counts
from .evaluate import format_metrics, score_report
from .files import final_path, write_json


def fit(cfg, out_dir: str, ds, sp, score_test: bool, log, notes=()) -> dict:
    """Fit, score and write into `out_dir`, the folder train.run's RunFolder started
    (a new run's hidden sibling, renamed into place by its commit). notes: lines for the log."""
    from .baselines import shippable

    for line in notes:
        log(line)
    t0 = time.time()
    model = shippable()[cfg.method]()
    model.fit(sp.train, ds.num_items, sp.valid)
    rundir.save_baseline(model, os.path.join(out_dir, rundir.BASELINE))
    train_seconds = time.time() - t0
    from .seen import decide, log_line
    exclude_seen, seen = decide(model.score, sp.valid, cfg, cfg.eval_batch_size)
    log(log_line(seen))
    results = score_report(model.score, sp if score_test else dataclasses.replace(sp, test=None), ds.num_items,
                           item_counts(sp.train, ds.num_items), cfg.eval_batch_size, split_time=cfg.split_time, seed=cfg.seed,
                           exclude_seen=exclude_seen)
    if "test_ranks" in results:
        rundir.save_array(os.path.join(out_dir, rundir.TEST_RANKS), results.pop("test_ranks"))
    protocol = results["protocol"]
    selection = getattr(model, "selection", None)
    results.update({"method": cfg.method, "holdout": cfg.holdout, "exclude_seen": seen,
                    "selection": {str(k): v for k, v in selection.items()} if selection else "none (no hyper-parameters)",
                    "train_seconds": round(train_seconds, 2), "history": []})
    write_json(os.path.join(out_dir, rundir.METRICS), results)
    for split in ("valid", "test"):
        if split in results:
            log(f"{split} [{protocol[split]}] ({cfg.method}): {format_metrics(results[split], ks=(10,))}")
    log(f"wrote {final_path(out_dir)}/{rundir.BASELINE}, {rundir.METRICS} ({train_seconds:.1f} s fitting)")
    return results
