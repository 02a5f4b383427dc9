"""`nanorec tune`: the command over core/tune.py's search; that module's docstring is its --help."""
from __future__ import annotations

import os

from ..cli import command_parser
from ..config import Config, apply_overrides
from ..core import tune as search
from ..core.tune import DEFAULT_SPACE, SUMMARY, tune
from ..errors import UsageError


def main(argv) -> int:
    p = command_parser("tune", search.__doc__)
    p.add_argument("--data", required=True, help="interactions (as for nanorec train)")
    p.add_argument("--out", required=True, help="study folder: trials/, best/, study.json, study.db")
    p.add_argument("--trials", type=int, default=20, help="number of trials (default 20; a baseline runs one)")
    p.add_argument("--space", help=f"search space (default {DEFAULT_SPACE!r}; none for a baseline)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a best/ or study.json in --out that this study did not write")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="fixed config for every trial")
    args = p.parse_intermixed_args(argv)  # key=value before or after the options
    base = apply_overrides(Config(data=args.data, progress=False), args.overrides)
    if args.space is not None and not args.space.strip():  # '' is a mistake, not the default space
        raise UsageError("--space '': empty; give key=low..high[,...] (or leave --space out for the default)")
    summary = tune(base, args.out, args.space, args.trials, log=print, overwrite=args.overwrite)
    best = summary["best"]
    test = best.get("test")
    print(f"best trial {best['number']}: valid NDCG@10 {best['valid_NDCG@10']:.4f} {best['params']}"
          + (f"; test NDCG@10 {test['NDCG@10']:.4f} HR@10 {test['HR@10']:.4f} (scored once)" if test else ""))
    print(f"wrote {os.path.join(args.out, SUMMARY)}, run {best['run']}")
    return 0
