"""GPT + item-to-item signals: the model's scores plus weighted terms that say how
well each item goes with the user's last items.

    score(item) = gpt logit(item) + w1 * log(transitions(item) + floor)
                                  + w2 * log(cooccurrence(item) + floor)
                                  + w3 * cos(content(last item), content(item))

transitions: what follows the user's last items (baselines/transitions.py);
cooccurrence: what is bought within a few positions of them, in either order
(baselines/cooccurrence.py), both counted on the training split; content: the
cosine of the run's frozen content vectors (content=; 0 for items without content,
and the term is absent without content). The GPT's term is its log-softmax; the
softmax's normaliser is the same for every item of a user, so it changes no list
and no rank, and is left out (a score is comparable within one user's list).

Why: a GPT's item vectors for rare items get mostly negative gradient, so an
item bought a handful of times is rarely ranked high, even right after the
item it always follows; the counts remember exactly that, and content says
which items are alike when the counts are thin. The weights are chosen on
validation NDCG@10 (one at a time, each on a grid, given the others); a weight
of 0 drops its term and all 0 is the plain GPT, so a term is only kept when
validation says it helps; the test split is never consulted.

Exact at any catalogue size: a table's row for a history is sparse (a few
hundred items follow the user's last items; every other item only gets the
popularity back-off, a per-item constant), and the content cosine is a dot
product. So the fused score is one `scoring.Factored`:

    [q_gpt, w3 * content(last)] . [item_gpt, content(item)]   (a dot product)
    + w1 * log(backoff1(item) + floor) + w2 * log(backoff2(item) + floor)   (a per-item bias)
    + the tables' sparse corrections at the items their rows reach        (a few per user)

and ranking, top-k and the weight search all run on it in chunks of the
catalogue with exact bounds (scoring.Ordered): no (users x items) matrix at any
size. `fuse_transitions=auto` is therefore simply on. With fusion on, training
fits both tables after the GPT, writes them to the run folder
(transitions.safetensors, cooccurrence.safetensors) and the chosen weights to
fusion.json, and every scorer of the run (evaluate, recommend, serve, the API)
uses the fused score.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .scoring import Factored, Scorer, Sparse, from_factors

SIGNALS = ("transitions", "cooccurrence", "content")  # the order of the weights everywhere
# The grid of a table's weight (it scales a log-probability). Up to 1.0 it covers every choice made on
# Beauty, Sports and LastFM (0.05-0.3). On the challenge-shaped `nanorec synth` log, whose follow-ups
# are first-order, the transitions table alone beats the GPT alone on validation (0.5635 vs 0.4397):
# a grid ending at 3 chose 3 and fused to 0.5564, below the table alone. Ending at 10 it chose 10
# (0.5631, still rising); past it, on the same run and validation sample (w2 = 0.75), 20 -> 0.5635,
# 50 -> 0.5634, 100 -> 0.5634, 1000 -> 0.5635: the table alone's figure, the GPT a tie-break. The grid
# ends at 50, so the choice there (20) lies inside it (benchmarks/results/seed_scale_cpu.json).
WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
CONTENT_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)  # the grid of content's weight (it scales a cosine in [-1, 1])
# The weights when there is nothing to choose on (holdout=none, all_data): the median of each weight
# validation chose on Beauty, Sports and LastFM, three seeds each (benchmarks/results/seeds_*.json);
# content's only where the run has content.
NO_VALIDATION = (0.1, 0.3, 0.5)
FLOOR = 1e-6  # the tables give every item at least their popularity back-off; this only guards log(0)
LEGACY_AUTO_MAX_ITEMS = 20_000  # runs written before fusion was exact: auto fused only up to this size


def enabled(setting: str) -> bool:
    """The fuse_transitions setting: "auto" and "true" fuse, "false" does not."""
    return setting != "false"


class ContentVectors:
    """The run's content tables as one unit-row matrix (N+1, sum D_i): the cosine of the
    last item's content with every item's is a dot product. Several tables: the mean of
    their cosines (each table's rows normalised, divided by sqrt(#tables); items without
    content are zero rows, so they score 0)."""

    def __init__(self, model):
        parts = [torch.nn.functional.normalize(c.table.float(), dim=1) * c.has_content[:, None]
                 for c in model.content]
        self.vectors = (torch.cat(parts, dim=1) / math.sqrt(len(parts))).detach()  # (N+1, D)

    def factors(self, histories, users=None) -> Factored:
        """q = each history's last item's vector (an empty history: row 0, all 0), items = all vectors."""
        last = np.zeros(len(histories), dtype=np.int64)
        has = histories.lengths > 0
        last[has] = histories.items[histories.offsets[1:][has] - 1]
        return Factored(self.vectors[torch.from_numpy(last).to(self.vectors.device)], self.vectors)


def content_term(model) -> ContentVectors | None:
    """The content term of a GPT with content tables, None without."""
    return ContentVectors(model) if len(model.content) else None


def table_log(f: Factored, device) -> tuple[torch.Tensor, Sparse]:
    """A count table's factored probabilities (bias = popularity back-off, one extra = the rows
    of the user's last items) -> their floored logs in the same form:
        log(backoff + rows + FLOOR) = log(backoff + FLOOR)  +  log1p(rows / (backoff + FLOOR))
    a per-item bias, plus a correction only where the rows are non-zero."""
    prior = f.bias.clamp_min(0).double()
    bias = torch.log(prior + FLOOR).float().to(device)
    e, = f.extras
    base = prior.numpy()[e.items] + FLOOR
    return bias, Sparse(e.rows, e.items, np.log1p(np.maximum(e.values, 0) / base).astype(np.float32))


class BatchTerms:
    """One batch's terms, each computed once (the GPT's forward pass, each table's rows,
    the content of the last items); `fused(weights)` combines them for any weights without
    copying them (a table's correction enters as its Sparse scaled by its weight), so a
    weight search pays for the expensive parts once per batch."""

    def __init__(self, gpt: Scorer, tables: list, content: ContentVectors | None, histories, users):
        self.gpt = gpt.factors(histories, users)
        dev = self.gpt.q.device
        self.logs = [None if t is None else table_log(t.factors(histories, users), dev) for t in tables]
        self.content = None if content is None else content.factors(histories, users)
        if self.content is not None:
            self.content = Factored(self.content.q.to(dev), self.content.items.to(dev))
            self.items_with_content = torch.cat([self.gpt.items, self.content.items], dim=1)

    def table(self, i: int) -> Factored | None:
        """Table i's term alone (weight 1), or None when it was not scored."""
        if self.logs[i] is None:
            return None
        q, items = self.gpt.q[:, :0], self.gpt.items[:, :0]
        return Factored(q, items, self.logs[i][0], (self.logs[i][1],))

    def fused(self, weights: tuple) -> Factored:
        """The fused scores for weights (w1, w2, w3) in SIGNALS order, as one Factored."""
        w3 = weights[2] if len(weights) > 2 else 0.0
        q, items = self.gpt.q, self.gpt.items
        if w3 and self.content is not None:
            q, items = torch.cat([q, w3 * self.content.q], dim=1), self.items_with_content
        bias, extras = None, []
        for w, log in zip(weights, self.logs):
            if log is None or not w:
                continue
            bias = w * log[0] if bias is None else bias + w * log[0]
            extras.append(log[1].scaled(w))
        return Factored(q, items, bias, tuple(extras))


def fused_scorer(gpt: Scorer, tables: list, content: ContentVectors | None, weights: tuple) -> Scorer:
    """(B histories) -> (B, N+1): the GPT's logits + sum_i weights[i] * term i, as a scorer
    with `factors` (ranked and cut to top-k in chunks). tables: [transitions, cooccurrence]
    (a table whose weight is 0 is never scored and may be None); content: content_term(model)
    or None. All weights 0: the GPT itself."""
    weights = tuple(weights) + (0.0,) * (3 - len(weights))
    if not any(weights):
        return gpt
    used = [t if w else None for t, w in zip(tables, weights[:2])] + [None] * (2 - len(tables))
    content = content if weights[2] else None
    return from_factors(lambda histories, users=None: BatchTerms(gpt, used, content, histories, users).fused(weights))


def grid_ndcg(gpt: Scorer, tables: list, content, grid: list, valid, batch_size: int) -> dict:
    """Validation NDCG@10 of every weight tuple of `grid`: each batch runs the GPT and the
    terms once, then ranks every combination (exactly, up to rank 10). -> {weights: NDCG@10}."""
    from .evaluate import evaluate_variants
    used = [t if any(ws[i] for ws in grid) else None for i, t in enumerate(tables)]
    content = content if any(ws[2] for ws in grid) else None

    def variants(histories, users):
        terms = BatchTerms(gpt, used, content, histories, users)
        for weights in grid:
            yield terms.fused(weights)

    metrics = evaluate_variants(variants, valid, len(grid), batch_size, max_rank=10)
    return {weights: m["NDCG@10"] for weights, m in zip(grid, metrics)}


def choose_weights(gpt: Scorer, tables: list, content, valid, batch_size: int = 1024) -> tuple[tuple, dict]:
    """The weights with the best validation NDCG@10, one term at a time (coordinate ascent):
    w1 on its grid, then w2 given w1, w1 again given w2, then w3 given both (where the run has
    content). Each step is one validation pass (grid_ndcg); the four cost about a third of
    the full WEIGHTS x WEIGHTS grid, which matters on a large validation set.
    Ties: the smallest weights. -> (weights, {"w1,w2,w3": NDCG@10} of every tuple tried)."""
    grids = (WEIGHTS, WEIGHTS, CONTENT_WEIGHTS)
    order = (0, 1, 0, 2) if content is not None else (0, 1, 0)
    scores: dict = {}
    best = (0.0, 0.0, 0.0)
    for i in order:
        tries = [best[:i] + (w,) + best[i + 1:] for w in grids[i]]
        new = [ws for ws in tries if ws not in scores]
        if new:
            scores.update(grid_ndcg(gpt, tables, content, new, valid, batch_size))
        best = max(scores, key=lambda ws: (scores[ws], [-w for w in ws]))
    return best, {",".join(str(w) for w in ws): v for ws, v in scores.items()}


def fit(gpt: Scorer, train, num_items: int, valid, batch_size: int = 1024, weights: tuple | None = None,
        content: ContentVectors | None = None):
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
    weights, grid = choose_weights(gpt, tables, content, valid, batch_size)
    return tables, weights, grid
