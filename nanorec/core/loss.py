"""Cross-entropy over the full item catalogue, computed in chunks.

The output layer dominates training: M target slots times N+1 items (Beauty: ~5,700 x
12,102 = 69M logits a step). Plain `F.cross_entropy(h @ W.T, y)` writes those logits, their
log-softmax and the same again in backward: on a CPU, memory traffic. Here the forward pass
also computes both gradients, chunk by chunk, so no (M, N+1) tensor ever exists and backward
is a multiply: same loss, same gradients (a test checks it). Item 0 (padding) is excluded
from the softmax: it is never a valid prediction.

Large catalogues: `OutputLoss` (config key `loss`) chooses between it and a sampled softmax
with logQ correction: each step draws `num_negatives` negatives shared by the step's targets
(`negatives`: popularity, uniform or the batch's own targets) from a generator seeded by
(seed, step, rank), so a resumed run draws the same ones.

Soft labels (future_decay, off: it did not help on the benchmarks) spread a slot's target over
the user's next FUTURE_HORIZON items with weights decay^k, normalised.

loss=auto: the exact softmax up to AUTO_SAMPLED_ABOVE (20,000) items, sampled above, by validation
NDCG@10 at equal training time: at 12,101 and 18,357 items (Beauty, Sports) the sampled loss, given
3x and 5x the steps, stayed 5% and 8% below (sweep_levers_h200.json); at 30,458 its 5.9x faster step
is far ahead (equal_time.json: 0.0412 vs 0.0145 after 4.4 idle minutes), at 74,633 13x faster.
"""
from __future__ import annotations

import math

import numpy as np
import torch


class _GradientsInForward(torch.autograd.Function):
    """`finish` keeps the gradients the chunked forward computed; backward only scales them."""

    @staticmethod
    def finish(ctx, h, weight, grad_h, grad_w, total, slot_weights, n_inputs):
        ctx.save_for_backward(grad_h, grad_w)
        ctx.M = h.shape[0] if slot_weights is None else slot_weights.float().sum()
        ctx.dtypes, ctx.n_inputs = (h.dtype, weight.dtype), n_inputs
        return total / ctx.M

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / ctx.M
        return (grad_h * scale).to(ctx.dtypes[0]), (grad_w * scale).to(ctx.dtypes[1]), *([None] * (ctx.n_inputs - 2))


class _ChunkedSoftmaxCE(_GradientsInForward):

    @staticmethod
    def forward(ctx, h, weight, targets, label_weights, chunk, slot_weights=None):
        # h (M, C), weight (V, C), targets (M, H) in 1..V-1, label_weights (M, H) rows summing to 1,
        # slot_weights (M,) > 0 or None -> the mean loss (weighted: sum w * ce / sum w)
        M = h.shape[0]
        with torch.autocast(h.device.type, enabled=False):
            h32, w32 = h.float(), weight.float()
            grad_h = torch.empty_like(h32)
            grad_w = torch.zeros_like(w32)
            total = h32.new_zeros(())
            for s in range(0, M, chunk):
                hc, tc, lc = h32[s:s + chunk], targets[s:s + chunk], label_weights[s:s + chunk]
                wc = None if slot_weights is None else slot_weights[s:s + chunk].float()
                logits = hc @ w32.T  # (c, V)
                logits[:, 0] = float("-inf")
                target_logit = (logits.gather(1, tc) * lc).sum(1)  # (c,) the label-weighted target logit
                top = logits.amax(dim=1, keepdim=True)  # (c, 1), for a stable exp
                probs = logits.sub_(top).exp_()  # in place: unnormalised softmax, one pass
                norm = probs.sum(dim=1)  # (c,)
                ce = norm.log() + top.squeeze(1) - target_logit  # (c,)
                total += (ce if wc is None else ce * wc).sum()
                probs.mul_((1.0 / norm)[:, None])
                probs.scatter_add_(1, tc, -lc)  # d loss / d logits (unscaled): softmax - labels
                if wc is not None:
                    probs.mul_(wc[:, None])
                grad_h[s:s + chunk] = probs @ w32
                grad_w.addmm_(probs.T, hc)
        return _GradientsInForward.finish(ctx, h, weight, grad_h, grad_w, total, slot_weights, 6)


def soft_labels(targets: torch.Tensor, decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """targets (M,) or (M, H) (column k: k+1 steps ahead, IGNORE past the history) -> (targets (M, H),
    IGNORE as item 1; label weights (M, H): decay^k where an item exists, rows summing to 1)."""
    if targets.dim() == 1:  # the default: one-hot, nothing to weigh (and no tensor to build each step)
        return targets[:, None], torch.ones(len(targets), 1, device=targets.device)
    H = targets.shape[1]
    present = targets >= 1
    powers = torch.tensor([decay ** k for k in range(H)], device=targets.device)  # 0.0 ** 0 == 1
    w = powers[None, :] * present
    w = w / w.sum(1, keepdim=True)
    return torch.where(present, targets, torch.ones_like(targets)), w


def full_softmax_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                               chunk: int = 1024, decay: float = 0.0,
                               slot_weights: torch.Tensor | None = None) -> torch.Tensor:
    """mean_i [ logsumexp_j (h_i . w_j) - sum_k l_ik h_i . w_{y_ik} ] over items j >= 1.

    h (M, C) hidden states at the target slots, weight (V, C) the tied item embedding, targets
    (M,), or (M, H) with the next H items (soft labels l_ik: `soft_labels`). slot_weights (M,) > 0
    (weight_col): the weighted mean sum_i w_i ce_i / sum_i w_i instead. Returns a scalar."""
    if h.shape[0] == 0:
        return (h.sum() + weight.sum()) * 0.0
    targets, labels = soft_labels(targets, decay)
    return _ChunkedSoftmaxCE.apply(h, weight, targets, labels, chunk, slot_weights)


# -----------------------------------------------------------------------------
# sampled softmax with logQ correction: the output layer for large catalogues

NEGATIVES = ("uniform", "popularity", "in_batch")

# soft labels (future_decay > 0): each target slot also credits the user's items this many steps ahead at most
FUTURE_HORIZON = 3

AUTO_SAMPLED_ABOVE = 20_000


def resolve_loss(loss: str, num_items: int) -> str:
    """cfg.loss (checked by config) -> "full" or "sampled" for a catalogue of num_items items."""
    if loss == "auto":
        return "sampled" if num_items > AUTO_SAMPLED_ABOVE else "full"
    return loss


# dropout=-1 (auto), by the resolved loss (dropout_sampled.json, 3,000 steps): the full softmax keeps 0.5,
# where every published figure was measured; the sampled one learns each item from fewer gradients and
# 0.5 under-trains it (Beauty + Sports 0.0387 vs 0.0457 at 0.1; the synthetic log 0.4397 vs 0.4967).
AUTO_DROPOUT = {"full": 0.5, "sampled": 0.1}  # by the resolved loss (config.resolve)


# num_negatives=0 (auto): by the epochs max_steps covers (negatives_sampled.json, 3,000 steps): Beauty +
# Sports (27 epochs) 1,024 -> 0.0457, 4,096 -> 0.0488, 16,384 -> 0.0491 validation NDCG@10; the seed-scale
# log (9 epochs) 1,024 -> 0.4967, 4,096 -> 0.5074. Many epochs: more steps over-fit, more negatives help
# (to 4,096); few epochs: steps still help, and the seed scale's 6-minute goal keeps the cheaper step.
# AUTO_NEGATIVES up to AUTO_NEGATIVES_EPOCHS, doubling per doubling of the epochs (a log-scale
# interpolation between the two measured budgets), at most AUTO_NEGATIVES_MAX.
AUTO_NEGATIVES, AUTO_NEGATIVES_EPOCHS, AUTO_NEGATIVES_MAX = 1024, 8.0, 4096


def resolve_negatives(num_negatives: int, budget_epochs: float) -> int:
    """cfg.num_negatives -> the negatives a step (0, auto: by the epochs max_steps covers)."""
    if num_negatives > 0:
        return num_negatives
    doublings = round(math.log2(max(budget_epochs / AUTO_NEGATIVES_EPOCHS, 1.0)))
    return min(AUTO_NEGATIVES << doublings, AUTO_NEGATIVES_MAX)


class _ChunkedSampledCE(_GradientsInForward):
    """The sampled loss's gradients in forward, as `_ChunkedSoftmaxCE`: no (M, S) tensor kept (autograd kept ~6)."""

    @staticmethod
    def forward(ctx, h, weight, targets, labels, negatives, lq_neg, lq_t, chunk, slot_weights=None):
        # h (M, C), weight (V, C), targets/labels/lq_t (M, H), negatives/lq_neg (S,), slot_weights (M,) or None
        M = h.shape[0]
        dt = torch.float64 if h.dtype == torch.float64 else torch.float32  # bf16/fp16 in: fp32 here
        with torch.autocast(h.device.type, enabled=False):
            h32, lq_neg, lq_t = h.to(dt), lq_neg.to(dt), lq_t.to(dt)
            w_neg = weight[negatives].to(dt)                                   # (S, C)
            w_tgt = weight[targets].to(dt)                                     # (M, H, C)
            grad_h = torch.empty_like(h32)
            grad_neg = torch.zeros_like(w_neg)
            grad_tgt = torch.empty_like(w_tgt)
            total = h32.new_zeros(())
            for s in range(0, M, chunk):
                hc, tc, lc = h32[s:s + chunk], targets[s:s + chunk], labels[s:s + chunk]
                pos = torch.einsum("mc,mhc->mh", hc, w_tgt[s:s + chunk]) - lq_t[s:s + chunk]  # (c, H)
                pos.masked_fill_(lc == 0, float("-inf"))  # absent future items are no candidates
                neg = hc @ w_neg.T - lq_neg[None, :]  # (c, S)
                for k in range(tc.shape[1]):  # accidental hits: a negative equal to one of the row's targets
                    neg.masked_fill_((negatives[None, :] == tc[:, k:k + 1]) & (lc[:, k:k + 1] > 0), float("-inf"))
                top = torch.maximum(neg.amax(1), pos.amax(1))[:, None]  # (c, 1), for a stable exp
                p_neg = neg.sub_(top).exp_()  # in place: unnormalised probabilities
                p_pos = (pos - top).exp()
                norm = p_neg.sum(1) + p_pos.sum(1)  # (c,)
                ce = norm.log() + top.squeeze(1) - (pos.masked_fill(lc == 0, 0.0) * lc).sum(1)
                wc = None if slot_weights is None else slot_weights[s:s + chunk].to(dt)
                total += (ce if wc is None else ce * wc).sum()
                scale = 1.0 / norm if wc is None else wc / norm  # (c,)
                p_neg.mul_(scale[:, None])  # d loss / d neg logits
                g_pos = p_pos * scale[:, None] - (lc if wc is None else lc * wc[:, None])  # (c, H)
                grad_h[s:s + chunk] = p_neg @ w_neg + torch.einsum("mh,mhc->mc", g_pos, w_tgt[s:s + chunk])
                grad_neg.addmm_(p_neg.T, hc)
                grad_tgt[s:s + chunk] = g_pos[:, :, None] * hc[:, None, :]
            grad_w = torch.zeros(weight.shape, dtype=dt, device=weight.device)
            grad_w.index_add_(0, negatives, grad_neg).index_add_(0, targets.reshape(-1), grad_tgt.reshape(-1, h.shape[1]))
        return _GradientsInForward.finish(ctx, h, weight, grad_h, grad_w, total, slot_weights, 9)


def sampled_softmax_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                  negatives: torch.Tensor, log_q_negatives: torch.Tensor,
                                  log_q_targets: torch.Tensor, decay: float = 0.0,
                                  slot_weights: torch.Tensor | None = None, chunk: int = 1024) -> torch.Tensor:
    """mean_i [ logsumexp_{c in Y_i + S} (h_i . w_c - log Q_c) - sum_k l_ik (h_i . w_{y_ik} - log Q_{y_ik}) ].

    h, weight, targets, slot_weights as in `full_softmax_cross_entropy`; negatives (S,) shared by every
    row; log_q_negatives (S,), log_q_targets (like targets): log of each candidate's expected count
    among the draws (S * q_c), subtracted from every logit (the logQ correction of TensorFlow's
    sampled_softmax_loss). A negative equal to one of the row's targets (an accidental hit) gets -inf."""
    if h.shape[0] == 0:
        return (h.sum() + weight.sum()) * 0.0
    if log_q_targets.dim() == 1:
        log_q_targets = log_q_targets[:, None]
    targets, labels = soft_labels(targets, decay)                          # (M, H), (M, H)
    return _ChunkedSampledCE.apply(h, weight, targets, labels, negatives, log_q_negatives, log_q_targets,
                                   chunk, slot_weights)


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator of (seed, step, rank) only: a resumed run draws the same negatives."""
    state = np.random.SeedSequence([seed, step, rank, 0x5A3]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


class OutputLoss:
    """The training loss of the output layer: "full" (exact, chunked) or "sampled".

    Sampled: `num_negatives` negatives a step (with replacement), shared by the batch's slots:
    "uniform" (q = 1/N), "popularity" (q ~ training count + 1: never-bought items are still pushed
    down) or "in_batch" (the batch's targets), each logit corrected by log(S q).
    `for_step(step, rank)` -> loss(h, weight, targets)."""

    def __init__(self, kind: str, num_items: int, counts=None, num_negatives: int = AUTO_NEGATIVES,
                 negatives: str = "popularity", seed: int = 0, decay: float = 0.0):
        if kind not in ("full", "sampled"):
            raise ValueError(f"kind={kind!r}: expected full or sampled (resolve auto first)")
        if negatives not in NEGATIVES:
            raise ValueError(f"negatives={negatives!r}: expected one of {', '.join(NEGATIVES)}")
        self.kind, self.num_items, self.num_negatives, self.negatives, self.seed = \
            kind, num_items, num_negatives, negatives, seed
        self.decay = decay
        self.log_q = None
        if kind == "sampled" and negatives == "popularity":
            c = np.ones(num_items + 1, dtype=np.float64) if counts is None else np.asarray(counts, np.float64) + 1.0
            c[0] = 0.0  # padding is never a candidate
            q = torch.from_numpy(c / c.sum())
            self.cdf = torch.cumsum(q, 0)
            self.cdf[-1] = 1.0
            with torch.no_grad():
                self.log_q = torch.log(q).float()

    def describe(self) -> str:
        soft = (f"; soft labels over the next {FUTURE_HORIZON} items, weights {self.decay}^k"
                if self.decay > 0 else "")
        if self.kind == "full":
            return f"full softmax over {self.num_items:,} items" + soft
        return (f"sampled softmax over {self.num_items:,} items: {self.num_negatives:,} shared {self.negatives} "
                f"negatives a step, logQ-corrected (the training loss is the sampled loss)" + soft)

    def draw(self, targets: torch.Tensor, generator: torch.Generator):
        """(negatives (S,), log_q_negatives (S,), log_q_targets shaped like targets) on targets' device."""
        S, dev = self.num_negatives, targets.device
        targets = targets.clamp_min(1)  # absent future items (IGNORE): any item's q, masked by the loss
        log_s = math.log(S)
        if self.negatives == "uniform":
            neg = torch.randint(1, self.num_items + 1, (S,), generator=generator)
            lq = torch.full((S,), log_s - math.log(self.num_items))
            return neg.to(dev), lq.to(dev), torch.full(targets.shape, log_s - math.log(self.num_items), device=dev)
        if self.negatives == "popularity":
            u = torch.rand(S, generator=generator, dtype=torch.float64)
            neg = torch.searchsorted(self.cdf, u, right=True).clamp_(1, self.num_items)
            log_q = self.log_q.to(dev)
            return neg.to(dev), (log_q[neg.to(dev)] + log_s), log_q[targets] + log_s
        # in_batch: slots drawn uniformly from the batch's targets
        first = targets if targets.dim() == 1 else targets[:, 0]  # the batch's next items
        M = first.shape[0]
        slots = torch.randint(0, M, (S,), generator=generator).to(dev)
        counts = torch.bincount(first, minlength=self.num_items + 1).float()
        log_q = torch.log(counts.clamp_min(1.0) / M) + log_s  # every target occurs at least once
        neg = first[slots]
        return neg, log_q[neg], log_q[targets]

    def for_step(self, step: int, rank: int = 0, slot_weights: torch.Tensor | None = None):
        """slot_weights (M,): the target slots' weights in the order the model selects them (Packed.batch)."""
        if self.kind == "full":
            return lambda h, weight, targets: full_softmax_cross_entropy(h, weight, targets, decay=self.decay,
                                                                         slot_weights=slot_weights)
        gen = step_generator(self.seed, step, rank)

        def loss(h, weight, targets):
            if h.shape[0] == 0:
                return (h.sum() + weight.sum()) * 0.0
            neg, lq_neg, lq_t = self.draw(targets, gen)
            return sampled_softmax_cross_entropy(h, weight, targets, neg, lq_neg, lq_t, self.decay, slot_weights)

        return loss
