"""A shop's lifecycle on the shop simulator: train, update, judge next week.

    python benchmarks/lifecycle.py [--rows 300000] [--seed 0] [--shape K=V,...] [--variants A,B] [--small]
                                   [--work DIR] [--out FILE] [key=value ...]

One `nanorec synth --shop` log (10 weeks; nanorec.data.synthetic.generate_shop), two variants:

    purchases_only     filter=event_type=purchase
    views_as_context   target_filter=event_type=purchase

and for each, three runs of the defaults (key=value overrides apply to all):

    initial    Recommender.fit(weeks 1-7)            judged as it is ("no update")
    update     initial.update(weeks 8-9)             (refused: the message, where update refuses)
    retrain    Recommender.fit(weeks 1-9)

Every run is judged on week 10 as a shop judges it, with the project's own multi-target code
(data.time_split at week 10's start for the users and their week-10 purchases,
evaluate.top_lists + evaluate.set_metrics for NDCG@10 / HR@10 / MAP@10): every known customer
(an event before week 10 in the variant's log) with a week-10 purchase of an item they had not
bought before; targets = those items; history = every event of weeks 1-9 in the run's
vocabulary (target flags kept, so only earlier purchases are excluded from the lists); a target
the run does not know is a miss. new-item recall@10: the share of week-10 (user, item) targets
whose item launched in weeks 8-10 (the catalogue) that are in the user's top 10. Beside them,
each run's seconds (wall and this process's CPU), the update's share of the retrain's time and NDCG@10, and the generator's
ceiling on the same protocol (LOG.ceiling.json: any_event for views as context,
earlier_purchase for purchases only) with each run's share of it.
--shape: the shop's shape (nanorec.data.synthetic.shop_shape: e.g. extra_views=4,p_buy=0.35): a shop
of another shape than the one the defaults were tuned on.
--small: 30,000 events, max_steps=200 (a check in a few minutes, not a figure).
Writes --out (default benchmarks/results/lifecycle.json) with the command, machine and date.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nanorec import Recommender
from nanorec.data import ids  # noqa: E402
from nanorec.config import Config, apply_overrides  # noqa: E402
from nanorec.data import EvalSet, Sequences, load_like, time_split  # noqa: E402
from nanorec.errors import NanorecError  # noqa: E402
from nanorec.evaluation.metrics import set_metrics, top_lists  # noqa: E402
from nanorec.data.synthetic import DAY_S, SHOP_START, shop_shape, shop_sidecars, write_shop  # noqa: E402

VARIANTS = {
    "purchases_only": ({"filter": "event_type=purchase"}, "earlier_purchase"),
    "views_as_context": ({"target_filter": "event_type=purchase"}, "any_event"),
}
MACHINE = "2-core CPU, under load"


def week_start(week: int) -> str:
    """The ISO start of week `week` (1-based) of the simulated shop."""
    return str(np.datetime64(SHOP_START) + np.timedelta64((week - 1) * 7 * DAY_S, "s"))


def week10_targets(cfg, log):
    """-> (ds, users (M,), histories (M rows, flags kept), targets (M rows)): week 10's new purchases
    of known customers (data.time_split at week 10), each user's earlier purchases taken out of
    their target set, users left without a target dropped."""
    ds = load_like(cfg, log)
    test = time_split(ds, week_start(10)).test
    seen = test.histories.seen_items()  # the earlier purchases (target events) of each user
    row_t = np.repeat(np.arange(len(test.users)), test.targets.lengths)
    row_s = np.repeat(np.arange(len(seen)), seen.lengths)
    V = ds.num_items + 1
    keep = ~np.isin(row_t * V + test.targets.items, row_s * V + seen.items)  # (targets,) not bought before
    counts = np.bincount(row_t[keep], minlength=len(test.users))
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    targets, users = Sequences(offsets, test.targets.items[keep]), np.nonzero(counts > 0)[0]
    return ds, test.users[users], test.histories.take(users), targets.take(users)


def in_run_vocab(seqs: Sequences, ds_item_ids, run_item_ids, unknown: int = 0) -> Sequences:
    """Rows re-indexed to a run's items (the one id rule, ids.rows), weights and target flags kept;
    unknown items dropped, or (unknown > 0) replaced by `unknown`, an index no list holds."""
    rows = ids.rows(run_item_ids[1:], ds_item_ids[1:])
    remap = np.concatenate([[0], np.where(rows >= 0, rows + 1, unknown)]).astype(np.int64)
    items = remap[seqs.items]
    keep = items > 0
    row = np.repeat(np.arange(len(seqs)), seqs.lengths)
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(np.bincount(row[keep], minlength=len(seqs)), out=offsets[1:])
    return Sequences(offsets, items[keep], *seqs._cut(keep))


def judge(rec, ds, users, histories, targets, new_items: set, batch_size: int) -> dict:
    """NDCG@10 / HR@10 / MAP@10 (multi-target), new-item recall@10 and new items' share of the
    list slots of one run on week 10; users whose history holds no item the run knows get no list."""
    run = rec._run
    hist = in_run_vocab(histories, ds.item_ids, run.item_ids)
    tgt = in_run_vocab(targets, ds.item_ids, run.item_ids, unknown=len(run.item_ids))  # never listed
    listed = np.nonzero(hist.lengths > 0)[0]
    lists = np.zeros((len(users), 10), dtype=np.int64)  # 0: padding, never a target
    todo = EvalSet(users[listed], hist.take(listed), np.zeros(len(listed), dtype=np.int64))  # targets unused
    lists[listed] = top_lists(run.scorer, todo, 10, batch_size)
    m = set_metrics(lists, tgt, ks=(10,))
    is_new = np.array([i in new_items for i in ds.item_ids[targets.items].tolist()])  # (targets,)
    V = len(run.item_ids) + 1  # > every index, the unknown targets' included
    row = np.repeat(np.arange(len(users)), tgt.lengths)
    hit_of_target = np.isin(row * V + tgt.items, np.arange(len(users))[:, None] * V + lists)  # (targets,)
    new_listed = np.isin(run.item_ids[lists[listed]], list(new_items)).sum()
    return {**{k: round(v, 5) for k, v in m.items() if k in ("NDCG@10", "HR@10", "MAP@10")},
            "new_item_recall@10": round(float(hit_of_target[is_new].mean()), 5) if is_new.any() else None,
            "new_item_targets": int(is_new.sum()), "new_item_slots": int(new_listed),
            "slots": int(lists[listed].size), "users": int(len(users)), "listed": int(len(listed))}


def run_variant(name: str, keys: dict, ceiling: dict, frames: dict, log, new_items: set, config: dict,
                work: str) -> dict:
    """One variant's three runs (initial, update, retrain), each timed and judged on week 10, with
    the generator's ceiling for the same customers (their count equals the ceiling's "users")."""
    cfg = apply_overrides(Config(**keys), [f"{k}={v}" for k, v in config.items()])
    ds, users, histories, targets = week10_targets(cfg, log)
    runs, recs = {}, {}

    def clock():  # (wall, this process's CPU seconds over all its threads: steadier under load)
        return time.time(), time.process_time()

    def took(start):
        return {"seconds": round(time.time() - start[0], 1), "cpu_seconds": round(time.process_time() - start[1], 1)}

    t = clock()
    recs["initial"] = Recommender(**keys, **config).fit(frames["weeks 1-7"], out=os.path.join(work, name, "initial"))
    runs["initial"] = took(t)
    t = clock()
    try:
        recs["update"] = recs["initial"].update(frames["weeks 8-9"], out=os.path.join(work, name, "update"))
        runs["update"] = took(t)
    except NanorecError as e:
        runs["update"] = f"refused: {e}"
    t = clock()
    recs["retrain"] = Recommender(**keys, **config).fit(frames["weeks 1-9"], out=os.path.join(work, name, "retrain"))
    runs["retrain"] = took(t)
    limit = ceiling[VARIANTS[name][1]]
    for r, rec in recs.items():
        runs[r].update(judge(rec, ds, users, histories, targets, new_items, cfg.eval_batch_size))
        runs[r]["share_of_ceiling_NDCG@10"] = round(runs[r]["NDCG@10"] / limit["NDCG@10"], 4)
        runs[r]["share_of_ceiling_MAP@10"] = round(runs[r]["MAP@10"] / limit["MAP@10"], 4)
        print(f"{name} {r}: {runs[r]}", flush=True)
    out = {"config": keys, "runs": runs, "ceiling": limit}
    if isinstance(runs["update"], dict):
        u, r = runs["update"], runs["retrain"]
        out["update_vs_retrain"] = {"NDCG@10": round(u["NDCG@10"] / max(r["NDCG@10"], 1e-12), 4),
                                    "time": round(u["seconds"] / max(r["seconds"], 1e-12), 4),
                                    "cpu_time": round(u["cpu_seconds"] / max(r["cpu_seconds"], 1e-12), 4)}
        if u["new_item_recall@10"] is not None and r["new_item_recall@10"]:
            out["update_vs_retrain"]["new_item_recall@10"] = round(u["new_item_recall@10"] / r["new_item_recall@10"], 4)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=300_000, help="events of the simulated shop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default=",".join(VARIANTS), help="which variants to run (comma-separated)")
    p.add_argument("--shape", default="", help="the shop's shape: key=value,... (nanorec.data.synthetic.ShopShape)")
    p.add_argument("--small", action="store_true", help="30,000 events and max_steps=200: a quick check")
    p.add_argument("--work", default="", help="folder for the log and the runs (default: a temporary one)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                 "lifecycle.json"))
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args()
    rows = 30_000 if args.small else args.rows
    overrides = (["max_steps=200", "eval_interval=100"] if args.small else []) + args.overrides
    cfg = apply_overrides(Config(), overrides)
    config = {"progress": False, "seed": args.seed,
              **{k: getattr(cfg, k) for k in (o.split("=", 1)[0] for o in overrides)}}
    work = args.work or tempfile.mkdtemp(prefix="nanorec-lifecycle-")
    os.makedirs(work, exist_ok=True)
    log = os.path.join(work, "shop.csv")
    t = time.time()
    summary = write_shop(log, rows, seed=args.seed, shape=shop_shape(args.shape))
    print(f"shop: {summary} ({time.time() - t:.1f} s)", flush=True)
    import polars as pl
    catalog_path, ceiling_path = shop_sidecars(log)
    with open(ceiling_path) as f:
        ceiling = json.load(f)
    catalog = pl.read_csv(catalog_path, schema_overrides={"item_id": pl.Utf8})
    new_items = set(catalog.filter(pl.col("launch_time") >= week_start(8))["item_id"].to_list())
    events = pl.read_csv(log, schema_overrides={"item_id": pl.Utf8})
    ts = pl.col("timestamp")
    frames = {"weeks 1-7": events.filter(ts < week_start(8)),
              "weeks 8-9": events.filter((ts >= week_start(8)) & (ts < week_start(10))),
              "weeks 1-9": events.filter(ts < week_start(10))}
    result = {"command": "python benchmarks/lifecycle.py " + " ".join(sys.argv[1:]), "machine": MACHINE,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
              "log": {k: v for k, v in summary.items() if k not in ("catalog", "ceiling")},
              "weeks": {"initial": "1-7", "update": "8-9", "judged": "10 (from " + week_start(10) + ")"},
              "config": config, "protocol": __doc__.split("\n\n")[6].split("\n--shape")[0].replace("\n", " "),
              "ceiling": ceiling, "variants": {}, "runs": work}
    from nanorec.runs.files import write_json
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    if set(names) - set(VARIANTS):
        p.error(f"--variants: one of {', '.join(VARIANTS)}")
    for name in names:  # written after each variant: a stopped run keeps what it measured
        result["variants"][name] = run_variant(name, VARIANTS[name][0], ceiling, frames, events, new_items, config,
                                               work)
        result["finished"] = len(result["variants"]) == len(names)
        write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
