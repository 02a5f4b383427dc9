"""Synthetic purchase logs with structure a sequence model can learn, shaped like the challenge data:
a Zipf popularity skew, mostly two-item histories, and signals popularity alone cannot use: every item
has a few follow-up items (a phone, then its case) that most next purchases are; some purchases repeat
an earlier item of the user; the rest are popularity draws. Seeded; written as an interactions CSV or
a challenge folder (train.csv with item ids from 0, test.csv, id_mappings.json), or (`generate_shop`)
as a shop's event log with views, carts, launches and late customers.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..runs.files import atomic_write, discard_folder, publish_folder, temp_folder, write_json
from .sequences import Sequences, offsets_of


def generate(num_users: int = 4000, num_items: int = 1000, seed: int = 0,
             p_transition: float = 0.7, p_repeat: float = 0.1, p_two: float = 0.6,
             max_len: int = 20):
    """-> (users, items, timestamps) int64, items 0..num_items-1, each user's rows in time order."""
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
    """(num_users,) history lengths summing to exactly num_rows: a share p_two of two (less when
    the rest could not have three), the rest 3 + a geometric tail. Needs 2 <= rows / users <= max_len."""
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
        grow = diff > 0  # growing: long histories below max_len first; shrinking: those above 3 first
        room = np.nonzero(is_long & (lengths < max_len) if grow else lengths > 3)[0]
        if not len(room):
            room = np.nonzero(lengths < max_len if grow else lengths > 2)[0]
        pick = rng.choice(room, size=min(abs(diff), len(room)), replace=False)
        lengths[pick] += 1 if grow else -1
        diff = num_rows - int(lengths.sum())
    return lengths


def generate_fast(num_rows: int = 2_430_000, num_items: int | None = None, num_users: int | None = None,
                  seed: int = 0, p_two: float = 0.7, p_transition: float = 0.7, p_repeat: float = 0.1,
                  zipf: float = 1.1, max_len: int = 200):
    """The challenge-shaped log at any size, vectorised: a loop over positions draws everyone's
    next item at once. `generate`'s signals (popularity exponent `zipf`), lengths from
    `challenge_lengths`; num_items / num_users default to the challenge's rows per item / user.
    -> (users, items, timestamps) int64, rows grouped by user (0..num_users-1), in time order
    within a user. Same seed, same data."""
    num_users = num_users or max(1, round(num_rows / CHALLENGE_ROWS_PER_USER))
    num_items = num_items or max(4, round(num_rows / CHALLENGE_ROWS_PER_ITEM))
    if num_rows < 2 * num_users or num_rows > max_len * num_users:
        raise ValueError(f"{num_rows} rows for {num_users} users: every user needs 2..{max_len} rows")
    rng = np.random.default_rng([seed, 7])
    lengths = challenge_lengths(num_rows, num_users, rng, p_two, max_len)
    offsets = offsets_of(lengths)

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
    """A purchase log (generate_fast's arrays) as a shop's event log: before every purchase,
    Poisson(views_per_purchase) views of its category (the bought item itself with p_view_bought),
    then (p_cart, with 3 types) its cart, a minute apart; plus view_only_share extra customers who
    only browse one category (cold once views are dropped). Views point at what is bought next.
    types: 2 or 3 names in funnel order (view[, cart], purchase). -> (users, items, times, index
    into types) int64, in time order per user; near 70% views, 10% carts, 20% purchases."""
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


# Peak bytes of generate_fast + write_fast a row, catalogue item and user, with a margin over the
# measured 66 B (4M rows), 77 B (3M items, 100 rows), ~25 B (600k users); `nanorec synth` checks it.
BYTES_PER_ROW, BYTES_PER_ITEM, BYTES_PER_USER = 100, 100, 50


def memory_needed(num_rows: int, num_items: int, num_users: int) -> int:
    """About how many bytes generating and writing this log takes at its peak."""
    return BYTES_PER_ROW * num_rows + BYTES_PER_ITEM * num_items + BYTES_PER_USER * num_users


CHALLENGE_FILES = ("train.csv", "test.csv", "id_mappings.json")


def write_fast(out: str, num_rows: int, num_items: int | None = None, num_users: int | None = None,
               seed: int = 0, challenge: bool | None = None, test_fraction: float = CHALLENGE_TEST_FRACTION,
               cold_users: int = 0, event_types: tuple | None = None, shop: bool = False, **kwargs) -> dict:
    """`generate_fast` written out (shop=True: `write_shop`'s files instead):
    - a challenge folder (out without a .csv/.parquet suffix, or challenge=True): train.csv
      (user_id,item_id,rating,timestamp; time order, ids from 0), test.csv (a seeded share
      test_fraction of the users plus cold_users without history), id_mappings.json; built in a
      hidden sibling and renamed into place complete (an existing folder replaced only then);
    - an event log (.parquet or .csv, written atomically): user_id,item_id,timestamp; with
      event_types also event_type and weight (`add_event_types`; TYPE_WEIGHTS by funnel stage).
    -> a summary dict (rows, users, items, test users, share of two-item users)."""
    import polars as pl

    if shop:
        return write_shop(out, num_rows, num_items, num_users, seed, tuple(event_types or EVENT_TYPES), **kwargs)
    users, items, times = generate_fast(num_rows, num_items, num_users, seed, **kwargs)
    n_users = int(users[-1]) + 1
    n_items = num_items or max(4, round(num_rows / CHALLENGE_ROWS_PER_ITEM))
    lengths = np.bincount(users, minlength=n_users)
    summary = {"rows": int(num_rows), "users": n_users, "items": int(n_items),
               "items_bought": int(len(np.unique(items))), "two_item_share": round(float(np.mean(lengths == 2)), 4)}
    rng = np.random.default_rng([seed, 8])
    if event_types:
        users, items, times, kind = add_event_types(users, items, times, tuple(event_types), seed)
        summary.update(rows=len(users), users=int(users.max()) + 1,
                       shares={n: round(float(np.mean(kind == i)), 3) for i, n in enumerate(event_types)})
    order = np.argsort(times, kind="stable")  # a log is in time order; readers sort per user themselves
    is_file = out.lower().endswith((".csv", ".parquet")) if challenge is None else not challenge
    if event_types or is_file:
        cols = {"user_id": users[order], "item_id": items[order], "timestamp": times[order]}
        if event_types:
            stage = ("view", "cart", "purchase") if len(event_types) == 3 else ("view", "purchase")
            cols.update(event_type=np.array(event_types)[kind[order]],
                        weight=np.array([TYPE_WEIGHTS[s] for s in stage])[kind[order]])
        df = pl.DataFrame(cols)
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
    """id_mappings.json ({"user_mapping": {"U0000000": 0, ...}, "item_mapping": ...}) byte for byte as
    json.dumps writes it, streamed: no dict of every id in memory."""
    with open(path, "w", encoding="utf-8") as f:
        for i, (key, prefix, n) in enumerate((("user_mapping", "U", n_users), ("item_mapping", "B", n_items))):
            f.write(("{" if i == 0 else ", ") + json.dumps(key) + ": {")
            for lo in range(0, n, chunk):
                f.write((", " if lo else "") + ", ".join(f'"{prefix}{j:07d}": {j}' for j in range(lo, min(n, lo + chunk))))
            f.write("}")
        f.write("}\n")


# -----------------------------------------------------------------------------
# a shop: tastes, sessions, follow-up purchases, launches, late customers

SHOP_START = "2024-01-01T00:00:00"  # a Monday: week w (1-based) is days 7(w-1) .. 7w
SHOP_WEEKS = 10
SHOP_NEW_WEEKS = 3          # new items launch in the last weeks (weeks 8-10 of 10)
SHOP_ITEMS_PER_CATEGORY = 100
FOLLOW_WEIGHTS = (0.6, 0.3, 0.1)  # an old item's three follow-ups; a new item launched as its follow-up weighs 1
DAY_S = 86_400


@dataclass(frozen=True)
class ShopShape:
    """The simulated shop's shape (`shop_shape` reads one: a benchmark also runs on another shape)."""
    new_share: float = 0.08      # share of the catalogue launched in the last SHOP_NEW_WEEKS weeks
    late_share: float = 0.25     # customers who arrive after week 1 (uniformly over weeks 2-10)
    p_follow: float = 0.5        # a session's anchor is a follow-up of the customer's last purchase (if any)
    p_buy: float = 0.5           # a session ends with buying its anchor
    p_view_anchor: float = 0.85  # the anchor is among the session's views (a purchase follows its views)
    extra_views: float = 2.2     # views of a session: 1 + Poisson(this), the anchor's category
    p_cart: tuple = (0.5, 0.9)   # the anchor is carted: in a session without / with its purchase
    p_extra_cart: float = 0.2    # another viewed item is carted (and not bought)
    rows_per_user: float = 15    # default sizes: events / this customers (300k events -> 20k customers)
    rows_per_item: float = 60    # events / this items (300k events -> 5k items)

    @property
    def events_per_session(self) -> float:
        """The expected events of a session: views, the extra cart (a session of 2+ views), the
        anchor's cart, the purchase; to 2 decimals (4.58 with the defaults, the figure it replaced: the same shop)."""
        return round(1 + self.extra_views + self.p_extra_cart * (1 - math.exp(-self.extra_views))
                     + self.p_buy * self.p_cart[1] + (1 - self.p_buy) * self.p_cart[0] + self.p_buy, 2)


def shop_shape(text: str = "") -> ShopShape:
    """"key=value,..." (ShopShape's fields; p_cart as two values a/b) -> a ShopShape; "" the default.
    A key it does not have, or a value out of range, is one UsageError line."""
    fields = [f.name for f in dataclasses.fields(ShopShape)]
    given = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        key, eq, value = (x.strip() for x in part.partition("="))
        if not eq or key not in fields:
            raise UsageError(f"shop shape {part!r}: expected key=value with a key of {', '.join(fields)}")
        try:
            values = tuple(float(x) for x in value.split("/"))
        except ValueError:
            raise UsageError(f"shop shape {part!r}: {value!r} is not a number") from None
        rates = key.startswith("p_") or key.endswith("_share")
        if len(values) != (2 if key == "p_cart" else 1) or not all(
                math.isfinite(x) and (0 <= x <= 1 if rates else x > 0) for x in values):
            raise UsageError(f"shop shape {part!r}: expected " + ("two shares a/b in 0..1" if key == "p_cart" else
                             "a share in 0..1" if rates else "a number > 0"))
        given[key] = values if key == "p_cart" else values[0]
    return ShopShape(**given)


def _zipf_weights(n: int, rng, exponent: float = 1.0) -> np.ndarray:
    """(n,) popularity weights 1/rank^exponent, the ranks in random order."""
    return (1.0 / np.arange(1, n + 1) ** exponent)[rng.permutation(n)]


def _shop_catalogue(num_items: int, rng, shape: ShopShape = ShopShape()) -> dict:
    """Items 0..N-1 in categories of ~100, Zipf popularity, launch (seconds from the start; < 0 before
    it; the last shape.new_share launched in the last weeks, each as the slot-3 follow-up, weight 1, of
    a popular old item), follow-ups (N, 4) with weights, price, the id number each item is written as."""
    num_categories = max(2, num_items // SHOP_ITEMS_PER_CATEGORY)
    n_new = int(round(shape.new_share * num_items))
    old = num_items - n_new
    pop = _zipf_weights(num_items, rng)
    category = np.empty(num_items, dtype=np.int64)
    category[:old] = rng.permutation(old) % num_categories  # every category holds old items
    launch = np.empty(num_items, dtype=np.int64)
    launch[:old] = -rng.integers(DAY_S, 365 * DAY_S, size=old)
    launch[old:] = rng.integers((SHOP_WEEKS - SHOP_NEW_WEEKS) * 7 * DAY_S, SHOP_WEEKS * 7 * DAY_S, size=n_new)
    # a new item follows a popular old one (its next model, its accessory), in its category half the time
    parent = rng.choice(old, size=n_new, replace=False, p=pop[:old] / pop[:old].sum())
    category[old:] = np.where(rng.random(n_new) < 0.5, category[parent], rng.integers(0, num_categories, n_new))
    # follow-ups (old items, never the item itself): the first from its own category, two from anywhere
    follow = np.zeros((num_items, 4), dtype=np.int64)
    weight = np.zeros((num_items, 4))
    for c in range(num_categories):
        members, own = np.nonzero(category[:old] == c)[0], np.nonzero(category == c)[0]
        follow[own, 0] = members[rng.integers(0, len(members), size=len(own))]
    follow[:, 1:3] = rng.integers(0, old, size=(num_items, 2))
    itself = follow[:, :3] == np.arange(num_items)[:, None]
    follow[:, :3] = np.where(itself, (follow[:, :3] + 1) % old, follow[:, :3])
    weight[:, :3] = FOLLOW_WEIGHTS
    follow[:, 3] = follow[:, 0]  # an unused slot (weight 0) names a real item
    follow[parent, 3], weight[parent, 3] = np.arange(old, num_items), 1.0
    base = np.exp(rng.normal(3.0, 1.0, size=num_categories))  # a category's typical price
    price = np.maximum(np.round(base[category] * np.exp(rng.normal(0.0, 0.3, size=num_items)), 2), 0.99)
    return {"category": category, "pop": pop, "launch": launch, "follow": follow, "follow_w": weight,
            "price": price, "new": np.arange(num_items) >= old, "num_categories": num_categories,
            "id_number": rng.permutation(num_items)}  # item i is written as id_number[i]: new items not last


def _category_table(cat: dict):
    """CSR over categories of items by descending popularity: (offsets (C+1,), items (N,), their
    cumulative popularity (N,)), and each category's most popular old item (C,)."""
    order = np.lexsort((-cat["pop"], cat["category"]))
    offsets = offsets_of(np.bincount(cat["category"], minlength=cat["num_categories"]))
    old_first = np.lexsort((-cat["pop"], cat["new"], cat["category"]))  # per category, old items first
    return offsets, order, np.cumsum(cat["pop"][order]), old_first[offsets[:-1]]


def _draw_in_category(cats, t, table, launch, rng, tries: int = 64) -> np.ndarray:
    """(n,) items of categories cats (n,), by popularity among those launched by time t (n,):
    rejection sampling, exact with enough tries (new items are a few percent of a category);
    a draw still rejected after `tries` takes the category's most popular old item."""
    offsets, items, cum, fallback = table
    out = fallback[cats].copy()
    todo = np.arange(len(cats))
    for _ in range(tries):
        if not len(todo):
            break
        lo, hi = offsets[cats[todo]], offsets[cats[todo] + 1]
        before = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
        r = before + rng.random(len(todo)) * (cum[hi - 1] - before)
        got = items[np.clip(np.searchsorted(cum, r, side="right"), lo, hi - 1)]
        ok = launch[got] <= t[todo]
        out[todo[ok]] = got[ok]
        todo = todo[~ok]
    return out


def _follow_probs(cat: dict, last, t) -> np.ndarray:
    """(n, 4) probabilities of the follow-up slots of items `last` (n,) at times t (n,): the
    slots' weights, those not launched by t set to 0, normalised (the 3 old ones always are)."""
    w = cat["follow_w"][last] * (cat["launch"][cat["follow"][last]] <= np.asarray(t)[:, None])
    return w / w.sum(1, keepdims=True)


def _tastes(num_users: int, num_categories: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """-> (U, 4) categories, (U, 4) weights: 1-4 categories a customer (popular ones more often), Dirichlet(1)."""
    k = 1 + rng.binomial(3, 0.3, size=num_users)
    cat_pop = _zipf_weights(num_categories, rng, 0.7)
    cats = rng.choice(num_categories, size=(num_users, 4), p=cat_pop / cat_pop.sum())
    w = rng.gamma(1.0, size=(num_users, 4)) * (np.arange(4)[None, :] < k[:, None])
    return cats, w / w.sum(1, keepdims=True)


def generate_shop(num_rows: int = 300_000, num_items: int | None = None, num_users: int | None = None,
                  seed: int = 0, shape: ShopShape = ShopShape()) -> dict:
    """A shop's 10 weeks, about num_rows events, vectorised over each customer's k-th session: a
    catalogue (`_shop_catalogue`), customers with tastes (`_tastes`), a lognormal activity and an
    arrival; a session's anchor is, with shape.p_follow, a follow-up of the customer's last purchase
    (`_follow_probs`), else a taste's item by popularity among those launched by then; its events:
    `_session_events`. -> dict: events (user, item, time in seconds from SHOP_START, kind 0 view /
    1 cart / 2 purchase; in time order per user), the catalogue, the tastes, each customer's arrival,
    the shape. Same seed and shape, same shop."""
    rng = np.random.default_rng([seed, 11])
    num_items = num_items or max(20, round(num_rows / shape.rows_per_item))
    num_users = num_users or max(1, round(num_rows / shape.rows_per_user))
    cat = _shop_catalogue(num_items, rng, shape)
    table = _category_table(cat)
    taste_cat, taste_w = _tastes(num_users, cat["num_categories"], rng)
    end = SHOP_WEEKS * 7 * DAY_S - 3600
    arrival = np.where(rng.random(num_users) < shape.late_share, rng.integers(7 * DAY_S, end, size=num_users), 0)
    activity = rng.lognormal(0.0, 1.0, size=num_users) * (end - arrival) / end
    n_sessions = max(1, round(num_rows / shape.events_per_session))
    per_user = rng.multinomial(n_sessions, activity / activity.sum())
    s_user = np.repeat(np.arange(num_users), per_user)
    s_time = arrival[s_user] + (rng.random(n_sessions) * (end - arrival[s_user])).astype(np.int64)
    order = np.lexsort((s_time, s_user))
    s_user, s_time = s_user[order], s_time[order]
    rank = np.arange(n_sessions) - np.repeat(np.cumsum(per_user) - per_user, per_user)  # k-th session of its user
    s_buy = rng.random(n_sessions) < shape.p_buy
    anchor = np.empty(n_sessions, dtype=np.int64)
    last = np.full(num_users, -1, dtype=np.int64)  # each customer's last purchase so far
    by_rank = np.argsort(rank, kind="stable")
    starts = np.searchsorted(rank[by_rank], np.arange(int(rank.max()) + 2))
    for k in range(int(rank.max()) + 1):
        idx = by_rank[starts[k]:starts[k + 1]]  # every customer's k-th session, at once
        u, t, prev = s_user[idx], s_time[idx], last[s_user[idx]]
        follows = (prev >= 0) & (rng.random(len(idx)) < shape.p_follow)
        slot = (np.cumsum(_follow_probs(cat, prev[follows], t[follows]), 1)
                <= rng.random(int(follows.sum()))[:, None]).sum(1)
        anchor[idx[follows]] = cat["follow"][prev[follows], np.minimum(slot, 3)]
        taste = ~follows
        tslot = np.minimum((np.cumsum(taste_w[u[taste]], 1) <= rng.random(int(taste.sum()))[:, None]).sum(1), 3)
        anchor[idx[taste]] = _draw_in_category(taste_cat[u[taste], tslot], t[taste], table, cat["launch"], rng)
        bought = s_buy[idx]
        last[u[bought]] = anchor[idx[bought]]
    events = _session_events(s_user, s_time, anchor, s_buy, cat, table, rng, shape)
    return {**events, "catalogue": cat, "taste_cat": taste_cat, "taste_w": taste_w, "num_users": num_users,
            "arrival": arrival, "shape": shape}


def _session_events(s_user, s_time, anchor, s_buy, cat, table, rng, shape: ShopShape = ShopShape()) -> dict:
    """The events of every session: views (items of the anchor's category, the anchor at a random
    place), then an extra cart, the anchor's cart, the purchase; 20 s to 4 min apart."""
    n = len(s_user)
    n_views = 1 + rng.poisson(shape.extra_views, size=n)
    views = _draw_in_category(np.repeat(cat["category"][anchor], n_views), np.repeat(s_time, n_views), table,
                              cat["launch"], rng)
    v_start = np.cumsum(n_views) - n_views
    anchor_at = v_start + (rng.random(n) * n_views).astype(np.int64)
    shown = rng.random(n) < shape.p_view_anchor
    views[anchor_at[shown]] = anchor[shown]
    extra = (n_views >= 2) & (rng.random(n) < shape.p_extra_cart)  # the view after the anchor's place
    extra_item = views[v_start + (anchor_at - v_start + 1) % n_views]
    cart = rng.random(n) < np.where(s_buy, shape.p_cart[1], shape.p_cart[0])
    per = n_views + extra + cart + s_buy
    first = np.cumsum(per) - per
    within = np.arange(int(per.sum())) - np.repeat(first, per)
    item = np.empty(int(per.sum()), dtype=np.int64)
    kind = np.zeros(len(item), dtype=np.int64)
    is_view = within < np.repeat(n_views, per)
    item[is_view] = views
    at = first + n_views  # the slots after the views: extra cart, anchor cart, purchase, as present
    item[at[extra]], kind[at[extra]] = extra_item[extra], 1
    at = at + extra
    item[at[cart]], kind[at[cart]] = anchor[cart], 1
    at = at + cart
    item[at[s_buy]], kind[at[s_buy]] = anchor[s_buy], 2
    gaps = rng.integers(20, 240, size=len(item))
    offset = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], per)  # 0 at each session's first event
    return {"user": np.repeat(s_user, per), "item": item, "time": np.repeat(s_time, per) + offset, "kind": kind}


def shop_ceiling(sim: dict, week: int = SHOP_WEEKS, k: int = 10, chunk: int = 1024) -> dict:
    """The generator's own limit on week `week`'s purchases: each customer's true next-purchase
    probabilities at the week's start (the shape's p_follow x the follow-ups of their last purchase, the
    rest their tastes x popularity within a category among launched items; both averaged over
    the week's days, as items launch during it), their top-k as the list, the customer's earlier
    purchases excluded. Judged as the lifecycle benchmark judges a run: every distinct item the
    customer buys that week and had not bought before (multi-target, evaluate.set_metrics),
    known customers only, two ways: "any_event" (an event before the week: views as context) and
    "earlier_purchase" (a purchase before it: purchases only); new-item recall@10: the share of
    targets launched in the last SHOP_NEW_WEEKS weeks that the lists hold. -> {way: {users, NDCG@10, ...}}."""
    from ..evaluation.metrics import set_metrics  # late: torch; `nanorec synth` stays light
    cat, p_follow = sim["catalogue"], sim.get("shape", ShopShape()).p_follow
    T = (week - 1) * 7 * DAY_S
    user, item, time, kind = sim["user"], sim["item"], sim["time"], sim["kind"]
    buy, before = kind == 2, time < T
    days = T + (np.arange(7) + 0.5) * DAY_S  # (7,) the week's day midpoints
    # q[i] = pop_i / (launched popularity of i's category), averaged over the days: P(i | its category)
    q = np.zeros(len(cat["pop"]))
    for t in days:
        w = cat["pop"] * (cat["launch"] <= t)
        q += w / np.bincount(cat["category"], w, minlength=cat["num_categories"])[cat["category"]] / len(days)
    fol = sum(_follow_probs(cat, np.arange(len(q)), np.full(len(q), t)) for t in days) / len(days)  # (N, 4)
    # each customer's last purchase before the week (-1: none) and earlier purchases
    pb = np.nonzero(buy & before)[0]
    last = np.full(sim["num_users"], -1, dtype=np.int64)
    by_user = pb[np.lexsort((time[pb], user[pb]))]  # (P,) by customer, then time
    final = np.append(user[by_user][1:] != user[by_user][:-1], True) if len(by_user) else np.zeros(0, bool)
    last[user[by_user[final]]] = item[by_user[final]]  # each customer's latest purchase
    n_items = len(q)
    earlier = np.unique(user[pb] * n_items + item[pb])
    wk = np.nonzero(buy & ~before)[0]
    key = np.unique(user[wk] * n_items + item[wk])
    key = key[~np.isin(key, earlier)]  # (pairs,) the week's new purchases, user-major
    known = {"any_event": np.unique(user[before]), "earlier_purchase": np.unique(user[pb])}
    out = {}
    for way, users_known in known.items():
        pairs = key[np.isin(key // n_items, users_known)]
        users, counts = np.unique(pairs // n_items, return_counts=True)
        targets = Sequences(offsets_of(counts), pairs % n_items)
        lists = np.zeros((len(users), k), dtype=np.int64)
        for lo in range(0, len(users), chunk):
            u = users[lo:lo + chunk]
            theta = np.zeros((len(u), cat["num_categories"]))
            np.add.at(theta, (np.repeat(np.arange(len(u)), 4), sim["taste_cat"][u].ravel()), sim["taste_w"][u].ravel())
            has = last[u] >= 0
            p = (1 - p_follow * has)[:, None] * theta[:, cat["category"]] * q[None, :]  # (B, N)
            rows = np.nonzero(has)[0]
            np.add.at(p, (np.repeat(rows, 4), cat["follow"][last[u[rows]]].ravel()),
                      p_follow * fol[last[u[rows]]].ravel())
            e = earlier[np.isin(earlier // n_items, u)]
            p[np.searchsorted(u, e // n_items), e % n_items] = -1.0  # seen: never listed
            top = np.argpartition(-p, k, axis=1)[:, :k]
            lists[lo:lo + chunk] = np.take_along_axis(top, np.argsort(-np.take_along_axis(p, top, 1), 1,
                                                                      kind="stable"), 1)
        m = set_metrics(lists, targets, ks=(k,)) if len(users) else {}
        row = np.repeat(np.arange(len(users)), counts)
        hit = np.isin(row * n_items + targets.items, np.arange(len(users))[:, None] * n_items + lists)  # (pairs,)
        new = cat["new"][targets.items]
        out[way] = {"users": int(len(users)), "targets": int(len(pairs)), **{n: round(v, 5) for n, v in m.items()},
                    "new_item_targets": int(new.sum()),
                    "new_item_recall@10": round(float(hit[new].mean()), 5) if new.any() else None}
    return out


def shop_sidecars(out: str) -> tuple[str, str]:
    """The files `write_shop` writes beside the log OUT.csv: OUT.catalog.csv and OUT.ceiling.json."""
    stem = out[:out.lower().rindex(".")] if "." in os.path.basename(out) else out
    return stem + ".catalog.csv", stem + ".ceiling.json"


def _iso(seconds: np.ndarray) -> np.ndarray:
    """Seconds from SHOP_START as ISO date-times (2024-03-04T09:15:00)."""
    return (np.datetime64(SHOP_START) + np.asarray(seconds).astype("timedelta64[s]")).astype(str)


def write_shop(out: str, num_rows: int, num_items: int | None = None, num_users: int | None = None, seed: int = 0,
               event_types: tuple = EVENT_TYPES, shape: ShopShape = ShopShape()) -> dict:
    """`generate_shop` written out, each file atomically: the event log `out` (.csv or .parquet:
    user_id, item_id as zero-padded text (000123), ISO timestamp, event_type by event_types (view[,
    cart], purchase: two names leave carts out), weight TYPE_WEIGHTS), and beside it (`shop_sidecars`)
    the catalogue (item_id, title, category, price, launch_time) and the ceiling (`shop_ceiling` on
    the last week, split_time its start). -> a summary dict."""
    import polars as pl

    sim = generate_shop(num_rows, num_items, num_users, seed, shape)
    cat = sim["catalogue"]
    keep = sim["kind"] != 1 if len(event_types) == 2 else np.ones(len(sim["kind"]), dtype=bool)
    stage = np.array([0, 1, 2])[sim["kind"][keep]]  # view, cart, purchase
    names = np.array(event_types if len(event_types) == 3 else (event_types[0], "", event_types[1]))
    weights = np.array([TYPE_WEIGHTS[s] for s in EVENT_TYPES])
    width = max(6, len(str(len(cat["pop"]) - 1)))
    ids = np.char.zfill(cat["id_number"].astype(str), width)  # (N,) item i's id: leading zeros
    order = np.lexsort((sim["user"][keep], sim["time"][keep]))  # a log in time order (a session's own order kept)
    times = sim["time"][keep][order]
    # Parquet: a datetime column (polars takes ms, us or ns, not numpy's seconds); CSV: ISO text
    stamp = (np.datetime64(SHOP_START) + times.astype("timedelta64[s]")).astype("datetime64[ms]") \
        if out.lower().endswith(".parquet") else _iso(times)
    df = pl.DataFrame({"user_id": sim["user"][keep][order], "item_id": ids[sim["item"][keep][order]],
                       "timestamp": stamp, "event_type": names[stage[order]], "weight": weights[stage[order]]})
    catalog_path, ceiling_path = shop_sidecars(out)
    catalogue = pl.DataFrame({"item_id": ids, "title": [f"item {i} (c{c:03d})" for i, c in zip(ids, cat["category"])],
                              "category": np.char.add("c", np.char.zfill(cat["category"].astype(str), 3)),
                              "price": cat["price"], "launch_time": _iso(cat["launch"])}).sort("item_id")
    T = (SHOP_WEEKS - 1) * 7 * DAY_S
    ceiling = {"split_time": str(_iso(np.array([T]))[0]), "week": SHOP_WEEKS,
               "protocol": shop_ceiling.__doc__.split("\n\n")[0].replace("\n    ", " "), **shop_ceiling(sim)}
    atomic_write(out, df.write_parquet if out.lower().endswith(".parquet") else df.write_csv)
    atomic_write(catalog_path, catalogue.write_csv)
    write_json(ceiling_path, ceiling)
    n_new = int(cat["new"].sum())
    return {"rows": df.height, "users": int(df["user_id"].n_unique()), "items": len(ids),
            "shape": {k: v for k, v in dataclasses.asdict(shape).items() if v != getattr(ShopShape(), k)},
            "items_bought": int(len(np.unique(sim["item"][sim["kind"] == 2]))), "new_items": n_new,
            "shares": {n: round(float(np.mean(sim["kind"][keep] == s)), 3) for n, s in
                       zip(event_types, (0, 1, 2) if len(event_types) == 3 else (0, 2))},
            "catalog": catalog_path, "ceiling": ceiling_path, "ceiling_ndcg": ceiling["any_event"].get("NDCG@10")}
