"""`nanorec quickstart`: the whole job on built-in synthetic data, in a few CPU minutes.

1. writes a synthetic purchase log (popularity skew, item-to-item transitions,
   repeat purchases, mostly two-item histories) as an interactions CSV;
2. trains a small GPT on it (leave-one-out: the last item of every user is held out);
3. scores the held-out test items by full ranking, for the GPT and for popularity
   (counts of the training split, as `nanorec train method=popularity`);
4. writes a sample submission (user_id,predictions) for every user.
"""
from __future__ import annotations

import os
import time

import numpy as np

from ..cli import command_parser
from ..config import Config, apply_overrides, check_dashed_keys
from ..core.train import run
from ..data import load, split
from ..data.synthetic import write_csv
from ..errors import UsageError
from ..evaluation.metrics import evaluate, protocol_line
from ..methods.popularity import Popularity
from ..runs.files import check_output_folder, write_json
from ..scoring.recommend import recommend, run_default_seen, write_submission

QUICKSTART_OVERRIDES = dict(block_size=20, n_layer=2, n_head=2, n_embd=64, dropout=0.2, batch_size=64,
                            learning_rate=3e-3, min_lr=3e-4, warmup_steps=50, max_steps=1500,
                            eval_interval=100, patience=4, checkpoint_interval=500, eval_batch_size=1024)


def main(argv) -> int:
    p = command_parser("quickstart", __doc__)
    p.add_argument("--out", default="runs/quickstart", help="folder for the data, the run and the submission")
    p.add_argument("--users", type=int, default=4000, help="synthetic users (default 4000)")
    p.add_argument("--items", type=int, default=1000, help="synthetic items (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="training config overrides")
    check_dashed_keys(argv, p._option_string_actions)
    args = p.parse_args(argv)
    if not 50 <= args.users <= 10_000_000:
        raise UsageError(f"--users {args.users}: must be in 50..10000000")
    if not 20 <= args.items <= 10_000_000:
        raise UsageError(f"--items {args.items}: must be in 20..10000000")
    if not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed {args.seed}: must be in 0..2^32-1")
    cfg = apply_overrides(Config(seed=args.seed, **QUICKSTART_OVERRIDES), args.overrides)  # bad keys fail first
    check_output_folder(args.out, "--out folder")
    t0 = time.time()

    os.makedirs(args.out, exist_ok=True)
    data = write_csv(os.path.join(args.out, "interactions.csv"), num_users=args.users, num_items=args.items, seed=args.seed)
    ds = load(data)
    lengths = ds.sequences.lengths
    print(f"[1/4] synthetic log {data}: {len(ds.user_ids):,} users, {ds.num_items:,} items, "
          f"{len(ds.sequences.items):,} purchases, {np.mean(lengths == 2):.0%} of histories have 2 items")

    cfg.data = data
    run_dir = os.path.join(args.out, "run")
    print(f"[2/4] training a {cfg.n_layer}-layer GPT (d={cfg.n_embd}) into {run_dir}")
    metrics = run(cfg, run_dir, overwrite=True, quiet=False)  # the quickstart's own folder: a rerun replaces it

    print("[3/4] full-ranking test metrics on held-out last items")
    sp = split(ds)
    popularity = Popularity().fit(sp.train, ds.num_items)  # the one popularity: as `train method=popularity`
    exclude_seen = run_default_seen(run_dir, None)  # the run's choice (exclude_seen=auto): both rows alike
    pop = evaluate(popularity.score, sp.test, exclude_seen)
    gpt = metrics["test"]
    rows = [("popularity", pop), ("nanorec GPT", gpt)]
    print(f"      {protocol_line(ds.num_items, len(sp.test.targets), exclude_seen)}")
    print(f"      {'method':<14}{'HR@10':>8}{'NDCG@10':>9}{'MAP@10':>8}")
    for name, m in rows:
        print(f"      {name:<14}{m['HR@10']:>8.4f}{m['NDCG@10']:>9.4f}{m['MAP@10']:>8.4f}")
    ratio = gpt["NDCG@10"] / max(pop["NDCG@10"], 1e-12)
    print(f"      GPT NDCG@10 is {ratio:.1f}x popularity's")

    sub = os.path.join(args.out, "submission.csv")
    users, items, _, _ = recommend(run_dir, data, k=10)
    write_submission(sub, users, items)
    print(f"[4/4] wrote {sub} ({len(users):,} users, 10 items each)")
    summary = {"popularity": pop, "gpt": gpt, "ndcg_ratio": ratio, "seconds": round(time.time() - t0, 1)}
    write_json(os.path.join(args.out, "quickstart.json"), summary)
    print(f"done in {time.time() - t0:.0f} s")
    return 0
