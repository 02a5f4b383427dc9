import math

import numpy as np
import pytest
import torch

from nanorec.data import EvalSet, Sequences
from nanorec.evaluation.metrics import evaluate, metrics_from_ranks, target_ranks


def test_metrics_hand_computed():
    ranks = np.array([1, 3, 11, 5])
    m = metrics_from_ranks(ranks, ks=(5, 10))
    assert m["HR@5"] == pytest.approx(3 / 4)
    assert m["HR@10"] == pytest.approx(3 / 4)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(4) + 0 + 1 / math.log2(6)) / 4)
    assert m["MRR@10"] == pytest.approx((1 + 1 / 3 + 0 + 1 / 5) / 4)
    assert m["MAP@10"] == m["MRR@10"]  # one target per user
    m1 = metrics_from_ranks(np.array([6]), ks=(5,))
    assert m1["HR@5"] == 0 and m1["NDCG@5"] == 0 and m1["MAP@5"] == 0


def test_ranks_exclude_history_and_padding():
    # items 1..5; scores favour 5 > 4 > 3 > 2 > 1; padding column has the highest score
    scores = torch.tensor([[9.0, 1, 2, 3, 4, 5], [9.0, 1, 2, 3, 4, 5]])
    hist = Sequences.from_lists([[5], [1]])
    ranks = target_ranks(scores.clone(), hist, torch.tensor([3, 3]))
    assert ranks.tolist() == [2, 3]  # user 0: 5 excluded -> 4 then 3; user 1: 5, 4, then 3
    ranks_incl = target_ranks(scores.clone(), hist, torch.tensor([3, 3]), exclude_seen=False)
    assert ranks_incl.tolist() == [3, 3]


def test_ties_are_broken_by_item_index():
    scores = torch.tensor([[0.0, 1, 1, 1, 1]])
    hist = Sequences.from_lists([[]])
    assert target_ranks(scores.clone(), hist, torch.tensor([1])).tolist() == [1]
    assert target_ranks(scores.clone(), hist, torch.tensor([3])).tolist() == [3]


def test_evaluate_batches_agree_with_one_batch():
    rng = np.random.default_rng(0)
    hist = Sequences.from_lists([list(rng.integers(1, 30, size=rng.integers(1, 6))) for _ in range(50)])
    ev = EvalSet(np.arange(50), hist, rng.integers(1, 30, size=50))
    table = rng.normal(size=(50, 30)).astype(np.float32)
    scorer = lambda h, users: table[users]  # per-user scores: order of batches must not matter
    a = evaluate(scorer, ev, batch_size=7)
    b = evaluate(scorer, ev, batch_size=1000)
    assert a == b
