"""`nanorec tune`: a hyper-parameter search that never looks at the test split.

    nanorec tune --data PATH --out STUDY_DIR [--trials 20] [--space SPEC] [key=value ...]

Each trial trains a run (into STUDY_DIR/trials/NNN) with config values drawn
by Optuna's TPE sampler and reports its validation NDCG@10 after every
validation pass; a trial whose curve is below the median of earlier trials at
the same step is pruned (stopped early). Trials never score the test split.
When every trial is done, the best by validation NDCG@10 is copied to
STUDY_DIR/best and scored on the test split ONCE; study.json records every
trial (values, state, validation NDCG@10) and the winner's test metrics. The
Optuna study itself is kept in STUDY_DIR/study.db, so an interrupted search
continues where it stopped when run again.

SPEC: comma-separated `key=low..high` (a float range, or an int range for an
integer key), `key=low..high:log` (log scale), or `key=a|b|c` (choices), e.g.
    --space "learning_rate=3e-4..3e-3:log,dropout=0.1..0.7,n_layer=1|2|3"
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil

from .config import PYTYPES, RULES, Config, apply_overrides
from .errors import DataError, UsageError

DEFAULT_SPACE = "learning_rate=3e-4..3e-3:log,dropout=0.1..0.7,weight_decay=0..0.3"


@dataclasses.dataclass
class Param:
    key: str
    kind: str            # "float" | "int" | "choice"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple = ()


def parse_space(spec: str) -> list[Param]:
    """SPEC -> parameters; every key and bound is checked against Config's types and RULES."""
    types = {f.name: PYTYPES[f.type] for f in dataclasses.fields(Config)}
    params = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if "=" not in part:
            raise UsageError(f"--space {part!r}: expected key=low..high, key=low..high:log or key=a|b|c")
        key, body = (x.strip() for x in part.split("=", 1))
        if key not in types or key in ("data", "seed", "device", "progress", "threads"):
            raise UsageError(f"--space: {key!r} is not a tunable config key")
        typ = types[key]
        if "|" in body or typ in (str, bool):
            raw = [x.strip() for x in body.split("|") if x.strip()]
            values = tuple(_typed(key, typ, x) for x in raw)
            if len(values) < 1:
                raise UsageError(f"--space {part!r}: no choices")
            params.append(Param(key, "choice", choices=values))
            continue
        log = body.endswith(":log")
        body = body[:-4] if log else body
        if ".." not in body:
            raise UsageError(f"--space {part!r}: expected a range low..high or choices a|b|c")
        low, high = (_typed(key, typ, x.strip()) for x in body.split("..", 1))
        if not low < high or (log and low <= 0):
            raise UsageError(f"--space {part!r}: need low < high (and low > 0 on a log scale)")
        params.append(Param(key, "int" if typ is int else "float", low, high, log))
    if not params:
        raise UsageError("--space: nothing to tune")
    return params


def _typed(key, typ, raw):
    try:
        value = typ(raw) if typ is not bool else raw.lower() in ("1", "true", "yes", "on")
    except ValueError:
        raise UsageError(f"--space {key}={raw!r}: expected {typ.__name__}") from None
    if typ is float and not math.isfinite(value):
        raise UsageError(f"--space {key}={raw!r}: expected a finite number")
    rule = RULES.get(key)
    if rule and not rule[0](value):
        raise UsageError(f"--space {key}={raw!r}: expected {rule[1]}")
    return value


def suggest(trial, params: list[Param]) -> dict:
    out = {}
    for p in params:
        if p.kind == "choice":
            out[p.key] = trial.suggest_categorical(p.key, list(p.choices))
        elif p.kind == "int":
            out[p.key] = trial.suggest_int(p.key, p.low, p.high, log=p.log)
        else:
            out[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.log)
    return out


def tune(base: Config, out_dir: str, space: str = DEFAULT_SPACE, trials: int = 20, dataset=None,
         quiet: bool = True, log=print) -> dict:
    """Run the search; returns the study summary also written to study.json.
    `dataset`: an already loaded Dataset (the API's DataFrames); else base.data is read."""
    try:
        import optuna
    except ImportError:
        raise UsageError("tuning needs Optuna: pip install 'nanorec[tune]'") from None
    from .data import load_like, split_like
    from .evaluate import evaluate_split
    from .files import write_json
    from .run import Run
    from .train import run

    params = parse_space(space)
    if not 1 <= trials <= 10_000:
        raise UsageError(f"--trials {trials}: must be in 1..10000")
    if base.holdout == "none":
        raise UsageError("holdout=none has no validation split to select on: tune with holdout=loo or last")
    base.validate()
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"{out_dir}: exists and is not a folder")
    ds = dataset if dataset is not None else load_like(base)  # read once, checked before any trial
    os.makedirs(os.path.join(out_dir, "trials"), exist_ok=True)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="nanorec", direction="maximize", load_if_exists=True,
        storage=f"sqlite:///{os.path.abspath(os.path.join(out_dir, 'study.db'))}",
        sampler=optuna.samplers.TPESampler(seed=base.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=base.eval_interval))

    def objective(trial):
        cfg = dataclasses.replace(base, **suggest(trial, params)).validate()
        run_dir = os.path.join(out_dir, "trials", f"{trial.number:03d}")
        trial.set_user_attr("run_dir", run_dir)

        def report(step, record):
            trial.report(record["NDCG@10"], step)
            return trial.should_prune()

        metrics = run(cfg, run_dir, overwrite=True, quiet=True, dataset=ds, score_test=False, on_validation=report)
        best = max(h["NDCG@10"] for h in metrics["history"])
        log(f"trial {trial.number}: valid NDCG@10 {best:.4f}  {trial.params}")
        if trial.should_prune():
            raise optuna.TrialPruned()
        return metrics["valid"]["NDCG@10"]

    done = sum(t.state.is_finished() for t in study.trials)
    if done < trials:
        study.optimize(objective, n_trials=trials - done, catch=())

    # the winner, chosen on validation; only now is the test split scored, once
    winner = study.best_trial
    best_dir = os.path.join(out_dir, "best")
    if os.path.isdir(best_dir):
        shutil.rmtree(best_dir)
    shutil.copytree(winner.user_attrs["run_dir"], best_dir)
    summary = {
        "space": space, "selection": "best validation NDCG@10 (test split not scored during the search)",
        "trials": [{"number": t.number, "state": t.state.name, "params": t.params,
                    "valid_NDCG@10": t.value, "run": t.user_attrs.get("run_dir")} for t in study.trials],
        "best": {"number": winner.number, "params": winner.params, "valid_NDCG@10": winner.value, "run": best_dir},
    }
    sp = split_like(ds, base)
    if sp.test is not None:  # the model the study ships, as `nanorec evaluate --run best` scores it (fused when fused)
        summary["best"]["test"] = evaluate_split(Run.open(best_dir).scorer, sp.test, base.eval_batch_size, ds.num_items)
    write_json(os.path.join(out_dir, "study.json"), summary)
    return summary


def main(argv) -> int:
    p = argparse.ArgumentParser(prog="nanorec tune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data", required=True, help="interactions (as for nanorec train)")
    p.add_argument("--out", required=True, help="study folder: trials/, best/, study.json, study.db")
    p.add_argument("--trials", type=int, default=20, help="number of trials (default 20)")
    p.add_argument("--space", default=DEFAULT_SPACE, help=f"search space (default {DEFAULT_SPACE!r})")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="fixed config for every trial")
    args = p.parse_args(argv)
    base = apply_overrides(Config(data=args.data, progress=False), args.overrides)
    parse_space(args.space)  # a bad space fails before the data is read
    summary = tune(base, args.out, args.space, args.trials, log=print)
    best = summary["best"]
    test = best.get("test")
    print(f"best trial {best['number']}: valid NDCG@10 {best['valid_NDCG@10']:.4f} {best['params']}"
          + (f"; test NDCG@10 {test['NDCG@10']:.4f} HR@10 {test['HR@10']:.4f} (scored once)" if test else ""))
    print(f"wrote {os.path.join(args.out, 'study.json')}, run {best['run']}")
    return 0
