"""`nanorec evaluate` reproduces training's numbers; generative lists with --include-seen may repeat a purchase."""
import contextlib
import io
import json
import os

import numpy as np
import polars as pl
import pytest
import torch

from nanorec.cli import main as cli_main
from nanorec.data import Sequences, load
from nanorec.scoring.scorer import generate
from nanorec.data.synthetic import write_csv

TINY = ["max_steps=4", "eval_interval=2", "n_embd=16", "n_layer=1", "n_head=1", "progress=false",
        "warmup_steps=1", "batch_size=8", "block_size=8", "threads=1", "dropout=0.1", "device=cpu"]
METRICS = [f"{m}@{k}" for k in (5, 10, 20) for m in ("HR", "NDCG", "MRR", "MAP")]


def cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(argv)
    assert code == 0, err.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_eval")
    data = write_csv(str(root / "log.csv"), num_users=80, num_items=30, seed=7)
    run = str(root / "run")
    cli(["train", "--data", data, "--out", run, "--quiet", *TINY])
    return data, run, root


def test_evaluate_reproduces_metrics_json(trained):
    data, run, root = trained
    out = str(root / "test_metrics.json")
    printed = cli(["evaluate", "--run", run, "--data", data, "--split", "test", "--device", "cpu", "--json", out])
    saved = json.load(open(os.path.join(run, "metrics.json")))
    allowed = saved["exclude_seen"]["choice"] == "allow"  # the log has re-buys: the run may list them (seen.py)
    saved = saved["test"]
    got = json.load(open(out))
    assert got["split"] == "test" and got["mode"] == "oneshot" and got["exclude_seen"] is not allowed
    for key in METRICS:
        assert got[key] == saved[key], (key, got[key], saved[key])
    assert f"NDCG@10 {saved['NDCG@10']:.4f}" in printed or f"{saved['NDCG@10']:.4f}" in printed


def test_evaluate_valid_split_reproduces_metrics_json(trained):
    data, run, root = trained
    out = str(root / "valid_metrics.json")
    cli(["evaluate", "--run", run, "--data", data, "--split", "valid", "--device", "cpu", "--json", out])
    saved = json.load(open(os.path.join(run, "metrics.json")))["valid"]
    got = json.load(open(out))
    for key in METRICS:
        assert got[key] == saved[key], (key, got[key], saved[key])


def test_generate_include_seen_can_return_history_items():
    """A scorer that strongly prefers item 3, which is in the history: kept with
    exclude_seen=False, never chosen with exclude_seen=True."""
    num_items = 10
    hist = Sequences.from_lists([[3, 5], [1, 3, 7]])

    def scorer(histories, users=None):
        scores = torch.zeros(len(histories), num_items + 1)
        scores[:, 1:] = torch.arange(num_items, 0, -1, dtype=torch.float32) * 0.01  # a mild order
        scores[:, 3] = 100.0  # the history item, far ahead
        return scores

    items, _ = generate(scorer, hist, None, k=4, exclude_seen=False)
    assert (items[:, 0] == 3).all(), items  # first pick: the seen item
    items, _ = generate(scorer, hist, None, k=4, exclude_seen=True)
    for row, seen in zip(items.tolist(), hist.to_lists()):
        assert not set(row) & set(seen), (row, seen)
        assert len(set(row)) == len(row)  # never repeated within a list


def test_recommend_generative_include_seen(trained):
    data, run, root = trained
    ds = load(data)
    seen = {u: set(ds.item_ids[ds.sequences[r]].tolist()) for r, u in enumerate(ds.user_ids.tolist())}
    k = 12  # 30 items; no history here has more than 30 - 12 items, so an unseen list always fits

    def lists(*flags):
        out = str(root / f"recs{'_'.join(flags)}.csv")
        cli(["recommend", "--run", run, "--data", data, "--out", out, "--mode", "generative", "--k", str(k),
             "--device", "cpu", "--format", "long", *flags])
        df = pl.read_csv(out)
        assert df.height == len(ds.user_ids) * k
        return {u: g.sort("rank")["item_id"].to_list() for (u,), g in df.group_by("user_id")}

    excluded = lists("--exclude-seen")
    assert max(len(s) for s in seen.values()) <= ds.num_items - k
    assert all(not set(items) & seen[u] for u, items in excluded.items())
    included = lists("--include-seen")
    repeats = sum(bool(set(items) & seen[u]) for u, items in included.items())
    assert repeats > 0, "no list repeats a purchase with --include-seen"
    assert all(len(set(items)) == k for items in included.values())  # still no item twice in one list


@pytest.mark.parametrize("edit, mentions", [
    ("swap_items", ("items.json", "differ from the ones the run was trained on")),
    ("drop_item", ("items.json", "but the run was trained on")),
    ("drop_config_key", ("config.json", "'dropout'", "missing")),
])
def test_an_edited_run_is_refused_before_scoring(trained, tmp_path, edit, mentions):
    """Run.open checks items.json against data.json (a swapped or removed id would put every
    score on the wrong item) and config.json's keys (a missing one is not today's default)."""
    import shutil
    data, run, _ = trained
    copy = str(tmp_path / "run")
    shutil.copytree(run, copy)
    if edit == "drop_config_key":
        path = os.path.join(copy, "config.json")
        cfg = json.load(open(path))
        del cfg["dropout"]
    else:
        path = os.path.join(copy, "items.json")
        cfg = json.load(open(path))
        if edit == "swap_items":
            cfg[1], cfg[2] = cfg[2], cfg[1]
        else:
            cfg.pop()
    json.dump(cfg, open(path, "w"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["evaluate", "--run", copy, "--data", data, "--json", str(tmp_path / "m.json")])
    lines = [x for x in err.getvalue().splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and path in lines[0], lines
    assert all(m in lines[0] for m in mentions), lines[0]
    assert not os.path.exists(tmp_path / "m.json")
