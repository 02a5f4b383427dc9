"""What views add to a purchase model: three GPT runs on one `nanorec synth --event-types` log,
each scored on the customers' last purchases (leave-one-out: test = the last purchase,
validation = the one before).

    (a) purchases only          filter=event_type=purchase
    (b) views as context        target_filter=event_type=purchase (loss on purchases only)
    (c) (b), views learned too  target_filter=event_type=purchase weight_col=weight
                                (every event a loss target: view 1, cart 2, purchase 5)

    python benchmarks/event_types.py [--rows 20000] [--max-steps 1000] [--out benchmarks/results/event_types.json]

Two numbers per run and split:
- "run": NDCG@10 as the run reports it (metrics.json: each run's own users);
- "common": NDCG@10 on the customers every run scores (two purchases or more), the same
  targets for all three.
Both exclude the customer's earlier purchases from the lists, never the items only viewed
(a view is often followed by a purchase of the same item): Sequences.seen_items.
Default size: ~2 minutes a run on 2 CPU cores. Writes --out with the command, machine and date.
"""
import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from nanorec.config import Config  # noqa: E402
from nanorec.data import EvalSet, load_like, split_like  # noqa: E402
from nanorec.evaluation.metrics import evaluate  # noqa: E402
from nanorec.runs.rundir import read_metrics  # noqa: E402
from nanorec.runs.run import Run  # noqa: E402
from nanorec.data.synthetic import write_fast  # noqa: E402
from nanorec.core.train import run as train  # noqa: E402

VARIANTS = {
    "a_purchases_only": {"filter": "event_type=purchase"},
    "b_views_as_context": {"target_filter": "event_type=purchase"},
    "c_context_and_weights": {"target_filter": "event_type=purchase", "weight_col": "weight"},
}


def restricted(evalset: EvalSet, user_ids, keep: set) -> EvalSet:
    rows = np.array([i for i, u in enumerate(user_ids[evalset.users].tolist()) if u in keep], dtype=np.int64)
    return EvalSet(evalset.users[rows], evalset.histories.take(rows), evalset.targets[rows])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=20000, help="purchases in the synthetic log")
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="", help="folder for the log and the runs (default: a temporary one)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                 "event_types.json"))
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="event_types_")
    os.makedirs(work, exist_ok=True)
    log = os.path.join(work, "shop.parquet")
    summary = write_fast(log, args.rows, args.items, seed=args.seed, event_types=("view", "cart", "purchase"))
    common = dict(data=log, max_steps=args.max_steps, eval_interval=max(1, args.max_steps // 6), threads=2,
                  progress=False, seed=args.seed)
    runs, splits = {}, {}
    for name, keys in VARIANTS.items():
        cfg = Config(**common, **keys).validate()
        t0 = time.time()
        train(cfg, os.path.join(work, name), quiet=True)
        ds = load_like(cfg)
        splits[name] = (ds, split_like(ds, cfg))
        m = read_metrics(os.path.join(work, name))
        runs[name] = {"config": keys, "seconds": round(time.time() - t0, 1),
                      "run": {s: {"NDCG@10": m[s]["NDCG@10"], "users": m[s]["users"]} for s in ("valid", "test")}}
        print(f"{name}: {runs[name]['run']} ({runs[name]['seconds']} s)", flush=True)
    # the customers every run scores: those with a test (and validation) purchase in each
    for s in ("valid", "test"):
        users = [set(ds.user_ids[getattr(sp, s).users].tolist()) for ds, sp in splits.values()]
        keep = set.intersection(*users)
        for name, (ds, sp) in splits.items():
            scorer = Run.open(os.path.join(work, name)).scorer
            ev = restricted(getattr(sp, s), ds.user_ids, keep)
            runs[name].setdefault("common", {})[s] = {
                "NDCG@10": round(evaluate(scorer, ev)["NDCG@10"], 4), "users": len(ev.targets)}
    for name, r in runs.items():
        print(f"{name}: common {r['common']}")
    out = {"command": "python " + " ".join(sys.argv), "machine": f"{platform.node()} ({platform.processor() or platform.machine()}, "
           f"{os.cpu_count()} CPUs)", "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "log": {"rows": summary["rows"], "purchases": args.rows, "users": summary["users"], "items": args.items,
                   "shares": summary["shares"]},
           "protocol": __doc__.split("\n\n")[3].strip(), "results": runs}
    from nanorec.runs.files import write_json
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
