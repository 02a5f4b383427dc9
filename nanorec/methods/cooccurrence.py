"""Co-occurrence: which items a user buys near each other, in either order."""
from __future__ import annotations

import numpy as np

from ..data import Sequences
from .transitions import Transitions, near_pairs, typed_pair_events


class CoOccurrence(Transitions):
    """`Transitions` over a wider pair: a and b count together, both ways, when at most `span` apart in
    one history (shampoo and conditioner, in either order); everything else, saving too, as `Transitions`."""

    def __init__(self, span: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.span = span

    def pair_events(self, train: Sequences) -> tuple[np.ndarray, np.ndarray]:
        """(i, j) flat event indices at most `span` apart in one row, both ways (or typed_pair_events)."""
        if train.has_context():
            return typed_pair_events(train, self.span, both=True)
        return near_pairs(train, np.arange(len(train.items)), self.span, both=True)
