import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nanorec.config import Config
from nanorec.data import item_counts, load, split
from nanorec.evaluation.metrics import evaluate
from nanorec.data.synthetic import write_csv
from nanorec.core.train import get_lr, run

FAST = dict(block_size=12, n_layer=1, n_head=2, n_embd=32, dropout=0.1, batch_size=32,
            learning_rate=3e-3, min_lr=3e-4, warmup_steps=20, eval_batch_size=512, progress=False)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_csv(str(tmp_path_factory.mktemp("syn") / "log.csv"), num_users=1200, num_items=200, seed=3)


def test_trained_model_beats_popularity(synthetic, tmp_path):
    cfg = Config(data=synthetic, max_steps=300, eval_interval=100, patience=0, **FAST)
    metrics = run(cfg, str(tmp_path / "run"), quiet=True)
    ds = load(synthetic)
    sp = split(ds)
    counts = item_counts(ds.sequences.drop_last(1), ds.num_items).astype(np.float32)
    pop = evaluate(lambda h, u: np.broadcast_to(counts, (len(h), len(counts))), sp.test)
    assert metrics["test"]["NDCG@10"] > 2 * pop["NDCG@10"]
    files = set(os.listdir(tmp_path / "run"))
    assert {"config.json", "items.json", "model.safetensors", "metrics.json", "train.log", "ckpt.pt"} <= files
    saved = json.load(open(tmp_path / "run" / "config.json"))
    assert saved["max_steps"] == 300 and saved["n_embd"] == 32
    assert set(metrics) >= {"valid", "test", "best_step"}
    for k in ("NDCG@10", "HR@10", "MRR@10", "MAP@10", "NDCG@5", "HR@20"):
        assert k in metrics["test"] and k in metrics["valid"]


def test_lr_schedule():
    from nanorec.config import resolve
    cfg = resolve(Config(learning_rate=1.0, min_lr=0.1, warmup_steps=10, max_steps=110), 50)  # decay_steps: max_steps
    assert get_lr(0, cfg) == pytest.approx(0.1)
    assert get_lr(9, cfg) == pytest.approx(1.0)
    assert get_lr(60, cfg) == pytest.approx(0.55)  # halfway through the cosine
    assert get_lr(110, cfg) == pytest.approx(0.1)
    cfg.decay_lr = False
    assert get_lr(100, cfg) == 1.0


def _train_cmd(data, out, *extra):
    over = [f"{k}={v}" for k, v in FAST.items()]
    return [sys.executable, "-m", "nanorec.cli", "train", "--data", data, "--out", out, "--quiet",
            *over, "max_steps=240", "eval_interval=40", "checkpoint_interval=20", "patience=0", "threads=1", *extra]


@pytest.mark.slow
@pytest.mark.subprocess
def test_resume_after_sigkill_matches_uninterrupted_run(synthetic, tmp_path):
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    subprocess.run(_train_cmd(synthetic, full), check=True, capture_output=True)

    proc = subprocess.Popen(_train_cmd(synthetic, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120

    def reached_step_80():  # two validations and several checkpoints in, 160 steps still to go
        # a new run is built in a hidden sibling of --out, renamed into place when complete (rundir.RunFolder)
        logs = glob.glob(os.path.join(str(tmp_path), ".killed.nanorec-new-*", "killed", "train.log"))
        return bool(logs) and "step 80 " in open(logs[0]).read()

    while not reached_step_80() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(killed, "metrics.json")), "run finished before it was killed"

    resumed = subprocess.run([sys.executable, "-m", "nanorec.cli", "train", "--out", killed, "--resume", "--quiet"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a = json.load(open(os.path.join(full, "metrics.json")))
    b = json.load(open(os.path.join(killed, "metrics.json")))
    assert untimed(a["history"]) == untimed(b["history"])
    assert a["valid"] == b["valid"] and a["test"] == b["test"]
    assert a["best_step"] == b["best_step"]


def untimed(history):
    """History records without their wall-clock fields (the only part a resume cannot reproduce)."""
    return [{k: v for k, v in h.items() if not k.endswith("_seconds")} for h in history]


@pytest.mark.parametrize("warmup_steps", [100, 50])
def test_few_epoch_lines_and_one_warmup_warning(tmp_path, warmup_steps):
    """A 50-step run of one batch per epoch (50 epochs, whose packing flips between
    16 and 17 rows) logs the first epoch, every 10th and the first one outside the
    efficiency range logged so far, not 50 lines; warmup longer than the run is
    one warning line, a warmup that fits none."""
    data = write_csv(str(tmp_path / "log.csv"), num_users=40, num_items=20, seed=1)
    cfg = Config(data=data, block_size=12, n_layer=1, n_head=1, n_embd=16, batch_size=1024, max_steps=50,
                 eval_interval=50, warmup_steps=warmup_steps, progress=False, fuse_transitions="false")
    metrics = run(cfg, str(tmp_path / "run"), quiet=True)
    lines = open(tmp_path / "run" / "train.log").read().splitlines()
    epochs = [int(line.split(":")[0].split()[1]) for line in lines if line.startswith("epoch ")]
    assert metrics["epochs"] >= 49  # one batch per epoch: every step starts one
    assert epochs[0] == 0 and {10, 20, 30, 40} <= set(epochs) and len(epochs) <= 10, epochs  # not 50
    warnings = [line for line in lines if "warmup_steps" in line]
    if warmup_steps > 50:
        assert len(warnings) == 1 and "warmup_steps=100 > max_steps=50" in warnings[0] and "50%" in warnings[0]
    else:
        assert warnings == []


def test_train_help_keeps_comments_together_and_shows_an_events_example(capsys):
    from nanorec.cli import main
    assert main(["train", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("--data events.csv --out runs/shop user_col=customer item_col=sku time_col=ts" in x for x in lines)
    i = next(i for i, x in enumerate(lines) if x.strip().startswith("attention:"))
    # the comment's second line sits under its first, and the valid range follows the whole comment
    assert lines[i + 1].strip().startswith("# training only") and lines[i + 1].index("#") == lines[i].index("#")
    assert lines[i].endswith("CUDA") and lines[i + 1].endswith("[sdpa or flex]")
    assert lines[i + 2].strip().startswith("fuse_transitions:")
