"""First-order Markov chain: what usually comes right after the user's last item."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..data import EvalSet, Sequences, item_counts
from ..evaluation.metrics import evaluate
from ..scoring.scorer import Factored, Sparse, from_factors

# Each item keeps its ROW_LIMIT strongest followers (ties: the lower index): popular items are followed
# once or twice by tens of thousands of items. At 400 the tables equal the uncut ones to 0.0001 validation
# NDCG@10 on Beauty, Sports, LastFM and the challenge-shaped log, whose rows shrink 6,613 -> 271 (row_limit.json).
ROW_LIMIT = 400


def keep_strongest(P: sp.csr_matrix, limit: int) -> sp.csr_matrix:
    """P with only each row's `limit` largest entries (ties: the lower column)."""
    P = P.tocsr()
    P.sort_indices()
    nnz = np.diff(P.indptr)
    data = P.data.copy()
    for r in np.nonzero(nnz > limit)[0]:
        a, b = P.indptr[r], P.indptr[r + 1]
        drop = np.argsort(-data[a:b], kind="stable")[limit:]  # columns ascending: ties keep the lower
        data[a + drop] = 0
    out = sp.csr_matrix((data, P.indices, P.indptr), shape=P.shape)
    out.eliminate_zeros()
    return out


def typed_pair_events(train: Sequences, span: int, both: bool) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) flat event indices of an event-typed log (target_filter), each pair counted as "j's
    item is bought after i's": purchases at most `span` purchases apart in one history, j after i
    (both: also before), never two of one item; `factors` reads them at the last purchases. Views are
    left out: the event before a purchase is nearly always cart X -> buy X, a pair no list can use,
    and view -> purchase pairs took the table from 0.1924 to 0.1381 NDCG@10 (selection_event_types.json)."""
    i, j = near_pairs(train, np.nonzero(train.is_target())[0], span, both)  # (P,) the targets, in order
    other = train.items[i] != train.items[j]
    return i[other], j[other]


def near_pairs(train: Sequences, t: np.ndarray, span: int, both: bool) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) of the indices `t` at most `span` apart in `t` and in one history, j after i (both: also before)."""
    row = np.repeat(np.arange(len(train)), train.lengths)  # (total,) the history of each event
    src, dst = [t[:0]], [t[:0]]
    for d in range(1, span + 1):
        same = row[t[:-d]] == row[t[d:]]  # entry k and entry k + d of t belong to one history
        a, b = t[:-d][same], t[d:][same]
        src += [a, b] if both else [a]
        dst += [b, a] if both else [b]
    return np.concatenate(src), np.concatenate(dst)


class Transitions:
    """Item-to-item transition counts over consecutive items of the training sequences.

    P[a, b] = (# times b directly follows a) / (# times a is followed by anything), sparse (N+1, N+1);
    with per-event weights each pair counts b's event weight. A history h_1..h_T is scored by
        sum_{j<window} decay^j * P[h_{T-j}]  +  pop_weight * counts / counts.max()
    (the small popularity back-off only orders the items no transition reaches).
    With `valid` given, `fit` keeps the (window, decay) of `grid` with the best validation
    NDCG@10 (one ranking per setting: the counts do not depend on them), recorded in `selection`."""

    GRID = ((1, 0.5), (2, 0.3), (2, 0.5), (3, 0.3), (3, 0.5), (5, 0.3), (5, 0.5))

    def __init__(self, window: int = 1, decay: float = 0.5, pop_weight: float = 1e-4,
                 grid: tuple[tuple[int, float], ...] = GRID, row_limit: int = ROW_LIMIT):
        self.window, self.decay, self.pop_weight, self.grid = window, decay, pop_weight, grid
        self.row_limit = row_limit
        self.selection: dict[str, float] = {}

    def pair_events(self, train: Sequences) -> tuple[np.ndarray, np.ndarray]:
        """(i, j) flat event indices of consecutive events of one row (an event-typed log: typed_pair_events)."""
        if train.has_context():
            return typed_pair_events(train, 1, both=False)
        i = np.arange(len(train.items) - 1)
        same_row = np.ones(len(i), dtype=bool)
        ends = train.offsets[1:-1] - 1  # index of each row's last item (except the final row's)
        same_row[ends[(ends >= 0) & (ends < len(i))]] = False  # the pair that would cross a row boundary
        return i[same_row], i[same_row] + 1

    def pairs(self, train: Sequences) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) item pairs counted as "b follows a"."""
        i, j = self.pair_events(train)
        return train.items[i], train.items[j]

    def fit(self, train: Sequences, num_items: int, valid: EvalSet | None = None) -> "Transitions":
        n = num_items + 1
        i, j = self.pair_events(train)
        if train.weights is None:
            w = np.ones(len(i), np.float32)
        else:  # the weight of the event the pair points to; weight 0 (context) pairs are no pairs
            w = train.weights[j].astype(np.float32)
            i, j, w = i[w > 0], j[w > 0], w[w > 0]
        counts = sp.csr_matrix((w, (train.items[i], train.items[j])), shape=(n, n))  # duplicates summed
        out = np.asarray(counts.sum(1)).ravel()  # (N+1,) outgoing (weighted) transitions per item
        # 1 / out where out > 0 (the same as 1 / max(out, 1) for counts; weighted sums may be below 1)
        self.P = sp.diags(1.0 / np.where(out > 0, out, 1)).astype(np.float32) @ counts  # (N+1, N+1) row-stochastic
        if self.row_limit:
            self.P = keep_strongest(self.P, self.row_limit)
        pop = item_counts(train, num_items).astype(np.float32)
        self.prior = self.pop_weight * pop / max(pop.max(), 1)  # (N+1,)
        if valid is not None and self.grid:
            best = -1.0
            for window, decay in self.grid:
                self.window, self.decay = window, decay
                ndcg = self.selection[f"window={window} decay={decay}"] = \
                    evaluate(self.score, valid, max_rank=10)["NDCG@10"]
                if ndcg > best:
                    best, chosen = ndcg, (window, decay)
            self.window, self.decay = chosen
        return self

    def factors(self, histories: Sequences, users=None) -> Factored:
        """`score` as a scoring.Factored: bias = the popularity back-off, extra = sparse sum_j decay^j P[h_{T-j}]."""
        if histories.has_context():  # an event-typed history: the rows of its last purchases
            histories = histories.target_events()
        B, n = len(histories), self.P.shape[0]
        lengths = histories.lengths
        rows, cols, vals = [], [], []
        for j in range(self.window):  # j = 0: last item, j = 1: the one before, ...
            has = lengths > j
            rows.append(np.nonzero(has)[0])
            cols.append(histories.items[histories.offsets[1:][has] - 1 - j])
            vals.append(np.full(has.sum(), self.decay ** j, np.float32))
        W = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(B, n))
        prior = torch.from_numpy(self.prior)  # shares the array's memory: the same tensor to scoring's cache
        return Factored(torch.zeros(B, 0), torch.zeros(n, 0), prior, (Sparse.from_matrix(W @ self.P),))

    @property
    def score(self):
        return from_factors(self.factors)

    def state(self) -> dict:
        P = self.P.tocsr()
        return {"indptr": P.indptr.astype(np.int64), "indices": P.indices.astype(np.int64),
                "data": P.data.astype(np.float32), "prior": self.prior.astype(np.float32),
                "window": np.array([self.window], np.int64), "decay": np.array([self.decay], np.float64)}

    @classmethod
    def from_state(cls, state: dict) -> "Transitions":
        n = len(state["prior"])
        m = cls(window=int(state["window"][0]), decay=float(state["decay"][0]))
        m.P = sp.csr_matrix((state["data"], state["indices"], state["indptr"]), shape=(n, n))
        m.prior = np.asarray(state["prior"], dtype=np.float32)
        return m
