"""GPT + item-to-item signals: the model's scores plus weighted terms that say how
well each item goes with the user's last items.

    score(item) = gpt logit(item) + w1 * log(transitions(item) + floor)
                                  + w2 * log(cooccurrence(item) + floor)
                                  + w3 * cos(content(last item), content(item))

transitions / cooccurrence: methods/transitions.py, methods/cooccurrence.py, counted on the training
split; content: the run's frozen content vectors (0 for items without content; no term without
content=). The GPT's log-softmax normaliser is left out: it changes no rank within a user's list.
Why, and how the weights are searched: the README's scoring/fusion.py entry. A weight of 0 drops its
term (all 0: the plain GPT); the weights are chosen on validation, never on the test split.

Exact at any catalogue size: a table's row for a history is sparse (every item it does not reach
gets the popularity back-off, a per-item constant) and the cosine is a dot product, so the fused
score is one `scoring.Factored`:

    [q_gpt, w3 * content(last)] . [item_gpt, content(item)]   (a dot product)
    + w1 * log(backoff1(item) + floor) + w2 * log(backoff2(item) + floor)   (a per-item bias)
    + the tables' sparse corrections at the items their rows reach        (a few per user)

ranked, cut to top-k and searched in chunks of the catalogue with exact bounds (scoring.Ordered): no
(users x items) matrix at any size, so `fuse_transitions=auto` is simply on. Training then fits both
tables after the GPT (transitions.safetensors, cooccurrence.safetensors; the weights in fusion.json)
and every scorer of the run (evaluate, recommend, serve, the API) uses the fused score.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..config import WEIGHT_NAMES
from ..evaluation.metrics import factor_ranks, length_batches, metrics_from_ranks
from .scorer import Factored, Scorer, Sparse, from_factors

SIGNALS = WEIGHT_NAMES  # the weights' order everywhere (defined in config: no torch there)
# The weights without validation (holdout=none, all_data; content's only with content): the median
# of each weight chosen on Beauty, Sports and LastFM, three seeds each (benchmarks/results/seeds_*.json)
NO_VALIDATION = (0.1, 0.3, 0.5)
FLOOR = 1e-6  # the tables give every item at least their popularity back-off; this only guards log(0)
LEGACY_AUTO_MAX_ITEMS = 20_000  # runs written before fusion was exact: auto fused only up to this size


def enabled(setting: str) -> bool:
    """The fuse_transitions setting: "auto" and "true" fuse, "false" does not."""
    return setting != "false"


class ContentVectors:
    """The run's content tables as one matrix (N+1, sum D_i) of unit rows / sqrt(#tables): the mean
    cosine of the last item's content with every item's is a dot product (no content: 0 rows)."""

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
    """A count table's factored probabilities (bias: back-off, extra: the last items' rows) -> their
    floored logs, a per-item bias plus a correction where the rows are non-zero:
        log(backoff + rows + FLOOR) = log(backoff + FLOOR)  +  log1p(rows / (backoff + FLOOR))
    The prior is one tensor for the run: its log is taken once, and the same log tensor every batch
    also lets the catalogue's order by bias be reused."""
    def log_prior():  # (log(backoff + FLOOR) (V,) float32 on device, backoff + FLOOR (V,) float64)
        base = f.bias.clamp_min(0).double() + FLOOR
        return torch.log(base).float().to(device), base.numpy()
    bias, base = _memo(("prior", f.bias, str(device)), log_prior)
    e, = f.extras
    return bias, Sparse(e.rows, e.items, np.log1p(np.maximum(e.values, 0) / base[e.items]).astype(np.float32))


_MEMO: dict = {}  # the few tensors every batch shares (log priors, fused bias, GPT + content items), by their inputs


def _memo(key: tuple, make):
    """make() once per key (its tensors by storage and version, and held: no reuse of their memory)."""
    k = tuple((x.data_ptr(), x._version, tuple(x.shape), str(x.device)) if torch.is_tensor(x) else x for x in key)
    if k not in _MEMO:
        if len(_MEMO) >= 8:
            _MEMO.clear()
        _MEMO[k] = (key, make())
    return _MEMO[k][1]


class BatchTerms:
    """One batch's terms, each computed once (the GPT's forward pass, each table's rows, the last
    items' content); `fused(weights)` combines them for any weights without copying them."""

    def __init__(self, gpt: Scorer, tables: list, content: ContentVectors | None, histories, users):
        self.gpt = gpt.factors(histories, users)
        dev = self.gpt.q.device
        self.logs = [None if t is None else table_log(t.factors(histories, users), dev) for t in tables]
        self.content = None if content is None else content.factors(histories, users)
        if self.content is not None:
            self.content = Factored(self.content.q.to(dev), self.content.items.to(dev))
            self.items_with_content = _memo(("cat", self.gpt.items, self.content.items),
                                            lambda: torch.cat([self.gpt.items, self.content.items], dim=1))

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
        used = [(w, log) for w, log in zip(weights, self.logs) if log is not None and w]
        bias = None
        if used:  # the same weights and tables every batch: one bias tensor (its order by bias is reused too)
            bias = _memo(("bias",) + tuple(x for w, log in used for x in (float(w), log[0])),
                         lambda: sum((w * log[0] for w, log in used[1:]), used[0][0] * used[0][1][0]))
        return Factored(q, items, bias, tuple(log[1].scaled(w) for w, log in used))


def fused_scorer(gpt: Scorer, tables: list, content: ContentVectors | None, weights: tuple) -> Scorer:
    """The GPT's logits + sum_i weights[i] * term i, as a scorer with `factors`. tables: [transitions,
    cooccurrence] (one of weight 0 is never scored, may be None); content: content_term(model) or None.
    All weights 0: the GPT itself."""
    weights = tuple(weights) + (0.0,) * (3 - len(weights))
    if not any(weights):
        return gpt
    used = [t if w else None for t, w in zip(tables, weights[:2])] + [None] * (2 - len(tables))
    content = content if weights[2] else None
    return from_factors(lambda histories, users=None: BatchTerms(gpt, used, content, histories, users).fused(weights))


class ValidationTerms:
    """The validation users' `BatchTerms`, computed once and kept: `ndcg(weights)` ranks every target
    under any weights from them, exactly as `evaluate` ranks that fused scorer (factor_ranks,
    max_rank 10). tables / content: None where no weight the search may try uses them."""

    def __init__(self, gpt: Scorer, tables: list, content, valid, batch_size: int):
        self.targets = valid.targets
        self.batches = [(rows, hist, BatchTerms(gpt, tables, content, hist, valid.users[rows]))
                        for rows, hist in length_batches(valid, batch_size)]
        self.tried: dict = {}  # weights -> validation NDCG@10

    def ndcg(self, weights: tuple) -> float:
        """Validation NDCG@10 of the fused scores under weights (w1, w2, w3), each tuple ranked once."""
        weights = tuple(float(w) for w in weights)
        if weights not in self.tried:
            ranks = np.zeros(len(self.targets), dtype=np.int64)
            for rows, hist, terms in self.batches:
                ranks[rows] = factor_ranks(terms.fused(weights), hist, self.targets[rows], max_rank=10)[0]
            self.tried[weights] = metrics_from_ranks(ranks, [10])["NDCG@10"]
        return self.tried[weights]


# The weight search (`search_line`): coordinate ascent over [0, inf) in log space, values rounded to 3
# significant digits. The smallest weight within TOL of a line's best is chosen: past the point where
# the table decides the lists, larger weights only reorder near-ties (on the seed-scale synth, 62.5 to
# 91,200 all within 2e-4), and chasing that noise would walk the weight up without end.
# No fixed grid: on the `nanorec synth` log the transitions table alone beats the GPT, and grids ending
# at 3, then 10, then 50 chose their top value (benchmarks/results/seed_scale_cpu.json). The ladders are
# the grids this search replaced, so a line never ends below the grid's figure from the same start (on
# LastFM a 4-value ladder's golden steps missed the grid's 0.3: weight_search_lastfm.json).
LADDER = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)  # a table's weight (a log-prob's scale)
CONTENT_LADDER = (0.5, 1.0, 2.0, 4.0, 8.0)  # content's weight scales a cosine in [-1, 1]
STEP = 5.0
W_MIN, W_MAX = 1e-3, 1e6  # the steps stop there (W_MAX: far past any table's plateau)
GOLDEN = 4
TOL = 1e-4  # NDCG@10: about 3 of 27k validation users one rank apart near the top


def _round(w: float) -> float:
    return float(f"{w:.3g}")


def search_line(ndcg, point: tuple, i: int, ladder, step: float = STEP, golden: int = GOLDEN) -> tuple:
    """The value of weight i of `point` (the others fixed) chosen on validation (`ndcg(weights)`):
    0, the ladder, steps of `step` past its edge while the edge is the choice, then `golden`
    golden-section steps in log space around it. The choice among the values tried: the smallest
    within TOL of their best NDCG@10 and not below `point`'s. -> the point with weight i set."""
    at = lambda w: point[:i] + (w,) + point[i + 1:]  # noqa: E731
    tried = {0.0, point[i], *ladder}

    def choice():  # never below the point it started from: the coordinate ascent cannot go down
        bar = max(max(ndcg(at(w)) for w in tried) - TOL, ndcg(point))
        return min(w for w in tried if ndcg(at(w)) >= bar)

    best = choice()
    while best == max(tried) and best * step <= W_MAX:  # the choice is the top edge: go on upwards
        tried.add(_round(best * step))
        best = choice()
    while best and best == min(w for w in tried if w > 0) and best / step >= W_MIN:  # the bottom edge
        tried.add(_round(best / step))
        best = choice()
    if best and golden:  # golden section on log(w) between the choice's neighbours
        lo, hi = math.log(best / step), math.log(best * step)
        g = (math.sqrt(5) - 1) / 2
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        for _ in range(golden):
            wa, wb = _round(math.exp(a)), _round(math.exp(b))
            tried.update((wa, wb))
            if (ndcg(at(wa)), -wa) >= (ndcg(at(wb)), -wb):
                hi, b = b, a
                a = hi - g * (hi - lo)
            else:
                lo, a = a, b
                b = lo + g * (hi - lo)
        best = choice()
    return at(best)


def choose_weights(gpt: Scorer, tables: list, content, valid, batch_size: int = 1024,
                   near: tuple | None = None) -> tuple[tuple, dict]:
    """The weights with the best validation NDCG@10 (`search`; near, an update's run's weights: one
    pass from them, `search_near`), the terms computed once (`ValidationTerms`), each tuple ranked once.
    -> (weights, {"w1,w2,w3": NDCG@10} of every tuple tried)."""
    terms = ValidationTerms(gpt, tables, content, valid, batch_size)
    terms.ndcg((0.0, 0.0, 0.0))  # the GPT alone: the log's reference
    with_content = content is not None
    best = search(terms.ndcg, with_content) if near is None else search_near(terms.ndcg, near, with_content)
    return best, {",".join(str(w) for w in ws): v for ws, v in terms.tried.items()}


def search(ndcg, with_content: bool) -> tuple:
    """Coordinate ascent on ndcg(weights), a line each (`search_line`): w1, w2 given w1, w1 again,
    then w3 given both (with content) -> (w1, w2, w3)."""
    best = (0.0, 0.0, 0.0)
    for i in (0, 1, 0, 2) if with_content else (0, 1, 0):  # a weight searched again: from its value
        ladder = (best[i] / STEP, best[i] * STEP) if best[i] else CONTENT_LADDER if i == 2 else LADDER
        best = search_line(ndcg, best, i, tuple(_round(w) for w in ladder))
    return best


# An update's search: the run's weights were chosen on most of the same data, so one pass of NEAR-fold
# steps around each costs about a fifth of the full search's tuples. On the 300k-event shop's update the
# run's weights kept gave 0.948 of a retrain's next-week NDCG@10, the full search (48 tuples) 0.995
# (benchmarks/results/lifecycle.json has this search's figure).
NEAR = 2.0
NEAR_FROM_ZERO = (0.1, 0.1, 1.0)  # a term the run dropped (weight 0) is tried again at this weight


def search_near(ndcg, start: tuple, with_content: bool) -> tuple:
    """w1, w2 (and w3 with content) once each, from `start`: each line tries 0, start/NEAR and
    start*NEAR and steps on by NEAR while an edge is the choice (search_line). -> (w1, w2, w3)."""
    best = tuple(float(w) for w in start) + (0.0,) * (3 - len(start))
    for i in (0, 1, 2) if with_content else (0, 1):
        ladder = (best[i] / NEAR, best[i] * NEAR) if best[i] else (NEAR_FROM_ZERO[i],)
        best = search_line(ndcg, best, i, tuple(_round(w) for w in ladder), step=NEAR, golden=0)
    return best


def fit(gpt: Scorer, train, num_items: int, valid, batch_size: int = 1024, weights: tuple | None = None,
        content: ContentVectors | None = None, near: tuple | None = None):
    """Both tables fitted on the training split (window and decay chosen on `valid`), the weights
    chosen on `valid` (given `weights`: those; no validation: NO_VALIDATION; near: `search_near`'s
    start). content: `content_term(model)` or None. -> (tables [transitions, cooccurrence],
    weights (w1, w2, w3), {"w1,w2,w3": NDCG@10}, the weight search's seconds (0: nothing chosen))."""
    from ..methods.cooccurrence import CoOccurrence  # late: methods/ imports this module (gpt.py)
    from ..methods.transitions import Transitions
    tables = [Transitions().fit(train, num_items, valid), CoOccurrence().fit(train, num_items, valid)]
    if weights is None and valid is None:  # nothing to choose on; content's weight only with content
        weights = NO_VALIDATION if content is not None else NO_VALIDATION[:2] + (0.0,)
    if weights is not None:
        return tables, tuple(weights), {}, 0.0
    t0 = time.time()
    weights, grid = choose_weights(gpt, tables, content, valid, batch_size, near)
    return tables, weights, grid, round(time.time() - t0, 1)
