"""Content kNN: recommend the items nearest to what the user just bought.

The query is the mean unit content vector of the user's last `last` items with content; Faiss
(``flat``: exact, ``hnsw`` or ``ivf``: approximate, for millions of items) returns the
`neighbours` items of largest cosine, ranked first by it. Every other item ranks below them by
training popularity (``fallback="popularity"``) or gets -inf (``"none"``); a user without
content in the recent items gets popularity alone. Attribute tables give many exact ties:
``pop_weight * log1p(count) / log1p(max count)`` added to the neighbours breaks them towards
popular items (chosen, like ``last``, on validation).
Fitted through the registry (``methods.get("knn")``) or by ``nanorec leaderboard --methods content_knn``.
"""
from __future__ import annotations

import math

import numpy as np

from ..content.tables import align, load_table
from ..data import Sequences, item_counts


class ContentKNN:
    KINDS, FALLBACKS = ("flat", "hnsw", "ivf"), ("popularity", "none")

    def __init__(self, content, item_ids=None, last: int = 1, index: str = "flat",
                 neighbours: int = 200, fallback: str = "popularity", pop_weight: float = 0.0,
                 hnsw_m: int = 32, ivf_lists: int = 0, nprobe: int = 16):
        """content: a table path (aligned to ``item_ids`` (N+1,)) or ``(table (N+1, D), has_content (N+1,))``."""
        if index not in self.KINDS:
            raise ValueError(f"index must be flat, hnsw or ivf, not {index!r}")
        if fallback not in self.FALLBACKS:
            raise ValueError(f"fallback must be popularity or none, not {fallback!r}")
        if last < 1:
            raise ValueError("last must be >= 1")
        if isinstance(content, str):

            if item_ids is None:
                raise ValueError("a table path needs item_ids (the vocabulary) to be aligned")
            table, has_content, _ = align(*load_table(content), item_ids)
        else:
            table, has_content = content
        self.table = np.asarray(table, dtype=np.float32)          # (N+1, D)
        self.has_content = np.array(has_content, dtype=bool)      # (N+1,), our own copy
        self.has_content[0] = False                               # padding is never a neighbour
        self.last, self.index_kind, self.neighbours = last, index, neighbours
        self.fallback, self.pop_weight = fallback, pop_weight
        self.hnsw_m, self.ivf_lists, self.nprobe = hnsw_m, ivf_lists, nprobe

    # -------------------------------------------------------------------------
    def fit(self, train: Sequences, num_items: int, valid=None) -> "ContentKNN":
        """The Faiss index over items with content, popularity counted on `train` (`valid` unused)."""
        if len(self.table) != num_items + 1:
            raise ValueError(f"content table has {len(self.table) - 1} items, the data {num_items}")
        counts = item_counts(train, num_items).astype(np.float64)
        return self._index(np.log1p(counts) / max(np.log1p(counts.max()), 1e-12))  # (N+1,) in [0, 1]

    def _index(self, pop: np.ndarray) -> "ContentKNN":
        """The Faiss index over the items with content, with `pop` (N+1,) the popularity tie-break."""
        import faiss

        self.num_items, self.pop = len(self.table) - 1, pop
        unit = self.table / np.maximum(np.linalg.norm(self.table, axis=1, keepdims=True), 1e-12)
        self.unit = unit.astype(np.float32)                        # (N+1, D)
        self.rows = np.nonzero(self.has_content)[0]                # faiss label j -> item index rows[j]
        vecs = np.ascontiguousarray(self.unit[self.rows])
        d = vecs.shape[1]
        if self.index_kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif self.index_kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = max(2 * self.neighbours, 64)
        else:
            nlist = self.ivf_lists or max(1, min(int(4 * math.sqrt(len(vecs))), len(vecs) // 39 or 1))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(vecs)
            index.nprobe = min(self.nprobe, nlist)
            self._quantizer = quantizer  # keep it alive: the IVF index does not own it
        index.add(vecs)
        self.index = index
        return self

    def queries(self, histories: Sequences) -> tuple[np.ndarray, np.ndarray]:
        """(B, D) mean unit vector of each user's last `last` items with content; (B,) bool: has one."""
        b = len(histories)
        rows = np.repeat(np.arange(b), histories.lengths)           # user of each history item
        ok = self.has_content[histories.items]
        rows, items = rows[ok], histories.items[ok]                 # content-bearing items, still in order
        ends = np.cumsum(np.bincount(rows, minlength=b))            # end of each user's run in `items`
        from_end = ends[rows] - 1 - np.arange(len(items))           # 0 = the user's last such item
        use = from_end < self.last
        rows, items = rows[use], items[use]
        q = np.zeros((b, self.unit.shape[1]), dtype=np.float64)
        np.add.at(q, rows, self.unit[items])
        n = np.bincount(rows, minlength=b)
        q /= np.maximum(n, 1)[:, None]
        return q.astype(np.float32), n > 0

    def score(self, histories: Sequences, users: np.ndarray | None = None) -> np.ndarray:
        """(B, N+1) float32: neighbours by inner product (>= -1, plus the tie-break), the rest below -1."""
        b, n1 = len(histories), self.num_items + 1
        if self.fallback == "popularity":
            # in [-3, -2): under any neighbour (>= -1), ordered by popularity
            out = np.broadcast_to((-3.0 + self.pop).astype(np.float32), (b, n1)).copy()
        else:
            out = np.full((b, n1), -np.inf, dtype=np.float32)
        q, found = self.queries(histories)
        k = min(self.neighbours, len(self.rows))
        if k == 0 or not found.any():
            return out
        who = np.nonzero(found)[0]
        sims, labels = self.index.search(np.ascontiguousarray(q[who]), k)  # (b', k) each
        valid = labels >= 0  # approximate indexes may return fewer than k
        r = np.repeat(who, k).reshape(len(who), k)[valid]
        items = self.rows[labels[valid]]
        out[r, items] = sims[valid] + self.pop_weight * self.pop[items]
        return out

    __call__ = score

    # a fitted model as plain arrays and back (the methods' save / load): the index is rebuilt

    def state(self) -> dict:
        return {"table": self.table, "has_content": self.has_content, "pop": self.pop,
                "options": np.array([self.last, self.KINDS.index(self.index_kind), self.neighbours, self.hnsw_m,
                                     self.ivf_lists, self.nprobe, self.FALLBACKS.index(self.fallback),
                                     self.pop_weight], np.float64)}

    @classmethod
    def from_state(cls, state: dict) -> "ContentKNN":
        *ints, pop_weight = state["options"]
        last, kind, neighbours, hnsw_m, ivf_lists, nprobe, fallback = (int(x) for x in ints)
        return cls((state["table"], state["has_content"]), None, last, cls.KINDS[kind], neighbours,
                   cls.FALLBACKS[fallback], float(pop_weight), hnsw_m, ivf_lists, nprobe)._index(state["pop"])
