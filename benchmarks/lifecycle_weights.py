"""Does a lifecycle run's fusion selection agree with next week? For the runs of a finished
`benchmarks/lifecycle.py` work folder: the week-10 NDCG@10 (lifecycle.py's protocol, `judge`'s
users, histories and targets) of the weights the run chose, and of every (transitions,
co-occurrence) pair of a grid on the run's own GPT and tables; "weights_ratio" = the chosen
weights' figure / the grid's best (the acceptance: >= 0.95).

    python benchmarks/lifecycle_weights.py --work DIR [--runs retrain,update] [--out FILE]

Scoring only (no training): each run's GPT and table rows are computed once (fusion.BatchTerms)
and each weight pair is ranked from them, as the selection benchmark does.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lifecycle  # noqa: E402
from nanorec import Recommender
from nanorec.scoring import fusion
from nanorec.runs import rundir  # noqa: E402
from nanorec.config import Config  # noqa: E402
from nanorec.evaluation.metrics import set_metrics  # noqa: E402
from nanorec import methods  # noqa: E402
from nanorec.runs.run import fusion_terms  # noqa: E402
from nanorec.scoring.scorer import from_factors, top_k  # noqa: E402

GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)


def weights_on_week10(run_dir: str, cfg: Config, log) -> dict:
    """{chosen weights, their week-10 NDCG@10, the grid's best pair and figure, the ratio}."""
    rec = Recommender.load(run_dir)
    run = rec._run
    ds, users, histories, targets = lifecycle.week10_targets(cfg, log)
    hist = lifecycle.in_run_vocab(histories, ds.item_ids, run.item_ids)
    tgt = lifecycle.in_run_vocab(targets, ds.item_ids, run.item_ids, unknown=len(run.item_ids))
    listed = np.nonzero(hist.lengths > 0)[0]  # users without a known item get no list: all misses
    gpt, _, _, _ = fusion_terms(run)
    tables = [methods.get("transitions").load(os.path.join(run_dir, rundir.FUSION_FILES[n]), run.num_items)
              for n in rundir.FUSION_FILES]
    h = hist.take(listed)
    terms = fusion.BatchTerms(gpt, tables, None, h, users[listed])  # the GPT and tables once

    def figure(weights) -> float:
        lists = np.zeros((len(users), 10), dtype=np.int64)
        lists[listed] = top_k(from_factors(lambda _h, _u=None: terms.fused(weights)), h, users[listed], 10)[0]
        return round(set_metrics(lists, tgt, ks=(10,))["NDCG@10"], 5)
    chosen = rundir.read_fusion(run_dir)[:2]
    grid = {f"{a},{b}": figure((a, b, 0.0)) for a in GRID for b in GRID}
    best = max(grid, key=grid.get)
    mine = figure(chosen + (0.0,))
    return {"chosen": list(chosen), "chosen_NDCG@10": mine, "grid_best": best, "grid_best_NDCG@10": grid[best],
            "weights_ratio": round(mine / max(grid[best], 1e-12), 4), "grid": grid}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, help="a finished lifecycle.py --work folder")
    p.add_argument("--runs", default="retrain,update")
    p.add_argument("--out", default="")
    args = p.parse_args()
    import polars as pl
    log = pl.read_csv(os.path.join(args.work, "shop.csv"), schema_overrides={"item_id": pl.Utf8})
    out = {"command": "python benchmarks/lifecycle_weights.py " + " ".join(sys.argv[1:]),
           "machine": lifecycle.MACHINE, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
               timespec="minutes"), "grid": list(GRID), "variants": {}}
    for name, (keys, _) in lifecycle.VARIANTS.items():
        for r in args.runs.split(","):
            run_dir = os.path.join(args.work, name, r)
            if os.path.exists(os.path.join(run_dir, rundir.FUSION)):
                res = weights_on_week10(run_dir, Config(**keys), log)
                out["variants"].setdefault(name, {})[r] = res
                print(name, r, {k: v for k, v in res.items() if k != "grid"}, flush=True)
    if args.out:
        from nanorec.runs.files import write_json
        write_json(args.out, out)
    else:
        print(json.dumps(out)[:2000])


if __name__ == "__main__":
    main()
