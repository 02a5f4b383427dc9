"""Findings of the lifecycle-surfaces audit (benchmarks/audit_surfaces.py, issue 29), one test each:
what a new user tried, and what it must give."""
import os
import subprocess
import sys

import pytest

from nanorec import Recommender

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
TINY = dict(n_embd=16, n_layer=1, n_head=1, block_size=8, batch_size=8, threads=1, progress=False, max_steps=10,
            eval_interval=10, warmup_steps=2)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A log with string ids that have leading zeros, and a tiny run on it."""
    root = tmp_path_factory.mktemp("audit")
    rows = ["user_id,item_id,timestamp"] + [f"{u},{(u + t) % 29 + 1:03d},{t}" for u in range(40) for t in range(6)]
    (root / "log.csv").write_text("\n".join(rows) + "\n")
    Recommender(**TINY).fit(str(root / "log.csv"), out=str(root / "run"))
    return root


def nanorec(*args, cwd):
    return subprocess.run([sys.executable, "-m", "nanorec.cli", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=300)


def test_out_dash_is_standard_output_not_a_file_named_dash(shop, tmp_path):
    """`--out -` wrote a file named '-' in the working folder; now the lists (and the page) go to stdout."""
    r = nanorec("recommend", "--run", str(shop / "run"), "--k", "3", "--out", "-", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("user_id,item_id,score,rank,source\n") and r.stdout.count("\n") == 1 + 40 * 3
    assert "wrote /dev/stdout" in r.stderr and not os.path.exists(tmp_path / "-")
    r = nanorec("inspect", "--run", str(shop / "run"), "--out", "-", "--sample", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("<!doctype html>") and r.stdout.rstrip().endswith("</html>")
    assert not os.path.exists(tmp_path / "-")


def test_evaluate_json_dash_is_standard_output(shop, tmp_path):
    """`evaluate --json -` wrote a file named '-'; now the JSON is stdout and the metrics line stderr."""
    import json
    r = nanorec("evaluate", "--run", str(shop / "run"), "--data", str(shop / "log.csv"), "--json", "-", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert metrics["split"] == "test" and 0 <= metrics["NDCG@10"] <= 1 and metrics["users"] == 40
    assert "NDCG@10" in r.stderr and not os.path.exists(tmp_path / "-")


def test_a_deny_file_of_numbers_without_the_runs_leading_zeros_counts_every_id(shop, tmp_path):
    """Ids exported without their leading zeros (4 for 004, as a spreadsheet writes them): the first
    line was taken as a header ("1 item id read (header '4')"); every line is an id, counted unknown."""
    deny = tmp_path / "deny.csv"
    deny.write_text("4\n20\n")
    r = nanorec("recommend", "--run", str(shop / "run"), "--k", "3", "--out", str(tmp_path / "recs.csv"),
                "--deny-items", str(deny), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 item ids read, 2 not known to the run (e.g. '4'); 0 items denied" in r.stderr, r.stderr
    assert "header" not in r.stderr


def test_a_semicolon_separated_deny_export_is_one_line_not_a_list_that_denies_nothing(shop, tmp_path):
    """'004;020' (a ;-separated spreadsheet export) was read as a header: 0 ids, nothing denied, exit 0."""
    deny = tmp_path / "deny.csv"
    deny.write_text("004;020\n")
    r = nanorec("recommend", "--run", str(shop / "run"), "--k", "3", "--out", str(tmp_path / "recs.csv"),
                "--deny-items", str(deny), cwd=tmp_path)
    assert r.returncode == 2 and "a ;-separated export?" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "recs.csv")


def test_key_values_may_come_before_or_after_the_options(shop, tmp_path):
    """`nanorec train --data L n_layer=1 --out R holdout=time` was 'unrecognized arguments: holdout=time'
    (argparse took the keys only before --out); train, update and tune read them anywhere."""
    r = nanorec("train", "--data", str(shop / "log.csv"), "n_embd=16", "--out", str(tmp_path / "r"), "holdout=time",
                cwd=tmp_path)
    assert r.returncode == 2 and "holdout=time needs split_time=" in r.stderr, r.stderr  # the key was read
    r = nanorec("update", "--run", str(shop / "run"), "max_steps=0", "--data", str(shop / "log.csv"), "--out",
                str(tmp_path / "u"), "--quiet", cwd=tmp_path)
    assert r.returncode == 2 and "max_steps=0: expected an integer >= 1" in r.stderr, r.stderr
    r = nanorec("tune", "--data", str(shop / "log.csv"), "n_embd=16", "--out", str(tmp_path / "t"), "foo=1",
                cwd=tmp_path)
    assert r.returncode == 2 and "unknown config key 'foo'" in r.stderr, r.stderr


def test_a_missing_filter_file_given_to_the_api_is_no_such_file(shop):
    """items='allow.csv' that does not exist was 'expected a list ... not str; for one id write
    items=['allow.csv']': a typo in a path read as a request for an item named so."""
    from nanorec.errors import DataError
    rec = Recommender.load(str(shop / "run"))
    with pytest.raises(DataError, match="no such file"):
        rec.recommend(k=3, items="allow.csv")
    with pytest.raises(DataError, match="no such file"):
        rec.recommend(k=3, exclude_items="lists/deny")


def test_weight_col_naming_the_item_column_is_one_line(shop, tmp_path):
    """weight_col=item_id trained with the ids (001 -> 1.0) as each event's weight, without a word."""
    r = nanorec("train", "--data", str(shop / "log.csv"), "--out", str(tmp_path / "r"), "weight_col=item_id",
                "max_steps=2", cwd=tmp_path)
    assert r.returncode == 2 and "weight_col='item_id': each must name a different column" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "r")


def test_users_from_a_pipe_are_read_as_a_stream(shop, tmp_path):
    """--users <(cut -d, -f1 test.csv) was refused ('not a regular file'); now read once, as --data is."""
    import threading
    fifo = str(tmp_path / "users.fifo")
    os.mkfifo(fifo)
    threading.Thread(target=lambda: open(fifo, "w").write("user_id\n3\n1\n"), daemon=True).start()
    out = tmp_path / "recs.csv"
    r = nanorec("recommend", "--run", str(shop / "run"), "--k", "2", "--users", fifo, "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [line.split(",")[0] for line in out.read_text().splitlines()[1:]] == ["3", "3", "1", "1"]


@pytest.mark.parametrize("space, words", [("n_layer=1|", "an empty choice"), ("", "--space '': empty")])
def test_a_space_with_an_empty_choice_or_no_text_is_one_line(shop, tmp_path, space, words):
    """--space 'n_layer=1|' searched n_layer=1 alone, and --space '' the default space, without a word."""
    r = nanorec("tune", "--data", str(shop / "log.csv"), "--out", str(tmp_path / "s"), "--space", space, "--trials",
                "1", "max_steps=2", cwd=tmp_path)
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not os.path.exists(tmp_path / "s" / "study.json")


def test_a_space_naming_a_key_twice_is_one_line():
    """dropout=0.1..0.5,dropout=0.2..0.3 searched the last range alone, without a word."""
    from nanorec.errors import UsageError
    from nanorec.core.tune import parse_space
    with pytest.raises(UsageError, match="'dropout' is given twice"):
        parse_space("dropout=0.1..0.5,dropout=0.2..0.3")
    assert [p.key for p in parse_space("dropout=0.1..0.5,learning_rate=1e-4..1e-3:log")] == ["dropout", "learning_rate"]


def test_tune_into_a_run_folder_is_one_line_and_leaves_it_as_it_was(shop, tmp_path):
    """tune --out RUN wrote trials/, study.db, study.json and best/ inside the run's folder."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(shop / "run", run)
    before = sorted(os.listdir(run))
    r = nanorec("tune", "--data", str(shop / "log.csv"), "--out", str(run), "--trials", "1", "max_steps=2",
                cwd=tmp_path)
    assert r.returncode == 2 and "is a run folder" in r.stderr, r.stderr
    assert sorted(os.listdir(run)) == before
