"""Classical baselines on one data set, full ranking, S3-Rec leave-one-out (benchmarks/README.md).

    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/baselines.py \
        /work/shared/data/beauty/Beauty.txt --name beauty

Every model is fit on `split.train` (validation targets unseen) and selects its
hyper-parameters / checkpoint on `split.valid` NDCG@10; the test (history
`items[:-1]`) is scored once. Popularity has two rows: leak-free (counts over
everything before the target being ranked: `split.train` for validation,
`ds.sequences.drop_last(1)` for the test) and the published PopRec's
(counts over all interactions, test targets included).
Writes benchmarks/results/baselines_<name>.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # degrade gracefully when cores are shared

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from nanorec.methods.lightgcn import LightGCN  # noqa: E402
from nanorec.methods.popularity import Popularity  # noqa: E402
from nanorec.methods.svd import PureSVD  # noqa: E402
from nanorec.methods.transitions import Transitions  # noqa: E402
from nanorec.data import load, split  # noqa: E402
from nanorec.evaluation.metrics import evaluate, protocol_line  # noqa: E402

METHODS = ("pop", "transitions", "svd", "lightgcn")


def timed(f):
    t = time.time()
    out = f()
    return out, time.time() - t


def row(method, valid_model, test_model, fit_s, split_, notes, extra=None):
    """Validation and test metrics of fitted models (usually the same one) as one JSON row."""
    valid = evaluate(valid_model.score, split_.valid)
    test, score_s = timed(lambda: evaluate(test_model.score, split_.test))
    r = dict(method=method, valid=valid, test=test, fit_s=round(fit_s, 1), test_scoring_s=round(score_s, 1),
             notes=notes)
    if extra:
        r.update(extra)
    print(f"{method:48s} valid NDCG@10 {valid['NDCG@10']:.4f}  test HR@10 {test['HR@10']:.4f} "
          f"NDCG@10 {test['NDCG@10']:.4f} MRR@10 {test['MRR@10']:.4f}  fit {fit_s:.1f}s  score {score_s:.1f}s",
          flush=True)
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="S3-Rec .txt (or any input nanorec.data.load reads)")
    ap.add_argument("--name", default=None, help="results name (default: file stem, lower case)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {METHODS}")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lightgcn-max-seconds", type=float, default=540.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    unknown = set(methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown method(s) {sorted(unknown)}; choose from {METHODS}")

    ds = load(args.path)
    sp = split(ds)
    name = args.name or ds.name.lower()
    n = ds.num_items
    print(protocol_line(n, len(sp.test.targets)), flush=True)
    rows, load_before = [], os.getloadavg()

    if "pop" in methods:
        valid_pop = Popularity().fit(sp.train, n)
        test_pop, fit_s = timed(lambda: Popularity().fit(ds.sequences.drop_last(1), n))
        rows.append(row("popularity (leak-free)", valid_pop, test_pop, fit_s, sp,
                        "counts over everything before the ranked target: split.train for valid, "
                        "ds.sequences.drop_last(1) for test"))
        pub, fit_s = timed(lambda: Popularity().fit(ds.sequences, n))
        rows.append(row("popularity (counts include test targets, as published)", pub, pub, fit_s, sp,
                        "counts over ds.sequences (all interactions), as the published PopRec"))
    if "transitions" in methods:
        m, fit_s = timed(lambda: Transitions().fit(sp.train, n, sp.valid))
        rows.append(row("transitions (first-order Markov)", m, m, fit_s, sp,
                        "fit on split.train; window/decay chosen on valid NDCG@10",
                        dict(chosen=dict(window=m.window, decay=m.decay, pop_weight=m.pop_weight),
                             selection=m.selection)))
    if "svd" in methods:
        m, fit_s = timed(lambda: PureSVD().fit(sp.train, n, sp.valid))
        rows.append(row("PureSVD (fold-in)", m, m, fit_s, sp, "fit on split.train; rank k chosen on valid NDCG@10",
                        dict(chosen=dict(k=m.k), selection={str(k): v for k, v in m.selection.items()})))
    if "lightgcn" in methods:
        lg = LightGCN(max_seconds=args.lightgcn_max_seconds)
        m, fit_s = timed(lambda: lg.fit(sp.train, n, sp.valid))
        cfg = dict(dim=m.dim, layers=m.layers, batch_size=m.batch_size, lr=m.lr, weight_decay=m.weight_decay,
                   max_epochs=m.max_epochs, eval_every=m.eval_every, patience=m.patience, max_seconds=m.max_seconds)
        rows.append(row("LightGCN (PyG)", m, m, fit_s, sp,
                        "fit on split.train; checkpoint chosen on valid NDCG@10 (fit time includes validation)",
                        dict(config=cfg, best_epoch=m.best_epoch, epochs=m.history[-1]["epoch"],
                             history=m.history)))

    out = dict(dataset=name, path=os.path.abspath(args.path), num_users=len(ds.sequences), num_items=n,
               protocol=protocol_line(n, len(sp.test.targets)),
               selection="validation NDCG@10 (second-to-last item); test scored once",
               threads=args.threads, omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
               torch=torch.__version__, python=platform.python_version(),
               load_avg_start=[round(x, 2) for x in load_before],
               load_avg_end=[round(x, 2) for x in os.getloadavg()], rows=rows)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"baselines_{name}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("\n| method | valid NDCG@10 | test HR@10 | test NDCG@10 | test MRR@10 | fit s |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['valid']['NDCG@10']:.4f} | {r['test']['HR@10']:.4f} | "
              f"{r['test']['NDCG@10']:.4f} | {r['test']['MRR@10']:.4f} | {r['fit_s']:.0f} |")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
