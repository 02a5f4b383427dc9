"""`nanorec leaderboard`: every baseline and the seed's GPT variants, one evaluator, one table.

    nanorec leaderboard --data Beauty.txt --out leaderboards/beauty [--methods a,b,...] [key=value ...]

Each method is fitted on the training split (selection on validation only), then scored ONCE on
the test split by the same full-ranking evaluator. Writes leaderboard.json (after every method,
so an interrupted run keeps what it finished and `--resume` skips it), leaderboard.md and
leaderboard.png (test NDCG@10 bars, the published SASRec and best results as lines). The GPT rows
follow the seed's journey unfused; gpt_fused is the model as `nanorec train content=...` ships
it (the default fusion; its figure the run's metrics.json), drawn in its own colour.
key=value overrides apply to every GPT run (e.g. max_steps=2000).

Every method is also scored on the "cold-target" users (whose test item has at most 5 training
interactions), and has beyond-accuracy columns (coverage@10, novelty@10, average recommended
popularity@10) from each test user's top-20 list.

--split-time X: the time-split mode (holdout=time, see nanorec train --help): an event log with
times; every method trains on the events before X and is scored on each user's items after X,
multi-target (Recall@10 replaces the cold-target column; the content methods and the published
popularity, which need leave-one-out files, are left out).
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import methods
from ..cli import command_parser
from ..config import Config, apply_overrides
from ..content.tables import attribute_table, save_table
from ..core.train import run as train
from ..data import Dataset, TargetSets, item_counts, load, read_json, split, time_split
from ..errors import DataError, UsageError
from ..evaluation.metrics import (KS, TIME_PROTOCOL, beyond_metrics, evaluate, evaluate_split, metrics_from_ranks,
                                  protocol_line, top_lists)
from ..runs.files import atomic_write, check_output_folder, write_json, write_text
from ..runs.run import Run
from ..runs.rundir import read_test_ranks
from ..scoring.scorer import list_scorer

# Published full-ranking results on the S3-Rec files (HR@10, NDCG@10), leave-one-out over all items
# (PopRec counts every interaction, test targets included).
PUBLISHED = {
    "Beauty": {"SASRec (S3-Rec paper)": (0.0605, 0.0318), "best published (BSARec / TV-Rec)": (0.1017, 0.0611),
               "PopRec (published)": (0.0152, 0.0068)},
    "Sports_and_Outdoors": {"SASRec (S3-Rec paper)": (0.0350, 0.0192), "best published (TV-Rec)": (0.0635, 0.0363),
                            "PopRec (published)": (0.0094, 0.0053)},
    "LastFM": {"SASRec (S3-Rec paper)": (0.0688, 0.0390), "best published (TV-Rec)": (0.0853, 0.0484)},
}

# The seed's challenge table (MAP@10), for the side-by-side in benchmarks/README.md.
SEED_MAP10 = {"svd": 0.00245, "content_knn": 0.00723, "lightgcn": 0.04754, "gpt_padded": 0.05068,
              "gpt_generative": 0.05955, "gpt_content": 0.06788, "gpt_content_decay": 0.07198,
              "gpt_all_data": 0.07401}

def cold_target_mask(ds: Dataset, sp, max_count: int = 5) -> np.ndarray:
    """(M,) test users whose target item has at most `max_count` training interactions."""
    counts = item_counts(sp.train, ds.num_items)
    return counts[sp.test.targets] <= max_count


# the rows that need attributes; the time-split mode leaves out those and what counts test targets
CONTENT_ROWS = ("content_knn", "gpt_content", "gpt_content_decay", "gpt_fused", "gpt_all_data")
NOT_IN_TIME_MODE = ("popularity_published", *CONTENT_ROWS)


def scored_on_test(scorer, ds, sp, batch_size: int = 512):
    """(test metrics, per-user ranks or None in the time-split mode, beyond-accuracy metrics of
    each test user's top-20 list)."""
    if isinstance(sp.test, TargetSets):
        test_m, ranks = evaluate_split(scorer, sp.test, batch_size, ds.num_items), None
    else:
        test_m, ranks = evaluate(scorer, sp.test, batch_size=batch_size, return_ranks=True)
    lists = top_lists(scorer, sp.test, min(max(KS), ds.num_items), batch_size)
    return test_m, ranks, beyond_metrics(lists, sp.test.histories, item_counts(sp.train, ds.num_items), ds.num_items)


def _row(method, test_m, ranks, cold, valid_m=None, train_s=0.0, rec_s=0.0, config=None, extra=None):
    row = {"method": method, "label": ROWS[method].label,
           "test": {k: test_m[k] for k in test_m if "@" in k},
           "test_cold_target": None if ranks is None else metrics_from_ranks(ranks[cold]),
           "cold_target_users": 0 if ranks is None else int(cold.sum()),
           "valid": {k: valid_m[k] for k in valid_m if "@" in k} if valid_m else None,
           "train_seconds": round(train_s, 1), "recommend_seconds": round(rec_s, 1), "config": config or {}}
    row.update(extra or {})
    return row


def knn_settings(ds, attributes_path) -> dict:
    """Options chosen on validation by benchmarks/content_knn.py: the unreduced TF-IDF attribute
    vectors, the last item only, a small popularity tie-break."""
    ids, vectors = attribute_table(ds.attributes_path, ds.item_ids, dim=100_000)  # > rank: no reduction
    knn_table = os.path.join(os.path.dirname(attributes_path), "attributes_full.safetensors")
    save_table(knn_table, ids, vectors)
    return dict(content=knn_table, item_ids=ds.item_ids, last=1, pop_weight=0.1)


def run_fitted(name, ds, sp, cold, base_cfg, out_dir, attributes_path, done):
    row = ROWS[name]
    t0 = time.time()
    settings = row.settings(ds, attributes_path) if row.settings else {}
    train, valid = (ds.sequences, None) if row.all_events else (sp.train, sp.valid)
    model = methods.get(row.method).fit(train, ds.num_items, valid, **settings)
    train_s = time.time() - t0
    valid_m = None if row.all_events else evaluate(model.score, sp.valid)  # it counted them
    t1 = time.time()
    test_m, ranks, beyond = scored_on_test(model.score, ds, sp)
    return _row(name, test_m, ranks, cold, valid_m, train_s, time.time() - t1, row.config(model), {"beyond": beyond})


# rows built from an earlier row's run (decoded generatively) or schedule (replayed to its chosen step)
NEEDS = {"gpt_generative": "gpt_packed", "gpt_all_data": "gpt_content_decay"}


def run_generative(name, ds, sp, cold, base_cfg, out_dir, attributes_path, done):
    """The packed model, decoded generatively: no new training."""
    packed_row = done[NEEDS[name]]  # main checks that it comes first
    packed_dir = os.path.join(out_dir, "runs", NEEDS[name])
    packed = Run.open(packed_dir)  # as the run ships (the GPT alone: the leaderboard's rows are unfused)
    t0 = time.time()
    # nothing is selected for this row (the packed run's weights): test only, half the cost
    test_m, ranks, beyond = scored_on_test(list_scorer(packed.scorer, packed.num_items, 20), ds, sp, 256)
    return _row(name, test_m, ranks, cold, None, packed_row["train_seconds"], time.time() - t0,
                packed_row["config"], {"run": packed_dir, "beyond": beyond})


def run_gpt(name, ds, sp, cold, base_cfg: Config, out_dir, attributes_path, done):
    changes = {k: (v.format(attributes=attributes_path) if isinstance(v, str) else v)
               for k, v in ROWS[name].changes.items()}
    if name in NEEDS:  # the selected run's schedule, replayed up to its validation-chosen step
        chosen = done[NEEDS[name]]
        changes.update(decay_steps=chosen["config"]["decay_steps"] or chosen["config"]["max_steps"],
                       max_steps=chosen["best_step"])
    cfg = Config(**{**base_cfg.to_dict(), **changes})
    run_dir = os.path.join(out_dir, "runs", name)
    t0 = time.time()
    metrics = train(cfg, run_dir, overwrite=True, quiet=True)  # a row not in leaderboard.json is redone whole
    train_s = time.time() - t0
    test_m, rec_s = metrics["test"], metrics["test_seconds"]  # measured: the final test pass alone
    ranks = None if isinstance(sp.test, TargetSets) else read_test_ranks(run_dir)
    return _row(name, test_m, ranks, cold, metrics["valid"], train_s, rec_s, cfg.to_dict(),
                {"best_step": metrics["best_step"], "steps": metrics["steps"], "run": run_dir,
                 "beyond": metrics.get("beyond")})


@dataclass(frozen=True)
class Row:
    """How a row of the board is built (`build`: run_fitted, run_gpt, run_generative). A fitted row:
    the registered method, `settings(ds, attributes_path)` -> its options, `config(model)` -> its
    row's config, all_events: fitted on every interaction (no validation). A GPT row: `changes`."""
    label: str
    build: Callable
    method: str = ""
    config: Callable | None = None
    settings: Callable | None = None
    all_events: bool = False
    changes: dict = field(default_factory=dict)


# name -> row, in the board's order; the GPT rows follow the seed's journey
ROWS = {
    # the one popularity: `nanorec train method=popularity` fits exactly this
    "popularity": Row("popularity (training split counts)", run_fitted, "popularity",
                      lambda m: {"counts": "the training split (as nanorec train method=popularity)"}),
    "popularity_published": Row("popularity_published: counts include test targets (leaky, as published)", run_fitted,
                                "popularity", lambda m: {"counts": "all interactions, test targets included"},
                                all_events=True),
    "transitions": Row("item-to-item transitions", run_fitted, "transitions",
                       lambda m: {"window": m.window, "decay": m.decay, "pop_weight": m.pop_weight}),
    "svd": Row("PureSVD", run_fitted, "svd", lambda m: {"k": m.k}),
    "content_knn": Row("content kNN (attributes, Faiss)", run_fitted, "knn",
                       lambda m: {"table": "TF-IDF attributes, full rank", "dim": int(m.table.shape[1]),
                                  "last": m.last, "pop_weight": m.pop_weight}, knn_settings),
    "lightgcn": Row("LightGCN (PyG)", run_fitted, "lightgcn", lambda m: {"dim": m.dim, "layers": m.layers, "lr": m.lr}),
    "gpt_padded": Row("GPT, one user per row (no packing), no LR decay", run_gpt,
                      changes=dict(packing=False, decay_lr=False)),
    "gpt_packed": Row("GPT, packed, one-shot, no LR decay", run_gpt, changes=dict(decay_lr=False)),
    "gpt_generative": Row("GPT, packed, generative decoding, no LR decay", run_generative),
    "gpt_content": Row("GPT + attribute content, no LR decay", run_gpt,
                       changes=dict(decay_lr=False, content="{attributes}")),
    "gpt_content_decay": Row("GPT + attribute content, warmup + cosine LR decay", run_gpt,
                             changes=dict(content="{attributes}")),
    # the model `nanorec train content=...` ships: the row above (trained again, same seed) plus the default fusion
    "gpt_fused": Row("shipped: GPT + content + decay + fusion (transitions, co-occurrence, content)", run_gpt,
                     changes=dict(content="{attributes}", fuse_transitions="auto")),
    "gpt_all_data": Row("GPT + content + decay, all data (valid targets trained on)", run_gpt,  # max_steps: NEEDS
                        changes=dict(content="{attributes}", all_data=True, patience=0)),
}


def write_outputs(out_dir, ds, sp, rows, meta):
    write_json(os.path.join(out_dir, "leaderboard.json"), {**meta, "rows": rows})
    timed = isinstance(sp.test, TargetSets)
    lines = [f"# Leaderboard: {ds.name}", "",
             f"Protocol: {meta['protocol']}. Test scored once per method; selection on validation only.",
             f"Machine: {meta['machine']}; date {meta['date']}; command: `{meta['command']}`", "",
             f"| method | HR@10 | NDCG@10 | MRR@10 | MAP@10 | {'Recall@10' if timed else 'cold-target NDCG@10'} | "
             "coverage@10 | novelty@10 | avg pop@10 (x histories) | train s (with validation) | test scoring s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        t, b = r["test"], r.get("beyond")
        side = t["Recall@10"] if timed else r["test_cold_target"]["NDCG@10"]
        beyond = (f"{b['coverage@10']:.4f} | {b['novelty@10']:.2f} | {b['avg_pop@10']:.1f} (x{b['pop_ratio@10']:.2f})"
                  if b else "- | - | -")
        lines.append(f"| {r['label']} | {t['HR@10']:.4f} | {t['NDCG@10']:.4f} | {t['MRR@10']:.4f} | "
                     f"{t['MAP@10']:.4f} | {side:.4f} | {beyond} | {r['train_seconds']:.0f} | "
                     f"{r['recommend_seconds']:.0f} |")
    pub = PUBLISHED.get(ds.name, {})
    if pub:
        lines += ["", "Published (same files, same protocol): " +
                  "; ".join(f"{k} HR@10 {h:.4f} / NDCG@10 {n:.4f}" for k, (h, n) in pub.items())]
    if not timed:
        lines += ["", f"Cold-target users: test users whose target item has <= 5 training interactions "
                      f"({rows[0]['cold_target_users'] if rows else 0:,} of {len(sp.test.targets):,})."]
    lines += ["", "Beyond accuracy (each test user's top 10): coverage = distinct items recommended / catalogue; "
                  "novelty = mean -log2(training popularity share); avg pop = mean training count of the recommended "
                  "items (x: its ratio to the users' own histories')."]
    write_text(os.path.join(out_dir, "leaderboard.md"), "\n".join(lines) + "\n")
    try:
        _plot(os.path.join(out_dir, "leaderboard.png"), ds.name, rows, pub)
    except ImportError:
        pass


# bar colours: the shipped model apart from the plain GPT rows (the default) and the baselines
SHIPPED, GPT_COLOR, BASELINE_COLOR, SHIPPED_COLOR = "gpt_fused", "tab:blue", "tab:gray", "tab:green"
COLORS = {**{name: BASELINE_COLOR for name, row in ROWS.items() if row.method}, SHIPPED: SHIPPED_COLOR}


def bars(rows) -> list[tuple[str, float, str]]:
    """(label, test NDCG@10, colour) of each row's bar, top to bottom in the table's order."""
    return [(r["label"], r["test"]["NDCG@10"], COLORS.get(r["method"], GPT_COLOR)) for r in rows]


def _plot(path, name, rows, pub):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.8))
    labels, values, colors = zip(*bars(rows)[::-1]) if rows else ((), (), ())
    drawn = ax.barh(labels, values, color=colors)
    ax.bar_label(drawn, fmt="%.4f", padding=2, fontsize=7)  # the figure itself, as in leaderboard.md
    ax.set_xlim(0, max([*values, *(n for _, n in pub.values()), 1e-3]) * 1.15)  # room for the labels
    for (label, (_, ndcg)), style in zip(pub.items(), ["--", ":", "-."]):
        ax.axvline(ndcg, color="tab:red", linestyle=style, label=f"{label}: {ndcg:.4f}")
    ax.set_xlabel("test NDCG@10 (full ranking)\ngreen: the model as shipped (fused); blue: the GPT alone")
    ax.set_title(f"{name}: nanorec leaderboard")
    if pub:
        # along the bottom of the figure: inside the axes it would cover the longest bars
        fig.legend(loc="lower center", ncol=len(pub), fontsize=8, frameon=False)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, 0.3 / height if pub else 0, 1, 1))  # 0.3 inch kept for the legend
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def machine() -> str:
    """The machine line of a board: CPU cores, and the GPU the GPT rows train on (device=auto) when there is one."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core CPU ({platform.machine()}), {gpu}"


def read_earlier(path: str) -> dict:
    """An earlier leaderboard.json to resume from, checked: a broken one is a DataError naming it."""
    earlier = read_json(path)
    rows = earlier.get("rows") if isinstance(earlier, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and r.get("method") in ROWS for r in rows) \
            or not isinstance(earlier.get("command"), str):
        raise DataError(f"{path}: not a leaderboard written by nanorec (start again without --resume)")
    return earlier


def main(argv) -> int:
    p = command_parser("leaderboard", __doc__, "\nmethods: " + ", ".join(ROWS))
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--methods", default=",".join(ROWS), help="comma-separated subset, in this order")
    p.add_argument("--resume", action="store_true", help="keep rows already in OUT/leaderboard.json")
    p.add_argument("--split-time", help="time-split mode: holdout=time at this ISO date/time or fraction of the "
                   "events (an event log with times; see nanorec train --help, split_time)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every GPT run")
    args = p.parse_args(argv)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.split_time is not None:  # the default list without what the time split cannot run; a named one is refused
        if args.methods == ",".join(ROWS):
            names = [m for m in names if m not in NOT_IN_TIME_MODE]
        bad = [m for m in names if m in NOT_IN_TIME_MODE]
        if bad:
            raise UsageError(f"--methods: {bad[0]} is not available with --split-time "
                             f"(leave-one-out files only: {', '.join(NOT_IN_TIME_MODE)})")
    unknown = [m for m in names if m not in ROWS]
    if unknown:
        raise UsageError(f"unknown method {unknown[0]!r} (methods: {', '.join(ROWS)})")
    if not names:
        raise UsageError(f"--methods {args.methods!r}: no method named (methods: {', '.join(ROWS)})")
    timed = {"holdout": "time", "split_time": args.split_time} if args.split_time is not None else {}
    # every row unfused (gpt_fused turns fusion on) and on the published protocol (history excluded: seen.py)
    base_cfg = apply_overrides(Config(data=args.data, progress=False, fuse_transitions="false", exclude_seen="true",
                                      **timed), args.overrides)
    check_output_folder(args.out, "--out folder")
    json_path = os.path.join(args.out, "leaderboard.json")
    earlier = read_earlier(json_path) if args.resume and os.path.exists(json_path) else None
    for name, needs in NEEDS.items():
        kept = earlier is not None and any(r["method"] == needs for r in earlier["rows"])
        if name in names and not kept and (needs not in names or names.index(needs) > names.index(name)):
            raise UsageError(f"--methods: {name} needs {needs} before it (in --methods, or kept by --resume)")
    ds = load(args.data)
    sp = time_split(ds, args.split_time) if timed else split(ds)
    if sp.test is None:
        raise UsageError(f"{args.data}: the leaderboard needs test targets (leave-one-out data)")
    cold = None if timed else cold_target_mask(ds, sp)
    attributes_path = None
    if any(m in names for m in CONTENT_ROWS):
        if not ds.attributes_path:
            raise UsageError(f"{args.data}: content methods need a sibling *_item2attributes.json")
        os.makedirs(args.out, exist_ok=True)
        attributes_path = os.path.join(args.out, "attributes.safetensors")
        ids, vectors = attribute_table(ds.attributes_path, ds.item_ids)
        save_table(attributes_path, ids, vectors)

    os.makedirs(args.out, exist_ok=True)
    done = {r["method"]: r for r in earlier["rows"]} if earlier else {}
    meta = {"data": args.data, "protocol": TIME_PROTOCOL.format(n=ds.num_items, t=args.split_time, m=len(sp.test.users))
            if timed else protocol_line(ds.num_items, len(sp.test.targets)),
            "machine": machine(),
            "date": time.strftime("%Y-%m-%d"),
            "command": "nanorec leaderboard " + " ".join(argv), "seed_challenge_map10": SEED_MAP10}
    if earlier:  # rows kept from an earlier invocation: say how they were made
        meta["command"] = f"{earlier['command']}  ;  then  {meta['command']}"
    bar = tqdm(names, desc="leaderboard", unit="method", disable=None)  # None: quiet when not a terminal
    for name in bar:
        if name in done:
            continue
        bar.set_postfix(method=name)
        t0 = time.time()
        row = done[name] = ROWS[name].build(name, ds, sp, cold, base_cfg, args.out, attributes_path, done)
        tqdm.write(f"{name:<22} test HR@10 {row['test']['HR@10']:.4f} NDCG@10 {row['test']['NDCG@10']:.4f} "
                   f"MAP@10 {row['test']['MAP@10']:.4f}  ({time.time() - t0:.0f} s)")
        write_outputs(args.out, ds, sp, [done[m] for m in ROWS if m in done], meta)
    write_outputs(args.out, ds, sp, [done[m] for m in ROWS if m in done], meta)
    print(open(os.path.join(args.out, "leaderboard.md")).read())
    return 0
