"""The one path from histories to scores and top-k lists.

Training's validation, `nanorec evaluate`, `nanorec recommend`, the server and
the leaderboard all go through here, so a history is scored, a seen item
masked and a list decoded exactly one way.

A *scorer* maps a batch of histories (internal item indices) and the users
they belong to (rows of `Dataset.user_ids`, for methods with per-user
parameters such as LightGCN; may be None) to scores over the item vocabulary:

    scorer(histories: Sequences (B rows), users: (B,) int64 | None) -> (B, N+1), higher is better

Column 0 is padding and never recommended. Every baseline's `.score` method is
a scorer, and `gpt_scorer(model)` makes one from a GPT.
"""
from __future__ import annotations

import math
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


def gpt_scorer(model, device: str = "cpu") -> Scorer:
    """A scorer from a GPT: each history's last block_size items, positions
    from 0, the logits after its last item. (B histories) -> (B, N+1) float32 on the CPU.

    The scorer also carries `factors(histories, users) -> (q (B, C), items (N+1, C))`,
    float32 on `device`, with scores = q @ items.T (padding excluded by the caller):
    `top_k` uses it to score the catalogue in chunks instead of as one (B, N+1) matrix.
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
        return q, items.detach().float()

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
    A scorer with `factors` (gpt_scorer: scores = q @ items.T) is scored `chunk`
    items at a time (default 2048 on CPU, 65536 on GPU), so no (B, N+1) matrix
    exists, and items are visited by decreasing norm: a
    row stops once |q| x the largest norm left is below its k-th best score
    (Cauchy-Schwarz, so still exact), which for a trained model is usually after
    the first chunk. Any other scorer's (B, N+1) output is reduced the same way."""
    with torch.no_grad():
        return _top_k(scorer, histories, users, k, exclude_seen, chunk)


def _top_k(scorer, histories, users, k, exclude_seen, chunk):
    factors = getattr(scorer, "factors", None)
    if factors is None:
        scores = score_histories(scorer, histories, users, exclude_seen)
        idx, vals = bounded_top_k(lambda a, b, rows: scores[:, a:b], scores.shape[1], k, chunk or 8192)
        return idx.numpy(), vals.numpy()
    q, items = factors(histories, users)
    dev, V = q.device, items.shape[0]
    chunk = max(chunk or (2048 if dev.type == "cpu" else 65536), k + 1)
    order, where, ranked, norms = by_norm(items)
    seen = SeenPositions(histories if exclude_seen else None, where)
    pad = int(where[0])
    qn = q.norm(dim=1)

    def chunk_scores(a, b, rows):
        s = torch.mm(q if rows is None else q[rows], ranked[a:b].T)
        if a <= pad < b:
            s[:, pad - a] = -math.inf
        seen.mask(s, a, b, rows, SEEN_SCORE)
        return s

    def bound(a):  # no score in positions >= a can exceed this
        return upper_bound(qn, norms[a])

    floor = _probe_floor(q, items, seen, order, where, k, chunk)
    idx, vals = bounded_top_k(chunk_scores, V, k, chunk, floor, order, bound)
    return idx.cpu().numpy(), vals.cpu().numpy()


def upper_bound(q_norm: torch.Tensor, item_norm) -> torch.Tensor:
    """|q| |w| with room for float rounding: q . w never exceeds it."""
    return q_norm * float(item_norm) * (1 + 1e-4) + 1e-30


_BY_NORM = (None, None, None)  # (key, the tensor it was made from, value): one entry, replaced whole


def by_norm(items: torch.Tensor):
    """Items by decreasing norm: (order (V,) position -> item, where (V,) item -> position,
    the reordered (V, C) matrix, their norms (V,) as numpy). Cached per tensor storage
    and version, so a model's table is reordered once, not once per batch; the cache
    holds the tensor, so its memory cannot be reused by another table meanwhile."""
    global _BY_NORM
    key = (items.data_ptr(), items._version, tuple(items.shape), str(items.device), items.dtype)
    cached_key, _, value = _BY_NORM
    if cached_key != key:
        norms = items.norm(dim=1)
        order = torch.argsort(norms, descending=True, stable=True)
        where = torch.empty_like(order)
        where[order] = torch.arange(len(order), device=order.device)
        value = (order, where, items[order].contiguous(), norms[order].cpu().numpy())
        _BY_NORM = (key, items, value)
    return value


class SeenPositions:
    """The (row, item) pairs of a batch's histories as (row, position) pairs sorted
    by position, so a block of positions [a, b) finds its pairs by binary search."""

    def __init__(self, histories: Sequences | None, where: torch.Tensor):
        if histories is None or len(histories.items) == 0:
            self.rows = self.pos = np.zeros(0, np.int64)
            return
        rows = np.repeat(np.arange(len(histories)), histories.lengths)
        pos = where.cpu().numpy()[histories.items]
        o = np.argsort(pos, kind="stable")
        self.rows, self.pos = rows[o], pos[o]
        self.n = len(histories)

    def mask(self, s: torch.Tensor, a: int, b: int, rows, value: float) -> None:
        """In place: s (rows of the batch, b - a) gets `value` at the seen pairs."""
        lo, hi = np.searchsorted(self.pos, [a, b])
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


def _probe_floor(q, items, seen: SeenPositions, order, where, k, size):
    """(B,) each row's k-th best score among `size` probe items, the best ones for the
    batch's mean query: a high floor from the start, so that rows stop early."""
    V = items.shape[0]
    size = min(size, V)
    probe = (items @ q.mean(dim=0)).topk(size).indices  # (P,) item indices
    s = q @ items[probe].T  # (B, P)
    col = torch.full((V,), -1, dtype=torch.int64, device=q.device)
    col[probe] = torch.arange(size, device=q.device)
    if len(seen.pos):
        c = col[order[torch.from_numpy(seen.pos).to(q.device)]]  # seen position -> item -> probe column
        hit = c >= 0
        s[torch.from_numpy(seen.rows).to(q.device)[hit], c[hit]] = SEEN_SCORE
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
