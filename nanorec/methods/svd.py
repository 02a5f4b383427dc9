"""PureSVD: a truncated SVD of the binary user x item matrix, histories folded in."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from ..data import EvalSet, Sequences
from ..evaluation.metrics import evaluate


def multi_hot(seqs: Sequences, num_items: int) -> sp.csr_matrix:
    """(rows, N+1) binary CSR: 1 where the row's sequence contains the item."""
    rows = np.repeat(np.arange(len(seqs)), seqs.lengths)
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, seqs.items)), shape=(len(seqs), num_items + 1))
    X.data[:] = 1.0  # repeated purchases count once
    return X


class PureSVD:
    """PureSVD (Cremonesi et al. 2010) with fold-in scoring: X (U, N+1) binary ~ U_k S_k V_k^T, a
    history's multi-hot h scored h @ V_k @ V_k^T (any history works: no per-user parameters).
    With `valid`, one SVD of rank max(grid) is truncated to each k of `grid`, the best kept (`selection`)."""

    def __init__(self, k: int = 64, grid: tuple[int, ...] = (32, 64, 128, 256, 512), seed: int = 0):
        self.k, self.grid, self.seed = k, grid, seed
        self.selection: dict[int, float] = {}

    def fit(self, train: Sequences, num_items: int, valid: EvalSet | None = None) -> "PureSVD":
        self.num_items = num_items
        X = multi_hot(train, num_items)  # (U, N+1)
        ks = sorted(self.grid) if valid is not None else [self.k]
        max_k = min(max(ks), min(X.shape) - 1)  # svds needs k < min(shape)
        rng = np.random.default_rng(self.seed)
        v0 = rng.standard_normal(min(X.shape)).astype(np.float32)  # fixed start vector: reproducible
        _, s, vt = svds(X, k=max_k, v0=v0)
        order = np.argsort(-s)  # svds returns ascending singular values
        self.V_all = np.ascontiguousarray(vt[order].T, dtype=np.float32)  # (N+1, max_k), leading first
        self.singular_values = s[order].astype(np.float32)  # (max_k,), for item vectors weighted by them
        if valid is not None:
            for k in ks:
                self.V = self.V_all[:, :min(k, max_k)]
                self.selection[k] = evaluate(self.score, valid)["NDCG@10"]
            self.k = max(self.selection, key=self.selection.get)
        self.V = self.V_all[:, :min(self.k, max_k)]
        return self

    def score(self, histories: Sequences, users: np.ndarray) -> np.ndarray:
        H = multi_hot(histories, self.num_items)  # (B, N+1) sparse
        return (H @ self.V) @ self.V.T  # (B, k) @ (k, N+1) -> (B, N+1)

    def state(self) -> dict:
        return {"V": np.ascontiguousarray(self.V, dtype=np.float32)}

    @classmethod
    def from_state(cls, state: dict) -> "PureSVD":
        m = cls()
        m.V = np.asarray(state["V"], dtype=np.float32)
        m.num_items = m.V.shape[0] - 1
        m.k = m.V.shape[1]
        return m
