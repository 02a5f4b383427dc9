"""Purchases only vs views as context on the same customers: week-10 NDCG@10 / HR@10 / MAP@10 of two
`lifecycle.py` runs of one shop, judged (lifecycle.judge) on the customers both variants judge (those
with a purchase before week 10; views as context also judges customers who only viewed).

    python benchmarks/lifecycle_common.py --purchases-only WORK1 --views-as-context WORK2 [--out FILE]

WORK1 / WORK2: the `--work` folders of `lifecycle.py --variants purchases_only` and `--variants
views_as_context` on the same log (same --rows, --seed, --shape). Scoring only; prints and writes JSON.
"""
import argparse
import json
import os
import sys

import numpy as np
import polars as pl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lifecycle import VARIANTS, judge, week10_targets, week_start  # noqa: E402

from nanorec import Recommender  # noqa: E402
from nanorec.config import Config  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--purchases-only", required=True)
    p.add_argument("--views-as-context", required=True)
    p.add_argument("--out", default="")
    args = p.parse_args()
    work = {"purchases_only": args.purchases_only, "views_as_context": args.views_as_context}
    shop = os.path.join(args.views_as_context, "shop.csv")
    events = pl.read_csv(shop, schema_overrides={"item_id": pl.Utf8})
    catalog = pl.read_csv(os.path.join(args.views_as_context, "shop.catalog.csv"), schema_overrides={"item_id": pl.Utf8})
    new_items = set(catalog.filter(pl.col("launch_time") >= week_start(8))["item_id"].to_list())
    data = {}
    for name in work:
        ds, users, hist, tgt = week10_targets(Config(**VARIANTS[name][0]), events)
        data[name] = (ds, ds.user_ids[users], users, hist, tgt)
    common = np.intersect1d(data["purchases_only"][1], data["views_as_context"][1])
    out = {"command": "python " + " ".join(sys.argv), "customers": int(len(common))}
    for name, (ds, ids, users, hist, tgt) in data.items():
        rows = np.nonzero(np.isin(ids, common))[0]
        for run in ("initial", "update", "retrain"):
            rec = Recommender.load(os.path.join(work[name], name, run))
            m = judge(rec, ds, users[rows], hist.take(rows), tgt.take(rows), new_items, 2048)
            out[f"{name}/{run}"] = {k: m[k] for k in ("NDCG@10", "HR@10", "MAP@10")}
            print(name, run, out[f"{name}/{run}"], flush=True)
    if args.out:
        json.dump(out, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
