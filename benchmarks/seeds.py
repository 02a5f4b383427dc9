"""The headline row of one data set: finished runs of one configuration (one run per
seed), their test figures and the mean over seeds.

    python benchmarks/seeds.py DATA RUN [RUN ...] --out benchmarks/results/seeds_<name>.json

Each run is read as it was selected on validation: a run trained with the default fusion
(fuse_transitions=auto: transitions + co-occurrence + content, weights chosen on validation)
has its fused test figures and per-user test ranks in the run folder; nothing is re-scored
here. (Until 2026-11-28 this script also re-fused older runs; seeds_*.json dated then were
made that way.) Cold targets: test items with at most 5 training interactions. Also reported per run: the GPT's own
best validation NDCG@10 (history.jsonl), the fusion weights, training seconds, device.
"""
import argparse
import json
import os
import platform
import statistics
import time

import torch

from nanorec.runs import rundir
from nanorec.data import load_like, split
from nanorec.evaluation.metrics import metrics_from_ranks
from nanorec.commands.leaderboard import cold_target_mask

p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("runs", nargs="+")
p.add_argument("--out", required=True)
args = p.parse_args()

at10 = lambda m: {k: round(v, 4) for k, v in m.items() if k in ("HR@10", "NDCG@10")}
rows = []
for run in args.runs:
    t0 = time.time()
    cfg = rundir.read_config(run)
    ds = load_like(cfg, args.data)
    sp = split(ds, all_data=cfg.all_data, holdout=cfg.holdout)
    history = rundir.read_history(run)
    metrics = rundir.read_metrics(run)
    if "valid_NDCG@10_by_weights" not in metrics.get("fusion", {}):
        raise SystemExit(f"{run}: not fused in training (train it with today's defaults: fuse_transitions=auto)")
    valid, test = metrics["valid"], metrics["test"]
    ranks = rundir.read_test_ranks(run)
    weights, grid = metrics["fusion"]["weights"], metrics["fusion"]["valid_NDCG@10_by_weights"]
    how = "fused in training (fuse_transitions)"
    cold = cold_target_mask(ds, sp)
    log = open(os.path.join(run, rundir.LOG)).read()
    device = "cuda" if "device=cuda" in log else "cpu"
    rows.append({"run": run, "seed": cfg.seed, "device": device, "dtype": cfg.dtype, "fusion": how,
                 "fusion_weights": weights,
                 # validation only, from the weight grid: the GPT alone, the transitions alone (w2 = w3 = 0),
                 # both tables (w3 = 0): what each term adds
                 "valid_by_terms_NDCG@10": {
                     "gpt": round(grid["0.0,0.0,0.0"], 4),
                     "+transitions": round(max(v for k, v in grid.items() if k.endswith(",0.0,0.0")), 4),
                     "+cooccurrence": round(max(v for k, v in grid.items() if k.endswith(",0.0")), 4),
                     "+content": round(metrics["fusion"].get("valid_NDCG@10", max(grid.values())), 4)},
                 "valid_gpt_alone_NDCG@10": round(max(h["NDCG@10"] for h in history if "NDCG@10" in h), 4),
                 "valid": at10(valid), "test": at10(test),
                 "test_cold_target": at10(metrics_from_ranks(ranks[cold])), "cold_target_users": int(cold.sum()),
                 "train_seconds": metrics.get("train_seconds"), "best_step": metrics.get("best_step")})
    print(json.dumps(rows[-1]), f"({time.time() - t0:.0f} s)", flush=True)


def mean_sd(key, metric):
    xs = [r[key][metric] for r in rows]
    return [round(statistics.mean(xs), 4), round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0]


result = {"command": "python benchmarks/seeds.py " + " ".join([args.data, *args.runs, "--out", args.out]),
          "machine": f"read on {os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}; "
                     "each run's training device is in its row",
          "date": time.strftime("%Y-%m-%d"),
          "protocol": "full ranking over all items, leave-one-out (test = last item, validation = second to last), "
                      "history excluded; checkpoint and fusion weight chosen on validation NDCG@10, test scored once",
          "rows": rows,
          "mean_sd": {f"{split} {m}": mean_sd(split, m) for split in ("valid", "test", "test_cold_target")
                      for m in ("HR@10", "NDCG@10")}}
os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
print(json.dumps(result["mean_sd"], indent=1))
