"""Train a GPT recommender (`nanorec train`: train_cli.py).

Reads top to bottom, like nanoGPT's train.py; run() calls four steps:
  1. check: config, run folder, data, content tables, and for --resume the saved run's config, data
     and checkpoint; every auto key resolved. Nothing on disk changes until all of it has passed;
  2. prepare: device, processes (torchrun), the run folder, model, optimizer, resumed state;
  3. loop: one flat loop over a resumable stream of packed batches: warmup + cosine LR, grad
     clipping, validation every eval_interval steps (validation.py: best weights by NDCG@10, early
     stopping), checkpoints every checkpoint_interval (checkpoint.py); the full or sampled softmax (loss.py);
  4. finish: the selected weights scored once on validation and on the test split (report.py).
Any other method is fitted instead of steps 2-4, into the same run folder (methods/base.py). Started
by torchrun, the same loop runs data parallel (distributed.py). rundir.py lists a run folder's files.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .. import methods
from ..config import Config, resolve
from ..content.tables import load_content
from ..data import Dataset, Sequences, Split, item_counts, load_like, split_like
from ..errors import DataError, UsageError
from ..evaluation.report import Logger, final_evaluation, opening
from ..runs import rundir
from ..scoring.scorer import gpt_scorer
from . import distributed, tracking
from .checkpoint import TrainState, restore_checkpoint, save_checkpoint
from .devices import autocast, pick_device
from .loss import OutputLoss
from .model import GPT
from .packing import IGNORE, batch_stream, check_targets, epoch_batches
from .validation import out_of_patience, validate_and_select, validation_sample


@dataclass
class Training:
    """What the steps hand on: check's data and settings, then prepare's model and run folder."""
    cfg: Config               # every auto resolved (config.resolve): what config.json saves
    given: Config             # as given: the log lines quote its autos
    ds: Dataset
    sp: Split                 # .valid: every validation user, or valid_users' fixed sample (validation.py)
    n_valid: int              # validation users before the sample
    train_seqs: Sequences     # the rows batches are drawn from: the training split, or an update's share of it
    batches: object           # () -> training batches in an epoch (epoch 0 packed once, when first asked)
    device: str
    fp: dict                  # the data's fingerprint (rundir.fingerprint)
    content: list             # the content tables (content.py)...
    coverage: list            # ...and their coverage lines, logged once there is a log
    ck: dict | None           # the checkpoint --resume continues from
    start: object = None      # an update's starting point (update.Start), else None
    dd: object = None         # distributed.setup's processes (rank, world, main)
    out_dir: str = ""         # the folder written: a new run's hidden sibling, or the resumed run
    log: Logger | None = None
    model: GPT | None = None
    train_model: object = None  # the model, or its DDP wrapper under torchrun
    optimizer: object = None
    state: TrainState | None = None
    trackers: tracking.Trackers | None = None  # track=tensorboard,mlflow (rank 0)


def get_lr(step: int, cfg: Config) -> float:
    """Linear warmup, then cosine decay from learning_rate to min_lr at decay_steps (resolved: 0 = max_steps)."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    if not cfg.decay_lr:
        return cfg.learning_rate
    ratio = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.decay_steps - cfg.warmup_steps))
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


def run(cfg: Config, out_dir: str, resume: bool = False, overwrite: bool = False, quiet: bool = False,
        dataset: Dataset | None = None, score_test: bool = True, stop_below: dict | None = None,
        start=None) -> dict:
    """Train per `cfg` into `out_dir` -> the metrics written to metrics.json ("history": every validation).
    dataset: a loaded `data.Dataset` instead of reading cfg.data. score_test: False leaves the test split
    unscored (a tuner's trials). stop_below: {step: NDCG@10}, a tuner's pruning line (validation.below).
    start: an update's starting point (update.Start: weights, training rows, metrics.json's "update").
    The run folder is a transaction (rundir.RunFolder): built in a hidden sibling of out_dir, renamed into
    place when complete (--overwrite replaces the old run only then), one writer at a time (a lock)."""
    folder = rundir.RunFolder(out_dir, resume, overwrite)
    try:
        tr = check(cfg, out_dir, resume, overwrite, dataset, start)
        method = methods.get(tr.cfg.method)
        if not method.trains:  # a baseline: fitted, not trained; the same run folder (methods/base.py)
            return method.fit_run(folder, tr.cfg, tr.ds, tr.sp, tr.fp, score_test, functools.partial(Logger, quiet=quiet))
        prepare(tr, folder, quiet)
        loop(tr, quiet, stop_below)
        return finish(tr, folder, score_test)
    finally:
        folder.close()  # the lock released; a new run that stopped before its first checkpoint removed


# -----------------------------------------------------------------------------
# 1. check everything before anything is written

def check(cfg: Config, out_dir: str, resume: bool, overwrite: bool, dataset=None, start=None) -> Training:
    """Every check, no writes; every auto key resolved on the data."""
    cfg.validate()
    device = pick_device(cfg.device)
    if cfg.attention == "flex" and device == "cpu":
        raise UsageError("attention=flex trains on CUDA only (FlexAttention has no backward on CPU); use attention=sdpa")
    rundir.check_out_dir(out_dir, resume, overwrite)
    tracking.check(cfg.track)
    ck = None
    if resume:  # the run in out_dir, or the new one an interrupted process was building for it
        out_dir = rundir.resume_dir(out_dir)
        rundir.resume_config(out_dir, cfg)
        ck = rundir.load_checkpoint(os.path.join(out_dir, rundir.CKPT))
    ds = dataset if dataset is not None else load_like(cfg)
    if ds.weights is not None and not methods.get(cfg.method).takes_weights:
        key = "weight_col" if cfg.weight_col else "target_filter"
        raise UsageError(f"{key}: per-event weights weight the GPT's loss and the transitions and cooccurrence "
                         f"tables; method={cfg.method} does not take them (leave {key} out)")
    sp = split_like(ds, cfg)
    if sp.train.lengths.max(initial=0) < 2:
        hint = "; holdout=none trains on every event" if cfg.holdout != "none" else ""
        raise DataError(f"{ds.path}: no user has two training items (holdout={cfg.holdout}): nothing to learn{hint}")
    check_targets(ds, sp, cfg)
    fp = rundir.fingerprint(ds)
    if resume:  # the run folder's other files must fit too: the resumed run keeps them
        rundir.check_same_data(out_dir, fp, cfg.data)
        rundir.check_same_vocabulary(out_dir, ds.item_ids, cfg.data)
        rundir.check_weights(os.path.join(out_dir, rundir.WEIGHTS), ck["model"])
    coverage = []  # the content tables' coverage lines, logged once there is a log
    content = load_content(cfg.content, ds.item_ids, log=coverage.append) if cfg.content else []
    n_valid = len(sp.valid.targets) if sp.valid is not None else 0
    # an update trains on the users with new events and a replay sample (update.py); rows keep their weights
    train_seqs = sp.train if start is None else sp.train.take(start.focus)
    # every auto key -> the value used, once (config.py); config.json saves these. num_negatives=auto
    # needs the epochs max_steps covers: one packing of epoch 0 (~0.1 s), only when it applies
    batches = functools.cache(lambda: len(epoch_batches(train_seqs, cfg, 0, train_seqs.weights)[1]))
    resolved = resolve(cfg, ds.num_items, n_valid, batches if methods.get(cfg.method).trains else None)
    # validation: all users, or a fixed seeded sample (valid_users); it selects and it is what is reported
    sp = dataclasses.replace(sp, valid=validation_sample(sp.valid, resolved.valid_users, resolved.seed, ds.num_items))
    return Training(resolved, cfg, ds, sp, n_valid, train_seqs, batches, device, fp, content, coverage, ck, start)


# -----------------------------------------------------------------------------
# 2. set up: processes, the run folder, model, optimizer, resumed state

def prepare(tr: Training, folder, quiet: bool) -> None:
    cfg, ds = tr.cfg, tr.ds
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    tr.dd, tr.device = dd, device = distributed.setup(tr.device)  # under torchrun: one device per process
    torch.manual_seed(cfg.seed + dd.rank)   # rank 0's initial weights are broadcast; the rank varies dropout only
    # from here on out_dir is the folder written: a new run's hidden sibling, or the resumed run
    tr.out_dir = folder.start(cfg, ds, tr.fp) if dd.main else folder.out
    tr.log = log = Logger(os.path.join(tr.out_dir, rundir.LOG) if dd.main else None, quiet or not dd.main)
    opening(tr, folder.notes)
    tr.model = model = GPT(cfg, ds.num_items, tr.content).to(device)
    if tr.start is not None and tr.ck is None:  # an update goes on from the old run's weights (update.py)
        rundir.load_state(model, tr.start.weights, tr.start.source)
    tr.optimizer = model.configure_optimizer(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                             device.split(":")[0])
    log(f"model: {model.num_params():,} parameters, {cfg.n_layer} layers, {cfg.n_head} heads, "
        f"d={cfg.n_embd}, dropout {cfg.dropout:g}{' (auto)' if 'dropout' in cfg.auto else ''}, "
        f"attention={cfg.attention}, device={device}"
        + (f", {dd.world} processes x {cfg.batch_size / dd.world:g} rows" if dd.enabled else ""))
    if cfg.warmup_steps > cfg.max_steps:  # allowed (a short trial run keeps its defaults) but rarely meant
        log(f"warning: warmup_steps={cfg.warmup_steps} > max_steps={cfg.max_steps}: the run never leaves warmup "
            f"(the learning rate rises to {cfg.max_steps / cfg.warmup_steps:.0%} of learning_rate and never decays)")
    tr.train_model = distributed.wrap(model, dd, device)  # DDP under torchrun, else the model itself
    if cfg.compile or cfg.attention == "flex":  # flex uncompiled rebuilds its block mask eagerly: 10x slower steps
        model.compile_for_training()
    tr.state = TrainState()
    if tr.ck is not None:
        tr.state = restore_checkpoint(tr.ck, os.path.join(tr.out_dir, rundir.CKPT), model, tr.optimizer, dd, device)
        if dd.main:  # history.jsonl may hold passes made after the checkpoint: rewrite it from the state
            rundir.rewrite_history(tr.out_dir, tr.state.history)
        log(f"resumed from step {tr.state.step} (epoch {tr.state.epoch}, batch {tr.state.batch_in_epoch})")
    tr.trackers = tracking.Trackers(cfg.track, tr.out_dir, cfg.to_dict()) if dd.main and cfg.track else None


# -----------------------------------------------------------------------------
# 3. the training loop

def loop(tr: Training, quiet: bool, stop_below: dict | None = None) -> None:
    cfg, dd, device, model, optimizer, state, log = tr.cfg, tr.dd, tr.device, tr.model, tr.optimizer, tr.state, tr.log
    ckpt_path, scorer = os.path.join(tr.out_dir, rundir.CKPT), gpt_scorer(model, device)
    ctx = autocast(cfg.dtype, device)
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True,
               disable=True if quiet or not cfg.progress or not dd.main else None,  # None: quiet when not a terminal
               mininterval=1.0)
    stop = out_of_patience(cfg, state, tr.sp)  # a resumed run that had already stopped early stays stopped
    loss_sum = torch.tensor(state.loss_sum, dtype=torch.float64, device=device)  # no host sync per step
    output = output_layer(tr)
    stream = batch_stream(tr.train_seqs, cfg, state.epoch, state.batch_in_epoch, tr.train_seqs.weights)
    model.train()
    t0, efficiency_range = time.time(), None  # (lowest, highest) packing efficiency logged (log_epoch)
    while state.step < cfg.max_steps and not stop:
        epoch, index, packed, batch_rows = next(stream)
        if index == 0:
            efficiency_range = log_epoch(log, cfg, epoch, packed, efficiency_range)
        # this process's share of the global batch; weight makes DDP's average the global mean
        rows, weight = distributed.shard_rows(batch_rows, packed.targets, dd, packed.weights)
        tokens, pos_ids, seq_ids, targets, slot_weights = packed.batch(rows, device)

        lr = get_lr(state.step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with ctx:
            # sampled negatives depend on (seed, step, rank) only: a resume draws the same ones
            loss = tr.train_model(tokens, pos_ids, seq_ids, targets,
                                  loss_fn=output.for_step(state.step, dd.rank, slot_weights))
        optimizer.zero_grad(set_to_none=True)
        (loss * weight).backward()  # weight is 1.0 on a single process
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()

        loss_sum += loss.detach().double() * weight
        state.step, state.epoch, state.batch_in_epoch = state.step + 1, epoch, index + 1
        state.loss_steps += 1
        state.train_tokens += int((packed.targets[batch_rows] != IGNORE).sum())  # all processes'
        bar.update(1)

        if state.step % cfg.eval_interval == 0 or state.step == cfg.max_steps:
            # the global mean training loss over the interval (one all-reduce per validation)
            train_loss = distributed.global_mean(loss_sum.item() / state.loss_steps, dd, device)
            state.train_seconds += time.time() - t0
            if dd.main:  # rank 0 validates and decides; the others wait for its decision
                stop = validate_and_select(model, scorer, tr.sp, cfg, state, train_loss, lr, tr.out_dir, log, stop_below)
                if tr.trackers is not None:
                    tr.trackers.log(state.history[-1])
                bar.set_postfix(loss=f"{train_loss:.3f}", best=f"{state.best_ndcg:.4f}", refresh=False)
            stop = distributed.broadcast_flag(stop, dd, device)
            loss_sum.zero_()
            state.loss_steps, t0 = 0, time.time()
        if state.step % cfg.checkpoint_interval == 0 or stop or state.step == cfg.max_steps:
            state.loss_sum = loss_sum.item()
            state.train_seconds += time.time() - t0
            save_checkpoint(ckpt_path, model, optimizer, state, cfg, dd, device)
            t0 = time.time()
    bar.close()


def output_layer(tr: Training) -> OutputLoss:
    """The loss of the output layer (loss.py), with its log line."""
    cfg, ds = tr.cfg, tr.ds
    auto_note = f", num_negatives=0, auto: max_steps covers {cfg.max_steps / tr.batches():.1f} epochs" \
        if cfg.loss == "sampled" and "num_negatives" in cfg.auto else ""
    output = OutputLoss(cfg.loss, ds.num_items, item_counts(tr.sp.train, ds.num_items), cfg.num_negatives,
                        cfg.negatives, cfg.seed, cfg.future_decay)
    tr.log(f"output layer: {output.describe()} (loss={tr.given.loss}{auto_note})")
    return output


def log_epoch(log, cfg: Config, epoch: int, packed, logged: tuple | None) -> tuple:
    """An epoch's line: the first, every 10th, and any whose packing efficiency is over 1 point outside
    the range logged so far, `logged` (lowest, highest; None before the first) -> the new range."""
    lo, hi = logged or (packed.efficiency, packed.efficiency)
    if logged is None or epoch % 10 == 0 or not lo - 0.01 <= packed.efficiency <= hi + 0.01:
        log(f"epoch {epoch}: {len(packed):,} rows of {cfg.block_size}, packing efficiency {packed.efficiency:.1%}")
        return min(lo, packed.efficiency), max(hi, packed.efficiency)
    return logged


# -----------------------------------------------------------------------------
# 4. the selected weights, scored once on validation and on the test split

def finish(tr: Training, folder, score_test: bool) -> dict:
    distributed.barrier(tr.dd)
    if not tr.dd.main:  # rank 0 alone scores the selected weights and writes the results
        distributed.cleanup(tr.dd)
        return {}
    results = final_evaluation(tr.model, gpt_scorer(tr.model, tr.device), tr.ds,
                               tr.sp if score_test else dataclasses.replace(tr.sp, test=None), tr.cfg, tr.state,
                               tr.out_dir, tr.log, extra={"update": tr.start.record} if tr.start else None,
                               beyond_users=tr.start.beyond_users if tr.start else 0,
                               near=tr.start.fusion_near if tr.start else None)
    if tr.trackers is not None:
        tr.trackers.close()
    folder.commit()  # a new run renamed into place
    distributed.cleanup(tr.dd)
    return results


