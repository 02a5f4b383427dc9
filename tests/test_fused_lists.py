"""Fused lists (a dot product + a per-item bias + several sparse corrections, the form fusion.py
ranks) cut to top-k exactly as a brute-force stable sort of the dense fused scores, with seen
items, allow/deny masks and ties; the weight search (fusion.search_weights) on validation."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from nanorec.data import Sequences
from nanorec.scoring.scorer import BLOCKED, SEEN_SCORE, Factored, Sparse, from_factors, item_mask, top_k


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


def test_the_line_search_steps_past_its_ladder_and_finds_a_known_peak():
    """NDCG along one weight, peaked at w* (unimodal in log w; 0 = the term dropped): the search
    ends within a factor 1.3 of w*, far past the ladder's top (12.5) or below its bottom (0.1),
    and never on the edge of what it tried."""
    from nanorec.scoring.fusion import search_line
    for peak in (0.02, 0.7, 137.0, 2500.0):
        calls = []

        def ndcg(ws, peak=peak):
            calls.append(ws)
            return 0.1 if ws[1] == 0 else 0.5 - 0.01 * (np.log(ws[1]) - np.log(peak)) ** 2

        best = search_line(ndcg, (0.3, 0.0, 0.0), 1, (0.1, 0.5, 2.5, 12.5))  # a short ladder: the steps
        assert best[0] == 0.3 and best[2] == 0.0  # the other weights stay
        assert abs(np.log(best[1] / peak)) < np.log(1.3), (peak, best)
        tried = sorted({ws[1] for ws in calls})
        assert tried[1] < best[1] < tried[-1], (peak, tried)  # inside the values tried
        assert len(set(calls)) <= 16


def strong_table_case(gpt_scale: float, seed: int = 0, n_users: int = 120, n_items: int = 60):
    """Validation targets that a table's rows mostly predict, a GPT of random logits times
    gpt_scale: the larger the scale, the larger the table's best weight."""
    from nanorec.data import EvalSet
    rng = np.random.default_rng(seed)
    targets = rng.integers(1, n_items + 1, size=n_users)
    q = torch.from_numpy(gpt_scale * rng.normal(size=(n_users, 4)).astype(np.float32))
    w = torch.from_numpy(rng.normal(size=(n_items + 1, 4)).astype(np.float32))
    gpt = from_factors(lambda h, u: Factored(q[torch.from_numpy(np.asarray(u))], w))
    tables = []
    for strength in (0.6, 0.2):
        rows = (rng.random((n_users, n_items + 1)) * (rng.random((n_users, n_items + 1)) < 0.2)).astype(np.float32)
        hit = rng.random(n_users) < strength
        rows[np.arange(n_users)[hit], targets[hit]] = 1.0  # the table puts the target first for some users
        rows[:, 0] = 0
        tables.append(_Table(rows, (1e-4 * rng.random(n_items + 1)).astype(np.float32)))
    hist = Sequences.from_lists([list(rng.integers(1, n_items + 1, size=3)) for _ in range(n_users)])
    return gpt, tables, EvalSet(np.arange(n_users), hist, targets)


class _Table:  # a count table with dense rows given by hand, in the factored form fusion reads
    def __init__(self, rows, prior):
        self.rows, self.prior = rows, prior

    def factors(self, histories, users=None):
        r = self.rows[users]
        b, i = np.nonzero(r)
        return Factored(torch.zeros(len(r), 0), torch.zeros(r.shape[1], 0), torch.from_numpy(self.prior),
                        (Sparse(b.astype(np.int64), i.astype(np.int64), r[b, i]),))


OLD_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)


def old_grid_choice(terms) -> tuple:
    """The grid search this replaced: w1 on OLD_GRID, w2 given w1, w1 again (ties: smaller)."""
    best = (0.0, 0.0, 0.0)
    for i in (0, 1, 0):
        line = [best[:i] + (w,) + best[i + 1:] for w in OLD_GRID]
        best = max(line, key=lambda ws: (terms.ndcg(ws), [-w for w in ws]))
    return best


@pytest.mark.parametrize("gpt_scale", [0.3, 1.0, 300.0])
def test_the_search_is_at_least_as_good_as_the_old_grid_on_validation(gpt_scale):
    """On validation the search reaches the old grid's figure (within TOL), whether the grid's best
    was inside it (a GPT on the tables' scale) or its top edge (a GPT of huge logits, where the
    table's weight must be far above 50); every figure is the fused scorer's evaluate."""
    from nanorec.evaluation.metrics import evaluate
    from nanorec.scoring.fusion import TOL, ValidationTerms, choose_weights, fused_scorer
    gpt, tables, valid = strong_table_case(gpt_scale)
    best, tried = choose_weights(gpt, tables, None, valid, batch_size=32)
    found = evaluate(fused_scorer(gpt, tables, None, best), valid, batch_size=50)["NDCG@10"]
    assert found == tried[",".join(str(w) for w in best)] >= max(tried.values()) - 3 * TOL
    grid = old_grid_choice(ValidationTerms(gpt, tables, None, valid, 32))
    old = evaluate(fused_scorer(gpt, tables, None, grid), valid, batch_size=50)["NDCG@10"]
    assert found >= old - TOL, (best, found, grid, old)
    if gpt_scale == 300.0:  # the old grid sat on its edge; the search went past it
        assert grid[0] == 50.0 and best[0] > 50.0
