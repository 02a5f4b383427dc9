"""The fusion weight search against the fixed grid it replaced, on one finished fused run: the
same validation users (the run's split and sample), the same tables, the terms computed once for
both (fusion.ValidationTerms); each search timed, the validation NDCG@10 each reached, and the
test NDCG@10 of each choice (scored once each, for the record; never used to choose).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/weight_search.py RUN [--no-grid] [--out FILE]

The old grid: fusion.WEIGHTS of 652fdad (0 ... 50) for each table, content 0 ... 8, coordinate
ascent w1, w2, w1 (, w3), ties to the smaller weight.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

OLD_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
OLD_CONTENT_GRID = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def old_grid_choice(terms, with_content: bool) -> tuple:
    best = (0.0, 0.0, 0.0)
    for i in (0, 1, 0, 2) if with_content else (0, 1, 0):
        line = [best[:i] + (w,) + best[i + 1:] for w in (OLD_CONTENT_GRID if i == 2 else OLD_GRID)]
        best = max(line, key=lambda ws: (terms.ndcg(ws), [-w for w in ws]))
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    p.add_argument("--no-grid", action="store_true", help="time the new search only")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import torch
    from nanorec.scoring import fusion
    from nanorec.data import load_like, split_like
    from nanorec.evaluation.metrics import evaluate
    from nanorec.runs.run import Run, fusion_terms
    from nanorec.core.train import validation_sample

    run = Run.open(args.run, "cpu")
    cfg = run.config
    ds = load_like(cfg)
    sp = split_like(ds, cfg)
    sp = dataclasses.replace(sp, valid=validation_sample(sp.valid, cfg.valid_users, cfg.seed, ds.num_items))
    gpt, tables, _, _ = fusion_terms(run)
    content = fusion.content_term(run.model)
    out = {"run": args.run, "valid_users": int(len(sp.valid.targets)), "items": int(ds.num_items)}
    t0 = time.time()
    terms = fusion.ValidationTerms(gpt, tables, content, sp.valid, cfg.eval_batch_size)
    out["terms_seconds"] = round(time.time() - t0, 1)
    rows = {}
    for name in ["search"] + ([] if args.no_grid else ["old_grid"]):
        terms.tried = {}
        t0 = time.time()
        best = fusion.search(terms.ndcg, content is not None) if name == "search" else \
            old_grid_choice(terms, content is not None)
        seconds = round(time.time() - t0, 1)
        test = evaluate(fusion.fused_scorer(gpt, tables, content, best), sp.test, batch_size=cfg.eval_batch_size)
        rows[name] = {"weights": list(best), "valid_NDCG@10": round(terms.ndcg(best), 5), "tuples": len(terms.tried),
                      "seconds_after_terms": seconds, "test_NDCG@10": round(test["NDCG@10"], 5)}
        print(name, rows[name], flush=True)
    out.update(rows)
    result = {"command": "OMP_WAIT_POLICY=PASSIVE python benchmarks/weight_search.py " + " ".join(sys.argv[1:]),
              "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}, under load "
                         f"(load average at the end {os.getloadavg()[0]:.1f})",
              "date": datetime.date.today().isoformat(), **out}
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
