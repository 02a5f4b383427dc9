"""Bad inputs through the real CLI: exit status 2, ONE line on stderr that names
the offending file (or key/option) and the problem, no traceback, no partial output.

Every case is a row of CASES: a function that writes its small bad input under
a folder and returns (argv, what the line must mention, outputs that must not
exist). All rows run as subprocesses (`python -m nanorec.cli ...`), a few at a
time, once per module; each parametrised test then checks its own row.
"""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from nanorec.cli import main as cli_main
from nanorec.synthetic import write_challenge

# a config small enough that a good run finishes in a second or two
TINY = ["max_steps=2", "eval_interval=1", "n_embd=16", "n_layer=1", "n_head=1", "progress=false",
        "warmup_steps=1", "batch_size=8", "block_size=8", "threads=1"]
RUN_FILES = ("model.safetensors", "metrics.json", "ckpt.pt", "items.json", "config.json")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}


def write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)
    return str(path)


def train(d, data, *extra):
    """argv of `nanorec train` into d/run, and the run files that must not appear."""
    out = os.path.join(d, "run")
    return ["train", "--data", data, "--out", out, *TINY, *extra], [os.path.join(out, f) for f in RUN_FILES]


def recommend(d, run, data, *extra):
    out = os.path.join(d, "recs.csv")
    return ["recommend", "--run", run, "--data", data, "--out", out, *extra], [out, out + ".tmp"]


# -----------------------------------------------------------------------------
# the table: name -> builder(case folder, good challenge folder, good trained run)
# builder returns (argv, [strings the error line must contain], [paths that must not exist])

def c_missing_data_file(d, good, run):
    argv, absent = train(d, os.path.join(d, "nope.csv"))
    return argv, [os.path.join(d, "nope.csv"), "no such file"], absent


def c_csv_missing_item_column(d, good, run):
    p = write(os.path.join(d, "log.csv"), "user_id,product,timestamp\n1,5,10\n1,6,11\n")
    argv, absent = train(d, p)
    return argv, [p, "missing column 'item_id'"], absent


def c_challenge_non_integer_id(d, good, run):
    f = os.path.join(d, "chal")
    write(os.path.join(f, "train.csv"),
          "user_id,item_id,rating,timestamp\n1,0,5,10\n1,3,4,11\nu2,4,3,12\n2,0,5,13\n")
    argv, absent = train(d, f)
    return argv, [os.path.join(f, "train.csv") + ":4", "'user_id'", "'u2'", "integer"], absent


def c_s3rec_non_integer_id(d, good, run):
    p = write(os.path.join(d, "Beauty.txt"), "1 2 3 4\n2 3 x5 4\n3 1 2\n")
    argv, absent = train(d, p)
    return argv, [p + ":2", "'x5'", "integer"], absent


def c_s3rec_line_without_items(d, good, run):
    p = write(os.path.join(d, "Beauty.txt"), "1 2 3 4\n2\n")
    argv, absent = train(d, p)
    return argv, [p + ":2", "at least one item"], absent


def c_csv_header_only(d, good, run):
    p = write(os.path.join(d, "log.csv"), "user_id,item_id,timestamp\n")
    argv, absent = train(d, p)
    return argv, [p, "no interactions"], absent


def c_txt_empty(d, good, run):
    p = write(os.path.join(d, "Empty.txt"), "")
    argv, absent = train(d, p)
    return argv, [p, "no interactions"], absent


def c_csv_empty_cell(d, good, run):
    p = write(os.path.join(d, "log.csv"), "user_id,item_id,timestamp\n1,5,10\n,6,11\n")
    argv, absent = train(d, p)
    return argv, [p + ":3", "'user_id'", "empty"], absent


def c_timestamp_not_a_date(d, good, run):
    p = write(os.path.join(d, "log.csv"),
              "user_id,item_id,timestamp\n1,5,2024-01-02\n1,6,2024-01-03\n2,5,yesterday\n2,7,2024-01-05\n")
    argv, absent = train(d, p)
    return argv, [p + ":4", "'timestamp'", "'yesterday'"], absent


def c_garbled_parquet(d, good, run):
    p = os.path.join(d, "log.parquet")
    write(p, os.urandom(256), "wb")
    argv, absent = train(d, p)
    return argv, [p, "cannot be read"], absent



def c_folder_without_train_csv(d, good, run):
    f = os.path.join(d, "chal")
    write(os.path.join(f, "test.csv"), "user_id,predictions\n1,0\n")
    argv, absent = train(d, f)
    return argv, [f, "train.csv"], absent


def c_challenge_test_csv_without_user_id(d, good, run):
    f = os.path.join(d, "chal")
    write(os.path.join(f, "train.csv"), "user_id,item_id,rating,timestamp\n1,0,5,10\n1,3,4,11\n1,2,3,12\n")
    write(os.path.join(f, "test.csv"), "customer,predictions\n1,0\n")
    argv, absent = train(d, f)
    return argv, [os.path.join(f, "test.csv"), "missing column 'user_id'"], absent


def c_challenge_bad_id_mappings(d, good, run):
    f = os.path.join(d, "chal")
    write(os.path.join(f, "train.csv"), "user_id,item_id,rating,timestamp\n1,0,5,10\n1,3,4,11\n1,2,3,12\n")
    write(os.path.join(f, "id_mappings.json"), '{"user_mapping": {\n"U1": 1,,\n}')
    argv, absent = train(d, f)
    return argv, [os.path.join(f, "id_mappings.json") + ":2", "JSON"], absent


def c_nothing_to_learn(d, good, run):
    p = write(os.path.join(d, "log.csv"), "user_id,item_id,timestamp\n1,5,10\n1,6,11\n2,5,12\n")
    argv, absent = train(d, p)
    return argv, [p, "nothing to learn"], absent


def c_unknown_config_key(d, good, run):
    argv, absent = train(d, good, "n_layers=3")
    return argv, ["'n_layers'", "unknown config key"], absent


def c_bad_value_type(d, good, run):
    argv, absent = train(d, good, "n_layer=abc")
    return argv, ["n_layer='abc'", "expected int"], absent


def c_resume_without_checkpoint(d, good, run):
    empty = os.path.join(d, "run")
    os.makedirs(empty)
    argv, absent = train(d, good, "--resume")
    return argv, [empty, "nothing to resume"], absent


def c_users_file_missing(d, good, run):
    users = os.path.join(d, "users.csv")
    argv, absent = recommend(d, run, good, "--users", users)
    return argv, [users, "no such file"], absent


def c_users_without_user_id_column(d, good, run):
    users = write(os.path.join(d, "users.csv"), "customer\n1\n2\n")
    argv, absent = recommend(d, run, good, "--users", users)
    return argv, [users, "missing column 'user_id'"], absent



def c_run_dir_not_a_run(d, good, run):
    empty = os.path.join(d, "notarun")
    os.makedirs(empty)
    argv, absent = recommend(d, empty, good)
    return argv, [empty, "not a run folder"], absent


def c_recommend_missing_data(d, good, run):
    data = os.path.join(d, "gone")
    argv, absent = recommend(d, run, data)
    return argv, [data, "no such file"], absent


def c_k_zero(d, good, run):
    argv, absent = recommend(d, run, good, "--k", "0")
    return argv, ["--k 0", "at least 1"], absent



def c_recommend_out_folder_missing(d, good, run):
    out = os.path.join(d, "no", "such", "recs.csv")
    argv = ["recommend", "--run", run, "--data", good, "--out", out]
    return argv, [out, "does not exist"], [out, out + ".tmp"]


def c_evaluate_test_split_of_challenge(d, good, run):
    out = os.path.join(d, "m.json")
    argv = ["evaluate", "--run", run, "--data", good, "--split", "test", "--json", out]
    return argv, [good, "no test answers"], [out]



CASES = {f.__name__[2:]: f for f in [
    c_missing_data_file, c_csv_missing_item_column, c_challenge_non_integer_id, c_s3rec_non_integer_id,
    c_s3rec_line_without_items, c_csv_header_only, c_txt_empty, c_csv_empty_cell, c_timestamp_not_a_date,
    c_garbled_parquet, c_folder_without_train_csv, c_challenge_test_csv_without_user_id,
    c_challenge_bad_id_mappings, c_nothing_to_learn, c_unknown_config_key, c_bad_value_type,
    c_resume_without_checkpoint, c_users_file_missing, c_users_without_user_id_column,
    c_run_dir_not_a_run, c_recommend_missing_data, c_k_zero,
    c_recommend_out_folder_missing, c_evaluate_test_split_of_challenge,
]}


def cli(argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "nanorec.cli", *argv], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Build every case, run them all (4 at a time: most of the cost is importing torch)."""
    root = tmp_path_factory.mktemp("bad")
    good = write_challenge(str(root / "good"), num_users=40, num_items=12, seed=3)
    run = str(root / "goodrun")
    assert cli_main(["train", "--data", good, "--out", run, "--quiet", *TINY]) == 0  # in-process: one torch import fewer
    built = {}
    for name, build in CASES.items():
        d = str(root / name)
        os.makedirs(d)
        built[name] = build(d, good, run)
    with ThreadPoolExecutor(4) as pool:
        results = dict(zip(built, pool.map(lambda b: cli(b[0]), built.values())))
    return {name: (built[name], results[name]) for name in built}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, outcomes):
    (argv, mentions, absent), r = outcomes[name]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith(f"nanorec {argv[0]}: error: "), line
    for m in mentions:
        assert m in line, f"{m!r} not in {line!r}"
    for path in absent:
        assert not os.path.exists(path), f"{path} was written"


def test_table_is_large_enough():
    assert len(CASES) >= 12
