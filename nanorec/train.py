"""Train a GPT recommender.

    nanorec train --data PATH --out RUN_DIR [key=value ...] [--resume]

Reads top to bottom: config -> data -> model and optimizer -> training loop
(packed batches, warmup + cosine LR, grad clipping, validation every
eval_interval steps, best checkpoint by validation NDCG@10, early stopping,
resumable checkpoints) -> the test split scored once with the best weights.
Started by torchrun, the same loop runs data parallel (see distributed.py):
each process trains on its share of every global batch; rank 0 validates and
writes the files.

The run directory is self-describing:
    config.json        the resolved Config
    items.json         internal index -> original item id (index 0 = padding, null)
    model.safetensors  the best weights (by validation NDCG@10; the last ones with all_data)
    metrics.json       {"valid": {...}, "test": {...}, "best_step": ..., ...}
    test_ranks.npy     (M,) rank of each test user's target (split.test order), for breakdowns
    train.log          what was printed
    ckpt.pt            the latest resumable state (weights_only-loadable)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch

from . import distributed
from .config import Config, apply_overrides, describe
from .data import DataError, load, split
from .evaluate import evaluate, format_metrics, protocol_line
from .inference import autocast, load_content, make_scorer, pick_device, write_items
from .model import GPT
from .packing import pack


class Logger:
    """print + append to train.log."""

    def __init__(self, path: str | None, quiet: bool = False):
        self.path, self.quiet = path, quiet

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        if not self.quiet:
            from tqdm import tqdm
            tqdm.write(line)
        if self.path:
            with open(self.path, "a") as f:
                f.write(line + "\n")


def get_lr(step: int, cfg: Config) -> float:
    """Linear warmup, then cosine decay from learning_rate to min_lr at decay_steps (default max_steps)."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    if not cfg.decay_lr:
        return cfg.learning_rate
    decay_steps = cfg.decay_steps or cfg.max_steps
    ratio = min(1.0, (step - cfg.warmup_steps) / max(1, decay_steps - cfg.warmup_steps))
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


def epoch_batches(train_seqs, cfg: Config, epoch: int):
    """The packed rows of one epoch, in batches of cfg.batch_size rows.
    The shuffle depends only on (seed, epoch): a resumed run sees the same batches."""
    rng = np.random.default_rng([cfg.seed, epoch])
    packed = pack(train_seqs, cfg.block_size, rng, packing=cfg.packing)
    order = rng.permutation(len(packed))
    batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    return packed, batches


def _atomic_torch_save(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_safetensors(model, path):
    from safetensors.torch import save_file
    tmp = path + ".tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, path)


def run(cfg: Config, out_dir: str, resume: bool = False, quiet: bool = False) -> dict:
    """Train per `cfg` into `out_dir`; returns the metrics dict also written to metrics.json."""
    # -------------------------------------------------------------------------
    # setup
    ckpt_path = os.path.join(out_dir, "ckpt.pt")
    if resume and not os.path.exists(ckpt_path):
        raise DataError(f"{out_dir}: nothing to resume (no ckpt.pt)")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    t_start = time.time()

    # -------------------------------------------------------------------------
    # data
    ds = load(cfg.data, cfg.user_col, cfg.item_col, cfg.time_col)
    sp = split(ds, all_data=cfg.all_data)
    if sp.train.lengths.max(initial=0) < 2:
        raise DataError(f"{cfg.data}: no user has two training items: nothing to learn")
    # under torchrun: join the process group (after the data checks, so bad data exits cleanly),
    # one device per process (see distributed.py)
    dd, device = distributed.setup(pick_device(cfg.device))
    device_type = device.split(":")[0]
    # rank 0's initial weights are broadcast to all; the seed per rank only varies dropout
    torch.manual_seed(cfg.seed + dd.rank)
    ctx = autocast(cfg, device)
    # only now, with the data known to be good, touch the run directory (rank 0 writes every file)
    if dd.main:
        os.makedirs(out_dir, exist_ok=True)
        if not resume:  # a fresh run never mixes with an older one's files
            for name in ("train.log", "metrics.json", "ckpt.pt", "model.safetensors"):
                if os.path.exists(os.path.join(out_dir, name)):
                    os.remove(os.path.join(out_dir, name))
        write_items(out_dir, ds.item_ids)
        cfg.save(os.path.join(out_dir, "config.json"))
    log = Logger(os.path.join(out_dir, "train.log"), quiet) if dd.main else Logger(None, quiet=True)
    n_train_tokens = int(np.maximum(np.minimum(sp.train.lengths - 1, cfg.block_size), 0).sum())
    log(f"data {cfg.data}: {len(ds.user_ids):,} users, {ds.num_items:,} items, "
        f"{len(ds.sequences.items):,} interactions; {n_train_tokens:,} training targets; "
        f"valid {len(sp.valid.targets):,} users, test {len(sp.test.targets) if sp.test else 0:,} users")

    # -------------------------------------------------------------------------
    # model and optimizer
    content = load_content(cfg, ds.item_ids, log)
    model = GPT(cfg, ds.num_items, content).to(device)
    optimizer = model.configure_optimizer(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), device_type)
    log(f"model: {model.num_params():,} parameters, {cfg.n_layer} layers, {cfg.n_head} heads, "
        f"d={cfg.n_embd}, attention={cfg.attention}, device={device}"
        + (f", {dd.world} processes x {cfg.batch_size / dd.world:g} rows" if dd.enabled else ""))
    train_model = distributed.wrap(model, dd, device)  # DDP under torchrun, else the model itself
    train_model = torch.compile(train_model) if cfg.compile else train_model
    scorer = make_scorer(model, cfg, device)

    step, epoch, batch_in_epoch = 0, 0, 0
    best = {"NDCG@10": -1.0, "step": 0}
    bad_evals, history = 0, []
    if resume:
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        step, epoch, batch_in_epoch = ck["step"], ck["epoch"], ck["batch_in_epoch"]
        best, bad_evals, history = json.loads(ck["best"]), ck["bad_evals"], json.loads(ck["history"])
        ranks = ck.get("rng_cpu_ranks")
        same_world = ranks is not None and ranks.shape[0] == dd.world
        # clone: set_rng_state reads a row view of the stacked states from the wrong offset (segfaults)
        torch.set_rng_state(ranks[dd.rank].clone() if same_world else ck["rng_cpu"])
        if device_type == "cuda" and "rng_cuda" in ck:
            torch.cuda.set_rng_state(ck["rng_cuda"].cpu())
        log(f"resumed from step {step} (epoch {epoch}, batch {batch_in_epoch})")

    def validate():
        return evaluate(scorer, sp.valid, batch_size=cfg.eval_batch_size, with_loss=True)

    def save_checkpoint():
        rng_ranks = distributed.gather_rng(dd)  # a collective: every process takes part
        if not dd.main:
            return
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                 "best": json.dumps(best), "bad_evals": bad_evals, "history": json.dumps(history),
                 "rng_cpu": torch.get_rng_state(), "config": json.dumps(cfg.to_dict())}
        if device_type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state()
        if rng_ranks is not None:
            state["rng_cpu_ranks"] = rng_ranks
        _atomic_torch_save(state, ckpt_path)

    # -------------------------------------------------------------------------
    # training loop
    from tqdm import tqdm
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train", unit="step",
               disable=quiet or not cfg.progress or not dd.main, dynamic_ncols=True)
    model.train()
    # a resumed run that had already stopped early stays stopped
    stop = bool(cfg.patience and bad_evals >= cfg.patience and not cfg.all_data)
    tokens_seen, t_loop = 0, time.time()
    while step < cfg.max_steps and not stop:
        packed, batches = epoch_batches(sp.train, cfg, epoch)
        if batch_in_epoch == 0:
            log(f"epoch {epoch}: {len(packed):,} rows of {cfg.block_size}, packing efficiency {packed.efficiency:.1%}")
        while batch_in_epoch < len(batches) and step < cfg.max_steps:
            # this process's share of the global batch; weight makes DDP's average the global mean
            batch_rows = batches[batch_in_epoch]
            rows, weight = distributed.shard_rows(batch_rows, packed.targets, dd)
            t = lambda a: torch.from_numpy(a[rows]).to(device, non_blocking=True)
            tokens, targets, seq_ids, pos_ids = t(packed.tokens), t(packed.targets), t(packed.seq_ids), t(packed.pos_ids)

            lr = get_lr(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with ctx:
                loss = train_model(tokens, pos_ids, seq_ids, targets)
            optimizer.zero_grad(set_to_none=True)
            (loss * weight).backward()  # weight is 1.0 on a single process
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            batch_in_epoch += 1
            tokens_seen += int((packed.targets[batch_rows] != -100).sum())  # all processes'
            if dd.main:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.1e}", epoch=epoch)

            if step % cfg.eval_interval == 0 or step == cfg.max_steps:
                train_loss = distributed.global_mean(loss.item(), weight, dd, device)
                if dd.main:  # rank 0 validates and decides; the others wait for its decision
                    rate = tokens_seen / max(time.time() - t_loop, 1e-9)  # since the loop began, earlier validations included
                    m = validate()
                    history.append({"step": step, "epoch": epoch, "train_loss": round(train_loss, 4),
                                    "valid_loss": round(m["loss"], 4),
                                    **{k: m[k] for k in ("NDCG@10", "HR@10", "MAP@10")}})
                    improved = m["NDCG@10"] > best["NDCG@10"]
                    if improved or cfg.all_data:  # all_data has no selection of its own: keep the last
                        best = {"NDCG@10": m["NDCG@10"], "step": step}
                        _atomic_safetensors(model, os.path.join(out_dir, "model.safetensors"))
                        bad_evals = 0
                    else:
                        bad_evals += 1
                    log(f"step {step} epoch {epoch}: loss {train_loss:.4f} lr {lr:.2e} | valid loss {m['loss']:.4f} "
                        f"{format_metrics(m)}{' *' if improved else ''} | {rate:,.0f} train tokens/s")
                    if cfg.patience and bad_evals >= cfg.patience and not cfg.all_data:
                        log(f"early stop: no better validation NDCG@10 in {bad_evals} evaluations")
                        stop = True
                stop = distributed.broadcast_flag(stop, dd, device)
            if step % cfg.checkpoint_interval == 0 or stop or step == cfg.max_steps:
                save_checkpoint()
            if stop:
                break
        if batch_in_epoch >= len(batches):
            epoch, batch_in_epoch = epoch + 1, 0
    bar.close()
    train_seconds = time.time() - t_start
    distributed.barrier(dd)
    if not dd.main:  # rank 0 alone scores the selected weights and writes the results
        distributed.cleanup(dd)
        return {}

    # -------------------------------------------------------------------------
    # final evaluation with the selected weights: validation, then test once
    from safetensors.torch import load_file
    model.load_state_dict(load_file(os.path.join(out_dir, "model.safetensors")))
    t_eval = time.time()
    results = {"valid": evaluate(scorer, sp.valid, batch_size=cfg.eval_batch_size)}
    if sp.test is not None:
        results["test"], test_ranks = evaluate(scorer, sp.test, batch_size=cfg.eval_batch_size, return_ranks=True)
        np.save(os.path.join(out_dir, "test_ranks.npy"), test_ranks)  # per-user ranks, for breakdowns
    results.update({
        "best_step": best["step"], "steps": step, "epochs": epoch,
        "selection": "last step (all_data: validation targets were trained on)" if cfg.all_data
                     else "best validation NDCG@10",
        "protocol": protocol_line(ds.num_items, len(sp.valid.targets)),
        "packing_efficiency": round(pack(sp.train, cfg.block_size, packing=cfg.packing).efficiency, 4),
        "train_seconds": round(train_seconds, 1), "eval_seconds": round(time.time() - t_eval, 1),
        "history": history,
    })
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(results, f, indent=2)
    log(f"protocol: {results['protocol']}")
    log(f"valid (step {best['step']}): {format_metrics(results['valid'], ks=(10,))}")
    if "test" in results:
        log(f"test  (step {best['step']}): {format_metrics(results['test'], ks=(10,))}")
    log(f"wrote {out_dir}/model.safetensors, metrics.json ({train_seconds:.0f} s training)")
    distributed.cleanup(dd)
    return results


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="nanorec train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a GPT next-item recommender; every Config key can be set as key=value.",
        epilog="config keys (key=value):\n" + describe() + "\n\nexample:\n"
               "  nanorec train --data Beauty.txt --out runs/beauty n_layer=2 dropout=0.5\n"
               "  nanorec train --data Beauty.txt --out runs/beauty --resume   # after a crash or kill\n"
               "  torchrun --standalone --nproc_per_node=4 -m nanorec.cli train --data Beauty.txt --out runs/b4\n"
               "      # data parallel: batch_size stays the global batch, split across the processes")
    p.add_argument("--data", help="interactions: S3-Rec .txt, .csv/.parquet, or a challenge folder")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/ckpt.pt with its saved config")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines on the terminal")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    return p.parse_args(argv)


def main(argv) -> int:
    from .cli import UsageError

    args = parse_args(argv)
    if args.resume:
        path = os.path.join(args.out, "config.json")
        if not os.path.exists(path):
            raise DataError(f"{args.out}: nothing to resume (no config.json)")
        cfg = Config.load(path)
    else:
        cfg = Config()
    try:
        cfg = apply_overrides(cfg, args.overrides)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.data:
        cfg.data = args.data
    if not cfg.data:
        raise UsageError("--data is required")
    if cfg.attention not in ("sdpa", "flex"):
        raise UsageError(f"attention={cfg.attention!r}: expected sdpa or flex")
    if cfg.attention == "flex" and pick_device(cfg.device) == "cpu":
        raise UsageError("attention=flex trains on CUDA only (FlexAttention has no backward on CPU); use attention=sdpa")
    run(cfg, args.out, resume=args.resume, quiet=args.quiet)
    return 0
