"""Does a run's own selection agree with next week? GPT runs on an event-typed shop log
(`target_filter=event_type=purchase`, or purchases only), each trained on the events before a cut
time T and judged on the purchases after it ("next week": multi-target, every purchase of the
window by a user with events before T; lists exclude the user's earlier purchases).

    python benchmarks/selection_event_types.py --data shop.csv --split-time 2024-03-04 \
        [--variants purchases_only,context] [--max-steps 3000] [--out benchmarks/results/selection_event_types.json]

For each run: the fusion weights and the step its validation chose, the next-week NDCG@10 of the
shipped model, of the GPT alone at every validation step (which step next week would pick), and of
every (transitions, co-occurrence) weight pair of fusion's grid on the run's own GPT and tables
(which weights next week would pick): "weights_ratio" = the chosen weights' next-week figure / the
grid's best. Runs trained with holdout=loo / last see the events before T only (the same item
vocabulary as the whole log); holdout=time runs get the whole log with split_time=T (their own test
is next week). Without --data a `nanorec synth --event-types view,cart,purchase` log is written.
"""
import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from nanorec.scoring import fusion
from nanorec.runs import rundir
from nanorec.core import train as train_module  # noqa: E402
from nanorec.config import Config  # noqa: E402
from nanorec.data import Dataset, Sequences, load_like, split_times, time_split  # noqa: E402
from nanorec.data.time_split import TargetSets  # noqa: E402
from nanorec.evaluation.metrics import set_metrics, top_lists  # noqa: E402
from nanorec.runs.rundir import read_metrics  # noqa: E402
from nanorec import methods  # noqa: E402
from nanorec.runs.run import Run, fusion_terms  # noqa: E402

PURCHASE = "event_type=purchase"
VARIANTS = {  # name -> (config keys, trained on: "before" T with loo/last, or "full" with holdout=time)
    "purchases_only": ({"filter": PURCHASE}, "before"),
    "context": ({"target_filter": PURCHASE}, "before"),
    "context_none": ({"target_filter": PURCHASE, "context_targets": "none"}, "before"),
    "context_time": ({"target_filter": PURCHASE, "holdout": "time"}, "full"),
    "purchases_only_time": ({"filter": PURCHASE, "holdout": "time"}, "full"),
}


def before(ds: Dataset, t) -> Dataset:
    """The events of `ds` before time t, same users and item vocabulary (each row is time-ordered)."""
    seqs = ds.sequences
    keep = ds.times < t  # (total,) a prefix of every row
    row = np.repeat(np.arange(len(seqs)), seqs.lengths)
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(np.bincount(row[keep], minlength=len(seqs)), out=offsets[1:])
    cut = Sequences(offsets, seqs.items[keep], *seqs._cut(keep))
    return Dataset(ds.name, ds.path, ds.kind, ds.user_ids, ds.item_ids, cut, times=ds.times[keep],
                   time_unit=ds.time_unit)


def restricted(sets: TargetSets, user_ids, keep: set) -> TargetSets:
    rows = np.array([i for i, u in enumerate(user_ids[sets.users].tolist()) if u in keep], dtype=np.int64)
    return TargetSets(sets.users[rows], sets.histories.take(rows), sets.targets.take(rows),
                      sets.cold_users[:0], sets.cold_targets.take(np.zeros(0, np.int64)))


def ndcg(scorer, sets: TargetSets) -> float:
    return round(set_metrics(top_lists(scorer, sets, 10), sets.targets, ks=(10,))["NDCG@10"], 4)


GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)  # fusion's grid until issue 26


def weight_grid(run: Run, sets: TargetSets) -> dict:
    """Next-week NDCG@10 of every (w1, w2) of GRID^2 on the run's GPT and saved tables."""
    gpt, _, _, _ = fusion_terms(run)
    tables = [methods.get("transitions").load(os.path.join(run.run_dir, rundir.FUSION_FILES[name]), run.num_items)
              for name in rundir.FUSION_FILES]
    from nanorec.scoring.scorer import from_factors, top_k
    terms = fusion.BatchTerms(gpt, tables, None, sets.histories, sets.users)  # the GPT and tables run once

    def figure(weights):
        lists = top_k(from_factors(lambda h, u=None: terms.fused(weights)), sets.histories, sets.users, 10)[0]
        return round(set_metrics(lists, sets.targets, ks=(10,))["NDCG@10"], 4)
    return {f"{w1},{w2}": figure((w1, w2, 0.0)) for w1 in GRID for w2 in GRID}


def tables_alone(data: str, split_time: str) -> dict:
    """Next-week NDCG@10 of each count table alone, fitted on the training split of the events before
    T (views as context), on the next-week users with a purchase before T, three ways: the product's
    pairs (purchase -> purchase of two items) read at the last purchase; the same read at the last
    event (a view, for half the shop's customers); and with view -> next purchase of another item
    pairs added (ViewPairs), read at the last purchase."""
    from nanorec.methods.cooccurrence import CoOccurrence
    from nanorec.methods.transitions import Transitions
    from nanorec.data import split
    from nanorec.data.sequences import next_targets

    def with_views(cls):  # + view -> next purchase of another item
        class ViewPairs(cls):
            def pair_events(self, train):
                i, j = super().pair_events(train)
                is_target = train.is_target()
                following = next_targets(train, is_target)
                c = np.nonzero(~is_target & (following < len(train.items)))[0]
                c = c[train.items[c] != train.items[following[c]]]
                return np.concatenate([i, c]), np.concatenate([j, following[c]])
        return ViewPairs

    def at_last_event(cls):  # the rows of the history's last events, whatever their type
        class LastEvent(cls):
            def factors(self, histories, users=None):
                return super().factors(Sequences(histories.offsets, histories.items), users)
        return LastEvent

    ds = load_like(Config(data=data, target_filter=PURCHASE))
    sets = time_split(ds, split_time).test
    train = split(before(ds, split_times(ds, split_time)[1])).train
    h = sets.histories
    row = np.repeat(np.arange(len(h)), h.lengths)
    rows = np.nonzero(np.bincount(row[h.is_target()], minlength=len(h)) > 0)[0]  # a purchase before T
    bought = TargetSets(sets.users[rows], h.take(rows), sets.targets.take(rows), sets.cold_users[:0],
                        sets.cold_targets.take(np.zeros(0, np.int64)))
    out = {"users": len(rows)}
    for name, cls in (("transitions", Transitions), ("cooccurrence", CoOccurrence)):
        fit = lambda c: c(grid=()).fit(train, ds.num_items).score  # noqa: E731
        out[name] = {"purchase_pairs_at_last_purchase": ndcg(fit(cls), bought),
                     "purchase_pairs_at_last_event": ndcg(fit(at_last_event(cls)), bought),
                     "with_view_pairs_at_last_purchase": ndcg(fit(with_views(cls)), bought)}
    return out


def refit_fusion(out_dir: str, dataset) -> None:
    """A trained run's count tables fitted again and its fusion weights chosen again on its own
    validation (what training's end does, report.fuse), written into the run folder."""
    from nanorec.data import split_like
    from nanorec.scoring.scorer import gpt_scorer
    run = Run.open(out_dir)
    cfg = run.config
    sp = split_like(dataset, cfg)
    valid = train_module.validation_sample(sp.valid, cfg.valid_users, cfg.seed, dataset.num_items)
    tables, weights, _, _ = fusion.fit(gpt_scorer(run.model), sp.train, dataset.num_items, valid, cfg.eval_batch_size)
    rundir.save_fusion(out_dir, tables, weights)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="", help="an event log with event_type (default: a synth log)")
    p.add_argument("--rows", type=int, default=20000, help="synth log: purchases")
    p.add_argument("--split-time", default="0.9", help="T: an ISO date or a fraction of the log's events")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--max-steps", type=int, default=3000)
    p.add_argument("--eval-interval", type=int, default=200)
    p.add_argument("--set", action="append", default=[], help="extra config key=value for every run")
    p.add_argument("--grid", action="store_true", help="next-week figure of every fusion weight pair")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--tables", action="store_true", help="also each count table alone, three ways (tables_alone)")
    p.add_argument("--refit", action="store_true", help="keep the runs in --work; refit their tables and weights")
    p.add_argument("--work", default="", help="folder for the runs (default: a temporary one)")
    p.add_argument("--out", default="")
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="selection_")
    os.makedirs(work, exist_ok=True)
    data = args.data
    if not data:
        from nanorec.data.synthetic import write_fast
        data = os.path.join(work, "shop.parquet")
        write_fast(data, args.rows, seed=0, event_types=("view", "cart", "purchase"))
    extra = dict(kv.split("=", 1) for kv in args.set)
    # one T for every run: a fraction counts the events of the whole log (views included)
    split_time = str(split_times(load_like(Config(data=data)), args.split_time)[1])
    common = dict(data=data, max_steps=args.max_steps, eval_interval=args.eval_interval, threads=2,
                  progress=False, seed=args.seed)
    original = train_module.validate_and_select
    loaded = {}  # filter key -> (full dataset, next-week sets)
    results = {}
    for name in args.variants.split(","):
        keys, mode = VARIANTS[name]
        keys = {**keys, **extra}
        if keys.get("holdout") == "time":
            keys = {**keys, "split_time": split_time}
        cfg = Config(**common, **keys).validate()
        kind = "filter" if cfg.filter else "target_filter"
        if kind not in loaded:
            ds = load_like(cfg)
            loaded[kind] = (ds, time_split(ds, split_time).test, split_times(ds, split_time)[1])
        ds, sets, t = loaded[kind]
        steps = []  # (step, next-week NDCG@10 of the GPT alone) at every validation

        def instrumented(model, scorer, sp, cfg, state, *a, **kw):
            stop = original(model, scorer, sp, cfg, state, *a, **kw)
            steps.append((state.step, ndcg(scorer, sets)))
            return stop

        train_module.validate_and_select = instrumented
        out_dir = os.path.join(work, name)
        t0 = time.time()
        train_data = before(ds, t) if mode == "before" else ds
        if args.refit:  # the trained run kept: its tables refitted and its weights chosen again
            refit_fusion(out_dir, train_data)
        else:
            try:
                train_module.run(cfg, out_dir, quiet=True, overwrite=True, dataset=train_data)
            finally:
                train_module.validate_and_select = original
        m = read_metrics(out_dir)
        run = Run.open(out_dir)
        r = {"config": keys, "seconds": round(time.time() - t0, 1), "best_step": m["best_step"],
             "epochs": m["epochs"], "valid_NDCG@10": m["valid"]["NDCG@10"],
             "fusion_weights": m.get("fusion", {}).get("weights"),
             "next_week_NDCG@10": ndcg(run.scorer, sets), "next_week_users": len(sets.users),
             "next_week_by_step": dict(steps)}
        if args.refit:
            r.update(**{"valid_NDCG@10": None}, fusion_weights=dict(zip(fusion.SIGNALS, rundir.read_fusion(out_dir))),
                     refit=True)
        best_step = max(steps, key=lambda s: s[1])[0] if steps else None
        r["next_week_best_step"] = best_step
        if args.grid and r["fusion_weights"] is not None:
            grid = weight_grid(run, sets)
            chosen = f"{r['fusion_weights']['transitions']},{r['fusion_weights']['cooccurrence']}"
            best = max(grid, key=grid.get)
            r.update(next_week_grid_best={best: grid[best]}, next_week_chosen=grid[chosen],
                     weights_ratio=round(grid[chosen] / max(grid[best], 1e-9), 4), next_week_grid=grid)
        results[name] = r
        print(name, {k: v for k, v in r.items() if k not in ("next_week_grid",)}, flush=True)
        write_out(args, split_time, results)  # after each run: a long sweep keeps what it has
    # purchases only vs views as context on the users both score
    if "filter" in loaded and "target_filter" in loaded:
        common_users = set.intersection(*[set(ds.user_ids[s.users].tolist()) for ds, s, _ in loaded.values()])
        for name in results:
            kind = "filter" if "filter" in results[name]["config"] else "target_filter"
            ds, sets, _ = loaded[kind]
            results[name]["next_week_common_NDCG@10"] = ndcg(Run.open(os.path.join(work, name)).scorer,
                                                              restricted(sets, ds.user_ids, common_users))
            results[name]["next_week_common_users"] = len(common_users)
    extra_results = {"tables_alone": tables_alone(data, split_time)} if args.tables else {}
    if extra_results:
        print(extra_results, flush=True)
    write_out(args, split_time, results, extra_results)
    print(f"wrote {args.out}")


def write_out(args, split_time: str, results: dict, extra: dict | None = None) -> None:
    if args.out:
        from nanorec.runs.files import write_json
        write_json(args.out, {"command": "python " + " ".join(sys.argv), "machine": "2-core CPU, under load ("
                              f"{platform.node()})", "split_time": split_time,
                              "date": datetime.datetime.now().isoformat(timespec="seconds"),
                              "protocol": __doc__.split("\n\n")[0], "results": results, **(extra or {})})


if __name__ == "__main__":
    main()
