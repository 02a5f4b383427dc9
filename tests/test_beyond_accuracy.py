"""Beyond-accuracy metrics (evaluate.beyond_metrics) against hand-computed tiny cases, and their
place in every run's metrics.json (GPT, baselines; loo and holdout=none) beside the baselines."""
import json
import math

import numpy as np
import pytest
import torch

from nanorec.config import Config
from nanorec.data import Sequences
from nanorec.evaluation.metrics import beyond_metrics, intra_list_similarity
from nanorec.core.train import run

# 6 items; training counts: i1 4, i2 2, i3 1, i4 1, i5 0, i6 0 (8 interactions)
COUNTS = np.array([0, 4, 2, 1, 1, 0, 0])
LISTS = np.array([[1, 2, 3],
                  [1, 5, 2]])
HISTORIES = Sequences.from_lists([[1, 3], [4]])  # mean popularity: (4 + 1) / 2 = 2.5 and 1 -> 1.75


def test_hand_computed():
    m = beyond_metrics(LISTS, HISTORIES, COUNTS, num_items=6, ks=(2, 3))
    # coverage: {1, 2, 5} of 6 at 2; {1, 2, 3, 5} of 6 at 3
    assert m["coverage@2"] == pytest.approx(3 / 6)
    assert m["coverage@3"] == pytest.approx(4 / 6)
    # novelty: -log2(count / 8), an unseen item (i5) as if seen once
    info = {1: -math.log2(4 / 8), 2: -math.log2(2 / 8), 3: -math.log2(1 / 8), 5: -math.log2(1 / 8)}
    assert m["novelty@2"] == pytest.approx((info[1] + info[2] + info[1] + info[5]) / 4)
    assert m["novelty@3"] == pytest.approx((info[1] + info[2] + info[3] + info[1] + info[5] + info[2]) / 6)
    # average recommended popularity and its ratio to the histories' (1.75)
    assert m["avg_pop@2"] == pytest.approx((4 + 2 + 4 + 0) / 4)
    assert m["avg_pop@3"] == pytest.approx((4 + 2 + 1 + 4 + 0 + 2) / 6)
    assert m["pop_ratio@3"] == pytest.approx(m["avg_pop@3"] / 1.75)
    assert "ILS@3" not in m  # no content: no similarity


def test_intra_list_similarity_by_hand():
    # unit vectors: i1 (1,0), i2 (0,1), i3 (1,0), i5 no content (zero row)
    v = torch.zeros(7, 2)
    v[1], v[2], v[3], v[4], v[6] = torch.tensor([1., 0]), torch.tensor([0., 1]), torch.tensor([1., 0]), \
        torch.tensor([0.6, 0.8]), torch.tensor([0., 1])
    # list 1 (i1 i2 i3): pairs 12 -> 0, 13 -> 1, 23 -> 0: 1/3; list 2 (i1 i5 i2): only 12 has content -> 0
    assert intra_list_similarity(LISTS, v) == pytest.approx((1 / 3 + 0) / 2)
    # a list with no pair that has content is left out of the mean
    assert intra_list_similarity(np.array([[1, 3], [5, 1]]), v) == pytest.approx(1.0)
    m = beyond_metrics(LISTS, HISTORIES, COUNTS, num_items=6, ks=(3,), vectors=v)
    assert m["ILS@3"] == pytest.approx(1 / 6)


def txt(tmp_path, n_users=60, seed=0):
    rng = np.random.default_rng(seed)
    path = tmp_path / "d.txt"
    with open(path, "w") as f:
        for u in range(1, n_users + 1):
            x = int(rng.integers(1, 21))
            row = []
            for _ in range(int(rng.integers(4, 8))):
                row.append(x)
                x = x % 20 + 1 if rng.random() < 0.8 else int(rng.integers(1, 21))
            f.write(" ".join(map(str, [u, *row])) + "\n")
    return str(path)


def tiny(data, **kw):
    return Config(data=data, max_steps=6, eval_interval=3, checkpoint_interval=3, batch_size=4, block_size=8,
                  n_embd=8, n_layer=1, n_head=1, warmup_steps=1, progress=False, **kw).validate()


@pytest.mark.parametrize("settings", [dict(), dict(method="transitions"), dict(holdout="none", fusion_weights="0.1,0.1")])
def test_every_run_reports_them(tmp_path, settings):
    data = txt(tmp_path)
    m = run(tiny(data, **settings), str(tmp_path / "run"), quiet=True)
    on_disk = json.load(open(tmp_path / "run" / "metrics.json"))
    b = on_disk["beyond"]
    for key in ("coverage@10", "novelty@10", "avg_pop@10", "pop_ratio@10"):
        assert key in b and b[key] == m["beyond"][key]
    assert 0 < b["coverage@10"] <= 1 and b["novelty@10"] > 0
    assert b["split"] == ("test" if settings.get("holdout") != "none" else "all users (holdout=none: whole histories)")
    if settings.get("method") is None and settings.get("holdout") != "none":
        # a GPT run carries the baselines beside it, scored on the same test users
        side = on_disk["baselines"]
        assert set(side) == {"popularity", "transitions"}
        assert side["popularity"]["test"]["users"] == on_disk["test"]["users"]
        assert "transitions" in open(tmp_path / "run" / "train.log").read().splitlines()[-1]


def test_a_popularity_run_by_hand(tmp_path):
    """A popularity run's lists are each user's unseen items by training count (ties: lower index),
    so coverage, novelty and average popularity follow from the counts in plain Python."""
    from nanorec.data import item_counts, load, split
    data = txt(tmp_path)
    m = run(tiny(data, method="popularity"), str(tmp_path / "run"), quiet=True)
    ds = load(data)
    sp = split(ds)
    counts = item_counts(sp.train, ds.num_items)
    total = counts.sum()
    lists = []
    for r in range(len(sp.test.users)):
        seen = set(sp.test.histories[r].tolist())
        lists.append(sorted(range(1, ds.num_items + 1), key=lambda i: (i in seen, -counts[i], i))[:10])
    flat = [i for lst in lists for i in lst]
    b = m["beyond"]
    assert b["users"] == len(lists)
    assert b["coverage@10"] == pytest.approx(len(set(flat)) / ds.num_items)
    assert b["avg_pop@10"] == pytest.approx(np.mean([counts[i] for i in flat]))
    assert b["novelty@10"] == pytest.approx(np.mean([-math.log2(max(counts[i], 1) / total) for i in flat]))
    hist = np.mean([np.mean([counts[i] for i in sp.test.histories[r]]) for r in range(len(lists))])
    assert b["pop_ratio@10"] == pytest.approx(b["avg_pop@10"] / hist)
