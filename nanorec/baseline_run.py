"""A baseline trained into a run folder, so it ships like a GPT run.

`nanorec train --data D --out R method=transitions` fits the baseline on the
training split (its own hyper-parameters chosen on validation, as in the
leaderboard), scores validation and test with the one evaluator, and writes
the same run folder as a GPT run, with baseline.safetensors in place of the
weights. `nanorec recommend`, `evaluate`, `serve` and `Recommender.load`
then use it exactly as they use a GPT.
"""
from __future__ import annotations

import os
import time

from . import rundir
from .evaluate import evaluate, format_metrics, protocol_line
from .files import write_json


def fit(cfg, out_dir: str, ds, sp, fp, resume: bool, score_test: bool, log) -> dict:
    from .baselines import shippable

    rundir.start_run(out_dir, cfg, ds, fp, resume)
    t0 = time.time()
    model = shippable()[cfg.method]()
    model.fit(sp.train, ds.num_items, sp.valid)
    rundir.save_baseline(model, os.path.join(out_dir, rundir.BASELINE))
    train_seconds = time.time() - t0
    results, protocol = {}, {}
    if sp.valid is not None:
        results["valid"] = evaluate(model.score, sp.valid, batch_size=cfg.eval_batch_size)
        protocol["valid"] = protocol_line(ds.num_items, len(sp.valid.targets))
    t_test = time.time()
    if sp.test is not None and score_test:
        results["test"], ranks = evaluate(model.score, sp.test, batch_size=cfg.eval_batch_size, return_ranks=True)
        rundir.save_array(os.path.join(out_dir, rundir.TEST_RANKS), ranks)
        protocol["test"] = protocol_line(ds.num_items, len(sp.test.targets))
    selection = getattr(model, "selection", None)
    results.update({"method": cfg.method, "holdout": cfg.holdout, "protocol": protocol,
                    "selection": {str(k): v for k, v in selection.items()} if selection else "none (no hyper-parameters)",
                    "train_seconds": round(train_seconds, 2), "test_seconds": round(time.time() - t_test, 2),
                    "history": []})
    write_json(os.path.join(out_dir, rundir.METRICS), results)
    for split in ("valid", "test"):
        if split in results:
            log(f"{split} [{protocol[split]}] ({cfg.method}): {format_metrics(results[split], ks=(10,))}")
    log(f"wrote {out_dir}/{rundir.BASELINE}, {rundir.METRICS} ({train_seconds:.1f} s fitting)")
    return results
