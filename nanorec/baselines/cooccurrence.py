"""Co-occurrence: which items a user buys near each other, in either order."""
from __future__ import annotations

import numpy as np

from ..data import Sequences
from .transitions import Transitions


class CoOccurrence(Transitions):
    """`Transitions` over a wider notion of a pair: a and b count together when they are at
    most `span` positions apart in one training history, in both directions.

    Transitions answer "what comes right after a"; co-occurrence also remembers what is
    bought a few steps before or after it (the shampoo and the conditioner, whichever came
    first), which is where a next-item target that no transition reaches often sits.
    Rows are normalised, backed off to popularity, scored over the user's last items and
    saved exactly as in `Transitions` (so a saved table loads with `Transitions.from_state`).
    """

    def __init__(self, span: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.span = span

    def pairs(self, train: Sequences) -> tuple[np.ndarray, np.ndarray]:
        row = np.repeat(np.arange(len(train.lengths)), train.lengths)  # (T,) the history of each item
        src, dst = [], []
        for d in range(1, self.span + 1):
            same = row[:-d] == row[d:]  # item i and item i + d belong to one history
            a, b = train.items[:-d][same], train.items[d:][same]
            src += [a, b]
            dst += [b, a]
        if not src:
            return train.items[:0], train.items[:0]
        return np.concatenate(src), np.concatenate(dst)
