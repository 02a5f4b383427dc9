"""GPT + item-to-item fusion: the weights are chosen on validation and every scorer of the run uses them."""
import json
import os

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from nanorec import Recommender
from nanorec.runs import rundir
from nanorec.methods.transitions import Transitions
from nanorec.cli import main as cli
from nanorec.content.tables import save_table
from nanorec.data import EvalSet, Sequences, load_like, split
from nanorec.evaluation.metrics import evaluate
from nanorec.methods.gpt import load_gpt
from nanorec.scoring.fusion import LADDER, NO_VALIDATION, TOL, SIGNALS, choose_weights, content_term, fused_scorer
from nanorec.scoring.scorer import Factored, Sparse, from_factors, gpt_scorer
from nanorec.data.synthetic import write_csv

TINY = ["max_steps=60", "eval_interval=30", "n_embd=16", "n_head=1", "n_layer=1", "block_size=8", "batch_size=16",
        "threads=1", "fuse_transitions=true"]


class Table:  # a count table with dense rows given by hand, in the factored form fusion reads
    def __init__(self, rows, prior):
        self.rows, self.prior = rows, prior  # rows (users, N+1) >= 0, prior (N+1,)

    def factors(self, histories, users=None):
        r = self.rows[users]
        b, i = np.nonzero(r)
        return Factored(torch.zeros(len(r), 0), torch.zeros(r.shape[1], 0), torch.from_numpy(self.prior),
                        (Sparse(b.astype(np.int64), i.astype(np.int64), r[b, i]),))

    def dense(self, users):
        return self.rows[users] + self.prior[None, :]


class Vectors:  # a content term given by hand: cosines = unit rows
    def __init__(self, q, items):
        self.q, self.items = q, items

    def factors(self, histories, users=None):
        return Factored(self.q[torch.from_numpy(np.asarray(users))], self.items)


def hand_case(rng, n_users, n_items, sparse=0.3):
    """A GPT (logits as factors), two tables (prior + sparse rows), content vectors, all keyed on the user."""
    q = torch.from_numpy(rng.normal(size=(n_users, 4)).astype(np.float32))
    w = torch.from_numpy(rng.normal(size=(n_items + 1, 4)).astype(np.float32))
    gpt = from_factors(lambda h, u: Factored(q[torch.from_numpy(np.asarray(u))], w))
    tables = []
    for _ in range(2):
        rows = (rng.random((n_users, n_items + 1)) * (rng.random((n_users, n_items + 1)) < sparse)).astype(np.float32)
        rows[:, 0] = 0
        tables.append(Table(rows, (1e-4 * rng.random(n_items + 1)).astype(np.float32)))
    unit = lambda x: torch.nn.functional.normalize(torch.from_numpy(x.astype(np.float32)), dim=1)
    content = Vectors(unit(rng.normal(size=(n_users, 3))), unit(rng.normal(size=(n_items + 1, 3))))
    return gpt, q @ w.T, tables, content


def test_fused_scores_follow_the_formula():
    rng = np.random.default_rng(1)
    gpt, g, tables, content = hand_case(rng, 3, 6)
    users = np.arange(3)
    hist = Sequences.from_lists([[1, 2], [3], []])
    assert fused_scorer(gpt, tables, content, (0.0, 0.0, 0.0)) is gpt
    out = fused_scorer(gpt, tables, content, (0.5, 0.2, 2.0))(hist, users)
    log_t, log_c = (torch.log(torch.from_numpy(t.dense(users)) + 1e-6) for t in tables)
    cos = content.q @ content.items.T
    torch.testing.assert_close(out[:, 1:], (g + 0.5 * log_t + 0.2 * log_c + 2.0 * cos)[:, 1:])
    assert torch.isinf(out[:, 0]).all()
    # a zero weight drops its term: it is never scored (None stands for a run without content)
    boom = type("Boom", (), {"factors": lambda self, h, u=None: (_ for _ in ()).throw(AssertionError("scored"))})()
    out = fused_scorer(gpt, [tables[0], boom], None, (0.5, 0.0, 0.0))(hist, users)
    torch.testing.assert_close(out[:, 1:], (g + 0.5 * log_t)[:, 1:])


def test_fused_top_k_and_ranks_equal_a_full_sort_of_the_dense_scores():
    """The factored fusion (bias + sparse corrections + content columns) ranks and cuts lists
    exactly as sorting its dense matrix would, whatever the chunk size."""
    from nanorec.evaluation.metrics import factor_ranks, target_ranks
    from nanorec.scoring.scorer import top_k
    rng = np.random.default_rng(2)
    n_users, n_items = 40, 300
    gpt, _, tables, content = hand_case(rng, n_users, n_items, sparse=0.05)
    users = np.arange(n_users)
    hist = Sequences.from_lists([list(rng.integers(1, n_items + 1, size=rng.integers(0, 6))) for _ in users])
    targets = rng.integers(1, n_items + 1, size=n_users)
    scorer = fused_scorer(gpt, tables, content, (1.0, 0.3, 2.0))
    dense = scorer(hist, users)
    want = target_ranks(dense.clone(), hist, torch.from_numpy(targets)).numpy()
    for chunk in (16, 100, 4096):
        assert (factor_ranks(scorer.factors(hist, users), hist, targets, chunk=chunk)[0] == want).all()
        items, _ = top_k(scorer, hist, users, k=10, chunk=chunk)
        d = dense.clone()
        for r in range(n_users):
            d[r, hist[r]] = torch.finfo(torch.float32).min
        assert (items == torch.sort(d, dim=1, descending=True, stable=True).indices[:, :10].numpy()).all()


def test_top_k_of_the_whole_catalogue_is_the_full_sort():
    """k = every item, seen items kept: the list is the whole catalogue in sorted order.
    The probe that sets each row's first floor computes the scores with other matrix shapes
    than the chunks; its float rounding once put the last item a hair above its chunk score,
    and the list came back one item short (index 2**32 - 1, score NaN)."""
    from nanorec.scoring.scorer import top_k
    for seed in range(60):
        g = torch.Generator().manual_seed(seed)
        n_items, n_users = int(torch.randint(5, 40, (1,), generator=g)), 7
        f = Factored(torch.randn(n_users, 16, generator=g), torch.randn(n_items + 1, 16, generator=g),
                     torch.randn(n_items + 1, generator=g) if seed % 2 else None)
        scorer = from_factors(lambda h, u=None: f)
        hist = Sequences.from_lists([[1]] * n_users)
        items, _ = top_k(scorer, hist, k=n_items, exclude_seen=False)
        want = torch.sort(f.dense(), dim=1, descending=True, stable=True).indices[:, :n_items].numpy()
        assert (items == want).all(), seed


class Content(torch.nn.Module):  # what content_term reads of a GPT's content input
    def __init__(self, table, has):
        super().__init__()
        self.table, self.has_content = table, has


def test_content_term_is_the_cosine_with_the_last_item():
    a = torch.tensor([[0, 0], [3, 4], [1, 0], [0, 2], [0, 0]], dtype=torch.float32)  # item 4: no content
    b = torch.tensor([[0], [1], [-1], [2], [0]], dtype=torch.float32)
    has = torch.tensor([False, True, True, True, False])
    one = type("M", (), {"content": [Content(a, has)]})
    term = lambda h, u=None, m=one: content_term(m).factors(h, u).dense()[:, 1:]
    s = term(Sequences.from_lists([[2, 1], [4], [3]]))
    np.testing.assert_allclose(s[0].numpy(), [1, 0.6, 0.8, 0], atol=1e-6)  # last item 1 = (0.6, 0.8)
    np.testing.assert_allclose(s[1].numpy(), [0, 0, 0, 0], atol=1e-6)  # no content: 0 everywhere
    np.testing.assert_allclose(s[2].numpy(), [0.8, 0, 1, 0], atol=1e-6)
    two = type("M", (), {"content": [Content(a, has), Content(b, has)]})
    s2 = term(Sequences.from_lists([[1]]), m=two)  # the mean of the tables' cosines: (1 + 1)/2, (0.6 - 1)/2, ...
    np.testing.assert_allclose(s2[0].numpy(), [1, -0.2, 0.9, 0], atol=1e-6)
    assert content_term(type("M", (), {"content": []})) is None
    empty = term(Sequences.from_lists([[], [3], []]))  # an empty history has no last item: all 0
    np.testing.assert_allclose(empty.numpy(), [[0] * 4, [0.8, 0, 1, 0], [0] * 4], atol=1e-6)
    assert term(Sequences.from_lists([[]])).abs().sum() == 0


def test_the_weight_search_ranks_each_tuple_as_evaluate_does():
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 25
    hist = Sequences.from_lists([list(rng.integers(1, n_items + 1, size=rng.integers(1, 5))) for _ in range(n_users)])
    valid = EvalSet(np.arange(n_users), hist, rng.integers(1, n_items + 1, size=n_users))
    gpt, _, tables, content = hand_case(rng, n_users, n_items)
    best, grid = choose_weights(gpt, tables, content, valid, batch_size=16)
    tried = {tuple(float(w) for w in k.split(",")): v for k, v in grid.items()}
    for ws, ndcg in tried.items():  # every tuple tried is ranked exactly as evaluate ranks its fused scorer
        assert ndcg == evaluate(fused_scorer(gpt, tables, content, ws), valid, batch_size=7)["NDCG@10"]
    assert max(tried.values()) - 3 * TOL <= tried[best]  # each line's choice: within TOL of its best
    # one weight at a time: the last line (content) found its best; the first line tried w1 alone
    b1, b2, _ = best
    assert all(v <= tried[best] for (w1, w2, _), v in tried.items() if (w1, w2) == (b1, b2))
    assert all((w, 0.0, 0.0) in tried for w in (0.0,) + LADDER)
    best2, grid2 = choose_weights(gpt, tables, None, valid, batch_size=16)  # no content: no w3 search
    assert best2[2] == 0.0 and all(k.endswith(",0.0") for k in grid2)


@pytest.mark.parametrize("with_content", [False, True])
def test_training_with_fusion_chooses_on_validation_and_evaluate_agrees(tmp_path, with_content):
    data = write_csv(str(tmp_path / "log.csv"), num_users=500, num_items=120, seed=3)
    extra = []
    if with_content:  # a content table that says which items go together: 5 groups of 24
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(5, 8))
        vectors = (centres[np.arange(120) % 5] + 0.1 * rng.normal(size=(120, 8))).astype(np.float32)
        save_table(str(tmp_path / "c.safetensors"), np.arange(120), vectors)
        extra = [f"content={tmp_path / 'c.safetensors'}"]
    run = str(tmp_path / "run")
    assert cli(["train", "--data", data, "--out", run, "--quiet", *TINY, *extra]) == 0
    m = json.load(open(os.path.join(run, "metrics.json")))
    grid = m["fusion"]["valid_NDCG@10_by_weights"]
    chosen = ",".join(str(m["fusion"]["weights"][s]) for s in SIGNALS)
    assert grid[chosen] == m["fusion"]["valid_NDCG@10"] >= max(grid.values()) - 3 * TOL and "0.0,0.0,0.0" in grid
    assert any(not k.endswith(",0.0") for k in grid) == with_content  # content's weight searched only with content
    seen = m["exclude_seen"]  # the log re-buys: the run may list earlier items (seen.py)
    assert seen["valid_NDCG@10"]["exclude"] == grid[chosen]  # the grid ranks with earlier items excluded
    assert m["valid"]["NDCG@10"] == seen["valid_NDCG@10"][seen["choice"]]  # the reported validation is the fused model's
    saved = json.load(open(os.path.join(run, "fusion.json")))
    assert saved == {f"{s}_weight": m["fusion"]["weights"][s] for s in SIGNALS}
    out = str(tmp_path / "eval.json")
    assert cli(["evaluate", "--run", run, "--data", data, "--json", out]) == 0
    assert json.load(open(out))["NDCG@10"] == m["test"]["NDCG@10"]
    assert Recommender.load(run).recommend(k=5).height == 5 * 500
    if with_content:
        return
    # a run folder from before co-occurrence (transitions only) still loads and scores that way
    json.dump({"transitions_weight": 0.3}, open(os.path.join(run, "fusion.json"), "w"))
    os.remove(os.path.join(run, "cooccurrence.safetensors"))
    old = str(tmp_path / "old.json")
    assert cli(["evaluate", "--run", run, "--data", data, "--json", old]) == 0
    cfg, model = rundir.read_config(run), load_gpt(run)
    trans = Transitions.from_state(load_file(os.path.join(run, "transitions.safetensors")))
    want = evaluate(fused_scorer(gpt_scorer(model), [trans, None], None, (0.3,)),
                    split(load_like(cfg, data)).test, seen["choice"] == "exclude")["NDCG@10"]
    assert json.load(open(old))["NDCG@10"] == want


def test_a_run_without_validation_takes_fixed_or_default_weights(tmp_path):
    """holdout=none has nothing to choose on, and all_data trained on its validation targets:
    fusion_weights=w1,w2[,w3] (what a validated run chose) or, without it, the stated default."""
    data = write_csv(str(tmp_path / "log.csv"), num_users=200, num_items=60, seed=4)
    tiny = ["max_steps=10", "n_embd=16", "n_head=1", "n_layer=1", "block_size=8", "batch_size=16", "threads=1",
            "fuse_transitions=true"]
    for name, extra, want in (("fixed", ["holdout=none", "fusion_weights=0.1,0.75"], (0.1, 0.75, 0.0)),
                              ("default", ["holdout=none"], NO_VALIDATION[:2] + (0.0,)),  # no content
                              ("all_data", ["all_data=true"], NO_VALIDATION[:2] + (0.0,)),
                              ("all_data_fixed", ["all_data=true", "fusion_weights=0,0.2"], (0.0, 0.2, 0.0))):
        run = str(tmp_path / name)
        assert cli(["train", "--data", data, "--out", run, "--quiet", *tiny, *extra]) == 0
        saved = json.load(open(os.path.join(run, "fusion.json")))
        assert tuple(saved[f"{s}_weight"] for s in SIGNALS) == want
        assert rundir.read_fusion(run) == want


def test_an_updates_search_starts_near_the_runs_weights():
    """search_near: one pass from the run's weights, NEAR-fold steps (0 tried too), stepping on
    while an edge wins: it reaches a peak 4x away in a few tuples, and drops a term that hurts."""
    from nanorec.scoring.fusion import NEAR, search, search_near
    peak = (1.6, 0.05)
    tried = []

    def ndcg(w):  # a smooth bump in log space around `peak`; the second term hurts above 0.1
        tried.append(w)
        return 0.3 - 0.01 * np.log(max(w[0], 1e-6) / peak[0]) ** 2 - (0.02 if w[1] > 0.1 else 0.0) \
            + (0.001 if 0 < w[1] <= 0.1 else 0.0)

    best = search_near(ndcg, (0.4, 0.4, 0.0), with_content=False)
    assert best == (1.6, 0.0, 0.0)  # 0.4 -> 0.8 -> 1.6 (3.2 is past the peak); 0.2 and 0.8 hurt, 0 does not
    assert len(set(tried)) <= 10 and NEAR == 2.0
    assert 0 < search_near(ndcg, (0.4, 0.1, 0.0), with_content=False)[1] <= 0.1  # a term that helps is kept
    tried.clear()
    full = search(ndcg, with_content=False)
    assert abs(np.log(full[0] / 1.6)) < 0.2 and len(set(tried)) > 2 * 12  # the full search: many more tuples
