"""The methods' registry: every registered method fits, saves, loads back and scores exactly as
it did before it was saved; a run folder opens through the registry as train wrote it."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from nanorec import methods
from nanorec.runs import rundir
from nanorec.config import Config
from nanorec.data import EvalSet, Sequences, load, split
from nanorec.errors import DataError
from nanorec.evaluation.metrics import evaluate
from nanorec.runs.run import Run
from nanorec.data.synthetic import generate
from nanorec.core.train import run as train

NUM_ITEMS = 30


def as_array(scores) -> np.ndarray:
    return scores.numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)


@pytest.fixture(scope="module")
def log():
    """(train, valid, histories to score, their user rows): 120 synthetic users over 30 items."""
    users, items, _ = generate(num_users=120, num_items=NUM_ITEMS, seed=3, p_two=0.0, max_len=8)
    rows = [(items[users == u] + 1).tolist() for u in np.unique(users)]
    rows = [r for r in rows if len(r) >= 3]
    train = Sequences.from_lists([r[:-1] for r in rows])
    valid = EvalSet(np.arange(len(rows)), train, np.array([r[-1] for r in rows], np.int64))
    return train, valid, Sequences.from_lists(rows[:10]), np.arange(10)


def settings(name: str) -> dict:
    """What a method needs beyond the log: a content table for kNN, a short budget for LightGCN."""
    rng = np.random.default_rng(0)
    has = np.ones(NUM_ITEMS + 1, bool)
    has[[0, 5]] = False  # padding, and one item without content
    return {"knn": dict(content=(rng.standard_normal((NUM_ITEMS + 1, 6)).astype(np.float32), has), neighbours=10,
                        last=2, pop_weight=0.1),
            "lightgcn": dict(dim=8, max_epochs=3, eval_every=1, progress=False)}.get(name, {})


@pytest.mark.parametrize("name", [n for n, m in methods.METHODS.items() if not m.trains])
def test_every_fitted_method_round_trips_fit_save_load_to_the_same_scores(name, log, tmp_path):
    train, valid, histories, users = log
    method = methods.get(name)
    model = method.fit(train, NUM_ITEMS, valid, **settings(name))
    method.save(model, str(tmp_path))
    loaded = method.load(os.path.join(tmp_path, rundir.BASELINE), NUM_ITEMS)
    before = as_array(method.scorer(model)(histories, users))
    after = as_array(method.scorer(loaded)(histories, users))
    assert before.shape == (10, NUM_ITEMS + 1)
    np.testing.assert_array_equal(after, before)
    finite = before[:, 1:][np.isfinite(before[:, 1:])]
    assert len(np.unique(finite)) > 2  # real scores that order items, not a constant
    assert evaluate(method.scorer(loaded), valid)["NDCG@10"] == evaluate(method.scorer(model), valid)["NDCG@10"]
    # a table of another catalogue size is refused, naming the file
    with pytest.raises(DataError, match=f"scores {NUM_ITEMS} items, but items.json has {NUM_ITEMS + 1}"):
        method.load(os.path.join(tmp_path, rundir.BASELINE), NUM_ITEMS + 1)


@pytest.mark.parametrize("name", ["gpt", "svd"])
def test_a_trained_run_opens_through_the_registry_with_the_scores_train_reported(name, tmp_path):
    users, items, _ = generate(num_users=150, num_items=NUM_ITEMS, seed=4, p_two=0.0, max_len=8)
    data = tmp_path / "log.csv"
    data.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for t, (u, i) in enumerate(zip(users, items))))
    cfg = Config(data=str(data), method=name, n_embd=16, n_layer=1, n_head=1, block_size=8, batch_size=16,
                 max_steps=40, eval_interval=20, threads=1, progress=False, fuse_transitions="true")
    metrics = train(cfg, str(tmp_path / "run"), quiet=True)
    run = Run.open(str(tmp_path / "run"))
    assert type(run.model) is methods.get(name).model
    sp = split(load(str(data)))
    valid = evaluate(run.scorer, sp.valid, exclude_seen=run.exclude_seen)
    assert valid["NDCG@10"] == pytest.approx(metrics["valid"]["NDCG@10"], abs=1e-6) and valid["NDCG@10"] > 0
    files = set(os.listdir(tmp_path / "run"))
    assert (rundir.WEIGHTS in files) == methods.get(name).trains and (rundir.BASELINE in files) != methods.get(name).trains
    assert json.load(open(tmp_path / "run" / rundir.CONFIG))["method"] == name


def test_every_method_config_accepts_is_registered_and_only_the_tables_take_weights():
    from nanorec.config import expected
    accepted = [n for n in methods.METHODS if expected("method", n) is None]
    assert accepted == ["gpt", "popularity", "transitions", "cooccurrence", "svd"]  # knn, lightgcn: leaderboard only
    assert [n for n, m in methods.METHODS.items() if m.takes_weights] == ["gpt", "transitions", "cooccurrence"]
    assert [n for n, m in methods.METHODS.items() if m.trains] == ["gpt"]
