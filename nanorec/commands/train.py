"""`nanorec train --data PATH --out RUN_DIR [key=value ...] [--resume | --overwrite]`: the
arguments as a Config, for train.run."""
from __future__ import annotations

import argparse
import os

from ..config import Config, add_run_writer_options, apply_overrides, check_dashed_keys, describe, unresolved
from ..core.train import run
from ..errors import DataError, UsageError
from ..runs import rundir


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
