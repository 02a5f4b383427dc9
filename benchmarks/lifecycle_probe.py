"""One update of a finished `lifecycle.py` run, with other settings, judged as lifecycle.py judges it.

    python benchmarks/lifecycle_probe.py --work DIR --variant purchases_only [--replay R] [key=value ...]

DIR: a `lifecycle.py --work` folder (its shop.csv and VARIANT/initial). The initial run is updated
with weeks 8-9 (key=value: update keys, e.g. max_steps=160; --replay: update.REPLAY, replayed users
per user with a new target) into DIR/VARIANT/probe-*, and judged on week 10 (lifecycle.judge). Prints
one JSON line: the settings, the update's wall and CPU seconds, and the week-10 figures. For probing
an update's budget and replay against the lifecycle's retrain, not for choosing on week 10.
"""
import argparse
import json
import os
import shutil
import sys
import time

import polars as pl

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lifecycle import VARIANTS, judge, week10_targets, week_start  # noqa: E402

from nanorec import Recommender  # noqa: E402
from nanorec.config import Config, parse_value  # noqa: E402
from nanorec.runs import update  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True)
    p.add_argument("--variant", required=True, choices=list(VARIANTS))
    p.add_argument("--replay", type=float, default=update.REPLAY)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args()
    update.REPLAY = args.replay
    keys = {k: parse_value(k, v) for k, v in (o.split("=", 1) for o in args.overrides)}  # typed as the CLI types them
    events = pl.read_csv(os.path.join(args.work, "shop.csv"), schema_overrides={"item_id": pl.Utf8})
    catalog = pl.read_csv(os.path.join(args.work, "shop.catalog.csv"), schema_overrides={"item_id": pl.Utf8})
    new_items = set(catalog.filter(pl.col("launch_time") >= week_start(8))["item_id"].to_list())
    ts = pl.col("timestamp")
    weeks89 = events.filter((ts >= week_start(8)) & (ts < week_start(10)))
    ds, users, hist, tgt = week10_targets(Config(**VARIANTS[args.variant][0]), events)
    rec = Recommender.load(os.path.join(args.work, args.variant, "initial"))
    out = os.path.join(args.work, args.variant, "probe-" + "-".join(f"{k}{v}" for k, v in keys.items())
                       + f"-replay{args.replay:g}")
    shutil.rmtree(out, ignore_errors=True)
    wall, cpu = time.time(), time.process_time()
    up = rec.update(weeks89, out=out, **keys)
    took = {"seconds": round(time.time() - wall, 1), "cpu_seconds": round(time.process_time() - cpu, 1)}
    m = judge(up, ds, users, hist, tgt, new_items, 512)
    print(json.dumps({"variant": args.variant, **keys, "replay": args.replay, "steps": up.metrics["update"]["steps"],
                      **took, **m}), flush=True)


if __name__ == "__main__":
    main()
