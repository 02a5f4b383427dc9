"""The Python API on a shop-like event log: frames in, lists out, the same lists after save/load and through the CLI."""
import os

import numpy as np
import polars as pl
import pytest

from nanorec import DataError, Recommender, UsageError
from nanorec.cli import main as cli
from nanorec.data.synthetic import generate

TINY = dict(n_layer=1, n_head=1, n_embd=16, block_size=12, max_steps=40, eval_interval=20, warmup_steps=5,
            batch_size=16, progress=False, threads=1)


def events(seed=0, users=400, items=80):
    """An events export: string ids, ISO-8601 times, an event_type and extra columns, rows shuffled."""
    u, i, t = generate(num_users=users, num_items=items, seed=seed)
    rng = np.random.default_rng(seed)
    kinds = rng.choice(["view", "cart", "purchase"], size=len(u), p=[0.5, 0.2, 0.3])
    rank = np.argsort(np.argsort(t, kind="stable"), kind="stable")  # the log's order, as seconds
    times = (np.datetime64("2024-04-01T00:00:00") + rank.astype("timedelta64[s]")).astype(str)
    df = pl.DataFrame({"customer": [f"c{x}" for x in u], "sku": [f"sku{x}" for x in i],
                       "ts": [x + "Z" for x in times], "event_type": kinds, "price": rng.random(len(u)),
                       "channel": ["web"] * len(u)})
    return df.sample(fraction=1.0, shuffle=True, seed=seed)  # shuffled rows: order must come from ts


@pytest.fixture(scope="module")
def shop():
    return events()


@pytest.fixture(scope="module")
def fitted(shop, tmp_path_factory):
    rec = Recommender(**TINY).fit(shop, user_col="customer", item_col="sku", time_col="ts",
                                  out=str(tmp_path_factory.mktemp("api") / "run"))
    return rec, rec.recommend(k=5)


def test_polars_fit_recommend_save_load_same_lists(fitted, tmp_path):
    rec, top = fitted
    assert top.columns == ["user_id", "item_id", "score", "rank", "source"]
    assert top["user_id"].dtype == pl.Utf8 and top["item_id"][0].startswith("sku")
    assert top.height == 5 * top["user_id"].n_unique()
    again = Recommender.load(rec.save(str(tmp_path / "saved")))
    assert again.recommend(k=5).equals(top)
    hist = again.recommend_history(["sku1", "sku7", "not-an-item"], k=3)
    assert hist["rank"].to_list() == [1, 2, 3] and set(hist["source"]) == {"model"}


def test_pandas_fit_gives_the_polars_lists_back_as_pandas(shop, fitted, tmp_path):
    pytest.importorskip("pandas")
    _, top = fitted
    rec = Recommender(**TINY).fit(shop.to_pandas(), user_col="customer", item_col="sku", time_col="ts",
                                  out=str(tmp_path / "run"))
    top_pd = rec.recommend(k=5)
    assert type(top_pd).__module__.startswith("pandas")
    assert pl.from_pandas(top_pd).select("user_id", "item_id", "rank").equals(top.select("user_id", "item_id", "rank"))


def test_cli_on_the_same_events_gives_the_same_lists(shop, fitted, tmp_path):
    _, top = fitted
    path = str(tmp_path / "events.csv")
    shop.write_csv(path)
    keys = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in TINY.items()]
    run = str(tmp_path / "run")
    assert cli(["train", "--data", path, "--out", run, "--quiet", "user_col=customer", "item_col=sku", "time_col=ts",
                *keys]) == 0
    out = str(tmp_path / "recs.csv")
    assert cli(["recommend", "--run", run, "--out", out, "--k", "5"]) == 0
    got = pl.read_csv(out).select("user_id", "item_id", "rank")
    assert got.equals(top.select("user_id", "item_id", "rank"))


def test_cold_users_are_marked_not_scored(fitted):
    rec, _ = fitted
    out = rec.recommend(users=["c1", "nobody"], k=3)
    cold = out.filter(pl.col("user_id") == "nobody")
    assert cold["source"].to_list() == ["popularity"] * 3 and cold["score"].null_count() == 3
    assert out.filter(pl.col("user_id") == "c1")["source"].to_list() == ["model"] * 3


def test_two_event_users_train_with_holdout_none(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 30, size=300)
    df = pl.DataFrame({"user_id": np.repeat(np.arange(300), 2), "item_id": np.stack([a, (a + 1) % 30], 1).reshape(-1),
                       "t": np.tile([0, 1], 300)})
    with pytest.raises(DataError, match="holdout=none"):  # leave-one-out leaves nothing to learn
        Recommender(**TINY).fit(df, time_col="t", out=str(tmp_path / "loo"))
    rec = Recommender(**{**TINY, "holdout": "none", "max_steps": 150, "eval_interval": 50, "dropout": 0.0,
                         "learning_rate": 1e-2}).fit(df, time_col="t", out=str(tmp_path / "none"))
    m = rec.metrics
    assert "valid" not in m and "test" not in m and m["selection"].startswith("last step")
    # the pattern is item a -> a+1: the model must have learnt it from the second events
    top = rec.recommend_history([5], k=1, exclude_seen=True)
    assert top["item_id"][0] == 6


def test_missing_time_column_is_an_error(shop):
    with pytest.raises(DataError, match="event_time"):
        Recommender(**TINY).fit(shop, user_col="customer", item_col="sku", time_col="event_time")


def test_filter_keeps_only_the_chosen_events(shop, tmp_path):
    rec = Recommender(**TINY).fit(shop, user_col="customer", item_col="sku", time_col="ts",
                                  filter="event_type=purchase", out=str(tmp_path / "run"))
    kept = shop.filter(pl.col("event_type") == "purchase")
    assert rec.metrics and len(rec._histories.items) == kept.height  # the run's histories: purchases only
    assert rec.config.filter == "event_type=purchase"


def test_bad_keyword_and_unfitted_use_are_one_line_errors():
    with pytest.raises(UsageError, match="n_layers"):
        Recommender(n_layers=2)
    with pytest.raises(UsageError, match="dropout"):
        Recommender(dropout=2.0)
    with pytest.raises(UsageError, match="not fitted"):
        Recommender().recommend()


def test_version():
    import nanorec
    assert nanorec.__version__ and cli(["--version"]) == 0
    assert os.path.exists(os.path.join(os.path.dirname(nanorec.__file__), "py.typed"))


@pytest.mark.parametrize("method", ["transitions", "popularity", "svd"])
def test_a_baseline_ships_like_a_gpt_run(shop, tmp_path, method):
    """Trained into a run folder, then recommended (CLI and API), evaluated and served like a GPT."""
    path = str(tmp_path / "events.csv")
    shop.write_csv(path)
    run = str(tmp_path / "run")
    assert cli(["train", "--data", path, "--out", run, "--quiet", f"method={method}",
                "user_col=customer", "item_col=sku", "time_col=ts"]) == 0
    metrics = Recommender.load(run).metrics
    assert metrics["method"] == method and metrics["test"]["NDCG@10"] > 0
    out = str(tmp_path / "recs.csv")
    assert cli(["recommend", "--run", run, "--out", out, "--k", "4"]) == 0
    api = Recommender.load(run).recommend(k=4)
    assert pl.read_csv(out).select("user_id", "item_id").equals(api.select("user_id", "item_id"))
    assert cli(["evaluate", "--run", run, "--data", path]) == 0
    if method == "transitions":  # what follows the last item comes first
        from nanorec.methods.transitions import Transitions
        from nanorec.data import load, split
        ds = load(path, "customer", "sku", "ts")
        ref = Transitions().fit(split(ds).train, ds.num_items, split(ds).valid)
        hist = api.filter(pl.col("user_id") == "c3")
        row = ds.user_index()["c3"]
        scores = ref.score(ds.sequences.take([row]), None)[0]
        scores[ds.sequences[row]] = -np.inf
        scores[0] = -np.inf
        assert hist["item_id"][0] == ds.item_ids[int(np.argmax(scores))]
    fastapi = pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from nanorec.commands.serve import create_app
    client = TestClient(create_app(run))
    r = client.get("/users/c3/recommendations", params={"k": 4})
    assert r.status_code == 200 and r.json()["items"] == api.filter(pl.col("user_id") == "c3")["item_id"].to_list()


def test_one_run_gives_the_same_lists_through_the_api_the_cli_and_the_server(fitted, tmp_path):
    """Run.open is the one way into a run: a fused run's lists from the Python API,
    `nanorec recommend` and the server are the same, and they are the lists of the
    scorer Run.open builds (the GPT plus the fusion terms)."""
    from nanorec.runs.run import Run
    from nanorec.scoring.scorer import recommend_lists
    rec, _ = fitted
    assert os.path.exists(os.path.join(rec.run_dir, "fusion.json"))  # fuse_transitions=auto: fused
    users = ["c1", "c3", "c17", "nobody"]
    api = rec.recommend(users=users, k=5)
    by_user = {u: api.filter(pl.col("user_id") == u) for u in users}
    assert by_user["nobody"]["source"].to_list() == ["popularity"] * 5

    users_file = str(tmp_path / "users.csv")
    pl.DataFrame({"customer": users}).write_csv(users_file)  # the run's user column
    out = str(tmp_path / "recs.csv")
    assert cli(["recommend", "--run", rec.run_dir, "--users", users_file, "--out", out, "--k", "5"]) == 0
    got = pl.read_csv(out, schema_overrides={"user_id": pl.Utf8})
    assert got.select("user_id", "item_id", "rank", "source").equals(api.select("user_id", "item_id", "rank", "source"))

    run = Run.open(rec.run_dir)
    rows = [run.user_ids.tolist().index(u) for u in users[:3]]
    items, scores = recommend_lists(run.scorer, run.histories.take(rows), None, 5, run.exclude_seen)  # the run's choice
    assert run.item_ids[items].tolist() == [by_user[u]["item_id"].to_list() for u in users[:3]]
    assert np.allclose(scores, np.stack([by_user[u]["score"].to_numpy() for u in users[:3]]))

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from nanorec.commands.serve import create_app
    client = TestClient(create_app(rec.run_dir))
    for u in users:
        r = client.get(f"/users/{u}/recommendations", params={"k": 5}).json()
        assert r["items"] == by_user[u]["item_id"].to_list(), u
    history = ["sku3", "sku9", "sku1"]
    served = client.post("/recommendations", json={"history": history, "k": 4}).json()
    assert served["items"] == rec.recommend_history(history, k=4)["item_id"].to_list()
