"""A taste x popularity list on a lifecycle shop, judged as lifecycle.py judges its runs: how far
simple counts go on week 10, and whether recent counts reach the new items the models miss.

    python benchmarks/lifecycle_taste.py --work DIR [--out FILE]

DIR: a `lifecycle.py --work` folder (shop.csv, shop.catalog.csv). The customers, histories and targets
are the views-as-context variant's (lifecycle.week10_targets: every customer with an event before week
10; targets their week-10 purchases of items not bought before). A customer's list: the items of the
(up to 3) categories most of their events before week 10 fall in, each category's 20 most bought, ranked
by purchases, then the most bought items of all; earlier purchases excluded. Two countings: every
purchase of weeks 1-9, and those of weeks 8-9 only ("recent"). Counts only, no training.
"""
import argparse
import json
import os
import sys

import numpy as np
import polars as pl

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lifecycle import VARIANTS, week10_targets, week_start  # noqa: E402

from nanorec.config import Config  # noqa: E402
from nanorec.data import ids  # noqa: E402
from nanorec.evaluation.metrics import set_metrics  # noqa: E402


def lists_of(counts, category, hist, seen, k=10, per_category=20):
    """(M, k) item indices: the user's top categories' best-counted items, then the best overall."""
    order = np.argsort(-counts, kind="stable")  # (N+1,) best first
    order = order[counts[order] > 0]
    by_cat = {c: order[category[order] == c][:per_category] for c in np.unique(category[order])}
    out = np.zeros((len(hist), k), dtype=np.int64)
    rank = np.empty(len(counts), dtype=np.int64)
    rank[order] = np.arange(len(order))
    for m in range(len(hist)):
        h, s = hist[m], set(seen[m].tolist())
        cats, n = np.unique(category[h[h > 0]], return_counts=True)
        pool = np.concatenate([by_cat.get(c, order[:0]) for c in cats[np.argsort(-n, kind="stable")][:3]] + [order[:0]])
        pool = pool[np.argsort(rank[pool], kind="stable")]
        picked = [i for i in pool if i not in s][:k]
        picked += [i for i in order if i not in s and i not in picked][:k - len(picked)]
        out[m, :len(picked)] = picked
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True)
    p.add_argument("--out", default="")
    args = p.parse_args()
    events = pl.read_csv(os.path.join(args.work, "shop.csv"), schema_overrides={"item_id": pl.Utf8})
    catalog = pl.read_csv(os.path.join(args.work, "shop.catalog.csv"), schema_overrides={"item_id": pl.Utf8})
    ds, users, hist, tgt = week10_targets(Config(**VARIANTS["views_as_context"][0]), events)
    rows = ids.rows(catalog["item_id"].to_numpy().astype(str), ds.item_ids[1:].astype(str))  # (N,) catalogue row
    category = np.concatenate([["-"], catalog["category"].to_numpy().astype(str)[rows]])  # (N+1,)
    new = np.concatenate([[False], (catalog["launch_time"].to_numpy().astype(str) >= week_start(8))[rows]])
    seen = hist.seen_items()
    result = {"command": "python benchmarks/lifecycle_taste.py " + " ".join(sys.argv[1:]),
              "customers": int(len(users)), "targets": int(len(tgt.items)), "lists": {}}
    for name, start in (("all weeks 1-9", week_start(1)), ("recent: weeks 8-9", week_start(8))):
        ts = pl.col("timestamp")
        buys = events.filter((pl.col("event_type") == "purchase") & (ts >= start) & (ts < week_start(10)))
        n = buys.group_by("item_id").len()
        idx = ids.rows(ds.item_ids[1:].astype(str), n["item_id"].to_numpy().astype(str)) + 1
        counts = np.zeros(ds.num_items + 1)
        counts[idx[idx > 0]] = n["len"].to_numpy()[idx > 0]
        lists = lists_of(counts, category, hist, seen)
        m = set_metrics(lists, tgt, ks=(10,))
        row = np.repeat(np.arange(len(users)), tgt.lengths)
        hit = (lists[row] == tgt.items[:, None]).any(1)  # (targets,)
        is_new = new[tgt.items]
        result["lists"][name] = {**{k: round(v, 5) for k, v in m.items() if k in ("NDCG@10", "HR@10", "MAP@10")},
                                 "new_item_recall@10": round(float(hit[is_new].mean()), 5) if is_new.any() else None,
                                 "new_item_hits": int(hit[is_new].sum()), "new_item_targets": int(is_new.sum())}
        print(name, result["lists"][name], flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
