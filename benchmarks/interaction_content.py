"""A content table made from the interactions alone: PureSVD item factors of the training split,
each component scaled by the square root of its singular value.

    python benchmarks/interaction_content.py runs/data/Beauty_Sports.txt runs/exp/bs_svd64.safetensors [--dim 64]
    nanorec train --data runs/data/Beauty_Sports.txt --out runs/exp/bs_svd64 \
        content=runs/exp/bs_svd64.safetensors eval_interval=500

The question it answers: is what attribute content gives the GPT something an ID-only run could
get from its own log? The factors see the whole user x item matrix at once (every user's items,
not a left-to-right window), a view the GPT's next-item loss does not take. Built from the
training split of the default holdout only (each user's last two items, the validation and test
targets, left out), so neither selection nor the test figure sees a target through it. Rows are
unit-length (the fusion's content term is a cosine); items with no training interaction get no
row (the model's learned "missing" vector).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from nanorec.methods.svd import PureSVD  # noqa: E402
from nanorec.config import Config  # noqa: E402
from nanorec.content.tables import save_table  # noqa: E402
from nanorec.data import load_like, split_like  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("data", help="interactions, as `nanorec train --data` reads them (default columns)")
p.add_argument("out", help="the content table to write (.safetensors)")
p.add_argument("--dim", type=int, default=64)
args = p.parse_args()

cfg = Config(data=args.data)
ds = load_like(cfg, args.data)
train = split_like(ds, cfg).train
svd = PureSVD(k=args.dim).fit(train, ds.num_items)                 # no validation: k = dim
factors = svd.V * np.sqrt(svd.singular_values[:args.dim])          # (N+1, dim)
factors /= np.maximum(np.linalg.norm(factors, axis=1, keepdims=True), 1e-8)
rows = np.flatnonzero(np.bincount(train.items, minlength=ds.num_items + 1)[1:]) + 1  # items with training events
save_table(args.out, ds.item_ids[rows], factors[rows], {"made_by": f"PureSVD ({args.dim}) of the training split"})
print(f"wrote {args.out}: {len(rows):,} of {ds.num_items:,} items, {args.dim} dims")
