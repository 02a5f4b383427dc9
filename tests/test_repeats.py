"""Repeat purchases: exclude_seen=auto chooses on validation, and every surface lists by the run's choice."""
import contextlib
import io
import json
import os

import numpy as np
import polars as pl
import pytest
import torch

from nanorec import DataError, Recommender, UsageError
from nanorec.cli import main as cli_main
from nanorec.config import Config
from nanorec.data import EvalSet, Sequences
from nanorec.scoring.seen import decide, paired_ranks, repeat_share, run_excludes
from tests.test_cli_evaluate import TINY, cli  # a tiny GPT's settings; the CLI run in-process, its stdout


def write_log(path, histories):
    rows = [(u, item, t) for u, h in enumerate(histories) for t, item in enumerate(h)]
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(path)
    return str(path)


def repeat_histories(users=60, items=12, seed=0):
    """Every user alternates between two items, a b a b a (b c b c b ...): each held-out
    item is an earlier item of its user, and what follows the last item is the other one."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(users):
        a, b = rng.choice(np.arange(1, items + 1), size=2, replace=False)
        out.append([int(a), int(b)] * 3 + [int(a)])
    return out


def chain_histories(users=60, items=12, seed=0):
    """Every user buys consecutive items i, i+1, ... (mod items): never an item twice."""
    rng = np.random.default_rng(seed)
    return [[int((s + j) % items) + 1 for j in range(6)] for s in rng.integers(0, items, size=users)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Count-table runs (method=transitions: fitted in a moment) on both logs, and a GPT run on each."""
    root = tmp_path_factory.mktemp("repeats")
    rep = write_log(root / "repeat.csv", repeat_histories())
    chain = write_log(root / "chain.csv", chain_histories())
    out = {"root": root, "repeat": rep, "chain": chain}
    for name, data in (("repeat", rep), ("chain", chain)):
        for method in ("transitions", "gpt"):
            run = str(root / f"{name}_{method}")
            cli(["train", "--data", data, "--out", run, "--quiet", f"method={method}", *TINY])
            out[f"{name}_{method}"] = run
    return out


def metrics(run):
    return json.load(open(os.path.join(run, "metrics.json")))


# -----------------------------------------------------------------------------
# the rule, on both sides

@pytest.mark.parametrize("method", ["transitions", "gpt"])
def test_auto_allows_where_repeats_dominate_and_excludes_without_them(runs, method):
    allow = metrics(runs[f"repeat_{method}"])["exclude_seen"]
    assert allow["setting"] == "auto" and allow["choice"] == "allow", allow
    assert allow["repeat_targets"] == 1.0  # every validation target is an earlier item of its user
    assert allow["valid_NDCG@10"]["allow"] > allow["valid_NDCG@10"]["exclude"] + 2 * allow["standard_error"]
    exclude = metrics(runs[f"chain_{method}"])["exclude_seen"]
    assert exclude["choice"] == "exclude" and exclude["repeat_targets"] == 0.0, exclude
    assert exclude["gain"] <= 0  # no target is seen: allowing seen items can only push targets down
    log = open(os.path.join(runs[f"repeat_{method}"], "train.log")).read()
    assert "exclude_seen=auto: earlier items may be listed (repeat purchases)" in log


def test_decide_on_a_hand_made_scorer():
    """A scorer that puts a user's own items first: allow on a set where the targets repeat,
    exclude where they never do; fixed settings are themselves, without scoring."""
    num_items = 20

    def scorer(histories, users=None):
        s = torch.zeros(len(histories), num_items + 1)
        s[:, 1:] = torch.linspace(1.0, 0.0, num_items)  # popularity: the low ids first
        rows = torch.from_numpy(np.repeat(np.arange(len(histories)), histories.lengths))
        s[rows, torch.from_numpy(histories.items)] += 5.0  # the user's own items far ahead
        return s

    rng = np.random.default_rng(1)
    hist = Sequences.from_lists([list(rng.choice(np.arange(5, 21), size=3, replace=False)) for _ in range(200)])
    repeat = EvalSet(np.arange(200), hist, np.array([h[0] for h in hist.to_lists()]))
    fresh = EvalSet(np.arange(200), hist, np.full(200, 1))  # item 1: the best unseen item, never in a history
    exclude, rec = decide(scorer, repeat, Config(exclude_seen="auto"))
    assert not exclude and rec["choice"] == "allow" and rec["valid_NDCG@10"]["exclude"] == 0.0
    exclude, rec = decide(scorer, fresh, Config(exclude_seen="auto"))
    assert exclude and rec["choice"] == "exclude"
    assert rec["valid_NDCG@10"] == {"exclude": 1.0, "allow": pytest.approx(1 / np.log2(5))}  # 3 seen items above it
    ranks = paired_ranks(scorer, fresh)
    assert (ranks[0] == 1).all() and (ranks[1] == 4).all()
    assert decide(scorer, repeat, Config(exclude_seen="true")) == (True, {"setting": "true", "choice": "exclude",
                                                                          "why": "exclude_seen=true"})
    assert decide(scorer, None, Config(exclude_seen="auto"))[0] is True  # holdout=none: the default


def test_repeat_share_counts_purchases_only_under_target_filter():
    """Under target_filter "seen" is the user's earlier purchases: an item only viewed before is no repeat."""
    hist = Sequences(np.array([0, 2, 4]), np.array([7, 8, 7, 9]), weights=np.array([0, 1, 1, 1], np.float32),
                     targets=np.array([False, True, True, True]))
    evalset = EvalSet(np.arange(2), hist, np.array([7, 7]))  # user 0 viewed 7, user 1 bought it
    assert repeat_share(evalset) == 0.5


def test_bad_settings_are_one_line_errors(runs, tmp_path):
    with pytest.raises(UsageError, match="exclude_seen='maybe': expected auto, true or false"):
        Config(exclude_seen="maybe").validate()
    run = tmp_path / "run"
    import shutil
    shutil.copytree(runs["repeat_transitions"], run)
    m = metrics(run)
    m["exclude_seen"]["choice"] = "sometimes"
    json.dump(m, open(run / "metrics.json", "w"))
    with pytest.raises(DataError, match="exclude_seen's choice 'sometimes': expected exclude or allow"):
        Recommender.load(str(run))
    del m["exclude_seen"]  # a run from before the key: its lists excluded seen items
    json.dump(m, open(run / "metrics.json", "w"))
    assert Recommender.load(str(run))._run.exclude_seen is True


# -----------------------------------------------------------------------------
# the surfaces follow the run's choice

def long_lists(path):
    df = pl.read_csv(path)
    return {u: g.sort("rank")["item_id"].to_list() for (u,), g in df.group_by("user_id")}


def test_allow_lists_hold_seen_items_and_exclude_lists_never(runs):
    root, data, run = runs["root"], runs["repeat"], runs["repeat_gpt"]
    seen = {u: set(h) for u, h in enumerate(repeat_histories())}
    k = 4
    default, excluded = str(root / "allow_default.csv"), str(root / "allow_excluded.csv")
    cli(["recommend", "--run", run, "--data", data, "--out", default, "--k", str(k), "--device", "cpu"])
    cli(["recommend", "--run", run, "--data", data, "--out", excluded, "--k", str(k), "--device", "cpu",
         "--exclude-seen"])
    allowed, never = long_lists(default), long_lists(excluded)
    assert sum(bool(set(items[:2]) & seen[u]) for u, items in allowed.items()) > len(seen) // 2  # re-buys on top
    assert all(not set(items) & seen[u] for u, items in never.items())  # 12 items, 2 seen: k=4 always fits


def test_cli_api_and_server_give_the_same_lists(runs):
    data, run, root = runs["repeat"], runs["repeat_gpt"], runs["root"]
    k = 5
    path = str(root / "same.csv")
    cli(["recommend", "--run", run, "--data", data, "--out", path, "--k", str(k), "--device", "cpu"])
    from_cli = long_lists(path)
    rec = Recommender.load(run)
    assert rec._run.exclude_seen is False
    api = rec.recommend(k=k)
    from_api = {u: g.sort("rank")["item_id"].to_list() for (u,), g in api.group_by("user_id")}
    assert from_api == from_cli
    histories = repeat_histories()
    assert rec.recommend_history(histories[3], k=k)["item_id"].to_list() == from_cli[3]
    testclient = pytest.importorskip("fastapi.testclient")
    from nanorec.commands.serve import create_app
    client = testclient.TestClient(create_app(run, data, "cpu"))
    for u in (0, 3, 17):
        assert client.get(f"/users/{u}/recommendations", params={"k": k}).json()["items"] == from_cli[u]
        assert client.post("/recommendations", json={"history": histories[u], "k": k}).json()["items"] == from_cli[u]
    # an explicit exclude_seen still overrides the run's choice, on every surface
    forced = rec.recommend(k=k, exclude_seen=True)
    assert all(not set(g["item_id"].to_list()) & set(histories[u]) for (u,), g in forced.group_by("user_id"))
    got = client.get("/users/3/recommendations", params={"k": k, "exclude_seen": "true"}).json()["items"]
    assert got == rec.recommend_history(histories[3], k=k, exclude_seen=True)["item_id"].to_list()
    assert not set(got) & set(histories[3])


def test_evaluate_counts_a_held_out_repeat(runs, tmp_path):
    """The test targets are all repeats: with the run's choice (allow) they count where they rank, and
    evaluate's default equals metrics.json; --exclude-seen ranks every one of them last."""
    data, run = runs["repeat"], runs["repeat_gpt"]
    saved = metrics(run)
    assert "history included" in saved["protocol"]["test"]
    out = str(tmp_path / "m.json")
    printed = cli(["evaluate", "--run", run, "--data", data, "--device", "cpu", "--json", out])
    got = json.load(open(out))
    assert got["exclude_seen"] is False and "history included" in printed
    for key in ("HR@10", "NDCG@10", "MAP@10"):
        assert got[key] == saved["test"][key]
    assert got["HR@10"] > 0.5
    cli(["evaluate", "--run", run, "--data", data, "--device", "cpu", "--json", out, "--exclude-seen"])
    assert json.load(open(out))["HR@10"] == 0.0


def untimed(d):
    """A metrics.json entry without its timings (seconds differ from run to run)."""
    if not isinstance(d, dict):
        return d
    return {k: untimed(v) for k, v in d.items() if not k.endswith("_seconds")}


def test_exclude_chosen_is_exactly_exclude_seen_true(runs, tmp_path):
    """On a log without repeats auto chooses exclude, and the run is the exclude_seen=true run: the
    same figures in metrics.json and byte-identical lists, by default and with --exclude-seen."""
    data, auto = runs["chain"], runs["chain_gpt"]
    fixed = str(tmp_path / "fixed")
    cli(["train", "--data", data, "--out", fixed, "--quiet", "exclude_seen=true", *TINY])
    a, f = metrics(auto), metrics(fixed)
    assert f["exclude_seen"]["choice"] == "exclude"
    for key in ("valid", "test", "beyond", "baselines", "fusion", "protocol"):
        assert untimed(a[key]) == untimed(f[key]), key
    files = {}
    for name, run, flags in (("auto", auto, []), ("auto_flag", auto, ["--exclude-seen"]), ("fixed", fixed, [])):
        files[name] = str(tmp_path / f"{name}.csv")
        cli(["recommend", "--run", run, "--data", data, "--out", files[name], "--k", "5", "--device", "cpu", *flags])
    content = {name: open(p, "rb").read() for name, p in files.items()}
    assert content["auto"] == content["auto_flag"] == content["fixed"]


def test_synth_repeat_rate(tmp_path):
    def repeat_rate(path):  # the share of rows that re-buy an item of their user
        df = pl.read_csv(path)
        return (df.height - df.select(["user_id", "item_id"]).unique().height) / df.height

    rates = {}
    for r in ("0", "0.3"):
        out = str(tmp_path / f"s{r}.csv")
        cli(["synth", "--out", out, "--rows", "20000", "--repeat-rate", r])
        rates[r] = repeat_rate(out)
    assert rates["0"] < 0.05 < 0.2 < rates["0.3"], rates  # 0: only chance re-buys (a follow-up of a follow-up)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli_main(["synth", "--out", str(tmp_path / "x.csv"), "--rows", "100", "--repeat-rate", "0.5"]) == 2
    assert "--repeat-rate 0.5: must be in 0..0.3" in err.getvalue() and not os.path.exists(tmp_path / "x.csv")


def test_a_fixed_setting_is_the_runs_choice(runs, tmp_path):
    """exclude_seen=false: no decision, the run lists earlier items and reports with them included."""
    run = str(tmp_path / "fixed_false")
    cli(["train", "--data", runs["chain"], "--out", run, "--quiet", "method=transitions", "exclude_seen=false", *TINY])
    m = metrics(run)
    assert m["exclude_seen"] == {"setting": "false", "choice": "allow", "why": "exclude_seen=false"}
    assert "history included" in m["protocol"]["valid"] and "history included" in m["protocol"]["test"]
    rec = Recommender.load(run)
    every = rec.recommend(users=[0], k=12)["item_id"].to_list()  # the whole catalogue: the seen items too
    assert sorted(every) == list(range(1, 13))
    assert run_excludes(run, rec.config) is False
