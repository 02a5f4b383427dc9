"""Run many `nanorec train` jobs side by side and gather their validation results.

    python benchmarks/sweep.py JOBS.txt --root runs/sweep --parallel 8 [--deadline-s 600] --out sweep.json

JOBS.txt: one job a line, `NAME DATA [key=value ...]` (# starts a comment), in
priority order: jobs start in that order as workers free up. Each job is
`python -m nanorec.cli train --data DATA --out ROOT/NAME --quiet key=value ...`
with one CPU thread (OMP_NUM_THREADS=1). At the deadline nothing new starts
and running jobs are stopped; a stopped job is reported with the best
validation it had reached, marked "stopped".

The summary holds validation figures only (the best validation NDCG@10 of the
GPT alone from history.jsonl, and the final validation, fused when fusion is
on): selection reads it. Test metrics stay in each run's metrics.json, to be
read for the selected configuration only.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from nanorec.runs import rundir

p = argparse.ArgumentParser()
p.add_argument("jobs")
p.add_argument("--root", default="runs/sweep")
p.add_argument("--parallel", type=int, default=4)
p.add_argument("--deadline-s", type=float, default=float("inf"))
p.add_argument("--out", required=True)
args = p.parse_args()

jobs = []
for line in open(args.jobs):
    line = line.split("#", 1)[0].split()
    if line:
        jobs.append((line[0], line[1], line[2:]))
names = [j[0] for j in jobs]
if len(set(names)) != len(names):
    sys.exit("sweep: duplicate job names")
os.makedirs(args.root, exist_ok=True)
env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
start = time.time()
pending, running, finished = list(jobs), {}, {}


def summary(name, data, overrides, status, wall):
    run = os.path.join(args.root, name)
    row = {"name": name, "data": os.path.basename(data), "overrides": " ".join(overrides), "status": status,
           "wall_s": round(wall, 1)}
    if os.path.isdir(run):  # a stopped job's history may end in a torn line: read_history skips it
        h = [r for r in rundir.read_history(run) if "NDCG@10" in r]
        if h:
            best = max(h, key=lambda r: r["NDCG@10"])
            row.update({"best_valid_NDCG@10": best["NDCG@10"], "best_valid_HR@10": best["HR@10"],
                        "best_step": best["step"], "last_step": h[-1]["step"]})
    if os.path.exists(os.path.join(run, rundir.METRICS)):
        m = rundir.read_metrics(run)
        row.update({"final_valid": {k: m["valid"][k] for k in ("HR@10", "NDCG@10")} if "valid" in m else None,
                    "fusion_weight": m.get("fusion", {}).get("weight"), "train_seconds": m.get("train_seconds"),
                    "epochs": m.get("epochs")})
    return row


def write():
    rows = [finished[n] for n in names if n in finished]
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
                   "elapsed_s": round(time.time() - start, 1), "jobs": rows,
                   "not_started": [n for n, *_ in pending]}, f, indent=1)


while pending or running:
    now = time.time() - start
    while pending and len(running) < args.parallel and now < args.deadline_s:
        name, data, overrides = pending.pop(0)
        cmd = [sys.executable, "-m", "nanorec.cli", "train", "--data", data, "--out", os.path.join(args.root, name),
               "--quiet", *overrides]
        log = open(os.path.join(args.root, name + ".log"), "w")
        running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), data, overrides,
                         time.time())
    for name, (proc, data, overrides, t0) in list(running.items()):
        rc = proc.poll()
        late = time.time() - start >= args.deadline_s
        if rc is None and late:
            proc.kill()
            proc.wait()
            rc = "stopped"
        if rc is not None:
            status = "done" if rc == 0 else "stopped" if rc == "stopped" else f"failed (exit {rc})"
            finished[name] = summary(name, data, overrides, status, time.time() - t0)
            del running[name]
            print(f"[{time.time() - start:6.0f}s] {name}: {status} "
                  f"{finished[name].get('best_valid_NDCG@10')}", flush=True)
            write()
    if time.time() - start >= args.deadline_s:
        break
    time.sleep(1)
write()
