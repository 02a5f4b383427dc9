"""One model over Beauty + Sports, scored on each catalogue's own users.

    python benchmarks/beauty_sports_by_set.py runs/default_Beauty_Sports runs/data/Beauty_Sports.txt \
        --beauty ../shared/data/beauty/Beauty.txt [--beauty-run runs/beauty_id_default] \
        [--sports ../shared/data/sports/Sports_and_Outdoors.txt --sports-run runs/sports_id_default] \
        --out benchmarks/results/beauty_sports_by_set.json

The combined file (benchmarks/beauty_sports.py) keeps Beauty's user ids and offsets Sports'
past Beauty's largest, so a user id at most Beauty's largest is a Beauty user. Scores the run's
shipped scorer (fused when fused) and the GPT alone on the test split of each part: the
figures to hold against each set's own models (benchmarks/results/seeds_*.json with attribute
content). --beauty-run: a run trained on Beauty alone (ID only, every default:
`nanorec train --data ../shared/data/beauty/Beauty.txt --out runs/beauty_id_default`), scored
the same way on its own test split; --sports-run the same for Sports (with --sports, its file).
With both, "own_runs_weighted" is the two own runs' user-weighted mean: what two models give
the same users. Same protocol as training's test figure.
"""
import argparse
import datetime
import json
import os
import platform
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from nanorec.data import EvalSet, load_like, split_like  # noqa: E402
from nanorec.evaluation.metrics import evaluate_split, top_lists  # noqa: E402
from nanorec.runs.files import write_json  # noqa: E402
from nanorec.runs.run import Run, fusion_terms  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("run")
p.add_argument("data")
p.add_argument("--beauty", required=True, help="Beauty's own S3-Rec file: its largest user id splits the users")
p.add_argument("--beauty-run", help="a run trained on Beauty alone, scored on its own test split beside")
p.add_argument("--sports", help="Sports' own S3-Rec file (needed with --sports-run)")
p.add_argument("--sports-run", help="a run trained on Sports alone, scored on its own test split beside")
p.add_argument("--out", required=True)
args = p.parse_args()
if args.sports_run and not args.sports:
    p.error("--sports-run needs --sports (the file it was trained on)")


def score_parts(run_dir: str, data: str, part_of, item_part_of=None) -> dict:
    """{part: {users, shipped: {HR@10, NDCG@10}, gpt_alone: ...}} on the run's test split,
    the users grouped by part_of(original user id). With item_part_of(original item id), also
    each scorer's "other_catalogue@10": the share of a part's top-10 slots (history excluded)
    that hold the other catalogue's items, the mistake a model per catalogue cannot make."""
    run = Run.open(run_dir)
    ds = load_like(run.config, data)
    test = split_like(ds, run.config).test
    parts = np.array([part_of(int(u)) for u in ds.user_ids[test.users]])
    terms = fusion_terms(run)
    scorers = {"shipped": run.scorer} | ({"gpt_alone": terms[0]} if terms is not None else {})
    item_parts = None if item_part_of is None else \
        np.array(["padding"] + [item_part_of(int(i)) for i in run.item_ids[1:]])
    out = {}
    for part in [*dict.fromkeys(parts), "all"]:
        rows = np.arange(len(parts)) if part == "all" else np.flatnonzero(parts == part)
        subset = EvalSet(test.users[rows], test.histories.take(rows), test.targets[rows])
        out[part] = {"users": int(len(rows))}
        for name, scorer in scorers.items():
            m = evaluate_split(scorer, subset, num_items=run.num_items, batch_size=run.config.eval_batch_size)
            out[part][name] = {"HR@10": round(m["HR@10"], 4), "NDCG@10": round(m["NDCG@10"], 4)}
            if item_parts is not None and part != "all":
                lists = top_lists(scorer, subset, k=10, batch_size=run.config.eval_batch_size)
                out[part][name]["other_catalogue@10"] = round(float((item_parts[lists] != part).mean()), 5)
        print(run_dir, part, json.dumps(out[part]), flush=True)
    return out


beauty_lines = [[int(x) for x in line.split()] for line in open(args.beauty) if line.strip()]
beauty_max_user = max(row[0] for row in beauty_lines)
beauty_max_item = max(max(row[1:]) for row in beauty_lines)
results = {"one_model_over_both": score_parts(args.run, args.data,
                                              lambda u: "beauty" if u <= beauty_max_user else "sports",
                                              lambda i: "beauty" if i <= beauty_max_item else "sports")}
if args.beauty_run:
    results["beauty_own_run"] = score_parts(args.beauty_run, args.beauty, lambda u: "beauty")
if args.sports_run:
    results["sports_own_run"] = score_parts(args.sports_run, args.sports, lambda u: "sports")
if args.beauty_run and args.sports_run:
    own = [results["beauty_own_run"]["beauty"], results["sports_own_run"]["sports"]]
    users = sum(o["users"] for o in own)
    results["own_runs_weighted"] = {"users": users} | {
        scorer: {k: round(sum(o[scorer][k] * o["users"] for o in own) / users, 4) for k in ("HR@10", "NDCG@10")}
        for scorer in ("shipped", "gpt_alone") if all(scorer in o for o in own)}

write_json(args.out, {
    "command": "python " + " ".join(sys.argv),
    "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}",
    "date": datetime.date.today().isoformat(),
    "protocol": "test split, leave-one-out, full ranking over all items of the run's catalogue (both catalogues for "
                "the one model, its own for an own run), history excluded; each run's selected step and fusion "
                "weights (chosen on validation over its own users)",
    "run": args.run, "beauty_run": args.beauty_run, "sports_run": args.sports_run, "beauty_max_user_id": beauty_max_user,
    "beauty_max_item_id": beauty_max_item, "results": results,
})
