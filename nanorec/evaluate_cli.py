"""`nanorec evaluate`: full-ranking metrics of a trained run on one split.

    nanorec evaluate --run RUN_DIR --data PATH [--split valid|test] [--include-seen]
                     [--mode oneshot|generative] [--json FILE]

Prints one line: the protocol beside the metrics. The same `evaluate` function
scored the run during training, so the numbers agree with metrics.json.
"""
from __future__ import annotations

import argparse
import json

from .data import DataError, load, split
from .evaluate import evaluate, format_metrics, protocol_line
from .inference import load_run, make_scorer, pick_device


def main(argv) -> int:
    p = argparse.ArgumentParser(prog="nanorec evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run directory written by `nanorec train`")
    p.add_argument("--data", required=True, help="the interactions the run was trained on")
    p.add_argument("--split", choices=["valid", "test"], default="test")
    p.add_argument("--include-seen", action="store_true",
                   help="rank the user's own history items too (default: ranked last)")
    p.add_argument("--mode", choices=["oneshot", "generative"], default="oneshot",
                   help="generative: rank within 20 generated items (misses beyond)")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    device = pick_device(args.device)
    cfg, model, item_ids = load_run(args.run, device)
    ds = load(args.data, cfg.user_col, cfg.item_col, cfg.time_col)
    if ds.num_items != len(item_ids) - 1 or any(str(a) != str(b) for a, b in zip(ds.item_ids[1:], item_ids[1:])):
        raise DataError(f"{args.data}: item vocabulary differs from the run's items.json (evaluate on the training data)")
    sp = split(ds, all_data=cfg.all_data)
    evalset = sp.test if args.split == "test" else sp.valid
    if evalset is None:
        raise DataError(f"{args.data}: a challenge folder has no test answers; use --split valid")
    if args.mode == "generative":
        from .recommend import generative_scorer
        scorer = generative_scorer(model, cfg, device)
    else:
        scorer = make_scorer(model, cfg, device)
    m = evaluate(scorer, evalset, exclude_seen=not args.include_seen, batch_size=cfg.eval_batch_size, progress=True)
    print(f"{args.split} [{protocol_line(ds.num_items, m['users'], not args.include_seen)}, {args.mode}]: "
          f"{format_metrics(m, ks=(5, 10, 20))}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"split": args.split, "mode": args.mode, "exclude_seen": not args.include_seen, **m}, f, indent=2)
    return 0
