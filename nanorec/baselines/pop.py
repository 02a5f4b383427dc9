"""Popularity: every user gets the same ranking, most interacted-with items first."""
from __future__ import annotations

import numpy as np
import torch

from ..data import EvalSet, Sequences, item_counts


class Popularity:
    """Item counts over the sequences given to `fit`.

    Contract: score(histories (B rows), users (B,)) -> (B, N+1) float32 tensor,
    every row the same count vector (a fresh tensor); column 0 (padding) is 0.
    No hyper-parameters. Which interactions are counted is the caller's choice:
    leak-free (`ds.sequences.drop_last(1)`) or, as the published PopRec does,
    all interactions including the test targets (`ds.sequences`).
    """

    def fit(self, train: Sequences, num_items: int, valid: EvalSet | None = None) -> "Popularity":
        self.counts = torch.from_numpy(item_counts(train, num_items).astype(np.float32))  # (N+1,)
        return self

    def score(self, histories: Sequences, users: np.ndarray) -> torch.Tensor:
        return self.counts.repeat(len(histories), 1)  # (B, N+1), a fresh copy: the evaluator writes into it

    # a fitted model as plain arrays (a run folder's baseline.safetensors) and back
    def state(self) -> dict:
        return {"counts": self.counts.numpy()}

    @classmethod
    def from_state(cls, state: dict) -> "Popularity":
        m = cls()
        m.counts = torch.from_numpy(np.asarray(state["counts"], dtype=np.float32))
        return m
