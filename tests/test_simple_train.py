import os
import subprocess
import sys

from nanorec.synthetic import write_csv

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "simple_train.py")


def test_simple_train_example_runs_and_learns(tmp_path):
    data = write_csv(str(tmp_path / "log.csv"), num_users=800, num_items=150, seed=1)
    out = subprocess.run([sys.executable, EXAMPLE, "--data", data, "--steps", "120", "--eval-every", "60"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("test: HR@10")
    ndcg = float(lines[-1].split("NDCG@10")[1].split()[0])
    assert ndcg > 0.15  # far above popularity on this data (about 0.1 on 150 items)
