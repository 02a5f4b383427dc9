"""Update against retrain, on a time-ordered log: quality on what follows, and wall time.

    python benchmarks/update.py --data /work/shared/data/Beauty.txt --name beauty [key=value ...]
    python benchmarks/update.py --data synth.csv --name synth --cut 0.8 max_steps=3000

Each user's sequence (S3-Rec .txt: in its own order; an event log: by time) is cut in
three, by position: part 1 = the first `--cut` share of the events before the last one,
part 2 = the rest of them, "after" = the last event. A share `--new-users` of the users
have no part 1 at all (they are new in part 2), and items first seen in part 2 are new.

  initial  Recommender(**config).fit(part 1)                      (not timed against)
  update   initial.update(part 2)                                 (Recommender.update)
  retrain  Recommender(**config).fit(part 1 + part 2)             (the full retrain)

GPT runs (the scorer reads histories only). Every run is evaluated on the "after" events of the users whose after-item is known to
the retrain: history = parts 1 + 2 (in the run's vocabulary), full ranking, history
excluded, with the one evaluator (evaluate.evaluate on the run's shipped scorer); the
initial run (no update) is shown too, its unknown targets counted as misses.
Writes benchmarks/results/update_<name>.json: command, machine, date, figures, times.
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
from nanorec.data import ids  # noqa: E402
from nanorec.config import Config, apply_overrides  # noqa: E402
from nanorec.data import EvalSet, load  # noqa: E402
from nanorec.evaluation.metrics import evaluate  # noqa: E402
from nanorec.scoring.recommend import histories_in_run_vocab  # noqa: E402


def parts(ds, cut: float, new_users: float, seed: int):
    """-> (part 1, part 2) as (user, item, time) columns of original ids, and the after
    events (users (A,), items (A,)); time = the event's position in its user's sequence."""
    rng = np.random.default_rng(seed)
    p1, p2, after_u, after_i = [], [], [], []
    for u, uid in enumerate(ds.user_ids):
        seq = ds.item_ids[ds.sequences[u]]
        if len(seq) < 3:
            continue
        before = len(seq) - 1
        c = 0 if rng.random() < new_users else max(1, int(cut * before))
        for t, item in enumerate(seq[:before]):
            (p1 if t < c else p2).append((uid, item, t))
        after_u.append(uid)
        after_i.append(seq[-1])
    return p1, p2, np.asarray(after_u), np.asarray(after_i)


def frame(rows):
    import polars as pl
    u, i, t = zip(*rows)
    return pl.DataFrame({"user_id": list(u), "item_id": list(i), "timestamp": list(t)})


def after_metrics(rec, seen_frame, after_u, after_i, batch_size: int) -> dict:
    """NDCG@10 / HR@10 on the after events, histories = parts 1 + 2 in the run's vocabulary;
    a target the run does not know is a miss (its user still counts)."""
    from nanorec.data import from_frame
    ds = from_frame(seen_frame)
    hist, _ = histories_in_run_vocab(ds, rec._run.item_ids)
    rows = ids.rows(ds.user_ids, after_u)                  # (A,) row of each after user
    target = ids.rows(rec._run.item_ids[1:], after_i) + 1  # (A,) 0: unknown to the run
    ok = (rows >= 0) & (target > 0) & (hist.lengths[np.maximum(rows, 0)] > 0)
    m = evaluate(rec._run.scorer, EvalSet(rows[ok], hist.take(rows[ok]), target[ok]), batch_size=batch_size)
    share = ok.sum() / len(after_u)  # a miss scores 0: the mean over every user
    return {"NDCG@10": round(float(m["NDCG@10"] * share), 5), "HR@10": round(float(m["HR@10"] * share), 5),
            "users": int(len(after_u)), "scored": int(ok.sum())}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--cut", type=float, default=0.8, help="share of each user's events (before the last) in part 1")
    p.add_argument("--new-users", type=float, default=0.05, help="share of users with no part 1")
    p.add_argument("--out", default=None, help="results file (default benchmarks/results/update_NAME.json)")
    p.add_argument("--work", default=None, help="folder for the three runs (default: a new temporary one); a "
                   "finished initial run already there (same data, cut and config) is loaded, not fitted again")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args()
    cfg = apply_overrides(Config(), args.overrides)
    config = {k: getattr(cfg, k) for k in (o.split("=", 1)[0] for o in args.overrides)}
    config.setdefault("progress", False)
    ds = load(args.data)
    p1, p2, after_u, after_i = parts(ds, args.cut, args.new_users, cfg.seed)
    part1, part2 = frame(p1), frame(p2)
    import polars as pl
    both = pl.concat([part1, part2])
    work = args.work or tempfile.mkdtemp(prefix="nanorec-update-bench-")

    t = time.time()
    if os.path.exists(os.path.join(work, "initial", "metrics.json")):  # not timed against: reused as it is
        initial, t_initial = Recommender.load(os.path.join(work, "initial")), None
    else:
        initial = Recommender(**config).fit(part1, out=os.path.join(work, "initial"))
        t_initial = time.time() - t
    t = time.time()
    updated = initial.update(part2, out=os.path.join(work, "updated"))
    t_update = time.time() - t
    t = time.time()
    retrain = Recommender(**config).fit(both, out=os.path.join(work, "retrain"))
    t_retrain = time.time() - t

    rows = {}
    for name, rec, seconds in (("initial (no update)", initial, t_initial), ("update", updated, t_update),
                               ("retrain", retrain, t_retrain)):
        rows[name] = {**after_metrics(rec, both, after_u, after_i, cfg.eval_batch_size),
                      "seconds": None if seconds is None else round(seconds, 1)}  # None: a reused initial run
        print(name, rows[name], flush=True)
    u, r = rows["update"], rows["retrain"]
    import torch
    result = {
        "command": "python benchmarks/update.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), "
                   f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, torch {torch.__version__}",
        "date": datetime.date.today().isoformat(),
        "data": args.data, "config": config, "cut": args.cut, "new_users_share": args.new_users,
        "sizes": {"part1_events": len(p1), "part2_events": len(p2), "after_users": int(len(after_u)),
                  "update": updated.metrics.get("update")},
        "protocol": "each user's sequence cut by position: part 1 = first cut share of the events before the last, "
                    "part 2 = the rest, after = the last event; NDCG@10/HR@10 on the after events, history = "
                    "parts 1+2, full ranking, history excluded; a target unknown to a run is a miss",
        "results": rows,
        "update_vs_retrain": {"NDCG@10_ratio": round(u["NDCG@10"] / max(r["NDCG@10"], 1e-12), 3),
                              "time_ratio": round(u["seconds"] / max(r["seconds"], 1e-12), 3)},
        "runs": work,
    }
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"update_{args.name}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {out}: update/retrain NDCG@10 {result['update_vs_retrain']['NDCG@10_ratio']}, "
          f"time {result['update_vs_retrain']['time_ratio']}")


if __name__ == "__main__":
    main()
