"""Train a GPT recommender.

    nanorec train --data PATH --out RUN_DIR [key=value ...] [--resume | --overwrite]

Reads top to bottom, like nanoGPT's train.py:
  1. check everything: config ranges, the run folder, the data, the content
     tables, and for --resume the saved run's config, data and checkpoint.
     Nothing on disk changes until all of it has passed;
  2. set up: device, processes (torchrun), model, optimizer, resumed state;
  3. one flat loop over a resumable stream of packed batches: warmup + cosine
     LR, grad clipping, validation every eval_interval steps (best weights by
     validation NDCG@10, early stopping; valid_users > 0 scores a fixed seeded
     sample of the validation users), checkpoints every checkpoint_interval.
     The output layer's loss is the full or the sampled softmax (loss=auto
     picks by catalogue size, see loss.py);
  4. the selected weights scored once on validation and on the test split.
Started by torchrun, the same loop runs data parallel (see distributed.py).
The files of a run folder are listed in rundir.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from . import distributed, rundir, tracking
from .config import (Config, add_run_writer_options, apply_overrides, check_dashed_keys, describe, parse_weights,
                     resolve, unresolved)
from .curves import plot_curves
from .data import EvalSet, item_counts, load_like, split_like
from .devices import autocast, pick_device
from .errors import DataError, UsageError
from .evaluate import evaluate, format_metrics, score_report
from .files import append_line, final_path
from .loss import FUTURE_HORIZON, OutputLoss
from .model import GPT
from .packing import IGNORE, count_targets, pack, prefix_weights, trainable_users
from .scoring import gpt_scorer


@dataclass
class TrainState:
    """Everything about the loop's progress that a checkpoint must restore."""
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0          # batches of `epoch` already trained on
    best_ndcg: float = -1.0
    best_step: int = 0
    bad_evals: int = 0               # validations since the last improvement
    history: list = field(default_factory=list)
    loss_sum: float = 0.0            # sum of training losses since the last validation...
    loss_steps: int = 0              # ...over this many steps
    train_seconds: float = 0.0       # time in training steps only (validation excluded), across resumes
    train_tokens: int = 0            # target slots trained on, all processes


class Logger:
    """print (unless quiet) + append to train.log (rank 0 only)."""

    def __init__(self, path: str | None, quiet: bool = False):
        self.path, self.quiet = path, quiet

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        if not self.quiet:
            from tqdm.auto import tqdm
            tqdm.write(line)
        if self.path:
            append_line(self.path, line)


def get_lr(step: int, cfg: Config) -> float:
    """Linear warmup, then cosine decay from learning_rate to min_lr at decay_steps (resolved: 0 = max_steps)."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    if not cfg.decay_lr:
        return cfg.learning_rate
    ratio = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.decay_steps - cfg.warmup_steps))
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


def epoch_batches(train_seqs, cfg: Config, epoch: int, weights=None):
    """The packed rows of one epoch and its batches of row indices (weights: weight_col's,
    parallel to train_seqs.items, carried to the target slots).
    The shuffle depends only on (seed, epoch): a resumed run sees the same batches."""
    rng = np.random.default_rng([cfg.seed, epoch])
    horizon = FUTURE_HORIZON if cfg.future_decay > 0 else 1
    packed = pack(train_seqs, cfg.block_size, rng, packing=cfg.packing, horizon=horizon, weights=weights,
                  context_targets=cfg.context_targets != "none")
    order = rng.permutation(len(packed))
    batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    return packed, batches


def batch_stream(train_seqs, cfg: Config, epoch: int, batch_in_epoch: int, weights=None):
    """Endless (epoch, index, packed epoch, rows), starting after `batch_in_epoch`
    batches of `epoch`: the same stream whether or not the run was interrupted."""
    while True:
        packed, batches = epoch_batches(train_seqs, cfg, epoch, weights)
        if not batches:  # never an endless loop over empty epochs (check_targets refuses this first)
            raise DataError("no training target: the training rows pack into no batch (nothing to learn)")
        for i in range(batch_in_epoch, len(batches)):
            yield epoch, i, packed, batches[i]
        epoch, batch_in_epoch = epoch + 1, 0


def save_checkpoint(path: str, model, optimizer, state: TrainState, cfg: Config, dd, device: str) -> None:
    """Every process takes part (the RNG states are gathered); rank 0 writes."""
    rng_ranks = distributed.gather_rng(dd)
    if not dd.main:
        return
    ck = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
          "state": json.dumps(asdict(state)), "config": json.dumps(cfg.to_dict()),
          "rng_cpu": torch.get_rng_state()}
    if device.startswith("cuda"):
        ck["rng_cuda"] = torch.cuda.get_rng_state()
    if rng_ranks is not None:
        ck["rng_cpu_ranks"] = rng_ranks
    rundir.save_checkpoint(ck, path)


def restore_checkpoint(ck: dict, path: str, model, optimizer, dd, device: str) -> TrainState:
    rundir.load_state(model, ck["model"], path)
    try:
        optimizer.load_state_dict(ck["optimizer"])
    except (ValueError, KeyError) as e:
        raise DataError(f"{path}: optimizer state does not fit the model ({e})") from None
    ranks = ck.get("rng_cpu_ranks")
    same_world = ranks is not None and ranks.shape[0] == dd.world
    # clone: set_rng_state reads a row view of the stacked states from the wrong offset (segfaults)
    torch.set_rng_state(ranks[dd.rank].clone() if same_world else ck["rng_cpu"])
    if device.startswith("cuda") and "rng_cuda" in ck:
        torch.cuda.set_rng_state(ck["rng_cuda"].cpu())
    return TrainState(**json.loads(ck["state"]))


def check_run(cfg: Config, out_dir: str, resume: bool, overwrite: bool, dataset=None):
    """Step 1: every check, no writes.
    -> (device, dataset, split, data fingerprint, (content tables, coverage lines), checkpoint or None)."""
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
    if ds.weights is not None and cfg.method not in ("gpt", "transitions", "cooccurrence"):
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
    from .content import load_content
    coverage = []  # the content tables' coverage lines, logged once there is a log
    content = load_content(cfg.content, ds.item_ids, log=coverage.append) if cfg.content else []
    return device, ds, sp, fp, (content, coverage), ck


def check_targets(ds, sp, cfg: Config) -> None:
    """Per-event weights (target_filter, weight_col) must leave a training target of weight > 0
    where packing takes targets; none at all would leave every epoch without a batch."""
    if ds.weights is None:
        return
    weights = prefix_weights(ds.sequences, ds.weights, sp.train)
    if len(trainable_users(sp.train, cfg.block_size, weights)):
        return
    n = int((ds.weights > 0).sum())
    why = f"target_filter={cfg.target_filter!r} matches {n:,} events" if cfg.target_filter else \
        f"{n:,} events have a weight > 0"
    hint = "; holdout=none trains on every event" if cfg.holdout != "none" else ""
    raise DataError(f"{ds.path}: no training target left: {why}, none of them a training target (each is held "
                    f"out for validation or test by holdout={cfg.holdout}, or first in its user's history){hint}")


def run(cfg: Config, out_dir: str, resume: bool = False, overwrite: bool = False, quiet: bool = False,
        dataset=None, score_test: bool = True, on_validation=None, start=None) -> dict:
    """Train per `cfg` into `out_dir`; returns the metrics dict also written to metrics.json.

    dataset: an already loaded `data.Dataset` (e.g. from a DataFrame) instead of reading cfg.data.
    score_test: False leaves the test split unscored (a tuner's trials select on validation only).
    on_validation(step, record) -> bool: called after each validation pass; True stops the run.
    start: an update's starting point (update.Start): the weights a new run starts from, the
    training rows its batches are drawn from, and metrics.json's "update" entry.
    The run folder is a transaction (rundir.RunFolder): a new run is built in a hidden sibling
    of out_dir and renamed into place when complete (--overwrite replaces the old run only
    then), and a second writer of out_dir is refused while this one holds its lock."""
    folder = rundir.RunFolder(out_dir, resume, overwrite)
    try:
        return _run(folder, cfg, out_dir, resume, overwrite, quiet, dataset, score_test, on_validation, start)
    finally:
        folder.close()  # the lock released; a new run that stopped before its first checkpoint removed


def _run(folder, cfg: Config, out_dir: str, resume: bool, overwrite: bool, quiet: bool,
         dataset, score_test: bool, on_validation, start=None) -> dict:
    # -------------------------------------------------------------------------
    # 1. check everything before anything is written
    device, ds, sp, fp, (content, coverage), ck = check_run(cfg, out_dir, resume, overwrite, dataset)
    n_valid = len(sp.valid.targets) if sp.valid is not None else 0
    train_weights = None if ds.weights is None else prefix_weights(ds.sequences, ds.weights, sp.train)
    train_seqs = sp.train
    if start is not None:  # an update: the users with new events and a replay sample (update.py)
        train_seqs, train_weights = start.batches_from(sp.train, train_weights)
    # every auto key -> the value used, once (config.py); config.json saves these. num_negatives=auto
    # needs the epochs max_steps covers: one packing of epoch 0 (~0.1 s), only when it applies
    given = cfg
    batches = functools.cache(lambda: len(epoch_batches(train_seqs, given, 0, train_weights)[1]))
    cfg = resolve(given, ds.num_items, n_valid, batches)
    # validation: all users, or a fixed seeded sample (valid_users); it selects and it is what is reported
    sp = dataclasses.replace(sp, valid=validation_sample(sp.valid, cfg.valid_users, cfg.seed, ds.num_items))
    if cfg.method != "gpt":  # a baseline: fitted, not trained; the same run folder (baseline_run.py)
        from . import baseline_run
        work = folder.start(cfg, ds, fp)
        results = baseline_run.fit(cfg, work, ds, sp, score_test, Logger(os.path.join(work, rundir.LOG), quiet), folder.notes)
        folder.commit()
        return results

    # -------------------------------------------------------------------------
    # 2. set up: processes, the run folder, model, optimizer, resumed state
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    dd, device = distributed.setup(device)  # under torchrun: one device per process
    torch.manual_seed(cfg.seed + dd.rank)   # rank 0's initial weights are broadcast; the rank varies dropout only
    if dd.main:  # from here on out_dir is the folder written: a new run's hidden sibling, or the resumed run
        out_dir = folder.start(cfg, ds, fp)
    log = Logger(os.path.join(out_dir, rundir.LOG) if dd.main else None, quiet or not dd.main)
    for line in folder.notes:
        log(line)
    n_targets, n_context = count_targets(sp.train, cfg.block_size, sp.train.weights)  # views are no targets
    context = f" ({cfg.target_filter}), {n_context:,} context events" if n_context else ""
    log(f"data {ds.path}: {len(ds.user_ids):,} users, {ds.num_items:,} items, "
        f"{len(ds.sequences.items):,} interactions; {n_targets:,} training targets{context}; holdout={cfg.holdout}: "
        f"valid {n_valid:,} users, test {len(sp.test.targets) if sp.test else 0:,} users"
        + (f"; ignored columns: {', '.join(ds.ignored_columns)}" if ds.ignored_columns else ""))
    for line in coverage:
        log(line)
    if sp.valid is not None and cfg.holdout in ("loo", "last") and ds.sequences.has_context():
        from .data import funnel_note
        log(funnel_note(ds.sequences, 1 if sp.test is not None else 0))
    if sp.valid is not None and len(sp.valid.targets) < n_valid:
        log(f"validation: a fixed sample of {len(sp.valid.targets):,} of {n_valid:,} users (valid_users={given.valid_users}"
            + (", auto: users x items above train.VALID_WORK" if "valid_users" in cfg.auto else "") + ")")

    model = GPT(cfg, ds.num_items, content).to(device)
    if start is not None and ck is None:  # an update goes on from the old run's weights (update.py)
        rundir.load_state(model, start.weights, start.source)
    optimizer = model.configure_optimizer(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                          device.split(":")[0])
    log(f"model: {model.num_params():,} parameters, {cfg.n_layer} layers, {cfg.n_head} heads, "
        f"d={cfg.n_embd}, dropout {cfg.dropout:g}{' (auto)' if 'dropout' in cfg.auto else ''}, "
        f"attention={cfg.attention}, device={device}"
        + (f", {dd.world} processes x {cfg.batch_size / dd.world:g} rows" if dd.enabled else ""))
    if cfg.warmup_steps > cfg.max_steps:  # allowed (a short trial run keeps its defaults) but rarely meant
        log(f"warning: warmup_steps={cfg.warmup_steps} > max_steps={cfg.max_steps}: the run never leaves warmup "
            f"(the learning rate rises to {cfg.max_steps / cfg.warmup_steps:.0%} of learning_rate and never decays)")
    train_model = distributed.wrap(model, dd, device)  # DDP under torchrun, else the model itself
    if cfg.compile or cfg.attention == "flex":  # flex uncompiled rebuilds its block mask eagerly: 10x slower steps
        model.compile_for_training()
    ckpt_path = os.path.join(out_dir, rundir.CKPT)
    state = TrainState()
    if ck is not None:
        state = restore_checkpoint(ck, ckpt_path, model, optimizer, dd, device)
        if dd.main:  # history.jsonl may hold passes made after the checkpoint: rewrite it from the state
            rundir.rewrite_history(out_dir, state.history)
        log(f"resumed from step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})")
    scorer = gpt_scorer(model, device)
    ctx = autocast(cfg.dtype, device)
    trackers = tracking.Trackers(cfg.track, out_dir, cfg.to_dict()) if dd.main and cfg.track else None

    # -------------------------------------------------------------------------
    # 3. the training loop
    from tqdm.auto import tqdm
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True,
               disable=True if quiet or not cfg.progress or not dd.main else None,  # None: quiet when not a terminal
               mininterval=1.0)
    # a resumed run that had already stopped early stays stopped
    stop = bool(cfg.patience and state.bad_evals >= cfg.patience and not cfg.all_data and sp.valid is not None)
    loss_sum = torch.tensor(state.loss_sum, dtype=torch.float64, device=device)  # no host sync per step
    auto_note = f", num_negatives=0, auto: max_steps covers {cfg.max_steps / batches():.1f} epochs" \
        if cfg.loss == "sampled" and "num_negatives" in cfg.auto else ""
    output = OutputLoss(cfg.loss, ds.num_items, item_counts(sp.train, ds.num_items), cfg.num_negatives, cfg.negatives,
                        cfg.seed, cfg.future_decay)
    log(f"output layer: {output.describe()} (loss={given.loss}{auto_note})")
    stream = batch_stream(train_seqs, cfg, state.epoch, state.batch_in_epoch, train_weights)
    model.train()
    t0 = time.time()
    # epoch lines: the first, every 10th, and any whose packing efficiency is more than 1 point outside the
    # range logged so far (each epoch's shuffle moves it a little: a line per epoch would say nothing new)
    efficiency_range = None  # (lowest, highest) logged
    while state.step < cfg.max_steps and not stop:
        epoch, index, packed, batch_rows = next(stream)
        if index == 0:
            lo, hi = efficiency_range or (packed.efficiency, packed.efficiency)
            if efficiency_range is None or epoch % 10 == 0 or not lo - 0.01 <= packed.efficiency <= hi + 0.01:
                log(f"epoch {epoch}: {len(packed):,} rows of {cfg.block_size}, "
                    f"packing efficiency {packed.efficiency:.1%}")
                efficiency_range = (min(lo, packed.efficiency), max(hi, packed.efficiency))
        # this process's share of the global batch; weight makes DDP's average the global mean
        rows, weight = distributed.shard_rows(batch_rows, packed.targets, dd, packed.weights)
        t = lambda a: torch.from_numpy(a[rows]).to(device, non_blocking=True)
        tokens, seq_ids, pos_ids = t(packed.tokens), t(packed.seq_ids), t(packed.pos_ids)
        targets = torch.from_numpy(packed.target_slots(rows)).to(device, non_blocking=True)  # (B, T) or (B, T, H)

        lr = get_lr(state.step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with ctx:
            # sampled negatives depend on (seed, step, rank) only: a resume draws the same ones
            loss = train_model(tokens, pos_ids, seq_ids, targets,
                               loss_fn=output.for_step(state.step, dd.rank, slot_weights(packed, rows, device)))
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
            train_loss = distributed.global_mean(loss_sum.item() / state.loss_steps, 1.0, dd, device)
            state.train_seconds += time.time() - t0
            if dd.main:  # rank 0 validates and decides; the others wait for its decision
                stop = validate_and_select(model, scorer, sp, cfg, state, train_loss, lr, out_dir, log)
                if trackers is not None:
                    trackers.log(state.history[-1])
                if on_validation is not None and on_validation(state.step, state.history[-1]):
                    stop = True
                bar.set_postfix(loss=f"{train_loss:.3f}", best=f"{state.best_ndcg:.4f}", refresh=False)
            stop = distributed.broadcast_flag(stop, dd, device)
            loss_sum.zero_()
            state.loss_steps = 0
            t0 = time.time()
        if state.step % cfg.checkpoint_interval == 0 or stop or state.step == cfg.max_steps:
            state.loss_sum = loss_sum.item()
            state.train_seconds += time.time() - t0
            save_checkpoint(ckpt_path, model, optimizer, state, cfg, dd, device)
            t0 = time.time()
    bar.close()
    distributed.barrier(dd)
    if not dd.main:  # rank 0 alone scores the selected weights and writes the results
        distributed.cleanup(dd)
        return {}

    # -------------------------------------------------------------------------
    # 4. the selected weights, scored once on validation and on the test split
    results = final_evaluation(model, scorer, ds, sp if score_test else dataclasses.replace(sp, test=None),
                               cfg, state, out_dir, log, extra={"update": start.record} if start else None,
                               beyond_users=start.beyond_users if start else 0)
    if trackers is not None:
        trackers.close()
    folder.commit()  # a new run renamed into place
    distributed.cleanup(dd)
    return results


def slot_weights(packed, rows, device):
    """(M,) the weights of the rows' target slots (weight_col), in the order the model selects
    the slots (row-major over targets != IGNORE); None when the run is unweighted."""
    if packed.weights is None:
        return None
    keep = packed.targets[rows] != IGNORE
    return torch.from_numpy(packed.weights[rows][keep]).to(device)


def validate_and_select(model, scorer, sp, cfg: Config, state: TrainState, train_loss: float, lr: float,
                        out_dir: str, log) -> bool:
    """One validation pass: record it, keep the best weights, decide on early stopping (-> stop).
    Without a validation split (holdout=none) there is nothing to select: keep the last weights."""
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
    record.update({
                   "lr": lr, "train_seconds": round(state.train_seconds, 2),
                   "valid_seconds": round(time.time() - t_valid, 2)})
    state.history.append(record)
    rundir.append_history(out_dir, record)
    valid = (f"valid ({m['users']:,} users) loss {m['loss']:.4f} {format_metrics(m)}{' *' if improved else ''}"
             if sp.valid else "no validation")
    log(f"step {state.step} epoch {state.epoch}: loss {train_loss:.4f} lr {lr:.2e} | {valid} | {rate:,.0f} train tokens/s")
    if cfg.patience and state.bad_evals >= cfg.patience and not cfg.all_data and sp.valid is not None:
        log(f"early stop: no better validation NDCG@10 in {state.bad_evals} evaluations")
        return True
    return False


# valid_users=0 (auto): validate on every validation user while users x items stays under this many
# scores, else on a fixed sample of VALID_WORK // items users. A validation pass (and each fusion
# weight tried) costs at most about that many scores, so auto bounds its time whatever the size
# (benchmarks/results/seed_scale_cpu.json: validation seconds at 26,797 users x 74,633 items), and every
# validation user of LastFM, Beauty, Sports and Beauty + Sports (57,961 x 30,458 = 1.8e9) is kept.
# The sample's own noise: NDCG@10 standard error ~ sd / sqrt(users), about 0.002 at 27k users
# (scale_cpu.json: popularity's validation MAP@10 on all 720k users 0.0499, on a 20k sample 0.0503).
VALID_WORK = 2_000_000_000


# The validation loss (a curve to watch, never a selection criterion) is the mean over the first this
# many validation users: it needs every item's score for each user, while NDCG@10 and HR@10 stop a user
# as soon as its rank is known to be beyond 20 (evaluate.factor_ranks), so on a large catalogue the
# loss over every user would cost most of a validation pass (standard error at 5,000 users: ~0.03).
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
    """The validation users that select (checkpoints, early stopping, fusion weights) and
    are reported: all of them, or a fixed sample of n drawn once from (seed, 1), in the
    set's order (n = 0: the auto rule, validation_users). A subset of the validation set,
    so it never holds a test target."""
    if valid is None:
        return valid
    n = validation_users(len(valid.targets), n, num_items) if n == 0 else n
    if n >= len(valid.targets):
        return valid
    rows = np.sort(np.random.default_rng([seed, 1]).choice(len(valid.targets), size=n, replace=False))
    return EvalSet(valid.users[rows], valid.histories.take(rows), valid.targets[rows])


def final_evaluation(model, scorer, ds, sp, cfg: Config, state: TrainState, out_dir: str, log,
                     extra: dict | None = None, beyond_users: int = 0) -> dict:
    """The selected weights scored once; metrics.json written (with `extra`'s entries).
    beyond_users: evaluate.score_report's (an update's sample)."""
    rundir.load_weights(model, os.path.join(out_dir, rundir.WEIGHTS))
    results, tables = {}, None
    from .fusion import enabled
    if enabled(cfg.fuse_transitions):  # the selected GPT + item-to-item tables (fusion.py)
        scorer, results["fusion"], tables, results["fusion_seconds"] = fuse(model, scorer, ds, sp, cfg, out_dir, log)
    from .fusion import content_term
    from .seen import decide, log_line
    exclude_seen, results["exclude_seen"] = decide(scorer, sp.valid, cfg, cfg.eval_batch_size)  # on the shipped scorer
    log(log_line(results["exclude_seen"]))
    vectors = content_term(model).vectors if len(model.content) else None  # intra-list similarity
    results.update(score_report(scorer, sp, ds.num_items, item_counts(sp.train, ds.num_items), cfg.eval_batch_size,
                                vectors, cfg.split_time, cfg.seed, beyond_users, exclude_seen))
    if "test_ranks" in results:  # per-user ranks, for breakdowns
        rundir.save_array(os.path.join(out_dir, rundir.TEST_RANKS), results.pop("test_ranks"))
    protocol = results["protocol"]
    results.update({
        "best_step": state.best_step, "steps": state.step, "epochs": state.epoch,
        "holdout": cfg.holdout,
        "selection": "last step (holdout=none: no validation)" if sp.valid is None
                     else "last step (all_data: validation targets were trained on)" if cfg.all_data
                     else "best validation NDCG@10",
        "packing_efficiency": round(pack(sp.train, cfg.block_size, packing=cfg.packing).efficiency, 4),
        "train_seconds": round(state.train_seconds, 1),
        "train_tokens_per_second": round(state.train_tokens / max(state.train_seconds, 1e-9)),
        "history": state.history,
    })
    from . import beside
    # popularity and transitions on the same split (a fused run's own transitions table is that baseline)
    results["baselines"] = beside.baselines(ds, sp, cfg, transitions=tables[0] if tables else None,
                                            beyond_users=beyond_users, exclude_seen=exclude_seen)
    results.update(extra or {})
    from .files import write_json
    write_json(os.path.join(out_dir, rundir.METRICS), results)
    plot_curves(state.history, os.path.join(out_dir, "curves.png"), f"{ds.name}: {cfg.n_layer} layers, d={cfg.n_embd}",
                fused=results["valid"]["NDCG@10"] if "fusion" in results and "valid" in results else None)
    if "valid" in results:
        log(f"valid [{protocol['valid']}] (step {state.best_step}): {format_metrics(results['valid'], ks=(10,))}")
    if "test" in results:
        log(f"test  [{protocol['test']}] (step {state.best_step}): {format_metrics(results['test'], ks=(10,))}")
    log(f"wrote {final_path(out_dir)}/{rundir.WEIGHTS}, {rundir.METRICS} ({state.train_seconds:.0f} s training)"
        + beside.summary(results))
    return results


def fuse(model, scorer, ds, sp, cfg: Config, out_dir: str, log):
    """Fit the item-to-item tables on the training split, choose the weights on validation, save them.
    -> (the fused scorer, metrics.json's "fusion" entry, the tables [transitions, cooccurrence], seconds)."""
    from . import fusion
    t0 = time.time()
    # chosen on the validation users (valid_users: all, or the sample); all_data trained the GPT and
    # the tables on those targets, so they cannot choose: like holdout=none
    valid = None if cfg.all_data else sp.valid
    fixed = None if cfg.fusion_weights == "auto" else parse_weights(cfg.fusion_weights)
    content = fusion.content_term(model)
    tables, weights, grid, search_s = fusion.fit(scorer, sp.train, ds.num_items, valid, cfg.eval_batch_size, fixed,
                                                 content)
    rundir.save_fusion(out_dir, tables, weights)
    named = dict(zip(fusion.SIGNALS, weights))
    how = (f"chosen on validation: NDCG@10 {grid[','.join(str(w) for w in weights)]:.4f} "
           f"({len(grid)} weight tuples tried in {search_s:.0f} s), "
           f"GPT alone {grid['0.0,0.0,0.0']:.4f}" if grid
           else "fusion_weights" if fixed else "no untrained validation to choose on: the default")
    log("fusion weights: " + ", ".join(f"{k} {w}" for k, w in named.items()) + f" ({how})")
    from .run import shipped_scorer  # the scorer the run ships: the one Run.open builds
    return (shipped_scorer(model, fusion=(tables, weights), gpt=scorer),
            {"weights": named, "valid_NDCG@10": grid[",".join(str(w) for w in weights)] if grid else None,
             "search_seconds": search_s, "valid_NDCG@10_by_weights": grid}, tables, round(time.time() - t0, 1))


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="nanorec train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a GPT next-item recommender; every Config key can be set as key=value.",
        epilog="config keys (key=value, [valid range]; the run's config.json holds each auto as the value used,\n"
               "and lists those keys under \"auto\"):\n" + describe() + "\n\nexamples:\n"
               "  nanorec train --data Beauty.txt --out runs/beauty n_layer=2 dropout=0.5\n"
               "  nanorec train --data events.csv --out runs/shop user_col=customer item_col=sku time_col=ts\n"
               "      # an events table with its own column names (one row per event)\n"
               "  nanorec train --out runs/beauty --resume              # after a crash or kill\n"
               "  nanorec train --out runs/beauty --resume max_steps=6000   # go on for longer\n"
               "  nanorec train --data Beauty.txt --out runs/beauty --overwrite   # replace the old run\n"
               "  torchrun --standalone --nproc_per_node=4 -m nanorec.cli train --data Beauty.txt --out runs/b4\n"
               "      # data parallel: batch_size stays the global batch, split across the processes")
    p.add_argument("--data", help="interactions: S3-Rec .txt, .csv/.tsv/.parquet, or a challenge folder")
    p.add_argument("--out", required=True,
                   help="run folder to write (must be empty or absent, unless --overwrite); a new run is built in a "
                        "hidden folder beside it and renamed to --out when complete; one writer at a time")
    add_run_writer_options(
        p, resume_help="continue from RUN_DIR/ckpt.pt (or a new run into RUN_DIR that was killed before it was "
                       "complete) with its saved config (only " + ", ".join(rundir.RESUMABLE_KEYS) + " may change)",
        overwrite_help="replace the run already in --out (only when the new one is complete; a folder holding "
                       "files that are not a run's is refused)")
    check_dashed_keys(argv, p._option_string_actions)
    return p.parse_intermixed_args(argv)  # key=value before or after the options


def main(argv) -> int:
    args = parse_args(argv)
    if not args.out.strip():
        raise UsageError("--out: empty; expected the run folder")
    resumed = rundir.resume_dir(args.out) if args.resume else None
    if args.resume and not os.path.exists(os.path.join(resumed, rundir.CONFIG)):
        raise DataError(f"{args.out}: nothing to resume (no {rundir.CONFIG})")
    cfg = unresolved(rundir.read_config(resumed)) if args.resume else Config()
    cfg = apply_overrides(cfg, args.overrides)
    if args.data:
        cfg.data = args.data
    if not cfg.data:
        raise UsageError("--data is required (or data=PATH)")
    run(cfg, args.out, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)
    return 0
