"""The exploration that led to co-occurrence in the default fusion: a second fused item-item signal, validation only.

    python benchmarks/cooccurrence.py DATA RUN [RUN ...] --out benchmarks/results/cooccurrence_<name>.json

For each finished GPT run: the transitions-only fusion (GPT + w1 * log transitions, w1
chosen on validation, as training did before), then a third term w2 * log(co-occurrence), where the
co-occurrence rows count every pair of items up to 5 positions apart in a user's
training history, in both directions (not only "b right after a"), row-normalised and
backed off to popularity like the transitions. w2 is chosen on validation NDCG@10 from
a grid; the test split is not scored here (a lever is judged on validation first).
"""
import argparse
import json
import os
import platform
import time

import torch

from nanorec import rundir
from nanorec.baselines.cooccurrence import CoOccurrence
from nanorec.baselines.transitions import Transitions
from nanorec.data import load_like, split
from nanorec.evaluate import evaluate
from nanorec import fusion
from nanorec.scoring import gpt_scorer

W2 = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)

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
    sp_ = split(ds, all_data=cfg.all_data, holdout=cfg.holdout)
    gpt = gpt_scorer(model)
    trans = Transitions().fit(sp_.train, ds.num_items, sp_.valid)
    cooc = CoOccurrence().fit(sp_.train, ds.num_items, sp_.valid)
    terms = fusion.fused_terms([trans, cooc], None)
    by_w1 = fusion.grid_ndcg(gpt, terms, [(w, 0.0, 0.0) for w in fusion.WEIGHTS], sp_.valid, 1024)
    w1 = max(by_w1, key=lambda ws: (by_w1[ws], -ws[0]))[0]
    by_w2 = {w2: round(v, 4) for (_, w2, _), v in
             fusion.grid_ndcg(gpt, terms, [(w1, w2, 0.0) for w2 in W2], sp_.valid, 1024).items()}
    rows.append({"run": run, "seed": cfg.seed, "w1_transitions": w1,
                 "cooccurrence_window_decay": [cooc.window, cooc.decay],
                 "cooccurrence_alone_valid_NDCG@10": round(evaluate(cooc.score, sp_.valid)["NDCG@10"], 4),
                 "valid_NDCG@10_by_w2": by_w2, "seconds": round(time.time() - t0)})
    print(json.dumps(rows[-1]), flush=True)

result = {"command": "python benchmarks/cooccurrence.py " + " ".join([args.data, *args.runs, "--out", args.out]),
          "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}",
          "date": time.strftime("%Y-%m-%d"),
          "what": "validation NDCG@10 only: GPT + transitions (w1 on validation) + w2 * log co-occurrence; "
                  "w2 = 0 is the transitions-only fusion that was the default before",
          "rows": rows}
with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
