"""Content kNN on Beauty attributes: the full-ranking figures in benchmarks/results/content_knn_beauty.json.

    .venv/bin/python benchmarks/content_knn.py            # ~15 min on a 2-core CPU

Item vectors: Beauty_item2attributes.json (brand + categories) as TF-IDF-weighted
multi-hot reduced by truncated SVD (nanorec.content.tables.attribute_table). The
recommender: ContentKNN (Faiss, exact inner product) around the user's last
item(s). The options (SVD dimension, last-k, popularity tie-break weight) are
chosen on the validation split only (NDCG@10); the test split is scored once,
with the chosen options. Both through nanorec.evaluation.metrics.evaluate: ranking over
all items, history excluded, leave-one-out (protocol: benchmarks/README.md).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # degrade gracefully when another process takes a core

import argparse  # noqa: E402
import datetime  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from nanorec.methods.knn import ContentKNN  # noqa: E402
from nanorec.content.tables import align, attribute_table, coverage_line  # noqa: E402
from nanorec.data import load, split  # noqa: E402
from nanorec.evaluation.metrics import evaluate, format_metrics, protocol_line  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "beauty", "Beauty.txt")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.path.normpath(DEFAULT_DATA),
                   help="S3-Rec .txt with a sibling *_item2attributes.json")
    p.add_argument("--out", default=os.path.join(HERE, "results", "content_knn_beauty.json"))
    p.add_argument("--dims", default="32,64,128,256,512,1024",
                   help="SVD dimensions tried (capped at the rank, 632 on Beauty: no reduction)")
    p.add_argument("--last", default="1,2,3", help="last-k values tried")
    p.add_argument("--pop-weights", default="0,0.01,0.1", help="popularity tie-break weights tried")
    p.add_argument("--neighbours", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    if not os.path.exists(a.data):
        print(f"skipped: {a.data} not found")
        return 0
    torch.set_num_threads(a.threads)
    import faiss

    faiss.omp_set_num_threads(a.threads)

    t0 = time.time()
    ds = load(a.data)
    sp = split(ds)
    seconds = {"load_split": time.time() - t0, "tables": 0.0, "fit": 0.0, "valid_evals": 0.0}
    dims = [int(x) for x in a.dims.split(",")]
    lasts = [int(x) for x in a.last.split(",")]
    weights = [float(x) for x in a.pop_weights.split(",")]

    tables, coverage = {}, {}
    grid = []
    for dim in dims:
        t = time.time()
        ids, vecs = attribute_table(ds.attributes_path, ds.item_ids, dim)
        table, has, report = align(ids, vecs, ds.item_ids)
        seconds["tables"] += time.time() - t
        tables[dim] = (table, has)
        coverage[dim] = coverage_line(report, os.path.basename(ds.attributes_path))
        for last, w in itertools.product(lasts, weights):
            t = time.time()
            knn = ContentKNN((table, has), last=last, pop_weight=w, neighbours=a.neighbours).fit(sp.train, ds.num_items)
            seconds["fit"] += time.time() - t
            t = time.time()
            m = evaluate(knn, sp.valid)
            seconds["valid_evals"] += time.time() - t
            grid.append({"dim": table.shape[1], "dim_asked": dim, "last": last, "pop_weight": w,
                         "valid": {k: round(v, 5) for k, v in m.items() if k != "users"},
                         "_ndcg10": m["NDCG@10"]})  # unrounded, for the selection
            print(f"dim {table.shape[1]:>3} last {last} pop_weight {w:<5} valid {format_metrics(m)}", flush=True)

    best = max(grid, key=lambda g: g["_ndcg10"])
    for g in grid:
        del g["_ndcg10"]
    full_rank = best["dim"] < best["dim_asked"]  # asked for more than the rank: no reduction at all
    table, has = tables[best["dim_asked"]]
    knn = ContentKNN((table, has), last=best["last"], pop_weight=best["pop_weight"],
                     neighbours=a.neighbours).fit(sp.train, ds.num_items)
    t = time.time()
    valid = evaluate(knn, sp.valid)
    seconds["valid_selected"] = time.time() - t
    t = time.time()
    test = evaluate(knn, sp.test)
    seconds["test"] = time.time() - t
    seconds["total"] = time.time() - t0
    print(coverage[best["dim_asked"]])
    print(f"selected dim {best['dim']} last {best['last']} pop_weight {best['pop_weight']}")
    print(f"valid: {format_metrics(valid, ks=(10, 20))}")
    print(f"test:  {format_metrics(test, ks=(10, 20))}")
    print(f"({protocol_line(ds.num_items, test['users'])})")

    result = {
        "method": "ContentKNN (Faiss IndexFlatIP, exact inner product on unit vectors)",
        "data": "beauty/Beauty.txt + Beauty_item2attributes.json",
        "content": "attributes: TF-IDF-weighted multi-hot, truncated SVD, L2-normalised rows",
        "coverage": coverage[best["dim_asked"]],
        "protocol": protocol_line(ds.num_items, test["users"]),
        "selection": "grid over dim x last x pop_weight, best validation NDCG@10; test scored once",
        "selected": {"dim": best["dim"], "full_rank": full_rank, "last": best["last"], "pop_weight": best["pop_weight"],
                     "neighbours": a.neighbours, "index": "flat", "fallback": "popularity"},
        "valid": {k: round(v, 5) if isinstance(v, float) else v for k, v in valid.items()},
        "test": {k: round(v, 5) if isinstance(v, float) else v for k, v in test.items()},
        "grid": grid,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "command": "python benchmarks/content_knn.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": "2-core CPU",
        "threads": f"torch {a.threads}, faiss {a.threads}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}",
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
                     "faiss": faiss.__version__},
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
