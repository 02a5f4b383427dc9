"""Top-k recommendations from a trained run, and the challenge submission writer.

    nanorec recommend --run RUN_DIR --data PATH --out FILE [--users FILE] [--k 10]
                      [--mode oneshot|generative] [--exclude-seen|--include-seen]

Two ways to read a list out of the model:
- oneshot: the k highest logits after the user's last item (one forward pass);
- generative: k steps, each appending its greedy (or sampled) item to the
  history and predicting again; an item is never repeated in the list.
Users with no usable history (cold start: normal for a test user absent from
training) get the most popular items. A challenge folder's default users are
its test.csv; the output is then `user_id,predictions` (10 original ids,
space-separated, best first). Otherwise a long table `user_id,item_id,score,rank`.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from .data import DataError, Dataset, Sequences, item_counts, load
from .inference import autocast, load_run, pick_device
from .packing import left_aligned


# -----------------------------------------------------------------------------
# the two decoders

# Excluded (already seen) items get this score: below every real score but above
# the padding slot's -inf, so a list longer than the unseen items is filled with
# seen items, ranked last, and never with padding (original id of index 0 = none).
SEEN_SCORE = torch.finfo(torch.float32).min


@torch.no_grad()
def topk_oneshot(model, cfg, histories: Sequences, k: int, exclude_seen: bool, device="cpu"):
    """(B histories) -> items (B, k) int64, scores (B, k) float: the top-k logits."""
    tokens, seq_ids, pos_ids, last = left_aligned(histories, cfg.block_size)
    t = lambda a: torch.from_numpy(a).to(device)
    with autocast(cfg, device):
        scores = model.score(t(tokens), t(pos_ids), t(seq_ids), t(last)).float().cpu()
    if exclude_seen:
        _mask_seen(scores, histories)
    top = scores.topk(k, dim=1)
    return top.indices.numpy(), top.values.numpy()


@torch.no_grad()
def topk_generative(model, cfg, histories: Sequences, k: int, exclude_seen: bool, device="cpu",
                    temperature: float = 0.0, top_k: int = 0, seed: int = 0):
    """(B histories) -> items (B, k), scores (B, k): k decoding steps, each item
    appended to the history before the next prediction. temperature 0 = greedy;
    > 0 samples from softmax(logits / temperature), restricted to the top_k
    logits when top_k > 0, with a seeded generator (reproducible lists)."""
    gen = torch.Generator().manual_seed(seed)
    B = len(histories)
    rows = [histories[b].tolist() for b in range(B)]
    chosen = torch.zeros(B, k, dtype=torch.long)
    chosen_scores = torch.zeros(B, k)
    seen = torch.zeros(B, model.num_items + 1, dtype=torch.bool)
    if exclude_seen:
        seen[torch.from_numpy(np.repeat(np.arange(B), histories.lengths)), torch.from_numpy(histories.items)] = True
    in_list = torch.zeros_like(seen)
    t = lambda a: torch.from_numpy(a).to(device)
    for step in range(k):
        cur = Sequences.from_lists(rows)
        tokens, seq_ids, pos_ids, last = left_aligned(cur, cfg.block_size)
        with autocast(cfg, device):
            logits = model.score(t(tokens), t(pos_ids), t(seq_ids), t(last)).float().cpu()
        logits[seen] = SEEN_SCORE  # rank last, but above padding: they only fill a list longer than the unseen items
        logits[in_list] = float("-inf")  # never repeat an item in one list
        if temperature > 0:
            probs_logits = torch.where(logits > SEEN_SCORE, logits / temperature, logits)
            if top_k > 0:
                kth = probs_logits.topk(min(top_k, probs_logits.shape[1]), dim=1).values[:, -1:]
                probs_logits[probs_logits < kth] = float("-inf")
            nxt = torch.multinomial(torch.softmax(probs_logits, dim=1), 1, generator=gen).squeeze(1)
        else:
            nxt = logits.argmax(dim=1)
        chosen[:, step] = nxt
        chosen_scores[:, step] = logits.gather(1, nxt[:, None]).squeeze(1)
        in_list[torch.arange(B), nxt] = True
        for b in range(B):
            rows[b].append(int(nxt[b]))
    return chosen.numpy(), chosen_scores.numpy()


def _mask_seen(scores: torch.Tensor, histories: Sequences) -> None:
    rows = torch.from_numpy(np.repeat(np.arange(len(histories)), histories.lengths))
    scores[rows, torch.from_numpy(histories.items)] = SEEN_SCORE


def generative_scorer(model, cfg, device="cpu", k: int = 20):
    """A `nanorec.evaluate.Scorer` for generative lists: the k generated items get
    scores k..1 in order, every other item -inf, so the one evaluator scores them
    (a target outside the list counts as a miss at every cutoff <= k)."""

    def scorer(histories, users=None):
        items, _ = topk_generative(model, cfg, histories, k, exclude_seen=True, device=device)
        scores = torch.full((len(histories), model.num_items + 1), float("-inf"))
        scores.scatter_(1, torch.from_numpy(items), torch.arange(k, 0, -1, dtype=torch.float).expand(len(items), k))
        return scores

    return scorer


# -----------------------------------------------------------------------------
# users, histories and the fallback

def histories_in_run_vocab(ds: Dataset, run_item_ids: np.ndarray) -> tuple[Sequences, int]:
    """The data set's full histories re-indexed to the run's item vocabulary.
    Items the model never saw are dropped from the histories (returned count)."""
    run_index = {str(x): i for i, x in enumerate(run_item_ids.tolist()) if i > 0}
    remap = np.array([0] + [run_index.get(str(x), 0) for x in ds.item_ids[1:].tolist()], dtype=np.int64)
    items = remap[ds.sequences.items]
    known = items > 0
    lengths = np.add.reduceat(known.astype(np.int64), ds.sequences.offsets[:-1]) if len(items) else np.zeros(len(ds.user_ids), np.int64)
    lengths = np.where(ds.sequences.lengths > 0, lengths, 0)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Sequences(offsets, items[known]), int((~known).sum())


def read_user_list(path: str) -> np.ndarray:
    """user_id column of a CSV/Parquet file (strings kept as strings)."""
    from .data import _ids, _read_frame, _require_columns
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    df = _read_frame(path)
    _require_columns(path, df, ["user_id"])
    if df.height == 0:
        raise DataError(f"{path}: no users (no data rows)")
    return _ids(path, df, "user_id")


def recommend(run_dir: str, data_path: str, k: int = 10, mode: str = "oneshot", exclude_seen: bool = True,
              users=None, device: str = "auto", batch_size: int = 512, temperature: float = 0.0,
              top_k: int = 0, seed: int = 0, progress: bool = False):
    """-> (user_ids (U,), items (U, k) original ids, scores (U, k), number of cold users)."""
    from tqdm import tqdm

    device = pick_device(device)
    cfg, model, item_ids = load_run(run_dir, device)
    if k > model.num_items:
        raise DataError(f"--k {k}: the model knows only {model.num_items} items")
    ds = load(data_path, cfg.user_col, cfg.item_col, cfg.time_col)
    hist, _ = histories_in_run_vocab(ds, item_ids)
    if users is None:
        users = ds.test_users if ds.test_users is not None else ds.user_ids
    users = np.asarray(users)
    row_of = ds.user_index()
    key = (lambda u: u) if ds.user_ids.dtype.kind in "iu" and users.dtype.kind in "iu" else str
    if key is str:
        row_of = {str(k_): v for k_, v in row_of.items()}
    rows = np.array([row_of.get(key(u), -1) for u in users.tolist()], dtype=np.int64)
    warm = np.nonzero(rows >= 0)[0]
    warm = warm[hist.lengths[rows[warm]] > 0]
    cold = np.setdiff1d(np.arange(len(users)), warm)

    out_items = np.zeros((len(users), k), dtype=np.int64)
    out_scores = np.zeros((len(users), k), dtype=np.float32)
    # popularity fallback over the whole log, in the model's vocabulary
    counts = item_counts(hist, model.num_items).astype(np.float64)
    counts[0] = -1
    popular = np.argsort(-counts, kind="stable")[:k]
    out_items[cold] = popular
    out_scores[cold] = counts[popular]

    for s in tqdm(range(0, len(warm), batch_size), desc="recommend", unit="batch", disable=not progress):
        idx = warm[s:s + batch_size]
        h = hist.take(rows[idx])
        if mode == "generative":
            it, sc = topk_generative(model, cfg, h, k, exclude_seen, device, temperature, top_k, seed + s)
        else:
            it, sc = topk_oneshot(model, cfg, h, k, exclude_seen, device)
        out_items[idx], out_scores[idx] = it, sc
    return users, item_ids[out_items], out_scores, len(cold)


# -----------------------------------------------------------------------------
# writers (atomic: a temp file renamed into place, never a half-written output)

def write_submission(path: str, users, items) -> None:
    """Challenge format: user_id,predictions with the ids space-separated, best first."""
    import polars as pl
    preds = [" ".join(str(x) for x in row) for row in items.tolist()]
    _atomic_write(path, pl.DataFrame({"user_id": list(users.tolist()), "predictions": preds}))


def write_long(path: str, users, items, scores) -> None:
    import polars as pl
    k = items.shape[1]
    df = pl.DataFrame({"user_id": np.repeat(users, k).tolist(), "item_id": items.reshape(-1).tolist(),
                       "score": scores.reshape(-1), "rank": np.tile(np.arange(1, k + 1), len(users))})
    _atomic_write(path, df)


def _atomic_write(path: str, df) -> None:
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise DataError(f"{path}: folder {d} does not exist")
    tmp = path + ".tmp"
    try:
        if path.lower().endswith(".parquet"):
            df.write_parquet(tmp)
        else:
            df.write_csv(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv) -> int:
    p = argparse.ArgumentParser(prog="nanorec recommend", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n"
                                       "  nanorec recommend --run runs/kaggle --data data/kaggle --out submission.csv\n"
                                       "  nanorec recommend --run runs/beauty --data Beauty.txt --k 20 --out recs.csv")
    p.add_argument("--run", required=True, help="run directory written by `nanorec train`")
    p.add_argument("--data", required=True, help="the interactions whose histories are continued")
    p.add_argument("--out", required=True, help="output .csv (or .parquet)")
    p.add_argument("--users", help="CSV/Parquet with a user_id column (default: test.csv of a challenge folder, else every user)")
    p.add_argument("--k", type=int, default=10, help="list length (default 10)")
    p.add_argument("--mode", choices=["oneshot", "generative"], default="oneshot")
    seen = p.add_mutually_exclusive_group()
    seen.add_argument("--exclude-seen", dest="exclude_seen", action="store_true", default=True,
                      help="never recommend an item already in the history (default; such items only "
                           "fill the end of a list longer than the user's unseen items)")
    seen.add_argument("--include-seen", dest="exclude_seen", action="store_false",
                      help="allow repeat purchases in the list")
    p.add_argument("--format", choices=["auto", "submission", "long"], default="auto",
                   help="auto = submission for a challenge folder, long table otherwise")
    p.add_argument("--temperature", type=float, default=0.0, help="generative: 0 = greedy, > 0 = sampling")
    p.add_argument("--top-k-sample", type=int, default=0, help="generative sampling: keep only the top k logits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if args.k < 1:
        raise DataError(f"--k {args.k}: must be at least 1")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):  # fail before the work, not after it
        raise DataError(f"{args.out}: folder {out_dir} does not exist")
    users = read_user_list(args.users) if args.users else None
    users, items, scores, n_cold = recommend(args.run, args.data, args.k, args.mode, args.exclude_seen, users,
                                             args.device, temperature=args.temperature,
                                             top_k=args.top_k_sample, seed=args.seed, progress=True)
    is_challenge = os.path.isdir(args.data)
    fmt = args.format if args.format != "auto" else ("submission" if is_challenge else "long")
    if fmt == "submission":
        write_submission(args.out, users, items)
    else:
        write_long(args.out, users, items, scores)
    print(f"wrote {args.out}: {len(users):,} users x {args.k} items ({args.mode}); "
          f"{n_cold:,} cold users got the most popular items")
    return 0
