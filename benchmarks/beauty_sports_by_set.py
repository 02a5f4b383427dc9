"""One model over Beauty + Sports, scored on each catalogue's own users.

    python benchmarks/beauty_sports_by_set.py runs/default_Beauty_Sports runs/data/Beauty_Sports.txt \
        --beauty ../shared/data/beauty/Beauty.txt [--beauty-run runs/beauty_id_default] \
        --out benchmarks/results/beauty_sports_by_set.json

The combined file (benchmarks/beauty_sports.py) keeps Beauty's user ids and offsets Sports'
past Beauty's largest, so a user id at most Beauty's largest is a Beauty user. Scores the run's
shipped scorer (fused when fused) and the GPT alone on the test split of each part: the
figures to hold against each set's own models (benchmarks/results/seeds_*.json with attribute
content). --beauty-run: a run trained on Beauty alone (ID only, every default:
`nanorec train --data ../shared/data/beauty/Beauty.txt --out runs/beauty_id_default`), scored
the same way on its own test split. Same protocol as training's test figure.
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
from nanorec.evaluate import evaluate_split  # noqa: E402
from nanorec.files import write_json  # noqa: E402
from nanorec.run import Run, fusion_terms  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("run")
p.add_argument("data")
p.add_argument("--beauty", required=True, help="Beauty's own S3-Rec file: its largest user id splits the users")
p.add_argument("--beauty-run", help="a run trained on Beauty alone, scored on its own test split beside")
p.add_argument("--out", required=True)
args = p.parse_args()


def score_parts(run_dir: str, data: str, part_of) -> dict:
    """{part: {users, shipped: {HR@10, NDCG@10}, gpt_alone: ...}} on the run's test split,
    the users grouped by part_of(original user id)."""
    run = Run.open(run_dir)
    ds = load_like(run.config, data)
    test = split_like(ds, run.config).test
    parts = np.array([part_of(int(u)) for u in ds.user_ids[test.users]])
    terms = fusion_terms(run)
    scorers = {"shipped": run.scorer} | ({"gpt_alone": terms[0]} if terms is not None else {})
    out = {}
    for part in [*dict.fromkeys(parts), "all"]:
        rows = np.arange(len(parts)) if part == "all" else np.flatnonzero(parts == part)
        subset = EvalSet(test.users[rows], test.histories.take(rows), test.targets[rows])
        out[part] = {"users": int(len(rows))}
        for name, scorer in scorers.items():
            m = evaluate_split(scorer, subset, num_items=run.num_items, batch_size=run.config.eval_batch_size)
            out[part][name] = {"HR@10": round(m["HR@10"], 4), "NDCG@10": round(m["NDCG@10"], 4)}
        print(run_dir, part, json.dumps(out[part]), flush=True)
    return out


beauty_max_user = max(int(line.split()[0]) for line in open(args.beauty) if line.strip())
results = {"one_model_over_both": score_parts(args.run, args.data,
                                              lambda u: "beauty" if u <= beauty_max_user else "sports")}
if args.beauty_run:
    results["beauty_own_run"] = score_parts(args.beauty_run, args.beauty, lambda u: "beauty")

write_json(args.out, {
    "command": "python " + " ".join(sys.argv),
    "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), torch {torch.__version__}",
    "date": datetime.date.today().isoformat(),
    "protocol": "test split, leave-one-out, full ranking over all items of both catalogues, history excluded; "
                "the run's selected step and fusion weights (chosen on validation over both sets' users)",
    "run": args.run, "beauty_run": args.beauty_run, "beauty_max_user_id": beauty_max_user, "results": results,
})
