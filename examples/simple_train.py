"""The shortest honest training loop over nanorec's modules (the seed's "simple train").

    python examples/simple_train.py --data Beauty.txt [--steps 2000]

Load -> leave-one-out split -> pack users into rows -> train a GPT with AdamW
on next-item cross-entropy -> full-ranking NDCG@10 on validation now and then
-> test once at the end. No scheduler, checkpoints or early stopping:
`nanorec train` (nanorec/core/train.py) adds those.
"""
import argparse
import time

import numpy as np
import torch

from nanorec.config import Config, resolve
from nanorec.data import load, split
from nanorec.evaluation.metrics import evaluate, format_metrics
from nanorec.scoring.scorer import gpt_scorer
from nanorec.core.model import GPT
from nanorec.core.packing import pack

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--data", required=True, help="S3-Rec .txt, interactions .csv/.parquet or a challenge folder")
parser.add_argument("--steps", type=int, default=2000)
parser.add_argument("--eval-every", type=int, default=500)
parser.add_argument("--seed", type=int, default=1337)
args = parser.parse_args()

torch.manual_seed(args.seed)
rng = np.random.default_rng(args.seed)
# data: every user's items except the held-out ones
ds = load(args.data)
sp = split(ds)
# the defaults (block_size 50, 2 layers, d=64), each "auto" resolved for this catalogue (dropout 0.5 here)
cfg = resolve(Config(data=args.data), ds.num_items)
print(f"{len(ds.user_ids):,} users, {ds.num_items:,} items; training on {len(sp.train.items):,} interactions")

# model and optimizer
model = GPT(cfg, ds.num_items)
optimizer = model.configure_optimizer(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), "cpu")
scorer = gpt_scorer(model, "cpu")


def batches():
    """Endless packed batches: repack (reshuffle) every epoch."""
    while True:
        p = pack(sp.train, cfg.block_size, rng)  # (R, T) tokens, targets, seq_ids, pos_ids
        order = rng.permutation(len(p))
        for i in range(0, len(order), cfg.batch_size):
            rows = order[i:i + cfg.batch_size]
            yield [torch.from_numpy(a[rows]) for a in (p.tokens, p.pos_ids, p.seq_ids, p.targets)]


t0 = time.time()
model.train()
for step, (tokens, pos_ids, seq_ids, targets) in zip(range(1, args.steps + 1), batches()):
    loss = model(tokens, pos_ids, seq_ids, targets)  # mean next-item cross-entropy over all items
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    if step % args.eval_every == 0 or step == args.steps:
        m = evaluate(scorer, sp.valid)  # full ranking over all items, history excluded
        print(f"step {step}: loss {loss.item():.4f}  valid {format_metrics(m)}  ({time.time() - t0:.0f} s)")

if sp.test is not None:
    print(f"test: {format_metrics(evaluate(scorer, sp.test))}")
