"""Co-occurrence: which items a user buys near each other, in either order."""
from __future__ import annotations

import numpy as np

from ..data import Sequences
from .transitions import Transitions, typed_pair_events


class CoOccurrence(Transitions):
    """`Transitions` over a wider pair: a and b count together, both ways, when at most `span`
    positions apart in one history (the shampoo and the conditioner, whichever came first), where
    a target no transition reaches often sits. Everything else, saving included, as `Transitions`."""

    def __init__(self, span: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.span = span

    def pair_events(self, train: Sequences) -> tuple[np.ndarray, np.ndarray]:
        """(i, j) flat event indices at most `span` apart in one row, both ways (or typed_pair_events)."""
        if train.has_context():
            return typed_pair_events(train, self.span, both=True)
        row = np.repeat(np.arange(len(train.lengths)), train.lengths)  # (T,) the history of each item
        index = np.arange(len(train.items))
        src, dst = [], []
        for d in range(1, self.span + 1):
            same = row[:-d] == row[d:]  # item i and item i + d belong to one history
            a, b = index[:-d][same], index[d:][same]
            src += [a, b]
            dst += [b, a]
        if not src:
            return index[:0], index[:0]
        return np.concatenate(src), np.concatenate(dst)
