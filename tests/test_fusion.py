"""GPT + transitions fusion: the weight is chosen on validation and every scorer of the run uses it."""
import json
import os

import numpy as np
import torch

from nanorec import Recommender
from nanorec.cli import main as cli
from nanorec.data import Sequences
from nanorec.fusion import WEIGHTS, fused_scorer
from nanorec.synthetic import write_csv


def test_fused_scores_follow_the_formula():
    hist = Sequences.from_lists([[1, 2], [3]])
    g = torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.0, 3.0, 2.0, 1.0]])
    t = np.array([[0.0, 0.1, 0.2, 0.7], [0.0, 0.6, 0.3, 0.1]], dtype=np.float32)
    gpt, trans = (lambda h, u: g.clone()), (lambda h, u: t.copy())
    assert fused_scorer(gpt, trans, 0.0) is gpt
    out = fused_scorer(gpt, trans, 0.5)(hist, None)
    gg = g.clone()
    gg[:, 0] = -np.inf
    want = torch.log_softmax(gg, 1) + 0.5 * torch.log(torch.from_numpy(t) + 1e-6)
    torch.testing.assert_close(out[:, 1:], want[:, 1:])
    assert torch.isinf(out[:, 0]).all()


def test_training_with_fusion_chooses_on_validation_and_evaluate_agrees(tmp_path):
    data = write_csv(str(tmp_path / "log.csv"), num_users=500, num_items=120, seed=3)
    run = str(tmp_path / "run")
    assert cli(["train", "--data", data, "--out", run, "--quiet", "fuse_transitions=true", "max_steps=60",
                "eval_interval=30", "n_embd=16", "n_head=1", "n_layer=1", "block_size=8", "batch_size=16",
                "threads=1"]) == 0
    m = json.load(open(os.path.join(run, "metrics.json")))
    grid = {float(k): v for k, v in m["fusion"]["valid_NDCG@10_by_weight"].items()}
    assert set(grid) == set(WEIGHTS) and m["fusion"]["weight"] == max(grid, key=lambda w: (grid[w], -w))
    assert m["valid"]["NDCG@10"] == grid[m["fusion"]["weight"]]  # the reported validation is the fused model's
    out = str(tmp_path / "eval.json")
    assert cli(["evaluate", "--run", run, "--data", data, "--json", out]) == 0
    assert json.load(open(out))["NDCG@10"] == m["test"]["NDCG@10"]
    assert Recommender.load(run).recommend(k=5).height == 5 * 500
