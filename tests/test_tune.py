"""nanorec tune: trials select on validation; the test split is scored once, for the winner, after the search."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("optuna")

import nanorec.evaluate
import nanorec.train
from nanorec.cli import main as cli
from nanorec.data import load, split
from nanorec.synthetic import write_csv
from nanorec.tune import parse_space
from nanorec.errors import UsageError


def test_three_trials_never_see_test_targets_before_the_winner(tmp_path, monkeypatch):
    data = write_csv(str(tmp_path / "log.csv"), num_users=300, num_items=60, seed=2)
    test = split(load(data)).test
    seen = []  # which split each evaluation scored, in order

    real = nanorec.evaluate.evaluate

    def spy(scorer, evalset, *a, **k):
        is_test = len(evalset.targets) == len(test.targets) and np.array_equal(evalset.targets, test.targets) \
            and np.array_equal(evalset.histories.items, test.histories.items)
        seen.append("test" if is_test else "valid")
        return real(scorer, evalset, *a, **k)

    monkeypatch.setattr(nanorec.evaluate, "evaluate", spy)
    monkeypatch.setattr(nanorec.train, "evaluate", spy)
    out = str(tmp_path / "study")
    rc = cli(["tune", "--data", data, "--out", out, "--trials", "3", "--space", "learning_rate=1e-3..1e-2:log,n_layer=1|2",
              "n_embd=16", "n_head=1", "block_size=8", "max_steps=30", "eval_interval=10", "batch_size=16", "threads=1"])
    assert rc == 0
    assert seen.count("test") == 1 and seen[-1] == "test"  # once, after every trial's validation
    assert seen.count("valid") >= 3 * 2
    study = json.load(open(os.path.join(out, "study.json")))
    assert len(study["trials"]) == 3
    best = study["best"]
    assert best["valid_NDCG@10"] == max(t["valid_NDCG@10"] for t in study["trials"] if t["valid_NDCG@10"] is not None)
    # the winner's test figure is the shipped (fused) model's: what `nanorec evaluate` gives for best/
    assert json.load(open(os.path.join(out, "best", "config.json")))["fuse_transitions"] == "auto"
    assert os.path.exists(os.path.join(out, "best", "fusion.json"))
    ev = str(tmp_path / "best_test.json")
    assert cli(["evaluate", "--run", os.path.join(out, "best"), "--data", data, "--split", "test", "--json", ev]) == 0
    assert best["test"]["NDCG@10"] == json.load(open(ev))["NDCG@10"]
    assert best["test"]["HR@10"] == json.load(open(ev))["HR@10"]
    for t in study["trials"]:  # trial runs hold validation figures only
        assert "test" not in json.load(open(os.path.join(t["run"], "metrics.json")))


@pytest.mark.parametrize("spec,msg", [("nope=1..2", "not a tunable"), ("dropout=0.7..0.1", "low < high"),
                                      ("weight_decay=0..1:log", "log scale"), ("dropout=2..3", "dropout"),
                                      ("n_layer=a|b", "expected int"), ("dropout", "key=low..high")])
def test_bad_space_is_a_usage_error(spec, msg):
    with pytest.raises(UsageError, match=msg):
        parse_space(spec)


def test_api_tune_returns_the_loaded_winner(tmp_path):
    from nanorec import Recommender
    data = write_csv(str(tmp_path / "log.csv"), num_users=200, num_items=40, seed=4)
    rec = Recommender.tune(data, space="learning_rate=1e-3..1e-2:log", trials=2, out=str(tmp_path / "study"),
                           n_embd=16, n_head=1, n_layer=1, block_size=8, max_steps=20, eval_interval=10,
                           batch_size=16, threads=1)
    trials = rec.study["trials"]
    assert len(trials) == 2 and all(t["state"] == "COMPLETE" for t in trials)
    winner = max(trials, key=lambda t: t["valid_NDCG@10"])  # chosen on validation, nothing else
    assert rec.study["best"]["number"] == winner["number"]
    assert rec.metrics["valid"]["NDCG@10"] == winner["valid_NDCG@10"] == rec.study["best"]["valid_NDCG@10"]
    from nanorec.data import load
    from nanorec.evaluate import evaluate
    from nanorec.run import Run
    shipped = evaluate(Run.open(rec.run_dir).scorer, split(load(data)).test)  # the returned run, as it ships
    assert rec.study["best"]["test"]["NDCG@10"] == shipped["NDCG@10"]
    assert rec.recommend(k=3).height == 3 * 200
