"""Full-ranking evaluation: every user's held-out item is ranked against ALL items.

One function ranks, one turns ranks into metrics; the GPT and every baseline
are scored through `evaluate(scorer, evalset)`, so no method has its own eval code.

Protocol: leave-one-out, no sampled negatives, the user's own
history items ranked last (S3-Rec sets their score to 0 instead; the difference
is negligible), ties broken by item index (lower first), so a scorer with many
equal scores (popularity) ranks deterministically.

A scorer with `factors` (the GPT, the count tables, their fusion: see
scoring.Factored) is ranked by `factor_ranks`, chunk by chunk over the catalogue
with the same rule, so a validation pass over 720k users never holds a users x
items matrix.
"""
from __future__ import annotations

import math
import numpy as np
import torch

from .data import EvalSet, Sequences
from .scoring import Factored, Ordered, Scorer, as_scores, mask_seen

KS = (5, 10, 20)
PROTOCOL = "full ranking over all {n} items, history excluded (ranked last), leave-one-out, {m} users"


def count(mask: torch.Tensor) -> torch.Tensor:
    """Per-row count of a (B, M) boolean matrix -> (B,) int64; a byte sum in int32 is about
    twice as fast as bool.sum, and the ranking is mostly such counts."""
    return mask.view(torch.uint8).sum(1, dtype=torch.int32).long()


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
    greater = count(scores > t)
    ranks = greater + 1
    # Ties (common for count-based scorers) are broken by item index: an equal
    # score at a lower index ranks first. Only rows with ties pay for this.
    tied = torch.nonzero(count(scores >= t) > greater + 1).squeeze(1)
    if len(tied):
        sub = scores[tied]
        idx = torch.arange(scores.shape[1])[None, :]
        before = (sub == t[tied]) & (idx < targets[tied, None])
        before[:, 0] = False
        ranks[tied] += before.sum(1)
    return ranks


@torch.no_grad()
def factor_ranks(f: Factored, histories: Sequences, targets: np.ndarray, exclude_seen: bool = True,
                 with_loss: bool = False, chunk: int = 0, max_rank: int = 0) -> tuple[np.ndarray, float]:
    """`target_ranks` for factored scores (scoring.Factored: q @ items.T + bias + sparse
    additions), computed `chunk` items at a time (no (B, N+1) matrix), by the same rule:
    padding and (by default) history items -inf, ties broken by item index.
    -> (ranks (B,), summed cross-entropy of the targets over items 1..N, 0.0 unless with_loss).

    Items are visited best bound first (scoring.Ordered); a row is done once its bound
    is below its target's score (nothing left can outrank or tie it), so for a trained
    model most rows stop after the first chunk. max_rank > 0: a row is also done once
    max_rank items are above its target (its rank is then only known to exceed
    max_rank: enough for metrics at cutoffs <= max_rank, and much faster when most
    targets rank low). A target that is in the history (score -inf) has its rank in
    closed form: every unseen item is above it, and the seen ones with a lower index.
    The loss needs every item: with_loss scores all of them."""
    q, dev, V, B = f.q, f.q.device, f.items.shape[0], len(f.q)
    chunk = chunk or (2048 if dev.type == "cpu" else 65536)
    targets = np.asarray(targets, dtype=np.int64)
    tg = torch.from_numpy(targets).to(dev)
    cat = Ordered(f, histories if exclude_seen else None)
    t_raw = torch.mm(q, f.items[tg].T).diagonal().clone()  # (B,) the targets' scores, added up as the chunks are
    if f.bias is not None:
        t_raw += f.bias[tg]
    if cat.extra is not None:
        t_raw += torch.from_numpy(f.extra.lookup(np.arange(B), targets, V)).to(dev)
    order, where = cat.order, cat.where
    t = t_raw.clone()
    greater = torch.zeros(B, dtype=torch.int64, device=dev)
    tied_before = torch.zeros(B, dtype=torch.int64, device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    if exclude_seen and len(histories.items):
        rows_np = np.repeat(np.arange(B), histories.lengths)
        pairs = np.unique(rows_np * V + histories.items)  # distinct (row, item)
        pr, pi = pairs // V, pairs % V
        seen_target = np.zeros(B, dtype=bool)
        seen_target[pr[pi == targets[pr]]] = True
        t[torch.from_numpy(seen_target).to(dev)] = -math.inf
        if not with_loss:  # closed form: unseen items 1..N above, seen ones with a lower index tied before
            n_seen = np.bincount(pr, minlength=B)
            n_before = np.bincount(pr[pi < targets[pr]], minlength=B)
            st = torch.from_numpy(seen_target).to(dev)
            greater[st] = torch.from_numpy(V - 1 - n_seen).to(dev)[st]
            tied_before[st] = torch.from_numpy(n_before).to(dev)[st]
            done |= st
    top = torch.full((B,), -math.inf, device=dev)
    total = torch.zeros(B, dtype=torch.float64, device=dev)

    for a in range(0, V, chunk):
        b = min(a + chunk, V)
        if with_loss:
            rows = torch.arange(B, device=dev)
        else:  # rows that an item at positions >= a could still outrank or tie
            rows = torch.nonzero(~done & (cat.bound(a) >= t), as_tuple=True)[0]
            if len(rows) == 0:
                break
        s = cat.scores(a, b, None if with_loss else rows, None)
        if with_loss:  # a running logsumexp over items 1..N, history included
            new_top = torch.maximum(top, s.amax(dim=1))
            total = total * torch.exp(top - new_top).double() + torch.exp_(s - new_top[:, None]).sum(1).double()
            top = new_top
        cat.seen.mask(s, a, b, None if with_loss else rows, -math.inf)
        tr = t[rows]
        gt = count(s > tr[:, None])
        greater[rows] += gt
        ties = torch.nonzero(count(s >= tr[:, None]) > gt, as_tuple=True)[0]  # rows with an equal score here
        if len(ties):
            idx = order[a:b]  # the item index of each position
            before = (s[ties] == tr[ties, None]) & (idx[None, :] < tg[rows[ties], None]) & (idx[None, :] > 0)
            tied_before[rows[ties]] += before.sum(1)
        pos = where[tg[rows]]  # the target never outranks itself
        own = torch.nonzero((pos >= a) & (pos < b), as_tuple=True)[0]
        greater[rows[own]] -= (s[own, pos[own] - a] > tr[own]).long()
        if max_rank and not with_loss:
            done |= greater + tied_before >= max_rank
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
             progress: bool = False, return_ranks: bool = False, with_loss: bool = False, max_rank: int = max(KS)):
    """Score every user of `evalset` in batches and return the metrics dict
    (and the per-user ranks when `return_ranks`). with_loss: the scores are
    logits; also report "loss", the mean cross-entropy of the targets over all items.
    Ranks are exact up to max_rank (default the largest cutoff reported, 20); a rank
    below that is given as max_rank + 1, so a factored scorer stops each user as soon as
    max_rank items are above its target (most users, for a rare target, on a large
    catalogue). A selection pass that reads NDCG@10 only passes max_rank=10."""
    from tqdm.auto import tqdm

    n = len(evalset.targets)
    ranks = np.zeros(n, dtype=np.int64)
    loss_sum = 0.0
    factors = getattr(scorer, "factors", None)  # scored in chunks of the catalogue
    for rows, hist in tqdm(length_batches(evalset, batch_size), desc="ranking", unit="batch",
                           total=-(-n // batch_size), disable=None if progress else True, leave=False):
        if factors is not None:
            ranks[rows], batch_loss = factor_ranks(factors(hist, evalset.users[rows]), hist, evalset.targets[rows],
                                                   exclude_seen, with_loss, max_rank=max_rank)
            loss_sum += batch_loss
            continue
        scores = as_scores(scorer(hist, evalset.users[rows]))  # ranking writes into it
        targets = torch.from_numpy(evalset.targets[rows])
        if with_loss:  # before ranking masks the history
            lse = torch.logsumexp(scores[:, 1:].float(), dim=1)
            loss_sum += float((lse - scores.float().gather(1, targets[:, None]).squeeze(1)).sum())
        ranks[rows] = target_ranks(scores, hist, targets, exclude_seen).numpy()
    ranks = np.minimum(ranks, max_rank + 1)
    metrics = metrics_from_ranks(ranks, [k for k in KS if k <= max_rank])
    if with_loss:
        metrics["loss"] = loss_sum / max(n, 1)
    metrics["users"] = n
    return (metrics, ranks) if return_ranks else metrics


def length_batches(evalset: EvalSet, batch_size: int):
    """Yield (rows, histories) in batches of similar history length: a sequence model pads
    each batch to its longest history, so sorting cuts the padded work several-fold.
    Callers scatter their per-row results back through `rows`."""
    by_length = np.argsort(evalset.histories.lengths, kind="stable")
    for s in range(0, len(evalset.targets), batch_size):
        rows = by_length[s:s + batch_size]
        yield rows, evalset.histories.take(rows)


def evaluate_variants(variants, evalset: EvalSet, n_variants: int, batch_size: int = 512,
                      max_rank: int = 0) -> list[dict]:
    """Metrics of `n_variants` scorers that share most of their work: variants(histories, users)
    yields each one's scores in turn as a scoring.Factored, so a batch's common part (a GPT's
    forward pass, the tables' rows) runs once. Ranked by `factor_ranks`, exactly as `evaluate`
    ranks a factored scorer (max_rank as there). -> [metrics] per variant."""
    ranks = np.zeros((n_variants, len(evalset.targets)), dtype=np.int64)
    for rows, hist in length_batches(evalset, batch_size):
        for i, f in enumerate(variants(hist, evalset.users[rows])):
            ranks[i, rows] = factor_ranks(f, hist, evalset.targets[rows], max_rank=max_rank)[0]
    return [metrics_from_ranks(r, [k for k in KS if not max_rank or k <= max_rank]) for r in ranks]


def score_splits(scorer: Scorer, valid: EvalSet | None, test: EvalSet | None, num_items: int,
                 batch_size: int = 512) -> dict:
    """The end of every run, GPT or baseline: validation, then the test split once.
    -> {"valid": metrics, "test": metrics, "protocol": {split: line}, "test_ranks": (M,),
        "valid_seconds": s, "test_seconds": s} (a split that is None is left out)."""
    import time
    out = {"protocol": {}}
    for name, evalset in (("valid", valid), ("test", test)):
        t0 = time.time()
        if evalset is not None:
            out[name], ranks = evaluate(scorer, evalset, batch_size=batch_size, return_ranks=True)
            out["protocol"][name] = protocol_line(num_items, len(evalset.targets))
            if name == "test":
                out["test_ranks"] = ranks
        out[f"{name}_seconds"] = round(time.time() - t0, 2)
    return out


def protocol_line(num_items: int, users: int, exclude_seen: bool = True) -> str:
    p = PROTOCOL.format(n=num_items, m=users)
    return p if exclude_seen else p.replace("history excluded (ranked last)", "history included")


def format_metrics(m: dict, ks=(10,)) -> str:
    parts = []
    for k in ks:
        parts += [f"HR@{k} {m[f'HR@{k}']:.4f}", f"NDCG@{k} {m[f'NDCG@{k}']:.4f}",
                  f"MRR@{k} {m[f'MRR@{k}']:.4f}", f"MAP@{k} {m[f'MAP@{k}']:.4f}"]
    return "  ".join(parts)
