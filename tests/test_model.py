import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nanorec.config import Config
from nanorec.data import Sequences
from nanorec.core.loss import full_softmax_cross_entropy
from nanorec.core.model import GPT
from nanorec.core.packing import left_aligned, pack

N = 40


def tiny(**kw):
    base = dict(block_size=12, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    base.update(kw)
    return Config(**base)


def users(seed=0, n=9):
    rng = np.random.default_rng(seed)
    return Sequences.from_lists([list(rng.integers(1, N + 1, size=rng.integers(2, 7))) for _ in range(n)])


def t(a):
    return torch.from_numpy(a)


def per_user_logits(model, packed):
    """{(first two tokens, length): logits} for every user in a packed batch, keyed by content."""
    h = model(t(packed.tokens), t(packed.pos_ids), t(packed.seq_ids))
    out = {}
    for r in range(len(packed)):
        for s in np.unique(packed.seq_ids[r][packed.seq_ids[r] >= 0]):
            cols = packed.seq_ids[r] == s
            key = tuple(packed.tokens[r][cols].tolist())
            out[key] = model.logits(h[r][t(cols)])
    return out


def test_packed_equals_one_user_per_row():
    torch.manual_seed(0)
    model = GPT(tiny(), N).eval()
    seqs = users()
    packed = pack(seqs, 12, rng=np.random.default_rng(3), packing=True)
    unpacked = pack(seqs, 12, packing=False)
    assert len(packed) < len(unpacked)  # several users really share a row
    a, b = per_user_logits(model, packed), per_user_logits(model, unpacked)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5)
    loss_p = model(t(packed.tokens), t(packed.pos_ids), t(packed.seq_ids), t(packed.targets))
    loss_u = model(t(unpacked.tokens), t(unpacked.pos_ids), t(unpacked.seq_ids), t(unpacked.targets))
    torch.testing.assert_close(loss_p, loss_u, rtol=1e-5, atol=1e-6)


def test_no_attention_across_users():
    torch.manual_seed(0)
    model = GPT(tiny(), N).eval()
    row = dict(tokens=[[3, 4, 5, 6, 7, 8]], seq=[[0, 0, 0, 1, 1, 1]], pos=[[0, 1, 2, 0, 1, 2]])
    changed = [[9, 10, 11, 6, 7, 8]]  # user A's items change, user B's stay
    tt = lambda x: torch.tensor(x)
    h1 = model(tt(row["tokens"]), tt(row["pos"]), tt(row["seq"]))
    h2 = model(tt(changed), tt(row["pos"]), tt(row["seq"]))
    torch.testing.assert_close(h1[0, 3:], h2[0, 3:], rtol=0, atol=0)  # B unchanged, bit for bit
    assert not torch.allclose(h1[0, :3], h2[0, :3])


def test_positions_restart_per_user_like_inference():
    torch.manual_seed(0)
    model = GPT(tiny(), N).eval()
    seqs = users(1, 5)
    packed = pack(seqs, 12, packing=True)
    assert packed.pos_ids[0].tolist()[:3] != [0, 1, 2] or packed.seq_ids[0][1] == 0
    for r in range(len(packed)):
        for s in np.unique(packed.seq_ids[r][packed.seq_ids[r] >= 0]):
            assert packed.pos_ids[r][packed.seq_ids[r] == s].tolist() == list(range((packed.seq_ids[r] == s).sum()))
    # the last training position of each user predicts like inference on the same history
    h = model(t(packed.tokens), t(packed.pos_ids), t(packed.seq_ids))
    for u in range(len(seqs)):
        hist = Sequences.from_lists([seqs[u][:-1].tolist()])
        tok, sid, pos, last = left_aligned(hist, 12)
        inf = model.score(t(tok), t(pos), t(sid), t(last))[0]
        r, c = [(r, c) for r in range(len(packed)) for c in range(12)
                if packed.seq_ids[r, c] >= 0 and packed.targets[r, c] == seqs[u][-1]
                and packed.pos_ids[r, c] == len(seqs[u]) - 2
                and packed.tokens[r, c] == seqs[u][-2]][0]
        torch.testing.assert_close(model.logits(h[r, c]), inf, rtol=1e-5, atol=1e-5)


def test_flex_attention_equals_sdpa():
    pytest.importorskip("torch.nn.attention.flex_attention")
    torch.manual_seed(0)
    ref = GPT(tiny(attention="sdpa"), N).eval()
    fast = GPT(tiny(attention="flex"), N).eval()
    fast.load_state_dict(ref.state_dict())
    packed = pack(users(2, 12), 12, rng=np.random.default_rng(0))
    args = (t(packed.tokens), t(packed.pos_ids), t(packed.seq_ids))
    with torch.no_grad():  # FlexAttention has no backward on CPU (training uses it on CUDA)
        torch.testing.assert_close(fast(*args), ref(*args), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast(*args, t(packed.targets)), ref(*args, t(packed.targets)), rtol=1e-4, atol=1e-5)


def test_padding_item_is_never_predicted():
    model = GPT(tiny(), N).eval()
    tok, sid, pos, last = left_aligned(Sequences.from_lists([[1, 2], [3]]), 12)
    scores = model.score(t(tok), t(pos), t(sid), t(last))
    assert torch.isinf(scores[:, 0]).all() and (scores[:, 0] < 0).all()
    assert torch.isfinite(scores[:, 1:]).all()


def test_chunked_cross_entropy_matches_reference():
    torch.manual_seed(0)
    h = torch.randn(37, 8, requires_grad=True)
    w = torch.randn(21, 8, requires_grad=True)
    y = torch.randint(1, 21, (37,))
    logits = h @ w.T
    logits = torch.cat([torch.full((37, 1), float("-inf")), logits[:, 1:]], 1)
    ref = F.cross_entropy(logits, y)
    gh, gw = torch.autograd.grad(ref, (h, w))
    out = full_softmax_cross_entropy(h, w, y, chunk=5)  # several chunks, a ragged last one
    oh, ow = torch.autograd.grad(out, (h, w))
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(oh, gh)
    torch.testing.assert_close(ow, gw)
    assert ow[0].abs().sum() == 0  # padding gets no gradient from the output layer


def test_content_table_is_frozen_and_projection_trains():
    torch.manual_seed(0)
    table = torch.randn(N + 1, 6)
    has = torch.ones(N + 1, dtype=torch.bool)
    has[5] = False  # item 5 has no content: uses the learned "missing" vector
    model = GPT(tiny(), N, content=[(table.clone(), has)])
    assert all("table" not in n for n, _ in model.named_parameters())
    before = model.content[0].proj.weight.detach().clone()
    opt = model.configure_optimizer(0.1, 1e-2, (0.9, 0.98), "cpu")
    packed = pack(Sequences.from_lists([[1, 5, 2, 3], [4, 5, 6]]), 12)
    for _ in range(3):
        loss = model(t(packed.tokens), t(packed.pos_ids), t(packed.seq_ids), t(packed.targets))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(model.content[0].table, table)  # frozen table untouched
    assert not torch.equal(model.content[0].proj.weight, before)  # projection learned
    assert model.content[0].missing.detach().abs().sum() > 0  # missing vector learned (item 5 was seen)
    assert "content.0.table" not in model.state_dict()  # the table lives in its own file


def test_weight_decay_groups():
    model = GPT(tiny(), N)
    opt = model.configure_optimizer(0.1, 1e-3, (0.9, 0.98), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    decay_ids = {id(p) for p in decay["params"]}
    assert id(model.wte.weight) not in decay_ids and id(model.wpe.weight) not in decay_ids
    assert id(model.h[0].attn.c_attn.weight) in decay_ids
    assert id(model.h[0].ln_1.weight) not in decay_ids
    n_total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == n_total


def test_cold_item_is_scored_through_its_content():
    """Item 7 never appears in training but shares its content with item 3, which
    always follows item 1: after [1], item 7 must rank right behind 3."""
    torch.manual_seed(0)
    n = 30
    table = torch.eye(n + 1)[:, 1:] * 1.0  # one-hot content per item: (N+1, N)
    table[7] = table[3]  # 7 looks exactly like 3
    has = torch.ones(n + 1, dtype=torch.bool)
    has[0] = False
    model = GPT(tiny(n_layer=1), n, content=[(table, has)])
    rng = np.random.default_rng(0)
    rows = [[1, 3]] * 40 + [[int(a), int(b)] for a, b in rng.integers(8, n + 1, size=(80, 2))]
    packed = pack(Sequences.from_lists(rows), 12, rng=np.random.default_rng(0))
    opt = model.configure_optimizer(0.0, 1e-2, (0.9, 0.98), "cpu")
    for _ in range(150):
        loss = model(t(packed.tokens), t(packed.pos_ids), t(packed.seq_ids), t(packed.targets))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    tok, sid, pos, last = left_aligned(Sequences.from_lists([[1]]), 12)
    scores = model.score(t(tok), t(pos), t(sid), t(last))[0]
    order = scores.argsort(descending=True).tolist()
    assert order[0] == 3
    assert order.index(7) <= 2, order[:5]
