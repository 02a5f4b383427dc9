"""Full-ranking evaluation: every user's held-out item (leave-one-out) is ranked against ALL items,
no sampled negatives, the user's history ranked last (S3-Rec sets it to 0; the difference is
negligible), ties broken by item index, so equal scores (popularity) rank deterministically. One
function ranks (`evaluate`, for the GPT and every baseline), one turns ranks into metrics; a
factored scorer is ranked chunk by chunk (`factor_ranks`): no users x items matrix for 720k users.
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
    """Per-row count of a (B, M) bool matrix -> (B,) int64 (a byte sum: twice bool.sum's speed)."""
    return mask.view(torch.uint8).sum(1, dtype=torch.int32).long()


def target_ranks(scores: torch.Tensor, histories: Sequences, targets: torch.Tensor,
                 exclude_seen: bool = True) -> torch.Tensor:
    """1-based rank of each target among items 1..N; scores (B, N+1) are modified in place."""
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
    """`target_ranks` for factored scores, `chunk` items at a time, best bound first
    (scoring.Ordered): a row is done once its bound is below its target's score, or (max_rank > 0)
    once max_rank items are above it (enough for cutoffs <= max_rank). A seen target's rank is in
    closed form. -> (ranks (B,), the targets' summed cross-entropy when with_loss (scores every
    item), else 0.0)."""
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
    """HR@K, NDCG@K, MRR@K, MAP@K for one target per user (MAP@K, the challenge's, equals MRR@K)."""
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
    """The metrics of every user of `evalset` (and the ranks when `return_ranks`); with_loss: the
    scores are logits, "loss" their targets' mean cross-entropy. Ranks are exact up to max_rank,
    else max_rank + 1, so a factored scorer stops a user once max_rank items are above its target."""
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
    """(rows, histories) in batches of similar length: a sequence model pads a batch to its longest."""
    by_length = np.argsort(evalset.histories.lengths, kind="stable")
    for s in range(0, len(evalset.targets), batch_size):
        rows = by_length[s:s + batch_size]
        yield rows, evalset.histories.take(rows)


def score_splits(scorer: Scorer, valid: EvalSet | None, test: EvalSet | None, num_items: int,
                 batch_size: int = 512, exclude_seen: bool = True) -> dict:
    """Validation, then the test split once -> {"valid", "test", "protocol": {split: line},
    "test_ranks", "valid_seconds", "test_seconds"} (a split that is None is left out)."""
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
    """(M, k) each user's exact top-k items (scoring.top_k), in the order of `evalset`."""
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
    """HR@K, Recall@K (hits / |T|), NDCG@K (over an ideal list of min(|T|, K) hits), MRR@K and
    MAP@K (precision@p summed over hits, / min(|T|, K): the challenge's) of top lists (M, >= max K)
    against each user's SET of targets T, averaged over users; one target each: metrics_from_ranks'."""
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
    """Beyond-accuracy metrics of top lists (M, >= max K) at each cutoff K: coverage@K (distinct
    items / num_items), novelty@K (mean -log2 of the items' share of the training counts, an unseen
    item counted once), avg_pop@K (mean count), pop_ratio@K (avg_pop@K / the histories' mean count),
    and with `vectors` (N+1, D) ILS@K (intra_list_similarity). counts (N+1,): the training split's."""
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
    """Mean over lists of the mean cosine of their pairs of items that both have content
    (vectors (N+1, D) unit rows, zero: none); lists with no such pair are left out."""
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
    """The end of every run: `score_splits`, plus for holdout=time (sp.test a TargetSets) the test
    split from each user's exact top-20 list (`set_metrics`), its cold users apart on the training
    split's most popular items ("test_cold"), and "beyond": `beyond_metrics` of the test (else
    validation, else a fixed sample of whole histories) users' lists; beyond_users > 0: a fixed
    sample of at most that many (an update: no second full scoring pass)."""
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
    """`evaluate` for an EvalSet; for a data.TargetSets the set metrics of each exact top-20 list."""
    if not isinstance(evalset, TargetSets):
        return evaluate(scorer, evalset, batch_size=batch_size, **kwargs)
    lists = top_lists(scorer, evalset, min(max(KS), num_items), batch_size, kwargs.get("exclude_seen", True))
    return {**set_metrics(lists, evalset.targets), "users": len(evalset.users)}
