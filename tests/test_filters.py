"""Business filters (an allow list, a deny list): exact, applied before top-k, for every
method, in scoring, the Python API, the CLI and the server; fewer items left -> shorter lists."""
import contextlib
import io
import os

import numpy as np
import polars as pl
import pytest
import torch

from nanorec import Recommender, UsageError
from nanorec.cli import main as cli
from nanorec.data import Sequences
from nanorec.scoring import BLOCKED, Factored, Sparse, from_factors, generate, item_mask, score_histories, top_k
from nanorec.synthetic import generate as synth

N = 300
TINY = dict(n_layer=1, n_head=1, n_embd=16, block_size=8, max_steps=20, eval_interval=20, warmup_steps=2,
            batch_size=16, progress=False, threads=1)


def expected_lists(dense: torch.Tensor, blocked: torch.Tensor, k: int):
    """The first k of a stable full sort of the dense scores with the blocked items removed."""
    s = dense.clone().numpy()
    s[:, blocked.numpy()] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(s, order, 1)
    return [row[v > -np.inf].tolist() for row, v in zip(order, vals)]


def problem(seed=0, B=30, C=6, extras=True):
    """Ties (small-integer factors), a bias and a sparse extra: every part of the factored path."""
    rng = np.random.default_rng(seed)
    Q = torch.from_numpy(rng.integers(-2, 3, size=(B, C)).astype(np.float32))
    W = torch.from_numpy(rng.integers(-2, 3, size=(N + 1, C)).astype(np.float32))
    bias = torch.from_numpy(rng.integers(0, 3, size=N + 1).astype(np.float32))
    hist = Sequences.from_lists([list(rng.choice(np.arange(1, N + 1), size=int(rng.integers(1, 20)), replace=False))
                                 for _ in range(B)])
    ex = ()
    if extras:
        import scipy.sparse as sp
        m = sp.random(B, N + 1, density=0.05, random_state=seed, format="csr", dtype=np.float32) * 4
        ex = (Sparse.from_matrix(m),)
    factors = lambda h, u: Factored(Q, W, bias, ex)  # noqa: E731
    return from_factors(factors), hist


@pytest.mark.parametrize("extras", [False, True])
@pytest.mark.parametrize("how", ["allow", "deny", "both", "few"])
def test_filtered_lists_are_the_full_sort_without_the_blocked_items(extras, how):
    scorer, hist = problem(seed=3, extras=extras)
    rng = np.random.default_rng(1)
    allow = rng.choice(np.arange(1, N + 1), size=5 if how == "few" else 100, replace=False)
    deny = rng.choice(np.arange(1, N + 1), size=120, replace=False)
    blocked = item_mask(N, allow if how != "deny" else None, deny if how in ("deny", "both") else None)
    dense = score_histories(scorer, hist)  # seen items at SEEN_SCORE, padding -inf
    want = expected_lists(dense, blocked, 10)
    dense_only = lambda h, u: scorer(h, u)  # noqa: E731  (no factors: the dense path)
    for s in (scorer, dense_only):
        for chunk in (11, 64, 0):
            items, scores = top_k(s, hist, None, 10, chunk=chunk, blocked=blocked)
            got = [row[row != 0].tolist() for row in items]
            assert got == want, (s, chunk)
            assert (scores[items == 0] == BLOCKED).all() and (scores[items != 0] > BLOCKED).all()
    if how == "few":  # 5 allowed items: every list has exactly those 5 (seen ones last), never filler
        assert all(len(x) == 5 and set(x) == set(allow.tolist()) for x in want)


def test_generative_lists_obey_the_filters():
    scorer, hist = problem(seed=4)
    allow = np.arange(1, 40)
    blocked = item_mask(N, allow, np.array([1, 2, 3]))
    for temperature in (0.0, 1.0):
        items, scores = generate(scorer, hist, None, 10, temperature=temperature, blocked=blocked)
        assert np.isin(items, np.arange(4, 40)).all()
    few = item_mask(N, np.array([7, 8]))
    items, scores = generate(scorer, hist, None, 4, temperature=1.0, blocked=few)
    assert (np.sort(items[:, :2], 1) == [7, 8]).all() and (items[:, 2:] == 0).all()
    assert (scores[:, 2:] == BLOCKED).all()


# -----------------------------------------------------------------------------
# every method through the Python API, the CLI and the server

def shop():
    u, i, t = synth(num_users=250, num_items=N, seed=2)
    return pl.DataFrame({"user_id": u, "item_id": i, "timestamp": t})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("filters")
    df = shop()
    data = str(d / "log.csv")
    df.write_csv(data)
    out = {}
    for name, cfg in {"gpt": dict(TINY, fuse_transitions="false"), "fused": dict(TINY, fuse_transitions="true"),
                      "popularity": {"method": "popularity"}, "transitions": {"method": "transitions"},
                      "cooccurrence": {"method": "cooccurrence"}, "svd": {"method": "svd"}}.items():
        out[name] = Recommender(**cfg).fit(data, out=str(d / name))
    return out, data, d


KNOWN = np.unique(shop()["item_id"].to_numpy())  # the items of the log, sorted
ALLOW = KNOWN[50:150]  # 100 item ids
A = [int(x) for x in ALLOW]  # as Python ints, for JSON and lists


@pytest.mark.parametrize("method", ["gpt", "fused", "popularity", "transitions", "cooccurrence", "svd"])
def test_api_allow_and_deny_lists_hold_for_every_method(runs, method):
    rec = runs[0][method]
    top = rec.recommend(k=10, items=ALLOW)
    assert top.height > 0 and np.isin(top["item_id"].to_numpy(), ALLOW).all()
    assert top.group_by("user_id").len()["len"].max() == 10
    unfiltered = rec.recommend(k=10)
    deny = np.unique(unfiltered["item_id"].to_numpy())[:30]
    denied = rec.recommend(k=10, exclude_items=deny.tolist())
    assert not np.isin(denied["item_id"].to_numpy(), deny).any()
    hist = rec.recommend_history([A[0], A[1], int(KNOWN[0])], k=10, items=ALLOW, exclude_items=[A[2]],
                                 exclude_seen=True)  # the log re-buys: a run may list seen items by default
    assert np.isin(hist["item_id"].to_numpy(), A[3:]).all() and hist.height == 10
    cold = rec.recommend_history([], k=10, items=ALLOW)  # the popularity fallback is filtered too
    assert np.isin(cold["item_id"].to_numpy(), ALLOW).all() and hist.height == 10


def test_api_fewer_allowed_items_than_k_gives_shorter_lists(runs):
    rec = runs[0]["gpt"]
    top = rec.recommend(users=[0, 1, 2], k=10, items=A[:3], exclude_seen=False)
    assert top.group_by("user_id").len()["len"].to_list() == [3, 3, 3]
    assert set(top["item_id"].to_list()) == set(A[:3])


@pytest.mark.parametrize("method", ["gpt", "fused", "transitions", "svd"])
def test_cli_allow_and_deny_files(runs, method, tmp_path):
    _, data, d = runs
    allow = tmp_path / "allow.csv"
    pl.DataFrame({"item_id": ALLOW}).write_csv(allow)
    deny = tmp_path / "deny.csv"
    pl.DataFrame({"sku": A[:2]}).write_csv(deny)  # one column of another name: its only column
    out = tmp_path / "recs.csv"
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert cli(["recommend", "--run", str(d / method), "--out", str(out), "--allow-items", str(allow),
                    "--deny-items", str(deny)]) == 0
    recs = pl.read_csv(out)
    assert np.isin(recs["item_id"].to_numpy(), A[2:]).all()
    assert recs.group_by("user_id").len()["len"].max() == 10
    few = tmp_path / "few.csv"
    pl.DataFrame({"item_id": A[5:7]}).write_csv(few)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert cli(["recommend", "--run", str(d / method), "--out", str(out), "--allow-items", str(few),
                    "--include-seen"]) == 0
    recs = pl.read_csv(out)
    assert recs.group_by("user_id").len()["len"].unique().to_list() == [2]
    assert "250 of 250 users got fewer than 10 items" in err.getvalue()


def test_server_filters_and_reloaded_deny_list(runs, tmp_path):
    testclient = pytest.importorskip("fastapi.testclient")
    from nanorec.serve import create_app
    _, _, d = runs
    deny = tmp_path / "deny.csv"
    deny.write_text(f"item_id\n{A[0]}\n")
    app = create_app(str(d / "fused"), deny_items=str(deny))
    client = testclient.TestClient(app)
    r = client.post("/recommendations", json={"history": A[5:7], "k": 10, "items": A}).json()
    assert len(r["items"]) == 10 and np.isin(r["items"], A[1:]).all()  # A[0] denied server-wide
    r = client.get("/users/0/recommendations", params={"k": 10, "items": [str(x) for x in ALLOW]}).json()
    assert len(r["items"]) == 10 and np.isin(r["items"], A[1:]).all()
    r = client.post("/recommendations", json={"history": [A[9]], "k": 10, "items": A[5:7], "exclude_items": [A[6]]}).json()
    assert r["items"] == [A[5]]
    # the server-wide list is re-read when the file changes; a bad file keeps the old list
    deny.write_text("item_id\n" + "\n".join(str(x) for x in A[:99]) + "\n")
    r = client.post("/recommendations", json={"history": [int(KNOWN[0])], "k": 10, "items": A}).json()
    assert r["items"] == [A[99]]
    deny.write_text("item_id\nnot-an-item-of-the-run\n")
    r = client.post("/recommendations", json={"history": [int(KNOWN[0])], "k": 10, "items": A}).json()
    assert r["items"] == [A[99]]
    # bad filters: 422, one line, unknown ids counted not echoed
    bad = client.post("/recommendations", json={"history": [int(KNOWN[0])], "items": ["zzz-secret"]})
    assert bad.status_code == 422 and "zzz-secret" not in bad.text and "1 of its 1" in bad.json()["detail"]
    assert client.post("/recommendations", json={"history": [int(KNOWN[0])], "items": []}).status_code == 422
    assert client.post("/recommendations", json={"history": [int(KNOWN[0])], "items": [1.5]}).status_code == 422


@pytest.mark.parametrize("kwargs,words", [
    (dict(items=[]), "items: empty"),
    (dict(items=[int(KNOWN[0]), 99999]), "1 of its 2 item ids are not items"),
    (dict(exclude_items=["nope"]), "exclude_items: 1 of its 1"),
    (dict(items=101), "expected a list"),
    (dict(items=[None]), "items[0] is missing"),
    (dict(exclude_items=[True]), "a boolean is not an id"),
    (dict(items=[1.5]), "not an id"),
])
def test_api_bad_filters_are_one_usage_error(runs, kwargs, words):
    rec = runs[0]["transitions"]
    with pytest.raises(UsageError) as e:
        rec.recommend(k=5, **kwargs)
    assert words in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UsageError):
        rec.recommend_history([int(KNOWN[0])], k=5, **kwargs)
