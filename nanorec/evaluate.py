"""Full-ranking evaluation: every user's held-out item is ranked against ALL items.

One function ranks, one turns ranks into metrics; the GPT and every baseline
are scored through `evaluate(scorer, evalset)`, so no method has its own eval code.

Protocol: leave-one-out, no sampled negatives, the user's own
history items ranked last (S3-Rec sets their score to 0 instead; the difference
is negligible), ties broken by item index (lower first), so a scorer with many
equal scores (popularity) ranks deterministically.
"""
from __future__ import annotations

import math
import numpy as np
import torch

from .data import EvalSet, Sequences
from .scoring import Scorer, as_scores, mask_seen

KS = (5, 10, 20)
PROTOCOL = "full ranking over all {n} items, history excluded (ranked last), leave-one-out, {m} users"


def target_ranks(scores: torch.Tensor, histories: Sequences, targets: torch.Tensor,
                 exclude_seen: bool = True) -> torch.Tensor:
    """1-based rank of each target among items 1..N.  scores (B, N+1), targets (B,).

    `scores` is modified in place (padding and, by default, history items are
    set to -inf); scorers hand over fresh tensors, so nothing is copied.
    """
    scores = scores.float()
    scores[:, 0] = -math.inf  # padding is never a recommendation
    if exclude_seen:
        mask_seen(scores, histories, -math.inf)
    t = scores.gather(1, targets[:, None])  # (B, 1)
    ranks = (scores > t).sum(1) + 1
    # Ties (common for count-based scorers) are broken by item index: an equal
    # score at a lower index ranks first. Only rows with ties pay for this.
    tied = torch.nonzero((scores == t).sum(1) > 1).squeeze(1)
    if len(tied):
        sub = scores[tied]
        idx = torch.arange(scores.shape[1])[None, :]
        before = (sub == t[tied]) & (idx < targets[tied, None])
        before[:, 0] = False
        ranks[tied] += before.sum(1)
    return ranks


@torch.no_grad()
def factor_ranks(q: torch.Tensor, items: torch.Tensor, histories: Sequences, targets: np.ndarray,
                 exclude_seen: bool = True, with_loss: bool = False, chunk: int = 0) -> tuple[np.ndarray, float]:
    """`target_ranks` for scores = q @ items.T, computed `chunk` items at a time in one
    reused buffer (no (B, N+1) matrix), the same rule: padding and (by default)
    history items -inf, ties broken by item index. q (B, C), items (N+1, C).
    -> (ranks (B,), summed cross-entropy of the targets over items 1..N, 0.0 unless with_loss)."""
    dev, V, B = q.device, items.shape[0], len(q)
    chunk = chunk or (2048 if dev.type == "cpu" else 65536)
    tg = torch.from_numpy(np.asarray(targets, dtype=np.int64)).to(dev)
    t_raw = torch.mm(q, items[tg].T).diagonal().clone()  # (B,) the targets' scores, same kernel as the chunks
    rows_np = np.repeat(np.arange(B), histories.lengths)
    items_np = histories.items
    t = t_raw.clone()
    if exclude_seen:
        seen_target = np.zeros(B, dtype=bool)
        seen_target[rows_np[items_np == np.asarray(targets)[rows_np]]] = True
        t[torch.from_numpy(seen_target).to(dev)] = -math.inf
        order = np.argsort(items_np, kind="stable")
        rows_np, items_np = rows_np[order], items_np[order]
    greater = torch.zeros(B, dtype=torch.int64, device=dev)
    tied_before = torch.zeros(B, dtype=torch.int64, device=dev)
    top = torch.full((B,), -math.inf, device=dev)
    total = torch.zeros(B, dtype=torch.float64, device=dev)
    buf = torch.empty(B, min(chunk, V), device=dev)
    tmp = torch.empty_like(buf) if with_loss else None

    def count(mask):  # per-row count of a boolean matrix (a byte sum: several times faster than bool.sum)
        return mask.view(torch.uint8).sum(1, dtype=torch.int32).long()

    for a in range(0, V, chunk):
        b = min(a + chunk, V)
        s = torch.mm(q, items[a:b].T, out=buf[:, :b - a])
        if a == 0:
            s[:, 0] = -math.inf
        if with_loss:  # a running logsumexp over items 1..N, history included
            new_top = torch.maximum(top, s.amax(dim=1))
            e = torch.exp(torch.sub(s, new_top[:, None], out=tmp[:, :b - a]), out=tmp[:, :b - a])
            total = total * torch.exp(top - new_top).double() + e.sum(1).double()
            top = new_top
        if exclude_seen:
            lo, hi = np.searchsorted(items_np, [a, b])
            if hi > lo:
                s[torch.from_numpy(rows_np[lo:hi]).to(dev), torch.from_numpy(items_np[lo:hi] - a).to(dev)] = -math.inf
        gt = count(s > t[:, None])
        greater += gt
        ties = torch.nonzero(count(s >= t[:, None]) > gt, as_tuple=True)[0]  # rows with an equal score here
        if len(ties):
            idx = torch.arange(a, b, device=dev)
            before = (s[ties] == t[ties, None]) & (idx[None, :] < tg[ties, None]) & (idx[None, :] > 0)
            tied_before[ties] += before.sum(1)
        own = torch.nonzero((tg >= a) & (tg < b), as_tuple=True)[0]  # the target never outranks itself
        greater[own] -= (s[own, tg[own] - a] > t[own]).long()
    ranks = (greater + tied_before + 1).cpu().numpy()
    loss = float((torch.log(total) + top.double() - t_raw.double()).sum()) if with_loss else 0.0
    return ranks, loss


def metrics_from_ranks(ranks: np.ndarray, ks=KS) -> dict[str, float]:
    """HR@K, NDCG@K, MRR@K, MAP@K for one target per user.

    With one relevant item MAP@K (the challenge's metric) equals MRR@K: 1/rank if
    the target is in the top K, else 0. Both are reported under their own names.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {}
    for k in ks:
        hit = ranks <= k
        out[f"HR@{k}"] = float(hit.mean()) if len(ranks) else 0.0
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1), 0.0).mean()) if len(ranks) else 0.0
        out[f"MRR@{k}"] = float(np.where(hit, 1.0 / ranks, 0.0).mean()) if len(ranks) else 0.0
        out[f"MAP@{k}"] = out[f"MRR@{k}"]
    return out


def evaluate(scorer: Scorer, evalset: EvalSet, exclude_seen: bool = True, batch_size: int = 512,
             progress: bool = False, return_ranks: bool = False, with_loss: bool = False):
    """Score every user of `evalset` in batches and return the metrics dict
    (and the per-user ranks when `return_ranks`). with_loss: the scores are
    logits; also report "loss", the mean cross-entropy of the targets over all items."""
    from tqdm import tqdm

    n = len(evalset.targets)
    ranks = np.zeros(n, dtype=np.int64)
    loss_sum = 0.0
    # Batches of similar history length: a sequence model pads each batch to its
    # longest history, so sorting cuts the padded work several-fold. Ranks are
    # scattered back to the original order.
    by_length = np.argsort(evalset.histories.lengths, kind="stable")
    starts = range(0, n, batch_size)
    factors = getattr(scorer, "factors", None)  # a GPT: score the catalogue in chunks
    for s in tqdm(starts, desc="ranking", unit="batch", disable=not progress, leave=False):
        rows = by_length[s:s + batch_size]
        hist = evalset.histories.take(rows)
        if factors is not None:
            q, items = factors(hist, evalset.users[rows])
            ranks[rows], batch_loss = factor_ranks(q, items, hist, evalset.targets[rows], exclude_seen, with_loss)
            loss_sum += batch_loss
            continue
        scores = as_scores(scorer(hist, evalset.users[rows]))  # ranking writes into it
        targets = torch.from_numpy(evalset.targets[rows])
        if with_loss:  # before ranking masks the history
            lse = torch.logsumexp(scores[:, 1:].float(), dim=1)
            loss_sum += float((lse - scores.float().gather(1, targets[:, None]).squeeze(1)).sum())
        ranks[rows] = target_ranks(scores, hist, targets, exclude_seen).numpy()
    metrics = metrics_from_ranks(ranks)
    if with_loss:
        metrics["loss"] = loss_sum / max(n, 1)
    metrics["users"] = n
    return (metrics, ranks) if return_ranks else metrics


def protocol_line(num_items: int, users: int, exclude_seen: bool = True) -> str:
    p = PROTOCOL.format(n=num_items, m=users)
    return p if exclude_seen else p.replace("history excluded (ranked last)", "history included")


def format_metrics(m: dict, ks=(10,)) -> str:
    parts = []
    for k in ks:
        parts += [f"HR@{k} {m[f'HR@{k}']:.4f}", f"NDCG@{k} {m[f'NDCG@{k}']:.4f}",
                  f"MRR@{k} {m[f'MRR@{k}']:.4f}", f"MAP@{k} {m[f'MAP@{k}']:.4f}"]
    return "  ".join(parts)
