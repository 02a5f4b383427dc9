import json
import os

import numpy as np

from nanorec.cli import main
from nanorec.commands.leaderboard import SHIPPED_COLOR, bars
from nanorec.data.synthetic import generate


def write_s3rec(folder):
    """An S3-Rec-style .txt (ids from 1) with a sibling attributes json."""
    users, items, _ = generate(num_users=400, num_items=60, seed=2, p_two=0.0, max_len=8)
    lines = []
    for u in np.unique(users):
        lines.append(" ".join(str(x) for x in [u + 1, *(items[users == u] + 1)]))
    path = os.path.join(folder, "Toy.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    attrs = {str(i): rng.choice(12, size=3, replace=False).tolist() for i in range(1, 61)}
    with open(os.path.join(folder, "Toy_item2attributes.json"), "w") as f:
        json.dump(attrs, f)
    return path


def test_leaderboard_end_to_end(tmp_path):
    data = write_s3rec(str(tmp_path))
    out = str(tmp_path / "lb")
    methods = ("popularity,popularity_published,transitions,gpt_packed,gpt_generative,gpt_content_decay,gpt_fused,"
               "gpt_all_data")
    code = main(["leaderboard", "--data", data, "--out", out, "--methods", methods,
                 "max_steps=60", "eval_interval=20", "n_embd=16", "n_layer=1", "block_size=8", "batch_size=16"])
    assert code == 0
    board = json.load(open(os.path.join(out, "leaderboard.json")))
    rows = {r["method"]: r for r in board["rows"]}
    assert set(rows) == set(methods.split(","))
    # one popularity: the leaderboard's row is `nanorec train method=popularity` (the training split's
    # counts), figure for figure; the leaky published variant is named as such
    pop_run = str(tmp_path / "pop")
    assert main(["train", "--data", data, "--out", pop_run, "--quiet", "method=popularity",
                 "exclude_seen=true"]) == 0  # the leaderboard's protocol: history excluded
    shipped = json.load(open(os.path.join(pop_run, "metrics.json")))
    for split in ("valid", "test"):
        assert rows["popularity"][split] == {k: v for k, v in shipped[split].items() if "@" in k}
    # beyond-accuracy columns for every method; the popularity row's equal the shipped run's metrics.json
    assert all("coverage@10" in r["beyond"] and "novelty@10" in r["beyond"] and "avg_pop@10" in r["beyond"]
               for r in rows.values())
    assert {k: v for k, v in rows["popularity"]["beyond"].items() if "@" in k} == \
        {k: v for k, v in shipped["beyond"].items() if "@" in k}
    assert rows["popularity_published"]["label"].startswith("popularity_published")
    assert rows["popularity_published"]["valid"] is None  # it counted the targets: nothing to validate
    # a finished GPT row scores as `nanorec evaluate` scores its run folder (Run.open)
    ev = str(tmp_path / "packed.json")
    assert main(["evaluate", "--run", rows["gpt_packed"]["run"], "--data", data, "--json", ev]) == 0
    assert json.load(open(ev))["NDCG@10"] == rows["gpt_packed"]["test"]["NDCG@10"]
    # the shipped (fused) model has its row and its bar, with the figure of its run's metrics.json and of
    # `nanorec evaluate` (the fused scorer Run.open builds), drawn apart from the GPT-alone rows
    fused = rows["gpt_fused"]
    shipped_fused = json.load(open(os.path.join(fused["run"], "metrics.json")))
    assert any(shipped_fused["fusion"]["weights"].values())  # fused indeed: a weight was chosen on validation
    assert fused["test"]["NDCG@10"] == shipped_fused["test"]["NDCG@10"]
    assert main(["evaluate", "--run", fused["run"], "--data", data, "--json", ev]) == 0
    assert json.load(open(ev))["NDCG@10"] == fused["test"]["NDCG@10"]
    drawn = bars(board["rows"])
    assert [b for b in drawn if b[2] == SHIPPED_COLOR] == [(fused["label"], shipped_fused["test"]["NDCG@10"],
                                                             SHIPPED_COLOR)]
    assert [b[0] for b in drawn].index(fused["label"]) == [b[0] for b in drawn].index(
        rows["gpt_content_decay"]["label"]) + 1  # beside the GPT alone it fuses
    assert f"| {fused['label']} | {fused['test']['HR@10']:.4f} | {fused['test']['NDCG@10']:.4f} |" in \
        open(os.path.join(out, "leaderboard.md")).read()
    # all-data replays the selected run's schedule up to its chosen step
    chosen = rows["gpt_content_decay"]
    assert rows["gpt_all_data"]["config"]["max_steps"] == chosen["best_step"]
    assert rows["gpt_all_data"]["config"]["decay_steps"] == 60
    assert rows["gpt_all_data"]["config"]["all_data"] is True
    # the synthetic log is driven by item-to-item transitions: that baseline must beat popularity
    assert rows["transitions"]["test"]["NDCG@10"] > 2 * rows["popularity"]["test"]["NDCG@10"]
    assert os.path.exists(os.path.join(out, "leaderboard.md")) and os.path.exists(os.path.join(out, "leaderboard.png"))
