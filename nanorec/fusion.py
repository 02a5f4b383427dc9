"""GPT + transitions: the model's log-probabilities plus a weighted log of the first-order
transition probabilities out of the user's last items.

    score(item) = log_softmax(gpt)(item) + w * log(transitions(item) + floor)

Why: a GPT's item vectors for rare items get mostly negative gradient, so an
item bought a handful of times is rarely ranked high, even right after the
item it always follows; the transition counts remember exactly that. The
weight w is chosen on validation NDCG@10 from a small grid (w = 0 is the plain
GPT, so fusion can only be kept when validation says it helps); the test split
is never consulted. `fuse_transitions=auto` (the default) fuses catalogues of at
most AUTO_MAX_ITEMS items: above that the GPT is scored by norm-pruned chunks of
items (scoring.py), and fusion's full log-softmax would give that back; say
`fuse_transitions=true` to fuse anyway. With fusion on, training fits the transitions
on the training split after the GPT, writes them to the run folder
(transitions.safetensors) and the chosen weight to metrics.json, and every
scorer of the run (evaluate, recommend, serve, the API) uses the fused score.
"""
from __future__ import annotations

import math

import torch

from .scoring import Scorer, as_scores

AUTO_MAX_ITEMS = 20_000  # the same catalogue size at which loss=auto turns to the sampled softmax
WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
FLOOR = 1e-6  # transitions give every item at least their popularity back-off; this only guards log(0)


def enabled(setting: str, num_items: int) -> bool:
    """The fuse_transitions setting for a catalogue of num_items items."""
    return setting == "true" or (setting == "auto" and num_items <= AUTO_MAX_ITEMS)


def fused_scorer(gpt: Scorer, transitions: Scorer, weight: float) -> Scorer:
    """(B histories) -> (B, N+1): log_softmax(gpt) + weight * log(transitions + FLOOR)."""
    if weight == 0:
        return gpt

    def score(histories, users=None):
        g = as_scores(gpt(histories, users))
        g[:, 0] = -math.inf  # padding: never a recommendation, and out of the softmax
        logp = torch.log_softmax(g, dim=1)
        t = as_scores(transitions(histories, users))
        return logp + weight * torch.log(t.clamp_min(0) + FLOOR)

    return score


def choose_weight(gpt: Scorer, transitions: Scorer, valid, batch_size: int = 1024) -> tuple[float, dict]:
    """The weight of WEIGHTS with the best validation NDCG@10 -> (weight, {weight: NDCG@10})."""
    from .evaluate import evaluate
    scores = {w: evaluate(fused_scorer(gpt, transitions, w), valid, batch_size=batch_size)["NDCG@10"]
              for w in WEIGHTS}
    best = max(WEIGHTS, key=lambda w: (scores[w], -w))  # ties: the smaller weight
    return best, scores


def fit(gpt: Scorer, train, num_items: int, valid, batch_size: int = 1024):
    """Transitions fitted on the training split (window and decay chosen on `valid`) and
    the fusion weight chosen on `valid` -> (transitions, weight, {weight: NDCG@10}).
    Without validation users there is nothing to choose on: weight 0.5."""
    from .baselines.transitions import Transitions
    trans = Transitions().fit(train, num_items, valid)
    if valid is None:
        return trans, 0.5, {}
    weight, grid = choose_weight(gpt, trans.score, valid, batch_size)
    return trans, weight, grid
