"""Fused lists (a dot product + a per-item bias + several sparse corrections, the form fusion.py
ranks) cut to top-k exactly as a brute-force stable sort of the dense fused scores, with seen
items, allow/deny masks and ties; the weight search (fusion.search_weights) on validation."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from nanorec.data import Sequences
from nanorec.scoring import BLOCKED, SEEN_SCORE, Factored, Sparse, from_factors, item_mask, top_k


def fused_case(seed: int, B: int = 24, N: int = 400, C: int = 5):
    """Small-integer factors (many ties), a bias like a table's log back-off (large negative,
    scaled), and two sparse corrections with scales like a weight search's: the fused form."""
    rng = np.random.default_rng(seed)
    Q = torch.from_numpy(rng.integers(-2, 3, size=(B, C)).astype(np.float32))
    W = torch.from_numpy(rng.integers(-2, 3, size=(N + 1, C)).astype(np.float32))
    bias = torch.from_numpy((-4.0 * rng.integers(0, 6, size=N + 1)).astype(np.float32))
    extras = []
    for scale in (4.0, 0.5):
        m = sp.random(B, N + 1, density=0.04, random_state=int(rng.integers(1 << 30)), format="csr")
        m.data = rng.integers(1, 5, size=len(m.data)).astype(np.float32)  # integers: ties with the rest
        extras.append(Sparse.from_matrix(m).scaled(scale))
    hist = Sequences.from_lists([list(rng.choice(np.arange(1, N + 1), size=int(rng.integers(0, 30)), replace=False))
                                 for _ in range(B)])
    f = Factored(Q, W, bias, tuple(extras))
    return from_factors(lambda h, u=None: f), f, hist


def brute_force(f: Factored, hist: Sequences, k: int, exclude_seen: bool, blocked) -> tuple[list, list]:
    """The first k of a stable sort of the dense scores (ties: lower item first), seen items
    at SEEN_SCORE, blocked ones removed."""
    s = f.dense().numpy().astype(np.float32)
    if exclude_seen:
        for r in range(len(hist)):
            s[r, hist[r]] = SEEN_SCORE
    if blocked is not None:
        s[:, blocked.numpy()] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(s, order, 1)
    return [o[v > -np.inf].tolist() for o, v in zip(order, vals)], [v[v > -np.inf].tolist() for v in vals]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("filters", ["none", "allow", "deny", "few"])
def test_fused_top_k_is_the_brute_force_dense_ranking(seed, filters):
    scorer, f, hist = fused_case(seed)
    N = f.items.shape[0] - 1
    rng = np.random.default_rng(100 + seed)
    allow = rng.choice(np.arange(1, N + 1), size=6 if filters == "few" else 150, replace=False)
    deny = rng.choice(np.arange(1, N + 1), size=100, replace=False)
    blocked = {"none": None, "allow": item_mask(N, allow), "deny": item_mask(N, None, deny),
               "few": item_mask(N, allow, deny[:3])}[filters]
    for exclude_seen in (True, False):
        want, want_scores = brute_force(f, hist, 10, exclude_seen, blocked)
        for chunk in (0, 11, 64):
            items, scores = top_k(scorer, hist, None, 10, exclude_seen, chunk=chunk, blocked=blocked)
            assert [row[row != 0].tolist() for row in items] == want, (exclude_seen, chunk)
            assert [row[row > BLOCKED].tolist() for row in scores] == want_scores
