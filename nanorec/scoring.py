"""The one path from histories to scores and top-k lists.

Training's validation, `nanorec evaluate`, `nanorec recommend`, the server and
the leaderboard all go through here, so a history is scored, a seen item
masked and a list decoded exactly one way.

A *scorer* maps a batch of histories (internal item indices) and the users
they belong to (rows of `Dataset.user_ids`, for methods with per-user
parameters such as LightGCN; may be None) to scores over the item vocabulary:

    scorer(histories: Sequences (B rows), users: (B,) int64 | None) -> (B, N+1), higher is better

Column 0 is padding and never recommended. Every baseline's `.score` is a
scorer, and `gpt_scorer(model)` makes one from a GPT.

A scorer may also carry `factors(histories, users) -> Factored`: the same scores
as a dot product plus a per-item bias plus a few sparse additions per row. The
GPT (logits = q @ items.T), the count tables (popularity back-off + the rows of
the user's last items) and their fusion all have this form, and `top_k` and
`evaluate.factor_ranks` use it to visit the catalogue in chunks, best bound
first, and stop early, exactly: no (B, N+1) matrix exists at any catalogue size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .data import Sequences
from .devices import autocast
from .packing import left_aligned

Scorer = Callable[[Sequences, "np.ndarray | None"], "torch.Tensor | np.ndarray"]

# An excluded (already seen) item gets this score: below every real score but
# above padding's -inf, so a list longer than the user's unseen items is filled
# with seen items, ranked last, and never with padding.
SEEN_SCORE = torch.finfo(torch.float32).min


@dataclass
class Sparse:
    """Sparse additions to a batch's scores: value[e] is added at (row[e], item[e]).
    Pairs are distinct. rows, items (E,) int64 and values (E,) float32, numpy. memo:
    shared by Sparse objects with the same pairs and other values (a weight search),
    so the pairs are sorted by position once."""
    rows: np.ndarray
    items: np.ndarray
    values: np.ndarray
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_matrix(cls, m) -> "Sparse":
        """From a scipy.sparse (B, V) matrix (its stored entries)."""
        m = m.tocoo()
        return cls(m.row.astype(np.int64), m.col.astype(np.int64), m.data.astype(np.float32))

    def lookup(self, rows: np.ndarray, items: np.ndarray, num_items: int) -> np.ndarray:
        """The value at each (rows[i], items[i]), 0 where there is none. -> (len(rows),) float32"""
        keys = self.rows * num_items + self.items
        o = np.argsort(keys, kind="stable")
        want = np.asarray(rows, np.int64) * num_items + np.asarray(items, np.int64)
        at = np.minimum(np.searchsorted(keys[o], want), max(len(keys) - 1, 0))
        out = np.zeros(len(want), np.float32)
        if len(keys):
            hit = keys[o][at] == want
            out[hit] = self.values[o][at[hit]]
        return out


@dataclass
class Factored:
    """A batch's scores in factored form:

        scores (B, V) = q @ items.T  +  bias[None, :]  +  extra (sparse)

    q (B, C) and items (V, C) float32 on one device (C may be 0: no dot product);
    bias (V,) on that device or None; extra a `Sparse` or None. The GPT's logits
    are q @ items.T; a count table is a bias (its popularity back-off) plus the
    rows of the user's last items (extra); the fused score is their weighted sum
    (fusion.py). Padding (item 0) is -inf whatever the factors say."""
    q: torch.Tensor
    items: torch.Tensor
    bias: torch.Tensor | None = None
    extra: Sparse | None = None

    def dense(self) -> torch.Tensor:
        """The (B, V) scores as one matrix, padding -inf (for small batches and generation)."""
        s = torch.mm(self.q, self.items.T)
        if self.bias is not None:
            s += self.bias[None, :]
        if self.extra is not None and len(self.extra.rows):
            e = self.extra
            idx = (torch.from_numpy(e.rows).to(s.device), torch.from_numpy(e.items).to(s.device))
            s.index_put_(idx, torch.from_numpy(e.values).to(s.device), accumulate=True)
        s[:, 0] = -math.inf
        return s


def from_factors(factors) -> Scorer:
    """A scorer whose scores are `factors(histories, users).dense()`, carrying `factors`
    so that ranking and top-k never build the dense matrix."""

    @torch.no_grad()
    def score(histories: Sequences, users=None) -> torch.Tensor:
        return factors(histories, users).dense().float().cpu()

    score.factors = factors
    return score


def gpt_scorer(model, device: str = "cpu") -> Scorer:
    """A scorer from a GPT: each history's last block_size items, positions
    from 0, the logits after its last item. (B histories) -> (B, N+1) float32 on the CPU.

    The scorer also carries `factors(histories, users) -> Factored(q (B, C), items (N+1, C))`,
    float32 on `device`, with scores = q @ items.T: `top_k` and `evaluate` use it to
    score the catalogue in chunks instead of as one (B, N+1) matrix.
    Histories are run in groups of similar length, so a batch of mostly short
    histories is not padded to its longest one."""
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
    """In place: every item of row b's history gets `value` in row b."""
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
          exclude_seen: bool = True, chunk: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One-shot lists: the k best items of one scoring pass. -> items (B, k) int64, scores (B, k).

    Exactly the first k of a stable full sort of each row by descending score
    (ties: lower item index first), seen items at SEEN_SCORE, padding never.
    A scorer with `factors` (the GPT, the count tables, their fusion) is scored
    `chunk` items at a time (default 2048 on CPU, 65536 on GPU), so no (B, N+1)
    matrix exists, and items are visited best bound first (`Ordered`): a row stops
    once its bound is below its k-th best score (Cauchy-Schwarz for the dot
    product, exact maxima for the bias and the sparse additions, so still exact),
    which for a trained model is usually after the first chunk. Any other
    scorer's (B, N+1) output is reduced the same way."""
    with torch.no_grad():
        return _top_k(scorer, histories, users, k, exclude_seen, chunk)


def _top_k(scorer, histories, users, k, exclude_seen, chunk):
    factors = getattr(scorer, "factors", None)
    if factors is None:
        scores = score_histories(scorer, histories, users, exclude_seen)
        idx, vals = bounded_top_k(lambda a, b, rows: scores[:, a:b], scores.shape[1], k, chunk or 8192)
        return idx.numpy(), vals.numpy()
    cat = Ordered(factors(histories, users), histories if exclude_seen else None)
    chunk = max(chunk or (2048 if cat.device.type == "cpu" else 65536), k + 1)
    floor = _probe_floor(cat, k, chunk)
    idx, vals = bounded_top_k(lambda a, b, rows: cat.scores(a, b, rows, SEEN_SCORE), cat.num_items, k, chunk,
                              floor, cat.order, cat.bound)
    return idx.cpu().numpy(), vals.cpu().numpy()


def upper_bound(q_norm: torch.Tensor, item_norm) -> torch.Tensor:
    """|q| |w| with room for float rounding: q . w never exceeds it."""
    return q_norm * float(item_norm) * (1 + 1e-4) + 1e-30


_ORDER = (None, None, None)  # (key, the tensor it was made from, value): one entry, replaced whole


def by_norm(items: torch.Tensor):
    """Items by decreasing norm: (order (V,) position -> item, where (V,) item -> position,
    the reordered (V, C) matrix, their norms (V,) as numpy). Cached per tensor storage
    and version, so a model's table is reordered once, not once per batch; the cache
    holds the tensor, so its memory cannot be reused by another table meanwhile."""
    return _ordered(items, items.norm(dim=1) if items.shape[1] else None, items)


def by_bias(items: torch.Tensor, bias: torch.Tensor):
    """`by_norm` for scores without a dot product (items (V, 0)): by decreasing bias."""
    return _ordered(bias, bias, items)


def _ordered(key_tensor, key_values, items):
    global _ORDER
    key = (key_tensor.data_ptr(), key_tensor._version, tuple(key_tensor.shape), str(key_tensor.device),
           key_tensor.dtype, tuple(items.shape))
    cached_key, _, value = _ORDER
    if cached_key != key:
        V = items.shape[0]
        if key_values is None:
            key_values = torch.zeros(V, device=items.device)
        order = torch.argsort(key_values, descending=True, stable=True)
        where = torch.empty_like(order)
        where[order] = torch.arange(V, device=order.device)
        norms = items.norm(dim=1)[order].cpu().numpy() if items.shape[1] else np.zeros(V, np.float32)
        value = (order, where, items[order].contiguous(), norms)
        _ORDER = (key, key_tensor, value)
    return value


class Pairs:
    """(row, item[, value]) pairs of a batch (seen items, or a `Sparse`'s additions) as
    (row, position) pairs sorted by position, so a block of positions [a, b) finds its
    pairs by binary search. With values, also each row's largest value from a position
    on (`max_from`), which is what a row's score bound needs."""

    def __init__(self, rows: np.ndarray, items: np.ndarray, where: torch.Tensor, n_rows: int,
                 values: np.ndarray | None = None, memo: dict | None = None):
        key = (where.data_ptr(), where._version, len(where))
        if memo is not None and memo.get("key") == key:
            o, by_row, pos = memo["sorted"]
        else:
            pos = where.cpu().numpy()[items] if len(items) else np.zeros(0, np.int64)
            o = np.argsort(pos, kind="stable")
            by_row = np.lexsort((pos, rows)) if values is not None else None
            if memo is not None:
                memo.update(key=key, sorted=(o, by_row, pos), where=where)  # holds `where`: its address stays its own
        self.rows, self.pos, self.n, self.V = rows[o], pos[o], n_rows, len(where)
        self.values = None if values is None else values[o]
        if values is not None and len(pos):  # per row, the largest value at this position or after
            self.keys = rows[by_row] * self.V + pos[by_row]  # ascending
            v = values[by_row].astype(np.float64)
            big = 2 * float(np.abs(v).max()) + 1.0  # a later row's values never win a reversed running max
            shift = rows[by_row] * big
            self.suffix_max = np.maximum.accumulate((v - shift)[::-1])[::-1] + shift

    @classmethod
    def seen(cls, histories: Sequences | None, where: torch.Tensor) -> "Pairs":
        """The items of each row's history (none when histories is None)."""
        if histories is None:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), where, 0)
        rows = np.repeat(np.arange(len(histories)), histories.lengths)
        return cls(rows, histories.items, where, len(histories))

    def _in(self, a: int, b: int, rows):
        """The pairs at positions [a, b): (index into self, row of s, column of s)."""
        lo, hi = np.searchsorted(self.pos, [a, b])
        i = np.arange(lo, hi)
        r, p = self.rows[lo:hi], self.pos[lo:hi] - a
        if rows is not None and len(i):  # s holds only these rows of the batch
            slot = np.full(self.n, -1, dtype=np.int64)
            slot[rows.cpu().numpy()] = np.arange(len(rows))
            r = slot[r]
            keep = r >= 0
            i, r, p = i[keep], r[keep], p[keep]
        return i, r, p

    def mask(self, s: torch.Tensor, a: int, b: int, rows, value: float) -> None:
        """In place: s (rows of the batch, b - a) gets `value` at the pairs."""
        i, r, p = self._in(a, b, rows)
        if len(i):
            s[torch.from_numpy(r).to(s.device), torch.from_numpy(p).to(s.device)] = value

    def add(self, s: torch.Tensor, a: int, b: int, rows) -> None:
        """In place: s (rows of the batch, b - a) += the pairs' values."""
        i, r, p = self._in(a, b, rows)
        if len(i):
            idx = (torch.from_numpy(r).to(s.device), torch.from_numpy(p).to(s.device))
            s.index_put_(idx, torch.from_numpy(self.values[i]).to(s.device), accumulate=True)

    def max_from(self, a: int) -> np.ndarray:
        """(n_rows,) each row's largest value at positions >= a, at least 0 (none: 0)."""
        out = np.zeros(self.n, np.float64)
        if self.values is None or not len(self.pos):
            return out
        want = np.arange(self.n) * self.V + a
        at = np.searchsorted(self.keys, want)
        ok = at < len(self.keys)
        ok[ok] = self.keys[at[ok]] // self.V == np.arange(self.n)[ok]
        out[ok] = np.maximum(self.suffix_max[at[ok]], 0.0)
        return out


class Ordered:
    """A `Factored` batch with its items in the order the chunked passes visit them
    (by decreasing norm; by decreasing bias when there is no dot product), the seen
    items and the sparse additions located by position, and `bound(a)`: per row, a
    score that no item at position >= a can exceed,

        |q| x (largest item norm from a on)  +  (largest bias from a on)  +  (row's largest addition from a on)

    so a row whose k-th best (or target) score is above its bound is done (exact)."""

    def __init__(self, f: Factored, seen: Sequences | None):
        self.f, self.q = f, f.q
        self.device, self.num_items = f.q.device, f.items.shape[0]
        ordered = by_norm(f.items) if f.items.shape[1] or f.bias is None else by_bias(f.items, f.bias)
        self.order, self.where, self.ranked, self.norms = ordered
        self.bias = None if f.bias is None else f.bias[self.order].contiguous()
        self.bias_max = np.zeros(self.num_items) if f.bias is None else \
            np.maximum.accumulate(self.bias.double().cpu().numpy()[::-1])[::-1]
        self.pad = int(self.where[0])
        self.seen = Pairs.seen(seen, self.where)
        e = f.extra
        self.extra = None if e is None or not len(e.rows) else \
            Pairs(e.rows, e.items, self.where, len(f.q), e.values, e.memo)
        self.qn = f.q.norm(dim=1)

    def scores(self, a: int, b: int, rows, seen_value: float | None) -> torch.Tensor:
        """(len(rows) or B, b - a) scores of positions [a, b); padding -inf, seen items seen_value
        (None: left as they are)."""
        s = torch.mm(self.q if rows is None else self.q[rows], self.ranked[a:b].T)
        if self.bias is not None:
            s += self.bias[None, a:b]
        if self.extra is not None:
            self.extra.add(s, a, b, rows)
        if a <= self.pad < b:
            s[:, self.pad - a] = -math.inf
        if seen_value is not None:
            self.seen.mask(s, a, b, rows, seen_value)
        return s

    def bound(self, a: int) -> torch.Tensor:
        """(B,) no score at positions >= a exceeds it (room left for float rounding)."""
        dot = upper_bound(self.qn, self.norms[a]).double()
        rest = torch.full_like(dot, float(self.bias_max[a]))
        if self.extra is not None:
            rest += torch.from_numpy(self.extra.max_from(a)).to(dot.device)
        return (dot + rest + 1e-5 * (dot.abs() + rest.abs()) + 1e-30).float()


def _probe_floor(cat: Ordered, k: int, size: int) -> torch.Tensor:
    """(B,) each row's k-th best score among `size` probe items, the best ones for the
    batch's mean query: a high floor from the start, so that rows stop early."""
    f, V, dev = cat.f, cat.num_items, cat.device
    size = min(size, V)
    guess = f.items @ f.q.mean(dim=0)
    if f.bias is not None:
        guess = guess + f.bias
    probe = guess.topk(size).indices  # (P,) item indices
    s = f.q @ f.items[probe].T  # (B, P)
    if f.bias is not None:
        s += f.bias[probe][None, :]
    col = torch.full((V,), -1, dtype=torch.int64, device=dev)
    col[probe] = torch.arange(size, device=dev)
    for pairs, value in ((cat.extra, None), (cat.seen, SEEN_SCORE)):
        if pairs is None or not len(pairs.pos):
            continue
        c = col[cat.order[torch.from_numpy(pairs.pos).to(dev)]]  # position -> item -> probe column
        hit = c >= 0
        r = torch.from_numpy(pairs.rows).to(dev)[hit]
        if value is None:  # the sparse additions
            s.index_put_((r, c[hit]), torch.from_numpy(pairs.values).to(dev)[hit], accumulate=True)
        else:
            s[r, c[hit]] = value
    if col[0] >= 0:  # padding
        s[:, col[0]] = -math.inf
    return s.topk(k, dim=1).values[:, -1].clone()


_LOW32 = 2 ** 32 - 1


def _sort_keys(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered like (score descending, index ascending): one comparison
    sorts by score and breaks ties by item index. Float bits made monotone; -0.0 = +0.0."""
    bits = (values.float() + 0.0).view(torch.int32).to(torch.int64)
    mono = torch.where(bits >= 0, bits, -(2 ** 31) - 1 - bits)
    return mono * (2 ** 32) + (_LOW32 - index)


def _from_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mono = keys >> 32
    bits = torch.where(mono >= 0, mono, -(2 ** 31) - 1 - mono).to(torch.int32)
    return _LOW32 - (keys & _LOW32), bits.view(torch.float32)


def bounded_top_k(chunk_scores, num_cols: int, k: int, chunk: int, floor: torch.Tensor | None = None,
                  col_index: torch.Tensor | None = None, bound=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best columns of every row, reading the columns `chunk` at a time.

    chunk_scores(a, b, rows) -> (len(rows), b - a) float32 scores of columns a..b-1
    for those rows (rows None: all). floor (B,): a score that at least k columns of
    the row reach (e.g. the k-th best of a subset of its columns); default: the
    k-th best of the first chunk. col_index (num_cols,): the item index of each
    column (ties are broken by it; default the column itself). bound(a) -> (B,):
    no score in columns >= a exceeds it; a row whose bound is below its current
    k-th best is done. A chunk only contributes the entries >= the row's current
    k-th best, kept as exact (score desc, index asc) keys, so the result is the
    first k of a stable full sort.
    -> indices (B, k) int64, scores (B, k) float32, best first."""
    chunk = max(chunk, k + 1)
    if floor is None:
        floor = chunk_scores(0, min(chunk, num_cols), None).topk(k, dim=1).values[:, -1].clone()
    thr = floor
    B, dev = len(thr), thr.device
    best = torch.full((B, k), _EMPTY, dtype=torch.int64, device=dev)
    for a in range(0, num_cols, chunk):
        b = min(a + chunk, num_cols)
        rows = None
        if bound is not None:
            rows = torch.nonzero(bound(a) >= thr, as_tuple=True)[0]
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
        # merge with the active rows' k best: keys descending, then rows ascending (stable)
        T = len(active)
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
    return _from_keys(best)


_EMPTY = -(2 ** 63)  # a key below every real one: a slot not filled yet


def generate(scorer: Scorer, histories: Sequences, users=None, k: int = 10, exclude_seen: bool = True,
             temperature: float = 0.0, sample_top_k: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generative lists: k steps, each appending its item to the history before
    scoring again; an item never repeats within a list. temperature 0 = greedy;
    > 0 samples from softmax(scores / temperature), restricted to the
    sample_top_k best when > 0, with a seeded generator (reproducible lists).
    -> items (B, k) int64, scores (B, k) (each item's score when it was chosen)."""
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
        if temperature > 0:
            logits = torch.where(scores > SEEN_SCORE, scores / temperature, scores)
            if sample_top_k > 0:
                kth = logits.topk(min(sample_top_k, logits.shape[1]), dim=1).values[:, -1:]
                logits[logits < kth] = -math.inf
            nxt = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=gen).squeeze(1)
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
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """top_k (mode="oneshot") or generate (mode="generative")."""
    if mode == "generative":
        return generate(scorer, histories, users, k, exclude_seen, temperature, sample_top_k, seed)
    if mode != "oneshot":
        raise ValueError(f"mode={mode!r}: expected oneshot or generative")
    return top_k(scorer, histories, users, k, exclude_seen)


def list_scorer(scorer: Scorer, num_items: int, k: int = 20, exclude_seen: bool = True) -> Scorer:
    """A scorer over a generated list, for the one evaluator: the k generated
    items get scores k..1 in order, every other item -inf (a target outside
    the list is a miss at every cutoff <= k)."""

    def score(histories, users=None):
        items, _ = generate(scorer, histories, users, k, exclude_seen)
        out = torch.full((len(histories), num_items + 1), -math.inf)
        out.scatter_(1, torch.from_numpy(items), torch.arange(k, 0, -1, dtype=torch.float32).expand(len(items), k))
        return out

    return score
