"""The seed's workload with the defaults, end to end: `nanorec synth` at the challenge's shape
(2.43M purchases, 78k items, 720k users, 412k users to recommend for), then every command a
user would run, each in its own process so each has its own wall time and peak RSS.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/seed_scale.py [--work runs/seed_scale] [--only gpt|baselines]

Phases:
  gpt          nanorec train --data FOLDER --out RUN (every setting at its default): training,
               validation on the auto sample, fusion (tables + weights on validation), the final
               validation; metrics.json has the GPT alone and the fused model on the same
               validation users (the weight search's 0,0,0 row and its best)
  recommend    nanorec recommend --run RUN --data FOLDER --out submission.csv: top-10 for every
               test.csv user (412k)
  baselines    nanorec train method=popularity|transitions|cooccurrence, then their recommend,
               each timed: fit + validation + recommend

Writes benchmarks/results/seed_scale_cpu.json: command, machine, date, every phase's figures and
peak RSS, and the goals of the issue that asked for them (met or not).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "nanorec.cli"]


def run_phase(name: str, argv: list[str]) -> tuple[float, float]:
    """Run one command in a child process -> (wall seconds, peak RSS GiB of the child)."""
    print(f"[{name}] {' '.join(argv)}", flush=True)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": ROOT}
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.time()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            sys.exit(f"[{name}] failed:\n{err.read()[-3000:]}")
    return round(wall, 1), round(usage.ru_maxrss / 2**20, 3)


def cpu_model() -> str:
    try:
        return next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "seed_scale"))
    p.add_argument("--only", choices=["gpt", "baselines"], help="run one part (default: both)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "seed_scale_cpu.json"))
    args = p.parse_args()
    data = os.path.join(args.work, "data")
    os.makedirs(args.work, exist_ok=True)
    old = json.load(open(args.out)) if os.path.exists(args.out) else {}
    phases = old.get("phases", {})
    if not os.path.isdir(data):
        wall, rss = run_phase("synth", CLI + ["synth", "--out", data, "--rows", "2430000", "--items", "78000",
                                             "--users", "720000", "--seed", "0"])
        phases["synth"] = {"seconds": wall, "peak_rss_gib": rss}
    test_users = sum(1 for _ in open(os.path.join(data, "test.csv"))) - 1

    if args.only in (None, "gpt"):
        run = os.path.join(args.work, "gpt")
        wall, rss = run_phase("gpt", CLI + ["train", "--data", data, "--out", run, "--overwrite", "--quiet"])
        m = json.load(open(os.path.join(run, "metrics.json")))
        grid = m["fusion"]["valid_NDCG@10_by_weights"]
        alone, fused = grid["0.0,0.0,0.0"], m["fusion"].get("valid_NDCG@10", max(grid.values()))
        phases["gpt"] = {
            "command": "nanorec train --data DATA --out RUN (defaults)", "wall_seconds": wall, "peak_rss_gib": rss,
            "steps": m["steps"], "best_step": m["best_step"], "epochs": m["epochs"],
            "train_seconds": m["train_seconds"], "validations_during_training_seconds":
                round(sum(h["valid_seconds"] for h in m["history"]), 1),
            "fusion_seconds": m["fusion_seconds"], "final_valid_seconds": m["valid_seconds"],
            "valid_users": m["valid"]["users"], "output_layer": next(
                ln for ln in open(os.path.join(run, "train.log")) if ln.startswith("output layer")).strip(),
            "fusion_weights": m["fusion"]["weights"],
            "valid_NDCG@10_gpt_alone": round(alone, 4), "valid_NDCG@10_fused": round(fused, 4),
            "fused_over_gpt_alone": round(fused / alone, 2),
            "valid": {k: round(v, 4) for k, v in m["valid"].items() if "@10" in k},
            "history": [{k: h.get(k) for k in ("step", "train_loss", "valid_loss", "NDCG@10", "train_seconds",
                                               "valid_seconds")} for h in m["history"]],
        }
        sub = os.path.join(args.work, "submission.csv")
        wall, rss = run_phase("recommend", CLI + ["recommend", "--run", run, "--data", data, "--out", sub])
        phases["recommend"] = {"users": test_users, "seconds": wall, "peak_rss_gib": rss,
                               "rows_written": sum(1 for _ in open(sub)) - 1}

    if args.only in (None, "baselines"):
        for method in ("popularity", "transitions", "cooccurrence"):
            run = os.path.join(args.work, method)
            fit_wall, fit_rss = run_phase(method, CLI + ["train", "--data", data, "--out", run, "--overwrite",
                                                         "--quiet", f"method={method}"])
            sub = os.path.join(args.work, f"submission_{method}.csv")
            rec_wall, rec_rss = run_phase(f"{method} recommend", CLI + ["recommend", "--run", run, "--data", data,
                                                                        "--out", sub])
            m = json.load(open(os.path.join(run, "metrics.json")))
            phases[f"baseline_{method}"] = {
                "fit_and_validation_seconds": fit_wall, "recommend_seconds": rec_wall,
                "total_seconds": round(fit_wall + rec_wall, 1), "peak_rss_gib": max(fit_rss, rec_rss),
                "valid_users": m["valid"]["users"], "valid": {k: round(v, 4) for k, v in m["valid"].items()
                                                              if "@10" in k},
                "selection": m.get("selection")}

    goals = {}
    if "gpt" in phases:
        g = phases["gpt"]
        before_recommend = g["wall_seconds"]
        goals["fused_at_least_1.5x_gpt_alone"] = {"measured": g["fused_over_gpt_alone"],
                                                  "met": g["fused_over_gpt_alone"] >= 1.5}
        goals["train_fusion_validation_at_most_6_min"] = {"measured_seconds": before_recommend,
                                                          "met": before_recommend <= 360}
        goals["recommend_412k_at_most_90_s"] = {"measured_seconds": phases["recommend"]["seconds"],
                                                "met": phases["recommend"]["seconds"] <= 90}
        goals["peak_memory_at_most_2_GB"] = {"measured_gib": max(g["peak_rss_gib"], phases["recommend"]["peak_rss_gib"]),
                                             "met": max(g["peak_rss_gib"], phases["recommend"]["peak_rss_gib"]) <= 2.0}
    for method in ("popularity", "transitions", "cooccurrence"):
        if f"baseline_{method}" in phases:
            t = phases[f"baseline_{method}"]["total_seconds"]
            goals[f"{method}_fit_validation_recommend_at_most_3_min"] = {"measured_seconds": t, "met": t <= 180}
    import torch
    result = {
        "command": "OMP_WAIT_POLICY=PASSIVE python benchmarks/seed_scale.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()}-core CPU ({cpu_model()}, {platform.machine()}), {torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, torch {torch.__version__}, "
                   f"torch's default threads; load average at the end {os.getloadavg()[0]:.1f}",
        "date": datetime.date.today().isoformat(),
        "data": "nanorec synth --rows 2430000 --items 78000 --users 720000 --seed 0 (74,633 items bought)",
        "wall_seconds_note": "each phase's wall time is its whole process: start-up, data loading and writing included",
        "phases": phases, "goals": goals,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(goals, indent=1))


if __name__ == "__main__":
    main()
