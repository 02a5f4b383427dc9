"""The shop-events example runs top to bottom: filter, fit three methods, ship, save/load, serve."""
import os
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "shop_events.py")


def test_shop_events_example(tmp_path):
    out = subprocess.run([sys.executable, EXAMPLE, "--steps", "60", "--out", str(tmp_path / "runs")],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    ndcg = {line.split()[0]: float(line.split("NDCG@10")[1].split()[0])
            for line in text.splitlines() if "test HR@10" in line}
    assert set(ndcg) == {"popularity", "transitions", "GPT"}
    assert ndcg["GPT"] > 2 * ndcg["popularity"] and ndcg["transitions"] > 2 * ndcg["popularity"]
    assert "identical lists" in text and "POST /recommendations -> [" in text
