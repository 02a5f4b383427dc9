import os
import subprocess
import sys

import numpy as np

from nanorec.data import item_counts, load, split
from nanorec.evaluation.metrics import evaluate
from nanorec.data.synthetic import write_csv

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "simple_train.py")


def test_simple_train_example_runs_and_beats_popularity(tmp_path):
    data = write_csv(str(tmp_path / "log.csv"), num_users=800, num_items=150, seed=1)
    out = subprocess.run([sys.executable, EXAMPLE, "--data", data, "--steps", "120", "--eval-every", "60"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("test: HR@10")
    ndcg = float(lines[-1].split("NDCG@10")[1].split()[0])
    ds = load(data)
    counts = item_counts(ds.sequences.drop_last(1), ds.num_items).astype(np.float32)
    pop = evaluate(lambda h, u: np.broadcast_to(counts, (len(h), len(counts))), split(ds).test)["NDCG@10"]
    assert ndcg > 2 * pop, (ndcg, pop)
