"""Baselines on tiny hand-made data where the right answer is known."""
import math

import numpy as np
import pytest
import torch

from nanorec.methods.cooccurrence import CoOccurrence
from nanorec.methods.lightgcn import LightGCN
from nanorec.methods.popularity import Popularity
from nanorec.methods.svd import PureSVD
from nanorec.methods.transitions import Transitions
from nanorec.data import EvalSet, Sequences
from nanorec.evaluation.metrics import evaluate


def evalset(histories, targets, users=None):
    users = np.arange(len(targets)) if users is None else np.asarray(users)
    return EvalSet(users, Sequences.from_lists(histories), np.asarray(targets, dtype=np.int64))


def as_array(scores):
    return scores.numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)


# -----------------------------------------------------------------------------
# popularity

def test_popularity_ranks_by_count_and_evaluator_gives_hand_computed_metrics():
    # counts: 3:5, 1:4, 5:3, 2:2, 4:1, 6:1, 7:0, 8:0 -> ranking 3 1 5 2 4 6 7 8 (ties: lower index first)
    train = Sequences.from_lists([[3, 1, 5], [3, 1, 5, 2], [3, 1, 5, 2, 4], [3, 1, 6], [3]])
    model = Popularity().fit(train, num_items=8)
    s = as_array(model.score(Sequences.from_lists([[1], [2]]), np.array([0, 1])))
    assert s.shape == (2, 9) and s.dtype == np.float32
    np.testing.assert_array_equal(s[0], [-np.inf, 4, 2, 5, 1, 3, 1, 0, 0])  # padding is never a recommendation
    assert np.argmax(s[1]) == 3

    # history [3] target 1 -> rank 1; [2] target 5 -> 3 1 5: rank 3; [1] target 7 -> 3 5 2 4 6 7: rank 6
    m, ranks = evaluate(model.score, evalset([[3], [2], [1]], [1, 5, 7]), return_ranks=True)
    np.testing.assert_array_equal(ranks, [1, 3, 6])
    np.testing.assert_array_equal(model.counts.numpy(), [0, 4, 2, 5, 1, 3, 1, 0, 0])  # ranking wrote into a copy
    assert m["HR@5"] == pytest.approx(2 / 3)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(4)) / 3)
    assert m["MRR@5"] == pytest.approx((1 + 1 / 3) / 3)
    assert m["HR@10"] == pytest.approx(1.0)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(7)) / 3)


# -----------------------------------------------------------------------------
# transitions

# pairs inside rows: 1->2, 2->3, 1->2, 2->4, 1->5, 3->4; across rows (must not count): 3->1, 4->1, 5->3, 4->7
TRAIN_T = [[1, 2, 3], [1, 2, 4], [1, 5], [3, 4], [7]]
# counts: 1:3, 2:2, 3:2, 4:2, 5:1, 7:1, 6:0 (N = 7)


def test_transitions_counts_stay_inside_rows():
    model = Transitions().fit(Sequences.from_lists(TRAIN_T), num_items=7)
    P = model.P.toarray()
    assert P.shape == (8, 8)
    np.testing.assert_allclose(P[1], [0, 0, 2 / 3, 0, 0, 1 / 3, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(P[2], [0, 0, 0, 0.5, 0.5, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(P[3], [0, 0, 0, 0, 1, 0, 0, 0], rtol=1e-6)
    assert P[4].sum() == P[5].sum() == P[7].sum() == 0  # only row-crossing pairs start there


def test_transitions_recommend_the_follower_then_back_off_to_popularity():
    model = Transitions(pop_weight=1e-3).fit(Sequences.from_lists(TRAIN_T), num_items=7)
    s = as_array(model.score(Sequences.from_lists([[4, 1], [2, 3]]), np.array([0, 1])))
    assert s.shape == (2, 8) and s.dtype == np.float32
    prior = 1e-3 * np.array([0, 3, 2, 2, 2, 1, 0, 1]) / 3
    np.testing.assert_allclose(s[0][1:], (prior + [0, 0, 2 / 3, 0, 0, 1 / 3, 0, 0])[1:], rtol=1e-5)
    assert s[0][0] == -np.inf  # padding
    # after 1: 2 (always-most-frequent follower), then 5, then the rest by popularity
    order = np.argsort(-s[0][1:], kind="stable") + 1
    assert order.tolist() == [2, 5, 1, 3, 4, 7, 6]
    assert np.argmax(s[1]) == 4  # 4 always follows 3
    m = evaluate(model.score, evalset([[4, 1], [2, 3]], [2, 4]))
    assert m["HR@5"] == 1.0 and m["NDCG@5"] == pytest.approx(1.0)


def test_transitions_window_mixes_earlier_items_with_decay():
    model = Transitions(window=2, decay=0.5, pop_weight=0.0).fit(Sequences.from_lists(TRAIN_T), num_items=7)
    s = as_array(model.score(Sequences.from_lists([[2, 3], [3]]), np.array([0, 1])))
    # [2, 3]: P[3] + 0.5 P[2] -> item 3: 0.25, item 4: 1 + 0.25; a one-item history uses P[3] only
    np.testing.assert_allclose(s[0][1:], [0, 0, 0.25, 1.25, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(s[1][1:], [0, 0, 0, 1.0, 0, 0, 0], rtol=1e-6)


def test_transitions_selects_window_on_validation():
    model = Transitions().fit(Sequences.from_lists(TRAIN_T), num_items=7,
                              valid=evalset([[4, 1], [2, 3]], [2, 4]))
    assert len(model.selection) == len(Transitions.GRID)
    assert model.selection[f"window={model.window} decay={model.decay}"] == max(model.selection.values())


# -----------------------------------------------------------------------------
# co-occurrence

def test_cooccurrence_counts_pairs_within_span_both_ways_inside_rows():
    # span 2 in [1, 2, 3]: 1-2, 2-3 (distance 1), 1-3 (distance 2), each both ways;
    # [1, 2, 4]: 1-2, 2-4, 1-4; [1, 5]: 1-5; [3, 4]: 3-4; [7] alone. Nothing crosses a row.
    model = CoOccurrence(span=2).fit(Sequences.from_lists(TRAIN_T), num_items=7)
    P = model.P.toarray()
    # row 1: 2 twice, 3, 4, 5 once each -> 2/5, 1/5, 1/5, 1/5
    np.testing.assert_allclose(P[1], [0, 0, 2 / 5, 1 / 5, 1 / 5, 1 / 5, 0, 0], rtol=1e-6)
    # row 4: 2, 1, 3 once each (4 follows them; co-occurrence goes backwards too)
    np.testing.assert_allclose(P[4], [0, 1 / 3, 1 / 3, 1 / 3, 0, 0, 0, 0], rtol=1e-6)
    assert P[7].sum() == 0 and P[:, 7].sum() == 0  # a one-item row pairs with nothing
    # span 1 is the transitions' pairs plus their reverses
    t = Transitions().fit(Sequences.from_lists(TRAIN_T), num_items=7)
    src, dst = CoOccurrence(span=1).pairs(Sequences.from_lists(TRAIN_T))
    ts, td = t.pairs(Sequences.from_lists(TRAIN_T))
    assert sorted(zip(src.tolist(), dst.tolist())) == sorted(zip([*ts, *td], [*td, *ts]))


def test_a_saved_cooccurrence_table_scores_the_same_through_transitions():
    model = CoOccurrence(span=3, window=2, decay=0.3).fit(Sequences.from_lists(TRAIN_T), num_items=7)
    again = Transitions.from_state(model.state())
    h = Sequences.from_lists([[4, 1], [2, 3], [7]])
    np.testing.assert_array_equal(as_array(again.score(h, None)), as_array(model.score(h, None)))


# -----------------------------------------------------------------------------
# PureSVD

def block_users():
    """Block A (8 users) buys pairs of {1,2,3}, block B (6 users) pairs of {4,5,6}: rank 3 + 3."""
    a = [[1, 2], [2, 3], [1, 3]] * 2 + [[1, 2, 3]] * 2
    b = [[4, 5], [5, 6], [4, 6]] * 2
    return Sequences.from_lists(a + b)


def test_svd_rank_two_recommends_the_users_block():
    model = PureSVD(k=2).fit(block_users(), num_items=6)
    s = as_array(model.score(Sequences.from_lists([[1], [6]]), np.array([0, 1])))
    assert s.shape == (2, 7) and s.dtype == np.float32
    # the two leading singular vectors are the blocks' all-ones directions: h V V^T = block mean
    np.testing.assert_allclose(s[0, 1:], [1 / 3, 1 / 3, 1 / 3, 0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(s[1, 1:], [0, 0, 0, 1 / 3, 1 / 3, 1 / 3], atol=1e-5)
    m = evaluate(model.score, evalset([[1], [6]], [2, 4], users=[100, 101]))  # fold-in: users unused
    assert m["HR@5"] == 1.0


def test_svd_full_rank_reconstructs_the_history():
    model = PureSVD(k=6).fit(block_users(), num_items=6)
    s = as_array(model.score(Sequences.from_lists([[1, 2], [5]]), np.array([0, 1])))
    np.testing.assert_allclose(s, [[0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0]], atol=1e-4)


def test_svd_selects_rank_on_validation():
    # k=2: the remaining item of the block is the only positive score -> every target first;
    # k=6 only echoes the history, the targets score ~0 like every other unseen item
    valid = evalset([[1, 2], [2, 3], [1, 3], [4, 5], [5, 6], [4, 6]], [3, 1, 2, 6, 4, 5])
    model = PureSVD(grid=(2, 6)).fit(block_users(), num_items=6, valid=valid)
    assert model.k == 2 and model.V.shape == (7, 2)
    assert model.selection[2] == pytest.approx(1.0)
    assert model.selection[6] < 0.9
    assert evaluate(model.score, valid)["NDCG@10"] == pytest.approx(1.0)


# -----------------------------------------------------------------------------
# LightGCN

def communities(seed=0):
    """Users 0..19 buy 6 of items 1..10, users 20..39 buy 6 of items 11..20."""
    rng = np.random.default_rng(seed)
    rows = [rng.choice(np.arange(1, 11), 6, replace=False) + (10 if u >= 20 else 0) for u in range(40)]
    return [r.tolist() for r in rows]


def test_lightgcn_self_adjoint_backward_matches_autograd():
    train = Sequences.from_lists(communities()[:10] + [[1, 15]])
    model = LightGCN(dim=8, layers=3, max_epochs=1, progress=False).fit(train, num_items=20)
    w = torch.randn_like(model.model.embedding.weight)
    for fast in (True, False):
        model.model.zero_grad()
        emb = model.embed() if fast else model.model.get_embedding(model.adj)
        (emb * w).sum().backward()
        grads = model.model.embedding.weight.grad.clone()
        if fast:
            fast_emb, fast_grads = emb.detach(), grads
    torch.testing.assert_close(fast_emb, emb.detach())
    torch.testing.assert_close(fast_grads, grads)


def test_lightgcn_separates_two_communities_and_keeps_best_weights():
    rows = communities()
    train = Sequences.from_lists([r[:-1] for r in rows])
    valid = evalset([r[:-1] for r in rows], [r[-1] for r in rows])
    model = LightGCN(dim=16, layers=2, batch_size=64, lr=0.01, max_epochs=30, eval_every=3,
                     patience=100, seed=0, progress=False).fit(train, num_items=20, valid=valid)
    s = as_array(model.score(train, np.arange(40)))
    assert s.shape == (40, 21) and s.dtype == np.float32
    assert np.all(s[:, 0] == 0)
    own = np.where(np.arange(40)[:, None] < 20, s[:, 1:11], s[:, 11:21])     # (40, 10)
    other = np.where(np.arange(40)[:, None] < 20, s[:, 11:21], s[:, 1:11])   # (40, 10)
    assert np.all(own.min(1) > other.max(1))  # every own-community item above every other one
    # the weights kept are the best validation checkpoint
    assert len(model.history) == 10
    assert evaluate(model.score, valid)["NDCG@10"] == pytest.approx(max(h["valid_ndcg10"] for h in model.history))
    assert evaluate(model.score, valid)["HR@10"] == 1.0  # 10 own items, 5 of them seen: target always in top 5
