"""Training throughput of the two output layers (full softmax vs sampled softmax) by catalogue size.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/output_layer.py ../shared/data/beauty/Beauty.txt \
        --synthetic 25000 50000 78000 [--steps 20] [--threads 2]

For each data set (a path, or a synthetic challenge-shaped log with that many
items and 2.43M x items/78k rows from nanorec.data.synthetic.generate_fast), times
`steps` optimizer steps of the default Config (after 3 warm-up steps) with
loss=full and loss=sampled for each kind of negatives, and reports target
tokens per second. This is what nanorec.core.loss.AUTO_SAMPLED_ABOVE is read from.
Writes benchmarks/results/output_layer.json.
"""
import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from nanorec.config import Config, resolve  # noqa: E402
from nanorec.data import item_counts, load, split  # noqa: E402
from nanorec.runs.files import write_json  # noqa: E402
from nanorec.core.loss import AUTO_NEGATIVES, OutputLoss  # noqa: E402
from nanorec.core.model import GPT  # noqa: E402
from nanorec.core.train import epoch_batches  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("data", nargs="*")
p.add_argument("--synthetic", nargs="*", type=int, default=[], help="synthetic catalogue sizes")
p.add_argument("--steps", type=int, default=20)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--negatives", nargs="*", default=["popularity", "uniform", "in_batch"])
p.add_argument("--num-negatives", nargs="*", type=int, default=[AUTO_NEGATIVES],
               help="sampled softmax: time each of these numbers of negatives (rows sampled_KIND_S beyond the first)")
p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "output_layer.json"))
args = p.parse_args()
torch.set_num_threads(args.threads)


def datasets():
    for path in args.data:
        yield os.path.basename(path), load(path)
    for n in args.synthetic:
        import polars as pl
        from nanorec.data.synthetic import generate_fast
        rows = int(round(2_430_000 * n / 78_000))
        u, i, t = generate_fast(rows, n, int(round(720_000 * n / 78_000)), seed=0)
        yield f"synthetic_{n}_items", load(pl.DataFrame({"user_id": u, "item_id": i, "timestamp": t}))


def throughput(cfg, ds, sp, kind, negatives, num_negatives=None):
    torch.manual_seed(cfg.seed)
    model = GPT(resolve(cfg, ds.num_items), ds.num_items)
    opt = model.configure_optimizer(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), "cpu")
    output = OutputLoss(kind, ds.num_items, item_counts(sp.train, ds.num_items), num_negatives or AUTO_NEGATIVES,
                        negatives, cfg.seed)
    packed, batches = epoch_batches(sp.train, cfg, 0)

    def step(i):
        rows = batches[i % len(batches)]
        t = lambda a: torch.from_numpy(a[rows])
        loss = model(t(packed.tokens), t(packed.pos_ids), t(packed.seq_ids), t(packed.targets),
                     loss_fn=output.for_step(i))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        return int((packed.targets[rows] != -100).sum())

    for i in range(3):
        step(i)
    t0, tokens = time.time(), 0
    for i in range(args.steps):
        tokens += step(3 + i)
    s = time.time() - t0
    return {"tokens_per_s": round(tokens / s), "seconds_per_step": round(s / args.steps, 4),
            "target_tokens_per_step": round(tokens / args.steps)}


results = {}
for name, ds in datasets():
    cfg = Config()
    sp = split(ds)
    r = {"items": ds.num_items, "users": len(ds.user_ids), "interactions": len(ds.sequences.items),
         "full": throughput(cfg, ds, sp, "full", "popularity")}
    for neg in args.negatives:
        for i, S in enumerate(args.num_negatives):
            r[f"sampled_{neg}" + (f"_{S}" if i else "")] = throughput(cfg, ds, sp, "sampled", neg, S)
    r["speedup_sampled_popularity"] = round(r["sampled_popularity"]["tokens_per_s"] / r["full"]["tokens_per_s"], 1) \
        if "sampled_popularity" in r else None
    print(name, json.dumps(r), flush=True)
    results[name] = r



def cpu_model() -> str:
    try:
        return next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


write_json(args.out, {
    "command": "OMP_WAIT_POLICY=PASSIVE python " + " ".join(sys.argv),
    "machine": f"{os.cpu_count()}-core CPU ({cpu_model()}, {platform.machine()}), {torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, torch {torch.__version__}, "
               f"{args.threads} threads; load average at the end {os.getloadavg()[0]:.1f} (a shared machine: "
               "absolute rates are lower bounds, the full/sampled ratios are what the rule uses)",
    "date": datetime.date.today().isoformat(),
    "setting": f"default Config (n_layer 2, n_embd 64, batch 64 x 50), {args.steps} steps after 3 warm-up steps; "
               f"sampled = {args.num_negatives[0]} shared negatives a step (sampled_KIND_S: S negatives)",
    "results": results,
})
