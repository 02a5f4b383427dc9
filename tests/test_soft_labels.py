"""Soft future labels (config key future_decay): the packed future items, and
both output-layer losses against hand-written references."""
import numpy as np
import torch
import torch.nn.functional as F

from nanorec.data import Sequences
from nanorec.core.loss import OutputLoss, full_softmax_cross_entropy, sampled_softmax_cross_entropy, soft_labels
from nanorec.core.packing import IGNORE, pack


def test_future_items_are_the_same_users_next_items():
    s = Sequences.from_lists([[1, 2, 3, 4], [5, 6], [7, 8, 9]])
    p = pack(s, block_size=8, horizon=3)  # no shuffle: users in order, one row
    assert p.tokens[0, :6].tolist() == [1, 2, 3, 5, 7, 8]
    assert p.targets[0, :6].tolist() == [2, 3, 4, 6, 8, 9]
    # token 1: next items 2, 3, 4; token 3: 4 then nothing; user 2 (5, 6): nothing after 6
    assert p.future[0, :6].tolist() == [[3, 4], [4, IGNORE], [IGNORE, IGNORE], [IGNORE, IGNORE],
                                        [9, IGNORE], [IGNORE, IGNORE]]
    assert (p.future[0, 6:] == IGNORE).all()  # padding
    both = p.target_slots(np.array([0]))
    assert both.shape == (1, 8, 3) and both[0, 0].tolist() == [2, 3, 4]


def test_future_items_match_a_brute_force_walk_with_shuffling_and_truncation():
    rng = np.random.default_rng(0)
    rows = [list(rng.integers(1, 60, size=rng.integers(1, 30))) for _ in range(300)]
    p = pack(Sequences.from_lists(rows), block_size=12, rng=np.random.default_rng(1), horizon=3)
    # every (token, target) slot's future = the items after its target in that user's history
    users = {}
    for r in rows:
        kept = r[-13:]  # a history longer than the row keeps its last block_size + 1 items
        for i in range(len(kept) - 1):
            key = (tuple(kept[:i + 1][-1:]), kept[i + 1], i)
            users.setdefault(key, []).append(kept[i + 2:i + 4] + [IGNORE] * (2 - len(kept[i + 2:i + 4])))
    seen = 0
    for r, c in zip(*np.nonzero(p.targets != IGNORE)):
        key = ((int(p.tokens[r, c]),), int(p.targets[r, c]), int(p.pos_ids[r, c]))
        assert p.future[r, c].tolist() in users[key]
        seen += 1
    assert seen == sum(min(len(r), 13) - 1 for r in rows if len(r) >= 2)
    assert pack(Sequences.from_lists(rows), 12).future is None  # horizon 1: no future array


def reference_loss(h, w, targets, decay):
    """sum_k l_k CE(logits, y_k), l_k = decay^k over the present items, normalised."""
    logits = h @ w.T
    logits = torch.cat([torch.full((len(h), 1), float("-inf")), logits[:, 1:]], 1)
    logp = F.log_softmax(logits, 1)
    total = 0.0
    for i in range(len(h)):
        present = [k for k in range(targets.shape[1]) if targets[i, k] != IGNORE]
        wk = torch.tensor([decay ** k for k in present])
        wk = wk / wk.sum()
        total = total - sum(wk[j] * logp[i, targets[i, k]] for j, k in enumerate(present))
    return total / len(h)


def test_full_softmax_soft_labels_match_reference_loss_and_gradients():
    torch.manual_seed(0)
    h = torch.randn(23, 6, requires_grad=True)
    w = torch.randn(15, 6, requires_grad=True)
    y = torch.randint(1, 15, (23, 3))
    y[3, 1:] = IGNORE  # the history ends after the next item
    y[7, 2] = IGNORE
    ref = reference_loss(h, w, y, 0.3)
    gh, gw = torch.autograd.grad(ref, (h, w))
    out = full_softmax_cross_entropy(h, w, y, chunk=4, decay=0.3)
    oh, ow = torch.autograd.grad(out, (h, w))
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(oh, gh)
    torch.testing.assert_close(ow, gw)
    # decay 0: exactly the next-item loss, whatever the future columns hold
    torch.testing.assert_close(full_softmax_cross_entropy(h, w, y, decay=0.0),
                               full_softmax_cross_entropy(h, w, y[:, 0]))


def test_soft_label_weights():
    y = torch.tensor([[4, 5, 6], [4, IGNORE, IGNORE], [4, 5, IGNORE]])
    t, l = soft_labels(y, 0.5)
    torch.testing.assert_close(l, torch.tensor([[4 / 7, 2 / 7, 1 / 7], [1.0, 0, 0], [2 / 3, 1 / 3, 0]]))
    assert (t >= 1).all()


def test_sampled_soft_labels_match_hand_computation():
    torch.manual_seed(1)
    h, w = torch.randn(2, 4), torch.randn(8, 4)
    y = torch.tensor([[2, 3, IGNORE], [5, 6, 7]])
    neg = torch.tensor([3, 4, 1])  # 3 is a target of row 0 (accidental hit there), not of row 1
    lq_neg = torch.tensor([0.1, 0.2, 0.3])
    lq_t = torch.tensor([[0.4, 0.5, 0.0], [0.6, 0.7, 0.8]])
    out = sampled_softmax_cross_entropy(h, w, y, neg, lq_neg, lq_t, decay=0.5)
    s = lambda i, c, q: float(h[i] @ w[c]) - q
    # row 0: candidates 2, 3 (targets) and negatives 4, 1; labels 2/3, 1/3
    p0 = [s(0, 2, 0.4), s(0, 3, 0.5)]
    r0 = np.logaddexp.reduce(p0 + [s(0, 4, 0.2), s(0, 1, 0.3)]) - (2 / 3 * p0[0] + 1 / 3 * p0[1])
    p1 = [s(1, 5, 0.6), s(1, 6, 0.7), s(1, 7, 0.8)]
    r1 = np.logaddexp.reduce(p1 + [s(1, 3, 0.1), s(1, 4, 0.2), s(1, 1, 0.3)]) - (4 * p1[0] + 2 * p1[1] + p1[2]) / 7
    assert abs(float(out) - (r0 + r1) / 2) < 1e-5


def test_sampled_draw_accepts_future_columns():
    counts = np.array([0, 50, 30, 10, 5, 5, 0])
    for kind in ("popularity", "uniform", "in_batch"):
        out = OutputLoss("sampled", 6, counts, num_negatives=16, negatives=kind, seed=3, decay=0.3)
        y = torch.tensor([[1, 2, IGNORE], [5, IGNORE, IGNORE]])
        loss = out.for_step(0)(torch.randn(2, 3, requires_grad=True), torch.randn(7, 3), y)
        assert torch.isfinite(loss)
