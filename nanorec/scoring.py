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
    from 0, the logits after its last item. (B histories) -> (B, N+1) float32 on the CPU."""
    cfg = model.cfg

    @torch.no_grad()
    def score(histories: Sequences, users=None) -> torch.Tensor:
        tokens, seq_ids, pos_ids, last = left_aligned(histories, cfg.block_size)
        t = lambda a: torch.from_numpy(a).to(device)
        was_training = model.training
        model.eval()
        with autocast(cfg.dtype, device):
            scores = model.score(t(tokens), t(pos_ids), t(seq_ids), t(last))
        model.train(was_training)
        return scores.float().cpu()

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
          exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One-shot lists: the k best items of one scoring pass. -> items (B, k) int64, scores (B, k)."""
    scores = score_histories(scorer, histories, users, exclude_seen)
    top = scores.topk(k, dim=1)
    return top.indices.numpy(), top.values.numpy()


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
