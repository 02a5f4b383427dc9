"""Gather a sweep's validation curves (the GPT alone) into one JSON.

    python benchmarks/sweep_curves.py benchmarks/sweeps/NAME.txt --root runs/ROOT \
        [--also NAME=FOLDER ...] --out benchmarks/results/NAME.json

For every job of the jobs file (`NAME DATA key=value ...`, as benchmarks/sweep.py
runs them) reads ROOT/NAME/history.jsonl, or the hidden building folder
ROOT/.NAME.nanorec-new-PID/NAME of a run that was stopped; `--also NAME=FOLDER`
adds a run made elsewhere (a default run, another sweep's job) under that name.
Figures: validation NDCG@10 of the GPT alone at every 500th step, the best, and the
training seconds at the last validation (one thread a run, several runs side by
side: a time axis for comparing runs of one sweep, not an idle figure). The jobs
file's comment lines go into "notes" (what was stopped early and why).
"""
import argparse
import datetime
import glob
import json
import os
import platform

import torch

p = argparse.ArgumentParser()
p.add_argument("jobs")
p.add_argument("--root", required=True)
p.add_argument("--also", nargs="*", default=[], metavar="NAME=FOLDER")
p.add_argument("--out", required=True)
args = p.parse_args()

jobs, notes = {}, []
for line in open(args.jobs):
    text, _, comment = line.partition("#")
    if comment.strip() and not text.strip():
        notes.append(comment.strip())
    fields = text.split()
    if fields:
        jobs[fields[0]] = {"data": fields[1], "keys": " ".join(fields[2:]), "folder": os.path.join(args.root, fields[0])}
for item in args.also:
    name, _, folder = item.partition("=")
    config = json.load(open(os.path.join(folder, "config.json")))
    jobs[name] = {"data": config.get("data", ""), "keys": f"(the run in {folder})", "folder": folder}


def history(folder):
    if not os.path.isdir(folder):
        head, name = os.path.split(folder)
        hidden = glob.glob(os.path.join(head, f".{name}.nanorec-new-*", name))
        folder = hidden[0] if hidden else folder
    path = os.path.join(folder, "history.jsonl")
    if not os.path.exists(path):
        return None, path
    return [json.loads(line) for line in open(path) if line.strip() and "NDCG@10" in line], path


results = {}
for name, job in jobs.items():
    rows, path = history(job["folder"])
    if not rows:
        print(f"{name}: no history ({path}), left out")
        continue
    curve = [{"step": r["step"], "valid_NDCG@10": round(r["NDCG@10"], 4)} for r in rows]
    best = max(curve, key=lambda r: r["valid_NDCG@10"])
    results[name] = {"data": job["data"], "keys": job["keys"], "history": path, "last_step": curve[-1]["step"],
                     "best_valid_NDCG@10": best["valid_NDCG@10"], "best_step": best["step"],
                     "train_seconds_at_last_step": rows[-1].get("train_seconds"),
                     "curve": [r for r in curve if r["step"] % 500 == 0]}
    print(f"{name}: {job['keys']} best {best['valid_NDCG@10']} at {best['step']} (last step {curve[-1]['step']})")

out = {
    "command": f"python benchmarks/sweep.py {args.jobs} --root {args.root} ...; python benchmarks/sweep_curves.py "
               f"{args.jobs} --root {args.root}" + (f" --also {' '.join(args.also)}" if args.also else ""),
    "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), no GPU, torch {torch.__version__}, one thread a run",
    "date": datetime.date.today().isoformat(),
    "protocol": "validation NDCG@10 of the GPT alone (no fusion), leave-one-out, full ranking, history excluded; "
                "the default config but the keys shown; every validation user up to 2e9 users x items, "
                "else the automatic sample (seed scale: 26,797 users)",
    "notes": notes,
    "runs": results,
}
with open(args.out, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(f"wrote {args.out}")
