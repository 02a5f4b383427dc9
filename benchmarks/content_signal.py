"""The exploration behind fusion's content term (validation only): the content weight's whole
grid on top of the two tables' fusion.

    python benchmarks/content_signal.py DATA RUN [RUN ...] --out benchmarks/results/content_signal_<name>.json

For each finished GPT run trained with content: the tables' weights (w1, w2) chosen on validation
as training chooses them without content, then w3 * cos(content of the last item, content of each
item) over the whole grid W3, scored through the product's own terms (fusion.content_term,
fusion.grid_ndcg). Judged on validation NDCG@10; the test split is not scored.
"""
import argparse
import json
import os
import platform
import time

import torch

from nanorec import fusion, rundir
from nanorec.data import load_like, split
from nanorec.scoring import gpt_scorer

W3 = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)

p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("runs", nargs="+")
p.add_argument("--out", required=True)
args = p.parse_args()

rows = []
for run in args.runs:
    t0 = time.time()
    cfg, model, _ = rundir.load_run(run)
    ds = load_like(cfg, args.data)
    sp = split(ds, all_data=cfg.all_data, holdout=cfg.holdout)
    gpt = gpt_scorer(model)
    tables, (w1, w2, _), grid = fusion.fit(gpt, sp.train, ds.num_items, sp.valid)  # no content: w3 below
    by_w3 = fusion.grid_ndcg(gpt, fusion.fused_terms(tables, fusion.content_term(model)),
                             [(w1, w2, w3) for w3 in W3], sp.valid, 1024)
    rows.append({"run": run, "seed": cfg.seed, "table_weights": {"transitions": w1, "cooccurrence": w2},
                 "valid_gpt_alone_NDCG@10": round(grid["0.0,0.0,0.0"], 4),
                 "valid_NDCG@10_by_w3": {w3: round(v, 4) for (_, _, w3), v in by_w3.items()},
                 "seconds": round(time.time() - t0)})
    print(json.dumps(rows[-1]), flush=True)

result = {"command": "python benchmarks/content_signal.py " + " ".join([args.data, *args.runs, "--out", args.out]),
          "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}",
          "date": time.strftime("%Y-%m-%d"),
          "what": "validation NDCG@10 only: the tables' fusion + w3 * cosine(content of the last item, content of "
                  "each item); w3 = 0 is the tables' fusion alone",
          "rows": rows}
with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
