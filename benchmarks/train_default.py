"""Issue-2 acceptance run: `nanorec train` with default settings on an S3-Rec file,
timed end to end (training + final validation + the one test pass).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_default.py ../shared/data/beauty/Beauty.txt [key=value ...]

Writes benchmarks/results/gpt_default_<name>.json: the command, machine, date,
wall seconds, peak RSS, and the run's metrics.json (valid and test).
"""
import json
import os
import platform
import resource
import sys
import time

import torch

from nanorec.config import Config, apply_overrides
from nanorec.core.train import run

data, overrides = sys.argv[1], sys.argv[2:]
name = os.path.splitext(os.path.basename(data))[0]
cfg = apply_overrides(Config(data=data, progress=False), overrides)
out = os.path.join("runs", f"default_{name}")
t0 = time.time()
metrics = run(cfg, out)
wall = time.time() - t0
result = {
    "command": "python benchmarks/train_default.py " + " ".join(sys.argv[1:]),
    "equivalent": f"nanorec train --data {data} --out {out} " + " ".join(overrides),
    "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), {torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}",
    "date": time.strftime("%Y-%m-%d"),
    "wall_seconds": round(wall, 1),
    "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    "config": cfg.to_dict(),
    "metrics": {k: v for k, v in metrics.items() if k != "history"},
    "history": metrics["history"],
}
os.makedirs("benchmarks/results", exist_ok=True)
path = f"benchmarks/results/gpt_default_{name.lower()}.json"
with open(path, "w") as f:
    json.dump(result, f, indent=2)
print(f"wrote {path}: wall {wall:.0f} s, test HR@10 {metrics['test']['HR@10']:.4f} NDCG@10 {metrics['test']['NDCG@10']:.4f}")
