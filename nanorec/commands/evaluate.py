"""`nanorec evaluate`: full-ranking metrics of a trained run on one split.

    nanorec evaluate --run RUN_DIR --data PATH [--split valid|test] [--include-seen|--exclude-seen]
                     [--mode oneshot|generative] [--json FILE]

Prints one line: the protocol beside the metrics. The run is opened by `Run.open` (the scorer it
ships, fused when trained with fusion) and training scored it with the same scorer and evaluator:
on the training data the numbers equal metrics.json's, and `nanorec tune`'s winner's test figure
equals `nanorec evaluate --run STUDY/best --split test`. The user's earlier items are ranked as
the run's lists rank them (its exclude_seen; auto: the choice training made, nanorec/scoring/seen.py)
unless --include-seen or --exclude-seen says otherwise; included, a held-out repeat purchase counts.
"""
from __future__ import annotations

import dataclasses
import sys

import numpy as np

from ..cli import command_parser
from ..core.devices import DEVICE_HELP, pick_device
from ..core.validation import validation_sample
from ..data import Sequences, ids, load_like, split_like
from ..errors import DataError, UsageError
from ..evaluation.metrics import evaluate_split, format_metrics, protocol_line
from ..runs import rundir
from ..runs.files import check_writable_folder, is_stdout, out_path, write_json
from ..runs.run import Run
from ..scoring.scorer import list_scorer


def in_run_order(ds, run_item_ids: np.ndarray, run_dir: str, where: str):
    """The data set re-indexed to the run's item vocabulary when it holds the run's items in
    another order (an updated run lists its new items after the old ones, where a reader sorts
    them among the others); data with other items is refused (rundir.check_same_vocabulary)."""
    rows = ids.rows(run_item_ids[1:], ds.item_ids[1:])  # (N,) run row of each of the data's items
    if len(rows) != len(run_item_ids) - 1 or (rows < 0).any():
        rundir.check_same_vocabulary(run_dir, ds.item_ids, where)
    if (rows == np.arange(len(rows))).all():
        return ds
    remap = np.concatenate([[0], rows + 1]).astype(np.int64)  # the data's index -> the run's
    seqs = ds.sequences
    return dataclasses.replace(ds, item_ids=run_item_ids, sequences=Sequences(
        seqs.offsets, remap[seqs.items], seqs.weights, seqs.targets))


def main(argv) -> int:
    p = command_parser("evaluate", __doc__)
    p.add_argument("--run", required=True, help="run folder written by `nanorec train`")
    p.add_argument("--data", required=True, help="the interactions the run was trained on")
    p.add_argument("--split", choices=["valid", "test"], default="test")
    seen = p.add_mutually_exclusive_group()
    seen.add_argument("--include-seen", dest="exclude_seen", action="store_false", default=None,
                      help="rank the user's own history items too; default: the run's choice (exclude_seen)")
    seen.add_argument("--exclude-seen", dest="exclude_seen", action="store_true",
                      help="rank the user's own history items last; default: the run's choice (exclude_seen)")
    p.add_argument("--mode", choices=["oneshot", "generative"], default="oneshot",
                   help="generative: rank within a generated list of --list-length items (misses beyond)")
    p.add_argument("--list-length", type=int, default=20, help="generative list length (default 20)")
    p.add_argument("--json", help="also write the metrics to this JSON file (- : standard output, the "
                   "metrics line then on stderr)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    args = p.parse_args(argv)
    if args.list_length < 1:
        raise UsageError(f"--list-length {args.list_length}: must be at least 1")
    if args.json:
        args.json = out_path(args.json)  # "-": stdout, never a file named "-"
        check_writable_folder(args.json, "--json metrics")

    run = Run.open(args.run, pick_device(args.device))  # the scorer the run ships (fused when fused)
    cfg, scorer, num_items = run.config, run.scorer, run.num_items
    ds = in_run_order(load_like(cfg, args.data), run.item_ids, args.run, args.data)
    sp = split_like(ds, cfg)
    # valid: the validation users the run selected on and reported
    evalset = sp.test if args.split == "test" else validation_sample(sp.valid, cfg.valid_users, cfg.seed, ds.num_items)
    if evalset is None:
        if cfg.holdout == "none":
            raise DataError(f"{args.run}: trained with holdout=none (every event trained on): nothing is held out to evaluate")
        if cfg.holdout == "last":
            raise DataError(f"{args.run}: trained with holdout=last (no test split); use --split valid")
        raise DataError(f"{args.data}: a challenge folder has no test answers; use --split valid")
    exclude_seen = run.exclude_seen if args.exclude_seen is None else args.exclude_seen
    if args.mode == "generative":
        scorer = list_scorer(scorer, num_items, min(args.list_length, num_items), exclude_seen)
    m = evaluate_split(scorer, evalset, num_items=num_items, exclude_seen=exclude_seen, batch_size=cfg.eval_batch_size, progress=True)
    print(f"{args.split} [{protocol_line(ds.num_items, m['users'], exclude_seen)}, {args.mode}]: "
          f"{format_metrics(m, ks=(5, 10, 20))}", file=sys.stderr if args.json and is_stdout(args.json) else sys.stdout)
    if args.json:
        write_json(args.json, {"split": args.split, "mode": args.mode, "exclude_seen": exclude_seen, **m})
    return 0
