"""Co-occurrence: which items a user buys near each other, in either order."""
from __future__ import annotations

import numpy as np

from ..data import Sequences
from .transitions import Transitions, typed_pair_events


class CoOccurrence(Transitions):
    """`Transitions` over a wider notion of a pair: a and b count together when they are at
    most `span` positions apart in one training history, in both directions.

    Transitions answer "what comes right after a"; co-occurrence also remembers what is
    bought a few steps before or after it (the shampoo and the conditioner, whichever came
    first), which is where a next-item target that no transition reaches often sits.
    Rows are normalised, backed off to popularity, scored over the user's last items and
    saved exactly as in `Transitions` (so a saved table loads with `Transitions.from_state`).
    With per-event weights each direction counts the weight of the event it points to (the
    candidate: b's for a -> b, a's for b -> a), as in `Transitions`; under target_filter the
    pairs are purchases of two items near each other (transitions.typed_pair_events).
    """

    def __init__(self, span: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.span = span

    def pair_events(self, train: Sequences) -> tuple[np.ndarray, np.ndarray]:
        """(i, j) flat event indices into train.items: every two events at most `span` apart in
        one row, in both directions (i -> j and j -> i); in an event-typed log purchases of two
        items at most `span` purchases apart (typed_pair_events)."""
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
