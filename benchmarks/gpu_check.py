"""The GPU paths, checked and timed on one CUDA device: FlexAttention against the
SDPA reference, bf16 autocast against fp32, torch.compile, packed against padded rows.

    python benchmarks/gpu_check.py DATA.txt [--steps 100] [--out benchmarks/results/gpu_<name>.json]

1. Agreement, on the first packed batch of the default config (fp32 weights,
   the same for every variant): the training loss and every gradient of
   attention=flex against attention=sdpa, and of bf16 autocast against fp32
   (largest relative difference over the parameters).
2. Throughput: `--steps` optimizer steps of the default model after warm-up
   steps (compilation happens there) for each variant, timed with the device
   synchronised; training target tokens per second, peak device memory. The
   padded variant (packing=False) trains the same users one per row: its
   figure is real target tokens/s, so packed/padded is what packing buys.
3. One full-ranking validation pass of the trained default model.
Runs on CPU too (`--device cpu`: flex and bf16 variants left out), to check the script.
"""
import argparse
import dataclasses
import json
import os
import platform
import time

import torch

from nanorec.config import Config, resolve
from nanorec.data import load, split
from nanorec.core.devices import autocast
from nanorec.evaluation.metrics import evaluate
from nanorec.core.model import GPT
from nanorec.runs.run import shipped_scorer
from nanorec.core.train import epoch_batches

p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("--steps", type=int, default=100)
p.add_argument("--warmup", type=int, default=10)
p.add_argument("--device", default="cuda")
p.add_argument("--out", default=None)
p.add_argument("--only", default="", help="comma-separated variant labels to time (default: all)")
args = p.parse_args()
dev = args.device
cuda = dev.startswith("cuda")
ds = load(args.data)
sp = split(ds)
name = os.path.splitext(os.path.basename(args.data))[0].lower()


def sync():
    if cuda:
        torch.cuda.synchronize()


def batch(packed, rows):
    t = lambda a: torch.from_numpy(a[rows]).to(dev)
    return t(packed.tokens), t(packed.pos_ids), t(packed.seq_ids), t(packed.targets)


def fresh(cfg):
    torch.manual_seed(cfg.seed)
    return GPT(resolve(cfg, ds.num_items), ds.num_items).to(dev)


# -----------------------------------------------------------------------------
# 1. agreement on one batch
def loss_and_grads(cfg, state, b):
    model = fresh(cfg)
    model.load_state_dict(state)
    model.eval()  # no dropout: the variants must compute the same function
    with autocast(cfg.dtype, dev):
        loss = model(*b)
    loss.backward()
    return loss.item(), {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}


def max_rel(ga, gb):
    return max(float((ga[n] - gb[n]).abs().max() / gb[n].abs().max().clamp_min(1e-12)) for n in gb)


base = Config(data=args.data, dtype="float32")
packed, batches = epoch_batches(sp.train, base, 0)
b = batch(packed, batches[0])
state = fresh(base).state_dict()
ref_loss, ref_grads = loss_and_grads(base, state, b)
agreement = {"fp32 sdpa loss": round(ref_loss, 6)}
if cuda:
    flex_loss, flex_grads = loss_and_grads(dataclasses.replace(base, attention="flex"), state, b)
    bf_loss, bf_grads = loss_and_grads(dataclasses.replace(base, dtype="bfloat16"), state, b)
    agreement.update({
        "flex vs sdpa (fp32): loss abs diff": abs(flex_loss - ref_loss),
        "flex vs sdpa (fp32): max relative grad diff": max_rel(flex_grads, ref_grads),
        "bf16 vs fp32 (sdpa): loss relative diff": abs(bf_loss - ref_loss) / abs(ref_loss),
        "bf16 vs fp32 (sdpa): max relative grad diff": max_rel(bf_grads, ref_grads),
    })
print(json.dumps(agreement, indent=1), flush=True)


# -----------------------------------------------------------------------------
# 2. throughput per variant
def throughput(cfg):
    model = fresh(cfg)
    opt = model.configure_optimizer(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), dev.split(":")[0])
    if cfg.compile:
        model.compile_for_training()  # what train.py does with compile=true
    step_model = model
    packed, batches = epoch_batches(sp.train, cfg, 0)
    ctx = autocast(cfg.dtype, dev)

    def step(i):
        rows = batches[i % len(batches)]
        b = batch(packed, rows)
        with ctx:
            loss = step_model(*b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        return int((packed.targets[rows] != -100).sum())

    t0 = time.time()
    for i in range(args.warmup):
        step(i)
    sync()
    warm_s = time.time() - t0
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0, tokens = time.time(), 0
    for i in range(args.steps):
        tokens += step(args.warmup + i)
    sync()
    s = time.time() - t0
    out = {"train_tokens_per_s": round(tokens / s), "ms_per_step": round(1000 * s / args.steps, 2),
           "target_tokens_per_step": round(tokens / args.steps), "warmup_s": round(warm_s, 1)}
    if cuda:
        out["peak_memory_MiB"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out, model


variants = {"sdpa fp32": dict(dtype="float32"), "sdpa fp32 padded": dict(dtype="float32", packing=False)}
if cuda:
    variants.update({
        "sdpa bf16": dict(dtype="bfloat16"),
        "sdpa bf16 padded": dict(dtype="bfloat16", packing=False),
        "flex bf16": dict(dtype="bfloat16", attention="flex"),
        "sdpa fp32 compile": dict(dtype="float32", compile=True),
        "sdpa bf16 compile": dict(dtype="bfloat16", compile=True),
        "flex bf16 compile": dict(dtype="bfloat16", attention="flex", compile=True),
    })
if args.only:
    variants = {k: v for k, v in variants.items() if k in args.only.split(",")}
speed, trained = {}, None
for label, kw in variants.items():
    try:
        speed[label], model = throughput(dataclasses.replace(base, **kw))
        trained = trained or model
    except Exception as e:  # one failing path must not hide the others' figures
        speed[label] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
    print(label, speed[label], flush=True)
for a, b_ in (("sdpa fp32", "sdpa fp32 padded"), ("sdpa bf16", "sdpa bf16 padded")):
    if "train_tokens_per_s" in speed.get(a, {}) and "train_tokens_per_s" in speed.get(b_, {}):
        speed[f"{a}: packed / padded"] = round(speed[a]["train_tokens_per_s"] / speed[b_]["train_tokens_per_s"], 2)

# -----------------------------------------------------------------------------
# 3. one full-ranking validation pass
sync()
t0 = time.time()
m = evaluate(shipped_scorer(trained, dev), sp.valid, batch_size=base.eval_batch_size)
sync()
valid_s = time.time() - t0

result = {
    "command": f"python benchmarks/gpu_check.py {args.data} --steps {args.steps}"
               + (f" --only '{args.only}'" if args.only else ""),
    "machine": (torch.cuda.get_device_name(0) if cuda else f"{os.cpu_count()}-core CPU ({platform.machine()})")
               + f", torch {torch.__version__}",
    "date": time.strftime("%Y-%m-%d"),
    "setting": f"default Config (2 layers, d=64, batch 64 x 50), {args.steps} timed steps after {args.warmup} warm-up",
    "agreement": agreement,
    "throughput": speed,
    "validation_pass_s": round(valid_s, 2),
    "validation_users": m["users"],
}
out = args.out or f"benchmarks/results/gpu_{name}.json"
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "w") as f:
    json.dump(result, f, indent=2)
print(json.dumps(result, indent=1))
