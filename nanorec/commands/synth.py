"""`nanorec synth`: a challenge-shaped synthetic purchase log of any size, in seconds.

    nanorec synth --out FOLDER|FILE.parquet|FILE.csv --rows N [--items M] [--users U] [--seed S] [--challenge]
                  [--overwrite] [--event-types view,cart,purchase] [--shop] [--repeat-rate 0.1]

A FOLDER (or --challenge) gets a challenge folder: train.csv, test.csv (a seeded 57% of the
users, as in the challenge) and id_mappings.json; a .parquet or .csv file an event log
(user_id,item_id,timestamp). Shape: 70% of the users buy two items, a Zipf popularity skew, item
follow-ups a sequence model can learn (nanorec.data.synthetic.generate_fast); --repeat-rate
(default 0.1) of the purchases after a user's first re-buy an earlier item. --items and --users
default to the challenge's ratios (2.43M rows: 78k items, 720k users). Same seed, same files.

--event-types (a .csv/.parquet log) makes it a shop's log: --rows purchases, each after a few
views of its category's items and, with three types, a cart, plus customers who only view;
columns event_type and weight (1 view, 2 cart, 5 purchase). Train on it with
target_filter=event_type=purchase, filter=event_type=purchase or weight_col=weight.

--shop (a .csv/.parquet log) simulates a shop's 10 weeks instead, about --rows events
(nanorec.data.synthetic.generate_shop): customers with category tastes and sessions (views
around an anchor item, carts, the anchor bought), follow-up purchases, Zipf popularity, 8% of
the items launched in weeks 8-10, late customers, ids with leading zeros (000123), ISO times;
about 69% views, 19% carts, 11% purchases. Beside the log: LOG.catalog.csv (item_id,title,
category,price,launch_time) and LOG.ceiling.json, the NDCG@10 / MAP@10 of ranking by the
generator's true next-purchase probabilities on week 10 (the limit a model can reach).
--items / --users default to rows / 60 and rows / 15.

The sizes are checked against the available memory before anything is allocated (about 100
bytes a row, 100 an item, 50 a user). An existing output is refused unless --overwrite; it
appears complete or not at all (written beside it and renamed into place).
"""
from __future__ import annotations

import os
import time

from ..cli import command_parser
from ..data.synthetic import (CHALLENGE_FILES, CHALLENGE_ROWS_PER_ITEM, CHALLENGE_ROWS_PER_USER, memory_needed,
                              shop_shape, shop_sidecars, write_fast)
from ..errors import DataError, UsageError
from ..runs.files import OutputLock, recover_folder


def check_args(args) -> tuple[int, int]:
    """-> (users, items), or a one-line UsageError / DataError. Nothing is allocated or written."""
    if not args.out.strip():
        raise UsageError("--out: empty; expected a folder, or a .csv / .parquet file name")
    if not 2 <= args.rows <= 1_000_000_000:
        raise UsageError(f"--rows {args.rows}: must be in 2..1000000000")
    rate = getattr(args, "repeat_rate", None)
    if rate is not None and getattr(args, "shop", False):
        raise UsageError("--repeat-rate: sets the purchase log's re-buys; --shop simulates its own customers (leave it out)")
    if rate is not None and not 0 <= rate <= MAX_REPEAT_RATE:  # NaN fails too
        raise UsageError(f"--repeat-rate {rate}: must be in 0..{MAX_REPEAT_RATE} (the rest of the purchases are "
                         "the follow-ups, 0.7, and popularity draws)")
    if getattr(args, "shop_shape", None) and not getattr(args, "shop", False):
        raise UsageError("--shop-shape: shapes the --shop simulation; add --shop")
    if getattr(args, "shop", False):
        return check_shop_args(args)
    users = args.users if args.users is not None else max(1, round(args.rows / CHALLENGE_ROWS_PER_USER))
    items = args.items if args.items is not None else max(4, round(args.rows / CHALLENGE_ROWS_PER_ITEM))
    if args.users is not None and not 1 <= args.users <= args.rows // 2:
        raise UsageError(f"--users {args.users}: must be in 1..{args.rows // 2} (every user buys at least two items)")
    if args.users is not None and args.rows > 200 * args.users:
        raise UsageError(f"--users {args.users}: too few for {args.rows} rows (at most 200 a user); use at least "
                         f"{-(-args.rows // 200)}")
    if not 4 <= items <= 100_000_000:
        raise UsageError(f"--items {items}: must be in 4..100000000")
    if args.items is not None and items > max(args.rows, 4):  # most of such a catalogue is never bought: id files of items no row names
        raise UsageError(f"--items {items:,}: more items than --rows {args.rows:,}; most would never be bought "
                         f"(the challenge has one item per {CHALLENGE_ROWS_PER_ITEM:.0f} rows)")
    return check_rest(args, users, items, memory_needed(args.rows, items, users))


def check_rest(args, users: int, items: int, need: int) -> tuple[int, int]:
    """What every kind of log checks alike: the seed, the memory (`need` bytes), --event-types, the output."""
    if not 0 <= args.seed < 2**63:
        raise UsageError(f"--seed {args.seed}: must be in 0..2^63-1")
    free = available_memory()
    if free is not None and need > MEMORY_SHARE * free:
        raise UsageError(f"--rows {args.rows:,} --items {items:,} --users {users:,}: needs about {need / 1e9:.1f} GB "
                         f"of memory, and {free / 1e9:.1f} GB is available; ask for fewer rows or items")
    check_event_types(args)
    check_out(args)
    return users, items


def check_shop_args(args) -> tuple[int, int]:
    """--shop's sizes (--rows: events, at least 1,000) -> (users, items), or a one-line UsageError."""
    shape = args.shape = shop_shape(args.shop_shape or "")
    if args.challenge:
        raise UsageError("--shop writes an event log (.csv/.parquet), not a challenge folder: drop --challenge")
    if not args.out.lower().endswith((".csv", ".parquet")):
        raise UsageError(f"--shop: writes an event log; --out {args.out} must be a .csv or .parquet file")
    if not 1000 <= args.rows <= 100_000_000:
        raise UsageError(f"--rows {args.rows}: with --shop, the events to simulate, in 1000..100000000")
    users = args.users if args.users is not None else max(1, round(args.rows / shape.rows_per_user))
    items = args.items if args.items is not None else max(20, round(args.rows / shape.rows_per_item))
    if not 1 <= users <= args.rows:
        raise UsageError(f"--users {users}: with --shop, in 1..{args.rows} (--rows)")
    if not 20 <= items <= max(20, args.rows):
        raise UsageError(f"--items {items}: with --shop, in 20..{max(20, args.rows)} (--rows)")
    return check_rest(args, users, items, memory_needed(4 * args.rows, 100 * items, users))  # + the ceiling's chunks


def check_event_types(args) -> None:
    """--event-types: 2 or 3 distinct names in funnel order, for an event log."""
    if args.event_types is not None:
        types = [t.strip() for t in args.event_types.split(",")]
        if len(types) not in (2, 3) or not all(types) or len(set(types)) < len(types):
            raise UsageError(f"--event-types {args.event_types!r}: expected 2 or 3 distinct names in funnel order, "
                             "the purchase last, e.g. view,cart,purchase")
        if not args.out.lower().endswith((".csv", ".parquet")):
            raise UsageError(f"--event-types: writes an event log; --out {args.out} must be a .csv or .parquet file")


def check_out(args) -> None:
    """The output: a new file or folder, or (with --overwrite) one synth wrote."""
    is_file = args.out.lower().endswith((".parquet", ".csv"))
    if args.challenge and is_file:
        raise UsageError(f"--out {args.out}: --challenge writes a folder, not a .parquet/.csv file")
    if is_file:
        if os.path.isdir(args.out):
            raise DataError(f"{args.out}: is a folder, expected a file path")
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder):
            raise DataError(f"{args.out}: folder {folder} does not exist")
        if os.path.lexists(args.out) and not args.overwrite:
            raise UsageError(f"--out {args.out}: the file exists; pass --overwrite to replace it, or choose another")
        if getattr(args, "shop", False):
            for side in shop_sidecars(args.out):
                if os.path.lexists(side) and not args.overwrite:
                    raise UsageError(f"--out {args.out}: {side} (written beside the log) exists; pass --overwrite "
                                     "to replace it, or choose another --out")
        return
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise DataError(f"{args.out}: exists and is not a folder")
    if os.path.isdir(args.out) and os.listdir(args.out):
        if not args.overwrite:
            raise UsageError(f"--out {args.out}: the folder is not empty; pass --overwrite to replace it, "
                             f"or choose a new one")
        others = sorted(set(os.listdir(args.out)) - set(CHALLENGE_FILES))
        if others:
            raise DataError(f"--out {args.out}: --overwrite replaces the folder whole, and it also holds "
                            f"{', '.join(others[:3])} (not synth's); move {'them' if len(others) > 1 else 'it'} "
                            f"out, or choose another --out")


MAX_REPEAT_RATE = 0.3  # generate_fast's follow-ups take 0.7 of the purchases; repeats share the rest with popularity

# --rows/--items/--users are refused when they need more than this share of the available memory
MEMORY_SHARE = 0.8


def available_memory() -> int | None:
    """Bytes this process may still take: the system's available memory, within the limit of
    its cgroup (a container's); None where neither can be read."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit) as f, open(usage) as g:
                cap, used = f.read().strip(), g.read().strip()
        except OSError:
            continue
        if cap.isdigit() and used.isdigit() and int(cap) < 1 << 60:  # "max" or a huge number: no limit
            found.append(max(0, int(cap) - int(used)))
    return min(found) if found else None


def main(argv) -> int:
    p = command_parser("synth", __doc__, "\n\nexamples:\n"
                        "  nanorec synth --out data/synth --rows 2430000 --items 78000 --users 720000\n"
                        "  nanorec synth --out log.parquet --rows 100000 --seed 1\n"
                        "  nanorec synth --out shop.csv --rows 20000 --event-types view,cart,purchase\n"
                        "  nanorec synth --out shop.csv --rows 300000 --shop")
    p.add_argument("--out", required=True, help="a folder (challenge layout) or a .parquet/.csv event log")
    p.add_argument("--rows", type=int, required=True, help="purchases (rows) to generate (--shop: events)")
    p.add_argument("--items", type=int, help="catalogue size (default: rows / 31, the challenge's ratio)")
    p.add_argument("--users", type=int, help="users (default: rows / 3.375, the challenge's ratio)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--challenge", action="store_true", help="write a challenge folder (the default for a folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file, or a folder synth wrote")
    p.add_argument("--repeat-rate", type=float,
                   help="share of the purchases after a user's first that re-buy an earlier item of the user "
                        "(default 0.1; 0 = no repeat purchases; at most 0.3)")
    p.add_argument("--event-types", metavar="VIEW,[CART,]PURCHASE",
                   help="a shop's log (.csv/.parquet): views and carts around the purchases, event_type and weight "
                        "columns (e.g. view,cart,purchase)")
    p.add_argument("--shop", action="store_true",
                   help="simulate a shop's 10 weeks (.csv/.parquet): sessions, carts, follow-ups, launches, late "
                        "customers; writes LOG.catalog.csv and LOG.ceiling.json beside it")
    p.add_argument("--shop-shape", metavar="K=V,...",
                   help="with --shop: the shop's shape, e.g. extra_views=4,p_buy=0.35,p_follow=0.3,new_share=0.12,"
                        "rows_per_user=8 (nanorec.data.synthetic.ShopShape: shares of sessions that buy, follow the last "
                        "purchase, views per session, launches, late customers, sizes)")
    args = p.parse_args(argv)
    users, items = check_args(args)
    t0 = time.time()
    with OutputLock(args.out, "--out"):
        for line in recover_folder(args.out):  # what a killed synth into this folder left beside it
            print(line)
        check_out(args)  # again, under the lock: another synth may have finished meanwhile
        types = tuple(t.strip() for t in args.event_types.split(",")) if args.event_types else None
        s = write_fast(args.out, args.rows, items, users, args.seed, challenge=True if args.challenge else None,
                       event_types=types, shop=args.shop, **({"shape": args.shape} if args.shop else {}),
                       **({} if args.repeat_rate is None else {"p_repeat": args.repeat_rate}))
    if args.shop:
        shares = ", ".join(f"{v:.0%} {k}" for k, v in s["shares"].items())
        print(f"wrote {args.out}: {s['rows']:,} events ({shares}), {s['users']:,} users, {s['items']:,} items "
              f"({s['new_items']:,} launched in weeks 8-10); {s['catalog']}; {s['ceiling']} (week 10 ceiling "
              f"NDCG@10 {s['ceiling_ndcg']:.4f}) ({time.time() - t0:.1f} s)")
        return 0
    test = f", {s['test_users']:,} test users" if "test_users" in s else ""
    if "shares" in s:
        test += " (" + ", ".join(f"{v:.0%} {k}" for k, v in s["shares"].items()) + ")"
    print(f"wrote {args.out}: {s['rows']:,} rows, {s['users']:,} users, {s['items']:,} items "
          f"({s['items_bought']:,} bought){test}; {s['two_item_share']:.0%} of users have two purchases "
          f"({time.time() - t0:.1f} s)")
    return 0
