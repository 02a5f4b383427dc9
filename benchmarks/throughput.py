"""Training throughput and validation cost of the default config, on an otherwise idle machine.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/throughput.py ../shared/data/beauty/Beauty.txt [--steps 40]

Times `steps` optimizer steps of the default Config (after 5 warm-up steps) and
one full-ranking validation pass, then projects the wall time of a default
`nanorec train` run: max_steps steps plus a validation every eval_interval
steps plus the final validation and test passes. Writes
benchmarks/results/throughput_<name>.json.
"""
import argparse
import json
import os
import platform
import time

import torch

from nanorec.config import Config, resolve
from nanorec.data import load, split
from nanorec.evaluation.metrics import evaluate
from nanorec.runs.run import shipped_scorer
from nanorec.core.model import GPT
from nanorec.core.train import epoch_batches

p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("--steps", type=int, default=40)
args = p.parse_args()

cfg = Config(data=args.data)
torch.manual_seed(cfg.seed)
ds = load(args.data)
sp = split(ds)
model = GPT(resolve(cfg, ds.num_items), ds.num_items)
opt = model.configure_optimizer(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), "cpu")
packed, batches = epoch_batches(sp.train, cfg, 0)


def step(rows):
    t = lambda a: torch.from_numpy(a[rows])
    loss = model(t(packed.tokens), t(packed.pos_ids), t(packed.seq_ids), t(packed.targets))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return int((packed.targets[rows] != -100).sum())


for i in range(5):
    step(batches[i])
t0, tokens = time.time(), 0
for i in range(args.steps):
    tokens += step(batches[(5 + i) % len(batches)])
train_s = time.time() - t0
t1 = time.time()
evaluate(shipped_scorer(model, "cpu"), sp.valid, batch_size=cfg.eval_batch_size, with_loss=True)
eval_s = time.time() - t1

tokens_per_step = tokens / args.steps
step_s = train_s / args.steps
n_evals = cfg.max_steps // cfg.eval_interval + 2  # periodic + final valid + test
projected = cfg.max_steps * step_s + n_evals * eval_s
name = os.path.splitext(os.path.basename(args.data))[0].lower()
result = {
    "command": f"OMP_WAIT_POLICY=PASSIVE python benchmarks/throughput.py {args.data} --steps {args.steps}",
    "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), {torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads",
    "date": time.strftime("%Y-%m-%d"),
    "train_tokens_per_s": round(tokens / train_s),
    "seconds_per_step": round(step_s, 3),
    "target_tokens_per_step": round(tokens_per_step),
    "validation_pass_s": round(eval_s, 1),
    "validation_users": len(sp.valid.targets),
    "projected_default_run_minutes": round(projected / 60, 1),
    "projection": f"{cfg.max_steps} steps x {step_s:.3f} s + {n_evals} full-ranking passes x {eval_s:.1f} s",
}
os.makedirs("benchmarks/results", exist_ok=True)
with open(f"benchmarks/results/throughput_{name}.json", "w") as f:
    json.dump(result, f, indent=2)
print(json.dumps(result, indent=2))
