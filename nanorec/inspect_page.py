"""`nanorec inspect`: one static HTML page to look at a run's lists before trusting them.

    nanorec inspect --run RUN --out page.html [--items catalog.csv] [--users u1,u2] [--sample N] [--k 10]

For a sample of users (and any asked for): the history beside the top-k list the run ships
(the saved histories continued, the user's own items excluded), with titles and images when a
catalogue is given (a CSV with item_id,title and optionally image_url), each item's score and,
for a fused GPT run, the terms of its score (the GPT logit, the weighted transitions,
co-occurrence and content contributions) and which one lifted it most (the term that put it
furthest above a typical item: its value minus its median over the catalogue). Then the run's metrics
(accuracy and beyond, the baselines beside it), its fusion weights and curves.png.

The page needs no server and nothing from the network: the CSS is inline, curves.png is embedded
(base64), and the only images are the catalogue's own URLs.
"""
from __future__ import annotations

import base64
import html
import json
import os

import numpy as np

from .cli import command_parser
from .errors import DataError, UsageError

TERMS = ("GPT logit", "transitions", "co-occurrence", "content")


def read_catalogue(path: str) -> dict:
    """item_id (as text) -> (title, image_url or ""), from a CSV with item_id,title[,image_url]."""
    import polars as pl
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file (--items: a CSV with item_id,title[,image_url])")
    try:
        df = pl.read_csv(path, infer_schema_length=0)  # every column as text: ids keep their exact spelling
    except Exception as e:  # noqa: BLE001 - polars raises several types for an unreadable file
        raise DataError(f"{path}: not a readable CSV ({' '.join(str(e).split())[:200]})") from None
    for col in ("item_id", "title"):
        if col not in df.columns:
            raise DataError(f"{path}: missing column {col!r} (columns are {', '.join(df.columns)}); "
                            "expected item_id,title[,image_url]")
    images = df["image_url"].fill_null("") if "image_url" in df.columns else [""] * df.height
    return {i.strip(): (t or "", u or "") for i, t, u in zip(df["item_id"].to_list(), df["title"].to_list(), images)
            if i is not None}


def choose_users(user_ids: np.ndarray, lengths: np.ndarray, asked: list[str], sample: int, seed: int) -> np.ndarray:
    """Rows of the asked users (by their original id, as text), then a seeded sample of others with
    a history."""
    text = [str(u) for u in user_ids.tolist()]
    where = {u: r for r, u in enumerate(text)}
    rows = []
    for u in asked:
        if u not in where:
            raise DataError(f"--users: user {u!r} is not in the run's histories (e.g. {', '.join(text[:3])})")
        rows.append(where[u])
    pool = np.setdiff1d(np.nonzero(lengths > 0)[0], rows)
    if sample and len(pool):
        rows += sorted(np.random.default_rng(seed).choice(pool, size=min(sample, len(pool)), replace=False).tolist())
    return np.array(rows, dtype=np.int64)


def fused_terms(run_dir: str, device: str = "cpu"):
    """(cfg, scorer, item_ids, parts) where parts = (gpt scorer, tables, content, weights) for a fused
    GPT run, else None (its scores are shown without terms). The run is opened the one way (Run.open)."""
    from .run import Run, fusion_terms
    run = Run.open(run_dir, device)
    return run.config, run.scorer, run.item_ids, fusion_terms(run, device)


def term_table(parts, histories, users, lists: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Each listed item's terms of the fused score, and how much each lifted it.
    -> (terms (B, k, 4): GPT logit, w1 log transitions, w2 log co-occurrence, w3 content cosine;
        lift (B, k, 4): each term minus its median over the user's catalogue, i.e. how far the term
        put this item above a typical item; the terms in use (the GPT and those with a weight > 0)).
    A dense pass per term over the catalogue: for the handful of users of a page that is cheap."""
    import torch
    from .fusion import BatchTerms
    gpt, tables, content, weights = parts
    bt = BatchTerms(gpt, tables, content, histories, users)
    B = len(lists)
    dense = [bt.gpt.dense().double().cpu()]  # (B, V) each
    for i, w in enumerate(weights[:2]):
        term = bt.table(i) if w else None
        dense.append(w * term.dense().double().cpu() if term is not None else None)
    dense.append(weights[2] * bt.content.dense().double().cpu() if weights[2] and bt.content is not None else None)
    rows, idx = torch.arange(B)[:, None], torch.from_numpy(lists)
    terms, lift = np.zeros(lists.shape + (4,)), np.zeros(lists.shape + (4,))
    for t, d in enumerate(dense):
        if d is None:
            continue
        terms[..., t] = d[rows, idx].numpy()
        lift[..., t] = terms[..., t] - d[:, 1:].median(dim=1).values.numpy()[:, None]  # item 0 is padding
    return terms, lift, [t for t, d in enumerate(dense) if d is not None]


def lifted_by(lift: np.ndarray, used: list[int]) -> list[list[str]]:
    """Per listed item, the term that put it furthest above a typical item (the largest lift)."""
    best = np.array(used)[lift[..., used].argmax(-1)]
    return [[TERMS[t] for t in row] for row in best]


CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px} .muted{color:#777}
.user{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px 16px;margin:14px 0}
.cols{display:grid;grid-template-columns:minmax(220px,1fr) 3fr;gap:18px}
table{border-collapse:collapse;width:100%} td,th{padding:3px 6px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
th{font-weight:600;background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
img.thumb{width:40px;height:40px;object-fit:cover;border-radius:4px;background:#eee}
.hist li{margin:2px 0} .tag{display:inline-block;padding:0 6px;border-radius:10px;background:#e6f0ff;font-size:12px}
.tag.gpt{background:#eee} .metrics td{font-size:13px}
"""


def _item_cell(item_id, catalogue: dict) -> str:
    title, url = catalogue.get(str(item_id), ("", ""))
    img = f'<img class="thumb" src="{html.escape(url)}" alt="">' if url and not url.lower().startswith("javascript:") else ""
    name = f"{html.escape(title)} <span class=muted>({html.escape(str(item_id))})</span>" if title \
        else html.escape(str(item_id))
    return f"{img} {name}" if img else name


def _metrics_table(metrics: dict) -> str:
    rows = []
    for split in ("valid", "test", "test_cold", "beyond"):
        m = metrics.get(split)
        if not isinstance(m, dict):
            continue
        cells = [(k, v) for k, v in m.items() if "@10" in k and isinstance(v, (int, float))]
        if split == "beyond":
            label = f"beyond ({m.get('split', '')}, {m.get('users', 0):,} users)"
        else:
            label = f"{split} ({m.get('users', 0):,} users)"
        rows.append(f"<tr><th>{html.escape(label)}</th>" + "".join(
            f"<td>{html.escape(k)} <b>{v:.4f}</b></td>" for k, v in cells) + "</tr>")
    for name, report in (metrics.get("baselines") or {}).items():
        split = "test" if "test" in report else "valid"
        if split in report:
            rows.append(f"<tr><th>{html.escape(name)} beside ({split})</th>" + "".join(
                f"<td>{k} <b>{report[split][k]:.4f}</b></td>" for k in ("HR@10", "NDCG@10", "MAP@10")
                if k in report[split]) + "</tr>")
    return "<table class=metrics>" + "".join(rows) + "</table>" if rows else "<p class=muted>no metrics.json</p>"


def render(run_dir: str, cfg, metrics: dict, user_ids, histories, rows, lists, scores, terms, catalogue: dict,
           item_ids, k: int) -> str:
    """The page as one HTML string. terms: term_table's (terms, lift, used), or None."""
    esc = html.escape
    if terms is not None:
        terms, lift, used = terms
        lifted = lifted_by(lift, used)
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>nanorec inspect: {esc(run_dir)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>nanorec inspect: {esc(os.path.basename(os.path.normpath(run_dir)))}</h1>",
             f"<p class=muted>{esc(run_dir)} &middot; method={esc(cfg.method)} &middot; holdout={esc(cfg.holdout)}"
             + (f" split_time={esc(cfg.split_time)}" if cfg.split_time else "")
             + f" &middot; {len(item_ids) - 1:,} items</p>"]
    fusion = metrics.get("fusion", {}).get("weights") if isinstance(metrics.get("fusion"), dict) else None
    parts.append("<h2>Metrics</h2>" + _metrics_table(metrics))
    if fusion:
        parts.append("<p>Fusion weights: " + ", ".join(f"{esc(n)} <b>{w}</b>" for n, w in fusion.items()) + "</p>")
    parts.append(f"<h2>Users ({len(rows)})</h2>")
    for b, r in enumerate(rows):
        hist = histories[r]
        shown = hist[-20:]
        hist_html = "".join(f"<li data-item='{esc(str(item_ids[i]))}'>{_item_cell(item_ids[i], catalogue)}</li>"
                            for i in shown)
        more = f"<p class=muted>... and {len(hist) - len(shown)} earlier</p>" if len(hist) > len(shown) else ""
        head = "<tr><th>#</th><th>item</th><th>score</th>" + (
            "".join(f"<th>{TERMS[t]}</th>" for t in used) + "<th>lifted most by</th>" if terms is not None else "") + "</tr>"
        body = []
        for j in range(min(k, lists.shape[1])):
            if lists[b, j] == 0:  # the list is shorter (recommend_lists): fewer unseen items than k
                break
            cells = f"<td>{j + 1}</td><td>{_item_cell(item_ids[lists[b, j]], catalogue)}</td>" \
                    f"<td class=num>{scores[b, j]:.3f}</td>"
            if terms is not None:
                cells += "".join(f"<td class=num>{terms[b, j, t]:.3f}</td>" for t in used)
                tag = lifted[b][j]
                cells += f"<td><span class='tag{' gpt' if tag == TERMS[0] else ''}'>{esc(tag)}</span></td>"
            body.append(f"<tr class=rec data-item='{esc(str(item_ids[lists[b, j]]))}'>{cells}</tr>")
        parts.append(f"<div class=user data-user='{esc(str(user_ids[r]))}'><h3>user {esc(str(user_ids[r]))} "
                     f"<span class=muted>({len(hist)} events)</span></h3><div class=cols>"
                     f"<div><b>history</b> <span class=muted>(oldest first)</span>{more}<ol class=hist>{hist_html}</ol></div>"
                     f"<div><b>top {k}</b><table>{head}{''.join(body)}</table></div></div></div>")
    curves = os.path.join(run_dir, "curves.png")
    if os.path.exists(curves):
        data = base64.b64encode(open(curves, "rb").read()).decode()
        parts.append(f"<h2>Training curves</h2><img alt='curves' style='max-width:100%' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build(run_dir: str, out: str, items: str | None = None, users: list[str] | None = None, sample: int = 5,
          k: int = 10, seed: int = 0, device: str = "cpu") -> str:
    """Write the page for `run_dir` to `out` (atomically); returns `out`."""
    import torch

    from . import rundir
    from .files import check_writable_folder, write_text
    from .scoring import recommend_lists
    check_writable_folder(out, "--out page")
    catalogue = read_catalogue(items) if items else {}
    cfg, scorer, item_ids, parts = fused_terms(run_dir, device)
    user_ids, hist = rundir.read_histories(run_dir)
    rows = choose_users(user_ids, hist.lengths, users or [], sample, seed)
    if len(rows) == 0:
        raise UsageError("no user to show: give --users or --sample N >= 1")
    h = hist.take(rows)
    k = min(k, len(item_ids) - 1)
    with torch.no_grad():
        lists, scores = recommend_lists(scorer, h, rows, k)  # the lists users get: never seen items as filler
        terms = term_table(parts, h, rows, lists) if parts is not None else None
    metrics_path = os.path.join(run_dir, rundir.METRICS)
    metrics = json.load(open(metrics_path)) if os.path.exists(metrics_path) else {}
    write_text(out, render(run_dir, cfg, metrics, user_ids, hist, rows, lists, scores, terms, catalogue, item_ids, k))
    return out


def main(argv) -> int:
    p = command_parser("inspect", __doc__)
    p.add_argument("--run", required=True, help="a finished run folder")
    p.add_argument("--out", required=True, help="the HTML page to write")
    p.add_argument("--items", help="catalogue CSV: item_id,title[,image_url] (titles and images on the page)")
    p.add_argument("--users", help="comma-separated user ids to show (original ids)")
    p.add_argument("--sample", type=int, default=None, help="also show this many random users (default 5, "
                   "0 with --users)")
    p.add_argument("--k", type=int, default=10, help="list length (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the user sample (default 0)")
    args = p.parse_args(argv)
    if not 1 <= args.k <= 1000:
        raise UsageError(f"--k {args.k}: must be in 1..1000")
    sample = args.sample if args.sample is not None else (0 if args.users else 5)
    if not 0 <= sample <= 1000:
        raise UsageError(f"--sample {sample}: must be in 0..1000")
    asked = [u.strip() for u in (args.users or "").split(",") if u.strip()]
    if args.users is not None and not asked:
        raise UsageError(f"--users {args.users!r}: no user id given")
    out = build(args.run, args.out, args.items, asked, sample, args.k, args.seed)
    print(f"wrote {out}")
    return 0
