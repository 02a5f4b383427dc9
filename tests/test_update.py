"""`nanorec update` / `Recommender.update`: a trained run extended with new events (new users,
new items) into a new, ordinary run folder; the old run byte-identical; bad input one line.

The data: a ring of 15 items (every user walks i -> i+1), then new events in which 50 users
(40 known, 10 new) go 7 -> 99 -> 3 -> 4, item 99 never seen before. A model that learned the
new events puts 99 right after 7 and nowhere else."""
from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest

from nanorec import Recommender
from nanorec.runs import rundir
from nanorec.cli import main as cli_main
from nanorec.errors import DataError, UsageError
from nanorec.runs.run import Run
from nanorec.runs.update import UPDATE_LR_SCALE
from tests.conftest import snapshot

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(n_embd=16, n_layer=1, n_head=1, block_size=16, batch_size=8, threads=1, progress=False,
            max_steps=300, eval_interval=100, warmup_steps=10, fuse_transitions="false", dropout=0.1,
            learning_rate=5e-3)  # the GPT alone, fast to learn: what it ranks is what the update taught it
NEW_ITEM = 99


def ring_log(users=range(60), length=6, seed=0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in users:
        i = int(rng.integers(1, 16))
        for t in range(length):
            rows.append((u, i, t))
            i = i % 15 + 1
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")


def new_events(users=(*range(40), *range(100, 110)), t0=100) -> pl.DataFrame:
    rows = [(u, item, t0 + t) for u in users for t, item in enumerate((7, NEW_ITEM, 3, 4))]
    return pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")


def run_cli(argv):
    """(exit status, stderr lines) of `nanorec ARGV`, in-process."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(list(argv))
    return code, [ln for ln in err.getvalue().splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A GPT run on the ring log, its data as a CSV, the new events as a CSV."""
    root = str(tmp_path_factory.mktemp("update"))
    log, new = os.path.join(root, "log.csv"), os.path.join(root, "new.csv")
    ring_log().write_csv(log)
    new_events().write_csv(new)
    run = os.path.join(root, "run")
    Recommender(**TINY).fit(log, out=run)
    return root, log, new, run


@pytest.fixture(scope="module")
def updated(base):
    root, log, new, run = base
    before = snapshot(run)
    # the run's own rate (a tiny run trains at 5e-3; the default, UPDATE_LR_SCALE x it, overshoots here)
    rec = Recommender.load(run).update(new_events(), out=os.path.join(root, "updated"), max_steps=60,
                                       learning_rate=TINY["learning_rate"])
    assert snapshot(run) == before  # the old run is never written
    return rec


def ranks_of(rec, history, item, k=10):
    """The item's rank after `history` (k + 1: below the top k)."""
    top = rec.recommend_history(history, k=k, exclude_seen=False)["item_id"].to_list()
    return top.index(item) + 1 if item in top else k + 1


# -----------------------------------------------------------------------------
# what an update makes

def test_the_new_item_is_known_and_follows_the_transition_the_new_events_teach(base, updated):
    old = Recommender.load(base[3])
    assert NEW_ITEM not in old._run.item_ids.tolist() and NEW_ITEM in updated._run.item_ids.tolist()
    # the learned transition: 99 first after 7 (the ring says 8, the old run's first), not after another item
    assert ranks_of(old, [5, 6, 7], 8) == 1
    assert ranks_of(updated, [5, 6, 7], NEW_ITEM) == 1 and ranks_of(updated, [7], NEW_ITEM) == 1
    assert ranks_of(updated, [12], NEW_ITEM) > 5
    # a new user whose events hold the new item: the model continues its history (4 -> 5)
    lists = updated.recommend(users=[105], k=3)
    assert lists["source"].to_list() == ["model"] * 3
    assert lists["item_id"][0] == 5
    assert updated.recommend(users=[0], k=3)["source"].to_list() == ["model"] * 3  # a known user, too
    assert updated.metrics["update"] == {
        "from_run": os.path.abspath(base[3]), "data": "<dataframe>", "new_events": 200, "new_users": 10,
        "new_items": 1, "users_with_new_events": 50, "users_with_new_targets": 50, "replayed_users": 20, "steps": 60,
        "full_steps": old.metrics["best_step"], "full_learning_rate": TINY["learning_rate"]}  # budgets: a share of it


def test_existing_ids_keep_their_indices_and_histories_are_extended(base, updated):
    old = Run.open(base[3])
    new = updated._run
    n = old.num_items
    assert new.item_ids[:n + 1].tolist() == old.item_ids.tolist() and new.item_ids[n + 1:].tolist() == [NEW_ITEM]
    assert new.user_ids[:60].tolist() == old.user_ids.tolist()
    assert new.user_ids[60:].tolist() == list(range(100, 110))
    for u in (0, 39):  # known users with new events: the saved history, then the new events
        assert new.histories[u].tolist() == old.histories[u].tolist() + [7, n + 1, 3, 4]
    assert new.histories[45].tolist() == old.histories[45].tolist()  # no new events: unchanged
    assert new.histories[65].tolist() == [7, n + 1, 3, 4]
    assert new.config.max_steps == 60 and new.config.n_embd == 16


def test_an_updated_run_is_an_ordinary_run_folder(base, updated, tmp_path):
    """recommend and evaluate read it as any run (evaluate on the whole log gives metrics.json's
    test figure: the extended data is that log), and it can be updated again."""
    root, log, new, run = base
    whole = str(tmp_path / "whole.csv")
    pl.concat([ring_log(), new_events()]).write_csv(whole)  # 99 sorts last: the extended vocabulary's order
    out = str(tmp_path / "ev.json")
    code, lines = run_cli(["evaluate", "--run", updated.run_dir, "--data", whole, "--json", out, "--device", "cpu"])
    assert code == 0, lines
    assert json.load(open(out))["NDCG@10"] == pytest.approx(updated.metrics["test"]["NDCG@10"], abs=1e-6)
    lists = str(tmp_path / "lists.csv")
    assert run_cli(["recommend", "--run", updated.run_dir, "--out", lists, "--device", "cpu"])[0] == 0
    assert pl.read_csv(lists)["user_id"].n_unique() == 70
    again = updated.update(new_events(users=(1, 2, 200), t0=200), out=str(tmp_path / "again"))
    first = Recommender.load(base[3]).metrics["best_step"]
    assert again.metrics["update"]["full_steps"] == first  # budgets are a share of the first run's
    # the default rate: a multiple of the first run's, read from the record (never of the update's own)
    assert again.config.learning_rate == pytest.approx(UPDATE_LR_SCALE * TINY["learning_rate"])
    assert again.metrics["update"]["steps"] == round(0.1 * first) and again.metrics["update"]["new_users"] == 1


def test_a_baseline_run_is_refitted_on_the_extended_histories(base, tmp_path):
    root, log, new, run = base
    rec = Recommender(method="transitions").fit(log, out=str(tmp_path / "t"))
    assert ranks_of(rec, [7], 8) == 1
    up = rec.update(new, out=str(tmp_path / "t2"))
    # 40 + 10 users now go 7 -> 99 in training (their last two events are held out: 3, 4),
    # against 7 -> 8 of the ring: both lead after 7
    assert sorted(up.recommend_history([7], k=2, exclude_seen=False)["item_id"].to_list()) == [8, NEW_ITEM]
    assert "update" not in up.metrics or up.metrics["update"]["new_items"] == 1


def test_the_cli_writes_the_same_run_as_the_api(base, updated, tmp_path):
    root, log, new, run = base
    out = str(tmp_path / "cli")
    code, lines = run_cli(["update", "--run", run, "--data", new, "--out", out, "--quiet", "max_steps=60",
                          f"learning_rate={TINY['learning_rate']}"])
    assert code == 0, lines
    a, b = Run.open(out), updated._run
    assert a.item_ids.tolist() == b.item_ids.tolist() and a.histories.items.tolist() == b.histories.items.tolist()
    ma, mb = json.load(open(os.path.join(out, "metrics.json"))), updated.metrics
    assert ma["valid"] == mb["valid"] and ma["test"] == mb["test"]  # same data, same seed: the same training


# -----------------------------------------------------------------------------
# bad input: one line, exit status 2, the old run unchanged, nothing at --out

def _bad_cases(root, log, new, run):
    def csv(name, df):
        path = os.path.join(root, "bad", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        df.write_csv(path)
        return path
    renamed = csv("renamed.csv", new_events().rename({"user_id": "customer"}))
    text_items = csv("text_items.csv", new_events().with_columns(pl.format("sku{}", "item_id").alias("item_id")))
    other = csv("other.csv", ring_log(users=range(500, 520)).with_columns(pl.col("item_id") + 1000))
    empty = csv("empty.csv", new_events().head(0))
    again = csv("again.csv", pl.concat([ring_log(), new_events()]))
    return [
        # (argv after `update --run RUN`, error substrings)
        (["--data", renamed], ["renamed.csv", "missing column 'user_id'", "the run's settings"]),
        (["--data", text_items], ["text_items.csv", "item ids are integers", "these are text"]),
        (["--data", other], ["other.csv", "shares no user and no item", "another data set"]),
        (["--data", empty], ["empty.csv", "no interactions"]),
        (["--data", again], ["again.csv", "the run's own events again"]),
        (["--data", new, "--out", run], ["--out", "is the run being updated"]),
        (["--data", new, "--out", os.path.join(run, "sub")], ["--out", "inside the run being updated"]),
        (["--data", new, "n_embd=32"], ["n_embd", "only max_steps"]),
        (["--data", new, "max_steps=0"], ["max_steps=0", ">= 1"]),
        (["--data", os.path.join(root, "nope.csv")], ["nope.csv", "no such file"]),
        (["--data", new, "--resume"], ["nothing to resume"]),
    ]


def test_bad_input_is_one_line_and_changes_nothing(base, tmp_path):
    root, log, new, run = base
    before = snapshot(run)
    for extra, mentions in _bad_cases(root, log, new, run):
        out = str(tmp_path / "out")
        argv = ["update", "--run", run, "--out", out, "--quiet", *extra]
        if "--out" in extra:
            argv = ["update", "--run", run, "--quiet", *extra]
        code, lines = run_cli(argv)
        assert code == 2 and len(lines) == 1 and lines[0].startswith("nanorec update: error: "), (extra, lines)
        for m in mentions:
            assert m in lines[0], (extra, m, lines[0])
        assert not os.path.exists(out) and snapshot(run) == before, extra
        assert os.listdir(tmp_path) == [], (extra, os.listdir(tmp_path))  # no lock, no hidden folder left


def test_bad_keys_and_values_are_refused_as_the_cli_refuses_them(base, tmp_path):
    root, log, new, run = base
    rec = Recommender.load(run)
    with pytest.raises(UsageError, match="n_embd"):
        rec.update(new, n_embd=8)
    with pytest.raises(UsageError, match="unknown config key 'max_step'"):
        rec.update(new, max_step=8)
    with pytest.raises(UsageError, match="fitted"):
        Recommender().update(new)
    with pytest.raises(DataError, match="no interactions"):
        rec.update(new_events().head(0))
    # the API's values are checked as the CLI's key=value are, before anything is read or written
    with pytest.raises(UsageError, match=r"max_steps=0: expected .*>= 1|max_steps=0: expected"):
        rec.update(new, out=str(tmp_path / "zero"), max_steps=0)
    with pytest.raises(UsageError, match=r"max_steps='5': expected int"):
        rec.update(new, out=str(tmp_path / "text"), max_steps="5")
    with pytest.raises(UsageError, match="split_time=.*holdout=time"):
        rec.update(new, out=str(tmp_path / "split"), split_time="0.5")
    assert os.listdir(tmp_path) == []


def test_resume_after_a_complete_update_says_it_is_complete(base, updated):
    root, log, new, run = base
    code, lines = run_cli(["update", "--run", run, "--data", new, "--out", updated.run_dir, "--resume", "--quiet"])
    assert code == 2 and len(lines) == 1 and "is complete" in lines[0] and "nothing to resume" in lines[0], lines


# -----------------------------------------------------------------------------
# time order and overlap: an update's events come after the run's

def test_events_older_than_the_run_or_already_in_it_are_refused(base, tmp_path):
    root, log, new, run = base
    before = snapshot(run)
    last = ring_log().filter(pl.col("user_id") == 3).tail(1)  # user 3's last event in the run: (3, item, 5)
    again = pl.concat([last, new_events(users=(3,), t0=10)])  # that event again, then newer ones
    older = new_events(users=(3, 4), t0=4)  # at times 4..7: 4 is before the users' last events (5)
    for df, name, words in ((again, "again.csv", ["1 events are already in the run", "user 3", "at 5"]),
                            (older, "older.csv", ["2 events of 2 known users", "older than the user's last event",
                                                  "at 4", "the user's last at 5", "pass only the newer events"])):
        path = str(tmp_path / name)
        df.write_csv(path)
        code, lines = run_cli(["update", "--run", run, "--data", path, "--out", str(tmp_path / "out"), "--quiet"])
        assert code == 2 and len(lines) == 1, lines
        for w in words:
            assert w in lines[0], (w, lines[0])
    assert snapshot(run) == before and not os.path.exists(tmp_path / "out")
    # at the user's last time, another item is a new event (ties keep the file's order)
    tie = pl.DataFrame({"user_id": [3], "item_id": [int(last["item_id"][0]) % 15 + 1], "timestamp": [5]})
    up = Recommender.load(run).update(tie, out=str(tmp_path / "tie"), max_steps=1)
    assert up.metrics["update"]["new_events"] == 1


# -----------------------------------------------------------------------------
# runs with target_filter, weight_col, holdout=time: the folder keeps what an update needs

def typed_log(log: pl.DataFrame, every: int = 3) -> pl.DataFrame:
    """The log with an event_type: every `every`-th event a view (context), the others purchases,
    and a weight per event (purchase 2, view 0.5)."""
    n = log.height
    kind = np.where(np.arange(n) % every == 0, "view", "purchase")
    return log.with_columns(pl.Series("event_type", kind), pl.Series("w", np.where(kind == "view", 0.5, 2.0)))


@pytest.mark.parametrize("keys", [dict(target_filter="event_type=purchase"), dict(weight_col="w"),
                                  dict(target_filter="event_type=purchase", weight_col="w")])
def test_an_event_typed_or_weighted_run_is_extended_with_its_flags_and_weights(tmp_path, keys):
    old_log, add = typed_log(ring_log()), typed_log(new_events(), every=2)
    run = Recommender(**{**TINY, **keys, "max_steps": 20}).fit(old_log, out=str(tmp_path / "run"))
    up = run.update(add, out=str(tmp_path / "up"), max_steps=5)
    a, b = run._run.histories, up._run.histories
    for u in (0, 39):  # a known user: the saved flags and weights, then the new events'
        new_kind = add.filter(pl.col("user_id") == u)["event_type"].to_numpy()
        if "target_filter" in keys:
            assert b.targets[b.offsets[u]:b.offsets[u + 1]].tolist() == \
                a.targets[a.offsets[u]:a.offsets[u + 1]].tolist() + (new_kind == "purchase").tolist()
        want = add.filter(pl.col("user_id") == u)["w"].to_list() if "weight_col" in keys \
            else (new_kind == "purchase").astype(float).tolist()
        assert b.weights[b.offsets[u + 1] - 4:b.offsets[u + 1]].tolist() == want
    # the extended data is the whole log read with the run's settings: same flags, same weights
    from nanorec.data import load_like
    whole = load_like(up.config, pl.concat([old_log, add]))
    if "target_filter" in keys:
        assert np.array_equal(whole.sequences.is_target(), b.is_target())
    assert whole.weights.tolist() == b.weights.tolist()
    # exclude_seen removes a user's purchases, never an item only viewed
    lists = up.recommend(users=[0], k=15, exclude_seen=True)["item_id"].to_list()
    bought = set(up._run.histories.seen_items()[0].tolist())
    assert not bought & {up._run.item_ids.tolist().index(i) for i in lists}


def test_the_default_budget_is_a_share_of_the_steps_to_the_runs_best(base, tmp_path):
    """A run that early stopping ended before max_steps: the update's default budget is a tenth of
    the steps to its best step (the weights the update starts from), not of its max_steps."""
    root, log, new, run = base
    short = Recommender(**{**TINY, "eval_interval": 10, "patience": 1}).fit(log, out=str(tmp_path / "short"))
    best = short.metrics["best_step"]
    assert best < short.metrics["steps"] < TINY["max_steps"]  # early stopping ended it after its best step
    up = short.update(new_events(), out=str(tmp_path / "up"))
    assert up.metrics["update"]["full_steps"] == best
    assert up.metrics["update"]["steps"] == max(1, round(0.1 * best))


def test_an_event_typed_update_trains_on_the_users_with_a_new_purchase(tmp_path):
    """Users whose new events are views alone bring no new target: the update's batches are the users
    with a new purchase (and a replay of as many others), not every user with a new event."""
    from nanorec.runs.update import extend
    old_log = typed_log(ring_log())
    add = typed_log(new_events(), every=2)
    views_only = [*range(10), 100, 101]  # 10 known users and 2 new ones whose new events are views alone
    add = add.with_columns(pl.when(pl.col("user_id").is_in(views_only)).then(pl.lit("view"))
                           .otherwise(pl.col("event_type")).alias("event_type"))
    run = Recommender(**{**TINY, "target_filter": "event_type=purchase", "max_steps": 20}).fit(
        old_log, out=str(tmp_path / "run"))
    from nanorec.data import load_like
    ext = extend(run._run, load_like(run.config, add), "add")
    buyers = sorted(set(add.filter(pl.col("event_type") == "purchase")["user_id"].to_list()))
    assert ext.dataset.user_ids[ext.touched].tolist() == sorted(set(add["user_id"].to_list()))
    assert ext.dataset.user_ids[ext.learners].tolist() == buyers
    up = run.update(add, out=str(tmp_path / "up"), max_steps=5)
    record = up.metrics["update"]
    assert (record["users_with_new_events"], record["users_with_new_targets"]) == (50, 50 - len(views_only))
    others = len(ext.dataset.user_ids) - len(ext.learners)  # 32 others for 38 learners: every one replayed
    assert record["replayed_users"] == min(len(ext.learners), others) == 32


def test_a_holdout_time_run_is_updated_and_judged_on_the_newest_events(base, tmp_path):
    root, log, new, run = base
    timed = Recommender(method="transitions", holdout="time", split_time="0.8").fit(log, out=str(tmp_path / "t"))
    up = timed.update(new_events(), out=str(tmp_path / "t2"))
    # the new events' times 100..103 (50 users each): the event at position 0.8 x 200 is at 103
    assert up.config.split_time == "103"
    assert up.metrics["test"]["users"] == 50 and up.metrics["test"]["targets_per_user"] == 1.0  # item 4 at 103
    times, unit = rundir.read_history_times(up.run_dir)
    assert unit is None and times[-4:].tolist() == [100, 101, 102, 103]
    whole, out = str(tmp_path / "whole.csv"), str(tmp_path / "ev.json")  # evaluate reads it as any run
    pl.concat([ring_log(), new_events()]).write_csv(whole)
    code, lines = run_cli(["evaluate", "--run", up.run_dir, "--data", whole, "--json", out, "--device", "cpu"])
    assert code == 0 and json.load(open(out))["NDCG@10"] == pytest.approx(up.metrics["test"]["NDCG@10"]), lines
    # the update's own split time, when given
    up2 = timed.update(new_events(), out=str(tmp_path / "t3"), split_time="102")
    assert up2.metrics["test"]["targets_per_user"] == 2.0  # items 3 and 4
    # a run folder from before nanorec kept event times cannot be split: one line
    old = str(tmp_path / "old")
    shutil.copytree(timed.run_dir, old)
    path = os.path.join(old, rundir.HISTORIES)
    pl.read_parquet(path).drop("time").write_parquet(path)
    with pytest.raises(DataError, match="keeps no event times .holdout=time.*older nanorec"):
        Recommender.load(old).update(new_events(), out=str(tmp_path / "t4"))


def test_old_run_folders_still_update(base, tmp_path):
    """A histories.parquet without weight and time columns (an older nanorec's): updated as before,
    the time order unchecked (nothing to check it against), the own-events check kept."""
    root, log, new, run = base
    old = str(tmp_path / "old")
    shutil.copytree(run, old)
    path = os.path.join(old, rundir.HISTORIES)
    pl.read_parquet(path).select("user_id", "item").write_parquet(path)
    up = Recommender.load(old).update(new_events(), out=str(tmp_path / "up"), max_steps=2)
    assert up.metrics["update"]["new_events"] == 200
    assert rundir.read_history_times(up.run_dir) == (None, None)


def test_unknown_event_types_are_one_line(tmp_path):
    run = Recommender(method="transitions", target_filter="event_type=purchase").fit(
        typed_log(ring_log()), out=str(tmp_path / "run"))
    bad = str(tmp_path / "bad.csv")
    typed_log(new_events()).with_columns(pl.col("event_type").str.to_uppercase()).write_csv(bad)
    code, lines = run_cli(["update", "--run", run.run_dir, "--data", bad, "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2 and len(lines) == 1 and "target_filter" in lines[0] and "PURCHASE" in lines[0], lines


@pytest.fixture(scope="module")
def typed_run(tmp_path_factory):
    """A GPT run with views as context (target_filter): the issue's setup."""
    root = tmp_path_factory.mktemp("typed")
    return Recommender(**{**TINY, "max_steps": 20, "target_filter": "event_type=purchase"}).fit(
        typed_log(ring_log()), out=str(root / "run"))


def _typed_bad_inputs():
    """(name, new events, error substrings): what an update of an event-typed run refuses."""
    add = typed_log(new_events(), every=2)
    partly = add.with_columns(pl.when(pl.arange(0, add.height) % 5 == 0).then(pl.lit("wishlist"))
                              .otherwise(pl.col("event_type")).alias("event_type"))  # 40 of 200 events
    two = partly.with_columns(pl.when(pl.arange(0, add.height) % 7 == 1).then(pl.lit("return"))
                              .otherwise(pl.col("event_type")).alias("event_type"))
    other = typed_log(ring_log(users=range(500, 520)).with_columns(pl.col("item_id") + 1000))
    older = typed_log(new_events(users=(3, 4), t0=4), every=2)
    return [("partly_unknown", partly, ["40 events of event types the run", "never saw", "'wishlist'",
                                        "'purchase', 'view'", "context"]),
            ("two_unknown", two, ["event types the run", "'return', 'wishlist'"]),
            ("all_unknown", add.with_columns(pl.col("event_type").str.to_uppercase()),
             ["no event matches target_filter", "PURCHASE"]),
            ("another_data_set", other, ["shares no user and no item", "another data set"]),
            ("older", older, ["older than the user's last event", "pass only the newer events"])]


@pytest.mark.parametrize("name,df,words", _typed_bad_inputs(), ids=[c[0] for c in _typed_bad_inputs()])
def test_an_event_typed_runs_bad_updates_are_one_line_on_the_cli_and_the_api(typed_run, tmp_path, name, df, words):
    before = snapshot(typed_run.run_dir)
    path = str(tmp_path / f"{name}.csv")
    df.write_csv(path)
    code, lines = run_cli(["update", "--run", typed_run.run_dir, "--data", path, "--out", str(tmp_path / "o"),
                           "--quiet"])
    assert code == 2 and len(lines) == 1 and f"{name}.csv" in lines[0], lines
    for w in words:
        assert w in lines[0], (w, lines[0])
    with pytest.raises(DataError) as e:  # the API: the same refusal, a nanorec error
        typed_run.update(df, out=str(tmp_path / "api"))
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert snapshot(typed_run.run_dir) == before and sorted(os.listdir(tmp_path)) == [f"{name}.csv"]


def test_an_update_with_a_subset_of_the_event_types_keeps_the_runs_list(typed_run, tmp_path):
    """A week without views is no unknown type; the updated run still knows every type, so its own
    update with views is accepted."""
    purchases = typed_log(new_events(), every=2).with_columns(pl.lit("purchase").alias("event_type"))
    up = typed_run.update(purchases, out=str(tmp_path / "up"), max_steps=2)
    assert rundir.read_fingerprint(up.run_dir)["event_types"] == ["purchase", "view"]
    views = typed_log(new_events(t0=200), every=2)
    assert up.update(views, out=str(tmp_path / "up2"), max_steps=2).metrics["update"]["new_events"] == views.height


def test_an_update_searches_fusion_weights_near_the_runs_unless_asked(tmp_path, monkeypatch):
    """The update's weight search starts from the run's weights (a few tuples, the run's among them,
    metrics.json says so); fusion_weights=auto given: the full search. Validation: a fixed sample of
    UPDATE_VALID_USERS (here 30)."""
    monkeypatch.setattr("nanorec.runs.update.UPDATE_VALID_USERS", 30)
    run = Recommender(**{**TINY, "max_steps": 20, "fuse_transitions": "auto"}).fit(ring_log(), out=str(tmp_path / "r"))
    near = run.update(new_events(), out=str(tmp_path / "near"), max_steps=5)
    full = run.update(new_events(), out=str(tmp_path / "full"), max_steps=5, fusion_weights="auto")
    w = rundir.read_fusion(run.run_dir)
    tried_near = near.metrics["fusion"]["valid_NDCG@10_by_weights"]
    tried_full = full.metrics["fusion"]["valid_NDCG@10_by_weights"]
    assert ",".join(str(x) for x in w) in tried_near and "0.0,0.0,0.0" in tried_near
    assert len(tried_near) < len(tried_full) and str(list(w)) in near.metrics["update"]["fusion_search"]
    assert "fusion_search" not in full.metrics["update"]
    assert near.metrics["valid"]["users"] == 30 < run.metrics["valid"]["users"]


# -----------------------------------------------------------------------------
# new items

def test_a_new_item_starts_at_its_neighbours_mean():
    import torch
    from nanorec.data import Sequences
    from nanorec.runs.update import grown_weights
    g = torch.Generator().manual_seed(0)
    wte = torch.randn(6, 8, generator=g)  # padding + items 1..5
    seqs = Sequences.from_lists([[1, 3, 6, 4], [6, 2], [5, 5], [7]])  # 6 after 3, before 4, before 2; 7 alone
    grown = grown_weights({"wte.weight": wte}, 7, np.zeros(2, bool), seed=0, seqs=seqs)["wte.weight"]
    assert grown.shape == (8, 8) and torch.equal(grown[:6], wte)
    spread = 0.1 * wte[1:].std(0)
    near = wte[[3, 4, 2]].mean(0)
    assert ((grown[6] - near).abs() <= 5 * spread).all()  # the neighbours' mean, plus noise
    assert (grown[6] - near).norm() < (grown[6] - wte[1:].mean(0)).norm()
    assert ((grown[7] - wte[1:].mean(0)).abs() <= 5 * spread).all()  # no old neighbour: the average item


def test_an_updated_run_with_a_new_item_that_sorts_first_evaluates(base, tmp_path):
    """The whole log's vocabulary puts item 0 first; the updated run has it last: evaluate
    reads the log in the run's order and gives the run's own test figure."""
    root, log, new, run = base
    t = Recommender(method="transitions").fit(log, out=str(tmp_path / "t"))
    add = new_events().with_columns(pl.col("item_id").replace(NEW_ITEM, 0))
    up = t.update(add, out=str(tmp_path / "t2"))
    assert up._run.item_ids.tolist()[-1] == 0
    whole, out = str(tmp_path / "whole.csv"), str(tmp_path / "ev.json")
    pl.concat([ring_log(), add]).write_csv(whole)
    code, lines = run_cli(["evaluate", "--run", up.run_dir, "--data", whole, "--json", out, "--device", "cpu"])
    assert code == 0, lines
    assert json.load(open(out))["NDCG@10"] == pytest.approx(up.metrics["test"]["NDCG@10"], abs=1e-9)
    code, lines = run_cli(["evaluate", "--run", up.run_dir, "--data", log, "--device", "cpu"])
    assert code == 2 and "item vocabulary" in lines[0], lines  # other items: still refused
    assert "1 item(s) this data lacks" in lines[0] and "as one file" in lines[0], lines  # and what to give


def test_an_update_takes_its_beyond_accuracy_figures_on_a_sample():
    """The end-of-run beyond-accuracy pass (a second scoring of every test user) on a fixed
    sample: an update's lists are judged by the same figures at a fraction of the cost."""
    from nanorec.methods.popularity import Popularity
    from nanorec.data import from_frame, item_counts, split
    from nanorec.evaluation.metrics import score_report
    from nanorec.runs.update import Start
    ds = from_frame(ring_log())
    sp = split(ds)
    pop = Popularity().fit(sp.train, ds.num_items)
    counts = item_counts(sp.train, ds.num_items)
    whole = score_report(pop.score, sp, ds.num_items, counts)
    some = score_report(pop.score, sp, ds.num_items, counts, beyond_users=7)
    assert whole["beyond"]["users"] == 60 and some["beyond"]["users"] == 7
    assert some["test"] == whole["test"]  # accuracy on every test user, as before
    assert some["beyond"] == score_report(pop.score, sp, ds.num_items, counts, beyond_users=7)["beyond"]  # fixed
    assert Start.beyond_users == 2_000


def test_the_log_says_what_is_new_and_what_the_total_is(base, updated):
    root, log, new, run = base
    text = open(os.path.join(updated.run_dir, "train.log")).read()
    # the data line: the extended data's sizes under both names (run + the update's data)
    assert f"data {run} + <dataframe>: 70 users, 16 items, {60 * 6 + 200:,} interactions" in text


# -----------------------------------------------------------------------------
# a killed update: the old run byte-identical, --resume finishes it as an uninterrupted one

def _update_cmd(run, new, out, *extra):
    return [sys.executable, "-m", "nanorec.cli", "update", "--run", run, "--data", new, "--out", out, "--quiet",
            "eval_interval=20", "checkpoint_interval=10", "patience=0", *extra]


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_killed_update_leaves_the_old_run_and_resumes(base, tmp_path):
    root, log, new, run = base
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    before = snapshot(run)
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    subprocess.run(_update_cmd(run, new, full, "max_steps=400"), check=True, capture_output=True, env=env)

    proc = subprocess.Popen(_update_cmd(run, new, killed, "max_steps=400"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)

    def reached_step_40():  # a validation and checkpoints in, most of the steps still to go
        logs = glob.glob(os.path.join(str(tmp_path), ".killed.nanorec-new-*", "killed", "train.log"))
        return bool(logs) and "step 40 " in open(logs[0]).read()

    deadline = time.time() + 120
    while not reached_step_40() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(killed), "the update finished before it was killed"
    assert snapshot(run) == before

    code, lines = run_cli(["update", "--run", run, "--data", new, "--out", killed, "--quiet"])
    assert code == 2 and "--resume" in lines[0], lines  # an interrupted update is never silently discarded
    code, lines = run_cli(["update", "--run", run, "--data", new, "--out", killed, "--quiet", "--resume"])
    assert code == 0, lines
    a, b = (json.load(open(os.path.join(d, "metrics.json"))) for d in (full, killed))
    untimed = lambda h: [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in h]  # noqa: E731
    assert untimed(a["history"]) == untimed(b["history"]) and a["valid"] == b["valid"] and a["test"] == b["test"]
    assert snapshot(run) == before
