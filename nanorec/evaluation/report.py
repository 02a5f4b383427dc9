"""What a GPT run says: its log (Logger), its opening lines, and its end (final_evaluation):
fusion fitted (fuse), the selected weights scored once, metrics.json and curves.png written."""
from __future__ import annotations

import os
import time

from tqdm.auto import tqdm

from ..config import Config, parse_weights
from ..core.packing import count_targets, pack
from ..data import funnel_note, item_counts
from ..runs import rundir
from ..runs.files import append_line, final_path, write_json
from ..runs.run import shipped_scorer
from ..scoring import fusion
from ..scoring.seen import decide, log_line
from . import beside
from .curves import plot_curves
from .metrics import format_metrics, score_report


class Logger:
    """print (unless quiet) + append to train.log (rank 0 only)."""

    def __init__(self, path: str | None, quiet: bool = False):
        self.path, self.quiet = path, quiet

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        if not self.quiet:
            tqdm.write(line)
        if self.path:
            append_line(self.path, line)


def opening(tr, notes: list) -> None:
    """The run folder's notes, then what the run trains and validates on. tr: train.Training."""
    cfg, ds, sp, log = tr.cfg, tr.ds, tr.sp, tr.log
    for line in notes:
        log(line)
    n_targets, n_context = count_targets(sp.train, cfg.block_size, sp.train.weights)  # views are no targets
    context = f" ({cfg.target_filter}), {n_context:,} context events" if n_context else ""
    log(f"data {ds.path}: {len(ds.user_ids):,} users, {ds.num_items:,} items, "
        f"{len(ds.sequences.items):,} interactions; {n_targets:,} training targets{context}; holdout={cfg.holdout}: "
        f"valid {tr.n_valid:,} users, test {len(sp.test.targets) if sp.test else 0:,} users"
        + (f"; ignored columns: {', '.join(ds.ignored_columns)}" if ds.ignored_columns else ""))
    for line in tr.coverage:
        log(line)
    if sp.valid is not None and cfg.holdout in ("loo", "last") and ds.sequences.has_context():
        log(funnel_note(ds.sequences, 1 if sp.test is not None else 0))
    if sp.valid is not None and len(sp.valid.targets) < tr.n_valid:
        log(f"validation: a fixed sample of {len(sp.valid.targets):,} of {tr.n_valid:,} users (valid_users="
            f"{tr.given.valid_users}" + (", auto: users x items above validation.VALID_WORK"
                                         if "valid_users" in cfg.auto else "") + ")")


def final_evaluation(model, scorer, ds, sp, cfg: Config, state, out_dir: str, log,
                     extra: dict | None = None, beyond_users: int = 0, near: tuple | None = None) -> dict:
    """The selected weights scored once; metrics.json written (with `extra`'s entries)."""
    rundir.load_weights(model, os.path.join(out_dir, rundir.WEIGHTS))
    results, tables = {}, None
    if fusion.enabled(cfg.fuse_transitions):  # the selected GPT + item-to-item tables (fusion.py)
        scorer, results["fusion"], tables, results["fusion_seconds"] = fuse(model, scorer, ds, sp, cfg, out_dir, log, near)
    vectors = fusion.content_term(model).vectors if len(model.content) else None  # intra-list similarity

    def entries(exclude_seen: bool) -> dict:
        return {
            "best_step": state.best_step, "steps": state.step, "epochs": state.epoch,
            "holdout": cfg.holdout,
            "selection": "last step (holdout=none: no validation)" if sp.valid is None
                         else "last step (all_data: validation targets were trained on)" if cfg.all_data
                         else "best validation NDCG@10",
            "packing_efficiency": round(pack(sp.train, cfg.block_size, packing=cfg.packing).efficiency, 4),
            "train_seconds": round(state.train_seconds, 1),
            "train_tokens_per_second": round(state.train_tokens / max(state.train_seconds, 1e-9)),
            "history": state.history,
            # popularity and transitions on the same split (a fused run's own transitions table is that baseline)
            "baselines": beside.baselines(ds, sp, cfg, transitions=tables[0] if tables else None,
                                          beyond_users=beyond_users, exclude_seen=exclude_seen),
            **(extra or {})}
    results = scored(scorer, ds, sp, cfg, out_dir, log, results, entries, f"step {state.best_step}", vectors,
                     beyond_users)
    plot_curves(state.history, os.path.join(out_dir, "curves.png"), f"{ds.name}: {cfg.n_layer} layers, d={cfg.n_embd}",
                fused=results["valid"]["NDCG@10"] if "fusion" in results and "valid" in results else None)
    log(f"wrote {final_path(out_dir)}/{rundir.WEIGHTS}, {rundir.METRICS} ({state.train_seconds:.0f} s training)"
        + beside.summary(results))
    return results


def scored(scorer, ds, sp, cfg: Config, out_dir: str, log, results: dict, entries, label: str, vectors=None,
           beyond_users: int = 0) -> dict:
    """The end of every run, GPT or fitted method: exclude_seen decided on the shipped scorer, the
    splits scored once, `entries(exclude_seen)` added, metrics.json written, one line a split logged."""
    exclude_seen, results["exclude_seen"] = decide(scorer, sp.valid, cfg, cfg.eval_batch_size)
    log(log_line(results["exclude_seen"]))
    results.update(score_report(scorer, sp, ds.num_items, item_counts(sp.train, ds.num_items), cfg.eval_batch_size,
                                vectors, cfg.split_time, cfg.seed, beyond_users, exclude_seen))
    if "test_ranks" in results:  # per-user ranks, for breakdowns
        rundir.save_array(os.path.join(out_dir, rundir.TEST_RANKS), results.pop("test_ranks"))
    results.update(entries(exclude_seen))
    write_json(os.path.join(out_dir, rundir.METRICS), results)
    for split in ("valid", "test"):
        if split in results:
            log(f"{split:<5} [{results['protocol'][split]}] ({label}): {format_metrics(results[split], ks=(10,))}")
    return results


def fuse(model, scorer, ds, sp, cfg: Config, out_dir: str, log, near: tuple | None = None):
    """Fit the item-to-item tables, choose the weights on validation, save them
    -> (the fused scorer, metrics.json's "fusion" entry, the tables, seconds)."""
    t0 = time.time()
    # chosen on the validation users (valid_users: all, or the sample); all_data trained the GPT and
    # the tables on those targets, so they cannot choose: like holdout=none
    valid = None if cfg.all_data else sp.valid
    fixed = None if cfg.fusion_weights == "auto" else parse_weights(cfg.fusion_weights)
    content = fusion.content_term(model)
    tables, weights, grid, search_s = fusion.fit(scorer, sp.train, ds.num_items, valid, cfg.eval_batch_size, fixed,
                                                 content, near)
    rundir.save_fusion(out_dir, tables, weights)
    named = dict(zip(fusion.SIGNALS, weights))
    how = (f"chosen on validation: NDCG@10 {grid[','.join(str(w) for w in weights)]:.4f} "
           f"({len(grid)} weight tuples tried in {search_s:.0f} s), "
           f"GPT alone {grid['0.0,0.0,0.0']:.4f}" if grid
           else "fusion_weights" if fixed else "no untrained validation to choose on: the default")
    log("fusion weights: " + ", ".join(f"{k} {w}" for k, w in named.items()) + f" ({how})")
    # the scorer the run ships: the one Run.open builds
    return (shipped_scorer(model, fusion=(tables, weights), gpt=scorer),
            {"weights": named, "valid_NDCG@10": grid[",".join(str(w) for w in weights)] if grid else None,
             "search_seconds": search_s, "valid_NDCG@10_by_weights": grid}, tables, round(time.time() - t0, 1))
