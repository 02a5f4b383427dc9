"""The challenge workflow end to end through the CLI: a challenge folder (item ids
from 0, cold test users) -> `nanorec train` -> `nanorec recommend` -> a submission.

Checked: one row per test.csv user in test.csv order, header user_id,predictions,
10 distinct known original ids a row, the popularity list for cold users, no
"test" block in metrics.json (a challenge folder hides its answers), item 0 is
a real item that can be recommended while padding never is, generative lists
never repeat, and --users restricts the output.
"""
import json
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from nanorec.cli import main as cli_main
from nanorec.data.synthetic import write_challenge

TINY = ["max_steps=12", "eval_interval=6", "n_embd=16", "n_layer=1", "n_head=1", "progress=false",
        "warmup_steps=2", "batch_size=16", "block_size=16", "threads=1", "dropout=0.0", "learning_rate=0.01"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}


def nanorec(*argv):
    """The real command in a subprocess; fails the test with its stderr on a non-zero exit."""
    r = subprocess.run([sys.executable, "-m", "nanorec.cli", *argv], capture_output=True, text=True,
                       env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def read_submission(path):
    with open(path) as f:
        header = f.readline().strip()
    df = pl.read_csv(path, schema_overrides={"predictions": pl.Utf8})
    rows = [[int(x) for x in p.split()] for p in df["predictions"].to_list()]
    return header, df["user_id"].to_list(), rows


def popularity(train_csv, k):
    """Most interacted original ids of train.csv, ties by smaller id (the encoder sorts ids)."""
    counts = pl.read_csv(train_csv).group_by("item_id").len()
    return counts.sort(["len", "item_id"], descending=[True, False])["item_id"].head(k).to_list()


# -----------------------------------------------------------------------------
# the synthetic challenge: ~200 users, ~50 items

@pytest.fixture(scope="module")
def challenge(tmp_path_factory):
    root = tmp_path_factory.mktemp("challenge")
    data = write_challenge(str(root / "data"), num_users=200, num_items=50, seed=0, cold_users=4)
    run = str(root / "run")
    nanorec("train", "--data", data, "--out", run, *TINY)
    sub = str(root / "submission.csv")
    nanorec("recommend", "--run", run, "--data", data, "--out", sub)
    return {"root": root, "data": data, "run": run, "submission": sub}


def test_submission_rows_follow_test_csv(challenge):
    header, users, rows = read_submission(challenge["submission"])
    test_users = pl.read_csv(os.path.join(challenge["data"], "test.csv"))["user_id"].to_list()
    train = pl.read_csv(os.path.join(challenge["data"], "train.csv"))
    known = set(train["item_id"].to_list())
    assert header == "user_id,predictions"
    assert users == test_users  # one row per test user, in test.csv order
    for row in rows:
        assert len(row) == 10 and len(set(row)) == 10
        assert set(row) <= known  # original ids of train.csv; never padding
    cold = [i for i, u in enumerate(users) if u not in set(train["user_id"].to_list())]
    assert len(cold) == 4
    top10 = popularity(os.path.join(challenge["data"], "train.csv"), 10)
    for i in cold:
        assert rows[i] == top10
    warm = [i for i in range(len(users)) if i not in cold]
    assert any(rows[i] != top10 for i in warm)  # the model, not the fallback, answered warm users


def test_metrics_have_valid_and_no_test(challenge):
    with open(os.path.join(challenge["run"], "metrics.json")) as f:
        m = json.load(f)
    assert "valid" in m and m["valid"]["users"] > 0
    assert "test" not in m


def test_generative_submission_has_no_repeats(challenge):
    out = str(challenge["root"] / "generative.csv")
    nanorec("recommend", "--run", challenge["run"], "--data", challenge["data"], "--out", out,
            "--mode", "generative")
    header, users, rows = read_submission(out)
    known = set(pl.read_csv(os.path.join(challenge["data"], "train.csv"))["item_id"].to_list())
    assert header == "user_id,predictions"
    assert users == pl.read_csv(os.path.join(challenge["data"], "test.csv"))["user_id"].to_list()
    for row in rows:
        assert len(row) == 10 and len(set(row)) == 10 and set(row) <= known


def test_users_file_restricts_output(challenge):
    _, all_users, all_rows = read_submission(challenge["submission"])
    cold_user = all_users[-1]  # write_challenge appends the cold users
    chosen = [all_users[3], cold_user, all_users[0]]
    users_csv = str(challenge["root"] / "users.csv")
    pl.DataFrame({"user_id": chosen}).write_csv(users_csv)
    out = str(challenge["root"] / "some.csv")
    nanorec("recommend", "--run", challenge["run"], "--data", challenge["data"], "--out", out,
            "--users", users_csv)
    header, users, rows = read_submission(out)
    assert header == "user_id,predictions"
    assert users == chosen
    assert rows[1] == all_rows[-1]  # the cold user still gets the popularity list
    assert all(len(set(r)) == 10 for r in rows)


# -----------------------------------------------------------------------------
# original item 0 is a real item

@pytest.fixture(scope="module")
def zero_follows_everything(tmp_path_factory):
    """Every user buys a, then 0, then b, then 0 (a, b in 1..29): item 0 is the
    follow-up of every other item and by far the most popular. Test users: 20
    users with one non-zero item (the model should continue with 0) and one
    cold user. Trained in-process through the same CLI entry point."""
    root = tmp_path_factory.mktemp("zero")
    rng = np.random.default_rng(0)
    rows, t = [], 1_600_000_000_000
    for u in range(200):
        a, b = rng.integers(1, 30, size=2)
        for item in (a, 0, b, 0):
            t += 1000
            rows.append((u, int(item), 5, t))
    single = list(range(200, 220))
    for u, c in zip(single, range(1, 30)):
        t += 1000
        rows.append((u, c, 5, t))
    data = root / "data"
    data.mkdir()
    pl.DataFrame(rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row").write_csv(
        data / "train.csv")
    test_users = single + [999]
    pl.DataFrame({"user_id": test_users, "predictions": ["0"] * len(test_users)}).write_csv(data / "test.csv")
    run = str(root / "run")
    assert cli_main(["train", "--data", str(data), "--out", run, "--quiet", *TINY,
                     "max_steps=30", "eval_interval=15"]) == 0
    return {"root": root, "data": str(data), "run": run, "single": single}


def test_item_zero_is_recommended(zero_follows_everything):
    z = zero_follows_everything
    out = str(z["root"] / "sub.csv")
    assert cli_main(["recommend", "--run", z["run"], "--data", z["data"], "--out", out]) == 0
    _, users, rows = read_submission(out)
    assert users == z["single"] + [999]
    assert rows[-1][0] == 0  # cold user: 0 is the most popular item
    firsts = [r[0] for r in rows[:-1]]
    assert sum(f == 0 for f in firsts) >= 0.9 * len(firsts), firsts  # the model learned "then 0"
    assert all(0 in r for r in rows)


@pytest.mark.parametrize("seen", ["--include-seen", "--exclude-seen"])
@pytest.mark.parametrize("mode", ["oneshot", "generative"])
def test_padding_never_recommended(zero_follows_everything, mode, seen):
    """k = every item: each real id appears at most once a row, never the padding slot; with
    --exclude-seen a user's single seen item is left out (a shorter row, never filled with it)."""
    z = zero_follows_everything
    items = sorted(pl.read_csv(os.path.join(z["data"], "train.csv"))["item_id"].unique().to_list())
    assert items == list(range(30))
    out = str(z["root"] / f"all-{mode}{seen}.csv")
    assert cli_main(["recommend", "--run", z["run"], "--data", z["data"], "--out", out,
                     "--k", str(len(items)), "--mode", mode, seen]) == 0
    _, users, rows = read_submission(out)
    for j, (user, row) in enumerate(zip(users, rows)):
        cold = j == len(users) - 1  # the last user has no history: every item
        unseen = [x for x in items if seen == "--include-seen" or cold or x != user - 200 + 1]
        assert sorted(row) == unseen, (user, row)


# -----------------------------------------------------------------------------
# a broken test.csv stops `nanorec train` before any training: one line, exit 2

@pytest.mark.parametrize("test_csv, mentions", [
    ("user_id,predictions\n", ["test.csv", "no users"]),
    ("user_id,predictions\n0,0\n1,0\n0,0\n", ["test.csv:4", "user_id 0", "appears again", "line 2"]),
])
def test_bad_test_csv_is_one_line(tmp_path, capsys, test_csv, mentions):
    data = write_challenge(str(tmp_path / "data"), num_users=20, num_items=8, seed=0, cold_users=0)
    with open(os.path.join(data, "test.csv"), "w") as f:
        f.write(test_csv)
    run = str(tmp_path / "run")
    assert cli_main(["train", "--data", data, "--out", run, "--quiet", *TINY]) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("nanorec train: error: "), lines
    for m in mentions:
        assert m in lines[0], lines[0]
    assert not os.path.exists(os.path.join(run, "model.safetensors"))


def test_missing_test_csv_leaves_test_users_unset(tmp_path):
    from nanorec.data import load
    data = write_challenge(str(tmp_path / "data"), num_users=20, num_items=8, seed=0)
    os.remove(os.path.join(data, "test.csv"))
    ds = load(data)
    assert ds.test_users is None and ds.kind == "challenge" and ds.ignored_columns == ["rating"]
