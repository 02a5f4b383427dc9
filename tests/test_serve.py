import pytest

from nanorec.config import Config
from nanorec.synthetic import write_csv
from nanorec.train import run

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from nanorec.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    data = write_csv(str(d / "log.csv"), num_users=300, num_items=40, seed=5)
    cfg = Config(data=data, block_size=8, n_layer=1, n_head=1, n_embd=16, max_steps=30, eval_interval=30,
                 batch_size=16, progress=False)
    run(cfg, str(d / "run"), quiet=True)
    return TestClient(create_app(str(d / "run"), data))


def test_health(client):
    r = client.get("/health").json()
    assert r["status"] == "ok" and r["users"] == 300


def test_known_user_gets_model_list(client):
    r = client.get("/users/0/recommendations", params={"k": 5}).json()
    assert r["known_user"] and r["source"] == "model" and len(set(r["items"])) == 5
    assert r["scores"] == sorted(r["scores"], reverse=True)


def test_history_request_and_cold_start(client):
    r = client.post("/recommendations", json={"history": [3, 5, "nope"], "k": 4}).json()
    assert r["source"] == "model" and r["unknown_items"] == ["nope"]
    assert 3 not in r["items"] and 5 not in r["items"]
    cold = client.post("/recommendations", json={"history": ["nope"], "k": 3}).json()
    assert cold["source"] == "popularity" and len(cold["items"]) == 3
    assert client.get("/users/unknown-user/recommendations").json()["source"] == "popularity"


def test_bad_k_is_a_client_error(client):
    assert client.post("/recommendations", json={"history": [1], "k": 0}).status_code == 422
    assert client.get("/users/0/recommendations", params={"k": 10_000}).status_code == 422
