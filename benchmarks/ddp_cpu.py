"""One process vs torchrun data parallelism on the same CPU, same global batch.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ddp_cpu.py ../shared/data/beauty/Beauty.txt [--steps 200] [--procs 2]

Runs `nanorec train` twice for `steps` steps with one validation at the end:
1 process with `procs` threads, then `torchrun --nproc_per_node=procs` with 1
thread each (what torchrun does by default). Both use the default batch of 64
packed rows per step, split across processes in the second run, so they do the
same optimisation. Reports training tokens/s (from train.log, measured before
the validation pass), wall seconds and the validation NDCG@10 of each, into
benchmarks/results/ddp_cpu_<name>.json. On a machine with many cores (or
several machines) the same command line scales out; this measures what it
costs or gains on this one.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import torch

p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("--steps", type=int, default=200)
p.add_argument("--procs", type=int, default=2)
args = p.parse_args()

settings = [f"max_steps={args.steps}", f"eval_interval={args.steps}", "patience=0", "progress=false"]
train = ["-m", "nanorec.cli", "train", "--data", args.data, "--quiet", *settings]


def measure(label, launcher, threads):
    out = tempfile.mkdtemp(prefix=f"ddp_{label}_")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.time()
    subprocess.run([*launcher, *train, f"threads={threads}", "--out", out], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - t0
    log = open(os.path.join(out, "train.log")).read()
    rate = re.findall(r"\| ([\d,]+) train tokens/s", log)[-1]
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    result = {"train_tokens_per_s": int(rate.replace(",", "")), "wall_s": round(wall, 1),
              "train_seconds": metrics["train_seconds"], "valid_NDCG@10": round(metrics["valid"]["NDCG@10"], 4)}
    print(label, result, flush=True)
    return result


single = measure("one_process", [sys.executable], args.procs)
ddp = measure("torchrun", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={args.procs}"], 1)
name = os.path.splitext(os.path.basename(args.data))[0].lower()
result = {
    "command": f"OMP_WAIT_POLICY=PASSIVE python benchmarks/ddp_cpu.py {args.data} --steps {args.steps} --procs {args.procs}",
    "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), {torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, torch {torch.__version__}",
    "date": time.strftime("%Y-%m-%d"),
    "setting": f"default config, {args.steps} steps of 64 packed rows, one validation at the end",
    f"one_process_{args.procs}_threads": single,
    f"torchrun_{args.procs}_processes_1_thread": ddp,
    "speedup_train_tokens_per_s": round(ddp["train_tokens_per_s"] / single["train_tokens_per_s"], 2),
}
os.makedirs("benchmarks/results", exist_ok=True)
with open(f"benchmarks/results/ddp_cpu_{name}.json", "w") as f:
    json.dump(result, f, indent=2)
print(json.dumps(result, indent=2))
