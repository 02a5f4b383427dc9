"""Event types on every recommend path (issue 25, item 1).

A run trained with target_filter=event_type=purchase reads every event as history and removes
only the user's purchases (targets) from a list. The same histories reach a list from the
run's own histories.parquet, from `--data` (the run's target_filter applied to the data's
column), from the Python API's raw history with `event_types`, and from the server's POST
body with "event_types": each gives the same lists. Bad event types are one line."""
import json
import os

import numpy as np
import polars as pl
import pytest

from nanorec import cli
from nanorec.api import Recommender
from nanorec.config import Config
from nanorec.data import load, split
from nanorec.errors import DataError, UsageError
from nanorec.data.synthetic import write_fast
from nanorec.core.train import run

TINY = dict(block_size=16, n_layer=1, n_head=1, n_embd=16, max_steps=6, eval_interval=3, warmup_steps=1,
            batch_size=16, progress=False, dropout=0.0, threads=1, fuse_transitions="true",
            exclude_seen="true")  # the shop log re-buys; these tests are about which events are seen
FILTER = "event_type=purchase"
K = 5


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """(folder, log path, event-typed run, plain run): a shop log (views, carts, purchases) and
    two tiny runs on it, one with views as context (target_filter), one without."""
    d = tmp_path_factory.mktemp("events")
    log = str(d / "shop.csv")
    write_fast(log, 500, 40, seed=3, event_types=("view", "cart", "purchase"))
    run(Config(data=log, target_filter=FILTER, **TINY), str(d / "typed"), quiet=True)
    run(Config(data=log, **TINY), str(d / "plain"), quiet=True)
    return d, log, str(d / "typed"), str(d / "plain")


def cli_lists(run_dir, out, *extra) -> dict:
    """`nanorec recommend` -> {user id (text): [item ids (text), best first]}."""
    assert cli.main(["recommend", "--run", run_dir, "--out", out, "--k", str(K), "--device", "cpu", *extra]) == 0
    df = pl.read_csv(out, schema_overrides={"user_id": pl.Utf8, "item_id": pl.Utf8})
    return {u: g.sort("rank")["item_id"].to_list() for (u,), g in df.group_by("user_id")}


def user_events(log) -> dict:
    """{user id (text): (item ids (text), event types)} in time order, as the readers order them."""
    df = pl.read_csv(log).with_row_index("row").sort(["timestamp", "row"])
    return {str(u): (g["item_id"].cast(pl.Utf8).to_list(), g["event_type"].to_list())
            for (u,), g in df.group_by("user_id", maintain_order=True)}


# -----------------------------------------------------------------------------
# --data <the run's own log> == the run's own histories

def test_recommend_data_of_its_own_log_gives_the_runs_lists(shop):
    d, log, typed, plain = shop
    own = cli_lists(typed, str(d / "own.csv"))
    from_data = cli_lists(typed, str(d / "data.csv"), "--data", log)
    assert len(own) == len(load(log).user_ids) and from_data == own  # every list, every rank
    # views are not seen: some list holds an item its user viewed (never bought), the point of the flags
    events = user_events(log)
    viewed_listed = sum(bool(set(items) & {i for i, e in zip(*events[u]) if e == "view"}
                             - {i for i, e in zip(*events[u]) if e == "purchase"})
                        for u, items in own.items())
    assert viewed_listed > 0
    # and never an item the user bought (k = 5 of 40 items: every user has enough unseen ones)
    assert not any(set(items) & {i for i, e in zip(*events[u]) if e == "purchase"} for u, items in own.items())
    # a plain run (every event a target) too
    assert cli_lists(plain, str(d / "p_data.csv"), "--data", log) == cli_lists(plain, str(d / "p_own.csv"))


def test_api_and_server_give_the_cli_lists_for_a_users_history(shop):
    d, log, typed, _ = shop
    own = cli_lists(typed, str(d / "own2.csv"))
    rec = Recommender.load(typed)
    top = rec.recommend(k=K).with_columns(pl.col("user_id").cast(pl.Utf8), pl.col("item_id").cast(pl.Utf8))
    assert {u: g.sort("rank")["item_id"].to_list() for (u,), g in top.group_by("user_id")} == own
    testclient = pytest.importorskip("fastapi.testclient")
    from nanorec.commands.serve import create_app
    for data in (None, log):
        client = testclient.TestClient(create_app(typed, data))
        for u in list(own)[:15]:
            got = client.get(f"/users/{u}/recommendations", params={"k": K}).json()
            assert [str(i) for i in got["items"]] == own[u], (data, u)


def test_a_raw_history_with_event_types_gives_the_same_list_on_api_cli_and_server(shop):
    """One input, three surfaces: a log of a few shoppers (CLI --data), each shopper's events as
    a raw history with event_types (API), and as a POST body (server)."""
    d, log, typed, _ = shop
    events = user_events(log)
    shoppers = [u for u, (_, types) in events.items() if {"view", "purchase"} <= set(types)][:8]
    rows = [(f"new-{u}", int(i), t, e) for u in shoppers for t, (i, e) in enumerate(zip(*events[u]))]
    # and a customer who only viewed (a log of views alone is history, not an error)
    viewer = [i for i, e in zip(*events[shoppers[0]]) if e == "view"]
    events["viewer"] = (viewer, ["view"] * len(viewer))
    shoppers.append("viewer")
    rows += [("new-viewer", int(i), t, "view") for t, i in enumerate(viewer)]
    small = str(d / "shoppers.csv")
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "event_type"], orient="row").write_csv(small)
    from_cli = cli_lists(typed, str(d / "shoppers_out.csv"), "--data", small)
    rec = Recommender.load(typed)
    testclient = pytest.importorskip("fastapi.testclient")
    from nanorec.commands.serve import create_app
    client = testclient.TestClient(create_app(typed))
    differs = 0
    for u in shoppers:
        items, types = [int(i) for i in events[u][0]], events[u][1]
        api = rec.recommend_history(items, k=K, event_types=types)["item_id"].cast(pl.Utf8).to_list()
        body = client.post("/recommendations", json={"history": items, "k": K, "event_types": types}).json()
        assert api == [str(i) for i in body["items"]] == from_cli[f"new-{u}"], u
        # without event types every event is a target: the viewed items leave the list
        plain = rec.recommend_history(items, k=K)["item_id"].cast(pl.Utf8).to_list()
        assert not set(plain) & set(map(str, items))
        differs += plain != api
    viewer_only = str(d / "viewer.csv")
    pl.DataFrame(rows[-len(viewer):], schema=["user_id", "item_id", "timestamp", "event_type"],
                 orient="row").write_csv(viewer_only)
    assert cli_lists(typed, str(d / "viewer_out.csv"), "--data", viewer_only)["new-viewer"] == from_cli["new-viewer"]
    assert differs > 0


def test_bad_event_types_are_one_line_on_every_surface(shop, capsys):
    d, log, typed, plain = shop
    rec = Recommender.load(typed)
    with pytest.raises(UsageError, match=r"event_types: event type 'wish' \(column 'event_type'\) is not one the "
                                         r"run in .* was trained with \(its values: 'cart', 'purchase', 'view'\)"):
        rec.recommend_history([1, 2], event_types=["view", "wish"])
    with pytest.raises(UsageError, match="event_types: 1 values for a history of 2 items"):
        rec.recommend_history([1, 2], event_types=["view"])
    with pytest.raises(UsageError, match="event_types=.view.: expected a list"):
        rec.recommend_history([1], event_types="view")
    with pytest.raises(UsageError, match="trained without target_filter .*leave event_types out"):
        Recommender.load(plain).recommend_history([1, 2], event_types=["view", "purchase"])
    testclient = pytest.importorskip("fastapi.testclient")
    from nanorec.commands.serve import create_app
    client = testclient.TestClient(create_app(typed))
    for body, where in (({"history": [1, 2], "event_types": ["view", "wish"]}, "event type 'wish'"),
                        ({"history": [1, 2], "event_types": ["view"]}, "1 values for a history of 2"),
                        ({"history": [1, 2], "event_types": ["view", True]}, "event_types.1: an event type must")):
        r = client.post("/recommendations", json=body)
        assert r.status_code == 422 and where in r.json()["detail"] and "\n" not in r.json()["detail"]
    r = testclient.TestClient(create_app(plain)).post("/recommendations",
                                                      json={"history": [1, 2], "event_types": ["view", "view"]})
    assert r.status_code == 422 and "without target_filter" in r.json()["detail"]
    assert client.get("/health").status_code == 200  # still serving
    # the CLI: a --data log with an event type the run never saw, and one without the column
    bad = str(d / "wish.csv")
    pl.read_csv(log).head(30).with_columns(pl.lit("wish").alias("event_type")).write_csv(bad)
    capsys.readouterr()
    assert cli.main(["recommend", "--run", typed, "--data", bad, "--out", str(d / "x.csv"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "event type 'wish' (column 'event_type') is not one" in err
    assert not os.path.exists(d / "x.csv")
    bare = str(d / "bare.csv")
    pl.read_csv(log).head(30).drop("event_type").write_csv(bare)
    assert cli.main(["recommend", "--run", typed, "--data", bare, "--out", str(d / "x.csv"), "--device", "cpu"]) == 2
    assert "missing target_filter column 'event_type'" in capsys.readouterr().err


def test_a_run_from_before_the_event_types_were_recorded_still_loads(shop, tmp_path):
    import shutil
    _, log, typed, _ = shop
    old = str(tmp_path / "old")
    shutil.copytree(typed, old)
    with open(os.path.join(old, "data.json")) as f:
        fp = json.load(f)
    assert fp["event_types"] == ["cart", "purchase", "view"]  # recorded at training
    del fp["event_types"]
    with open(os.path.join(old, "data.json"), "w") as f:
        json.dump(fp, f)
    rec = Recommender.load(old)
    a = rec.recommend_history([1, 2, 2], k=K, event_types=["view", "cart", "purchase"])
    b = Recommender.load(typed).recommend_history([1, 2, 2], k=K, event_types=["view", "cart", "purchase"])
    assert a["item_id"].to_list() == b["item_id"].to_list()
    # nothing recorded to check against: a new value is context, as the readers would read it
    c = rec.recommend_history([1, 2, 2], k=K, event_types=["view", "wish", "purchase"])
    assert c["item_id"].to_list() == a["item_id"].to_list()
    # a broken record is one line naming the file
    fp["event_types"] = "view"
    with open(os.path.join(old, "data.json"), "w") as f:
        json.dump(fp, f)
    with pytest.raises(DataError, match="data.json: event_types must be a list of strings"):
        Recommender.load(old).recommend_history([1], event_types=["view"])


# -----------------------------------------------------------------------------
# the training log counts purchases as targets and views as context

def test_training_log_says_targets_and_context_events_apart(shop):
    from nanorec.core.packing import pack
    _, log, typed, plain = shop
    ds = load(log, target_filter=FILTER)
    train = split(ds).train
    packed = pack(train, TINY["block_size"], weights=train.weights)
    n_targets = int((packed.weights > 0).sum())  # the slots the loss counts
    n_context = int((train.weights == 0).sum())
    purchases = int((pl.read_csv(log)["event_type"] == "purchase").sum())
    assert 0 < n_targets < purchases < n_context
    line = next(x for x in open(os.path.join(typed, "train.log")) if " training targets" in x)
    assert f"; {n_targets:,} training targets ({FILTER}), {n_context:,} context events;" in line
    plain_line = next(x for x in open(os.path.join(plain, "train.log")) if " training targets" in x)
    assert "context" not in plain_line


def test_a_frame_history_carries_its_event_types(shop):
    _, log, typed, plain = shop
    events = user_events(log)
    u = next(u for u, (_, types) in events.items() if {"view", "purchase"} <= set(types))
    items, types = [int(i) for i in events[u][0]], events[u][1]
    rec = Recommender.load(typed)
    want = rec.recommend_history(items, k=K, event_types=types)["item_id"].to_list()
    frame = pl.DataFrame({"item_id": items, "event_type": types, "timestamp": range(len(items))})
    assert rec.recommend_history(frame, k=K)["item_id"].to_list() == want
    pd = pytest.importorskip("pandas")
    assert rec.recommend_history(frame.to_pandas(), k=K)["item_id"].to_list() == want
    # without the column every event is a target, as with a list and no event_types
    assert rec.recommend_history(frame.drop("event_type"), k=K)["item_id"].to_list() == \
        rec.recommend_history(items, k=K)["item_id"].to_list()
    with pytest.raises(UsageError, match="history: a frame needs the run's item column 'item_id'"):
        rec.recommend_history(pd.DataFrame({"sku": items}))
    with pytest.raises(UsageError, match="event_types: a frame history carries them in its event_type column"):
        rec.recommend_history(frame, event_types=types)
    with pytest.raises(UsageError, match=r"event_types\[1\] is missing"):
        rec.recommend_history(pl.DataFrame({"item_id": [1, 2], "event_type": ["view", None]}))
    # a run without target_filter reads a frame's items alone (its other columns are not its business)
    p = Recommender.load(plain)
    assert p.recommend_history(frame, k=K)["item_id"].to_list() == p.recommend_history(items, k=K)["item_id"].to_list()
