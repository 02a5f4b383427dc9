"""Popularity: every user gets the same ranking, most interacted-with items first."""
from __future__ import annotations

import numpy as np
import torch

from ..data import EvalSet, Sequences, item_counts
from ..scoring.scorer import Factored, from_factors


class Popularity:
    """Item counts over the sequences given to `fit` (the caller's choice: leak-free, or all of
    them as the published PopRec does); every row scores the counts, padding -inf. No settings."""

    def fit(self, train: Sequences, num_items: int, valid: EvalSet | None = None) -> "Popularity":
        self.counts = torch.from_numpy(item_counts(train, num_items).astype(np.float32))  # (N+1,)
        return self

    def factors(self, histories: Sequences, users=None) -> Factored:
        """Every row the counts: a bias alone (scoring.Factored), ranked in chunks of the catalogue."""
        B, n = len(histories), len(self.counts)
        return Factored(torch.zeros(B, 0), torch.zeros(n, 0), self.counts)

    @property
    def score(self):
        return from_factors(self.factors)

    def state(self) -> dict:
        return {"counts": self.counts.numpy()}

    @classmethod
    def from_state(cls, state: dict) -> "Popularity":
        m = cls()
        m.counts = torch.from_numpy(np.asarray(state["counts"], dtype=np.float32))
        return m
