"""torchrun data parallelism: two processes (gloo, CPU) train the same model as one process."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nanorec.core.distributed import Dist, shard_rows
from nanorec.core.packing import IGNORE
from nanorec.data.synthetic import write_csv

# dropout 0: the only randomness left is the shuffle, which every process shares.
# batch_size 31 is odd, so the two processes hold different numbers of rows and target slots.
SETTINGS = ["block_size=12", "n_layer=1", "n_head=2", "n_embd=32", "dropout=0", "batch_size=31",
            "learning_rate=3e-3", "warmup_steps=10", "max_steps=60", "eval_interval=20",
            "checkpoint_interval=20", "patience=0", "threads=1", "eval_batch_size=512", "progress=false"]


def test_shard_rows_weights_recover_the_global_mean():
    rng = np.random.default_rng(0)
    targets = rng.integers(1, 50, size=(10, 8))
    targets[rng.random(targets.shape) < 0.4] = IGNORE  # rows with different numbers of slots
    rows = np.array([7, 2, 9, 0, 4])
    losses = rng.random((10, 8))  # a per-slot loss; each process's loss is the mean over its slots
    global_mean = losses[rows][targets[rows] != IGNORE].mean()
    world = 2
    combined = 0.0
    for rank in range(world):
        local, weight = shard_rows(rows, targets, Dist(rank=rank, world=world))
        local_mean = losses[local][targets[local] != IGNORE].mean()
        combined += weight * local_mean / world  # what DDP's gradient average computes
    assert combined == pytest.approx(global_mean, rel=1e-12)
    # a batch smaller than the world: the process without rows contributes nothing
    local, weight = shard_rows(np.array([3]), targets, Dist(rank=1, world=2))
    assert weight == 0.0 and len(local) == 1


def test_torchrun_two_processes_match_one_process(tmp_path):
    data = write_csv(str(tmp_path / "log.csv"), num_users=600, num_items=120, seed=5)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    train = ["-m", "nanorec.cli", "train", "--data", data, "--quiet", *SETTINGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, *train, "--out", one], check=True, capture_output=True, env=env)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          *train, "--out", two], capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    a, b = load_file(os.path.join(one, "model.safetensors")), load_file(os.path.join(two, "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # same weights after 60 AdamW steps, up to float summation order
        torch.testing.assert_close(a[k], b[k], atol=2e-4, rtol=1e-3, msg=k)
    ma, mb = json.load(open(os.path.join(one, "metrics.json"))), json.load(open(os.path.join(two, "metrics.json")))
    assert [h["step"] for h in ma["history"]] == [h["step"] for h in mb["history"]] == [20, 40, 60]
    for ha, hb in zip(ma["history"], mb["history"]):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], abs=2e-3)
        assert ha["valid_loss"] == pytest.approx(hb["valid_loss"], abs=2e-3)
    assert ma["test"]["NDCG@10"] == pytest.approx(mb["test"]["NDCG@10"], abs=5e-3)
    assert ma["best_step"] == mb["best_step"]
    # rank 0 alone wrote the run directory and logged; the log names the process count
    assert "2 processes" in open(os.path.join(two, "train.log")).read()
    assert "2 processes" not in open(os.path.join(one, "train.log")).read()


def test_torchrun_resume_continues_exactly(tmp_path):
    """A 2-process run stopped at step 40 and resumed to 60 equals one run to 60,
    dropout included: each process's RNG state is saved and restored."""
    data = write_csv(str(tmp_path / "log.csv"), num_users=600, num_items=120, seed=5)
    settings = [s for s in SETTINGS if not s.startswith(("dropout=", "max_steps="))] + ["dropout=0.2", "decay_lr=false"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "nanorec.cli", "train", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    for cmd in ([*torchrun, "--data", data, *settings, "max_steps=60", "--out", straight],
                [*torchrun, "--data", data, *settings, "max_steps=40", "--out", resumed],
                [*torchrun, "--out", resumed, "--resume", "max_steps=60"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.load(open(os.path.join(straight, "metrics.json")))
    b = json.load(open(os.path.join(resumed, "metrics.json")))
    assert "resumed from step 40" in open(os.path.join(resumed, "train.log")).read()
    assert untimed(a["history"]) == untimed(b["history"]) and len(a["history"]) == 3
    assert a["test"] == b["test"]


def untimed(history):
    """History records without their wall-clock fields (the only part a resume cannot reproduce)."""
    return [{k: v for k, v in h.items() if not k.endswith("_seconds")} for h in history]
