"""Sequence packing: many users share one row of `block_size` tokens.

Most purchase histories are tiny (70% of the challenge users have two items), so one user per
row would be mostly padding. Here each user's tokens are laid end to end in shuffled order
(next-fit: a user who does not fit in what is left of the row starts a new one), described by
`Packed`'s arrays: seq_ids says which user of the row a slot belongs to, pos_ids restart at 0.

A user with items s[0..L-1] contributes tokens s[:-1] and targets s[1:]. A history longer
than the row keeps its most recent block_size + 1 items, as inference sees the last block_size
items with positions from 0. A target of weight 0 (target_filter: a view) is IGNORE, and a user
whose kept targets are all context is left out.

The attention mask is built in ONE place, `attention_mask`: causal AND same user.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data import Sequences
from ..data.sequences import next_targets, offsets_of
from ..errors import DataError
from .loss import FUTURE_HORIZON

IGNORE = -100  # F.cross_entropy's ignore_index


@dataclass
class Packed:
    tokens: np.ndarray   # (R, T) int64 item index of each slot, 0 on padding
    targets: np.ndarray  # (R, T) int64 the next item of the same user, IGNORE where nothing is learned
    seq_ids: np.ndarray  # (R, T) int64 which user (0, 1, ... within the row), -1 on padding
    pos_ids: np.ndarray  # (R, T) int64 position in that user's history, 0 on padding
    future: np.ndarray | None = None  # (R, T, H-1) int64: the items 2..H steps ahead, IGNORE past the end
    weights: np.ndarray | None = None  # (R, T) float32: the target event's weight, 0 on padding (weight_col)

    def target_slots(self, rows) -> np.ndarray:
        """(B, T), or (B, T, H) with the future items (soft labels)."""
        if self.future is None:
            return self.targets[rows]
        return np.concatenate([self.targets[rows][..., None], self.future[rows]], axis=-1)

    def batch(self, rows, device) -> tuple:
        """The rows on `device`, and their target slots' weights (M,) in the model's order (None: unweighted)."""
        t = lambda a: torch.from_numpy(a).to(device, non_blocking=True)
        weights = None if self.weights is None else \
            torch.from_numpy(self.weights[rows][self.targets[rows] != IGNORE]).to(device)
        return (t(self.tokens[rows]), t(self.pos_ids[rows]), t(self.seq_ids[rows]), t(self.target_slots(rows)),
                weights)

    @property
    def efficiency(self) -> float:
        """Non-padding tokens / all tokens."""
        return float((self.seq_ids >= 0).mean()) if self.seq_ids.size else 0.0

    def __len__(self) -> int:
        return len(self.tokens)


def _next_fit(lengths: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column start and seq id of each length, laid end to end in the given order."""
    rows = np.empty(len(lengths), dtype=np.int64)
    cols = np.empty(len(lengths), dtype=np.int64)
    sids = np.empty(len(lengths), dtype=np.int64)
    r, c, s = 0, 0, 0
    for i, n in enumerate(lengths.tolist()):
        if c + n > block_size:
            r, c, s = r + 1, 0, 0
        rows[i], cols[i], sids[i] = r, c, s
        c += n
        s += 1
    return rows, cols, sids


def _targets_kept(offsets, lengths, is_target, users, block_size) -> np.ndarray:
    """(len(users),) each user's target events among its last min(L - 1, block_size) (packing's targets)."""
    before = offsets_of(is_target)  # (total+1,) target events before each event
    end = offsets[users] + lengths[users]
    start = end - np.maximum(np.minimum(lengths[users] - 1, block_size), 0)
    return before[end] - before[start]


def count_targets(seqs: Sequences, block_size: int, weights: np.ndarray | None = None) -> tuple[int, int]:
    """(training targets, context events of weight 0) of a training split as `pack` lays it out."""
    users = np.arange(len(seqs))
    is_target = np.ones(len(seqs.items), bool) if weights is None else np.asarray(weights) > 0
    kept = _targets_kept(seqs.offsets, seqs.lengths, is_target, users, block_size)
    return int(kept.sum()), int((~is_target).sum())


def trainable_users(seqs: Sequences, block_size: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(n,) the rows `pack` keeps: two items or more and, with weights, a kept target of weight > 0."""
    users = np.nonzero(seqs.lengths >= 2)[0]
    if weights is not None:
        users = users[_targets_kept(seqs.offsets, seqs.lengths, np.asarray(weights) > 0, users, block_size) > 0]
    return users


def pack(seqs: Sequences, block_size: int, rng: np.random.Generator | None = None,
         packing: bool = True, horizon: int = 1, weights: np.ndarray | None = None,
         context_targets: bool = False) -> Packed:
    """Pack users (in shuffled order when `rng` is given) into rows of block_size tokens.

    packing=False puts one user per row (the unpacked reference). horizon H > 1 also records each
    slot's items 2..H steps ahead (`future`: soft labels). weights (total,): each slot carries its
    target event's weight (0: never a target). context_targets: a slot whose next event is context
    learns the next target event of its history instead (the purchase a view leads to)."""
    lengths = seqs.lengths
    users = trainable_users(seqs, block_size, weights)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float32)
    if rng is not None:
        users = users[rng.permutation(len(users))]
    n_tok = np.minimum(lengths[users] - 1, block_size)  # tokens each user contributes
    if packing:
        rows, cols, sids = _next_fit(n_tok, block_size)
    else:
        rows, cols, sids = np.arange(len(users)), np.zeros(len(users), np.int64), np.zeros(len(users), np.int64)
    n_rows = int(rows[-1]) + 1 if len(users) else 0

    # flat slot indices of every token: row * T + col + (0..n-1)
    within = np.arange(n_tok.sum()) - np.repeat(np.cumsum(n_tok) - n_tok, n_tok)
    slot = np.repeat(rows * block_size + cols, n_tok) + within
    # the token at `within` is item s[L-1-n+within]; its target is the item after it
    first = seqs.offsets[users] + lengths[users] - 1 - n_tok  # index of the first kept token
    src = np.repeat(first, n_tok) + within

    tokens = np.zeros(n_rows * block_size, dtype=np.int64)
    targets = np.full(n_rows * block_size, IGNORE, dtype=np.int64)
    seq_ids = np.full(n_rows * block_size, -1, dtype=np.int64)
    pos_ids = np.zeros(n_rows * block_size, dtype=np.int64)
    tokens[slot] = seqs.items[src]
    targets[slot] = seqs.items[src + 1]
    target_event = src + 1  # (tokens,) the flat index of each slot's target event
    if weights is not None:
        if context_targets:
            target_event = next_targets(seqs, weights > 0)[src + 1]  # == len(items) where none follows
            targets[slot] = np.append(seqs.items, IGNORE)[target_event]
        context = np.append(weights, 0.0)[target_event] <= 0
        targets[slot[context]] = IGNORE
    seq_ids[slot] = np.repeat(sids, n_tok)
    pos_ids[slot] = within
    shape = (n_rows, block_size)
    future = None
    if horizon > 1:
        # the item k+1 steps after slot `within` exists while within + k < n_tok (the last token's target is the last item)
        future = np.full((n_rows * block_size, horizon - 1), IGNORE, dtype=np.int64)
        left = np.repeat(n_tok, n_tok) - within  # targets from this slot to the end of the history, >= 1
        for k in range(1, horizon):
            ok = left > k
            if weights is not None:  # a context event is no soft label either
                ok[ok] = weights[src[ok] + 1 + k] > 0
            future[slot[ok], k - 1] = seqs.items[src[ok] + 1 + k]
        future = future.reshape(*shape, horizon - 1)
    slot_weights = None
    if weights is not None:
        slot_weights = np.zeros(n_rows * block_size, dtype=np.float32)
        slot_weights[slot] = np.append(weights, 0.0)[target_event]  # the target event's weight
        slot_weights = slot_weights.reshape(shape)
    return Packed(tokens.reshape(shape), targets.reshape(shape), seq_ids.reshape(shape), pos_ids.reshape(shape),
                  future, slot_weights)


def check_targets(ds, sp, cfg) -> None:
    """Per-event weights must leave packing a target of weight > 0, or no epoch has a batch."""
    if ds.weights is None or len(trainable_users(sp.train, cfg.block_size, sp.train.weights)):
        return
    n = int((ds.weights > 0).sum())
    why = f"target_filter={cfg.target_filter!r} matches {n:,} events" if cfg.target_filter else \
        f"{n:,} events have a weight > 0"
    hint = "; holdout=none trains on every event" if cfg.holdout != "none" else ""
    raise DataError(f"{ds.path}: no training target left: {why}, none of them a training target (each is held "
                    f"out for validation or test by holdout={cfg.holdout}, or first in its user's history){hint}")


def epoch_batches(train_seqs: Sequences, cfg, epoch: int, weights=None):
    """One epoch's packed rows and batches of row indices, shuffled by (seed, epoch) only: resumes alike."""
    rng = np.random.default_rng([cfg.seed, epoch])
    horizon = FUTURE_HORIZON if cfg.future_decay > 0 else 1
    packed = pack(train_seqs, cfg.block_size, rng, packing=cfg.packing, horizon=horizon, weights=weights,
                  context_targets=cfg.context_targets != "none")
    order = rng.permutation(len(packed))
    batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    return packed, batches


def batch_stream(train_seqs: Sequences, cfg, epoch: int, batch_in_epoch: int, weights=None):
    """Endless (epoch, index, packed epoch, rows) from batch `batch_in_epoch` of `epoch` (resumes alike)."""
    while True:
        packed, batches = epoch_batches(train_seqs, cfg, epoch, weights)
        if not batches:  # never an endless loop over empty epochs (check_targets refuses this first)
            raise DataError("no training target: the training rows pack into no batch (nothing to learn)")
        for i in range(batch_in_epoch, len(batches)):
            yield epoch, i, packed, batches[i]
        epoch, batch_in_epoch = epoch + 1, 0


def left_aligned(histories: Sequences, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One history per row for inference: its last block_size items, positions from 0.

    -> tokens, seq_ids (0 = real, -1 = padding), pos_ids (B, T), and last (B,), the column of each
    row's most recent item. An empty history gets one padding token (callers route cold users apart)."""
    lengths = np.minimum(histories.lengths, block_size)
    T = max(int(lengths.max()) if len(lengths) else 1, 1)
    B = len(lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    src = np.repeat(histories.offsets[1:] - lengths, lengths) + within
    slot = np.repeat(np.arange(B) * T, lengths) + within
    tokens = np.zeros(B * T, dtype=np.int64)
    seq_ids = np.full(B * T, -1, dtype=np.int64)
    pos_ids = np.zeros(B * T, dtype=np.int64)
    tokens[slot] = histories.items[src]
    seq_ids[slot] = 0
    pos_ids[slot] = within
    last = np.maximum(lengths - 1, 0)
    return tokens.reshape(B, T), seq_ids.reshape(B, T), pos_ids.reshape(B, T), last


def attention_mask(seq_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) seq ids -> (B, 1, T, T) boolean mask, True = may attend.

    Query i may attend key j <= i of the same user. Padding (-1) attends to padding: no row is empty
    (softmax would be NaN) and no real token sees padding or another user."""
    T = seq_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=seq_ids.device).tril()
    same = seq_ids[:, :, None] == seq_ids[:, None, :]
    return (causal & same)[:, None]


def flex_block_mask(seq_ids: torch.Tensor):
    """`attention_mask` as a FlexAttention BlockMask: blocks outside every user's block are skipped."""
    from torch.nn.attention.flex_attention import create_block_mask

    def same_user_causal(b, h, q, kv):
        return (q >= kv) & (seq_ids[b, q] == seq_ids[b, kv])

    B, T = seq_ids.shape
    return create_block_mask(same_user_causal, B, None, T, T, device=seq_ids.device)
