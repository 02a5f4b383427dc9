"""`nanorec serve`: an HTTP API for top-k recommendations from a trained run.

    nanorec serve --run RUN_DIR --data PATH [--host 127.0.0.1] [--port 8000]

    GET  /health                               {"status": "ok", "items": N, "users": U}
    GET  /users/{user_id}/recommendations?k=10 the user's history from --data, continued
    POST /recommendations                      {"history": [item ids, oldest first], "k": 10,
                                                "exclude_seen": true}

Ids are the original ones (as in the data). A user or history the model cannot
use (unknown user, no known item) gets the most popular items, and the answer
says so in "source". Requests are scored one-shot by the same code as
`nanorec recommend`.
"""
# no `from __future__ import annotations`: FastAPI reads the request model from live annotations

import argparse

import numpy as np

from .data import Sequences, item_counts, load
from .inference import load_run, pick_device


def create_app(run_dir: str, data_path: str, device: str = "cpu"):
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel, Field

    from .recommend import histories_in_run_vocab, topk_oneshot

    cfg, model, item_ids = load_run(run_dir, device)
    ds = load(data_path, cfg.user_col, cfg.item_col, cfg.time_col)
    hist, _ = histories_in_run_vocab(ds, item_ids)
    row_of = {str(u): r for r, u in enumerate(ds.user_ids.tolist())}
    index_of = {str(x): i for i, x in enumerate(item_ids.tolist()) if i > 0}
    counts = item_counts(hist, model.num_items).astype(np.float64)
    counts[0] = -1
    popular = np.argsort(-counts, kind="stable")

    def original(i):
        x = item_ids[i]
        return x.item() if hasattr(x, "item") else x

    def answer(history: np.ndarray, k: int, exclude_seen: bool) -> dict:
        if not 1 <= k <= model.num_items:
            raise HTTPException(422, f"k must be between 1 and {model.num_items}")
        if len(history) == 0:
            top = popular[:k]
            return {"items": [original(i) for i in top], "scores": counts[top].tolist(), "source": "popularity"}
        items, scores = topk_oneshot(model, cfg, Sequences.from_lists([history]), k, exclude_seen, device)
        return {"items": [original(i) for i in items[0]], "scores": scores[0].tolist(), "source": "model"}

    app = FastAPI(title="nanorec", description="Next-item recommendations from a GPT over purchase histories.")

    class HistoryRequest(BaseModel):
        history: list[int | str] = Field(default_factory=list, description="original item ids, oldest first")
        k: int = 10
        exclude_seen: bool = True

    @app.get("/health")
    def health():
        return {"status": "ok", "items": model.num_items, "users": len(ds.user_ids)}

    @app.get("/users/{user_id}/recommendations")
    def for_user(user_id: str, k: int = 10, exclude_seen: bool = True):
        r = row_of.get(user_id)
        history = hist[r] if r is not None else np.zeros(0, np.int64)
        return {"user_id": user_id, "known_user": r is not None, **answer(history, k, exclude_seen)}

    @app.post("/recommendations")
    def for_history(req: HistoryRequest):
        known = [index_of[str(x)] for x in req.history if str(x) in index_of]
        unknown = [x for x in req.history if str(x) not in index_of]
        return {**answer(np.array(known, dtype=np.int64), req.k, req.exclude_seen), "unknown_items": unknown}

    return app


def main(argv) -> int:
    p = argparse.ArgumentParser(prog="nanorec serve", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--run", required=True, help="run directory written by `nanorec train`")
    p.add_argument("--data", required=True, help="interactions whose user histories are served")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    import uvicorn

    app = create_app(args.run, args.data, pick_device(args.device))
    uvicorn.run(app, host=args.host, port=args.port)
    return 0
