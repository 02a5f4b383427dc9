"""Cross-entropy over the full item catalogue, computed in chunks.

The output layer dominates training: M target slots times N+1 items (Beauty:
~5,700 x 12,102 = 69M logits a step). Plain `F.cross_entropy(h @ W.T, y)`
writes those logits, their log-softmax, and the same again in backward: on a
CPU that is memory traffic, not arithmetic. Here the forward pass also
computes both gradients, chunk by chunk, so no (M, N+1) tensor ever exists and
backward is a multiply. Same loss, same gradients (a test checks it), with
less memory traffic than the plain version, which is what makes a full softmax
affordable on a CPU. Dated speed figures belong with their command and machine
in benchmarks/results/*.json (throughput_beauty.json: training tokens/s of the
default config with this loss).

Item 0 (padding) is excluded from the softmax: it is never a valid prediction.

Large catalogues: sampled softmax. The full softmax costs M x (N+1) x C per
step whatever the model, so it grows linearly with the catalogue. `OutputLoss`
(config key `loss`) chooses between it and a sampled softmax with logQ
correction: each step draws `num_negatives` negatives shared by all of the
step's targets (`negatives`: popularity-proportional, uniform, or the batch's
own targets), scores only those, and subtracts log of each candidate's expected
count so that the sampled loss estimates the full one
(`sampled_softmax_cross_entropy` has the exact definition). The draws come from
a generator seeded by (seed, step, rank): a resumed run draws the same ones.

Soft labels (config key future_decay, off by default): a slot's target is
spread over the user's next FUTURE_HORIZON training items with weights decay^k,
normalised (the next item always counts most). Both losses take the targets as
(M,) or (M, H). On the benchmarks it did not help (benchmarks/README.md, "Levers
for accuracy"), so it stays off.

loss=auto: the exact full softmax up to AUTO_SAMPLED_ABOVE (20,000) items,
sampled above, chosen by validation quality at equal training time on this CPU
(the full softmax's step grows with the catalogue, the sampled one's does not):
- 12,101 items (Beauty) and 18,357 (Sports): the full softmax wins. The sampled
  loss trained 3x and 5x as many steps (at least its time: it is ~3x faster per
  step there) stayed 5% (Beauty) and 8% (Sports) below the full one on validation
  NDCG@10 (benchmarks/README.md, "Levers for accuracy"; sweep_levers_h200.json).
- 30,458 items (Beauty + Sports in one catalogue): the sampled loss wins. Its step
  is 5.9x faster (0.10 s vs 0.59 s, idle, side by side: output_layer_large.json);
  at equal time it is far ahead at every point measured (benchmarks/results/
  equal_time.json: e.g. 0.0412 vs 0.0145 validation NDCG@10 after 4.4 idle minutes),
  and reaches the full run's figure after 22 minutes several times sooner.
- 74,633 items (the challenge-shaped `nanorec synth` log): the sampled step is
  13x faster (0.098 s vs 1.29 s); equal_time.json has both curves there too.
So the line lies between 18k and 30k items; 20,000 keeps the exact loss (and
every published figure) for LastFM, Beauty and Sports. Sampled: shared
popularity negatives a step with logQ correction (negatives), 1,024 to 4,096 of
them by the epochs the step budget covers (num_negatives=0, auto:
`resolve_negatives`).
"""
from __future__ import annotations

import math

import torch


class _GradientsInForward(torch.autograd.Function):
    """The two chunked losses' common end: forward has computed the summed loss and both
    gradients (h, weight) chunk by chunk; `finish` keeps them and returns the mean, and
    backward only scales them by the upstream gradient."""

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
    """targets (M,) or (M, H) (column k: the item k+1 steps ahead, IGNORE where the
    history ended) -> (targets (M, H) with IGNORE replaced by item 1, label weights
    (M, H)): decay^k for the items that exist, each row normalised to sum 1.
    One column (or decay 0) is the ordinary one-hot label."""
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

    h (M, C) hidden states at the slots that have a target, weight (V, C) the
    tied item embedding, targets (M,) item indices, or (M, H) with the user's
    next H items (soft labels l_ik from `soft_labels`: decay^k, normalised; the
    first column is always present). slot_weights (M,) > 0 (weight_col: each target event's
    weight): the weighted mean sum_i w_i ce_i / sum_i w_i instead. Returns a scalar.
    """
    if h.shape[0] == 0:
        return (h.sum() + weight.sum()) * 0.0
    targets, labels = soft_labels(targets, decay)
    return _ChunkedSoftmaxCE.apply(h, weight, targets, labels, chunk, slot_weights)


# -----------------------------------------------------------------------------
# sampled softmax with logQ correction: the output layer for large catalogues

NEGATIVES = ("uniform", "popularity", "in_batch")

# soft labels (future_decay > 0): each target slot also credits the user's items this many steps ahead at most
FUTURE_HORIZON = 3

# loss=auto: the exact full softmax up to this many items, sampled softmax above.
# See the module docstring (paragraph "loss=auto") for where the rule comes from.
AUTO_SAMPLED_ABOVE = 20_000


def resolve_loss(loss: str, num_items: int) -> str:
    """cfg.loss (checked by config) -> "full" or "sampled" for a catalogue of num_items items."""
    if loss == "auto":
        return "sampled" if num_items > AUTO_SAMPLED_ABOVE else "full"
    return loss


# dropout=-1 (auto): the dropout of each output layer, measured on validation NDCG@10 of the GPT
# alone at the default 3,000 steps (benchmarks/results/dropout_sampled.json). The full softmax keeps
# 0.5, where every published figure of this project was measured (Beauty: more dropout learned slower
# without ending higher). The sampled softmax learns each item from fewer gradients a step, and
# strong dropout there under-trains. Beauty + Sports (30,458 items): 0.5 -> 0.0387, 0.2 -> 0.0459,
# 0.1 -> 0.0457, 0 -> 0.0416 (overfits after step 2,000); the challenge-shaped synthetic log (74,633
# items): 0.5 -> 0.4397, 0.2 -> 0.4847, 0.1 -> 0.4967. 0.1 is best on one and within 0.5% on the other.
AUTO_DROPOUT = {"full": 0.5, "sampled": 0.1}  # by the resolved loss (config.resolve)


# num_negatives=0 (auto): the sampled softmax's negatives a step, by the epochs the step budget covers
# (max_steps / batches an epoch). Validation NDCG@10 of the GPT alone, default 3,000 steps, dropout 0.1
# (benchmarks/results/negatives_sampled.json): Beauty + Sports (30,458 items, 27 epochs in the budget)
# 1,024 -> 0.0457, 2,048 -> 0.0472, 4,096 -> 0.0488, 8,192 -> 0.0486, 16,384 -> 0.0491; the seed-scale
# synthetic log (74,633 items, 9 epochs) 1,024 -> 0.4967, 4,096 -> 0.5074. Idle seconds a step
# (output_layer_large.json): 0.075 / 0.102 / 0.128 / 0.212 / 0.457 on Beauty + Sports, 0.086 (1,024) and
# 0.126 (4,096) on the synthetic log. The step's cost does not depend on the data, so the choice is
# what the time buys. Where the budget covers many epochs, more steps do not help (Beauty + Sports at
# 1,024 negatives and 6,000 steps over-fits below the 3,000-step run: beauty_sports_6000_steps_dropout01.json)
# and more negatives are the way to spend time, up to 4,096 (beyond it nothing measurable, at 1.7x and
# 3.6x the step); where it covers few, more steps still help (the seed scale gains from step 2,000 to
# 3,000) and the seed scale's 6-minute goal keeps the cheaper step (4,096 there: 380 s of training
# alone). The rule: AUTO_NEGATIVES at AUTO_NEGATIVES_EPOCHS epochs or fewer, doubling per doubling of
# the epochs (rounded on the log scale), at most AUTO_NEGATIVES_MAX: 1,024 up to 11.3 epochs, 2,048 up
# to 22.6, then 4,096. Only two budgets were measured (9 and 27 epochs): the steps between are a
# log-scale interpolation, not a measurement.
AUTO_NEGATIVES, AUTO_NEGATIVES_EPOCHS, AUTO_NEGATIVES_MAX = 1024, 8.0, 4096


def resolve_negatives(num_negatives: int, budget_epochs: float) -> int:
    """cfg.num_negatives -> the negatives a step (0, auto: by the epochs max_steps covers)."""
    if num_negatives > 0:
        return num_negatives
    doublings = round(math.log2(max(budget_epochs / AUTO_NEGATIVES_EPOCHS, 1.0)))
    return min(AUTO_NEGATIVES << doublings, AUTO_NEGATIVES_MAX)


class _ChunkedSampledCE(_GradientsInForward):
    """The sampled loss with its gradients computed in the forward pass, chunk by chunk, as
    `_ChunkedSoftmaxCE` does for the full one: no (M, S) tensor is kept for backward, so the
    cost grows with the number of negatives about as the full softmax's grows with the
    catalogue (plain autograd kept ~6 (M, S) tensors: 4,096 negatives cost 7x 1,024)."""

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

    h (M, C) hidden states, weight (V, C) the tied item embedding, targets (M,)
    (or (M, H) with soft labels l_ik, as in `full_softmax_cross_entropy`),
    negatives (S,) item indices shared by every row, log_q_negatives (S,) and
    log_q_targets (shaped like targets): log of each candidate's expected
    count among the S draws (S * q_c for draws with replacement from q),
    subtracted from every logit, the targets' included (the logQ correction of
    sampled softmax, as in TensorFlow's sampled_softmax_loss). A negative equal
    to one of the row's own targets (an accidental hit) is removed from that row
    (its logit is -inf); the targets themselves always stay. Computed in chunks
    of rows with the gradients in the forward pass (`_ChunkedSampledCE`).
    slot_weights (M,) > 0: the weighted mean sum_i w_i loss_i / sum_i w_i instead
    of the mean.
    """
    if h.shape[0] == 0:
        return (h.sum() + weight.sum()) * 0.0
    if log_q_targets.dim() == 1:
        log_q_targets = log_q_targets[:, None]
    targets, labels = soft_labels(targets, decay)                          # (M, H), (M, H)
    return _ChunkedSampledCE.apply(h, weight, targets, labels, negatives, log_q_negatives, log_q_targets,
                                   chunk, slot_weights)


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator that depends only on (seed, step, rank): a resumed run draws
    the same negatives at the same step."""
    import numpy as np
    state = np.random.SeedSequence([seed, step, rank, 0x5A3]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


class OutputLoss:
    """The training loss of the output layer: "full" (exact, chunked) or "sampled".

    Sampled: each step draws `num_negatives` negatives shared by all target slots
    of the batch (with replacement), from
      - "uniform": every item 1..N alike, q = 1/N;
      - "popularity": q proportional to (training count + 1): the +1 keeps
        never-bought items sampleable, so they are still pushed down;
      - "in_batch": the batch's own targets (slots drawn uniformly), q = the
        item's share of the batch's target slots;
    and corrects each logit by log(S q) (see `sampled_softmax_cross_entropy`).
    `for_step(step, rank)` returns the loss function of one step, called as
    loss(h, weight, targets); its draws depend only on (seed, step, rank).
    targets (M,), or (M, H) with the user's next H items: soft labels with
    weights decay^k (config key future_decay; see `soft_labels`).
    """

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
            import numpy as np
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
        """slot_weights (M,): the target slots' event weights (weight_col), in the order the
        model selects the slots (row-major over the batch's non-IGNORE targets); None: unweighted."""
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
