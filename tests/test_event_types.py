"""Event types as context (target_filter) and per-event weights in the count tables.

target_filter=event_type=purchase keeps every event in the histories the model reads, while
the loss targets, the validation and test targets and the count tables' pairs are purchases
only (Dataset.weights 0 on the other events). Unweighted runs are byte-identical to the code
before weights reached the tables (digests taken at commit 0991cd0)."""
import hashlib

import numpy as np
import polars as pl
import pytest

from nanorec.methods.cooccurrence import CoOccurrence
from nanorec.methods.transitions import Transitions
from nanorec.data import Dataset, Sequences, item_counts, load, split, time_split
from nanorec.data.sequences import last_targets
from nanorec.core.packing import IGNORE, pack

# -----------------------------------------------------------------------------
# a hand-made shop log: items 10..15 are internal indices 1..6

V, P = "view", "purchase"
LOG = [  # (user, item, time, event_type)
    ("u1", 10, 1, V), ("u1", 11, 2, V), ("u1", 11, 3, P), ("u1", 12, 4, V), ("u1", 12, 5, P),
    ("u1", 13, 6, V), ("u1", 13, 7, P), ("u1", 14, 8, V),
    ("u2", 10, 1, V), ("u2", 10, 2, P), ("u2", 11, 3, V), ("u2", 12, 4, P), ("u2", 13, 5, V), ("u2", 13, 6, P),
    ("u3", 10, 1, V), ("u3", 11, 2, V), ("u3", 12, 3, V),  # views only: cold when views are dropped
]


def shop_frame(log=LOG):
    u, i, t, e = zip(*log)
    return pl.DataFrame({"user_id": list(u), "item_id": list(i), "timestamp": list(t), "event_type": list(e)})


def idx(*items):
    return [it - 9 for it in items]  # original id -> internal index (ids 10..15 sorted)


def test_target_filter_keeps_every_event_and_marks_the_targets():
    ds = load(shop_frame(), target_filter="event_type=purchase")
    assert ds.user_ids.tolist() == ["u1", "u2", "u3"]
    assert ds.sequences[0].tolist() == idx(10, 11, 11, 12, 12, 13, 13, 14)  # views included
    assert ds.weights.tolist() == [0, 0, 1, 0, 1, 0, 1, 0] + [0, 1, 0, 1, 0, 1] + [0, 0, 0]
    assert ds.weights is ds.sequences.weights
    assert "event_type" not in ds.ignored_columns
    # the filter's syntax and column checks, with the key named
    with pytest.raises(Exception, match="target_filter='purchase': expected column=value"):
        load(shop_frame(), target_filter="purchase")


def test_with_weight_col_too_every_event_is_learned_from_and_purchases_are_still_the_holdout():
    w = {V: 0.25, P: 2.0}
    frame = shop_frame().with_columns(pl.col("event_type").replace_strict(w, return_dtype=pl.Float64).alias("w"))
    ds = load(frame, target_filter="event_type=purchase", weight_col="w")
    assert ds.weights[:8].tolist() == [0.25, 0.25, 2, 0.25, 2, 0.25, 2, 0.25]  # views are low-weight targets
    sp = split(ds)
    assert sp.test.targets.tolist() == idx(13, 13) and sp.valid.targets.tolist() == idx(12, 12)
    assert sp.train[0].tolist() == idx(10, 11, 11, 12) and sp.train.weights[:4].tolist() == [0.25, 0.25, 2, 0.25]
    p = pack(sp.train, 8, weights=sp.train.weights)
    assert (p.targets != IGNORE).sum() == 3 + 2 + 2  # every next event of the three rows is a target


def test_loo_targets_are_the_last_purchases_and_histories_keep_the_views():
    sp = split(load(shop_frame(), target_filter="event_type=purchase"))
    # u1: purchases at positions 2, 4, 6; test = the last (13), valid = the one before (12)
    assert sp.test.users.tolist() == [0, 1] and sp.test.targets.tolist() == idx(13, 13)
    # history: every event through the purchase before it (the target's own view of 13 left out)
    assert sp.test.histories[0].tolist() == idx(10, 11, 11, 12, 12)
    assert sp.test.histories[1].tolist() == idx(10, 10, 11, 12)
    assert sp.valid.users.tolist() == [0, 1] and sp.valid.targets.tolist() == idx(12, 12)
    assert sp.valid.histories[0].tolist() == idx(10, 11, 11)
    assert sp.valid.histories[1].tolist() == idx(10, 10)
    # training: the events before the validation purchase; the view-only user keeps its views (no target)
    assert sp.train.to_lists() == [idx(10, 11, 11, 12), idx(10, 10, 11), idx(10, 11, 12)]
    assert sp.train.weights.tolist() == [0, 0, 1, 0] + [0, 1, 0] + [0, 0, 0]
    # all_data trains up to the test purchase; holdout=last validates on it
    assert split(load(shop_frame(), target_filter="event_type=purchase"), all_data=True).train[0].tolist() == \
        idx(10, 11, 11, 12, 12, 13)
    last = split(load(shop_frame(), target_filter="event_type=purchase"), holdout="last")
    assert last.test is None and last.valid.targets.tolist() == idx(13, 13)


def test_time_split_tests_and_validates_on_purchases_only():
    ds = load(shop_frame(), target_filter="event_type=purchase")
    # split time 6: 13 events before it, so validation starts at the time of the 11th of them
    # (floor(0.9 x 13), from 0) in time order: 5
    sp = time_split(ds, "6")
    # test: u1's window (13 view @6, 13 purchase @7, 14 view @8) -> {13}; u2's (13 purchase @6) -> {13}
    assert sp.test.users.tolist() == [0, 1] and len(sp.test.cold_users) == 0
    assert sp.test.targets.to_lists() == [idx(13), idx(13)]
    assert sp.test.histories[0].tolist() == idx(10, 11, 11, 12, 12)  # the views before 6 included
    # validation window [5, 6): u1 buys 12 @5; u2 only views 13 @5, so u2 has no validation target
    assert sp.valid.users.tolist() == [0] and sp.valid.targets.tolist() == idx(12)
    assert sp.valid.histories[0].tolist() == idx(10, 11, 11, 12)
    assert sp.train.to_lists() == [idx(10, 11, 11, 12), idx(10, 10, 11, 12), idx(10, 11, 12)]


def test_packing_ignores_context_targets_and_users_without_purchases():
    seqs = Sequences.from_lists([idx(10, 11, 11, 12), idx(10, 11, 12)])
    w = np.array([0, 0, 1, 0] + [0, 0, 0], np.float32)
    p = pack(seqs, 5, weights=w)
    assert p.tokens.tolist() == [[1, 2, 2, 0, 0]]  # the view-only user is left out
    assert p.targets.tolist() == [[IGNORE, 2, IGNORE, IGNORE, IGNORE]]  # only the purchase is a target
    assert p.weights.tolist() == [[0, 1, 0, 0, 0]]  # loss weight zero on every non-target slot
    soft = pack(seqs, 5, weights=w, horizon=3)
    assert soft.future.tolist() == [[[2, IGNORE], [IGNORE, IGNORE], [IGNORE, IGNORE]] + [[IGNORE, IGNORE]] * 2]


def test_item_counts_count_target_events_only():
    seqs = Sequences(np.array([0, 4]), np.array(idx(10, 11, 11, 12)), np.array([0, 0, 2, 0], np.float32))
    assert item_counts(seqs, 6).tolist() == [0, 0, 1, 0, 0, 0, 0]


# -----------------------------------------------------------------------------
# the count tables

def weighted_train():
    # rows [1, 2, 3] and [1, 3]; weights 1, 2, 0 (context) and 1, 5
    return Sequences(np.array([0, 3, 5]), np.array([1, 2, 3, 1, 3]), np.array([1, 2, 0, 1, 5], np.float32))


def test_weighted_transitions_by_hand():
    t = Transitions(grid=()).fit(weighted_train(), 3)
    # pairs 1->2 (weight of the later event: 2), 2->3 (0: not counted), 1->3 (5)
    np.testing.assert_allclose(t.P.toarray(), [[0, 0, 0, 0], [0, 0, 2 / 7, 5 / 7], [0, 0, 0, 0], [0, 0, 0, 0]],
                               rtol=1e-6)
    # back-off: the target events' counts (item 3's context event is not counted)
    np.testing.assert_allclose(t.prior, 1e-4 * np.array([0, 2, 1, 1]) / 2, rtol=1e-6)


def test_weighted_cooccurrence_by_hand():
    c = CoOccurrence(grid=()).fit(weighted_train(), 3)
    # each direction counts the weight of the event it points to, between target events (a weight 0
    # event is context: it only points to the next purchase of its row, and row 1 has none after it):
    # 1->2: 2, 2->1: 1, 1->3: 5 (row 2), 3->1: 1
    np.testing.assert_allclose(c.P.toarray(), [[0, 0, 0, 0], [0, 0, 2 / 7, 5 / 7], [0, 1, 0, 0], [0, 1, 0, 0]],
                               rtol=1e-6)


def test_weights_all_one_give_the_unweighted_tables():
    plain = weighted_train()
    plain = Sequences(plain.offsets, plain.items)
    ones = Sequences(plain.offsets, plain.items, np.ones(5, np.float32))
    for cls in (Transitions, CoOccurrence):
        a, b = cls(grid=()).fit(plain, 3).state(), cls(grid=()).fit(ones, 3).state()
        assert all(np.array_equal(a[k], b[k]) for k in a)


def golden_sequences():
    rng = np.random.default_rng(7)
    return Sequences.from_lists([rng.integers(1, 40, size=int(n)).tolist() for n in rng.integers(1, 12, size=60)])


def digest(arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def test_unweighted_tables_splits_and_packing_are_byte_identical_to_before():
    """The digests were computed with the code before this change (commit 0991cd0)."""
    s = golden_sequences()
    for cls, want in ((Transitions, "e709526a6ce6e3c8"), (CoOccurrence, "d357b2aa44bf54df")):
        st = cls(grid=()).fit(s, 39).state()
        assert digest([st[k] for k in sorted(st)]) == want, cls.__name__
    ds = Dataset("g", "g", "table", np.arange(60), np.arange(40), s)
    sp = split(ds)
    assert digest([sp.train.offsets, sp.train.items, sp.valid.users, sp.valid.histories.offsets,
                   sp.valid.histories.items, sp.valid.targets, sp.test.users, sp.test.histories.items,
                   sp.test.targets]) == "9d60aec2250693d8"
    p = pack(s, 8, np.random.default_rng(0))
    assert digest([p.tokens, p.targets, p.seq_ids, p.pos_ids]) == "6028ceb9aa123028"
    rng = np.random.default_rng(3)
    times = np.concatenate([np.sort(rng.integers(0, 1000, size=n)) for n in s.lengths])
    sp = time_split(Dataset("g", "g", "table", np.arange(60), np.arange(40), s, times=times), "0.8")
    assert digest([sp.train.offsets, sp.train.items, sp.valid.users, sp.valid.histories.items, sp.valid.targets,
                   sp.test.users, sp.test.histories.items, sp.test.targets.offsets, sp.test.targets.items,
                   sp.test.cold_users, sp.test.cold_targets.items]) == "9e06fb8da9f39960"


# -----------------------------------------------------------------------------
# training: views as context make a view-only customer warm

TINY = dict(block_size=8, n_layer=1, n_head=1, n_embd=16, max_steps=4, eval_interval=2, warmup_steps=1,
            batch_size=8, progress=False, dropout=0.0, threads=1, fuse_transitions="true")


def shop_csv(path):
    """40 buyers who view a few items and buy one of them, and one customer who only viewed."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        for t in range(6):
            item = int(rng.integers(10, 30))
            rows.append((f"b{u}", item, 2 * t, V))
            if rng.random() < 0.5:
                rows.append((f"b{u}", item, 2 * t + 1, P))
    rows += [("viewer", 12, 1, V), ("viewer", 17, 2, V), ("viewer", 12, 3, V)]
    shop_frame(rows).write_csv(path)
    return path


def test_a_view_only_customer_is_warm_with_target_filter_and_cold_with_filter(tmp_path):
    from nanorec.api import Recommender
    from nanorec.config import Config
    from nanorec.runs.rundir import read_metrics
    from nanorec.core.train import run
    data = shop_csv(str(tmp_path / "shop.csv"))
    run(Config(data=data, target_filter="event_type=purchase", **TINY), str(tmp_path / "ctx"), quiet=True)
    ds = load(data, target_filter="event_type=purchase")
    sp = split(ds)
    metrics = read_metrics(str(tmp_path / "ctx"))
    assert metrics["test"]["users"] == len(sp.test.users)  # scored on the last purchases
    rec = Recommender.load(str(tmp_path / "ctx"))
    top = rec.recommend(users=["viewer"], k=5)
    assert set(top["source"].to_list()) == {"model"}  # the views are a history: no popularity fallback

    run(Config(data=data, filter="event_type=purchase", **TINY), str(tmp_path / "only"), quiet=True)
    rec = Recommender.load(str(tmp_path / "only"))
    top = rec.recommend(users=["b0", "viewer"], k=5)  # views dropped: the viewer is unknown
    assert set(top.filter(pl.col("user_id") == "viewer")["source"].to_list()) == {"popularity"}


def test_exclude_seen_removes_purchases_not_views():
    """Under target_filter a viewed item may well be bought next: exclude_seen removes the
    user's target events (purchases) only, in the masks, the factored top-k and the ranks."""
    import torch
    from nanorec.evaluation.metrics import factor_ranks
    from nanorec.scoring.scorer import Factored, from_factors, mask_seen, top_k
    ds = load(shop_frame(), target_filter="event_type=purchase")
    hist = ds.sequences.take(np.array([0, 2]))  # u1 (bought 11, 12, 13; viewed 10, 14 too), u3 (views only)
    assert [hist.seen_items()[r].tolist() for r in range(2)] == [idx(11, 12, 13), []]
    n = ds.num_items
    f = Factored(torch.zeros(2, 1), torch.arange(n + 1, dtype=torch.float32)[:, None] * 0, torch.arange(n + 1.0))
    scores = torch.zeros(2, n + 1)
    mask_seen(scores, hist, -1.0)
    assert (scores[0] == -1).nonzero().flatten().tolist() == idx(11, 12, 13)
    assert (scores[1] == -1).sum() == 0
    items, _ = top_k(from_factors(lambda h, u=None: f), hist, k=3)  # the bias ranks the last item first
    # u1: 14 (index 5) and 10 (1) viewed, kept; then the bought ones, ranked last (lowest index first)
    assert items.tolist() == [idx(14, 10, 11), idx(14, 13, 12)]
    ranks = factor_ranks(f, hist, np.array(idx(10, 12)))[0]  # u1's viewed 10: 2nd; u3's viewed 12: 3rd
    assert ranks.tolist() == [2, 3]


def test_histories_parquet_keeps_the_target_flags(tmp_path):
    from nanorec.runs import rundir
    ds = load(shop_frame(), target_filter="event_type=purchase")
    rundir.save_histories(str(tmp_path / rundir.HISTORIES), ds.user_ids, ds.sequences)
    users, seqs = rundir.read_histories(str(tmp_path), ds.num_items)
    assert users.tolist() == ["u1", "u2", "u3"] and (seqs.items == ds.sequences.items).all()
    assert seqs.seen_items().items.tolist() == ds.sequences.seen_items().items.tolist() == idx(11, 12, 13, 10, 12, 13)


def test_a_baseline_run_takes_target_filter_and_svd_refuses_it(tmp_path):
    from safetensors.numpy import load_file

    from nanorec.config import Config
    from nanorec.errors import UsageError
    from nanorec.core.train import run
    data = shop_csv(str(tmp_path / "shop.csv"))
    run(Config(data=data, target_filter="event_type=purchase", method="transitions", progress=False),
        str(tmp_path / "tr"), quiet=True)
    saved = load_file(str(tmp_path / "tr" / "baseline.safetensors"))
    train = split(load(data, target_filter="event_type=purchase")).train
    purchases = Transitions(grid=()).fit(train, 20).state()  # pairs into purchases only
    every = Transitions(grid=()).fit(Sequences(train.offsets, train.items), 20).state()
    assert all(np.array_equal(saved[k], purchases[k]) for k in ("indptr", "indices", "data", "prior"))
    assert not np.array_equal(saved["indices"], every["indices"])
    with pytest.raises(UsageError, match="target_filter: .*method=svd"):
        run(Config(data=data, target_filter="event_type=purchase", method="svd", progress=False),
            str(tmp_path / "svd"), quiet=True)


def test_synth_event_types_writes_a_shop_log(tmp_path):
    from nanorec.data.synthetic import write_fast
    out = str(tmp_path / "shop.csv")
    s = write_fast(out, 600, 40, seed=3, event_types=("view", "cart", "purchase"))
    df = pl.read_csv(out)
    assert df.columns == ["user_id", "item_id", "timestamp", "event_type", "weight"]
    assert (df["event_type"] == "purchase").sum() == 600 and s["rows"] == df.height
    assert dict(zip(*np.unique(df["event_type"].to_numpy(), return_counts=True))).keys() == {"view", "cart", "purchase"}
    assert df.group_by("event_type").agg(pl.col("weight").unique()).sort("event_type")["weight"].to_list() == \
        [[2.0], [5.0], [1.0]]  # cart, purchase, view
    buyers = set(df.filter(pl.col("event_type") == "purchase")["user_id"].to_list())
    assert len(set(df["user_id"].to_list()) - buyers) > 0  # customers who only view
    # a purchase is preceded (a minute before) by its cart or by a view of its category
    ds = load(out, target_filter="event_type=purchase")
    seqs = ds.sequences
    at = last_targets(seqs, 0)
    last = seqs.offsets[:-1][at >= 1] + at[at >= 1]  # each buyer's last purchase (flat index)
    same_category = (ds.item_ids[seqs.items[last - 1]] // 10) == (ds.item_ids[seqs.items[last]] // 10)
    assert same_category.mean() > 0.9
