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
