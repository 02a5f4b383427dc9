import asyncio
import json
import sys

import pytest

from nanorec import cli
from nanorec.config import Config
from nanorec.commands.serve import BodyLimit
from nanorec.data.synthetic import write_csv
from nanorec.core.train import run

NUM_ITEMS = 40


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run folder, data path) of a tiny trained run."""
    d = tmp_path_factory.mktemp("serve")
    data = write_csv(str(d / "log.csv"), num_users=300, num_items=NUM_ITEMS, seed=5)
    cfg = Config(data=data, block_size=8, n_layer=1, n_head=1, n_embd=16, max_steps=30, eval_interval=30,
                 batch_size=16, progress=False)
    run(cfg, str(d / "run"), quiet=True)
    return str(d / "run"), data


@pytest.fixture(scope="module")
def client(trained):
    testclient = pytest.importorskip("fastapi.testclient")
    from nanorec.commands.serve import create_app
    return testclient.TestClient(create_app(*trained))


def test_health(client):
    r = client.get("/health").json()
    assert r["status"] == "ok" and r["users"] == 300 and r["items"] == NUM_ITEMS


def test_known_user_gets_model_list(client):
    r = client.get("/users/0/recommendations", params={"k": 5}).json()
    assert r["known_user"] and r["source"] == "model" and len(set(r["items"])) == 5
    assert r["scores"] == sorted(r["scores"], reverse=True)


def test_history_request(client):
    r = client.post("/recommendations", json={"history": [3, 5, "nope"], "k": 4}).json()
    assert r["source"] == "model" and len(r["items"]) == 4 and len(r["scores"]) == 4
    assert 3 not in r["items"] and 5 not in r["items"]


def test_unknown_items_are_counted_not_echoed(client):
    r = client.post("/recommendations", json={"history": [3, "nope", "also-nope", 10**12, 5], "k": 3})
    assert r.status_code == 200
    assert r.json()["unknown_items"] == 3 and "nope" not in r.text
    assert client.post("/recommendations", json={"history": [3, 5]}).json()["unknown_items"] == 0


def test_popularity_fallback_is_marked_and_has_no_scores(client):
    for r in (client.post("/recommendations", json={"history": ["nope"], "k": 3}).json(),
              client.post("/recommendations", json={"k": 3}).json(),
              client.get("/users/unknown-user/recommendations", params={"k": 3}).json()):
        assert r["source"] == "popularity" and r["scores"] is None and len(r["items"]) == 3
    model = client.post("/recommendations", json={"history": [3], "k": 3}).json()
    assert model["source"] == "model" and len(model["scores"]) == 3


def _chunks(total: int, size: int = 1 << 20):
    """A body without Content-Length (sent chunked): `total` bytes in `size` pieces."""
    for _ in range(total // size):
        yield b" " * size


BIG_HISTORY = json.dumps({"history": list(range(100_000)), "k": 5})  # ~690 KB: under the body cap

# (id, request body as raw text or bytes, expected status)
BAD_BODIES = [
    ("nan-in-history", '{"history": [1, NaN], "k": 5}', 400),
    ("infinity-k", '{"history": [1], "k": Infinity}', 400),
    ("minus-infinity", '{"history": [-Infinity], "k": 5}', 400),
    ("overflowing-float", '{"history": [1e999], "k": 5}', 400),
    ("bools-in-history", '{"history": [true, false], "k": 5}', 422),
    ("bool-k", '{"history": [1], "k": true}', 422),
    ("int-exclude-seen", '{"history": [1], "exclude_seen": 1}', 422),
    ("float-ids", '{"history": [1.0, 2.5], "k": 5}', 422),
    ("float-k", '{"history": [1], "k": 5.0}', 422),
    ("20mb-body", b'{"history": [' + b"1," * 10_000_000 + b"1]}", 413),
    ("100k-history", BIG_HISTORY, 422),
    ("history-string", '{"history": "1,2,3", "k": 5}', 422),
    ("history-object", '{"history": {"1": 2}, "k": 5}', 422),
    ("k-string", '{"history": [1], "k": "10"}', 422),
    ("k-null", '{"history": [1], "k": null}', 422),
    ("k-zero", '{"history": [1], "k": 0}', 422),
    ("k-negative", '{"history": [1], "k": -3}', 422),
    ("k-over-items", '{"history": [1], "k": %d}' % (NUM_ITEMS + 1), 422),
    ("k-huge", '{"history": [1], "k": 1000000000}', 422),
    ("malformed", '{"history": [1,', 400),
    ("empty-body", "", 400),
    ("null-body", "null", 422),
    ("array-body", "[1, 2, 3]", 422),
    ("nested-objects", '{"history": [{"id": 1}, [2]], "k": 5}', 422),
    ("deeply-nested", "[" * 100_000, 400),
    ("unknown-field", '{"histroy": [1], "k": 5}', 422),
    ("int-too-long", '{"history": [' + "9" * 5000 + "]}", 400),
    ("bad-utf8", b'{"history": ["\xff\xfe"]}', 400),
]


@pytest.mark.parametrize("body,status", [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES])
def test_bad_body_is_a_short_client_error(client, body, status):
    r = client.post("/recommendations", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text[:300]
    assert isinstance(r.json()["detail"], str) and len(r.text) < 600  # one short line, no echo of the input
    ok = client.post("/recommendations", json={"history": [3, 5], "k": 4})  # and the server keeps serving
    assert ok.status_code == 200 and len(ok.json()["items"]) == 4


def test_chunked_body_over_the_limit_is_refused(client):
    r = client.post("/recommendations", content=_chunks(20 << 20), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]


@pytest.mark.parametrize("params", [{"k": 0}, {"k": -1}, {"k": 10**9}, {"k": NUM_ITEMS + 1}, {"k": "abc"},
                                    {"k": "nan"}, {"k": "inf"}, {"k": "true"}, {"k": "1.5"}, {"k": ""},
                                    {"exclude_seen": "maybe"}])
def test_bad_query_is_a_short_client_error(client, params):
    r = client.get("/users/0/recommendations", params=params)
    assert r.status_code == 422 and isinstance(r.json()["detail"], str) and len(r.text) < 600
    assert "input" not in r.json()


def test_still_serving_after_every_bad_request(client):
    for _, body, _ in BAD_BODIES:
        client.post("/recommendations", content=body, headers={"content-type": "application/json"})
    r = client.post("/recommendations", json={"history": [3, 5], "k": 7})
    assert r.status_code == 200 and len(r.json()["items"]) == 7 and r.json()["source"] == "model"
    u = client.get("/users/0/recommendations", params={"k": 6, "exclude_seen": "false"})
    assert u.status_code == 200 and len(u.json()["items"]) == 6


def test_body_limit_stops_reading_a_chunked_body_early():
    """At the ASGI level: a 20 MB body without Content-Length is refused after
    about max_bytes, not read (and buffered) to its end."""
    chunk, total, limit = 64 << 10, 20 << 20, 1_000_000
    read, sent, reached_app = [0], [], []

    async def receive():
        read[0] += chunk
        return {"type": "http.request", "body": b"x" * chunk, "more_body": read[0] < total}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        reached_app.append(True)

    scope = {"type": "http", "method": "POST", "path": "/recommendations", "headers": []}
    asyncio.run(BodyLimit(app, limit)(scope, receive, send))
    assert sent[0]["status"] == 413 and not reached_app
    assert read[0] <= limit + chunk


def test_body_limit_refuses_a_declared_length_without_reading():
    async def receive():
        raise AssertionError("the body must not be read")

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"20000000")]}
    asyncio.run(BodyLimit(None, 1_000_000)(scope, receive, send))
    assert sent[0]["status"] == 413


# -----------------------------------------------------------------------------
# the command line

@pytest.mark.parametrize("module", ["fastapi", "uvicorn"])
def test_missing_serve_extra_is_one_line(trained, monkeypatch, capsys, module):
    monkeypatch.setitem(sys.modules, module, None)  # `import fastapi` now raises ImportError
    rc = cli.main(["serve", "--run", trained[0], "--data", trained[1]])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "serve extra" in err[0]


@pytest.mark.parametrize("option,value", [("--port", "99999"), ("--port", "0"), ("--port", "-1"), ("--host", ""),
                                          ("--max-history", "0"), ("--max-body-bytes", "-5")])
def test_bad_option_is_one_line(capsys, option, value):
    rc = cli.main(["serve", "--run", "nowhere", "--data", "nothing.csv", f"{option}={value}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and option in err[0]


@pytest.mark.parametrize("which", ["run", "data"])
def test_bad_run_or_data_is_one_line(trained, tmp_path, capsys, which):
    pytest.importorskip("fastapi")
    paths = {"run": trained[0], "data": trained[1], which: str(tmp_path / "missing")}
    rc = cli.main(["serve", "--run", paths["run"], "--data", paths["data"], "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "missing" in err[0]


def test_data_with_none_of_the_runs_items_is_refused(trained, tmp_path, capsys):
    pytest.importorskip("fastapi")
    other = tmp_path / "other.csv"
    other.write_text("user_id,item_id,timestamp\nu1,zz1,1\nu1,zz2,2\n")
    rc = cli.main(["serve", "--run", trained[0], "--data", str(other), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "vocabulary" in err[0]


# -----------------------------------------------------------------------------
# content type and short bodies

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "text/plain; charset=utf-8"])
def test_non_json_content_type_is_415(client, content_type):
    r = client.post("/recommendations", content='{"history": [3, 5], "k": 4}', headers={"content-type": content_type})
    assert r.status_code == 415 and "application/json" in r.json()["detail"] and len(r.text) < 300


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8", "application/merge-patch+json"])
def test_json_or_undeclared_content_type_is_read(client, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    r = client.post("/recommendations", content='{"history": [3, 5], "k": 4}', headers=headers)
    assert r.status_code == 200 and len(r.json()["items"]) == 4


def test_body_limit_answers_a_short_body_instead_of_waiting():
    """A client that declares 100 bytes, sends 10 and then nothing: 400 once the
    deadline passes, and the app never sees the half body."""
    sent, reached_app, calls = [], [], [0]

    async def receive():
        calls[0] += 1
        if calls[0] == 1:
            return {"type": "http.request", "body": b"x" * 10, "more_body": True}
        await asyncio.Event().wait()  # the rest never comes

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        reached_app.append(True)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"100")]}
    asyncio.run(BodyLimit(app, 1_000_000, seconds=0.2)(scope, receive, send))
    assert sent[0]["status"] == 400 and not reached_app
    assert (b"connection", b"close") in sent[0]["headers"]
    assert "10 bytes of the 100 declared" in json.loads(sent[1]["body"])["detail"]


def test_real_server_closes_a_connection_whose_body_is_short(trained):
    """Over a real socket (uvicorn): Content-Length 100 with 10 bytes sent gets a
    400 and a closed connection, not a connection held open."""
    pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    import socket
    import threading

    from nanorec.commands.serve import create_app
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(*trained, body_seconds=0.5), log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):  # until it listens
            if server.started:
                break
            threading.Event().wait(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n" + b'{"history"')
            answer = b""
            while chunk := s.recv(4096):  # ends when the server closes the connection
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400") and b"incomplete" in answer
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def test_openapi_version_is_the_package_version_and_no_cdn_docs(client):
    import os
    import re

    import nanorec
    with open(os.path.join(os.path.dirname(nanorec.__file__), "..", "pyproject.toml")) as f:
        packaged = re.search(r'^version = "(.+)"', f.read(), re.M).group(1)  # tomllib needs Python 3.11
    schema = client.get("/openapi.json").json()
    assert schema["info"]["version"] == nanorec.__version__ == packaged
    assert "/recommendations" in schema["paths"]
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
