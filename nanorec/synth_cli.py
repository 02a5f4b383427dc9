"""`nanorec synth`: a challenge-shaped synthetic purchase log of any size, in seconds.

    nanorec synth --out FOLDER|FILE.parquet|FILE.csv --rows N [--items M] [--users U] [--seed S] [--challenge]

A FOLDER (or --challenge) gets a challenge folder: train.csv, test.csv (a
seeded 57% of the users, as in the challenge) and id_mappings.json; a .parquet
or .csv file gets an event log (user_id,item_id,timestamp). Shape: 70% of the
users buy two items, a Zipf popularity skew, and item follow-ups a sequence
model can learn (see nanorec.synthetic.generate_fast). --items and --users
default to the challenge's ratios (2.43M rows: 78k items, 720k users).
Same seed, same files.
"""
from __future__ import annotations

import argparse
import os
import time

from .errors import DataError, UsageError


def check_args(args) -> tuple[int, int]:
    """-> (users, items), or a one-line UsageError."""
    from .synthetic import CHALLENGE_ROWS_PER_ITEM, CHALLENGE_ROWS_PER_USER
    if not 2 <= args.rows <= 1_000_000_000:
        raise UsageError(f"--rows {args.rows}: must be in 2..1000000000")
    users = args.users if args.users is not None else max(1, round(args.rows / CHALLENGE_ROWS_PER_USER))
    items = args.items if args.items is not None else max(4, round(args.rows / CHALLENGE_ROWS_PER_ITEM))
    if args.users is not None and not 1 <= args.users <= args.rows // 2:
        raise UsageError(f"--users {args.users}: must be in 1..{args.rows // 2} (every user buys at least two items)")
    if args.users is not None and args.rows > 200 * args.users:
        raise UsageError(f"--users {args.users}: too few for {args.rows} rows (at most 200 a user); use at least "
                         f"{-(-args.rows // 200)}")
    if not 4 <= items <= 100_000_000:
        raise UsageError(f"--items {items}: must be in 4..100000000")
    if not 0 <= args.seed < 2**63:
        raise UsageError(f"--seed {args.seed}: must be in 0..2^63-1")
    is_file = args.out.lower().endswith((".parquet", ".csv"))
    if args.challenge and is_file:
        raise UsageError(f"--out {args.out}: --challenge writes a folder, not a .parquet/.csv file")
    if is_file:
        if os.path.isdir(args.out):
            raise DataError(f"{args.out}: is a folder, expected a file path")
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder):
            raise DataError(f"{args.out}: folder {folder} does not exist")
    else:
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise DataError(f"{args.out}: exists and is not a folder")
        if os.path.isdir(args.out) and os.listdir(args.out):
            raise UsageError(f"--out {args.out}: the folder is not empty; choose a new one")
    return users, items


def main(argv) -> int:
    p = argparse.ArgumentParser(prog="nanorec synth", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n"
                                       "  nanorec synth --out data/synth --rows 2430000 --items 78000 --users 720000\n"
                                       "  nanorec synth --out log.parquet --rows 100000 --seed 1")
    p.add_argument("--out", required=True, help="a folder (challenge layout) or a .parquet/.csv event log")
    p.add_argument("--rows", type=int, required=True, help="purchases (rows) to generate")
    p.add_argument("--items", type=int, help="catalogue size (default: rows / 31, the challenge's ratio)")
    p.add_argument("--users", type=int, help="users (default: rows / 3.375, the challenge's ratio)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--challenge", action="store_true", help="write a challenge folder (the default for a folder)")
    args = p.parse_args(argv)
    users, items = check_args(args)
    from .synthetic import write_fast
    t0 = time.time()
    s = write_fast(args.out, args.rows, items, users, args.seed, challenge=True if args.challenge else None)
    test = f", {s['test_users']:,} test users" if "test_users" in s else ""
    print(f"wrote {args.out}: {s['rows']:,} rows, {s['users']:,} users, {s['items']:,} items "
          f"({s['items_bought']:,} bought){test}; {s['two_item_share']:.0%} of users have two purchases "
          f"({time.time() - t0:.1f} s)")
    return 0
