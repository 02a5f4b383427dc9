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
"""
from __future__ import annotations

import torch


class _ChunkedSoftmaxCE(torch.autograd.Function):

    @staticmethod
    def forward(ctx, h, weight, targets, chunk):
        # h (M, C), weight (V, C), targets (M,) in 1..V-1 -> mean loss (scalar)
        M = h.shape[0]
        with torch.autocast(h.device.type, enabled=False):
            h32, w32 = h.float(), weight.float()
            grad_h = torch.empty_like(h32)
            grad_w = torch.zeros_like(w32)
            total = h32.new_zeros(())
            for s in range(0, M, chunk):
                hc, tc = h32[s:s + chunk], targets[s:s + chunk]
                logits = hc @ w32.T  # (c, V)
                logits[:, 0] = float("-inf")
                target_logit = logits.gather(1, tc[:, None]).squeeze(1)  # (c,)
                top = logits.amax(dim=1, keepdim=True)  # (c, 1), for a stable exp
                probs = logits.sub_(top).exp_()  # in place: unnormalised softmax, one pass
                norm = probs.sum(dim=1)  # (c,)
                total += (norm.log() + top.squeeze(1) - target_logit).sum()
                probs.mul_((1.0 / norm)[:, None])
                probs[torch.arange(len(tc), device=h.device), tc] -= 1.0  # d loss / d logits (unscaled)
                grad_h[s:s + chunk] = probs @ w32
                grad_w.addmm_(probs.T, hc)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.M = M
        ctx.dtypes = (h.dtype, weight.dtype)
        return total / M

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / ctx.M
        return (grad_h * scale).to(ctx.dtypes[0]), (grad_w * scale).to(ctx.dtypes[1]), None, None


def full_softmax_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                               chunk: int = 1024) -> torch.Tensor:
    """mean_i [ logsumexp_j (h_i . w_j) - h_i . w_{y_i} ] over items j >= 1.

    h (M, C) hidden states at the slots that have a target, weight (V, C) the
    tied item embedding, targets (M,) item indices. Returns a scalar.
    """
    if h.shape[0] == 0:
        return (h.sum() + weight.sum()) * 0.0
    return _ChunkedSoftmaxCE.apply(h, weight, targets, chunk)
