"""Selection on event-typed logs (target_filter=event_type=purchase): the count tables learn
"after buying A, people buy B" (purchase -> purchase of another item), never cart X -> buy X,
and read a history at its last purchases; validation and test hold out the next purchase from
the events before its session (the held-out purchase's own views and cart left out); each view slot
learns the purchase it leads to (context_targets). Runs without context events (plain logs,
weight_col) keep their code paths: byte-identical tables, splits and packing."""
import numpy as np
import polars as pl

from nanorec.methods.cooccurrence import CoOccurrence
from nanorec.methods.transitions import Transitions
from nanorec.config import LEGACY, Config
from nanorec.data import Sequences, load, split
from nanorec.data.sequences import funnel_share
from nanorec.core.packing import IGNORE, pack

V, C, P = 0.0, 0.0, 1.0  # a view's and a cart's weight under target_filter (context), a purchase's


def shop() -> Sequences:
    """Two customers, items 1..6. u1: view 5, view 1, cart 1, buy 1, view 6, view 2, cart 2, buy 2;
    u2: view 5, view 1, buy 1, view 2, buy 2, view 3."""
    rows = [([5, 1, 1, 1, 6, 2, 2, 2], [V, V, C, P, V, V, C, P]),
            ([5, 1, 1, 2, 2, 3], [V, V, P, V, P, V])]
    seqs = Sequences.from_lists([r for r, _ in rows])
    seqs.weights = np.array([w for _, ws in rows for w in ws], np.float32)
    return seqs


def test_transitions_learn_a_then_b_not_x_then_x():
    t = Transitions(grid=(), row_limit=0).fit(shop(), 6)
    P_ = t.P.toarray()
    assert np.diag(P_).sum() == 0  # no "cart X -> buy X", "view X -> buy X", "buy X -> buy X"
    np.testing.assert_allclose(P_[1], [0, 0, 1, 0, 0, 0, 0])  # buy 1 -> buy 2 (both customers)
    assert P_.sum() == 1  # the only pair: views point nowhere (view 5 -> buy 1 is not counted)
    # before: the event right before each purchase, in a shop nearly always the same item
    plain = Sequences(shop().offsets, shop().items, np.ones(14, np.float32))  # weight_col: every event a target
    assert np.diag(Transitions(grid=(), row_limit=0).fit(plain, 6).P.toarray()).sum() > 0


def test_an_event_typed_history_is_scored_at_its_last_purchase():
    t = Transitions(grid=(), row_limit=0, pop_weight=0.0).fit(shop(), 6)
    seqs = shop()
    # u1 after buying 1 and viewing 6: the row of 1 (buy 2 next), not of the view 6 (empty)
    h = Sequences(np.array([0, 5]), seqs.items[:5], seqs.weights[:5])
    assert t.score(h).argmax(1).tolist() == [2]
    assert Sequences(np.array([0, 5]), seqs.items[:5]).has_context() is False  # no flags: the last event
    assert t.score(Sequences(np.array([0, 5]), seqs.items[:5]))[0, 1:].max() == 0
    # a customer who only viewed keeps its views
    only = Sequences(np.array([0, 2]), np.array([5, 1]), np.zeros(2, np.float32))
    assert only.target_events().to_lists() == [[5, 1]]
    assert t.score(only).argmax(1).tolist() == [2]  # the row of its last view, 1


def test_cooccurrence_pairs_purchases_both_ways():
    c = CoOccurrence(grid=(), row_limit=0).fit(shop(), 6).P.toarray()
    assert np.diag(c).sum() == 0
    np.testing.assert_allclose(c[1], [0, 0, 1, 0, 0, 0, 0])  # 1 and 2 bought together, either order
    np.testing.assert_allclose(c[2], [0, 1, 0, 0, 0, 0, 0])
    assert c[5].sum() == 0 and c[6].sum() == 0  # views are in no pair


def test_validation_holds_out_the_next_purchase_from_the_events_before_its_funnel():
    seqs = shop()
    ds = load(pl.DataFrame({"user_id": np.repeat([1, 2], seqs.lengths), "item_id": seqs.items,
                            "timestamp": np.arange(len(seqs.items)),
                            "event_type": np.where(seqs.weights > 0, "purchase", "view")}),
              target_filter="event_type=purchase")
    orig = lambda s: [ds.item_ids[r].tolist() for r in s.to_lists()]  # noqa: E731  (internal -> original ids)
    sp = split(ds, holdout="last")
    # target: each customer's last purchase (2); history: the events through the purchase before it,
    # so the views and the cart of 2 right before it are not the history it is predicted from
    assert ds.item_ids[sp.valid.targets].tolist() == [2, 2]
    assert orig(sp.valid.histories) == [[5, 1, 1, 1], [5, 1, 1]]
    # loo: the test is that purchase; validation the one before, which has no purchase before it
    loo = split(ds)
    assert orig(loo.test.histories) == [[5, 1, 1, 1], [5, 1, 1]]
    assert loo.valid is not None and len(loo.valid.targets) == 0
    # the share of held-out purchases viewed or carted in their own funnel: both last ones (u1 viewed
    # and carted 2, u2 viewed it); the first ones have no purchase before them (no validation user)
    assert funnel_share(ds.sequences, 0) == (2, 1.0)
    assert funnel_share(ds.sequences, 1) == (0, 0.0)


def test_a_plain_log_keeps_every_event_before_the_target():
    seqs = Sequences.from_lists([[5, 1, 1, 1, 6, 2, 2, 2]])
    from nanorec.data import Dataset
    ds = Dataset("x", "x", "table", np.array([1]), np.arange(7), seqs)
    sp = split(ds, holdout="last")
    assert sp.valid.histories.to_lists() == [[5, 1, 1, 1, 6, 2, 2]]


def test_context_slots_learn_the_next_purchase():
    seqs = shop()
    p = pack(seqs.take([0]), 8, weights=seqs.weights[:8], context_targets=True)
    # tokens 5 1 1 1 6 2 2: every slot learns the next purchase after it (buy 1 ... then buy 2)
    assert p.tokens.tolist() == [[5, 1, 1, 1, 6, 2, 2, 0]]
    assert p.targets.tolist() == [[1, 1, 1, 2, 2, 2, 2, IGNORE]]
    assert p.weights.tolist() == [[1, 1, 1, 1, 1, 1, 1, 0]]
    # context_targets off: only the slot right before a purchase learns it
    off = pack(seqs.take([0]), 8, weights=seqs.weights[:8])
    assert off.targets.tolist() == [[IGNORE, IGNORE, 1, IGNORE, IGNORE, IGNORE, 2, IGNORE]]
    # u2's last view (3) has no purchase after it: no target
    p2 = pack(seqs.take([1]), 8, weights=seqs.weights[8:], context_targets=True)
    assert p2.targets.tolist() == [[1, 1, 2, 2, IGNORE, IGNORE, IGNORE, IGNORE]]


def test_context_targets_change_nothing_without_context_events():
    rng = np.random.default_rng(3)
    seqs = Sequences.from_lists([rng.integers(1, 30, size=int(n)).tolist() for n in rng.integers(2, 12, size=40)])
    for w in (None, rng.uniform(0.5, 3, size=len(seqs.items)).astype(np.float32)):  # plain, weight_col
        a = pack(seqs, 16, np.random.default_rng(0), weights=w)
        b = pack(seqs, 16, np.random.default_rng(0), weights=w, context_targets=True)
        for x, y in zip((a.tokens, a.targets, a.seq_ids, a.pos_ids, a.weights),
                        (b.tokens, b.targets, b.seq_ids, b.pos_ids, b.weights)):
            assert (x is None and y is None) or np.array_equal(x, y)


def test_the_default_is_next_purchase_targets_and_old_runs_keep_none():
    assert Config().context_targets == "auto"
    assert LEGACY["context_targets"] == "none"  # runs written before the key learned no context slot


def test_training_log_says_how_many_held_out_purchases_were_in_their_funnel(tmp_path):
    from nanorec.data.synthetic import write_fast
    from nanorec.core.train import run
    log = str(tmp_path / "shop.csv")
    write_fast(log, 400, 40, seed=1, event_types=("view", "cart", "purchase"))
    cfg = Config(data=log, target_filter="event_type=purchase", max_steps=2, eval_interval=2, n_layer=1,
                 n_embd=8, n_head=1, threads=1, progress=False)
    run(cfg, str(tmp_path / "r"), quiet=True)
    text = open(tmp_path / "r" / "train.log").read()
    line = next(x for x in text.splitlines() if "validation (views as context)" in x)
    # the synth log's purchases follow their own view or cart most of the time
    share = int(line.split("validation (views as context): ")[1].split("%")[0])
    assert 60 <= share <= 100 and "dominated by same-session repeats" in line


def test_with_times_the_history_ends_before_the_held_out_purchase_s_session():
    # u1: a purchase of 1 on day 1; an abandoned session on day 3 (views of 6 and 3); on day 5 views of
    # 2, a cart of 2, the purchase of 2. The history of that purchase is days 1 and 3: next week's
    # lists also see the abandoned session, never the session of the purchase they are judged on
    day = lambda d, m: f"2024-01-0{d}T10:{m:02d}:00"  # noqa: E731
    log = [(1, 5, day(1, 0), "view"), (1, 1, day(1, 2), "purchase"), (1, 6, day(3, 0), "view"),
           (1, 3, day(3, 5), "view"), (1, 2, day(5, 0), "view"), (1, 2, day(5, 1), "cart"),
           (1, 2, day(5, 2), "purchase"),
           (2, 4, day(2, 0), "view"), (2, 4, day(4, 0), "purchase")]  # u2: a view, then a later session's purchase
    u, i, t, e = zip(*log)
    ds = load(pl.DataFrame({"user_id": u, "item_id": i, "timestamp": t, "event_type": e}),
              target_filter="event_type=purchase")
    sp = split(ds, holdout="last")
    assert [ds.item_ids[r].tolist() for r in sp.valid.histories.to_lists()] == [[5, 1, 6, 3], [4]]
    assert ds.item_ids[sp.valid.targets].tolist() == [2, 4]
    # 31 minutes between two views of one visit: two sessions (SESSION_GAP is 30 minutes)
    late = [(1, 5, "2024-01-01T10:00:00", "view"), (1, 6, "2024-01-01T10:31:00", "view"),
            (1, 6, "2024-01-01T10:32:00", "purchase")]
    u, i, t, e = zip(*late)
    ds = load(pl.DataFrame({"user_id": u, "item_id": i, "timestamp": t, "event_type": e}),
              target_filter="event_type=purchase")
    assert [ds.item_ids[r].tolist() for r in split(ds, holdout="last").valid.histories.to_lists()] == [[5]]
