"""GPT + item-to-item fusion: the weights are chosen on validation and every scorer of the run uses them."""
import json
import os

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from nanorec import Recommender, rundir
from nanorec.baselines.transitions import Transitions
from nanorec.cli import main as cli
from nanorec.content import save_table
from nanorec.data import EvalSet, Sequences, load_like, split
from nanorec.evaluate import evaluate
from nanorec.fusion import (CONTENT_WEIGHTS, NO_VALIDATION, SIGNALS, WEIGHTS, choose_weights, content_term,
                            fused_scorer, table_term)
from nanorec.scoring import gpt_scorer
from nanorec.synthetic import write_csv

TINY = ["max_steps=60", "eval_interval=30", "n_embd=16", "n_head=1", "n_layer=1", "block_size=8", "batch_size=16",
        "threads=1", "fuse_transitions=true"]


def test_fused_scores_follow_the_formula():
    hist = Sequences.from_lists([[1, 2], [3]])
    g = torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.0, 3.0, 2.0, 1.0]])
    t = np.array([[0.0, 0.1, 0.2, 0.7], [0.0, 0.6, 0.3, 0.1]], dtype=np.float32)
    c = np.array([[0.0, 0.5, 0.5, 0.0], [0.0, 0.2, 0.2, 0.6]], dtype=np.float32)
    s = torch.tensor([[0.0, 1.0, -0.5, 0.25], [0.0, 0.0, 1.0, 0.5]])
    gpt = lambda h, u: g.clone()
    terms = [table_term(lambda h, u: t.copy()), table_term(lambda h, u: c.copy()), lambda h, u: s.clone()]
    assert fused_scorer(gpt, terms, (0.0, 0.0, 0.0)) is gpt
    out = fused_scorer(gpt, terms, (0.5, 0.2, 2.0))(hist, None)
    gg = g.clone()
    gg[:, 0] = -np.inf
    logp = torch.log_softmax(gg, 1)
    log_t, log_c = torch.log(torch.from_numpy(t) + 1e-6), torch.log(torch.from_numpy(c) + 1e-6)
    torch.testing.assert_close(out[:, 1:], (logp + 0.5 * log_t + 0.2 * log_c + 2.0 * s)[:, 1:])
    assert torch.isinf(out[:, 0]).all()
    # a zero weight drops its term: it is never called (None stands for a run without content)
    boom = lambda h, u: (_ for _ in ()).throw(AssertionError("a weight-0 term was scored"))
    out = fused_scorer(gpt, [terms[0], boom, None], (0.5, 0.0, 0.0))(hist, None)
    torch.testing.assert_close(out[:, 1:], (logp + 0.5 * log_t)[:, 1:])


class Content(torch.nn.Module):  # what content_term reads of a GPT's content input
    def __init__(self, table, has):
        super().__init__()
        self.table, self.has_content = table, has


def test_content_term_is_the_cosine_with_the_last_item():
    a = torch.tensor([[0, 0], [3, 4], [1, 0], [0, 2], [0, 0]], dtype=torch.float32)  # item 4: no content
    b = torch.tensor([[0], [1], [-1], [2], [0]], dtype=torch.float32)
    has = torch.tensor([False, True, True, True, False])
    one = type("M", (), {"content": [Content(a, has)]})
    term = content_term(one)
    s = term(Sequences.from_lists([[2, 1], [4], [3]]), None)
    np.testing.assert_allclose(s[0].numpy(), [0, 1, 0.6, 0.8, 0], atol=1e-6)  # last item 1 = (0.6, 0.8)
    np.testing.assert_allclose(s[1].numpy(), [0, 0, 0, 0, 0], atol=1e-6)  # no content: 0 everywhere
    np.testing.assert_allclose(s[2].numpy(), [0, 0.8, 0, 1, 0], atol=1e-6)
    two = content_term(type("M", (), {"content": [Content(a, has), Content(b, has)]}))
    s2 = two(Sequences.from_lists([[1]]), None)  # the mean of the tables' cosines: (1 + 1)/2, (0.6 - 1)/2, ...
    np.testing.assert_allclose(s2[0].numpy(), [0, 1, -0.2, 0.9, 0], atol=1e-6)
    assert content_term(type("M", (), {"content": []})) is None
    empty = term(Sequences.from_lists([[], [3], []]), None)  # an empty history has no last item: all 0
    np.testing.assert_allclose(empty.numpy(), [[0] * 5, [0, 0.8, 0, 1, 0], [0] * 5], atol=1e-6)
    assert term(Sequences.from_lists([[]]), None).abs().sum() == 0


def test_the_weight_search_ranks_each_tuple_as_evaluate_does():
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 25
    hist = Sequences.from_lists([list(rng.integers(1, n_items + 1, size=rng.integers(1, 5))) for _ in range(n_users)])
    valid = EvalSet(np.arange(n_users), hist, rng.integers(1, n_items + 1, size=n_users))
    g = torch.from_numpy(rng.normal(size=(n_users, n_items + 1)).astype(np.float32))
    tables = [rng.random((n_users, n_items + 1)).astype(np.float32) for _ in range(2)]
    sim = torch.from_numpy(rng.uniform(-1, 1, size=(n_users, n_items + 1)).astype(np.float32))
    # scorers keyed on the users, so every batch order gives each user its own row
    gpt = lambda h, u: g[u].clone()
    terms = [table_term(lambda h, u, T=T: T[u].copy()) for T in tables] + [lambda h, u: sim[u].clone()]
    best, grid = choose_weights(gpt, terms, valid, batch_size=16)
    tried = {tuple(float(w) for w in k.split(",")): v for k, v in grid.items()}
    for ws, ndcg in tried.items():  # every tuple tried is ranked exactly as evaluate ranks its fused scorer
        assert ndcg == evaluate(fused_scorer(gpt, terms, ws), valid, batch_size=7)["NDCG@10"]
    assert tried[best] == max(tried.values())
    # one weight at a time: the last step (content) and the one before it (w1, content 0) found their lines' best
    b1, b2, _ = best
    assert all(tried[(b1, b2, w)] <= tried[best] for w in CONTENT_WEIGHTS)
    assert all(tried[(w, b2, 0.0)] <= tried[(b1, b2, 0.0)] for w in WEIGHTS)
    assert all((w, 0.0, 0.0) in tried for w in WEIGHTS)  # the first line: w1 alone, the GPT included
    best2, grid2 = choose_weights(gpt, terms[:2] + [None], valid, batch_size=16)  # no content: no w3 search
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
    assert grid[chosen] == max(grid.values()) and "0.0,0.0,0.0" in grid
    assert any(not k.endswith(",0.0") for k in grid) == with_content  # content's weight searched only with content
    assert m["valid"]["NDCG@10"] == grid[chosen]  # the reported validation is the fused model's
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
    cfg, model, _ = rundir.load_run(run)
    trans = Transitions.from_state(load_file(os.path.join(run, "transitions.safetensors")))
    want = evaluate(fused_scorer(gpt_scorer(model), [table_term(trans.score)], (0.3,)),
                    split(load_like(cfg, data)).test)["NDCG@10"]
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
