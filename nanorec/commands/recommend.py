"""`nanorec recommend`: top-k lists per user from a trained run, or a challenge submission.

The command's arguments, checked, for the lists of scoring/recommend.py (in Python: Recommender.recommend)."""
from __future__ import annotations

import argparse
import os
import sys

from ..core import distributed
from ..core.devices import DEVICE_HELP, pick_device
from ..data import ids
from ..runs import rundir
from ..runs.files import check_writable_folder, is_stdout, out_path
from ..scoring.recommend import (check_options, filter_files, iter_recommendations, merge_parts, part_path, prepare,
                                 read_user_list, run_default_seen, shard_range, stream_lists)


def main(argv) -> int:
    p = argparse.ArgumentParser(prog="nanorec recommend", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n"
                                       "  nanorec recommend --run runs/kaggle --data data/kaggle --out submission.csv\n"
                                       "  nanorec recommend --run runs/beauty --data Beauty.txt --k 20 --out recs.csv\n"
                                       "  torchrun --standalone --nproc_per_node=2 -m nanorec.cli recommend "
                                       "--run-dir runs/kaggle --data data/kaggle --out submission.csv")
    p.add_argument("--run", "--run-dir", dest="run", required=True,
                   help="run directory written by `nanorec train` (under torchrun spell it --run-dir: "
                        "torchrun's own parser mistakes --run for its --run-path)")
    p.add_argument("--data", help="interactions whose histories are continued (default: the run's own histories)")
    p.add_argument("--out", required=True, help="output .csv (or .parquet); - (or /dev/stdout): standard output")
    p.add_argument("--users", help="CSV/Parquet of users: the run's user column (user_col), else user_id "
                        "(default: test.csv of a challenge folder, else every user with a history)")
    p.add_argument("--k", type=int, default=10, help="list length (default 10)")
    p.add_argument("--allow-items", metavar="FILE",
                   help="only these items may be listed: a CSV/Parquet of item ids, one a line with or without a "
                        "header (or a table with the run's item column, else item_id); applied before the lists are "
                        "cut, for every method; a user left with fewer than k items gets a shorter list (stderr says "
                        "how many, and how many ids of the file the run does not know)")
    p.add_argument("--deny-items", metavar="FILE",
                   help="these items are never listed (same file format as --allow-items)")
    p.add_argument("--mode", choices=["oneshot", "generative"], default="oneshot")
    seen = p.add_mutually_exclusive_group()
    seen.add_argument("--exclude-seen", dest="exclude_seen", action="store_true", default=None,
                      help="never recommend an item already in the history (a user with fewer than k unseen "
                           "items gets a shorter list); default: the run's choice (exclude_seen)")
    seen.add_argument("--include-seen", dest="exclude_seen", action="store_false",
                      help="allow repeat purchases in the list; default: the run's choice (exclude_seen)")
    p.add_argument("--format", choices=["auto", "submission", "long"], default="auto",
                   help="auto = submission for a challenge folder, long table otherwise")
    p.add_argument("--temperature", type=float, default=0.0, help="generative: 0 = greedy, > 0 = sampling")
    p.add_argument("--top-k-sample", type=int, default=0, help="generative sampling: keep only the top k logits (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="generative sampling seed")
    p.add_argument("--batch-size", type=int, default=512, help="users scored at once (default 512)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    args = p.parse_args(argv)
    args.out = out_path(args.out)
    check_options(args)
    check_writable_folder(args.out, "--out list")  # fail before the work, not after it
    run_cfg = rundir.read_config(args.run) if os.path.isdir(args.run) else None
    user_col = run_cfg.user_col if run_cfg else "user_id"
    item_col = run_cfg.item_col if run_cfg else "item_id"
    users = read_user_list(args.users, user_col) if args.users else None
    dd, device = distributed.setup(pick_device(args.device))  # under torchrun: one process per shard
    try:
        scorer, num_items, item_ids, known, hist, users = prepare(args.run, args.data, args.k, users, device)
        exclude_seen = run_default_seen(args.run, args.exclude_seen)
        blocked = filter_files(item_ids, args.allow_items, args.deny_items, item_col,
                               report=lambda got, opt: print(got.line(opt), file=sys.stderr) if dd.main else None)
        is_challenge = args.data is not None and os.path.isdir(args.data)
        fmt = args.format if args.format != "auto" else ("submission" if is_challenge else "long")
        lo, hi = shard_range(len(users), args.batch_size, dd.rank, dd.world)
        batches = iter_recommendations(scorer, num_items, known, hist, users, args.k, exclude_seen, args.mode,
                                       args.batch_size, args.temperature, args.top_k_sample, args.seed,
                                       start=lo, stop=hi, progress=dd.main, blocked=blocked)
        tally = {"short": 0}
        if not dd.enabled:
            n_cold = stream_lists(args.out, fmt, batches, users, item_ids, tally)
        else:
            parts = [part_path(args.out, r, dd.world) + os.path.splitext(args.out)[1] for r in range(dd.world)]
            stream_lists(parts[dd.rank], fmt, batches, users, item_ids, tally)
            tally["short"] = distributed.total(tally["short"], dd, device)
            distributed.barrier(dd)
            if dd.main:
                merge_parts(args.out, parts, users, None if tally["short"] else args.k, fmt)
                rows = ids.rows(known, users)
                n_cold = int(len(users) - (hist.lengths[rows[rows >= 0]] > 0).sum())
            distributed.barrier(dd)
    finally:
        distributed.cleanup(dd)
    if dd.main:
        print(f"wrote {args.out}: {len(users):,} users x {args.k} items ({args.mode})"
              + (f" from {dd.world} processes" if dd.enabled else "")
              + f"; {n_cold:,} cold users got the most popular items",
              file=sys.stderr if is_stdout(args.out) else sys.stdout)  # never into the lists themselves
        if tally["short"]:
            why = [opt for opt, path in (("--allow-items", args.allow_items), ("--deny-items", args.deny_items)) if path]
            why += ["their own items (never listed: --exclude-seen)"] if exclude_seen else []
            print(f"{tally['short']:,} of {len(users):,} users got fewer than {args.k} items: {' and '.join(why)} "
                  f"left fewer than {args.k} to list (their lists are shorter, never filled)", file=sys.stderr)
    return 0
