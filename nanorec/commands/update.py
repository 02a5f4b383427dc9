"""`nanorec update`: a trained run updated with new events into a new run folder.

    nanorec update --run RUN --data NEW --out RUN2 [key=value ...] [--resume | --overwrite]

The command's arguments, checked, for runs/update.py (in Python: Recommender.update)."""
from __future__ import annotations

import argparse

from ..config import add_run_writer_options, apply_overrides, check_dashed_keys
from ..errors import UsageError
from ..runs.update import REPLAY, UPDATE_KEYS, UPDATE_LR_SCALE, UPDATE_SHARE, UPDATE_VALID_USERS, key_base, update


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="nanorec update",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Update a trained run with new events (new users and new items welcome) into a new run "
                    "folder: training goes on from the run's weights for a fraction of a retrain's steps; "
                    "the old run is never changed.",
        epilog="what it does:\n"
               "  histories: each user's saved history + the user's new events (new users added);\n"
               "  items: new ones get the indices after the run's (existing ids keep theirs), start from\n"
               "    their content vector (content=) or the mean of the old items next to them in the\n"
               "    new events (else an average item's), and are learned;\n"
               f"  training: max_steps (default {UPDATE_SHARE:g} x the steps to the full run's best; learning\n"
               f"    rate {UPDATE_LR_SCALE:g} x the full run's) on the users with new targets (a new purchase\n"
               f"    under target_filter) + {REPLAY:g} x as many replayed old users; count tables refitted, fusion\n"
               f"    weights searched near the run's (fusion_weights=auto: the full search), validation\n"
               f"    on {UPDATE_VALID_USERS:,} users (valid_users=N: N);\n"
               "  a baseline run (method=transitions, ...) is refitted on the extended histories.\n"
               "The new events are read with the run's settings (user_col, item_col, time_col, filter,\n"
               "target_filter, weight_col) and come after the run's data. Refused with one line: another\n"
               "data set's events (ids of another type, or no user and no item in common), the run's own\n"
               "events again, and events older than the user's last event in the run or already in it\n"
               "(refused, not merged: pass only the newer events). holdout=time runs: the update's test\n"
               "window is its newest events (split_time= sets it; default the new events' time at the\n"
               "run's fraction, 0.9 for a date), its validation the events just before.\n\n"
               f"keys an update may set (key=value): {', '.join(UPDATE_KEYS)}\n\n"
               "examples:\n"
               "  nanorec update --run runs/shop --data events_this_week.csv --out runs/shop_w2\n"
               "  nanorec update --run runs/shop_w2 --data events_next_week.csv --out runs/shop_w3 max_steps=500\n"
               "  nanorec update --run runs/shop --data events_this_week.csv --out runs/shop_w2 --resume\n"
               "      # after a kill: goes on from the update's last checkpoint\n"
               "  nanorec recommend --run runs/shop_w2 --out lists.csv   # an ordinary run folder")
    p.add_argument("--run", required=True, help="the trained run folder to update (read only)")
    p.add_argument("--data", help="the new events: a .csv/.tsv/.parquet log (or S3-Rec .txt) with the run's columns")
    p.add_argument("--out", required=True,
                   help="the new run folder (must be empty or absent, unless --overwrite; never --run)")
    add_run_writer_options(p, resume_help="continue an update into --out that was killed (same --run and --data)",
                           overwrite_help="replace the run already in --out (only when the new one is complete)")
    check_dashed_keys(argv, p._option_string_actions)
    return p.parse_intermixed_args(argv)  # key=value before or after the options


def main(argv) -> int:
    args = parse_args(argv)
    for name in ("run", "out"):
        if not getattr(args, name).strip():
            raise UsageError(f"--{name}: empty; expected a run folder")
    if not args.data or not args.data.strip():
        raise UsageError("--data is required: the new events")
    named = [o.split("=", 1)[0].strip().lstrip("-").replace("-", "_") for o in args.overrides if "=" in o]
    given = apply_overrides(key_base(named), args.overrides)  # each value typed and checked as train's are
    changes = {k: getattr(given, k) for k in named}
    update(args.run, args.data, args.out, changes, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)
    return 0
