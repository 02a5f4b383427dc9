"""The exploration behind fusion's content term (validation only): a content-similarity term
on top of the two tables' fusion.

    python benchmarks/content_signal.py DATA TABLE RUN [RUN ...] --out benchmarks/results/content_signal_<name>.json

For each finished GPT run (trained with content TABLE): the tables' fusion (GPT + transitions +
co-occurrence, weights chosen jointly on validation), then a further term
w3 * cos(table[last item], table[item]), the cosine of the user's last item's content vector
with every item's (items without content: 0). w3 from a grid, judged on validation NDCG@10;
the test split is not scored (a lever is judged on validation first).
"""
import argparse
import json
import os
import platform
import time

import torch

from nanorec import fusion, rundir
from nanorec.content import load_content
from nanorec.data import load_like, split
from nanorec.evaluate import evaluate_variants
from nanorec.scoring import gpt_scorer

W3 = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)

p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("table")
p.add_argument("runs", nargs="+")
p.add_argument("--out", required=True)
args = p.parse_args()

rows = []
for run in args.runs:
    t0 = time.time()
    cfg, model, item_ids = rundir.load_run(run)
    ds = load_like(cfg, args.data)
    sp = split(ds, all_data=cfg.all_data, holdout=cfg.holdout)
    gpt = gpt_scorer(model)
    tables, weights, grid = fusion.fit(gpt, sp.train, ds.num_items, sp.valid)  # no content term: w3 below
    fused = fusion.fused_scorer(gpt, fusion.fused_terms(tables, None), weights)
    vectors = torch.nn.functional.normalize(load_content(args.table, item_ids, log=None)[0][0].float(), dim=1)

    def variants(histories, users):
        base = fused(histories, users)
        last = torch.from_numpy(histories.items[histories.offsets[1:] - 1])
        similarity = vectors[last] @ vectors.T  # (B, N+1)
        for w in W3:
            yield base + w * similarity

    by_w3 = {w: round(m["NDCG@10"], 4) for w, m in zip(W3, evaluate_variants(variants, sp.valid, len(W3), 1024))}
    rows.append({"run": run, "seed": cfg.seed, "fusion_weights": dict(zip(fusion.SIGNALS, weights)),
                 "valid_gpt_alone_NDCG@10": round(grid["0.0,0.0,0.0"], 4),
                 "valid_NDCG@10_by_w3": by_w3, "seconds": round(time.time() - t0)})
    print(json.dumps(rows[-1]), flush=True)

result = {"command": "python benchmarks/content_signal.py " + " ".join([args.data, args.table, *args.runs,
                                                                       "--out", args.out]),
          "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}",
          "date": time.strftime("%Y-%m-%d"),
          "what": "validation NDCG@10 only: default fusion + w3 * cosine(content of the last item, content of "
                  "each item); w3 = 0 is the default fusion",
          "rows": rows}
with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
