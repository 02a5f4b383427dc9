"""`nanorec inspect`: the page holds the asked users' histories and the lists the run ships, the
fused terms add up to the scores, and headless Chromium renders it (skipped where it is absent)."""
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from nanorec.cli import main
from nanorec.config import Config
from nanorec.train import run


class Page(HTMLParser):
    """users -> {"history": [item ids], "list": [item ids]}, and each list row's numbers."""

    def __init__(self):
        super().__init__()
        self.users, self.user, self.rows, self.row, self.cell, self.in_td = {}, None, [], None, "", False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-user" in a:
            self.user = a["data-user"]
            self.users[self.user] = {"history": [], "list": []}
        elif tag == "li" and "data-item" in a:
            self.users[self.user]["history"].append(a["data-item"])
        elif tag == "tr" and "data-item" in a:
            self.users[self.user]["list"].append(a["data-item"])
            self.row = []
            self.rows.append(self.row)
        elif tag == "td" and self.row is not None:
            self.in_td, self.cell = True, ""

    def handle_endtag(self, tag):
        if tag == "td" and self.in_td:
            self.row.append(self.cell.strip())
            self.in_td = False
        elif tag == "tr":
            self.row = None

    def handle_data(self, data):
        if self.in_td:
            self.cell += data


@pytest.fixture(scope="module")
def fused_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inspect")
    from nanorec.synthetic import write_csv
    data = write_csv(str(tmp / "log.csv"), num_users=300, num_items=40, seed=3)
    cfg = Config(data=data, max_steps=30, eval_interval=15, checkpoint_interval=15, batch_size=8, block_size=16,
                 n_embd=16, n_layer=1, n_head=1, warmup_steps=2, fusion_weights="0.5,0.3", progress=False).validate()
    run(cfg, str(tmp / "run"), quiet=True)
    catalog = tmp / "catalog.csv"
    catalog.write_text("item_id,title,image_url\n" + "".join(
        f"{i},Thing <{i}> & co,https://example.com/{i}.jpg\n" for i in range(40)))
    return tmp, str(tmp / "run"), str(catalog)


def test_page_holds_the_histories_and_the_shipped_lists(fused_run):
    tmp, run_dir, catalog = fused_run
    out = str(tmp / "page.html")
    assert main(["inspect", "--run", run_dir, "--items", catalog, "--users", "7,42", "--sample", "2", "--out", out]) == 0
    text = open(out).read()
    page = Page()
    page.feed(text)
    assert list(page.users)[:2] == ["7", "42"] and len(page.users) == 4
    from nanorec import Recommender
    from nanorec.rundir import read_histories
    rec = Recommender.load(run_dir)
    user_ids, hist = read_histories(run_dir)
    items = json.load(open(os.path.join(run_dir, "items.json")))
    for u, shown in page.users.items():
        row = [str(x) for x in user_ids.tolist()].index(u)
        assert shown["history"] == [str(items[i]) for i in hist[row]][-20:]
        top = rec.recommend(users=[int(u)], k=10)
        assert shown["list"] == [str(x) for x in top["item_id"].to_list()]
    assert "&gt; &amp; co" in text and "> & co" not in text  # titles shown, escaped
    assert "<script" not in text and "https://example.com/" in text
    # each row: rank, item, score, GPT logit, transitions, co-occurrence, lifted by; the score is the terms' sum
    for r in page.rows:
        score, gpt, w1, w2 = (float(x) for x in r[2:6])
        assert score == pytest.approx(gpt + w1 + w2, abs=2e-3)
        assert r[6] in ("GPT logit", "transitions", "co-occurrence")
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert f"{metrics['test']['NDCG@10']:.4f}" in text and f"{metrics['beyond']['coverage@10']:.4f}" in text
    assert "data:image/png;base64," in text  # curves.png inline


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium not installed")
def test_chromium_renders_it(fused_run, tmp_path):
    from PIL import Image
    _, run_dir, catalog = fused_run
    out = tmp_path / "page.html"
    assert main(["inspect", "--run", run_dir, "--items", catalog, "--sample", "3", "--out", str(out)]) == 0
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1280,1600", out.as_uri()], capture_output=True, timeout=120)
    img = Image.open(shot).convert("L")
    lo, hi = img.getextrema()
    assert img.size == (1280, 1600) and hi - lo > 100  # not blank: text on a light background
    assert len(img.getcolors(maxcolors=100000) or []) > 20


@pytest.mark.parametrize("args,message", [
    (["--users", "nobody"], "user 'nobody' is not in the run's histories"),
    (["--items", "MISSING.csv"], "no such file"),
    (["--items", "BAD.csv"], "missing column 'title'"),
    (["--k", "0"], "--k 0: must be in 1..1000"),
])
def test_bad_input_is_one_line_and_writes_nothing(fused_run, tmp_path, capsys, args, message):
    _, run_dir, _ = fused_run
    (tmp_path / "BAD.csv").write_text("item_id,name\n1,x\n")
    args = [str(tmp_path / a) if a.endswith(".csv") else a for a in args]
    out = tmp_path / "page.html"
    assert main(["inspect", "--run", run_dir, "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()
