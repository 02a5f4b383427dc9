"""nanorec tune: trials select on validation; the test split is scored once, for the winner, after the search."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("optuna")

import nanorec.evaluation.metrics
import nanorec.core.validation
from nanorec.cli import main as cli
from nanorec.data import load, split
from nanorec.data.synthetic import write_csv
from nanorec.core.tune import parse_space
from nanorec.errors import UsageError


def test_three_trials_never_see_test_targets_before_the_winner(tmp_path, monkeypatch):
    data = write_csv(str(tmp_path / "log.csv"), num_users=300, num_items=60, seed=2)
    test = split(load(data)).test
    seen = []  # which split each evaluation scored, in order

    real = nanorec.evaluation.metrics.evaluate

    def spy(scorer, evalset, *a, **k):
        is_test = len(evalset.targets) == len(test.targets) and np.array_equal(evalset.targets, test.targets) \
            and np.array_equal(evalset.histories.items, test.histories.items)
        seen.append("test" if is_test else "valid")
        return real(scorer, evalset, *a, **k)

    monkeypatch.setattr(nanorec.evaluation.metrics, "evaluate", spy)
    monkeypatch.setattr(nanorec.core.validation, "evaluate", spy)
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
    saved = json.load(open(os.path.join(out, "best", "config.json")))
    assert saved["fuse_transitions"] == "true" and "fuse_transitions" in saved["auto"]  # auto, resolved: fused
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
    from nanorec.evaluation.metrics import evaluate
    from nanorec.runs.run import Run
    best = Run.open(rec.run_dir)
    shipped = evaluate(best.scorer, split(load(data)).test, best.exclude_seen)  # the returned run, as it ships
    assert rec.study["best"]["test"]["NDCG@10"] == shipped["NDCG@10"]
    assert rec.recommend(k=3).height == 3 * 200


# -----------------------------------------------------------------------------
# a search that survives failures, interruptions and odd folder names (issue 17)

SMALL = ["n_embd=16", "n_layer=1", "block_size=8", "max_steps=20", "eval_interval=10", "batch_size=16", "threads=1"]


def _files(path):
    return {os.path.relpath(os.path.join(d, f), path): open(os.path.join(d, f), "rb").read()
            for d, _, fs in os.walk(path) for f in fs}


def test_a_failed_trial_is_one_line_and_the_search_goes_on(tmp_path, capsys):
    data = write_csv(str(tmp_path / "log.csv"), num_users=200, num_items=40, seed=4)
    out = str(tmp_path / "study")
    # seed 0 draws n_head 3, 3, 1: two configs that cannot train (16 is not divisible by 3), then one that can
    argv = ["tune", "--data", data, "--out", out, "--trials", "3", "--space", "n_head=1|3", *SMALL, "seed=0"]
    assert cli(argv) == 0
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err and printed.err == ""
    lines = printed.out.splitlines()
    assert lines[:2] == ["trial 0: failed: n_embd=16 is not divisible by n_head=3  {'n_head': 3}",
                         "trial 1: failed: n_embd=16 is not divisible by n_head=3  {'n_head': 3}"]
    study = json.load(open(os.path.join(out, "study.json")))
    assert [t["state"] for t in study["trials"]] == ["FAIL", "FAIL", "COMPLETE"]
    assert study["trials"][0]["error"] == "n_embd=16 is not divisible by n_head=3"
    # the trial's line and its selection figure are the run as it ships (fused): metrics.json's "valid"
    shipped = json.load(open(os.path.join(out, "trials", "002", "metrics.json")))["valid"]["NDCG@10"]
    assert lines[2] == f"trial 2: valid NDCG@10 {shipped:.4f} (the run as shipped)  {{'n_head': 1}}"
    assert study["best"]["number"] == 2 and study["best"]["valid_NDCG@10"] == shipped
    # run again: the three trials are done, nothing re-runs, the same winner (was "Record does not exist")
    assert cli(argv) == 0
    assert json.load(open(os.path.join(out, "study.json")))["trials"] == study["trials"]


def test_a_study_where_no_trial_completes_is_one_line(tmp_path, capsys):
    data = write_csv(str(tmp_path / "log.csv"), num_users=100, num_items=30, seed=4)
    out = str(tmp_path / "study")
    # seed 1 draws n_head 3, 3, 3
    assert cli(["tune", "--data", data, "--out", out, "--trials", "3", "--space", "n_head=1|3", *SMALL, "seed=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no trial of the study completed" in err and "n_head=3" in err, err
    assert not os.path.exists(os.path.join(out, "best")) and not os.path.exists(os.path.join(out, "study.json"))


def test_an_interrupted_trial_is_marked_failed_and_the_resumed_search_draws_new_values(tmp_path, capsys):
    import optuna
    from nanorec.config import Config
    from nanorec.core.tune import storage_url, tune
    data = write_csv(str(tmp_path / "log.csv"), num_users=200, num_items=40, seed=4)
    out = str(tmp_path / "study")
    space = "learning_rate=1e-3..1e-2:log,dropout=0.1..0.5"
    base = lambda: Config(data=data, progress=False, n_embd=16, n_head=1, n_layer=1, block_size=8,  # noqa: E731
                          max_steps=20, eval_interval=10, batch_size=16, threads=1)

    def interrupt(line):  # Ctrl-C while trial 0 is being recorded: it stays RUNNING, as after a kill
        if line.startswith("trial 0:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(base(), out, space, trials=2, log=interrupt)
    stored = optuna.load_study(study_name="nanorec", storage=storage_url(os.path.join(out, "study.db")))
    assert [t.state.name for t in stored.trials] == ["RUNNING"]
    first = stored.trials[0].params

    lines = []
    summary = tune(base(), out, space, trials=2, log=lines.append)
    assert lines[0] == "trial 0: interrupted by an earlier run of this study; marked failed, not counted"
    assert [t["state"] for t in summary["trials"]] == ["FAIL", "COMPLETE", "COMPLETE"]  # two counted trials
    drawn = [t["params"] for t in summary["trials"]]
    assert drawn[0] == first and first not in drawn[1:] and drawn[1] != drawn[2]  # was: trial 1 == trial 0

    # another --space on this study is refused, and nothing of it changes
    before = _files(out)
    argv = ["tune", "--data", data, "--out", out, "--trials", "3", "--space", "learning_rate=1e-3..1e-2:log",
            "n_embd=16", "n_head=1", "n_layer=1", "block_size=8", "max_steps=20", "eval_interval=10", "threads=1"]
    capsys.readouterr()
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"was run with --space {space!r}" in err, err
    assert _files(out) == before


def test_a_baseline_tunes_in_one_trial_with_the_figures_of_the_trained_baseline(tmp_path, capsys):
    data = write_csv(str(tmp_path / "log.csv"), num_users=200, num_items=40, seed=4)
    out, run = str(tmp_path / "study"), str(tmp_path / "run")
    assert cli(["tune", "--data", data, "--out", out, "--trials", "5", "method=transitions"]) == 0
    printed = capsys.readouterr().out
    assert cli(["train", "--data", data, "--out", run, "--quiet", "method=transitions"]) == 0
    trained = json.load(open(os.path.join(run, "metrics.json")))
    study = json.load(open(os.path.join(out, "study.json")))
    assert [t["state"] for t in study["trials"]] == ["COMPLETE"] and study["space"] == "none"
    assert study["best"]["valid_NDCG@10"] == trained["valid"]["NDCG@10"]
    assert study["best"]["test"]["NDCG@10"] == trained["test"]["NDCG@10"]
    assert f"trial 0: valid NDCG@10 {trained['valid']['NDCG@10']:.4f}" in printed
    capsys.readouterr()
    assert cli(["tune", "--data", data, "--out", str(tmp_path / "s2"), "--space", "dropout=0.1..0.5",
                "method=popularity"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "method=popularity has nothing to search" in err, err


@pytest.mark.parametrize("name", ["g?", "h%2F..%2F..%2Fescape", "{SCHEMA_VERSION}"])
def test_the_study_folder_name_is_a_path_never_url_syntax(tmp_path, monkeypatch, name):
    data = write_csv(str(tmp_path / "log.csv"), num_users=100, num_items=30, seed=4)
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    assert cli(["tune", "--data", data, "--out", name, "method=popularity"]) == 0
    inside = os.path.join("a", "b", name) + os.sep
    written = sorted(_files(str(tmp_path)))
    assert written and all(f == "log.csv" or f.startswith(inside) for f in written), written
    assert os.path.join(inside, "study.db") in written


def test_tune_never_replaces_a_best_folder_it_did_not_write(tmp_path, capsys):
    data = write_csv(str(tmp_path / "log.csv"), num_users=100, num_items=30, seed=4)
    proj = tmp_path / "proj"
    (proj / "best").mkdir(parents=True)
    (proj / "best" / "notes.txt").write_text("kept here by the user\n")
    before = _files(str(proj))
    argv = ["tune", "--data", data, "--out", str(proj), "method=popularity"]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(proj / "best") in err and "--overwrite" in err, err
    assert _files(str(proj)) == before
    assert cli(argv + ["--overwrite"]) == 0
    assert sorted(os.listdir(proj / "best")) == sorted(os.listdir(proj / "trials" / "000"))
    assert cli(argv) == 0  # best/ is this study's own copy now


def test_the_pruning_line_stops_a_run_exactly_where_optunas_median_pruner_prunes_it():
    """train.run's stop_below (validation.below) with tune's pruning_line decides at every step as
    MedianPruner's should_prune does: trials of different lengths, NaN passes, steps before warmup."""
    import optuna
    from nanorec.core.tune import PRUNE_AFTER, pruning_line
    from nanorec.core.validation import below
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warmup = 10
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER, n_warmup_steps=warmup))
    rng = np.random.default_rng(0)
    decisions = []
    for n in range(12):
        steps = [5, 10, 20, 30, 40][:rng.integers(2, 6)]  # some trials stop early
        curve = rng.uniform(0.1, 0.3, len(steps))
        if n in (4, 7):
            curve[rng.integers(len(steps))] = np.nan
        if n == 9:
            curve[:] = np.nan
        line, trial, history = pruning_line(study, warmup), study.ask(), []
        for step, value in zip(steps, curve.tolist()):
            history.append({"step": step, "NDCG@10": value})
            trial.report(value, step)
            decisions.append(trial.should_prune())
            assert below(history, line) == decisions[-1], (n, step, line, history)
        study.tell(trial, float(np.nanmax(curve)) if not np.isnan(curve).all() else 0.0)
    assert any(decisions) and not all(decisions)  # both kinds of decision were compared
