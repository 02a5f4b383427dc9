"""Synthetic purchase logs with structure a sequence model can learn.

Shaped like the challenge data: a popularity skew (Zipf), mostly two-item
histories, and three signals that popularity alone cannot use:

- transitions: every item has a few "follow-up" items (a phone, then its case);
  most next purchases are a follow-up of the previous item;
- repeats: some purchases repeat an earlier item of the same user;
- the rest are drawn from the popularity distribution.

The generator is seeded and written as a plain interactions CSV
(user_id,item_id,timestamp) or as a challenge folder (train.csv with item ids
starting at 0, test.csv, id_mappings.json), so every reader is exercised.
"""
from __future__ import annotations

import json
import os

import numpy as np


def generate(num_users: int = 4000, num_items: int = 1000, seed: int = 0,
             p_transition: float = 0.7, p_repeat: float = 0.1, p_two: float = 0.6,
             max_len: int = 20):
    """Returns (users, items, timestamps) as parallel int64 arrays, items 0..num_items-1,
    each user's rows in chronological order."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, num_items + 1) ** 1.1
    popularity /= popularity.sum()
    perm = rng.permutation(num_items)  # popular items are not simply the low ids
    popularity = popularity[perm]
    # 3 follow-ups per item, with decreasing weight; drawn uniformly, so what
    # follows an item is not just what is popular anyway
    follow = np.stack([rng.choice(num_items, size=3, replace=False) for _ in range(num_items)])
    follow_w = np.array([0.6, 0.3, 0.1])

    users, items, times = [], [], []
    t = 1_600_000_000_000  # ms, like the challenge's timestamps
    for u in range(num_users):
        n = 2 if rng.random() < p_two else int(rng.integers(3, max_len + 1))
        seq = [int(rng.choice(num_items, p=popularity))]
        while len(seq) < n:
            r = rng.random()
            if r < p_transition:
                nxt = int(follow[seq[-1], rng.choice(3, p=follow_w)])
            elif r < p_transition + p_repeat:
                nxt = int(rng.choice(seq))
            else:
                nxt = int(rng.choice(num_items, p=popularity))
            seq.append(nxt)
        for item in seq:
            t += int(rng.integers(1, 10_000_000))
            users.append(u)
            items.append(item)
            times.append(t)
    return np.array(users), np.array(items), np.array(times)


def write_csv(path: str, **kwargs) -> str:
    """An interactions CSV (user_id,item_id,timestamp)."""
    import polars as pl
    users, items, times = generate(**kwargs)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pl.DataFrame({"user_id": users, "item_id": items, "timestamp": times}).write_csv(path)
    return path


def write_challenge(folder: str, test_fraction: float = 0.5, cold_users: int = 5, **kwargs) -> str:
    """A challenge-shaped folder: train.csv (user_id,item_id,rating,timestamp),
    test.csv (user_id,predictions placeholder) for a subset of users plus a few
    users with no training history, id_mappings.json. Item ids start at 0."""
    import polars as pl
    users, items, times = generate(**kwargs)
    rng = np.random.default_rng(kwargs.get("seed", 0) + 1)
    os.makedirs(folder, exist_ok=True)
    pl.DataFrame({"user_id": users, "item_id": items,
                  "rating": rng.integers(1, 6, size=len(users)), "timestamp": times}).write_csv(
        os.path.join(folder, "train.csv"))
    uniq = np.unique(users)
    test = np.sort(rng.choice(uniq, size=max(1, int(len(uniq) * test_fraction)), replace=False))
    test = np.concatenate([test, uniq.max() + 1 + np.arange(cold_users)])  # cold users
    pl.DataFrame({"user_id": test, "predictions": ["0"] * len(test)}).write_csv(os.path.join(folder, "test.csv"))
    num_items = int(items.max()) + 1
    mapping = {"user_mapping": {f"U{u}": int(u) for u in np.unique(np.concatenate([uniq, test]))},
               "item_mapping": {f"B{i:06d}": i for i in range(num_items)}}
    with open(os.path.join(folder, "id_mappings.json"), "w") as f:
        json.dump(mapping, f)
    return folder


# -----------------------------------------------------------------------------
# the challenge-sized generator: vectorised, millions of rows in seconds

# The challenge's shape: 2.43M purchases by 720k users of 78k items, 412k users to recommend for.
CHALLENGE_ROWS_PER_USER = 2_430_000 / 720_000
CHALLENGE_ROWS_PER_ITEM = 2_430_000 / 78_000
CHALLENGE_TEST_FRACTION = 412_000 / 720_000


def challenge_lengths(num_rows: int, num_users: int, rng: np.random.Generator, p_two: float = 0.7,
                      max_len: int = 200) -> np.ndarray:
    """(num_users,) history lengths summing to exactly num_rows: a share p_two of
    users with two purchases (less when the mean is too low for the rest to have
    three or more), the rest 3 + a geometric tail. Needs 2 <= rows / users <= max_len."""
    mean = num_rows / num_users
    long_mean = (mean - 2 * p_two) / (1 - p_two) if p_two < 1 else 3.0
    if long_mean < 3:  # too few rows for p_two: every long history has three items
        p_two = max(0.0, 1.0 - (mean - 2.0))
        long_mean = 3.0
    is_long = rng.random(num_users) >= p_two
    extra = rng.geometric(1.0 / (long_mean - 2.0), size=num_users) - 1 if long_mean > 3 else np.zeros(num_users, np.int64)
    lengths = np.where(is_long, np.minimum(3 + extra, max_len), 2).astype(np.int64)
    # make the total exact: spread the difference over random users, within [2, max_len]
    diff = num_rows - int(lengths.sum())
    while diff:
        if diff > 0:
            room = np.nonzero(is_long & (lengths < max_len))[0]
            if not len(room):
                room = np.nonzero(lengths < max_len)[0]
            pick = rng.choice(room, size=min(diff, len(room)), replace=False)
            lengths[pick] += 1
        else:
            room = np.nonzero(lengths > 3)[0]
            if not len(room):
                room = np.nonzero(lengths > 2)[0]
            pick = rng.choice(room, size=min(-diff, len(room)), replace=False)
            lengths[pick] -= 1
        diff = num_rows - int(lengths.sum())
    return lengths


def generate_fast(num_rows: int = 2_430_000, num_items: int | None = None, num_users: int | None = None,
                  seed: int = 0, p_two: float = 0.7, p_transition: float = 0.7, p_repeat: float = 0.1,
                  zipf: float = 1.1, max_len: int = 200):
    """The challenge-shaped log at any size, vectorised (no per-user Python loop):
    a loop over positions 0..max_len-1 draws everyone's next item at once.

    Same signals as `generate`: Zipf popularity (exponent `zipf`, popular items
    not simply the low ids), 3 follow-up items per item (weights 0.6/0.3/0.1,
    drawn uniformly), repeats of an earlier item of the user, popularity draws.
    Lengths from `challenge_lengths` (p_two of users with two purchases).
    num_items / num_users default to the challenge's rows per item / per user.
    Returns (users, items, timestamps) int64 arrays, items 0..num_items-1, rows
    grouped by user (users 0..num_users-1) and in chronological order within a user.
    Same seed, same data."""
    num_users = num_users or max(1, round(num_rows / CHALLENGE_ROWS_PER_USER))
    num_items = num_items or max(4, round(num_rows / CHALLENGE_ROWS_PER_ITEM))
    if num_rows < 2 * num_users or num_rows > max_len * num_users:
        raise ValueError(f"{num_rows} rows for {num_users} users: every user needs 2..{max_len} rows")
    rng = np.random.default_rng([seed, 7])
    lengths = challenge_lengths(num_rows, num_users, rng, p_two, max_len)
    offsets = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])

    cdf = np.cumsum(1.0 / np.arange(1, num_items + 1) ** zipf)
    cdf /= cdf[-1]
    perm = rng.permutation(num_items)  # rank -> item: popular items are not simply the low ids

    def popular(n):
        return perm[np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), num_items - 1)]

    # follow-ups: never the item itself
    follow = (np.arange(num_items)[:, None] + 1 + rng.integers(0, max(num_items - 1, 1), size=(num_items, 3))) % num_items
    follow_cdf = np.cumsum([0.6, 0.3, 0.1])

    items = np.empty(num_rows, dtype=np.int64)
    items[offsets[:-1]] = popular(num_users)
    order = np.argsort(-lengths, kind="stable")  # users by length: the ones still going are a prefix
    sorted_len = lengths[order]
    for t in range(1, int(lengths.max())):
        active = order[:np.searchsorted(-sorted_len, -t, side="left")]  # users with length > t
        n = len(active)
        pos = offsets[active] + t
        prev = items[pos - 1]
        r = rng.random(n)
        nxt = popular(n)
        trans = r < p_transition
        slot = np.minimum(np.searchsorted(follow_cdf, rng.random(int(trans.sum())), side="right"), 2)
        nxt[trans] = follow[prev[trans], slot]
        rep = (r >= p_transition) & (r < p_transition + p_repeat)
        back = (rng.random(int(rep.sum())) * t).astype(np.int64)  # an earlier position of the same user
        nxt[rep] = items[offsets[active[rep]] + back]
        items[pos] = nxt

    users = np.repeat(np.arange(num_users, dtype=np.int64), lengths)
    # times: each user starts somewhere in a year and buys every few hours to weeks (ms, like the challenge)
    start = 1_600_000_000_000 + rng.integers(0, 365 * 86_400_000, size=num_users)
    gaps = rng.integers(3_600_000, 30 * 86_400_000, size=num_rows)
    gaps[offsets[:-1]] = 0
    within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[offsets[:-1]], lengths)
    times = np.repeat(start, lengths) + within
    return users, items, times


# A shop's event types, in funnel order, and the weight column written beside them (`add_event_types`)
EVENT_TYPES = ("view", "cart", "purchase")
TYPE_WEIGHTS = {"view": 1.0, "cart": 2.0, "purchase": 5.0}
CATEGORY_SIZE = 10  # items i // 10 share a category: what a customer browses before buying one of them


def add_event_types(users, items, times, types=EVENT_TYPES, seed: int = 0, views_per_purchase: float = 3.0,
                    p_view_bought: float = 0.5, p_cart: float = 0.6, view_only_share: float = 0.3):
    """A purchase log (generate_fast's arrays) as a shop's event log: before every purchase the
    customer browses its category (Poisson(views_per_purchase) views of items in the bought
    item's category, i // CATEGORY_SIZE, the bought item itself with probability p_view_bought),
    then puts the item in the cart (p_cart; with "cart" in types), minutes before buying it. A
    share view_only_share of extra customers only browse one category and buy nothing (the
    customers who are cold when views are dropped). Views thus point at what is bought next,
    which is what a model that reads them can use.

    types: the names, in funnel order, of (view[, cart], purchase): 2 or 3 names, the last is
    the purchase. -> (users, items, times, event type index into types) int64 arrays in time
    order per user; shares come out near 70% views, 10% carts, 20% purchases (by default)."""
    rng = np.random.default_rng([seed, 9])
    num_items = int(items.max()) + 1
    n_buyers = int(users.max()) + 1 if len(users) else 0
    has_cart = len(types) == 3
    buy_code, cart_code = len(types) - 1, 1

    def category_items(bought, n):  # n items of each bought item's category
        base = (np.repeat(bought, n) // CATEGORY_SIZE) * CATEGORY_SIZE
        return np.minimum(base + rng.integers(0, CATEGORY_SIZE, size=int(n.sum())), num_items - 1)

    # before purchase p: n_views[p] views, then (maybe) a cart, then the purchase
    n_views = rng.poisson(views_per_purchase, size=len(items))
    viewed = category_items(items, n_views)
    own = rng.random(len(viewed)) < p_view_bought
    viewed[own] = np.repeat(items, n_views)[own]
    carts = rng.random(len(items)) < p_cart if has_cart else np.zeros(len(items), dtype=bool)
    per = n_views + carts + 1  # events of each purchase's session
    ev_user = np.repeat(users, per)
    ev_item = np.empty(int(per.sum()), dtype=np.int64)
    ev_type = np.empty(int(per.sum()), dtype=np.int64)
    start = np.cumsum(per) - per
    within = np.arange(len(ev_item)) - np.repeat(start, per)  # position inside its session
    view_slot = within < np.repeat(n_views, per)
    ev_item[view_slot], ev_type[view_slot] = viewed, 0
    cart_slot = np.zeros(len(ev_item), dtype=bool)
    cart_slot[(start + n_views)[carts]] = True
    ev_item[cart_slot], ev_type[cart_slot] = items[carts], cart_code
    buy_slot = start + per - 1
    ev_item[buy_slot], ev_type[buy_slot] = items, buy_code
    ev_time = np.repeat(times, per) - (np.repeat(per, per) - 1 - within) * 60_000  # a minute apart

    # browsers: one category, 1..6 views, no purchase
    n_browsers = int(round(n_buyers * view_only_share))
    b_len = rng.integers(1, 7, size=n_browsers)
    b_item = category_items(rng.choice(items, size=n_browsers) if len(items) else np.zeros(0, np.int64), b_len)
    b_time = np.repeat(times.min() + rng.integers(0, max(int(times.max() - times.min()), 1), size=n_browsers),
                       b_len) + (np.arange(int(b_len.sum())) - np.repeat(np.cumsum(b_len) - b_len, b_len)) * 60_000
    return (np.concatenate([ev_user, n_buyers + np.repeat(np.arange(n_browsers), b_len)]),
            np.concatenate([ev_item, b_item]), np.concatenate([ev_time, b_time]),
            np.concatenate([ev_type, np.zeros(int(b_len.sum()), dtype=np.int64)]))


# Bytes generate_fast + write_fast hold at their peak, per row, per catalogue item and per user:
# the peak resident memory measured was 66 B a row (4M rows), 77 B a catalogue item (3M items,
# 100 rows) and about 25 B a user (600k users), taken here with a margin. `memory_needed` is
# what `nanorec synth` checks against the memory available, before it allocates anything.
BYTES_PER_ROW, BYTES_PER_ITEM, BYTES_PER_USER = 100, 100, 50


def memory_needed(num_rows: int, num_items: int, num_users: int) -> int:
    """About how many bytes generating and writing this log takes at its peak."""
    return BYTES_PER_ROW * num_rows + BYTES_PER_ITEM * num_items + BYTES_PER_USER * num_users


def is_challenge(out: str, challenge: bool | None = None) -> bool:
    """write_fast's layout for `out`: a challenge folder, unless a .csv/.parquet file name."""
    return not out.lower().endswith((".csv", ".parquet")) if challenge is None else challenge


CHALLENGE_FILES = ("train.csv", "test.csv", "id_mappings.json")


def write_fast(out: str, num_rows: int, num_items: int | None = None, num_users: int | None = None,
               seed: int = 0, challenge: bool | None = None, test_fraction: float = CHALLENGE_TEST_FRACTION,
               cold_users: int = 0, event_types: tuple | None = None, **kwargs) -> dict:
    """`generate_fast` written out:

    - a challenge folder (out without a .csv/.parquet suffix, or challenge=True):
      train.csv (user_id,item_id,rating,timestamp; rows in time order, ids from 0),
      test.csv (user_id,predictions placeholder: a seeded share `test_fraction` of
      the users plus `cold_users` users without history), id_mappings.json; built in a
      hidden sibling and renamed into place complete (files.temp_folder; an existing
      folder is replaced only then, whole);
    - an event log (.parquet or .csv file): user_id,item_id,timestamp, written atomically;
      with event_types (names, e.g. ("view", "cart", "purchase")) also event_type and weight
      columns (`add_event_types`: num_rows purchases plus the views and carts around them;
      weight: TYPE_WEIGHTS by funnel stage, 1 / 2 / 5, for weight_col=weight).
    Returns a summary dict (rows, users, items, test users, share of two-item users)."""
    import polars as pl
    from .files import atomic_write, discard_folder, publish_folder, temp_folder

    users, items, times = generate_fast(num_rows, num_items, num_users, seed, **kwargs)
    n_users = int(users[-1]) + 1
    n_items = num_items or max(4, round(num_rows / CHALLENGE_ROWS_PER_ITEM))
    lengths = np.bincount(users, minlength=n_users)
    summary = {"rows": int(num_rows), "users": n_users, "items": int(n_items),
               "items_bought": int(len(np.unique(items))), "two_item_share": round(float(np.mean(lengths == 2)), 4)}
    rng = np.random.default_rng([seed, 8])
    order = np.argsort(times, kind="stable")  # a log is in time order; readers sort per user themselves
    if event_types:
        stage = ("view", "cart", "purchase") if len(event_types) == 3 else ("view", "purchase")
        users, items, times, kind = add_event_types(users, items, times, tuple(event_types), seed)
        order = np.argsort(times, kind="stable")
        names, weights = np.array(event_types), np.array([TYPE_WEIGHTS[s] for s in stage])
        df = pl.DataFrame({"user_id": users[order], "item_id": items[order], "timestamp": times[order],
                           "event_type": names[kind[order]], "weight": weights[kind[order]]})
        summary.update(rows=len(df), users=int(users.max()) + 1,
                       shares={n: round(float(np.mean(kind == i)), 3) for i, n in enumerate(event_types)})
        atomic_write(out, df.write_parquet if out.lower().endswith(".parquet") else df.write_csv)
        return summary
    if not is_challenge(out, challenge):
        df = pl.DataFrame({"user_id": users[order], "item_id": items[order], "timestamp": times[order]})
        atomic_write(out, df.write_parquet if out.lower().endswith(".parquet") else df.write_csv)
        return summary
    work = temp_folder(out)
    try:
        df = pl.DataFrame({"user_id": users[order], "item_id": items[order],
                           "rating": rng.integers(1, 6, size=num_rows)[order], "timestamp": times[order]})
        atomic_write(os.path.join(work, "train.csv"), df.write_csv)
        del df
        test = np.sort(rng.choice(n_users, size=max(1, int(round(n_users * test_fraction))), replace=False))
        test = np.concatenate([test, n_users + np.arange(cold_users)])
        atomic_write(os.path.join(work, "test.csv"),
                     pl.DataFrame({"user_id": test, "predictions": ["0"] * len(test)}).write_csv)
        atomic_write(os.path.join(work, "id_mappings.json"),
                     lambda tmp: _write_mappings(tmp, n_users + cold_users, n_items))
        publish_folder(work, out)
    finally:
        discard_folder(work)  # a failed write leaves nothing; after publishing, nothing is left to remove
    summary["test_users"] = int(len(test))
    return summary


def _write_mappings(path: str, n_users: int, n_items: int, chunk: int = 1 << 16) -> None:
    """id_mappings.json, {"user_mapping": {"U0000000": 0, ...}, "item_mapping": {"B0000000": 0, ...}},
    byte for byte what json.dumps writes, streamed a chunk at a time: no dict of every id in memory."""
    with open(path, "w", encoding="utf-8") as f:
        for i, (key, prefix, n) in enumerate((("user_mapping", "U", n_users), ("item_mapping", "B", n_items))):
            f.write(("{" if i == 0 else ", ") + json.dumps(key) + ": {")
            for lo in range(0, n, chunk):
                f.write((", " if lo else "") + ", ".join(f'"{prefix}{j:07d}": {j}' for j in range(lo, min(n, lo + chunk))))
            f.write("}")
        f.write("}\n")
