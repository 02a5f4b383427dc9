"""From a shop's event export to shipped top-10 lists, in the Python API (run it top to bottom,
or paste the cells into a notebook).

    python examples/shop_events.py [--events events.csv] [--steps 600] [--out runs/shop_example]

Without --events it writes a shop-like export first: string customer and sku
ids, ISO-8601 timestamps, an event_type column (view / cart / purchase) and a
couple of columns nanorec does not use, rows shuffled.
"""
import argparse
import os

import numpy as np
import polars as pl

from nanorec import Recommender
from nanorec.data.synthetic import generate

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--events", help="an events CSV with customer, sku, ts and event_type columns")
p.add_argument("--steps", type=int, default=600, help="GPT training steps (default 600)")
p.add_argument("--out", default="runs/shop_example", help="folder for the runs")
args = p.parse_args()

# %% 1. the events, as a DataFrame
if args.events:
    events = pl.read_csv(args.events)
else:
    users, items, order = generate(num_users=2000, num_items=300, seed=7)
    rng = np.random.default_rng(7)
    seconds = np.argsort(np.argsort(order, kind="stable"), kind="stable")  # the log's order, one event a second
    events = pl.DataFrame({
        "customer": [f"c{u}" for u in users],
        "sku": [f"sku{i:04d}" for i in items],
        "ts": [str(t) + "Z" for t in np.datetime64("2024-04-01T00:00:00") + seconds.astype("timedelta64[s]")],
        "event_type": rng.choice(["view", "cart", "purchase"], size=len(users), p=[0.2, 0.2, 0.6]),
        "price": rng.random(len(users)).round(2),
    }).sample(fraction=1.0, shuffle=True, seed=7)
print(f"{events.height:,} events, {events['customer'].n_unique():,} customers, {events['sku'].n_unique():,} skus")

# %% 2. keep carts and purchases (views are a different intent), then fit and compare with two baselines
columns = dict(user_col="customer", item_col="sku", time_col="ts", filter="event_type=cart,purchase")
common = dict(max_steps=args.steps, eval_interval=max(args.steps // 4, 1), progress=False)
models = {
    "popularity": Recommender(method="popularity"),
    "transitions": Recommender(method="transitions"),
    "GPT": Recommender(n_layer=2, n_embd=64, block_size=20, dropout=0.2, learning_rate=3e-3, warmup_steps=50,
                       **common),
}
for name, rec in models.items():
    rec.fit(events, out=os.path.join(args.out, name), overwrite=True, **columns)
    test = rec.metrics["test"]
    print(f"{name:<12} test HR@10 {test['HR@10']:.4f}  NDCG@10 {test['NDCG@10']:.4f}  (full ranking, leave-one-out)")
best = max(models, key=lambda name: models[name].metrics["valid"]["NDCG@10"])  # chosen on validation, not test
print(f"best on validation: {best}")

# %% 3. the model to ship: every event is a training target, for the step count and fusion weights
# validation chose (a holdout=none run has no validation of its own to choose them on)
steps = models["GPT"].metrics["best_step"]
fused = models["GPT"].metrics.get("fusion", {}).get("weights")  # {"transitions": w1, "cooccurrence": w2}
weights = {"fusion_weights": ",".join(str(w) for w in fused.values())} if fused else {}
ship = Recommender(n_layer=2, n_embd=64, block_size=20, dropout=0.2, learning_rate=3e-3, warmup_steps=50,
                   holdout="none", **{**common, "max_steps": max(steps, 1)}, **weights)
ship.fit(events, out=os.path.join(args.out, "ship"), overwrite=True, **columns)

# %% 4. top-10 for every customer, and for a raw basket
top = ship.recommend(k=10)
print(top.head(3))
print(ship.recommend_history(["sku0001", "sku0002"], k=3))

# %% 5. save, load, and the same lists come back
path = ship.save(os.path.join(args.out, "shipped"), overwrite=True)
again = Recommender.load(path)
assert again.recommend(k=10).equals(top)
print(f"saved and reloaded {path}: identical lists")

# %% 6. serve one request (needs the serve extra: pip install 'nanorec[serve]')
try:
    from fastapi.testclient import TestClient
except ImportError:
    print("serve: skipped (fastapi not installed)")
else:
    from nanorec.commands.serve import create_app
    client = TestClient(create_app(path))
    answer = client.post("/recommendations", json={"history": ["sku0001", "sku0002"], "k": 3}).json()
    print(f"POST /recommendations -> {answer['items']} ({answer['source']})")
