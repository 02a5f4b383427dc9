"""Gather finished `nanorec train` runs into one committed JSON, with the command that reproduces each.

    python benchmarks/collect_runs.py --out benchmarks/results/gpt_variants_beauty.json \
        --selected runs/beauty_content runs/beauty_default runs/beauty_content ...

For every run directory: the `nanorec train` command (only the keys that differ
from the defaults), validation metrics, best step, seconds; the test metrics
only for the run named by --selected, which must be the best by validation
NDCG@10: the others were compared on validation and their test numbers are
not reported, so that test is looked at once.
"""
import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from nanorec.runs import rundir
from nanorec.config import Config
from nanorec.evaluation.metrics import metrics_from_ranks

p = argparse.ArgumentParser()
p.add_argument("runs", nargs="+", help="run directories")
p.add_argument("--selected", required=True, help="the run chosen on validation; its test metrics are reported")
p.add_argument("--out", required=True)
args = p.parse_args()



def bootstrap_95(run, reps=2000):
    """95% bootstrap intervals of test HR@10 and NDCG@10 over users, from the run's test_ranks.npy
    (1-based rank of each user's target): how far a difference from a published figure is noise."""
    ranks = rundir.read_test_ranks(run)
    rng = np.random.default_rng(0)
    samples = [metrics_from_ranks(ranks[rng.integers(0, len(ranks), len(ranks))], ks=(10,)) for _ in range(reps)]
    return {k: [round(float(q), 4) for q in np.percentile([m[k] for m in samples], [2.5, 97.5])]
            for k in ("HR@10", "NDCG@10")}


defaults = Config().to_dict()
keep = ("HR@10", "NDCG@10", "MRR@10", "MAP@10")
rows = []
for run in args.runs:
    cfg = rundir.read_config(run).to_dict()
    m = rundir.read_metrics(run)
    changed = [f"{k}={v}" for k, v in cfg.items() if k not in ("data", "progress") and v != defaults.get(k)]
    rows.append({
        "run": run,
        "command": f"nanorec train --data {cfg['data']} --out {run} {' '.join(changed)}".rstrip(),
        "valid": {k: round(m["valid"][k], 4) for k in keep},
        "best_step": m["best_step"], "steps": m["steps"],
        "seconds": round(m["train_seconds"] + m.get("eval_seconds", 0)),  # eval_seconds: older runs only
        **({"test": {k: round(m["test"][k], 4) for k in keep}, "test_bootstrap_95": bootstrap_95(run)}
           if run == args.selected else {}),
    })
best = max(rows, key=lambda r: r["valid"]["NDCG@10"])
if best["run"] != args.selected:
    raise SystemExit(f"{args.selected} is not the best on validation ({best['run']} is): select on validation")
result = {
    "command": "python benchmarks/collect_runs.py " + " ".join(args.runs) + f" --selected {args.selected} --out {args.out}",
    "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), {torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, torch {torch.__version__}",
    "date": time.strftime("%Y-%m-%d"),
    "selection": "best validation NDCG@10; test reported for the selected run only",
    "rows": rows,
}
with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
print(json.dumps(result, indent=2))
