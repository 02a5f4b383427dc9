"""GPT + item-to-item signals: the model's log-probabilities plus weighted terms that say
how well each item goes with the user's last items.

    score(item) = log_softmax(gpt)(item) + w1 * log(transitions(item) + floor)
                                         + w2 * log(cooccurrence(item) + floor)
                                         + w3 * cos(content(last item), content(item))

transitions: what follows the user's last items (baselines/transitions.py);
cooccurrence: what is bought within a few positions of them, in either order
(baselines/cooccurrence.py), both counted on the training split; content: the
cosine of the run's frozen content vectors (content=; 0 for items without content,
and the term is absent without content).

Why: a GPT's item vectors for rare items get mostly negative gradient, so an
item bought a handful of times is rarely ranked high, even right after the
item it always follows; the counts remember exactly that, and content says
which items are alike when the counts are thin. The weights are chosen on
validation NDCG@10 (one at a time, each on a grid, given the others); a weight
of 0 drops its term and all 0 is the plain GPT, so a term is only kept when
validation says it helps; the test split is never consulted.
`fuse_transitions=auto` (the default) fuses catalogues of at most AUTO_MAX_ITEMS
items: above that the GPT is scored by norm-pruned chunks of items (scoring.py),
and fusion's full log-softmax would give that back; say `fuse_transitions=true`
to fuse anyway. With fusion on, training fits both tables after the GPT, writes
them to the run folder (transitions.safetensors, cooccurrence.safetensors) and
the chosen weights to fusion.json, and every scorer of the run (evaluate,
recommend, serve, the API) uses the fused score.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .scoring import Scorer, as_scores

AUTO_MAX_ITEMS = 20_000  # the same catalogue size at which loss=auto turns to the sampled softmax
SIGNALS = ("transitions", "cooccurrence", "content")  # the order of the weights everywhere
WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)  # the grid of a table's weight (it scales a log-probability)
CONTENT_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)  # the grid of content's weight (it scales a cosine in [-1, 1])
# The weights when there is nothing to choose on (holdout=none, all_data): the median of each weight
# validation chose on Beauty, Sports and LastFM, three seeds each (benchmarks/results/seeds_*.json);
# content's only where the run has content.
NO_VALIDATION = (0.1, 0.3, 0.5)
FLOOR = 1e-6  # the tables give every item at least their popularity back-off; this only guards log(0)


def enabled(setting: str, num_items: int) -> bool:
    """The fuse_transitions setting for a catalogue of num_items items."""
    return setting == "true" or (setting == "auto" and num_items <= AUTO_MAX_ITEMS)


def log_probs(gpt_scores) -> torch.Tensor:
    """(B, N+1) logits -> log-probabilities over items 1..N (padding -inf, out of the softmax)."""
    g = as_scores(gpt_scores)
    g[:, 0] = -math.inf
    return torch.log_softmax(g, dim=1)


def table_term(table: Scorer) -> Scorer:
    """A table's scores (probabilities, >= 0) -> their logs, floored: (B histories) -> (B, N+1)."""
    return lambda histories, users=None: torch.log(as_scores(table(histories, users)).clamp_min(0) + FLOOR)


def content_term(model) -> Scorer | None:
    """The cosine of the last item's content with every item's: (B histories) -> (B, N+1), or
    None for a model without content. Several tables: the mean of their cosines (each table's
    rows are normalised, items without content are zero rows, so they score 0)."""
    if not len(model.content):
        return None
    parts = [torch.nn.functional.normalize(c.table.float(), dim=1) * c.has_content[:, None] for c in model.content]
    vectors = (torch.cat(parts, dim=1) / math.sqrt(len(parts))).detach().cpu()  # (N+1, sum D_i)

    def term(histories, users=None):
        last = np.zeros(len(histories), dtype=np.int64)  # (B,) an empty history: row 0 (padding, all 0)
        has = histories.lengths > 0
        last[has] = histories.items[histories.offsets[1:][has] - 1]  # every other history's last item
        return vectors[torch.from_numpy(last)] @ vectors.T

    return term


def fused_scorer(gpt: Scorer, terms: list, weights: tuple[float, ...]) -> Scorer:
    """(B histories) -> (B, N+1): log_softmax(gpt) + sum_i weights[i] * terms[i].
    A term whose weight is 0 is never called (and may be None); all 0: the GPT itself
    (its chunked ranking stays available)."""
    used = [(t, w) for t, w in zip(terms, weights) if w != 0]
    if not used:
        return gpt

    def score(histories, users=None):
        out = log_probs(gpt(histories, users))
        for term, w in used:
            out.add_(term(histories, users), alpha=w)
        return out

    return score


def grid_ndcg(gpt: Scorer, terms: list, grid: list, valid, batch_size: int) -> dict:
    """Validation NDCG@10 of every weight tuple of `grid`: each batch runs the GPT and the
    terms once, then ranks every combination. -> {weights: NDCG@10}."""
    from .evaluate import evaluate_variants
    live = [i for i in range(len(terms)) if any(ws[i] for ws in grid)]

    def variants(histories, users):
        logp = log_probs(gpt(histories, users))
        values = {i: terms[i](histories, users) for i in live}
        for weights in grid:
            out = None  # one new (B, N+1) matrix per combination, the rest added in place
            for i in live:
                if weights[i] != 0:
                    out = torch.add(logp, values[i], alpha=weights[i]) if out is None \
                        else out.add_(values[i], alpha=weights[i])
            yield logp.clone() if out is None else out

    metrics = evaluate_variants(variants, valid, len(grid), batch_size)
    return {weights: m["NDCG@10"] for weights, m in zip(grid, metrics)}


def choose_weights(gpt: Scorer, terms: list, valid, batch_size: int = 1024) -> tuple[tuple, dict]:
    """The weights with the best validation NDCG@10, one term at a time (coordinate ascent):
    w1 on its grid, then w2 given w1, w1 again given w2, then w3 given both (where the run has
    content). Each step is one validation pass (grid_ndcg); the four cost about a third of
    the full WEIGHTS x WEIGHTS grid, which matters on a large validation set.
    Ties: the smallest weights. -> (weights, {"w1,w2,w3": NDCG@10} of every tuple tried)."""
    grids = (WEIGHTS, WEIGHTS, CONTENT_WEIGHTS)
    order = (0, 1, 0, 2) if terms[2] is not None else (0, 1, 0)
    scores: dict = {}
    best = (0.0, 0.0, 0.0)
    for i in order:
        tries = [best[:i] + (w,) + best[i + 1:] for w in grids[i]]
        new = [ws for ws in tries if ws not in scores]
        if new:
            scores.update(grid_ndcg(gpt, terms, new, valid, batch_size))
        best = max(scores, key=lambda ws: (scores[ws], [-w for w in ws]))
    return best, {",".join(str(w) for w in ws): v for ws, v in scores.items()}


def fit(gpt: Scorer, train, num_items: int, valid, batch_size: int = 1024, weights: tuple | None = None,
        content: Scorer | None = None):
    """Both tables fitted on the training split (each one's window and decay chosen on `valid`),
    the terms' weights chosen on `valid` -> (tables [transitions, cooccurrence], weights (w1, w2, w3),
    {"w1,w2,w3": NDCG@10}). content: `content_term(model)` (None: no content term). `weights`
    given (config fusion_weights): those, nothing chosen. Without validation users: NO_VALIDATION."""
    from .baselines.cooccurrence import CoOccurrence
    from .baselines.transitions import Transitions
    tables = [Transitions().fit(train, num_items, valid), CoOccurrence().fit(train, num_items, valid)]
    if weights is None and valid is None:  # nothing to choose on; content's weight only with content
        weights = NO_VALIDATION if content is not None else NO_VALIDATION[:2] + (0.0,)
    if weights is not None:
        return tables, tuple(weights), {}
    weights, grid = choose_weights(gpt, fused_terms(tables, content), valid, batch_size)
    return tables, weights, grid


def fused_terms(tables: list, content: Scorer | None) -> list:
    """The fused terms in SIGNALS order: each table's log, then content (None without it)."""
    return [table_term(t.score) for t in tables] + [content]
