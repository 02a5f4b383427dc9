"""Update against retrain on a shop's weeks, new items included: next week's lists and wall time.

    python benchmarks/update_shop.py --data shop.csv --name shop [key=value ...]

The log: an event log with user_id, item_id, timestamp (ISO) and event_type (`nanorec synth --shop`
writes one: 10 weeks, 8% of the items launched in weeks 8-10). Split by time: weeks 1-7, weeks
8-9 and week 10 (the last --judge-days days; the update the --update-days before them).

  initial  Recommender(target_filter=event_type=purchase, **config).fit(weeks 1-7)
  update   initial.update(weeks 8-9)                                 (Recommender.update)
  retrain  Recommender(same).fit(weeks 1-9)                          (the full retrain)

Judged on week 10 as a shop judges a run: each run's top-10 list (Recommender.recommend: its own
histories, earlier purchases excluded) for every customer with an event before week 10 and a
week-10 purchase of an item not bought before; NDCG@10 / Recall@10 against that set
(evaluate.set_metrics). New-item recall@10: of those week-10 targets that are items absent from
weeks 1-7 (new to the initial run), the share found in the customer's top 10 (items first seen in
week 10 are in no run's vocabulary: counted, and misses for every run). Also the list slots that
hold new items. --mean-start adds an update whose new items start at the mean item vector (the start
before neighbours' means: update.grown_weights without the histories), for comparison.
Writes benchmarks/results/update_<name>.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nanorec import Recommender  # noqa: E402
from nanorec.config import Config, apply_overrides  # noqa: E402
from nanorec.data import Sequences  # noqa: E402
from nanorec.evaluation.metrics import set_metrics  # noqa: E402


def weeks(path: str, judge_days: int, update_days: int):
    """-> (weeks 1-7, weeks 8-9, week 10) frames of the log, by its last event's time."""
    import polars as pl
    df = pl.read_csv(path, infer_schema_length=0).with_columns(
        pl.col("timestamp").str.to_datetime(strict=True).alias("_t"))
    end = df["_t"].max().date() + datetime.timedelta(days=1)
    judge = datetime.datetime.combine(end - datetime.timedelta(days=judge_days), datetime.time())
    start = judge - datetime.timedelta(days=update_days)
    parts = (df.filter(pl.col("_t") < start), df.filter((pl.col("_t") >= start) & (pl.col("_t") < judge)),
             df.filter(pl.col("_t") >= judge))
    return tuple(p.drop("_t") for p in parts)


def judged(before, week) -> dict:
    """{user: [items bought in the week, not bought before, in order]} for users with an event before."""
    bought = {}
    for u, i in before.filter(before["event_type"] == "purchase").select("user_id", "item_id").iter_rows():
        bought.setdefault(u, set()).add(i)
    known = set(before["user_id"].to_list())
    out = {}
    for u, i in week.filter(week["event_type"] == "purchase").select("user_id", "item_id").iter_rows():
        if u in known and i not in bought.get(u, ()) and i not in out.get(u, []):
            out.setdefault(u, []).append(i)
    return out


def lists_metrics(rec, targets: dict, new_items: set) -> dict:
    """Week-10 figures of a run's top-10 lists (its own histories, purchases excluded)."""
    users = list(targets)
    df = rec.recommend(users=users, k=10)
    top = {}
    for u, i in df.select("user_id", "item_id").iter_rows():
        top.setdefault(u, []).append(i)
    listed = {i for t in targets.values() for i in t} | set(df["item_id"].to_list())
    vocab = {x: n for n, x in enumerate(sorted(listed))}
    lists = np.array([[vocab[i] + 1 for i in top.get(u, [])] + [0] * (10 - len(top.get(u, []))) for u in users])
    m = set_metrics(lists, Sequences.from_lists([[vocab[i] + 1 for i in targets[u]] for u in users]), ks=(10,))
    new_targets = [(u, i) for u in users for i in targets[u] if i in new_items]
    hits = sum(i in top.get(u, []) for u, i in new_targets)
    known = set(rec._run.item_ids[1:].tolist())
    return {"users": len(users), "NDCG@10": round(m["NDCG@10"], 5), "Recall@10": round(m["Recall@10"], 5),
            "new_item_targets": len(new_targets),
            "new_item_targets_known_to_run": sum(i in known for _, i in new_targets),
            "new_item_hits@10": int(hits), "new_item_recall@10": round(hits / max(len(new_targets), 1), 5),
            "new_item_list_slots": int(sum(i in new_items for v in top.values() for i in v)),
            "list_slots": int(sum(len(v) for v in top.values()))}


def mean_start_update(initial, second, work: str):
    """initial.update(second) with every new item started at the mean item vector (plus noise)."""
    from nanorec.runs import update
    grown = update.grown_weights
    update.grown_weights = lambda state, num_items, content_rows, seed, seqs=None: grown(state, num_items,
                                                                                           content_rows, seed)
    try:
        return initial.update(second, out=os.path.join(work, "updated_mean_start"))
    finally:
        update.grown_weights = grown


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--judge-days", type=int, default=7)
    p.add_argument("--update-days", type=int, default=14)
    p.add_argument("--work", default=None, help="folder for the runs (default: a new temporary one)")
    p.add_argument("--mean-start", action="store_true", help="also an update whose new items start at the mean item")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args()
    cfg = apply_overrides(Config(target_filter="event_type=purchase"), args.overrides)
    config = {"target_filter": "event_type=purchase", "progress": False,
              **{k: getattr(cfg, k) for k in (o.split("=", 1)[0] for o in args.overrides)}}
    first, second, week = weeks(args.data, args.judge_days, args.update_days)
    import polars as pl
    both = pl.concat([first, second])
    targets = judged(both, week)
    new_items = set(second["item_id"].to_list()) | set(week["item_id"].to_list())
    new_items -= set(first["item_id"].to_list())
    work = args.work or tempfile.mkdtemp(prefix="nanorec-update-shop-")

    def timed(make):
        t = time.time()
        rec = make()
        return rec, round(time.time() - t, 1)

    initial, t_initial = timed(lambda: Recommender(**config).fit(first, out=os.path.join(work, "initial")))
    updated, t_update = timed(lambda: initial.update(second, out=os.path.join(work, "updated")))
    runs = [("initial (no update)", initial, t_initial), ("update", updated, t_update)]
    if args.mean_start:
        runs.append(("update, new items at the mean item", *timed(lambda: mean_start_update(initial, second, work))))
    retrain, t_retrain = timed(lambda: Recommender(**config).fit(both, out=os.path.join(work, "retrain")))
    rows = {}
    for name, rec, seconds in runs + [("retrain", retrain, t_retrain)]:
        rows[name] = {**lists_metrics(rec, targets, new_items), "seconds": seconds}
        print(name, rows[name], flush=True)
    u, r = rows["update"], rows["retrain"]
    import torch
    result = {
        "command": "python benchmarks/update_shop.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), under load (shared with other jobs), "
                   f"torch {torch.__version__}",
        "date": datetime.date.today().isoformat(),
        "data": args.data, "config": config,
        "sizes": {"weeks_1_7_events": first.height, "weeks_8_9_events": second.height, "week_10_events": week.height,
                  "judged_users": len(targets), "new_items": len(new_items), "update": updated.metrics.get("update")},
        "data_command": "nanorec synth --out shop.csv --rows 150000 --shop (the shop simulator)",
        "protocol": " ".join(part.replace("\n", " ") for part in __doc__.split("\n\n")[2:5]),
        "results": rows,
        "update_vs_retrain": {"NDCG@10_ratio": round(u["NDCG@10"] / max(r["NDCG@10"], 1e-12), 3),
                              "new_item_recall_ratio": round(u["new_item_recall@10"] / max(r["new_item_recall@10"], 1e-12), 3),
                              "time_ratio": round(u["seconds"] / max(r["seconds"], 1e-12), 3)},
        "runs": work,
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"update_{args.name}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {out}: {json.dumps(result['update_vs_retrain'])}")


if __name__ == "__main__":
    main()
