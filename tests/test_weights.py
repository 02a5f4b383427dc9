"""Per-event weights (weight_col): packing carries each target's weight, both losses take the
weighted mean, distributed shares follow the weight sum, and weight_col trains."""
import numpy as np
import polars as pl
import pytest
import torch

from nanorec.config import Config
from nanorec.data import Sequences
from nanorec.core.distributed import Dist, shard_rows
from nanorec.core.loss import full_softmax_cross_entropy, sampled_softmax_cross_entropy
from nanorec.core.packing import IGNORE, pack


def problem(seed=0, M=9, V=13, C=5):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(M, C, generator=g).requires_grad_()
    W = torch.randn(V, C, generator=g).requires_grad_()
    t = torch.randint(1, V, (M,), generator=g)
    w = torch.rand(M, generator=g) * 3 + 0.1
    return h, W, t, w


def test_full_softmax_weighted_mean_is_the_hand_computed_one_with_its_gradients():
    h, W, t, w = problem()
    logits = h @ W.T
    logits = torch.cat([torch.full_like(logits[:, :1], -float("inf")), logits[:, 1:]], 1)
    ce = torch.logsumexp(logits, 1) - logits.gather(1, t[:, None]).squeeze(1)
    want = (ce * w).sum() / w.sum()
    gh, gw = torch.autograd.grad(want, (h, W))
    got = full_softmax_cross_entropy(h, W, t, chunk=4, slot_weights=w)
    hh, ww = torch.autograd.grad(got, (h, W))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(hh, gh)
    torch.testing.assert_close(ww, gw)


def test_sampled_softmax_weighted_mean_is_the_hand_computed_one():
    h, W, t, w = problem(1)
    neg = torch.tensor([1, 4, 4, 7, 12])
    lq_neg, lq_t = torch.full((5,), -0.5), torch.full((len(t),), -0.2)
    per = []
    for i in range(len(t)):  # row by row, by the definition
        cands = [(t[i].item(), -0.2)] + [(n.item(), -0.5) for n in neg if n.item() != t[i].item()]
        z = torch.stack([h[i] @ W[c] - q for c, q in cands])
        per.append(torch.logsumexp(z, 0) - z[0])
    want = (torch.stack(per) * w).sum() / w.sum()
    got = sampled_softmax_cross_entropy(h, W, t, neg, lq_neg, lq_t, slot_weights=w)
    torch.testing.assert_close(got, want)


def test_weights_all_one_are_bit_identical_to_no_weights():
    h, W, t, _ = problem(2)
    ones = torch.ones(len(t))
    a = full_softmax_cross_entropy(h, W, t, chunk=4)
    ga = torch.autograd.grad(a, (h, W))
    b = full_softmax_cross_entropy(h, W, t, chunk=4, slot_weights=ones)
    gb = torch.autograd.grad(b, (h, W))
    assert a.item() == b.item() and all(torch.equal(x, y) for x, y in zip(ga, gb))
    neg, lq = torch.tensor([1, 2, 3]), torch.zeros(3)
    assert sampled_softmax_cross_entropy(h, W, t, neg, lq, torch.zeros(len(t))).item() == \
        sampled_softmax_cross_entropy(h, W, t, neg, lq, torch.zeros(len(t)), slot_weights=ones).item()


def test_packing_carries_each_target_events_weight_to_its_slot():
    seqs = Sequences.from_lists([[1, 2, 3, 4], [5, 6], [7], [8, 9, 10]])
    weights = np.arange(1, len(seqs.items) + 1, dtype=np.float32) * 10  # event e has weight 10 (e + 1)
    by_item = dict(zip(seqs.items.tolist(), weights.tolist()))  # the items are distinct: weight by target item
    for packing in (True, False):
        p = pack(seqs, 4, np.random.default_rng(0), packing=packing, weights=weights)
        real = p.targets != IGNORE
        assert (p.weights[~real] == 0).all()
        assert [by_item[x] for x in p.targets[real]] == p.weights[real].tolist()
    # a history longer than the row keeps its last block_size targets, with their weights
    p = pack(Sequences.from_lists([[1, 2, 3, 4, 5, 6]]), 3, weights=np.array([1, 2, 3, 4, 5, 6], np.float32))
    assert p.targets.tolist() == [[4, 5, 6]] and p.weights.tolist() == [[4, 5, 6]]


def test_weights_follow_the_training_split_and_an_updates_rows():
    full = Sequences.from_lists([[1, 2, 3], [4, 5], [6, 7, 8, 9]])
    full.weights = np.arange(9, dtype=np.float32)
    assert full.drop_last(1).weights.tolist() == [0, 1, 3, 5, 6, 7]  # what training packs with
    assert full.drop_last(1).take([2, 0]).weights.tolist() == [5, 6, 7, 0, 1]  # an update's focus rows


def test_distributed_shares_follow_the_weight_sum():
    targets = np.array([[1, 2, IGNORE], [3, IGNORE, IGNORE], [4, 5, 6], [7, IGNORE, IGNORE]])
    w = np.array([[1, 1, 0], [10, 0, 0], [1, 1, 1], [2, 0, 0]], np.float32)
    rows = np.arange(4)
    shares = [shard_rows(rows, targets, Dist(rank=r, world=2), w) for r in range(2)]
    assert [s[0].tolist() for s in shares] == [[0, 2], [1, 3]]
    assert [s[1] for s in shares] == pytest.approx([2 * 5 / 17, 2 * 12 / 17])
    assert sum(s[1] for s in shares) == pytest.approx(2.0)  # DDP's average: the global weighted mean


# -----------------------------------------------------------------------------
# training with weight_col

TINY = dict(block_size=6, n_layer=1, n_head=1, n_embd=16, max_steps=4, eval_interval=4, warmup_steps=1,
            batch_size=8, progress=False, dropout=0.0, threads=1, fuse_transitions="false", holdout="none",
            weight_col="w")


def write_log(path, weights):
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(40), 5)
    items = rng.integers(1, 30, size=len(users))
    pl.DataFrame({"user_id": users, "item_id": items, "timestamp": np.tile(np.arange(5), 40),
                  "w": weights}).write_csv(path)
    return items


def trained_loss(tmp_path, name, weights, item_to_check):
    from nanorec.runs.rundir import read_metrics
    from nanorec.runs.run import Run
    from nanorec.core.train import run
    data = str(tmp_path / f"{name}.csv")
    write_log(data, weights)
    run(Config(data=data, **TINY), str(tmp_path / name), quiet=True)
    r = Run.open(str(tmp_path / name))
    hist = Sequences.from_lists([r.histories[0][:-1].tolist()])  # user 0 before its last event
    logits = r.scorer(hist, None)[0]
    return read_metrics(str(tmp_path / name))["history"], float(torch.log_softmax(logits[1:], 0)[item_to_check - 1])


def test_weight_col_all_ones_is_the_unweighted_run_and_a_weighted_target_moves_the_model_more(tmp_path):
    from nanorec.core.train import run
    n = 200
    items = write_log(str(tmp_path / "probe.csv"), np.ones(n))
    target = int(items[4])  # user 0's last event
    ones_hist, ones_lp = trained_loss(tmp_path, "ones", np.ones(n), target)
    plain_cfg = dict(TINY, weight_col="")
    data = str(tmp_path / "ones.csv")
    run(Config(data=data, **plain_cfg), str(tmp_path / "plain"), quiet=True)
    from nanorec.runs.rundir import read_metrics
    plain_hist = read_metrics(str(tmp_path / "plain"))["history"]
    assert [h["train_loss"] for h in plain_hist] == [h["train_loss"] for h in ones_hist]  # bit-identical
    w = np.ones(n)
    w[4] = 50.0  # user 0's last event counts 50 times
    _, heavy_lp = trained_loss(tmp_path, "heavy", w, target)
    assert heavy_lp > ones_lp  # the weighted target's log-probability rose more
