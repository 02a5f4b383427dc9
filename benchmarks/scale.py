"""The challenge's workload end to end on this machine: 2.43M purchases, 78k items,
720k users, 412k users to recommend for. Every phase runs in its own process,
so each has its own wall time and peak RSS (os.wait4).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/scale.py [--work /tmp/nanorec_scale] [--threads 2]
        [--valid-users 20000] [--budget-minutes 15]

Phases:
  generate    nanorec synth: the challenge-shaped folder (train.csv, test.csv, id_mappings.json)
  load_pack   read the folder, split, pack one epoch; the popularity baseline's exact
              validation MAP@10 (all users and the valid_users sample)
  train       nanorec train, default config (loss=auto), one epoch, validation on the
              valid_users sample at mid-epoch and at the end, then the final full
              validation pass over every user (timed by train itself: metrics.json)
  recommend   nanorec recommend: top-10 for every test.csv user, the submission written as it goes
  budget      (--budget-minutes > 0) the same training for about that many minutes:
              validation MAP@10 against popularity's

Writes benchmarks/results/scale_cpu.json (--out): command, machine, date, torch,
threads, each phase's figures and peak RSS, and the goals met or not.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOALS = {  # phase figure -> (limit, what)
    "load_pack_seconds": (10.0, "load + split + pack <= 10 s"),
    "epoch_seconds": (120.0, "one epoch <= 2 min"),
    "valid_sample_seconds": (30.0, "a validation pass during training <= 30 s"),
    "recommend_seconds": (60.0, "top-10 for all test users <= 1 min"),
    "peak_rss_gib": (2.0, "peak RSS <= 2 GB (every phase)"),
}


def run_phase(name: str, argv: list[str], env: dict) -> tuple[dict, float, float]:
    """Run one phase in a child process -> (its last JSON line or {}, wall s, peak RSS GiB).
    The peak is the child's own (os.wait4: the child and everything it waited for)."""
    import tempfile
    print(f"[{name}] {' '.join(argv)}", flush=True)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.time()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=ROOT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0), err.seek(0)
        out_text, err_text = out.read(), err.read()
    rss = usage.ru_maxrss / 2**20  # KiB -> GiB
    if proc.returncode != 0:
        sys.exit(f"[{name}] failed ({proc.returncode}):\n{err_text[-3000:]}")
    line = next((ln for ln in reversed(out_text.splitlines()) if ln.startswith("{")), None)
    print(f"[{name}] {wall:.1f} s, peak RSS {rss:.2f} GiB" + (f"\n  {line}" if line else ""), flush=True)
    return (json.loads(line) if line else {}), wall, rss


def self_peak() -> float:
    import resource
    return round(max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                     resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 2**20, 3)


# -----------------------------------------------------------------------------
# phases that run inside a child (python benchmarks/scale.py --phase NAME ...)

def phase_load_pack(args) -> dict:
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    from nanorec.config import Config
    from nanorec.data import item_counts, load, split
    from nanorec.core.train import epoch_batches, validation_sample
    t0 = time.time()
    ds = load(args.data)
    t1 = time.time()
    sp = split(ds)
    t2 = time.time()
    cfg = Config()
    packed, batches = epoch_batches(sp.train, cfg, 0)
    t3 = time.time()
    counts = item_counts(sp.train, ds.num_items)
    pop_all = popularity_map10(counts, sp.valid)
    pop_sample = popularity_map10(counts, validation_sample(sp.valid, args.valid_users, cfg.seed))
    return {"load_seconds": round(t1 - t0, 2), "split_seconds": round(t2 - t1, 2), "pack_seconds": round(t3 - t2, 2),
            "load_pack_seconds": round(t3 - t0, 2), "users": len(ds.user_ids), "items": ds.num_items,
            "interactions": int(len(ds.sequences.items)), "test_users": int(len(ds.test_users)),
            "valid_users": int(len(sp.valid.targets)), "steps_per_epoch": len(batches),
            "packed_rows": len(packed), "packing_efficiency": round(packed.efficiency, 4),
            "target_tokens_per_epoch": int((packed.targets != -100).sum()),
            "popularity_valid_MAP@10_all": round(pop_all, 5), "popularity_valid_MAP@10_sample": round(pop_sample, 5),
            "two_item_share": round(float(np.mean(ds.sequences.lengths == 2)), 4), "peak_rss_gib": self_peak()}


def popularity_map10(counts, ev) -> float:
    """Exact full-ranking MAP@10 of the popularity list (training counts, ties by lower
    index, history excluded) without a users x items matrix: a target's rank is its
    global rank minus the history items ranked above it."""
    import numpy as np
    order = np.lexsort((np.arange(len(counts)), -counts))  # best first; padding (count 0) near the end
    order = order[order != 0]
    rank = np.empty(len(counts), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    h = ev.histories
    user = np.repeat(np.arange(len(h)), h.lengths)
    # distinct history items ranked above the target (seen items are ranked last)
    key = np.unique(user * (len(counts) + 1) + h.items)
    u, it = key // (len(counts) + 1), key % (len(counts) + 1)
    above = np.bincount(u[rank[it] < rank[ev.targets[u]]], minlength=len(h))
    seen_target = np.zeros(len(h), dtype=bool)
    seen_target[u[it == ev.targets[u]]] = True
    r = rank[ev.targets] - above
    r = np.where(seen_target, len(order) + 1, r)  # a seen target is ranked last: a miss
    return float(np.where(r <= 10, 1.0 / r, 0.0).mean())


def phase_check_popularity(args) -> dict:
    """popularity_map10 against the evaluator on a small sample (a self-check of the shortcut)."""
    import numpy as np
    from nanorec.data import item_counts, load, split
    from nanorec.evaluation.metrics import evaluate
    from nanorec.core.train import validation_sample
    ds = load(args.data)
    sp = split(ds)
    counts = item_counts(sp.train, ds.num_items)
    ev = validation_sample(sp.valid, 3000, 0)
    c = counts.astype(np.float32)
    ref = evaluate(lambda h, u: np.broadcast_to(c, (len(h), len(c))), ev)["MAP@10"]
    return {"evaluator": ref, "shortcut": popularity_map10(counts, ev)}


# -----------------------------------------------------------------------------
# the driver

def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--work", default="/tmp/nanorec_scale", help="scratch folder (data, runs, submission)")
    p.add_argument("--rows", type=int, default=2_430_000)
    p.add_argument("--items", type=int, default=78_000)
    p.add_argument("--users", type=int, default=720_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--valid-users", type=int, default=20_000, help="valid_users during training")
    p.add_argument("--budget-minutes", type=float, default=0.0, help="also train for about this long (0 = skip)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "scale_cpu.json"))
    args = p.parse_args()
    if args.phase:
        fn = {"load_pack": phase_load_pack, "check_popularity": phase_check_popularity}[args.phase]
        print(json.dumps(fn(args)), flush=True)
        return

    import torch
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(args.threads),
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    py = sys.executable
    data, work = os.path.join(args.work, "data"), args.work
    if os.path.isdir(work):
        shutil.rmtree(work)
    os.makedirs(work)
    phases = {}

    _, wall, rss = run_phase("generate", [py, "-m", "nanorec.cli", "synth", "--out", data, "--rows", str(args.rows),
                                          "--items", str(args.items), "--users", str(args.users),
                                          "--seed", str(args.seed)], env)
    phases["generate"] = {"seconds": round(wall, 1), "peak_rss_gib": round(rss, 3)}

    lp, wall, rss = run_phase("load_pack", [py, __file__, "--phase", "load_pack", "--data", data,
                                            "--threads", str(args.threads), "--valid-users", str(args.valid_users)], env)
    phases["load_pack"] = {**lp, "process_seconds": round(wall, 1), "peak_rss_gib": round(rss, 3)}

    steps = lp["steps_per_epoch"]
    common = [f"threads={args.threads}", f"valid_users={args.valid_users}", "progress=false", "patience=0"]
    run_dir = os.path.join(work, "run_epoch")
    _, wall, rss = run_phase("train", [py, "-m", "nanorec.cli", "train", "--data", data, "--out", run_dir, "--quiet",
                                       f"max_steps={steps}", f"eval_interval={steps // 2}",
                                       f"checkpoint_interval={steps}", *common], env)
    m = json.load(open(os.path.join(run_dir, "metrics.json")))
    log = open(os.path.join(run_dir, "train.log")).read()
    phases["train"] = {
        "steps": steps, "train_seconds": m["train_seconds"], "train_tokens_per_second": m["train_tokens_per_second"],
        "seconds_per_step": round(m["train_seconds"] / steps, 3),
        "output_layer": next((ln for ln in log.splitlines() if ln.startswith("output layer")), ""),
        "valid_sample_seconds": [h["valid_seconds"] for h in m["history"]],
        "valid_sample_users": m["history"][-1].get("valid_users"),
        "valid_sample_MAP@10": [h["MAP@10"] for h in m["history"]],
        "valid_full_seconds": m["valid_seconds"], "valid_full_users": m["valid"]["users"],
        "valid_full_MAP@10": m["valid"]["MAP@10"], "valid_full_NDCG@10": m["valid"]["NDCG@10"],
        "process_seconds": round(wall, 1), "peak_rss_gib": round(rss, 3),
    }

    sub = os.path.join(work, "submission.csv")
    _, wall, rss = run_phase("recommend", [py, "-m", "nanorec.cli", "recommend", "--run", run_dir, "--data", data,
                                           "--out", sub], env)
    phases["recommend"] = {"users": lp["test_users"], "seconds": round(wall, 1), "users_per_second": round(lp["test_users"] / wall),
                           "peak_rss_gib": round(rss, 3), "output_bytes": os.path.getsize(sub)}

    if args.budget_minutes > 0:
        sps = phases["train"]["seconds_per_step"]
        budget_steps = max(steps, int(args.budget_minutes * 60 / sps) // 100 * 100)
        budget_dir = os.path.join(work, "run_budget")
        _, wall, rss = run_phase("budget", [py, "-m", "nanorec.cli", "train", "--data", data, "--out", budget_dir,
                                            "--quiet", f"max_steps={budget_steps}",
                                            f"eval_interval={max(1, budget_steps // 6)}",
                                            f"checkpoint_interval={budget_steps}", *common], env)
        mb = json.load(open(os.path.join(budget_dir, "metrics.json")))
        pop = lp["popularity_valid_MAP@10_all"]
        phases["budget"] = {
            "minutes": args.budget_minutes, "steps": budget_steps, "train_seconds": mb["train_seconds"],
            "note": f"steps = minutes at the one-epoch run's {sps} s/step; train_seconds is what they took here "
                    "(longer when other jobs share the machine)",
            "epochs": mb["epochs"], "best_step": mb["best_step"],
            "valid_full_MAP@10": mb["valid"]["MAP@10"], "valid_full_NDCG@10": mb["valid"]["NDCG@10"],
            "popularity_valid_MAP@10": pop, "ratio_to_popularity": round(mb["valid"]["MAP@10"] / pop, 2),
            "history": [{k: h[k] for k in ("step", "train_loss", "MAP@10", "valid_seconds")} for h in mb["history"]],
            "process_seconds": round(wall, 1), "peak_rss_gib": round(rss, 3),
        }

    figures = {
        "load_pack_seconds": lp["load_pack_seconds"],
        "epoch_seconds": phases["train"]["train_seconds"],
        "valid_sample_seconds": max(phases["train"]["valid_sample_seconds"]),
        "recommend_seconds": phases["recommend"]["seconds"],
        "peak_rss_gib": max(ph.get("peak_rss_gib", 0) for ph in phases.values()),
    }
    goals = {k: {"goal": what, "measured": figures[k], "met": figures[k] <= limit} for k, (limit, what) in GOALS.items()}
    if "budget" in phases:
        goals["budget_quality"] = {"goal": f"validation MAP@10 >= 3x popularity's after ~{args.budget_minutes:g} min",
                                   "measured": phases["budget"]["ratio_to_popularity"],
                                   "met": phases["budget"]["ratio_to_popularity"] >= 3}
    result = {
        "command": "OMP_WAIT_POLICY=PASSIVE python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "arch": platform.machine(), "gpu": None,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                    "note": "a shared 2-core VM: other jobs ran at the same time, so times are upper bounds"},
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__, "threads": args.threads,
        "data": {"rows": args.rows, "items": args.items, "users": args.users, "seed": args.seed,
                 "test_users": lp["test_users"]},
        "peak_rss_note": "per phase: ru_maxrss of its process (os.wait4), GiB",
        "phases": phases, "goals": goals,
    }
    from nanorec.runs.files import write_json
    write_json(args.out, result)
    print(json.dumps(goals, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
