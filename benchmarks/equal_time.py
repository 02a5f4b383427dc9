"""The output layer chosen by quality at equal time: two finished runs on the same data, one
with the full softmax and one with the sampled one, their validation curves put on one time
axis (each run's steps x its seconds per step on an idle machine, from output_layer.json's
side-by-side measurement), so a busy machine during the runs does not bias the comparison.

    python benchmarks/equal_time.py --name beauty_sports --items 30458 \
        --full RUN_FULL --sampled RUN_SAMPLED --steps-json benchmarks/results/output_layer_large.json \
        --steps-key Beauty_Sports.txt

Reads each run's history.jsonl (validation NDCG@10 of the GPT alone, every eval_interval steps).
Writes/updates benchmarks/results/equal_time.json: per data set, both curves (step, idle minutes,
NDCG@10) and, at each of the sampled run's validation times, the full softmax's best NDCG@10 reached
by that time.
"""
import argparse
import datetime
import json
import os

p = argparse.ArgumentParser()
p.add_argument("--name", required=True)
p.add_argument("--items", type=int, required=True)
p.add_argument("--full", required=True, help="run folder (or its history.jsonl) trained with loss=full")
p.add_argument("--sampled", required=True, help="run folder (or its history.jsonl) trained with loss=sampled")
p.add_argument("--steps-json", required=True)
p.add_argument("--steps-key", required=True)
p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "equal_time.json"))
args = p.parse_args()


def curve(path):
    path = path if path.endswith(".jsonl") else os.path.join(path, "history.jsonl")
    return [json.loads(line) for line in open(path) if line.strip()]


speeds = json.load(open(args.steps_json))["results"][args.steps_key]
per_step = {"full": speeds["full"]["seconds_per_step"], "sampled": speeds["sampled_popularity"]["seconds_per_step"]}
curves = {}
for kind, path in (("full", args.full), ("sampled", args.sampled)):
    curves[kind] = [{"step": h["step"], "idle_minutes": round(h["step"] * per_step[kind] / 60, 2),
                     "valid_NDCG@10": round(h["NDCG@10"], 4)} for h in curve(path)]
at_equal_time = []
for s in curves["sampled"]:
    reached = [f["valid_NDCG@10"] for f in curves["full"] if f["idle_minutes"] <= s["idle_minutes"]]
    at_equal_time.append({"idle_minutes": s["idle_minutes"], "sampled": s["valid_NDCG@10"],
                          "full_best_by_then": max(reached) if reached else None})
full_last = curves["full"][-1]
match = next((s for s in curves["sampled"] if s["valid_NDCG@10"] >= full_last["valid_NDCG@10"]), None)
out = json.load(open(args.out)) if os.path.exists(args.out) else {}
out.update({"command": "python benchmarks/equal_time.py (one call per data set: see each entry)",
            "date": datetime.date.today().isoformat(),
            "machine": "2-core CPU, no GPU, torch 2.13.0+cpu; step times from the idle side-by-side measurement",
            "protocol": "validation NDCG@10 of the GPT alone (no fusion), leave-one-out, full ranking, history "
                        "excluded; both runs the default config but loss (and max_steps where stated)"})
out.setdefault("sets", {})[args.name] = {
    "items": args.items, "seconds_per_step_idle": per_step,
    "runs": {"full": args.full, "sampled": args.sampled},
    "curves": curves, "at_equal_time": at_equal_time,
    "sampled_reaches_the_full_runs_last_figure": None if match is None else {
        "full": full_last, "sampled": match,
        "time_ratio": round(full_last["idle_minutes"] / match["idle_minutes"], 1)},
}
with open(args.out, "w") as f:
    json.dump(out, f, indent=2)
print(json.dumps(out["sets"][args.name]["at_equal_time"][-3:]), out["sets"][args.name]["sampled_reaches_the_full_runs_last_figure"])
