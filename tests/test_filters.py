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
from nanorec.scoring.scorer import BLOCKED, Factored, Sparse, from_factors, generate, item_mask, score_histories, top_k
from nanorec.data.synthetic import generate as synth

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
    from nanorec.commands.serve import create_app
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
    deny.write_bytes(b"item_id\n\xff\xfe not text\n")  # not a list of ids: the last good list stays
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


# -----------------------------------------------------------------------------
# filter files read one way (recommend.read_filter_file), whatever they look like: each shape
# against a brute-force filter of the full ranking, on a run whose item ids keep leading zeros

def zero_run(tmp_path_factory, method="transitions"):
    d = tmp_path_factory.mktemp("zeros")
    u, i, t = synth(num_users=120, num_items=40, seed=5)
    df = pl.DataFrame({"user_id": u, "item_id": [f"{x:03d}" for x in i], "timestamp": t})
    data = str(d / "log.csv")
    df.write_csv(data)
    cfg = dict(TINY, fuse_transitions="false") if method == "gpt" else {"method": method}
    return Recommender(**cfg).fit(data, out=str(d / "run")), d


@pytest.fixture(scope="module")
def zeros(tmp_path_factory):
    return zero_run(tmp_path_factory)


def by_user(df) -> dict:
    """A long frame of lists -> {user id (int): [item ids, best first]}."""
    return {int(key[0]): g["item_id"].to_list() for key, g in df.group_by("user_id", maintain_order=True)}


def ranking(rec) -> dict:
    """user -> every item the user may be shown, best first (the full ranking: k = all unseen)."""
    return by_user(rec.recommend(k=len(rec._run.item_ids) - 1))


def brute(full: dict, k: int, allow=None, deny=()) -> dict:
    """The first k of each user's full ranking with the filtered items removed."""
    keep = lambda x: (allow is None or x in allow) and x not in deny  # noqa: E731
    return {u: [x for x in items if keep(x)][:k] for u, items in full.items()}


def shapes(ids_: list[str]) -> dict:
    """One list of ids as the files shops export: name -> bytes (the suffix is part of the name)."""
    rows = "\n".join(ids_) + "\n"
    return {
        "header.csv": ("item_id\n" + rows).encode(),
        "no_header.csv": rows.encode(),
        "bom_no_header.csv": b"\xef\xbb\xbf" + rows.encode(),
        "bom_header_crlf_blank.csv": b"\xef\xbb\xbfitem_id\r\n\r\n" + rows.replace("\n", "\r\n\r\n").encode(),
        "other_header.csv": ("sku\n" + rows).encode(),
        "spaces.csv": "".join(f"  {x} \n" for x in ids_).encode(),
        "two_columns.csv": ("name,item_id\n" + "".join(f"n{j},{x}\n" for j, x in enumerate(ids_))).encode(),
        "no_header.tsv": rows.encode(),
        "no_header.csv.gz": __import__("gzip").compress(rows.encode()),
    }


def write_parquet_list(path, ids_):
    pl.DataFrame({"item_id": ids_}).write_parquet(path)
    return path


@pytest.mark.parametrize("which", ["deny", "allow"])
def test_filter_files_of_every_shape_match_a_brute_force_filter_on_every_path(zeros, which, tmp_path):
    testclient = pytest.importorskip("fastapi.testclient")
    from nanorec.commands.serve import create_app
    rec, d = zeros
    full = ranking(rec)
    tops = [items[0] for items in full.values()]
    # the first line is every list's favourite (a reader taking it as a header would list it),
    # then ids that keep their leading zero, and one the run never saw
    chosen = sorted(set(tops), key=tops.count, reverse=True)[:3] + ["005", "010", "999"]
    chosen = list(dict.fromkeys(chosen))
    known = [x for x in chosen if x != "999"]
    k = 5
    want = brute(full, k, deny=set(known)) if which == "deny" else brute(full, k, allow=set(known))
    files = {name: tmp_path / name for name in shapes(chosen)}
    for name, data in shapes(chosen).items():
        files[name].write_bytes(data)
    files["list.parquet"] = write_parquet_list(tmp_path / "list.parquet", chosen)
    option = "--deny-items" if which == "deny" else "--allow-items"
    for name, path in files.items():
        out = tmp_path / f"recs_{name}.csv"
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            assert cli(["recommend", "--run", rec.run_dir, "--out", str(out), "--k", str(k), option, str(path)]) == 0
        got = pl.read_csv(out, schema_overrides={"item_id": pl.Utf8, "user_id": pl.Utf8})
        assert by_user(got) == {u: v for u, v in want.items() if v}, name
        assert f"{len(chosen)} item ids read" in err.getvalue() and "1 not known to the run (e.g. '999')" in \
            err.getvalue(), (name, err.getvalue())
        # the Python API, given the file
        with pytest.warns(UserWarning, match="1 not known to the run") as said:
            api = rec.recommend(k=k, **({"exclude_items": path} if which == "deny" else {"items": path}))
        assert said[0].filename == __file__  # the warning names the caller's line
        assert by_user(api) == {u: v for u, v in want.items() if v}, name
    # the server's --deny-items, file by file (an allow list is per request there, not a file)
    if which == "deny":
        for name, path in files.items():
            client = testclient.TestClient(create_app(rec.run_dir, deny_items=str(path)))
            for u in list(full)[:20]:
                r = client.get(f"/users/{u}/recommendations", params={"k": k}).json()
                assert r["items"] == want[u], (name, u)


def test_a_first_line_the_run_knows_is_an_id_on_an_integer_run(runs, tmp_path):
    rec = runs[0]["transitions"]
    top = rec.recommend(k=10)
    first, second = [int(x) for x in top["item_id"].value_counts(sort=True)["item_id"][:2]]
    deny = tmp_path / "deny.csv"
    deny.write_text(f"{first}\n{second}\n")  # no header: the favourite item first
    denied = rec.recommend(k=10, exclude_items=deny)
    assert not np.isin(denied["item_id"].to_numpy(), [first, second]).any()
    floats = tmp_path / "floats.csv"
    floats.write_text(f"{float(first)}\n{float(second)}\n")  # pandas writes an integer column with a gap so
    assert rec.recommend(k=10, exclude_items=floats).equals(denied)
    unknown_first = tmp_path / "unknown_first.csv"
    unknown_first.write_text(f"99999\n{first}\n")  # an integer on an integer run: an id, unknown
    with pytest.warns(UserWarning, match="2 item ids read, 1 not known to the run"):
        denied = rec.recommend(k=10, exclude_items=unknown_first)
    assert not np.isin(denied["item_id"].to_numpy(), [first]).any()


def test_an_allow_list_with_no_known_id_is_one_line_and_an_empty_deny_list_denies_nothing(runs, tmp_path):
    rec = runs[0]["transitions"]
    nothing = tmp_path / "allow.csv"
    nothing.write_text("item_id\n99999\n")
    with pytest.raises(Exception) as e:
        rec.recommend(k=5, items=nothing)
    assert "no item could be listed" in str(e.value) and "\n" not in str(e.value)
    empty = tmp_path / "deny.csv"
    empty.write_text("")
    assert rec.recommend(k=5, exclude_items=empty).equals(rec.recommend(k=5))


# -----------------------------------------------------------------------------
# the server's deny list follows the file's content

def _favourites(full: dict, n: int) -> list:
    tops = [items[0] for items in full.values()]
    return sorted(set(tops), key=lambda x: (-tops.count(x), x))[:n]


def _server_lists(get, users, k) -> dict:
    return {u: get(f"/users/{u}/recommendations?k={k}")["items"] for u in users}


def check_deny_reloads(get, path, full, k, log_text):
    """Every reload case against a running server: get(url) -> JSON; log_text() -> its log so far."""
    users = list(full)[:25]
    a, b, c, e = _favourites(full, 4)
    assert _server_lists(get, users, k) == {u: brute(full, k, deny={a, b})[u] for u in users}
    # emptied (truncated to 0 bytes): every item back
    open(path, "w").close()
    assert _server_lists(get, users, k) == {u: brute(full, k)[u] for u in users}
    # a rewrite of the same size that keeps the old mtime (cp -p, rsync -t): seen
    path.write_text(f"{a}\n{b}\n")
    old = os.stat(path)
    assert _server_lists(get, users, k) == {u: brute(full, k, deny={a, b})[u] for u in users}
    path.write_text(f"{c}\n{e}\n")
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert os.stat(path).st_size == old.st_size and os.stat(path).st_mtime_ns == old.st_mtime_ns
    assert _server_lists(get, users, k) == {u: brute(full, k, deny={c, e})[u] for u in users}
    assert get("/health")["deny_items"]["problem"] is None
    # the file disappears, then is not a list of ids: the last good list is kept, and said
    os.remove(path)
    for _ in range(2):
        assert _server_lists(get, users, k) == {u: brute(full, k, deny={c, e})[u] for u in users}
    health = get("/health")["deny_items"]
    assert "no such file" in health["problem"] and health["denied"] == 2
    path.write_bytes(b"\xff\xfe\x00garbage\n")
    assert _server_lists(get, users, k) == {u: brute(full, k, deny={c, e})[u] for u in users}
    assert "not UTF-8" in get("/health")["deny_items"]["problem"]
    # good again: read, and /health clear
    path.write_text(f"item_id\n{a}\n")
    assert _server_lists(get, users, k) == {u: brute(full, k, deny={a})[u] for u in users}
    assert get("/health")["deny_items"] == {"file": str(path), "denied": 1, "ids_read": 1, "unknown": 0,
                                            "problem": None}
    log = log_text()
    assert log.count("not reloaded (") == 2 and log.count("keeping the last good list of 2 items") == 2, log


def test_the_server_deny_list_reloads_by_content_and_keeps_the_last_good_one(zeros, tmp_path, capsys):
    testclient = pytest.importorskip("fastapi.testclient")
    from nanorec.commands.serve import create_app
    rec, _ = zeros
    full = ranking(rec)
    deny = tmp_path / "deny.csv"
    a, b = _favourites(full, 2)
    deny.write_text(f"{a}\n{b}\n")
    client = testclient.TestClient(create_app(rec.run_dir, deny_items=str(deny)))
    check_deny_reloads(lambda url: client.get(url).json(), deny, full, 5, lambda: capsys.readouterr().err)


def test_the_deny_list_is_read_only_when_its_stat_signature_changes(zeros, tmp_path, monkeypatch):
    """A settled file whose inode, size, mtime and ctime are unchanged is not read again (was: read
    and hashed on every request); any write changes ctime, and the file is read and hashed again."""
    import nanorec.scoring.recommend as recommend_module
    from nanorec.commands.serve import DenyFile
    rec, _ = zeros
    full = ranking(rec)
    a, b, c = _favourites(full, 3)
    deny = tmp_path / "deny.csv"
    deny.write_text(f"{a}\n{b}\n")
    reads = []
    real = recommend_module.read_filter_bytes
    monkeypatch.setattr(recommend_module, "read_filter_bytes", lambda path: reads.append(path) or real(path))
    denied = DenyFile(str(deny), rec._run.item_ids, "item_id", log=lambda line: None)
    denied.SETTLE_NS = 0  # every signature settled: what a file left alone for a second is
    first = sorted(rec._run.item_ids[denied.current()].tolist())
    n = len(reads)
    for _ in range(5):
        assert sorted(rec._run.item_ids[denied.current()].tolist()) == first == sorted([a, b])
    assert len(reads) == n  # not read once more
    old = os.stat(deny)
    deny.write_text(f"{a}\n{c}\n")  # same size; mtime put back as cp -p does: ctime still moves
    os.utime(deny, ns=(old.st_atime_ns, old.st_mtime_ns))
    if os.stat(deny).st_ctime_ns == old.st_ctime_ns:
        pytest.skip("this file system's ctime did not move within the test (coarse clock)")
    assert sorted(rec._run.item_ids[denied.current()].tolist()) == sorted([a, c]) and len(reads) == n + 1


def test_a_deny_list_from_a_pipe_is_read_once_and_never_waits_for_a_writer(zeros, tmp_path):
    """--deny-items <(grep ...): read at start; a request must not block on the FIFO (was: each
    request opened it again and waited for a writer that never comes)."""
    import threading

    from nanorec.commands.serve import DenyFile
    rec, _ = zeros
    a, b = _favourites(ranking(rec), 2)
    fifo = str(tmp_path / "deny.fifo")
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: open(fifo, "w").write(f"{a}\n{b}\n"), daemon=True)
    writer.start()
    lines = []
    denied = DenyFile(fifo, rec._run.item_ids, "item_id", log=lines.append)
    got = []
    reader = threading.Thread(target=lambda: got.append(denied.current()), daemon=True)
    reader.start()
    reader.join(60)  # a bound on a hang, not a timing: the call returns at once
    assert not reader.is_alive(), "current() waited on the FIFO"
    assert sorted(rec._run.item_ids[got[0]].tolist()) == sorted([a, b])
    assert "a pipe: read once" in lines[0]


@pytest.mark.subprocess
def test_a_real_server_reloads_its_deny_list_by_content(zeros, tmp_path):
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    pytest.importorskip("uvicorn")
    rec, _ = zeros
    full = ranking(rec)
    deny = tmp_path / "deny.csv"
    a, b = _favourites(full, 2)
    deny.write_text(f"{a}\n{b}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "server.log"
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), ".."))
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "nanorec.cli", "serve", "--run", rec.run_dir, "--port", str(port),
                                 "--deny-items", str(deny), "--device", "cpu"], stdout=out, stderr=out, env=env)
    try:
        def get(url):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{url}", timeout=30) as r:
                return json.loads(r.read())
        for _ in range(600):  # start-up, bounded: 60 s at most
            try:
                get("/health")
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
        check_deny_reloads(get, deny, full, 5, log.read_text)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -----------------------------------------------------------------------------
# lists are never padded with seen items (score -3.4e38): shorter, and said

def _seen(d) -> dict:
    log = pl.read_csv(d / "log.csv", schema_overrides={"item_id": pl.Utf8})
    return {int(key[0]): set(g["item_id"].to_list()) for key, g in log.group_by("user_id")}


@pytest.mark.parametrize("mode", ["oneshot", "generative"])
def test_lists_never_end_with_seen_items_at_k_the_catalogue_or_with_an_allow_list(zeros, tmp_path, mode):
    rec, d = zeros
    n = len(rec._run.item_ids) - 1
    seen = _seen(d)
    allow = tmp_path / "allow.csv"
    eight = [str(x) for x in rec._run.item_ids[1:9]]
    allow.write_text("\n".join(eight) + "\n")
    for k, extra, may in ((n, [], set(rec._run.item_ids[1:].tolist())), (8, ["--allow-items", str(allow)], set(eight))):
        out, err = tmp_path / "recs.csv", io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            assert cli(["recommend", "--run", rec.run_dir, "--out", str(out), "--k", str(k), "--mode", mode, *extra]) == 0
        got = pl.read_csv(out, schema_overrides={"item_id": pl.Utf8})
        lists = by_user(got)  # a user with no item left has no row
        assert all(set(lists.get(u, [])) == may - seen[u] for u in seen), k  # every unseen item, no seen one
        assert got["score"].min() > -1e38
        short = sum(len(lists.get(u, [])) < k for u in seen)
        assert short > 0 and f"{short:,} of {len(seen):,} users got fewer than {k} items" in err.getvalue(), err.getvalue()
        assert "their own items (never listed: --exclude-seen)" in err.getvalue()


def test_the_inspect_page_lists_no_seen_item_at_k_the_catalogue(zeros, tmp_path):
    from html.parser import HTMLParser
    rec, d = zeros
    n = len(rec._run.item_ids) - 1
    seen = _seen(d)
    users = list(seen)[:3]
    out = tmp_path / "page.html"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli(["inspect", "--run", rec.run_dir, "--out", str(out), "--k", str(n), "--sample", "0",
                    "--users", ",".join(map(str, users))]) == 0

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.lists, self.user = {}, None

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "div" and "data-user" in a:
                self.user = int(a["data-user"])
                self.lists[self.user] = []
            if tag == "tr" and a.get("class") == "rec":
                self.lists[self.user].append(a["data-item"])

    page = Rows()
    page.feed(out.read_text())
    assert page.lists == {u: by_user(rec.recommend(users=[u], k=n))[u] for u in users}
    assert all(len(page.lists[u]) == n - len(seen[u]) and not set(page.lists[u]) & seen[u] for u in users)
