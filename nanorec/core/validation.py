"""Validation during training: which users are scored (all, or valid_users' fixed sample:
they select and they are reported), and what one pass decides (validate_and_select)."""
from __future__ import annotations

import math
import os
import time

import numpy as np

from ..data import EvalSet
from ..evaluation.metrics import evaluate, format_metrics
from ..runs import rundir

# valid_users=0 (auto): every validation user while users x items stays under this many scores, else a
# fixed sample of VALID_WORK // items users: a pass (and each fusion weight tried) is bounded whatever the
# size (benchmarks/results/seed_scale_cpu.json: 26,797 users x 74,633 items), and LastFM, Beauty, Sports
# and Beauty + Sports (57,961 x 30,458 = 1.8e9) keep every user. A sample's NDCG@10 standard error is
# ~0.002 at 27k users (scale_cpu.json: popularity's MAP@10 on all 720k users 0.0499, a 20k sample 0.0503).
VALID_WORK = 2_000_000_000


# The validation loss (a curve to watch, never a selection criterion) is over the first this many users:
# it needs every item's score, while NDCG@10 stops at a rank beyond 20 (evaluate.factor_ranks), so over
# every user it would cost most of a pass on a large catalogue (standard error at 5,000 users: ~0.03).
VALID_LOSS_USERS = 5_000


def loss_users(valid: EvalSet) -> EvalSet:
    """The first VALID_LOSS_USERS users of a validation set (all of a smaller one)."""
    if len(valid.targets) <= VALID_LOSS_USERS:
        return valid
    rows = np.arange(VALID_LOSS_USERS)
    return EvalSet(valid.users[rows], valid.histories.take(rows), valid.targets[rows])


def validation_users(n_valid: int, setting: int, num_items: int) -> int:
    """How many validation users are scored: valid_users, or its auto rule (0)."""
    if setting == 0:
        setting = max(1, VALID_WORK // max(num_items, 1))
    return min(setting, n_valid)


def validation_sample(valid: EvalSet | None, n: int, seed: int, num_items: int = 0) -> EvalSet | None:
    """The validation users that select and are reported: all, or a fixed sample of n drawn from
    (seed, 1), in the set's order (n = 0: validation_users' auto rule); never a test target."""
    if valid is None:
        return valid
    n = validation_users(len(valid.targets), n, num_items) if n == 0 else n
    if n >= len(valid.targets):
        return valid
    rows = np.sort(np.random.default_rng([seed, 1]).choice(len(valid.targets), size=n, replace=False))
    return EvalSet(valid.users[rows], valid.histories.take(rows), valid.targets[rows])


def validate_and_select(model, scorer, sp, cfg, state, train_loss: float, lr: float, out_dir: str, log,
                        stop_below: dict | None = None) -> bool:
    """One validation pass: record it, keep the best weights, decide on early stopping (-> stop).
    Without a validation split (holdout=none) there is nothing to select: keep the last weights.
    state: checkpoint.TrainState, updated here."""
    t_valid = time.time()
    if sp.valid is None:
        m = {"loss": float("nan"), "NDCG@10": float("nan"), "HR@10": float("nan"), "MAP@10": float("nan")}
    else:  # ranks of every validation user; the loss (a full pass over the catalogue each) of the first ones
        # earlier items excluded unless exclude_seen=false (auto decides after the last step: seen.py)
        m = evaluate(scorer, sp.valid, cfg.exclude_seen != "false", batch_size=cfg.eval_batch_size)
        m["loss"] = evaluate(scorer, loss_users(sp.valid), batch_size=cfg.eval_batch_size, with_loss=True)["loss"]
    improved = m["NDCG@10"] > state.best_ndcg
    if improved or cfg.all_data or sp.valid is None:  # no selection of its own: keep the last
        state.best_step, state.bad_evals = state.step, 0
        state.best_ndcg = m["NDCG@10"] if sp.valid is not None else state.best_ndcg
        rundir.save_weights(model, os.path.join(out_dir, rundir.WEIGHTS))
    else:
        state.bad_evals += 1
    rate = state.train_tokens / max(state.train_seconds, 1e-9)  # training time only
    record = {"step": state.step, "epoch": state.epoch, "train_loss": round(train_loss, 4)}
    if sp.valid is not None:
        record.update({"valid_loss": round(m["loss"], 4), **{k: m[k] for k in ("NDCG@10", "HR@10", "MAP@10")},
                       "valid_users": m["users"]})
    record.update(lr=lr, train_seconds=round(state.train_seconds, 2), valid_seconds=round(time.time() - t_valid, 2))
    state.history.append(record)
    rundir.append_history(out_dir, record)
    valid = (f"valid ({m['users']:,} users) loss {m['loss']:.4f} {format_metrics(m)}{' *' if improved else ''}"
             if sp.valid else "no validation")
    log(f"step {state.step} epoch {state.epoch}: loss {train_loss:.4f} lr {lr:.2e} | {valid} | {rate:,.0f} train tokens/s")
    if out_of_patience(cfg, state, sp):
        log(f"early stop: no better validation NDCG@10 in {state.bad_evals} evaluations")
        return True
    return below(state.history, stop_below)


def out_of_patience(cfg, state, sp) -> bool:
    """Early stopping: patience validations without a better NDCG@10 (never for holdout=none, all_data)."""
    return bool(cfg.patience and state.bad_evals >= cfg.patience and not cfg.all_data and sp.valid is not None)


def below(history: list, line: dict | None) -> bool:
    """Whether the best validation NDCG@10 so far is under a tuner's pruning line[step] at the last
    pass's step (no such step: never); a curve of NaN is under any line."""
    step = history[-1]["step"]
    if not line or step not in line:
        return False
    return not max((h["NDCG@10"] for h in history if not math.isnan(h["NDCG@10"])), default=math.nan) >= line[step]
