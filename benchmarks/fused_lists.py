"""Fused lists against unfused ones, in one process on one run: the test users' top-10 with the
GPT alone and with the run's fusion (its weights, its tables), each timed, alternated so that a
loaded machine's changing load falls on both; and whether the fused lists equal those of a
reference file (an earlier version's lists of the same users, `--reference`, optional).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/fused_lists.py --run RUN --data FOLDER [--users N]
        [--reps 2] [--reference lists.npz] [--save lists.npz] [--out benchmarks/results/fused_lists.json]

RUN: a fused GPT run (fusion.json); FOLDER: its challenge folder (test.csv: the users to list).
Times are the listing alone (recommend.recommend_users): no start-up, no reading, no writing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--users", type=int, default=0, help="the first N test users (default: all)")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--reference", help="a .npz of items (U, k) to compare the fused lists with")
    p.add_argument("--save", help="write the fused lists (items, scores) to this .npz")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "fused_lists.json"))
    args = p.parse_args()
    import torch
    from nanorec.scoring import recommend as R
    from nanorec.runs.run import Run, fusion_terms
    from nanorec.scoring.fusion import fused_scorer

    run = Run.open(args.run, "cpu")
    known, hist, users = R.histories_for(run, args.data, print)
    users = users[:args.users] if args.users else users
    gpt, tables, content, weights = fusion_terms(run)
    scorers = {"unfused": gpt, "fused": fused_scorer(gpt, tables, content, weights)}
    seconds = {name: [] for name in scorers}
    lists = {}
    for rep in range(args.reps):
        for name, scorer in scorers.items():
            t0 = time.time()
            lists[name] = R.recommend_users(scorer, run.num_items, known, hist, users, 10)
            seconds[name].append(round(time.time() - t0, 1))
            print(f"rep {rep} {name}: {seconds[name][-1]} s", flush=True)
    best = {name: min(s) for name, s in seconds.items()}
    result = {
        "command": "OMP_WAIT_POLICY=PASSIVE python benchmarks/fused_lists.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}, under load "
                   f"(load average at the end {os.getloadavg()[0]:.1f})",
        "date": datetime.date.today().isoformat(),
        "users": int(len(users)), "items": int(run.num_items), "fusion_weights": list(weights),
        "seconds": seconds, "best_seconds": best,
        "fused_over_unfused": round(best["fused"] / best["unfused"], 2),
    }
    if args.reference:
        ref = np.load(args.reference)["items"]
        result["fused_lists_equal_reference"] = bool(ref.shape == lists["fused"][0].shape
                                                     and (ref == lists["fused"][0]).all())
    if args.save:
        np.savez(args.save, items=lists["fused"][0], scores=lists["fused"][1])
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
