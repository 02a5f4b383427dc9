"""No held-out target reaches training or model selection.

The check is behavioural, not a reading of the code: two data sets that differ
only in each user's held-out targets (a derangement of them across users, so
the vocabulary and every item count outside the held-out slots stay the same)
must give the same training. Test targets: the same training losses, the same
selected step, the same weights, the same fusion weights and transition table,
the same validation figures. Validation targets: the same training (losses at
every step, the last step's weights), while the validation figures may differ
since selecting on them is their job. all_data=True trains on the validation
targets, and there the same comparison must see a difference: proof that the
check can fail.
"""
import json
import os

import numpy as np
import pytest
import torch

from nanorec.config import Config
from nanorec.core.train import run


def write_txt(path, rows):
    with open(path, "w") as f:
        for u, items in enumerate(rows, 1):
            f.write(" ".join(map(str, [u, *items])) + "\n")


def base_rows(n_users=120, n_items=30, seed=0):
    """Histories with a learnable next-item rule (mostly item + 1), 4..9 items each."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_users):
        x = int(rng.integers(1, n_items + 1))
        row = []
        for _ in range(int(rng.integers(4, 10))):
            row.append(x)
            x = x % n_items + 1 if rng.random() < 0.8 else int(rng.integers(1, n_items + 1))
        rows.append(row)
    return rows


def derange(rows, back):
    """Rotate the item `back` places from the end of each history by one user."""
    held = [r[-back] for r in rows]
    held = held[1:] + held[:1]
    out = [list(r) for r in rows]
    for r, h in zip(out, held):
        r[-back] = h
    return out


def train(tmp_path, name, rows, **overrides):
    data = tmp_path / f"{name}.txt"
    write_txt(data, rows)
    cfg = Config(data=str(data), max_steps=24, eval_interval=6, checkpoint_interval=6, patience=0,
                 batch_size=4, block_size=16, n_embd=16, n_layer=1, n_head=1, warmup_steps=2,
                 fuse_transitions="true", progress=False, **overrides).validate()
    out = tmp_path / name
    metrics = run(cfg, str(out), quiet=True)
    history = [json.loads(x) for x in open(out / "history.jsonl")]
    ck = torch.load(out / "ckpt.pt", weights_only=False)
    return {
        "metrics": metrics,
        "train_loss": [h["train_loss"] for h in history],
        "valid": [h.get("NDCG@10") for h in history],
        "last_weights": ck["model"],
        "selected_weights": (out / "model.safetensors").read_bytes(),
        "transitions": (out / "transitions.safetensors").read_bytes(),
        "cooccurrence": (out / "cooccurrence.safetensors").read_bytes(),
        "items": (out / "items.json").read_bytes(),
    }


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("settings", [dict(loss="full"), dict(loss="sampled"), dict(future_decay=0.3)])
def test_test_targets_reach_neither_training_nor_selection(tmp_path, settings):
    rows = base_rows()
    a = train(tmp_path, "a", rows, **settings)
    b = train(tmp_path, "b", derange(rows, back=1), **settings)  # other test targets
    assert a["items"] == b["items"]  # same vocabulary: the comparison is item for item
    assert a["train_loss"] == b["train_loss"]
    assert a["valid"] == b["valid"]
    assert same_weights(a["last_weights"], b["last_weights"])
    assert a["selected_weights"] == b["selected_weights"]
    assert a["transitions"] == b["transitions"] and a["cooccurrence"] == b["cooccurrence"]
    ma, mb = a["metrics"], b["metrics"]
    assert ma["best_step"] == mb["best_step"] and without_timing(ma["fusion"]) == without_timing(mb["fusion"]) and ma["valid"] == mb["valid"]
    assert ma["test"] != mb["test"]  # the test split did change, and was scored


@pytest.mark.parametrize("holdout,settings", [("loo", {}), ("last", {}), ("loo", dict(future_decay=0.3))])
def test_validation_targets_reach_selection_only(tmp_path, holdout, settings):
    rows = base_rows(seed=1)
    back = 2 if holdout == "loo" else 1  # the validation target's place from the end
    a = train(tmp_path, "a", rows, holdout=holdout, **settings)
    b = train(tmp_path, "b", derange(rows, back=back), holdout=holdout, **settings)
    assert a["items"] == b["items"]
    assert a["train_loss"] == b["train_loss"]
    assert same_weights(a["last_weights"], b["last_weights"])
    assert a["valid"] != b["valid"]  # selection did read the validation targets


def test_all_data_does_train_on_validation_targets(tmp_path):
    """The control: where validation targets are trained on, the check sees it."""
    rows = base_rows(seed=2)
    a = train(tmp_path, "a", rows, all_data=True)
    b = train(tmp_path, "b", derange(rows, back=2), all_data=True)
    assert a["items"] == b["items"]
    assert a["train_loss"] != b["train_loss"]
    assert not same_weights(a["last_weights"], b["last_weights"])


def without_timing(fusion: dict) -> dict:
    """The fusion record less its search seconds (a timing, not a choice)."""
    return {k: v for k, v in fusion.items() if k != "search_seconds"}
