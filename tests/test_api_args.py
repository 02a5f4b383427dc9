"""The Python API's arguments, as strict as the CLI's options (tests/test_bad_inputs.py is the CLI's table).

Every bad argument (wrong type, None/NaN, empty, huge) is ONE line of a nanorec error class
naming the argument, raised before anything is scored or written: the run folders and the
test's own folder are byte-identical afterwards. Then what the accepted forms do: an
integral float is the integer id of an integer run, numpy / pandas / polars ids are ids,
ids of another type than the run's are never matched silently, exclude_seen never returns
a seen item, frames come back in a documented type, and an edited run folder is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import polars as pl
import pytest

from nanorec import DataError, NanorecError, Recommender, UsageError
from nanorec.cli import main as cli
from nanorec.scoring.scorer import SEEN_SCORE
from nanorec.data.synthetic import write_csv
from tests.conftest import snapshot

TINY = dict(n_layer=1, n_head=1, n_embd=16, block_size=8, max_steps=20, eval_interval=10, warmup_steps=2,
            batch_size=16, progress=False, threads=1)
NUM_ITEMS = 15  # small: a list of every item shows what exclude_seen leaves out


@dataclass
class Env:
    root: str
    log: str     # integer ids: user_id,item_id,timestamp
    run: str     # a GPT run (fused: the default) trained on `log`
    srun: str    # a popularity run trained on string ids ("u0", "i3")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("api_args"))
    log = write_csv(os.path.join(root, "log.csv"), num_users=80, num_items=NUM_ITEMS, seed=3)
    run = os.path.join(root, "run")
    Recommender(**TINY).fit(log, out=run)
    df = pl.read_csv(log).with_columns(("u" + pl.col("user_id").cast(pl.Utf8)).alias("user_id"),
                                       ("i" + pl.col("item_id").cast(pl.Utf8)).alias("item_id"))
    srun = os.path.join(root, "srun")
    Recommender(method="popularity").fit(df, out=srun)
    return Env(root, log, run, srun)


@pytest.fixture(scope="module")
def rec(env):
    return Recommender.load(env.run)


@pytest.fixture(scope="module")
def srec(env):
    return Recommender.load(env.srun)




# -----------------------------------------------------------------------------
# the table: (id, call(rec, srec, env, d), error class, substrings of the line)

@dataclass
class Case:
    call: Callable
    error: type
    mentions: tuple = ()


def pd():
    return pytest.importorskip("pandas")


CASES = {
    # users: wrong type (a bare id is an error, never iterated), None/NaN, empty, huge, nested
    "users_bare_string": Case(lambda r, s, e, d: s.recommend(users="u1"), UsageError, ("users='u1'", "list", "users=['u1']")),
    "users_bare_int": Case(lambda r, s, e, d: r.recommend(users=5), UsageError, ("users=5", "list")),
    "users_bare_float": Case(lambda r, s, e, d: r.recommend(users=5.0), UsageError, ("users=5.0", "list")),
    "users_set": Case(lambda r, s, e, d: r.recommend(users={1, 2}), UsageError, ("users=", "set")),
    "users_dict": Case(lambda r, s, e, d: r.recommend(users={"a": 1}), UsageError, ("users=", "dict")),
    "users_nested_list": Case(lambda r, s, e, d: s.recommend(users=[["u1"]]), UsageError, ("users[0]", "list")),
    "users_2d_array": Case(lambda r, s, e, d: r.recommend(users=np.zeros((2, 2), np.int64)), UsageError, ("users", "1-D")),
    "users_none_inside": Case(lambda r, s, e, d: r.recommend(users=[1, None]), UsageError, ("users[1]", "missing")),
    "users_nan": Case(lambda r, s, e, d: r.recommend(users=[float("nan")]), UsageError, ("users[0]", "missing")),
    "users_numpy_nan": Case(lambda r, s, e, d: r.recommend(users=np.array([1.0, np.nan])), UsageError, ("users[1]", "missing")),
    "users_pandas_gap": Case(lambda r, s, e, d: r.recommend(users=pd().Series([1, None])), UsageError, ("users[1]", "missing")),
    "users_pandas_na": Case(lambda r, s, e, d: r.recommend(users=pd().Series([1, None], dtype="Int64")), UsageError,
                            ("users[1]", "missing")),
    "users_polars_null": Case(lambda r, s, e, d: r.recommend(users=pl.Series([1, None])), UsageError, ("users[1]", "missing")),
    "users_inf": Case(lambda r, s, e, d: r.recommend(users=[float("inf")]), UsageError, ("users[0]=inf", "not an id")),
    "users_fraction": Case(lambda r, s, e, d: r.recommend(users=[1.5]), UsageError, ("users[0]=1.5", "not an id")),
    "users_float_on_text_run": Case(lambda r, s, e, d: s.recommend(users=[1.0]), UsageError, ("users[0]=1.0", "text", "'1'")),
    "users_bool": Case(lambda r, s, e, d: r.recommend(users=[True]), UsageError, ("users[0]=True", "boolean")),
    "users_numpy_bool": Case(lambda r, s, e, d: r.recommend(users=np.array([True])), UsageError, ("users[0]=True", "boolean")),
    "users_bytes": Case(lambda r, s, e, d: s.recommend(users=[b"u1"]), UsageError, ("users[0]", "bytes")),
    "users_empty": Case(lambda r, s, e, d: r.recommend(users=[]), UsageError, ("users", "empty")),
    "users_empty_array": Case(lambda r, s, e, d: r.recommend(users=np.array([], np.int64)), UsageError, ("users", "empty")),
    "users_repeated": Case(lambda r, s, e, d: r.recommend(users=[1, 2, 1]), UsageError, ("users", "1", "more than once")),
    "users_huge_int": Case(lambda r, s, e, d: r.recommend(users=[10 ** 30]), UsageError, ("users[0]", "64-bit")),
    "users_text_on_integer_run": Case(lambda r, s, e, d: r.recommend(users=["C005461"]), DataError,
                                      ("users", "none of its 1 user ids", "integers", "'C005461'")),
    "users_integers_on_text_run": Case(lambda r, s, e, d: s.recommend(users=[5461]), DataError,
                                       ("users", "none of its 1 user ids", "text", "5461")),
    # k: wrong type, NaN, empty, huge
    "k_string": Case(lambda r, s, e, d: r.recommend(k="10"), UsageError, ("k='10'", "integer")),
    "k_float": Case(lambda r, s, e, d: r.recommend(k=10.0), UsageError, ("k=10.0", "integer")),
    "k_nan": Case(lambda r, s, e, d: r.recommend(k=float("nan")), UsageError, ("k=nan",)),
    "k_none": Case(lambda r, s, e, d: r.recommend(k=None), UsageError, ("k=None",)),
    "k_bool": Case(lambda r, s, e, d: r.recommend_history([1], k=True), UsageError, ("k=True",)),
    "k_zero": Case(lambda r, s, e, d: r.recommend(k=0), UsageError, ("k=0", "an integer in 1..")),
    "k_huge": Case(lambda r, s, e, d: r.recommend(k=10 ** 12), UsageError, ("k=1000000000000", "an integer in 1..")),
    # exclude_seen: a bool, not a truthy value (None: the run's own choice, seen.py)
    "exclude_seen_string": Case(lambda r, s, e, d: r.recommend(exclude_seen="no"), UsageError, ("exclude_seen='no'", "True or False")),
    "exclude_seen_int": Case(lambda r, s, e, d: r.recommend(exclude_seen=0), UsageError, ("exclude_seen=0",)),
    "exclude_seen_nan": Case(lambda r, s, e, d: r.recommend(exclude_seen=float("nan")), UsageError, ("exclude_seen=nan",)),
    # mode: checked on every call, also when every user is cold (nothing would reach the model)
    "mode_bad": Case(lambda r, s, e, d: r.recommend(mode="bad"), UsageError, ("mode='bad'", "oneshot")),
    "mode_bad_all_cold": Case(lambda r, s, e, d: r.recommend(users=[10 ** 9], mode="bad"), UsageError, ("mode='bad'",)),
    "mode_bad_history": Case(lambda r, s, e, d: r.recommend_history([], mode="bad"), UsageError, ("mode='bad'",)),
    "mode_none": Case(lambda r, s, e, d: r.recommend(mode=None), UsageError, ("mode=None",)),
    # history: the same id checks (an empty history is a history: popularity)
    "history_bare_string": Case(lambda r, s, e, d: s.recommend_history("i1"), UsageError, ("history='i1'", "list")),
    "history_none": Case(lambda r, s, e, d: r.recommend_history(None), UsageError, ("history=None", "list")),
    "history_bare_int": Case(lambda r, s, e, d: r.recommend_history(3), UsageError, ("history=3", "list")),
    "history_nan": Case(lambda r, s, e, d: r.recommend_history([1, float("nan")]), UsageError, ("history[1]", "missing")),
    "history_none_inside": Case(lambda r, s, e, d: r.recommend_history([None]), UsageError, ("history[0]", "missing")),
    "history_bool": Case(lambda r, s, e, d: r.recommend_history([1, False]), UsageError, ("history[1]=False", "boolean")),
    "history_nested": Case(lambda r, s, e, d: r.recommend_history([[1, 2]]), UsageError, ("history[0]", "list")),
    "history_huge_int": Case(lambda r, s, e, d: r.recommend_history([2 ** 64]), UsageError, ("history[0]", "64-bit")),
    "history_text_on_integer_run": Case(lambda r, s, e, d: r.recommend_history(["sku1", "sku2"]), DataError,
                                        ("history", "none of its 2 item ids", "integers")),
    # save: the path
    "save_empty": Case(lambda r, s, e, d: r.save(""), UsageError, ("save('')", "empty")),
    "save_none": Case(lambda r, s, e, d: r.save(None), UsageError, ("save(None)", "path")),
    "save_int": Case(lambda r, s, e, d: r.save(5), UsageError, ("save(5)", "path")),
    "save_under_a_file": Case(lambda r, s, e, d: r.save(os.path.join(_file(d), "sub")), DataError, ("is a file",)),
    "save_onto_a_file": Case(lambda r, s, e, d: r.save(_file(d)), DataError, ("not a folder",)),
    "save_not_empty": Case(lambda r, s, e, d: r.save(_folder_with_file(d)), UsageError, ("not empty", "overwrite=True")),
    "save_overwrite_other_folder": Case(lambda r, s, e, d: r.save(_folder_with_config(d), overwrite=True), DataError,
                                        ("overwrite=True replaces a nanorec run", "config.json")),
    "save_overwrite_string": Case(lambda r, s, e, d: r.save(os.path.join(d, "new"), overwrite="yes"), UsageError,
                                  ("overwrite='yes'",)),
    # load: the path and the frame
    "load_none": Case(lambda r, s, e, d: Recommender.load(None), UsageError, ("load(None)", "path")),
    "load_int": Case(lambda r, s, e, d: Recommender.load(3), UsageError, ("load(3)", "path")),
    "load_empty": Case(lambda r, s, e, d: Recommender.load(""), UsageError, ("load('')", "empty")),
    "load_missing": Case(lambda r, s, e, d: Recommender.load(os.path.join(d, "none")), DataError, ("no such run folder",)),
    "load_a_file": Case(lambda r, s, e, d: Recommender.load(_file(d)), DataError, ("not a run folder",)),
    "load_bad_frame": Case(lambda r, s, e, d: Recommender.load(e.run, frame="excel"), UsageError, ("frame='excel'", "pandas")),
    # fit: the data and its options (refused before anything is read or written)
    "fit_none": Case(lambda r, s, e, d: Recommender(**TINY).fit(None, out=os.path.join(d, "run")), UsageError, ("data=None",)),
    "fit_user_col_int": Case(lambda r, s, e, d: Recommender(**TINY).fit(e.log, user_col=5, out=os.path.join(d, "run")),
                             UsageError, ("user_col=5", "column name")),
    "fit_filter_list": Case(lambda r, s, e, d: Recommender(**TINY).fit(e.log, filter=["a"], out=os.path.join(d, "run")),
                            UsageError, ("filter=['a']",)),
    "fit_overwrite_string": Case(lambda r, s, e, d: Recommender(**TINY).fit(e.log, overwrite="no", out=os.path.join(d, "run")),
                                 UsageError, ("overwrite='no'",)),
    "fit_quiet_none": Case(lambda r, s, e, d: Recommender(**TINY).fit(e.log, quiet=None, out=os.path.join(d, "run")),
                           UsageError, ("quiet=None",)),
    "fit_out_empty": Case(lambda r, s, e, d: Recommender(**TINY).fit(e.log, out=""), UsageError, ("out=''", "empty")),
    "fit_out_int": Case(lambda r, s, e, d: Recommender(**TINY).fit(e.log, out=7), UsageError, ("out=7", "path")),
}


def _file(d):
    path = os.path.join(d, "a_file")
    with open(path, "w") as f:
        f.write("mine")
    return path


def _folder_with_file(d):
    os.makedirs(os.path.join(d, "target"))
    with open(os.path.join(d, "target", "mine.txt"), "w") as f:
        f.write("keep me")
    return os.path.join(d, "target")


def _folder_with_config(d):
    os.makedirs(os.path.join(d, "model"))
    with open(os.path.join(d, "model", "config.json"), "w") as f:
        f.write('{"model_type": "siglip"}')
    return os.path.join(d, "model")


# what the cases' own inputs hold (all that may be under the test's folder afterwards)
OWN = {"a_file": "mine", os.path.join("target", "mine.txt"): "keep me",
       os.path.join("model", "config.json"): '{"model_type": "siglip"}'}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_argument(name, env, rec, srec, tmp_path):
    c = CASES[name]
    d = str(tmp_path)
    before = snapshot(env.root)  # the log and both runs
    with pytest.raises(NanorecError) as info:
        c.call(rec, srec, env, d)  # writes its own bad input under d (OWN), then calls
    assert isinstance(info.value, c.error), (type(info.value), info.value)
    line = str(info.value)
    print(f"\n{name}: {line}")
    assert line.strip() and "\n" not in line.strip(), line
    for m in c.mentions:
        assert m in line, f"{m!r} not in {line!r}"
    assert snapshot(env.root) == before
    own = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in OWN.items()}
    assert all(own.get(f) == h for f, h in snapshot(d).items()), snapshot(d)  # nothing written, nothing changed


def test_data_json_records_the_vocabulary_hash(env):
    """What Run.open checks items.json against: written at training, equal to the vocabulary's hash."""
    from nanorec.runs import rundir
    for run in (env.run, env.srun):
        fp = json.load(open(os.path.join(run, "data.json")))
        assert fp["items_sha256"] == rundir.items_digest(rundir.read_items(run))
        assert fp["items"] == len(json.load(open(os.path.join(run, "items.json")))) - 1


# -----------------------------------------------------------------------------
# what the accepted forms do

def test_integral_floats_and_array_types_are_the_integer_ids(rec):
    want = rec.recommend(users=[1, 2, 3], k=3)
    assert set(want["source"]) == {"model"}
    for given in ([1.0, 2.0, 3.0], np.array([1.0, 2.0, 3.0]), np.array([1, 2, 3], np.int32), (1, 2, 3),
                  pl.Series([1, 2, 3]), pl.Series([1.0, 2.0, 3.0]), ["1", "2", "3"]):
        got = rec.recommend(users=given, k=3)
        assert got.select("item_id", "rank", "source").equals(want.select("item_id", "rank", "source")), given
        assert got["user_id"].cast(pl.Utf8).to_list() == want["user_id"].cast(pl.Utf8).to_list()


def test_pandas_ids_are_ids(rec):
    pandas = pytest.importorskip("pandas")
    want = rec.recommend(users=[4, 7], k=4)
    got = rec.recommend(users=pandas.Series([4.0, 7.0]), k=4)  # an integer column with a gap elsewhere
    assert got.select("item_id", "rank").equals(want.select("item_id", "rank"))


def test_ids_of_another_type_warn_with_how_many_matched(rec):
    """An integer run, ids as text: "1" is user 1 by its exact text; "C005461" matches nothing.
    Not silent: a warning naming how many of the ids matched."""
    with pytest.warns(UserWarning, match=r"1 of 2 user ids are known") as caught:
        out = rec.recommend(users=["1", "C005461"], k=2)
    assert "integers" in str(caught[0].message) and len(str(caught[0].message).splitlines()) == 1
    assert out.filter(pl.col("user_id") == "C005461")["source"].to_list() == ["popularity"] * 2
    assert out.filter(pl.col("user_id") == "1")["source"].to_list() == ["model"] * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same type: unknown users are cold, no warning
        assert rec.recommend(users=[1, 10 ** 9], k=2)["source"].to_list() == ["model"] * 2 + ["popularity"] * 2


def test_exclude_seen_never_returns_a_seen_item(rec, env):
    """k = every item: a user's list is the unseen items only (shorter than k), never a
    seen one at the float32 minimum; include_seen gives all k."""
    from nanorec.data import load
    ds = load(env.log)
    n = ds.num_items
    user = int(ds.user_ids[0])
    seen = set(ds.item_ids[ds.sequences[0]].tolist())
    assert 0 < len(seen) < n
    got = rec.recommend(users=[user], k=n)
    assert got.height == n - len(seen) and not seen & set(got["item_id"].to_list())
    assert got["rank"].to_list() == list(range(1, got.height + 1)) and got["score"].min() > SEEN_SCORE
    hist = rec.recommend_history(sorted(seen), k=n)
    assert hist.height == n - len(seen) and not seen & set(hist["item_id"].to_list())
    every = rec.recommend(users=[user], k=n, exclude_seen=False)
    assert sorted(every["item_id"].to_list()) == sorted(ds.item_ids[1:].tolist())


def test_frames_follow_the_documented_rule(env):
    pandas = pytest.importorskip("pandas")
    assert isinstance(Recommender.load(env.run).recommend(k=2), pl.DataFrame)  # load: polars by default
    rec = Recommender.load(env.run, frame="pandas")
    assert isinstance(rec.recommend(k=2), pandas.DataFrame) and isinstance(rec.recommend_history([1], k=2), pandas.DataFrame)
    assert rec.frame == "pandas"


def test_save_and_load_round_trip_with_path_objects(rec, tmp_path):
    import pathlib
    saved = rec.save(pathlib.Path(tmp_path / "copy"))
    assert Recommender.load(pathlib.Path(saved)).recommend(k=3).equals(rec.recommend(k=3))


# -----------------------------------------------------------------------------
# the run folder checked as a whole on load

def _copy(env, d, name="run"):
    return shutil.copytree(env.run, os.path.join(d, name))


def _edit_items(run):
    path = os.path.join(run, "items.json")
    ids = json.load(open(path))
    ids[1], ids[2] = ids[2], ids[1]  # same ids, two swapped: every score of those two goes to the other
    json.dump(ids, open(path, "w"))


def _drop_config_key(run, key="n_layer"):
    path = os.path.join(run, "config.json")
    cfg = json.load(open(path))
    del cfg[key]
    json.dump(cfg, open(path, "w"))


def _edit_histories(run):
    path = os.path.join(run, "histories.parquet")
    df = pl.read_parquet(path)
    items = df["item"].to_numpy().copy()
    items[3] = 10 ** 6  # an index beyond the vocabulary
    df.with_columns(pl.Series("item", items)).write_parquet(path)


@pytest.mark.parametrize("edit, mentions", [
    (_edit_items, ("items.json", "differ", "data.json")),
    (_drop_config_key, ("config.json", "'n_layer'", "missing")),
    (_edit_histories, ("histories.parquet", "1000000", "outside the run's 1..")),
])
def test_an_edited_run_folder_is_refused_naming_the_file(env, tmp_path, edit, mentions):
    run = _copy(env, str(tmp_path))
    edit(run)
    before = snapshot(run)
    with pytest.raises(DataError) as info:
        Recommender.load(run)
    line = str(info.value)
    assert "\n" not in line and all(m in line for m in mentions), line
    # the CLI reads the run the same way: one line, exit 2
    assert cli(["recommend", "--run", run, "--out", str(tmp_path / "recs.csv")]) == 2
    assert snapshot(run) == before and not os.path.exists(tmp_path / "recs.csv")


def test_a_legacy_key_may_be_missing(env, tmp_path):
    """config.LEGACY's keys were written by older runs only: their absence is the value those runs used."""
    run = _copy(env, str(tmp_path))
    _drop_config_key(run, "future_decay")  # LEGACY: 0.0, as this run was trained
    assert Recommender.load(run).recommend(k=3).equals(Recommender.load(env.run).recommend(k=3))


# -----------------------------------------------------------------------------
# the CLI's users file, by the same rule

def _users_file(path, ids):
    pl.DataFrame({"user_id": ids}).write_csv(path)
    return path


def test_cli_users_file_of_another_id_type(env, tmp_path, capsys):
    """A run trained on integer ids, a users file of C005461 strings: one line, exit 2;
    a file where some match: a warning line naming how many, the lists written."""
    none = _users_file(str(tmp_path / "none.csv"), ["C005461", "C000001"])
    out = str(tmp_path / "recs.csv")
    assert cli(["recommend", "--run", env.run, "--users", none, "--out", out]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1 and "none of its 2 user ids" in err[0] and "integers" in err[0], err
    assert not os.path.exists(out)
    some = _users_file(str(tmp_path / "some.csv"), ["C005461", "3"])
    assert cli(["recommend", "--run", env.run, "--users", some, "--out", out, "--k", "2"]) == 0
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1 and err[0].startswith("warning:") and "1 of 2 user ids" in err[0], err
    got = pl.read_csv(out, schema_overrides={"user_id": pl.Utf8})
    assert got["source"].to_list() == ["popularity"] * 2 + ["model"] * 2


# -----------------------------------------------------------------------------
# fit's progress: a bar on a terminal, nothing where no one watches, nothing with quiet=True

SHOWN = dict(TINY, progress=True)  # the default: progress bars on


def test_fit_prints_nothing_when_not_a_terminal(env, tmp_path, capfd):
    """Output to a file or a pipe (here pytest's capture files): neither bar nor log lines, though
    quiet is False by default; train.log has the lines."""
    run = str(tmp_path / "run")
    Recommender(**SHOWN).fit(env.log, out=run)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert "valid" in open(os.path.join(run, "train.log")).read()


FIT_ON_A_TERMINAL = """
import sys
from nanorec import Recommender
Recommender(**{settings!r}).fit({log!r}, out={out!r}, quiet={quiet})
print("FIT_DONE")
"""


def _on_a_terminal(code: str) -> str:
    """Everything a child process writes to its terminal (a pseudo-terminal: isatty() is True)."""
    import pty
    import subprocess
    import sys
    import fcntl
    import struct
    import termios
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    child = subprocess.Popen([sys.executable, "-c", code], stdin=secondary, stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert child.wait(timeout=300) == 0
    os.close(primary)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
@pytest.mark.subprocess
def test_fit_shows_a_progress_bar_on_a_terminal_and_quiet_hides_it(env, tmp_path):
    shown = _on_a_terminal(FIT_ON_A_TERMINAL.format(settings=SHOWN, log=env.log, out=str(tmp_path / "a"),
                                                    quiet=False))
    assert "train:" in shown and f"{SHOWN['max_steps']}/{SHOWN['max_steps']}" in shown  # tqdm's bar, run to its end
    assert "valid" in shown and shown.rstrip().endswith("FIT_DONE")  # the log lines above it
    hidden = _on_a_terminal(FIT_ON_A_TERMINAL.format(settings=SHOWN, log=env.log, out=str(tmp_path / "b"),
                                                     quiet=True))
    assert hidden.strip() == "FIT_DONE"
