"""The one path from histories to scores and top-k lists: validation, evaluate, recommend, the
server and the leaderboard all score, mask seen items and cut lists here, one way.

    scorer(histories: Sequences (B rows), users: (B,) int64 | None) -> (B, N+1), higher is better

users: rows of `Dataset.user_ids` (per-user methods such as LightGCN; may be None). Column 0 is
padding, never recommended. A scorer may carry `factors(histories, users) -> Factored`: the same
scores as a dot product + a per-item bias + a few sparse additions per row (the GPT, the count
tables, their fusion), so `top_k` and `factor_ranks` visit the catalogue in chunks, best bound
first, and stop early, exactly: no (B, N+1) matrix at any catalogue size. Business filters come
as ONE item mask, `blocked` (N+1,) bool (`item_mask`), -inf before any list is cut.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..core.devices import autocast
from ..core.packing import left_aligned
from ..data import Sequences

Scorer = Callable[[Sequences, "np.ndarray | None"], "torch.Tensor | np.ndarray"]

# An excluded (already seen) item gets this score: below every real score but above
# padding's -inf, so a ranking (evaluation's top_k) holds the seen items last, and never
# padding. `recommend_lists` (what users see) turns such a fill into empty slots.
SEEN_SCORE = torch.finfo(torch.float32).min
# A blocked item (business filters) gets -inf, like padding: below seen items, never listed.
BLOCKED = -math.inf


def item_mask(num_items: int, allow: np.ndarray | None = None, deny: np.ndarray | None = None) -> torch.Tensor | None:
    """The business filters as (N+1,) bool, True = never listed (padding always); None when
    neither allow (the indices that alone may be listed) nor deny is given."""
    if allow is None and deny is None:
        return None
    blocked = torch.zeros(num_items + 1, dtype=torch.bool)
    if allow is not None:
        blocked[:] = True
        blocked[torch.from_numpy(np.asarray(allow, dtype=np.int64))] = False
    if deny is not None:
        blocked[torch.from_numpy(np.asarray(deny, dtype=np.int64))] = True
    blocked[0] = True
    return blocked


@dataclass
class Sparse:
    """Sparse additions to a batch's scores: scale * values[e] at (rows[e], items[e]); numpy (E,)
    arrays, pairs distinct and sorted as CSR stores them. Several Sparse may share their arrays
    and `memo` with other scales (a weight search): the pairs are then located once per batch."""
    rows: np.ndarray
    items: np.ndarray
    values: np.ndarray
    scale: float = 1.0
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_matrix(cls, m) -> "Sparse":
        """From a scipy.sparse (B, V) matrix (its stored entries)."""
        m = m.tocsr()
        m.sum_duplicates()  # also sorts each row's items
        m = m.tocoo()
        return cls(m.row.astype(np.int64), m.col.astype(np.int64), m.data.astype(np.float32))

    def scaled(self, scale: float) -> "Sparse":
        """The same pairs and values (shared, not copied) times another scale."""
        return Sparse(self.rows, self.items, self.values, scale, self.memo)


@dataclass
class Factored:
    """scores (B, V) = q (B, C) @ items (V, C).T + bias (V,) + the extras (`Sparse`), on one device;
    C may be 0, bias None (a count table: its back-off is the bias, its rows extras). Padding -inf."""
    q: torch.Tensor
    items: torch.Tensor
    bias: torch.Tensor | None = None
    extras: tuple = ()

    def dense(self) -> torch.Tensor:
        """The (B, V) scores as one matrix (small batches, generation)."""
        s = torch.mm(self.q, self.items.T)
        if self.bias is not None:
            s += self.bias[None, :]
        for e in self.extras:
            if len(e.rows):
                idx = (torch.from_numpy(e.rows).to(s.device), torch.from_numpy(e.items).to(s.device))
                s.index_put_(idx, torch.from_numpy(e.values * np.float32(e.scale)).to(s.device), accumulate=True)
        s[:, 0] = -math.inf
        return s


def from_factors(factors) -> Scorer:
    """A scorer of `factors(histories, users).dense()`, carrying `factors` for the chunked paths."""

    @torch.no_grad()
    def score(histories: Sequences, users=None) -> torch.Tensor:
        return factors(histories, users).dense().float().cpu()

    score.factors = factors
    return score


def gpt_scorer(model, device: str = "cpu") -> Scorer:
    """A scorer from a GPT: the logits after each history's last block_size items -> (B, N+1) on
    the CPU, with `factors` -> Factored(q (B, C), items (N+1, C)) on `device`. Histories run in
    groups of similar length, so a batch of mostly short ones is not padded to its longest."""
    cfg = model.cfg

    def run(fn, histories):
        tokens, seq_ids, pos_ids, last = left_aligned(histories, cfg.block_size)
        t = lambda a: torch.from_numpy(a).to(device)
        was_training = model.training
        model.eval()
        try:
            with autocast(cfg.dtype, device):
                return fn(t(tokens), t(pos_ids), t(seq_ids), t(last))
        finally:
            model.train(was_training)

    @torch.no_grad()
    def score(histories: Sequences, users=None) -> torch.Tensor:
        return run(model.score, histories).float().cpu()

    @torch.no_grad()
    def factors(histories: Sequences, users=None):
        lengths = np.minimum(histories.lengths, cfg.block_size)
        group = np.ceil(np.log2(np.maximum(lengths, 1))).astype(np.int64)  # padded to the next power of two
        q, items = None, None
        for g in np.unique(group):
            rows = np.nonzero(group == g)[0]
            h, items = run(model.query, histories.take(rows) if len(rows) < len(lengths) else histories)
            if q is None:
                q = torch.empty(len(lengths), h.shape[1], dtype=torch.float32, device=h.device)
            q[torch.from_numpy(rows).to(h.device)] = h.float()
        if q is None:  # no histories at all
            items = model.item_embeddings()
            q = torch.empty(0, items.shape[1], dtype=torch.float32, device=items.device)
        return Factored(q, items.detach().float())

    score.factors = factors
    return score


def as_scores(scores) -> torch.Tensor:
    """A scorer's output as a writable, contiguous float32 tensor that the caller owns."""
    if isinstance(scores, np.ndarray):
        return torch.from_numpy(np.array(scores, dtype=np.float32))  # own copy
    scores = scores.float()
    return scores if scores.is_contiguous() else scores.contiguous()  # e.g. an expanded view


def mask_seen(scores: torch.Tensor, histories: Sequences, value: float = SEEN_SCORE) -> None:
    """In place: row b's seen items (Sequences.seen_items: its targets under target_filter) get `value`."""
    histories = histories.seen_items()
    rows = torch.from_numpy(np.repeat(np.arange(len(histories)), histories.lengths))
    scores[rows, torch.from_numpy(histories.items)] = value


def score_histories(scorer: Scorer, histories: Sequences, users=None, exclude_seen: bool = True) -> torch.Tensor:
    """(B, N+1) scores ready to rank: padding -inf, seen items SEEN_SCORE when exclude_seen."""
    scores = as_scores(scorer(histories, users))
    scores[:, 0] = -math.inf
    if exclude_seen:
        mask_seen(scores, histories)
    return scores


def top_k(scorer: Scorer, histories: Sequences, users=None, k: int = 10,
          exclude_seen: bool = True, chunk: int = 0, blocked: torch.Tensor | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """One-shot lists -> items (B, k) int64, scores (B, k): exactly the first k of a stable full
    sort of each row (ties: lower index first), seen items at SEEN_SCORE, blocked ones never.
    A factored scorer is scored `chunk` items at a time (default 2048 on CPU, 65536 on GPU),
    best bound first (`Ordered`): a row stops once its bound (Cauchy-Schwarz for the dot
    product, exact maxima for the rest) is below its k-th best, usually after the first chunk."""
    with torch.no_grad():
        idx, vals = _top_k(scorer, histories, users, k, exclude_seen, chunk, blocked)
        if blocked is not None:  # the -inf tail: no item (a bound may have stopped the row before it)
            empty = ~(vals > BLOCKED)
            idx[empty], vals[empty] = 0, BLOCKED
        return idx, vals


def _top_k(scorer, histories, users, k, exclude_seen, chunk, blocked):
    factors = getattr(scorer, "factors", None)
    if factors is None:
        scores = score_histories(scorer, histories, users, exclude_seen)
        if blocked is not None:
            scores[:, blocked] = BLOCKED
        idx, vals = bounded_top_k(lambda a, b, rows: scores[:, a:b], scores.shape[1], k, chunk or 8192)
        return idx.numpy(), vals.numpy()
    f = factors(histories, users)
    chunk = max(chunk or (2048 if f.q.device.type == "cpu" else 65536), k + 1)
    cat = Ordered(f, histories if exclude_seen else None, chunk, blocked, k)
    floor = _probe_floor(cat, k, chunk)
    if cat.cand is not None and cat.cand.floor is not None:  # k scored candidates reach theirs too
        floor = torch.maximum(floor, cat.cand.floor)
    initial = None
    if cat.cand is not None:
        c = cat.cand
        scores = c.scores.clone()
        scores[torch.from_numpy(c.seen).to(scores.device)] = SEEN_SCORE
        if cat.blocked is not None:  # after the seen mask: a blocked item is never listed, seen or not
            scores[cat.blocked[torch.from_numpy(c.items).to(scores.device)]] = BLOCKED
        initial = (torch.from_numpy(c.rows).to(scores.device), torch.from_numpy(c.items).to(scores.device), scores)
    idx, vals = bounded_top_k(lambda a, b, rows: cat.scores(a, b, rows, SEEN_SCORE), cat.num_items, k, chunk,
                              floor, cat.order, cat.bound, initial)
    return idx.cpu().numpy(), vals.cpu().numpy()


_CACHE: dict = {}  # name -> (key, the tensors it was made from, value): one entry a name, replaced whole


def _cached(name: str, tensors: tuple, make, *extra):
    """make(), once per the tensors' storage, version, shape, device and dtype (and `extra`); the
    entry holds the tensors, so their memory cannot be reused by another table meanwhile."""
    key = tuple((t.data_ptr(), t._version, tuple(t.shape), str(t.device), t.dtype) for t in tensors) + extra
    if _CACHE.get(name, (None,))[0] != key:
        _CACHE[name] = (key, tensors, make())
    return _CACHE[name][2]


def by_norm(items: torch.Tensor):
    """Items by decreasing norm -> (order: position -> item, where: item -> position, the
    reordered (V, C) matrix, norms (V,) numpy), cached: a model's table is reordered once."""
    return _ordered(items, (lambda: items.norm(dim=1)) if items.shape[1] else None, items)


def _ordered(key_tensor, key_values, items):
    """key_values: () -> (V,) the values to order by (called on a cache miss only), or None."""
    def make():
        V = items.shape[0]
        values = torch.zeros(V, device=items.device) if key_values is None else key_values()
        order = torch.argsort(values, descending=True, stable=True)
        where = torch.empty_like(order)
        where[order] = torch.arange(V, device=order.device)
        norms = items.norm(dim=1)[order].cpu().numpy() if items.shape[1] else np.zeros(V, np.float32)
        return order, where, items[order].contiguous(), norms
    return _cached("order", (key_tensor,), make, tuple(items.shape))


def _bias_by_position(bias: torch.Tensor, order: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """(bias in the visiting order (V,), its suffix maxima (V,) float64), cached."""
    def make():
        ranked = bias[order].contiguous()
        return ranked, np.maximum.accumulate(ranked.double().cpu().numpy()[::-1])[::-1]
    return _cached("bias", (bias, order), make)


class Pairs:
    """(row, item) pairs of a batch (seen items, or sparse candidates) bucketed by chunk of
    visiting positions, by a stable radix sort (linear: a batch may hold millions of pairs)."""

    def __init__(self, rows: np.ndarray, items: np.ndarray, where: torch.Tensor, n_rows: int, chunk: int):
        n_chunks = -(-len(where) // chunk)
        pos = where.cpu().numpy()[items] if len(items) else np.zeros(0, np.int64)
        cid = (pos // chunk).astype(np.int16 if n_chunks < 2 ** 15 else np.int32)
        o = np.argsort(cid, kind="stable")  # radix sort: linear
        self.starts = np.searchsorted(cid[o], np.arange(n_chunks + 1))
        self.rows, self.pos, self.n, self.chunk = rows[o], pos[o], n_rows, chunk

    @classmethod
    def seen(cls, histories: Sequences | None, where: torch.Tensor, chunk: int) -> "Pairs":
        """The items of each row's history (none when histories is None)."""
        if histories is None:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), where, 0, chunk)
        rows = np.repeat(np.arange(len(histories)), histories.lengths)
        return cls(rows, histories.items, where, len(histories), chunk)

    def mask(self, s: torch.Tensor, a: int, b: int, rows, value: float) -> None:
        """In place: s (rows of the batch, b - a; a a chunk start) gets `value` at the pairs."""
        c = a // self.chunk
        lo, hi = self.starts[c], self.starts[min(c + 1, len(self.starts) - 1)]
        if hi <= lo:
            return
        r, p = self.rows[lo:hi], self.pos[lo:hi] - a
        if rows is not None:  # s holds only these rows of the batch
            slot = np.full(self.n, -1, dtype=np.int64)
            slot[rows.cpu().numpy()] = np.arange(len(rows))
            r = slot[r]
            keep = r >= 0
            r, p = r[keep], p[keep]
        s[torch.from_numpy(r).to(s.device), torch.from_numpy(p).to(s.device)] = value

    def probe(self, s: torch.Tensor, col: torch.Tensor, order: torch.Tensor, value: float) -> None:
        """In place on probe scores s (B, P): the pairs whose item is a probe column get `value`."""
        if not len(self.pos):
            return
        c = col[order[torch.from_numpy(self.pos).to(s.device)]]  # position -> item -> probe column
        hit = c >= 0
        s[torch.from_numpy(self.rows).to(s.device)[hit], c[hit]] = value


class Ordered:
    """A `Factored` batch with its items in visiting order (decreasing norm; decreasing bias
    without a dot product), its seen items located by chunk, the pairs the sparse extras reach
    scored apart, exactly (`cand`: else a few large additions would keep every bound high to the
    end), and `bound(a)` = |q| x (largest norm from a on) + (largest bias from a on), over open
    (unblocked) items only: a row whose k-th best (or target) score is above it is done."""

    def __init__(self, f: Factored, seen: Sequences | None, chunk: int, blocked: torch.Tensor | None = None,
                 k: int = 0):
        self.f, self.q, self.chunk = f, f.q, chunk
        self.device, self.num_items = f.q.device, f.items.shape[0]
        ordered = by_norm(f.items) if f.items.shape[1] or f.bias is None else _ordered(f.bias, lambda: f.bias, f.items)
        self.order, self.where, self.ranked, self.norms = ordered
        self.bias, self.bias_max = (None, np.zeros(self.num_items)) if f.bias is None else \
            _bias_by_position(f.bias, self.order)
        self.pad = int(self.where[0])
        self.blocked = self.blocked_pos = None
        if blocked is not None:
            self.blocked = blocked.to(self.device)
            self.blocked_pos = self.blocked[self.order]  # (V,) by position
            self._bound_open_only()
        seen = None if seen is None else seen.seen_items()  # what exclude_seen removes
        self.seen = Pairs.seen(seen, self.where, chunk)
        live = [e for e in f.extras if len(e.rows) and e.scale]
        self.qn = f.q.norm(dim=1)
        self.cand = None
        if live:
            item_norms = None if k <= 0 else ordered[3][self.where.cpu().numpy()]  # (V,) by item
            self.cand = Candidates(f, live, self.where, chunk, seen, self.blocked, k, self.qn, item_norms)

    def scores(self, a: int, b: int, rows, seen_value: float | None) -> torch.Tensor:
        """(len(rows) or B, b - a) scores of positions [a, b); seen items seen_value (None: kept)."""
        s = torch.mm(self.q if rows is None else self.q[rows], self.ranked[a:b].T)
        if self.bias is not None:
            s += self.bias[None, a:b]
        if a <= self.pad < b:
            s[:, self.pad - a] = -math.inf
        if seen_value is not None:
            self.seen.mask(s, a, b, rows, seen_value)
        if self.cand is not None:  # scored one by one, exactly (Candidates): out of the chunks
            self.cand.pairs.mask(s, a, b, rows, -math.inf)
        if self.blocked_pos is not None:  # after the seen mask: blocked wins
            s[:, self.blocked_pos[a:b]] = BLOCKED
        return s

    def _bound_open_only(self) -> None:
        """norms[a], bias_max[a] over the open positions >= a only; open_from[a]: any left."""
        open_ = ~self.blocked_pos.cpu().numpy()
        norms = np.where(open_, self.norms, 0.0)
        self.norms = np.maximum.accumulate(norms[::-1])[::-1].astype(np.float32)
        bias = self.bias.double().cpu().numpy() if self.bias is not None else np.zeros(self.num_items)
        bias = np.where(open_, bias, -np.inf)
        self.bias_max = np.maximum.accumulate(bias[::-1])[::-1]
        self.open_from = np.maximum.accumulate(open_[::-1])[::-1]

    def bound(self, a: int) -> torch.Tensor:
        """(B,) no score at positions >= a exceeds it (room left for float rounding)."""
        if self.blocked_pos is not None and not self.open_from[a]:  # only blocked items left
            return torch.full_like(self.qn, BLOCKED)
        dot = (self.qn * float(self.norms[a]) * (1 + 1e-4) + 1e-30).double()  # |q| |w|, room for rounding
        rest = torch.full_like(dot, float(self.bias_max[a]))
        return (dot + rest + 1e-5 * (dot.abs() + rest.abs()) + 1e-30).float()


class Candidates:
    """The (row, item) pairs a batch's sparse extras reach (their union; seen pairs flagged), each
    scored exactly, and located (`pairs`) so the chunked passes leave them out. The union, the
    location and the dot products are memoised in the first extra's memo: a weight search that
    only rescales the extras computes them once per batch."""

    def __init__(self, f: Factored, live: list, where: torch.Tensor, chunk: int, seen: Sequences | None,
                 blocked: torch.Tensor | None = None, list_k: int = 0, qn: torch.Tensor | None = None,
                 item_norms: np.ndarray | None = None):
        V, dev, memo = f.items.shape[0], f.q.device, live[0].memo
        ukey = tuple(id(e.values) for e in live)
        if memo.get("union_key") != ukey:
            union, at = _sorted_union([e.rows * V + e.items for e in live])  # each ascending
            memo.update(union_key=ukey, union=union, at=at, union_refs=[e.values for e in live])
        union, at = memo["union"], memo["at"]
        self.rows, self.items = union // V, union % V
        self.seen = np.zeros(len(union), dtype=bool)
        if seen is not None and len(seen.items) and len(union):  # few history pairs: search them in the union
            hist = np.repeat(np.arange(len(seen)), seen.lengths) * V + seen.items
            at_h = np.minimum(np.searchsorted(union, hist), len(union) - 1)
            self.seen[at_h[union[at_h] == hist]] = True
        self.floor = None
        if list_k > 0 and all(e.scale >= 0 and (not len(e.values) or e.values.min() >= 0) for e in live):
            # top-k lists: only the pairs that can still reach a list are scored (extras >= 0)
            self._prune(f, live, at, blocked, list_k, qn, item_norms, where, chunk)
            return
        pkey = (where.data_ptr(), where._version, len(where), chunk, ukey)
        if memo.get("pairs_key") != pkey:
            memo.update(pairs_key=pkey, pairs=Pairs(self.rows, self.items, where, len(f.q), chunk), where_ref=where)
        self.pairs = memo["pairs"]
        dkey = (f.q.data_ptr(), f.q._version, tuple(f.q.shape), f.items.data_ptr(), f.items._version, ukey)
        if memo.get("dot_key") != dkey:
            memo.update(dot_key=dkey, dot=_pair_dots(f.q, f.items, self.rows, self.items), dot_refs=(f.q, f.items))
        scores = memo["dot"].clone()  # (U,) float32 on the device
        items_t = torch.from_numpy(self.items).to(dev)
        if f.bias is not None:
            scores += f.bias[items_t]
        for e, idx in zip(live, at):  # one extra at a time, as Factored.dense adds them
            scores.index_add_(0, torch.from_numpy(idx).to(dev), torch.from_numpy(e.values * np.float32(e.scale)).to(dev))
        scores[items_t == 0] = -math.inf
        self.scores = scores

    def _prune(self, f: Factored, live: list, at: list, blocked, k: int, qn: torch.Tensor, item_norms,
               where: torch.Tensor, chunk: int) -> None:
        """Keep only the pairs that can reach the row's k-th best, scored exactly; sets `floor` (B,):
        the k-th best exact score of each row's 2k pairs of highest ub = |q| |item| + bias + extras.
        A pair below it is dropped: the chunks score its item without the extras (>= 0, as fusion's
        are), lower still; seen and blocked pairs too (the chunks give them SEEN_SCORE / BLOCKED)."""
        dev, B, E = f.q.device, len(f.q), len(self.rows)
        rows, items = self.rows, self.items
        extras = []  # (E,) each extra's scaled value at every pair (0 where it has none), float32 as added
        size = np.zeros(E, dtype=np.float32)  # the parts' magnitudes: room for float32 rounding
        for e, idx in zip(live, at):
            extras.append(np.zeros(E, dtype=np.float32))
            extras[-1][idx] = e.values * np.float32(e.scale)
            size += extras[-1]
        ub = size.copy()  # extras + bias + the dot product's bound
        if f.bias is not None:
            b = f.bias.cpu().numpy()[items]
            ub += b
            size += np.abs(b)
        dot = qn.cpu().numpy()[rows] * item_norms[items] * np.float32(1 + 1e-4)
        ub += dot
        ub += np.float32(1e-4) * (size + dot) + np.float32(1e-30)
        out = self.seen | (items == 0) | np.isnan(ub)  # nan: an infinite bias (the score is -inf)
        if blocked is not None:
            out |= blocked.cpu().numpy()[items]
        ub[out] = -np.inf
        # each row's 2k pairs of highest ub (pairs come row by row), scored exactly: their k-th best is a floor
        counts = np.bincount(rows, minlength=B)
        starts = np.cumsum(counts) - counts
        mat = torch.full((B, max(int(counts.max(initial=0)), 2 * k)), -math.inf)  # float32: only picks the pairs
        mat[torch.from_numpy(rows), torch.from_numpy(np.arange(E) - starts[rows])] = torch.from_numpy(ub)
        top = mat.topk(2 * k, dim=1)
        real = torch.isfinite(top.values)
        pick = (top.indices + torch.from_numpy(starts)[:, None])[real].numpy()
        exact = torch.full((E,), math.nan, dtype=torch.float32, device=dev)
        exact[torch.from_numpy(pick).to(dev)] = self._exact(f, extras, pick)
        best = torch.full((B, 2 * k), -math.inf, dtype=torch.float32, device=dev)
        best[real.to(dev)] = exact[torch.from_numpy(pick).to(dev)]
        floor = best.topk(k, dim=1).values[:, -1]
        keep = np.nonzero((ub >= floor.cpu().numpy()[rows]) & ~out)[0]
        keep_t = torch.from_numpy(keep).to(dev)
        todo = keep[torch.isnan(exact[keep_t]).cpu().numpy()]  # the picked ones are scored already: same values
        exact[torch.from_numpy(todo).to(dev)] = self._exact(f, extras, todo)
        self.rows, self.items, self.seen = rows[keep], items[keep], np.zeros(len(keep), dtype=bool)
        self.scores = exact[keep_t]
        self.pairs = Pairs(self.rows, self.items, where, B, chunk)
        self.floor = floor

    def _exact(self, f: Factored, extras: list, sub: np.ndarray) -> torch.Tensor:
        """(len(sub),) exact scores of the pairs `sub`, added in Factored.dense's order."""
        dev = f.q.device
        items = self.items[sub]
        scores = _pair_dots(f.q, f.items, self.rows[sub], items)
        items_t = torch.from_numpy(items).to(dev)
        if f.bias is not None:
            scores += f.bias[items_t]
        for value in extras:
            scores += torch.from_numpy(value[sub]).to(dev)
        scores[items_t == 0] = -math.inf
        return scores


def _sorted_union(keys: list) -> tuple[np.ndarray, list]:
    """The union of ascending arrays of distinct keys -> (union (U,), [each array's positions in it])."""
    allk = np.concatenate(keys)
    o = np.argsort(allk, kind="stable")
    s = allk[o]
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] != s[:-1]
    pos = np.empty(len(s), dtype=np.int64)
    pos[o] = np.cumsum(new) - 1
    ends = np.cumsum([len(k) for k in keys])
    return s[new], np.split(pos, ends[:-1])


def _pair_dots(q: torch.Tensor, items: torch.Tensor, rows: np.ndarray, cols: np.ndarray,
               block: int = 1 << 18) -> torch.Tensor:
    """(E,) q[rows[e]] . items[cols[e]], in blocks of pairs (bounded memory)."""
    out = torch.zeros(len(rows), dtype=torch.float32, device=q.device)
    if q.shape[1] == 0 or not len(rows):
        return out
    for a in range(0, len(rows), block):
        r = torch.from_numpy(rows[a:a + block]).to(q.device)
        c = torch.from_numpy(cols[a:a + block]).to(q.device)
        out[a:a + block] = torch.bmm(items[c].unsqueeze(1), q[r].unsqueeze(2)).view(-1)
    return out


def _probe_floor(cat: Ordered, k: int, size: int) -> torch.Tensor:
    """(B,) each row's k-th best among the `size` best items for the batch's mean query: rows stop early."""
    f, V, dev = cat.f, cat.num_items, cat.device
    size = min(size, V)
    guess = f.items @ f.q.mean(dim=0)
    if f.bias is not None:
        guess = guess + f.bias
    if cat.blocked is not None:  # probe the open items first: a floor they reach
        guess = guess.masked_fill(cat.blocked, BLOCKED)
    probe = guess.topk(size).indices  # (P,) item indices
    s = f.q @ f.items[probe].T  # (B, P)
    if f.bias is not None:
        s += f.bias[probe][None, :]
    col = torch.full((V,), -1, dtype=torch.int64, device=dev)
    col[probe] = torch.arange(size, device=dev)
    cat.seen.probe(s, col, cat.order, SEEN_SCORE)
    if cat.cand is not None:  # the candidates' own scores are merged apart: here they only must not count
        cat.cand.pairs.probe(s, col, cat.order, -math.inf)
    if col[0] >= 0:  # padding
        s[:, col[0]] = -math.inf
    if cat.blocked is not None:
        s[:, cat.blocked[probe]] = BLOCKED
    kth = s.topk(k, dim=1).values[:, -1]
    # The chunks compute the same scores with other matrix shapes, so their float rounding may
    # put the k-th item a hair below its probe score: a floor that high would drop it. Lower it
    # by more than any rounding of |q| |w| + |bias| (a lower floor only means a little more work).
    slack = cat.qn * float(cat.norms[0]) if f.items.shape[1] else torch.zeros_like(kth)
    if f.bias is not None:
        finite = f.bias[torch.isfinite(f.bias)]
        slack = slack + (float(finite.abs().max()) if len(finite) else 0.0)
    return kth - (slack * 1e-4 + 1e-30)


_LOW32 = 2 ** 32 - 1


def _sort_keys(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered like (score desc, index asc): monotone float bits; -0.0 = +0.0."""
    bits = (values.float() + 0.0).view(torch.int32).to(torch.int64)
    mono = torch.where(bits >= 0, bits, -(2 ** 31) - 1 - bits)
    return mono * (2 ** 32) + (_LOW32 - index)


def _from_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mono = keys >> 32
    bits = torch.where(mono >= 0, mono, -(2 ** 31) - 1 - mono).to(torch.int32)
    return _LOW32 - (keys & _LOW32), bits.view(torch.float32)


def bounded_top_k(chunk_scores, num_cols: int, k: int, chunk: int, floor: torch.Tensor | None = None,
                  col_index: torch.Tensor | None = None, bound=None, initial=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best columns of every row, `chunk` at a time -> indices, scores (B, k): the first k of a
    stable full sort (exact (score desc, index asc) keys). chunk_scores(a, b, rows) -> scores;
    floor (B,): a score k columns reach; col_index: each column's item index; bound(a) -> (B,): no
    score in columns >= a exceeds it; initial (rows ascending, index, scores): merged first."""
    chunk = max(chunk, k + 1)
    if floor is None:
        floor = chunk_scores(0, min(chunk, num_cols), None).topk(k, dim=1).values[:, -1].clone()
    thr = floor
    B, dev = len(thr), thr.device
    best = torch.full((B, k), _EMPTY, dtype=torch.int64, device=dev)
    if initial is not None and len(initial[0]):  # grouped by row: each row's k best by one topk
        r, index, scores = initial
        counts = torch.bincount(r, minlength=B)
        starts = torch.cumsum(counts, 0) - counts
        mat = torch.full((B, max(int(counts.max()), k)), _EMPTY, dtype=torch.int64, device=dev)
        mat[r, torch.arange(len(r), device=dev) - starts[r]] = _sort_keys(scores, index)
        best = mat.topk(k, dim=1).values  # keys descending: (score desc, index asc)
        full = best[:, -1] != _EMPTY
        thr[full] = torch.maximum(thr[full], _from_keys(best[full, -1])[1])
    for a in range(0, num_cols, chunk):
        b = min(a + chunk, num_cols)
        rows = None
        if bound is not None:
            bnd = bound(a)
            rows = torch.nonzero((bnd >= thr) & (bnd > -math.inf), as_tuple=True)[0]  # -inf: only blocked left
            if len(rows) == 0:
                break  # columns are visited by decreasing bound: no row can improve any more
            if len(rows) == B:
                rows = None
        s = chunk_scores(a, b, rows)
        sub_thr = thr if rows is None else thr[rows]
        active = torch.nonzero(s.amax(dim=1) >= sub_thr, as_tuple=True)[0]
        if len(active) == 0:
            continue
        r, cols = torch.nonzero(s[active] >= sub_thr[active, None], as_tuple=True)
        index = cols + a if col_index is None else col_index[cols + a]
        keys = _sort_keys(s[active[r], cols], index)
        if rows is not None:
            active = rows[active]  # rows of the batch
        _merge(best, thr, active, r, keys, k)
    return _from_keys(best)


def _merge(best: torch.Tensor, thr: torch.Tensor, active: torch.Tensor, r: torch.Tensor, keys: torch.Tensor,
           k: int) -> None:
    """In place: rows `active` of best (B, k) take the k largest of theirs and the new `keys`
    (r: index into `active`); thr rises to a full row's k-th."""
    dev, T = best.device, len(active)
    # merge with the active rows' k best: keys descending, then rows ascending (stable)
    r = torch.cat([torch.arange(T, device=dev).repeat_interleave(k), r])
    keys = torch.cat([best[active].reshape(-1), keys])
    o1 = torch.sort(keys, descending=True, stable=True).indices
    r, keys = r[o1], keys[o1]
    o2 = torch.sort(r, stable=True).indices
    r, keys = r[o2], keys[o2]
    starts = torch.zeros(T + 1, dtype=torch.int64, device=dev)
    starts[1:] = torch.cumsum(torch.bincount(r, minlength=T), 0)
    within = torch.arange(len(r), device=dev) - starts[r]
    new = keys[within < k].reshape(T, k)
    best[active] = new
    full = new[:, -1] != _EMPTY
    thr[active[full]] = torch.maximum(thr[active[full]], _from_keys(new[full, -1])[1])


_EMPTY = -(2 ** 63)  # a key below every real one: a slot not filled yet


def generate(scorer: Scorer, histories: Sequences, users=None, k: int = 10, exclude_seen: bool = True,
             temperature: float = 0.0, sample_top_k: int = 0, seed: int = 0,
             blocked: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Generative lists: k steps, each appending its item to the history; never a repeat within a
    list. temperature 0: greedy; > 0: seeded sampling from softmax(scores / temperature), from the
    sample_top_k best when > 0. -> items (B, k) int64, scores (B, k) (each when it was chosen)."""
    gen = torch.Generator().manual_seed(seed)
    B = len(histories)
    offsets, items = histories.offsets, histories.items
    chosen = np.zeros((B, k), dtype=np.int64)
    chosen_scores = np.zeros((B, k), dtype=np.float32)
    for step in range(k):
        # the histories extended by the items chosen so far, in CSR form
        cur = _append_columns(offsets, items, chosen[:, :step])
        scores = score_histories(scorer, cur, users, exclude_seen=False)
        if exclude_seen:
            mask_seen(scores, histories)
        if step:  # never repeat an item in one list
            scores.scatter_(1, torch.from_numpy(chosen[:, :step]), -math.inf)
        if blocked is not None:
            scores[:, blocked] = BLOCKED
        if temperature > 0:
            logits = torch.where(scores > SEEN_SCORE, scores / temperature, scores)
            if sample_top_k > 0:
                kth = logits.topk(min(sample_top_k, logits.shape[1]), dim=1).values[:, -1:]
                logits[logits < kth] = -math.inf
            nxt = torch.zeros(B, dtype=torch.int64)  # a row with nothing left (all -inf): item 0, score BLOCKED
            live = torch.nonzero(scores.amax(dim=1) > BLOCKED, as_tuple=True)[0]
            if len(live):
                nxt[live] = torch.multinomial(torch.softmax(logits[live], dim=1), 1, generator=gen).squeeze(1)
        else:
            nxt = scores.argmax(dim=1)
        chosen[:, step] = nxt.numpy()
        chosen_scores[:, step] = scores.gather(1, nxt[:, None]).squeeze(1).numpy()
    return chosen, chosen_scores


def _append_columns(offsets: np.ndarray, items: np.ndarray, extra: np.ndarray) -> Sequences:
    """Rows of (offsets, items) each followed by its row of `extra` (B, j)."""
    B, j = extra.shape
    if j == 0:
        return Sequences(offsets, items)
    lengths = np.diff(offsets) + j
    new_off = np.zeros(B + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_off[1:])
    out = np.empty(new_off[-1], dtype=np.int64)
    within = np.arange(len(items)) - np.repeat(offsets[:-1], np.diff(offsets))
    out[np.repeat(new_off[:-1], np.diff(offsets)) + within] = items
    tail = new_off[1:, None] - j + np.arange(j)[None, :]  # (B, j) positions of the appended items
    out[tail] = extra
    return Sequences(new_off, out)


def recommend_lists(scorer: Scorer, histories: Sequences, users=None, k: int = 10, exclude_seen: bool = True,
                    mode: str = "oneshot", temperature: float = 0.0, sample_top_k: int = 0,
                    seed: int = 0, blocked: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The lists every surface shows: top_k (oneshot) or generate (generative). With exclude_seen
    the seen items that would fill a list's end at SEEN_SCORE become empty slots (0, BLOCKED)."""
    if mode == "generative":
        items, scores = generate(scorer, histories, users, k, exclude_seen, temperature, sample_top_k, seed, blocked)
    elif mode == "oneshot":
        items, scores = top_k(scorer, histories, users, k, exclude_seen, blocked=blocked)
    else:
        raise ValueError(f"mode={mode!r}: expected oneshot or generative")
    if exclude_seen:
        fill = scores == SEEN_SCORE  # only seen items score it: the end of a list out of unseen items
        items[fill], scores[fill] = 0, BLOCKED
    return items, scores


def list_scorer(scorer: Scorer, num_items: int, k: int = 20, exclude_seen: bool = True) -> Scorer:
    """A scorer over a generated list, for the one evaluator: its k items score k..1, others -inf."""

    def score(histories, users=None):
        items, _ = generate(scorer, histories, users, k, exclude_seen)
        out = torch.full((len(histories), num_items + 1), -math.inf)
        out.scatter_(1, torch.from_numpy(items), torch.arange(k, 0, -1, dtype=torch.float32).expand(len(items), k))
        return out

    return score
