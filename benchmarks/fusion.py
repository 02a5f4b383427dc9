"""Fusion applied to finished GPT runs: validation grid, test once for the chosen weights.

    python benchmarks/fusion.py DATA RUN [RUN ...] --out benchmarks/results/fusion_beauty.json

For each run: transitions and co-occurrence are fitted on its training split (window/decay
on validation), the terms' weights are chosen on validation NDCG@10 (nanorec.fusion),
then the test split is scored once, with the plain GPT and with the fused scorer, overall
and on cold targets (test item with <= 5 training interactions).
"""
import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from nanorec import rundir
from nanorec.data import load_like, split
from nanorec.evaluate import evaluate, metrics_from_ranks
from nanorec import fusion
from nanorec.fusion import fused_scorer
from nanorec.leaderboard import cold_target_mask
from nanorec.scoring import gpt_scorer

p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("runs", nargs="+")
p.add_argument("--out", required=True)
args = p.parse_args()
torch.set_num_threads(2)

rows = []
for run in args.runs:
    t0 = time.time()
    cfg, model, _ = rundir.load_run(run)
    ds = load_like(cfg, args.data)
    sp = split(ds, all_data=cfg.all_data, holdout=cfg.holdout)
    gpt, content = gpt_scorer(model), fusion.content_term(model)
    tables, weights, grid = fusion.fit(gpt, sp.train, ds.num_items, sp.valid, content=content)
    cold = cold_target_mask(ds, sp)
    row = {"run": run, "seed": cfg.seed, "valid_NDCG@10_by_weights": grid,
           "weights": dict(zip(fusion.SIGNALS, weights))}
    for name, scorer in (("gpt", gpt), ("fused", fused_scorer(gpt, fusion.fused_terms(tables, content), weights))):
        m, ranks = evaluate(scorer, sp.test, return_ranks=True)
        row[f"test_{name}"] = {k: round(v, 4) for k, v in m.items() if k.endswith("@10")}
        row[f"test_{name}_cold_target"] = {k: round(v, 4) for k, v in metrics_from_ranks(ranks[cold]).items()
                                           if k.endswith("@10")}
    row["cold_target_users"] = int(cold.sum())
    row["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(row))
    rows.append(row)

result = {"command": "python benchmarks/fusion.py " + " ".join([args.data, *args.runs, "--out", args.out]),
          "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), no GPU, torch {torch.__version__}",
          "date": time.strftime("%Y-%m-%d"),
          "protocol": "full ranking, leave-one-out, history excluded; weight chosen on validation NDCG@10, test once",
          "rows": rows}
if len(rows) > 1:
    for key in ("test_gpt", "test_fused"):
        vals = np.array([r[key]["NDCG@10"] for r in rows])
        result[f"{key}_NDCG@10_mean_sd"] = [round(float(vals.mean()), 4), round(float(vals.std(ddof=1)), 4)]
os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
