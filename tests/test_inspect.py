"""`nanorec inspect`: the page holds the asked users' histories and the lists the run ships, the
fused terms add up to the scores, each event shows the type and time the log gives it, viewed and
new items are marked, the catalogue's columns are shown, bad inputs are one line, and headless
Chromium renders it (styled, the search box working); Chromium is skipped where it is absent
(CI installs it: .ci/run)."""
import csv
import datetime
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from nanorec.cli import main
from nanorec.config import Config
from nanorec.core.train import run

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


class Page(HTMLParser):
    """users -> {"history": [row], "list": [row], "hidden": bool}; a row: {"item": its data-item,
    "cells": [each cell's text], "tags": [each cell's tag texts]}."""

    def __init__(self):
        super().__init__()
        self.users, self.user, self.row, self.in_tag = {}, None, None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-user" in a:
            self.user = self.users[a["data-user"]] = {"history": [], "list": [], "hidden": "hidden" in a}
        elif tag == "tr" and a.get("class") in ("ev", "rec"):
            self.row = {"item": a["data-item"], "cells": [], "tags": []}
            self.user["history" if a["class"] == "ev" else "list"].append(self.row)
        elif tag == "td" and self.row is not None:
            self.row["cells"].append("")
            self.row["tags"].append([])
        elif tag == "br" and self.row is not None and self.row["cells"]:
            self.row["cells"][-1] += " "
        elif tag == "span" and self.row is not None and "tag" in (a.get("class") or "").split():
            self.row["tags"][-1].append("")
            self.in_tag = True

    def handle_endtag(self, tag):
        if tag == "tr":
            self.row = None
        elif tag == "span":
            self.in_tag = False

    def handle_data(self, data):
        if self.row is not None and self.row["cells"]:
            self.row["cells"][-1] += data
            if self.in_tag:
                self.row["tags"][-1][-1] += data


def parse(path) -> Page:
    page = Page()
    page.feed(open(path, encoding="utf-8").read())
    return page


def tags(row) -> list[str]:
    return [t for cell in row["tags"] for t in cell]


def inspect(*args) -> int:
    return main(["inspect", *map(str, args)])


@pytest.fixture(scope="module")
def fused_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inspect")
    from nanorec.data.synthetic import write_csv
    data = write_csv(str(tmp / "log.csv"), num_users=300, num_items=40, seed=3)
    cfg = Config(data=data, max_steps=30, eval_interval=15, checkpoint_interval=15, batch_size=8, block_size=16,
                 n_embd=16, n_layer=1, n_head=1, warmup_steps=2, fusion_weights="0.5,0.3", progress=False,
                 exclude_seen="true").validate()  # the log re-buys; the pages below show excluding lists
    run(cfg, str(tmp / "run"), quiet=True)
    catalog = tmp / "catalog.csv"
    catalog.write_text("item_id,title,image_url,category,price\n" + "".join(
        f"{i},Thing <{i}> & co,https://example.com/{i}.jpg,{('shoes', 'hats')[i % 2]},{i + 0.5:.2f}\n"
        for i in range(40)))
    return tmp, str(tmp / "run"), str(catalog)


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory):
    """A small shop log (views, carts, purchases; Unix-millisecond times) and a run that predicts the
    purchases with the rest as context (target_filter); the log's events per user, read with csv."""
    tmp = tmp_path_factory.mktemp("shop")
    log = str(tmp / "shop.csv")
    assert main(["synth", "--out", log, "--rows", "1500", "--event-types", "view,cart,purchase", "--seed", "1"]) == 0
    cfg = Config(data=log, target_filter="event_type=purchase", max_steps=20, eval_interval=20, batch_size=8,
                 block_size=16, n_embd=16, n_layer=1, n_head=1, warmup_steps=2, progress=False,
                 exclude_seen="true").validate()  # the log re-buys; these pages are about which events are seen
    run(cfg, str(tmp / "run"), quiet=True)
    events = {}  # user -> [(item, event_type, timestamp)] in time order (ties in file order), read independently
    with open(log) as f:
        for r in csv.DictReader(f):
            events.setdefault(r["user_id"], []).append((r["item_id"], r["event_type"], int(r["timestamp"])))
    for u in events:
        events[u].sort(key=lambda e: e[2])
    return tmp, str(tmp / "run"), log, events


def test_page_holds_the_histories_and_the_shipped_lists(fused_run):
    tmp, run_dir, catalog = fused_run
    out = str(tmp / "page.html")
    assert inspect("--run", run_dir, "--items", catalog, "--users", "7,42", "--sample", "2", "--out", out) == 0
    text = open(out).read()
    page = parse(out)
    assert list(page.users)[:2] == ["7", "42"] and len(page.users) == 4
    from nanorec import Recommender
    from nanorec.runs.rundir import read_histories
    rec = Recommender.load(run_dir)
    user_ids, hist = read_histories(run_dir)
    items = json.load(open(os.path.join(run_dir, "items.json")))
    for u, shown in page.users.items():
        row = [str(x) for x in user_ids.tolist()].index(u)
        assert [r["item"] for r in shown["history"]] == [str(items[i]) for i in hist[row]][-20:]
        top = rec.recommend(users=[int(u)], k=10)
        assert [r["item"] for r in shown["list"]] == [str(x) for x in top["item_id"].to_list()]
        for r in shown["history"] + shown["list"]:  # the catalogue's other columns, beside the title
            i = int(r["item"])
            assert f" category {('shoes', 'hats')[i % 2]} · price {i + 0.5:.2f}" in r["cells"][1]
    assert "&gt; &amp; co" in text and "> & co" not in text  # titles shown, escaped
    assert "<script src" not in text and text.count("<script>") == 1 and "https://example.com/" in text
    assert "40 of the 40 items of the run" in text
    # each row: rank, item, score, GPT logit, transitions, co-occurrence, lifted by; the score is the terms' sum
    rows = [r["cells"] for shown in page.users.values() for r in shown["list"]]
    for r in rows:
        score, gpt, w1, w2 = (float(x) for x in r[2:6])
        assert score == pytest.approx(gpt + w1 + w2, abs=2e-3)
        assert r[6] in ("GPT logit", "transitions", "co-occurrence")
    for term in ("GPT logit", "transitions", "co-occurrence", "lifted most by"):  # the legend names each column
        assert f"<dt>{term}</dt>" in text
    assert "<dt>content</dt>" not in text  # no content term, no legend line for it
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert f"{metrics['test']['NDCG@10']:.4f}" in text and f"{metrics['beyond']['coverage@10']:.4f}" in text
    assert "data:image/png;base64," in text  # curves.png inline


def test_events_show_the_logs_type_and_time(shop_run):
    tmp, run_dir, log, events = shop_run
    out = tmp / "typed.html"
    assert inspect("--run", run_dir, "--data", log, "--sample", "6", "--out", out) == 0
    page = parse(out)
    assert len(page.users) == 6
    for u, shown in page.users.items():
        expected = events[u][-20:]
        assert [r["item"] for r in shown["history"]] == [e[0] for e in expected]
        assert [r["cells"][2] for r in shown["history"]] == [e[1] for e in expected]  # the event type
        when = [(datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=e[2])).strftime("%Y-%m-%d %H:%M:%S")
                for e in expected]
        assert [r["cells"][3] for r in shown["history"]] == when
    assert "read as Unix milliseconds" in open(out).read()
    own = tmp / "own.html"  # the run's own histories: the same lists (the log's events keep their target flags)
    assert inspect("--run", run_dir, "--users", ",".join(page.users), "--out", own) == 0
    assert {u: [r["item"] for r in v["list"]] for u, v in parse(own).users.items()} == \
        {u: [r["item"] for r in v["list"]] for u, v in page.users.items()}


def test_a_log_from_a_pipe_is_read_once_and_gives_the_same_page(shop_run):
    """inspect --data <(cat shop.csv): the log is read once (a FIFO read a second time waits for a writer
    that has gone; the page read it three times), and the page equals the file's, types and times included."""
    import threading
    tmp, run_dir, log, events = shop_run
    from_file, from_fifo = tmp / "file.html", tmp / "fifo.html"
    assert inspect("--run", run_dir, "--data", log, "--sample", "4", "--out", from_file) == 0
    fifo = str(tmp / "log.fifo")
    os.mkfifo(fifo)
    threading.Thread(target=lambda: open(fifo, "wb").write(open(log, "rb").read()), daemon=True).start()
    done = []
    worker = threading.Thread(target=lambda: done.append(
        inspect("--run", run_dir, "--data", fifo, "--sample", "4", "--out", from_fifo)), daemon=True)
    worker.start()
    worker.join(120)  # a bound on a hang, not a timing
    if worker.is_alive():  # unblock the second open, so that the test ends
        threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True).start()
    assert done == [0], "inspect waited on the FIFO for a second read"
    file_page, fifo_page = parse(from_file), parse(from_fifo)
    assert fifo_page.users == file_page.users and len(file_page.users) == 4


def test_viewed_items_are_marked_and_targets_are_said(shop_run):
    tmp, run_dir, _, events = shop_run
    out = tmp / "viewed.html"
    assert inspect("--run", run_dir, "--sample", "30", "--k", "20", "--out", out) == 0  # the run's own histories
    page = parse(out)
    marked = 0
    for u, shown in page.users.items():
        bought = {i for i, t, _ in events[u] if t == "purchase"}
        viewed = {i for i, t, _ in events[u] if t != "purchase"} - bought
        assert [r["cells"][2] for r in shown["history"]] == \
            ["purchase" if t == "purchase" else "context" for _, t, _ in events[u][-20:]]
        assert [r["cells"][3] for r in shown["history"]] == [  # the run folder keeps the times
            (datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ts)).strftime("%Y-%m-%d %H:%M:%S")
            for _, _, ts in events[u][-20:]]
        for r in shown["list"]:
            assert r["item"] not in bought  # exclude_seen removes the purchases only
            assert ("viewed" in tags(r)) == (r["item"] in viewed)
            marked += "viewed" in tags(r)
    assert marked > 0  # views are context: some viewed items are listed


def test_new_items_of_an_update_are_marked(fused_run):
    tmp, run_dir, catalog = fused_run
    import polars as pl
    t = pl.read_csv(os.path.join(tmp, "log.csv"))["timestamp"].max()
    new = tmp / "new.csv"
    new.write_text("user_id,item_id,timestamp\n" + f"7,1000,{t + 1}\n7,3,{t + 2}\n42,1001,{t + 3}\n42,5,{t + 4}\n")
    run2 = str(tmp / "run2")
    assert main(["update", "--run", run_dir, "--data", str(new), "--out", run2, "--quiet", "max_steps=2"]) == 0
    out = tmp / "updated.html"
    assert inspect("--run", run2, "--items", catalog, "--users", "7,42", "--k", "40", "--out", out) == 0
    page, text = parse(out), open(out).read()
    assert "2 new items" in text and "40 of the 42 items of the run" in text
    shown_new = {}
    for u, shown in page.users.items():
        for part in ("history", "list"):
            for r in shown[part]:
                assert ("new" in tags(r)) == (r["item"] in ("1000", "1001"))
                shown_new.setdefault(part, set()).update({r["item"]} & {"1000", "1001"})
    assert shown_new == {"history": {"1000", "1001"}, "list": {"1000", "1001"}}  # 7 is listed 1001, 42 1000
    assert "items left once the user's own are excluded" in text
    assert all(float(r["cells"][2]) > -1e30 for v in page.users.values() for r in v["list"])  # no seen fillers  # k=40 > the unseen items: the list is shorter, and says so


def test_no_curves_section_without_a_curve(fused_run, tmp_path):
    _, run_dir, _ = fused_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for content in (None, b""):  # no curves.png; an empty one
        if content is None:
            os.remove(copy / "curves.png")
        else:
            (copy / "curves.png").write_bytes(content)
        assert inspect("--run", copy, "--sample", "1", "--out", tmp_path / "page.html") == 0
        assert "Training curves" not in (tmp_path / "page.html").read_text()


@pytest.mark.parametrize("args,message", [
    (["--users", "nobody"], "user 'nobody' is not in the run's histories"),
    (["--items", "MISSING.csv"], "no such file"),
    (["--items", "BAD.csv"], "expected item_id and at least one more column"),
    (["--items", "OTHER.csv"], "none of its 2 item ids is an item of the run"),
    (["--k", "0"], "--k 0: must be in 1..1000"),
])
def test_bad_input_is_one_line_and_writes_nothing(fused_run, tmp_path, capsys, args, message):
    _, run_dir, _ = fused_run
    (tmp_path / "BAD.csv").write_text("id,name\n1,x\n")
    (tmp_path / "OTHER.csv").write_text("item_id,title\nSKU-1,x\nSKU-2,y\n")  # another shop's catalogue
    args = [str(tmp_path / a) if a.endswith(".csv") else a for a in args]
    out = tmp_path / "page.html"
    assert inspect("--run", run_dir, "--out", out, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


@pytest.mark.parametrize("content,message", [
    ("{\"test\": {", "metrics.json:1: not valid JSON"),
    ("[1, 2]", "metrics.json: expected a JSON object of metrics"),
    ('{"update": {"new_items": "two"}}', "\"new_items\" is 'two'"),
])
def test_a_damaged_metrics_json_is_one_line(fused_run, tmp_path, capsys, content, message):
    _, run_dir, _ = fused_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "metrics.json").write_text(content)
    assert inspect("--run", copy, "--sample", "1", "--out", tmp_path / "page.html") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "page.html").exists()


def chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    """Headless Chromium as CI runs it (root: no sandbox; a container's small /dev/shm), its own profile."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           f"--user-data-dir={tmp_path / 'profile'}", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.subprocess
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_chromium_renders_it(shop_run, tmp_path):
    from PIL import Image
    _, run_dir, log, _ = shop_run
    out = tmp_path / "page.html"
    assert inspect("--run", run_dir, "--data", log, "--sample", "3", "--out", out) == 0
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", out.as_uri())
    img = Image.open(shot).convert("RGB")
    lo, hi = img.convert("L").getextrema()
    assert img.size == (1280, 1600) and hi - lo > 100  # not blank: text on a light background
    assert len(img.getcolors(maxcolors=100000) or []) > 20
    colours = {c for _, c in img.getcolors(maxcolors=100000)}
    assert (0xd9, 0xf2, 0xdd) in colours and (0xf1, 0xf1, 0xf1) in colours  # purchase and view tags, styled
    dom = chromium(tmp_path, "--dump-dom", out.as_uri()).stdout
    page = Page()
    page.feed(dom)
    assert len(page.users) == 3 and all(len(u["list"]) == 10 and u["history"] for u in page.users.values())


@pytest.mark.subprocess
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_the_search_box_finds_a_user(shop_run, tmp_path):
    _, run_dir, _, _ = shop_run
    out = tmp_path / "page.html"
    assert inspect("--run", run_dir, "--sample", "12", "--out", out) == 0
    users = list(parse(out).users)
    query = users[5]
    dom = chromium(tmp_path, "--dump-dom", f"{out.as_uri()}#find={query}").stdout  # the page's script has run
    page = Page()
    page.feed(dom)
    shown = [u for u, v in page.users.items() if not v["hidden"]]
    assert shown == [u for u in users if query in u] and query in shown and len(shown) < len(users)
    assert f"{len(shown)} of {len(users)} users" in dom
