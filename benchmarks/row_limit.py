"""How many followers a count table keeps per item (methods/transitions.py ROW_LIMIT):
validation NDCG@10 of the transitions and co-occurrence tables alone, and the pairs a user's
row holds, for several limits, on each data set given.

    python benchmarks/row_limit.py DATA [DATA ...] [--limits 50 100 200 400 0] [--users 4096]

0 = no limit (the table as counted). Validation only (each table's window and decay chosen on
the same validation users, as `fit` does); the test split is not scored. --users: at most this
many validation users (the first ones of the auto sample for large sets, as training uses).
Writes benchmarks/results/row_limit.json.
"""
import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from nanorec.methods.cooccurrence import CoOccurrence  # noqa: E402
from nanorec.methods.transitions import Transitions  # noqa: E402
from nanorec.data import EvalSet, load, split  # noqa: E402
from nanorec.evaluation.metrics import evaluate  # noqa: E402
from nanorec.core.train import validation_sample  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("data", nargs="+")
p.add_argument("--limits", nargs="+", type=int, default=[50, 100, 200, 400, 0])
p.add_argument("--users", type=int, default=0, help="at most this many validation users (0: the auto sample)")
p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "row_limit.json"))
args = p.parse_args()

results = json.load(open(args.out)).get("results", {}) if os.path.exists(args.out) else {}
for path in args.data:
    ds = load(path)
    sp = split(ds)
    valid = validation_sample(sp.valid, 0, 1337, ds.num_items)
    if args.users and len(valid.targets) > args.users:
        rows = np.arange(args.users)
        valid = EvalSet(valid.users[rows], valid.histories.take(rows), valid.targets[rows])
    name = os.path.basename(path.rstrip("/"))
    out = {"items": ds.num_items, "valid_users": len(valid.targets)}
    for cls in (Transitions, CoOccurrence):
        rows_out = []
        for limit in args.limits:
            t0 = time.time()
            table = cls(row_limit=limit).fit(sp.train, ds.num_items, valid)
            fit_s = time.time() - t0
            pairs = len(table.factors(valid.histories).extras[0].rows) / len(valid.targets)
            ndcg = evaluate(table.score, valid, max_rank=10)["NDCG@10"]
            rows_out.append({"row_limit": limit or "none", "valid_NDCG@10": round(ndcg, 5),
                             "window": table.window, "decay": table.decay, "table_entries": int(table.P.nnz),
                             "pairs_per_user": round(pairs, 1), "fit_and_select_seconds": round(fit_s, 1)})
            print(name, cls.__name__, rows_out[-1], flush=True)
        out[cls.__name__] = rows_out
    results[name] = out

os.makedirs(os.path.dirname(args.out), exist_ok=True)
with open(args.out, "w") as f:
    json.dump({"command": "python benchmarks/row_limit.py " + " ".join(sys.argv[1:]),
               "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), no GPU; seconds on a shared machine",
               "date": datetime.date.today().isoformat(),
               "protocol": "validation NDCG@10 (leave-one-out, second-to-last item), full ranking, history excluded; "
                           "the tables alone, window and decay chosen on the same validation users",
               "results": results}, f, indent=2)
