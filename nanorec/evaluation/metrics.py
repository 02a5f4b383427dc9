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

from ..data import EvalSet, Sequences, TargetSets
from ..scoring.scorer import Factored, Ordered, Scorer, as_scores, mask_seen, top_k

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
    histories = histories.seen_items()  # what exclude_seen removes (purchases only under target_filter)
    cat = Ordered(f, histories if exclude_seen else None, chunk)
    t_raw = torch.mm(q, f.items[tg].T).diagonal().clone()  # (B,) the targets' scores, added up as the chunks are
    if f.bias is not None:
        t_raw += f.bias[tg]
    c = cat.cand  # the pairs the sparse extras reach: scored one by one, left out of the chunks
    if c is not None:
        if with_loss:
            raise ValueError("factor_ranks: with_loss is for plain logits (no sparse extras)")
        own = c.items == targets[c.rows]  # a target among its row's candidates: its exact score
        t_raw[torch.from_numpy(c.rows[own]).to(dev)] = c.scores[torch.from_numpy(own).to(dev)]
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
    if c is not None:  # the candidates above (or tied before) the target, unseen ones only
        cr = torch.from_numpy(c.rows).to(dev)
        ct = t[cr]
        ok = torch.from_numpy(~c.seen).to(dev) & ~done[cr]
        above = ok & (c.scores > ct)
        tie = ok & (c.scores == ct) & (torch.from_numpy(c.items < targets[c.rows]).to(dev))
        greater += torch.bincount(cr[above], minlength=B)
        tied_before += torch.bincount(cr[tie], minlength=B)
        if max_rank:
            done |= greater + tied_before >= max_rank
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


def score_splits(scorer: Scorer, valid: EvalSet | None, test: EvalSet | None, num_items: int,
                 batch_size: int = 512, exclude_seen: bool = True) -> dict:
    """The end of every run, GPT or baseline: validation, then the test split once (exclude_seen:
    the run's choice, seen.py; a target that repeats an earlier item counts when they are allowed).
    -> {"valid": metrics, "test": metrics, "protocol": {split: line}, "test_ranks": (M,),
        "valid_seconds": s, "test_seconds": s} (a split that is None is left out)."""
    import time
    out = {"protocol": {}}
    for name, evalset in (("valid", valid), ("test", test)):
        t0 = time.time()
        if evalset is not None:
            out[name], ranks = evaluate(scorer, evalset, exclude_seen, batch_size=batch_size, return_ranks=True)
            out["protocol"][name] = protocol_line(num_items, len(evalset.targets), exclude_seen)
            if name == "test":
                out["test_ranks"] = ranks
        out[f"{name}_seconds"] = round(time.time() - t0, 2)
    return out


def protocol_line(num_items: int, users: int, exclude_seen: bool = True) -> str:
    return seen_protocol(PROTOCOL.format(n=num_items, m=users), exclude_seen)


def seen_protocol(line: str, exclude_seen: bool) -> str:
    """A protocol line as it reads when the history is included (exclude_seen False)."""
    return line if exclude_seen else line.replace("history excluded (ranked last)", "history included")


def format_metrics(m: dict, ks=(10,)) -> str:
    parts = []
    for k in ks:
        parts += [f"HR@{k} {m[f'HR@{k}']:.4f}", f"NDCG@{k} {m[f'NDCG@{k}']:.4f}",
                  f"MRR@{k} {m[f'MRR@{k}']:.4f}", f"MAP@{k} {m[f'MAP@{k}']:.4f}"]
    return "  ".join(parts)


# -----------------------------------------------------------------------------
# lists: multi-target accuracy (holdout=time) and beyond-accuracy metrics, from exact top-K lists

BEYOND_WORK = 2_000_000_000  # holdout=none: beyond-accuracy lists for at most this many users x items
TIME_PROTOCOL = ("full ranking over all {n} items, history excluded (ranked last), time split at {t}: "
                 "every item of the window after it, {m} users")
VALID_TIME_PROTOCOL = ("full ranking over all {n} items, history excluded (ranked last), time split: each user's "
                       "first event of the validation window, {m} users")


def top_lists(scorer: Scorer, evalset, k: int = max(KS), batch_size: int = 512, exclude_seen: bool = True) -> np.ndarray:
    """(M, k) each user's exact top-k items (scoring.top_k: ties to the lower index, history
    excluded, ranked last, unless exclude_seen is False), in the order of `evalset` (anything
    with .users, .histories and one .targets entry per user: an EvalSet or a data.TargetSets)."""
    lists = np.zeros((len(evalset.users), k), dtype=np.int64)
    for rows, hist in length_batches(evalset, batch_size):
        lists[rows] = top_k(scorer, hist, evalset.users[rows], k, exclude_seen)[0]
    return lists


def list_hits(lists: np.ndarray, targets: Sequences) -> np.ndarray:
    """(M, K) bool: lists[u, j] is one of user u's targets (targets: M rows of distinct items)."""
    V = int(max(lists.max(initial=0), targets.items.max(initial=0))) + 1
    rows = np.repeat(np.arange(len(targets)), targets.lengths)
    keys = np.arange(len(lists))[:, None] * V + lists
    return np.isin(keys, rows * V + targets.items)


def set_metrics(lists: np.ndarray, targets: Sequences, ks=KS) -> dict[str, float]:
    """HR@K, Recall@K, NDCG@K, MRR@K, MAP@K of top lists (M, >= max K) against each user's SET
    of targets T (M rows of distinct items, each row non-empty), averaged over users:

        HR@K     1 if any of the first K is in T
        Recall@K |hits in the first K| / |T|
        NDCG@K   sum over hits at positions p (1-based) of 1/log2(p+1), divided by the same sum
                 for an ideal list (min(|T|, K) hits on top)
        MRR@K    1 / position of the first hit (0 without one)
        MAP@K    sum over hits at p of precision@p, divided by min(|T|, K) (the challenge's MAP@K)

    With one target per user these equal metrics_from_ranks' (MAP@K = MRR@K)."""
    hits = list_hits(lists, targets).astype(np.float64)
    if hits.shape[1] < max(ks):  # a catalogue smaller than the cutoff: the missing places are misses
        hits = np.pad(hits, ((0, 0), (0, max(ks) - hits.shape[1])))
    n_t = targets.lengths.astype(np.float64)
    out = {}
    for k in ks:
        h = hits[:, :k]
        pos = np.arange(1, k + 1, dtype=np.float64)
        disc = 1.0 / np.log2(pos + 1)
        ideal = np.cumsum(disc)[np.minimum(n_t, k).astype(np.int64) - 1]
        first = np.where(h.any(1), h.argmax(1) + 1, np.inf)
        mean = (lambda x: float(x.mean())) if len(h) else (lambda x: 0.0)
        out[f"HR@{k}"] = mean(h.any(1))
        out[f"Recall@{k}"] = mean(h.sum(1) / n_t)
        out[f"NDCG@{k}"] = mean((h * disc).sum(1) / ideal)
        out[f"MRR@{k}"] = mean(1.0 / first)
        out[f"MAP@{k}"] = mean((h * np.cumsum(h, 1) / pos).sum(1) / np.minimum(n_t, k))
    return out


def beyond_metrics(lists: np.ndarray, histories: Sequences, counts: np.ndarray, num_items: int,
                   ks=KS, vectors: torch.Tensor | None = None) -> dict[str, float]:
    """Beyond-accuracy metrics of top lists (M, >= max K), for each cutoff K:

        coverage@K      distinct items in all the users' first K / catalogue size (num_items)
        novelty@K       mean self-information -log2(share(i)) of the recommended items, share(i) =
                        count(i) / all counts (an item never seen in training counts as seen once)
        avg_pop@K       average recommended popularity: mean count(i) of the recommended items
        pop_ratio@K     avg_pop@K / the mean count of the users' own history items (> 1: the lists
                        are more popular than what the users buy)
        ILS@K           intra-list similarity, only with `vectors` (N+1, D) unit rows of content
                        (zero rows: no content): the mean cosine of the pairs of items of a list
                        that both have content, averaged over lists with such a pair

    counts (N+1,): interactions per item in the training split (data.item_counts)."""
    counts = np.asarray(counts, dtype=np.float64)
    info = -np.log2(np.maximum(counts, 1.0) / max(counts[1:].sum(), 1.0))  # (N+1,)
    h_rows = np.repeat(np.arange(len(histories)), histories.lengths)
    has_hist = histories.lengths > 0
    per_user = np.bincount(h_rows, weights=counts[histories.items], minlength=len(histories))
    hist_pop = float((per_user[has_hist] / histories.lengths[has_hist]).mean()) if has_hist.any() else 0.0
    out = {}
    for k in ks:
        top = lists[:, :k]
        out[f"coverage@{k}"] = float(len(np.unique(top)) / max(num_items, 1)) if top.size else 0.0
        out[f"novelty@{k}"] = float(info[top].mean()) if top.size else 0.0
        out[f"avg_pop@{k}"] = float(counts[top].mean()) if top.size else 0.0
        out[f"pop_ratio@{k}"] = out[f"avg_pop@{k}"] / hist_pop if hist_pop else 0.0
        if vectors is not None:
            out[f"ILS@{k}"] = intra_list_similarity(top, vectors)
    return out


def intra_list_similarity(top: np.ndarray, vectors: torch.Tensor, batch: int = 4096) -> float:
    """Mean over lists of the mean pairwise cosine of their items' content (pairs where both
    items have content; lists with no such pair are left out). vectors (N+1, D) unit rows."""
    has = (vectors.norm(dim=1) > 0).cpu()
    total, lists_counted = 0.0, 0
    k = top.shape[1]
    upper = torch.triu(torch.ones(k, k, dtype=torch.bool), diagonal=1)
    for a in range(0, len(top), batch):
        idx = torch.from_numpy(top[a:a + batch])
        v = vectors.cpu()[idx].float()                  # (B, k, D)
        sim = v @ v.transpose(1, 2)                     # (B, k, k)
        ok = has[idx][:, :, None] & has[idx][:, None, :] & upper  # (B, k, k) pairs with content
        n = ok.sum((1, 2))
        keep = n > 0
        total += float(((sim * ok).sum((1, 2))[keep] / n[keep]).sum())
        lists_counted += int(keep.sum())
    return total / lists_counted if lists_counted else 0.0


def score_report(scorer: Scorer, sp, num_items: int, train_counts: np.ndarray, batch_size: int = 512,
                 vectors: torch.Tensor | None = None, split_time: str = "", seed: int = 0,
                 beyond_users: int = 0, exclude_seen: bool = True) -> dict:
    """The end of every run (GPT, baseline, the baselines beside a run): `score_splits` for the
    single-target splits (loo/last: the same figures as ever), plus

    - holdout=time (sp.test a data.TargetSets): the test split from each user's exact top-20 list,
      multi-target (`set_metrics`); the cold users (no event before the split time) apart, scored on
      the training split's most popular items, the list recommend gives them ("test_cold");
    - "beyond": `beyond_metrics` of the same lists: the test users' (else the validation users', else
      for holdout=none a fixed sample of users on their whole histories, at most BEYOND_WORK / items);
      beyond_users > 0: on a fixed sample of at most that many of them (an update: its lists' figures
      without a second full scoring pass; holdout=time reuses the test lists and needs no sample).
    exclude_seen: the run's choice (seen.py), for every split and list.
    -> score_splits' dict with "beyond" (and "test_cold") added."""
    import time
    multi = isinstance(sp.test, TargetSets)
    out = score_splits(scorer, sp.valid, None if multi else sp.test, num_items, batch_size, exclude_seen)
    t0 = time.time()
    if multi:
        lists = top_lists(scorer, sp.test, min(max(KS), num_items), batch_size, exclude_seen)
        out["test"] = {**set_metrics(lists, sp.test.targets), "users": len(sp.test.users),
                       "targets_per_user": round(float(sp.test.targets.lengths.mean()), 4)}
        out["protocol"]["test"] = seen_protocol(TIME_PROTOCOL.format(n=num_items, t=split_time, m=len(sp.test.users)),
                                                exclude_seen)
        if sp.valid is not None:
            out["protocol"]["valid"] = seen_protocol(VALID_TIME_PROTOCOL.format(n=num_items, m=len(sp.valid.targets)),
                                                     exclude_seen)
        cold = sp.test.cold_users
        popular = np.lexsort((np.arange(len(train_counts)), -np.asarray(train_counts, np.float64)))
        popular = popular[popular > 0][:max(KS)]  # the training split's most popular items, ties to the lower index
        out["test_cold"] = {**set_metrics(np.tile(popular, (len(cold), 1)), sp.test.cold_targets),
                            "users": len(cold), "list": "most popular items of the training split"}
        beyond_split, evalset = "test", sp.test
    else:
        beyond_split, evalset = ("test", sp.test) if sp.test is not None else ("valid", sp.valid)
        if evalset is None:  # holdout=none: the lists that ship, for a fixed sample of users
            rows = np.nonzero(sp.train.lengths > 0)[0]
            n = max(1, BEYOND_WORK // max(num_items, 1))
            if len(rows) > n:
                rows = np.sort(np.random.default_rng([seed, 2]).choice(rows, size=n, replace=False))
            beyond_split = "all users (holdout=none: whole histories)"
            evalset = EvalSet(rows, sp.train.take(rows), np.zeros(len(rows), np.int64))
        if 0 < beyond_users < len(evalset.users):
            rows = np.sort(np.random.default_rng([seed, 3]).choice(len(evalset.users), size=beyond_users, replace=False))
            evalset = EvalSet(evalset.users[rows], evalset.histories.take(rows), evalset.targets[rows])
        lists = top_lists(scorer, evalset, min(max(KS), num_items), batch_size, exclude_seen)
    out["beyond"] = {"split": beyond_split, "users": len(evalset.users),
                     **beyond_metrics(lists, evalset.histories, train_counts, num_items, KS, vectors)}
    out["test_seconds" if multi else "beyond_seconds"] = round(time.time() - t0, 2)
    return out


def format_beyond(m: dict, k: int = 10) -> str:
    """One line of a "beyond" dict at cutoff k."""
    parts = [f"coverage@{k} {m[f'coverage@{k}']:.4f}", f"novelty@{k} {m[f'novelty@{k}']:.2f}",
             f"avg_pop@{k} {m[f'avg_pop@{k}']:.1f} (x{m[f'pop_ratio@{k}']:.2f} the histories')"]
    if f"ILS@{k}" in m:
        parts.append(f"ILS@{k} {m[f'ILS@{k}']:.4f}")
    return "  ".join(parts)


def evaluate_split(scorer: Scorer, evalset, batch_size: int = 512, num_items: int = max(KS), **kwargs) -> dict:
    """`evaluate` for an EvalSet (one target per user; kwargs passed on); for a data.TargetSets
    (holdout=time's test split) the multi-target metrics of each user's exact top-20 list
    (kwargs' exclude_seen, default True, says whether those lists may hold the history's items)."""
    if not isinstance(evalset, TargetSets):
        return evaluate(scorer, evalset, batch_size=batch_size, **kwargs)
    lists = top_lists(scorer, evalset, min(max(KS), num_items), batch_size, kwargs.get("exclude_seen", True))
    return {**set_metrics(lists, evalset.targets), "users": len(evalset.users)}
