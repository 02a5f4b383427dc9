"""holdout=time: one global split time; multi-target test metrics; cold users apart; no leak.

The fixture below is small enough to split and score by hand (see the comments); the leak test is
behavioural, like tests/test_no_leak.py: two logs that differ only at or after the split time must
train identically, and a control shows the same comparison sees a change before it.
"""
import json
import math
import os

import numpy as np
import pytest
import torch

from nanorec.config import Config
from nanorec.data import Sequences, load, split_like, time_split
from nanorec.errors import DataError, UsageError
from nanorec.evaluation.metrics import metrics_from_ranks, set_metrics
from nanorec.core.train import run

# user, item, day of January 2024. Split at 2024-01-10 (day 10 is in the test window).
#   u1: 01 i1, 02 i2, 08 i3 | 11 i4, 12 i2    test targets {i4, i2} (i2 bought again still counts)
#   u2: 03 i2, 09 i3        | 10 i1           test targets {i1}; day 09 is in the validation window
#   u3: 04 i1, 05 i2, 06 i3                   nothing after the split: not a test user
#   u4:                     | 11 i1, 12 i3    cold: no event before the split
#   u5: 02 i3, 07 i1        | 13 i4, 14 i4    test targets {i4}
# 10 events before the split; the validation window is their last 10% (a date split): day 09 on.
EVENTS = [("u1", "i1", 1), ("u1", "i2", 2), ("u1", "i3", 8), ("u1", "i4", 11), ("u1", "i2", 12),
          ("u2", "i2", 3), ("u2", "i3", 9), ("u2", "i1", 10),
          ("u3", "i1", 4), ("u3", "i2", 5), ("u3", "i3", 6),
          ("u4", "i1", 11), ("u4", "i3", 12),
          ("u5", "i3", 2), ("u5", "i1", 7), ("u5", "i4", 13), ("u5", "i4", 14)]


def write_events(path, events, date=True):
    rows = sorted(events, key=lambda e: e[2])
    with open(path, "w") as f:
        f.write("user_id,item_id,timestamp\n")
        for u, i, t in rows:
            f.write(f"{u},{i},{f'2024-01-{t:02d}' if date else t}\n")
    return str(path)


def rows_of(seqs: Sequences, users, ds):
    return {ds.user_ids[u]: [ds.item_ids[i] for i in seqs[r]] for r, u in enumerate(users)}


def test_split_by_hand(tmp_path):
    ds = load(write_events(tmp_path / "log.csv", EVENTS))
    sp = time_split(ds, "2024-01-10")
    u = {name: r for r, name in enumerate(ds.user_ids)}
    train = {ds.user_ids[r]: [ds.item_ids[i] for i in sp.train[r]] for r in range(len(ds.user_ids))}
    assert train == {"u1": ["i1", "i2", "i3"], "u2": ["i2"], "u3": ["i1", "i2", "i3"], "u4": [], "u5": ["i3", "i1"]}
    assert rows_of(sp.valid.histories, sp.valid.users, ds) == {"u2": ["i2"]}
    assert [ds.item_ids[t] for t in sp.valid.targets] == ["i3"]
    t = sp.test
    assert rows_of(t.histories, t.users, ds) == {"u1": ["i1", "i2", "i3"], "u2": ["i2", "i3"], "u5": ["i3", "i1"]}
    assert rows_of(t.targets, t.users, ds) == {"u1": ["i4", "i2"], "u2": ["i1"], "u5": ["i4"]}
    assert rows_of(t.cold_targets, t.cold_users, ds) == {"u4": ["i1", "i3"]}
    assert list(t.cold_users) == [u["u4"]]
    # all_data: training sees the validation window too, still nothing from day 10 on
    train_all = time_split(ds, "2024-01-10", all_data=True).train
    assert [ds.item_ids[i] for i in train_all[u["u2"]]] == ["i2", "i3"]
    assert [ds.item_ids[i] for i in train_all[u["u1"]]] == ["i1", "i2", "i3"]


def test_fraction_and_numbers(tmp_path):
    ds = load(write_events(tmp_path / "log.csv", EVENTS, date=False))  # days as plain numbers
    # 17 events; 0.6 -> the event at position int(0.6 * 17) = 10 in time order: day 10
    by_fraction, by_number = time_split(ds, "0.6"), time_split(ds, "10")
    for a, b in ((by_fraction.test.histories, by_number.test.histories),
                 (by_fraction.test.targets, by_number.test.targets)):
        assert np.array_equal(a.offsets, b.offsets) and np.array_equal(a.items, b.items)
    # validation by the same rule inside the 10 events before day 10 (days 01 02 02 03 04 05 06 07 08 09):
    # the one at position int(0.6 * 10) = 6, day 06 (a time given as a number: their last 10%, day 09)
    train = {ds.user_ids[r]: [ds.item_ids[i] for i in by_fraction.train[r]] for r in range(len(ds.user_ids))}
    assert train == {"u1": ["i1", "i2"], "u2": ["i2"], "u3": ["i1", "i2"], "u4": [], "u5": ["i3"]}
    assert rows_of(by_fraction.valid.histories, by_fraction.valid.users, ds) == \
        {"u1": ["i1", "i2"], "u2": ["i2"], "u3": ["i1", "i2"], "u5": ["i3"]}
    assert [ds.item_ids[t] for t in by_fraction.valid.targets] == ["i3", "i1", "i3", "i3"]  # u1 u5 u2 u3
    assert rows_of(by_number.valid.histories, by_number.valid.users, ds) == {"u2": ["i2"]}
    with pytest.raises(DataError, match="plain numbers, not dates"):
        time_split(ds, "2024-01-10")


def test_set_metrics_by_hand():
    # user A: list 5 2 7 1 3, targets {2, 1, 9}: hits at positions 2 and 4
    # user B: list 3 4 6 8 9, targets {8}: hit at position 4
    lists = np.array([[5, 2, 7, 1, 3], [3, 4, 6, 8, 9]])
    targets = Sequences.from_lists([[2, 1, 9], [8]])
    m = set_metrics(lists, targets, ks=(5, 2))
    l2 = math.log2
    ndcg_a = (1 / l2(3) + 1 / l2(5)) / (1 + 1 / l2(3) + 1 / l2(4))
    assert m["HR@5"] == pytest.approx(1.0)
    assert m["Recall@5"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["NDCG@5"] == pytest.approx((ndcg_a + 1 / l2(5)) / 2)
    assert m["MRR@5"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert m["MAP@5"] == pytest.approx(((1 / 2 + 2 / 4) / 3 + (1 / 4) / 1) / 2)
    # cutoff 2: A hits at 2 only (ideal: 2 hits), B misses
    assert m["HR@2"] == pytest.approx(0.5)
    assert m["Recall@2"] == pytest.approx(1 / 3 / 2)
    assert m["NDCG@2"] == pytest.approx((1 / l2(3)) / (1 + 1 / l2(3)) / 2)
    assert m["MAP@2"] == pytest.approx((1 / 2) / 2 / 2)


def test_one_target_each_equals_the_single_target_metrics():
    rng = np.random.default_rng(0)
    lists = np.stack([rng.permutation(50)[:20] + 1 for _ in range(200)])
    ranks = rng.integers(1, 30, size=200)  # 21..29: not in the list
    targets = np.where(ranks <= 20, lists[np.arange(200), np.minimum(ranks, 20) - 1], 99)
    single = metrics_from_ranks(np.minimum(ranks, 21))
    multi = set_metrics(lists, Sequences.from_lists([[t] for t in targets]))
    for key, value in single.items():
        assert multi[key] == pytest.approx(value)


def test_popularity_run_equals_hand_computed(tmp_path):
    """method=popularity on the fixture: counts over training (events before day 09) are i1, i2, i3
    three each and i4 none, so each user's list is its unseen items by count, then its own items:
      u1 [i4, i1, i2, i3] targets {i4, i2}: hits at 1 and 3;  u2 [i1, i4, i2, i3] {i1}: hit at 1;
      u5 [i2, i4, i1, i3] {i4}: hit at 2;  cold u4 gets the popular list [i1, i2, i3, i4], {i1, i3}: 1 and 3."""
    data = write_events(tmp_path / "log.csv", EVENTS)
    cfg = Config(data=data, method="popularity", holdout="time", split_time="2024-01-10", progress=False)
    m = run(cfg, str(tmp_path / "run"), quiet=True)
    l2 = math.log2
    t = m["test"]
    assert t["users"] == 3 and m["test_cold"]["users"] == 1
    assert t["HR@5"] == pytest.approx(1.0) and t["Recall@5"] == pytest.approx(1.0)
    assert t["NDCG@5"] == pytest.approx(((1 + 1 / l2(4)) / (1 + 1 / l2(3)) + 1 + 1 / l2(3)) / 3)
    assert t["MAP@5"] == pytest.approx(((1 + 2 / 3) / 2 + 1 + 1 / 2) / 3)
    assert t["MRR@5"] == pytest.approx((1 + 1 + 1 / 2) / 3)
    c = m["test_cold"]
    assert c["NDCG@5"] == pytest.approx((1 + 1 / l2(4)) / (1 + 1 / l2(3)))
    assert c["MAP@5"] == pytest.approx((1 + 2 / 3) / 2)
    on_disk = json.load(open(tmp_path / "run" / "metrics.json"))
    assert on_disk["test"] == t and "time split at 2024-01-10" in on_disk["protocol"]["test"]


def synthetic_log(path, seed=0, rows=2400, users=300, items=40):
    """A small log with interleaved user timelines (nanorec synth's generator); returns its events."""
    from nanorec.data.synthetic import generate_fast
    u, i, t = generate_fast(rows, items, users, seed=seed, max_len=30)
    events = sorted(zip(u.tolist(), i.tolist(), t.tolist()), key=lambda e: e[2])
    return events


def write_numeric(path, events):
    with open(path, "w") as f:
        f.write("user_id,item_id,timestamp\n")
        for u, i, t in sorted(events, key=lambda e: e[2]):
            f.write(f"{u},{i},{t}\n")
    return str(path)


def small_gpt(data, out, **kw):
    cfg = Config(data=data, holdout="time", max_steps=16, eval_interval=8, checkpoint_interval=8, patience=0,
                 batch_size=8, block_size=16, n_embd=16, n_layer=1, n_head=1, warmup_steps=2,
                 fuse_transitions="true", progress=False, **kw).validate()
    return run(cfg, str(out), quiet=True)


def test_gpt_test_metrics_equal_an_independent_evaluation(tmp_path):
    """A fused GPT run's multi-target test figures equal a plain re-computation from the saved run:
    dense scores, history last, a stable sort, the definitions written out in Python."""
    from nanorec.runs.run import Run
    events = synthetic_log(tmp_path)
    data = write_numeric(tmp_path / "log.csv", events)
    m = small_gpt(data, tmp_path / "run", split_time="0.8")
    run = Run.open(str(tmp_path / "run"))
    cfg, scorer, n = run.config, run.scorer, run.num_items
    sp = split_like(load(data), cfg)
    ndcg, hr, recall = [], [], []
    for r in range(len(sp.test.users)):
        hist = sp.test.histories.take([r])
        s = scorer(hist, sp.test.users[[r]])[0].double().numpy()
        s[0] = -np.inf
        seen = set(hist.items.tolist())
        # the history last when the run excludes it (its exclude_seen choice: seen.py)
        order = sorted(range(1, n + 1), key=lambda i: (i in seen and run.exclude_seen, -s[i], i))[:10]
        target = set(sp.test.targets[r].tolist())
        gains = [1 / math.log2(p + 2) for p, i in enumerate(order) if i in target]
        ideal = sum(1 / math.log2(p + 2) for p in range(min(len(target), 10)))
        ndcg.append(sum(gains) / ideal)
        hr.append(float(bool(gains)))
        recall.append(len(gains) / len(target))
    assert m["test"]["users"] == len(sp.test.users) > 10
    assert m["test"]["NDCG@10"] == pytest.approx(np.mean(ndcg), abs=1e-9)
    assert m["test"]["HR@10"] == pytest.approx(np.mean(hr), abs=1e-9)
    assert m["test"]["Recall@10"] == pytest.approx(np.mean(recall), abs=1e-9)
    assert m["fusion"]["valid_NDCG@10_by_weights"]  # fusion chose its weights on the time validation set
    for name in ("popularity", "transitions"):  # the baselines beside, on the same users
        assert m["baselines"][name]["test"]["users"] == m["test"]["users"]


def _train_record(tmp_path, name, events, split_time):
    out = tmp_path / name
    small_gpt(write_numeric(tmp_path / f"{name}.csv", events), out, split_time=split_time)
    ck = torch.load(out / "ckpt.pt", weights_only=False)
    history = [json.loads(x) for x in open(out / "history.jsonl")]
    return {"loss": [h["train_loss"] for h in history], "valid": [h["NDCG@10"] for h in history],
            "weights": ck["model"], "selected": (out / "model.safetensors").read_bytes(),
            "tables": (out / "transitions.safetensors").read_bytes(), "items": (out / "items.json").read_bytes(),
            "metrics": json.load(open(out / "metrics.json"))}


def test_nothing_at_or_after_the_split_reaches_training_or_selection(tmp_path):
    events = synthetic_log(tmp_path, seed=1)
    times = sorted(e[2] for e in events)
    split = times[int(0.8 * len(times))]
    before = [e for e in events if e[2] < split]
    after = [e for e in events if e[2] >= split]
    # b: the events after the split rotated across users, moved in time, plus a new (cold) user and
    # extra events; the vocabulary stays the same (only items already in the log)
    items_after = [e[1] for e in after]
    items_after = items_after[7:] + items_after[:7]
    changed = [(u, i, t + 1000 * (k % 5)) for k, ((u, _, t), i) in enumerate(zip(after, items_after))]
    changed += [(10_000, before[0][1], split + 5), (10_000, before[1][1], split + 9), (before[3][0], before[2][1], split)]
    a = _train_record(tmp_path, "a", events, str(split))
    b = _train_record(tmp_path, "b", before + changed, str(split))
    assert a["items"] == b["items"]
    assert a["loss"] == b["loss"] and a["valid"] == b["valid"]
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    assert a["selected"] == b["selected"] and a["tables"] == b["tables"]
    ma, mb = a["metrics"], b["metrics"]
    untimed = lambda fusion: {k: v for k, v in fusion.items() if k != "search_seconds"}  # noqa: E731 (wall clock)
    assert untimed(ma["fusion"]) == untimed(mb["fusion"]) and ma["valid"] == mb["valid"] and ma["best_step"] == mb["best_step"]
    assert ma["test"] != mb["test"]  # the test window did change, and was scored
    # the control: the same comparison sees a change made in the training part
    early = [e for e in before if e[2] < times[int(0.5 * len(times))]]
    late = [e for e in before if e[2] >= times[int(0.5 * len(times))]]
    moved = [(u, i, t) for (u, _, t), i in zip(early, [e[1] for e in early][3:] + [e[1] for e in early][:3])]
    c = _train_record(tmp_path, "c", moved + late + after, str(split))
    assert c["items"] == a["items"] and c["loss"] != a["loss"]


BAD = [
    (dict(holdout="time"), UsageError, "holdout=time needs split_time="),
    (dict(split_time="0.9"), UsageError, "applies to holdout=time only"),
    (dict(holdout="time", split_time="next monday"), UsageError, "split_time='next monday': expected"),
]


@pytest.mark.parametrize("settings,error,message", BAD)
def test_bad_settings_are_one_line(settings, error, message):
    with pytest.raises(error, match=message):
        Config(**settings).validate()


@pytest.mark.parametrize("split_time,message", [
    ("2023-12-01", "no event before it"),
    ("2024-02-01", "no event at or after it"),
    ("2024-01-02", "too few to hold a validation window"),
])
def test_bad_split_times_are_one_line(tmp_path, split_time, message):
    ds = load(write_events(tmp_path / "log.csv", EVENTS))
    with pytest.raises(DataError, match=message):
        time_split(ds, split_time)


def test_the_time_column_is_required(tmp_path):
    txt = tmp_path / "s3.txt"
    txt.write_text("1 1 2 3\n2 2 3 4\n")
    with pytest.raises(UsageError, match="holdout=time needs a time column .*S3-Rec"):
        time_split(load(str(txt)), "0.5")
    csv = write_events(tmp_path / "log.csv", EVENTS)
    with pytest.raises(UsageError, match="holdout=time needs a time column .*time_col=none"):
        time_split(load(csv, time_col="none"), "0.5")


def test_cli_says_it_in_one_line(tmp_path, capsys):
    from nanorec.cli import main
    data = write_events(tmp_path / "log.csv", EVENTS)
    assert main(["train", "--data", data, "--out", str(tmp_path / "r"), "holdout=time", "time_col=none",
                 "split_time=0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a time column" in err[0]
    assert not os.path.exists(tmp_path / "r")


def test_leaderboard_time_mode(tmp_path, capsys):
    """The leaderboard's time-split mode scores the same split: its popularity row equals the
    hand-computed popularity run above; content methods are refused there."""
    from nanorec.cli import main
    data = write_events(tmp_path / "log.csv", EVENTS)
    out = tmp_path / "lb"
    assert main(["leaderboard", "--data", data, "--out", str(out), "--split-time", "2024-01-10",
                 "--methods", "popularity,transitions"]) == 0
    rows = {r["method"]: r for r in json.load(open(out / "leaderboard.json"))["rows"]}
    l2 = math.log2
    assert rows["popularity"]["test"]["NDCG@5"] == pytest.approx(((1 + 1 / l2(4)) / (1 + 1 / l2(3)) + 1 + 1 / l2(3)) / 3)
    assert rows["popularity"]["beyond"]["coverage@10"] == pytest.approx(1.0)  # 4 items, each listed
    assert "| Recall@10 | coverage@10 |" in (out / "leaderboard.md").read_text()
    capsys.readouterr()
    assert main(["leaderboard", "--data", data, "--out", str(tmp_path / "lb2"), "--split-time", "2024-01-10",
                 "--methods", "gpt_content"]) == 2
    assert "not available with --split-time" in capsys.readouterr().err


def test_api_passes_the_keys_through(tmp_path):
    """Recommender(holdout="time", split_time=...) on a DataFrame: the same hand-computed figures."""
    import pandas as pd
    from nanorec import Recommender
    df = pd.DataFrame([(u, i, pd.Timestamp(2024, 1, d)) for u, i, d in EVENTS], columns=["customer", "sku", "ts"])
    rec = Recommender(method="popularity", holdout="time", split_time="2024-01-10").fit(
        df, user_col="customer", item_col="sku", time_col="ts", out=str(tmp_path / "run"))
    l2 = math.log2
    assert rec.metrics["test"]["MAP@5"] == pytest.approx(((1 + 2 / 3) / 2 + 1 + 1 / 2) / 3)
    assert rec.metrics["test_cold"]["users"] == 1


def test_help_teaches_the_keys(capsys):
    from nanorec.cli import main
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "split_time" in text and "loo, last, none or time" in text
