"""`nanorec tune` / Recommender.tune: a hyper-parameter search that never looks at the test split.

    nanorec tune --data PATH --out STUDY_DIR [--trials 20] [--space SPEC] [--overwrite] [key=value ...]

Each trial trains a run (STUDY_DIR/trials/NNN) with values drawn by Optuna's TPE sampler and is
judged on its validation NDCG@10 as the run ships (fused when fusion is on); a trial below the
median of the completed trials at the same step is pruned. A failed trial (a config that cannot
train, a full disk) is logged in one line and the search goes on. At the end the best trial is
copied to STUDY_DIR/best and scored on the test split ONCE; study.json records every trial and
the winner's test metrics.

STUDY_DIR/study.db keeps the study: run again with the same --space, an interrupted search
continues (a trial left running is marked failed, not counted); another --space is refused.
One tune at a time writes a study folder; best/ and study.json are replaced only when this study
wrote them, or with --overwrite. Baselines choose their own settings on validation when fitted:
they run one trial, and --space is refused for them.

SPEC: comma-separated `key=low..high` (a float range, or an int range for an
integer key), `key=low..high:log` (log scale), or `key=a|b|c` (choices), e.g.
    --space "learning_rate=3e-4..3e-3:log,dropout=0.1..0.7,n_layer=1|2|3"
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil

import numpy as np

from .. import methods
from ..config import TYPES, Config, expected, parse_value
from ..data import load_like, read_json, split_like
from ..errors import DataError, NanorecError, UsageError, one_line
from ..evaluation.metrics import evaluate_split
from ..runs import rundir
from ..runs.files import OutputLock, disk_error, publish_folder, recover_folder, temp_folder, write_json
from ..runs.run import Run
from .train import run as train

DEFAULT_SPACE = "learning_rate=3e-4..3e-3:log,dropout=0.1..0.7,weight_decay=0..0.3"
DB, SUMMARY, BEST, TRIALS = "study.db", "study.json", "best", "trials"
PRUNE_AFTER = 3  # completed trials before the median pruner prunes any (its n_startup_trials)


@dataclasses.dataclass
class Param:
    key: str
    kind: str            # "float" | "int" | "choice"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple = ()


def parse_space(spec: str) -> list[Param]:
    """SPEC -> parameters; every key and bound is checked against its Config field (type and range)."""
    params = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if "=" not in part:
            raise UsageError(f"--space {part!r}: expected key=low..high, key=low..high:log or key=a|b|c")
        key, body = (x.strip() for x in part.split("=", 1))
        if key in {q.key for q in params}:  # the last would win without a word
            raise UsageError(f"--space: {key!r} is given twice")
        if key not in TYPES or key in ("data", "seed", "device", "progress", "threads"):
            raise UsageError(f"--space: {key!r} is not a tunable config key")
        typ = TYPES[key]
        if "|" in body or typ in (str, bool):
            raw = [x.strip() for x in body.split("|")]
            if not all(raw):  # n_layer=1| is a typo, not a search over one value
                raise UsageError(f"--space {part!r}: an empty choice; write key=a|b|c")
            values = tuple(_typed(key, x) for x in raw)
            params.append(Param(key, "choice", choices=values))
            continue
        log = body.endswith(":log")
        body = body[:-4] if log else body
        if ".." not in body:
            raise UsageError(f"--space {part!r}: expected a range low..high or choices a|b|c")
        low, high = (_typed(key, x.strip()) for x in body.split("..", 1))
        if not low < high or (log and low <= 0):
            raise UsageError(f"--space {part!r}: need low < high (and low > 0 on a log scale)")
        params.append(Param(key, "int" if typ is int else "float", low, high, log))
    if not params:
        raise UsageError("--space: nothing to tune")
    return params


def _typed(key, raw):
    """One value of --space: the config's parser (a bool is true or false: `maybe` is an error) and range."""
    try:
        value = parse_value(key, raw)
    except UsageError as e:
        raise UsageError(f"--space {e}") from None
    wrong = expected(key, value)
    if wrong:
        raise UsageError(f"--space {key}={raw!r}: expected {wrong}")
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


def tune(base: Config, out_dir: str, space: str | None = DEFAULT_SPACE, trials: int = 20, dataset=None,
         log=print, overwrite: bool = False) -> dict:
    """Run the search -> the summary written to study.json. `dataset`: a loaded Dataset (else
    base.data is read); `space`: SPEC (None: the default); `overwrite`: as --overwrite."""
    try:
        import optuna
    except ImportError:
        raise UsageError("tuning needs Optuna: pip install 'nanorec[tune]'") from None

    trains = methods.get(base.method).trains  # a fitted method chooses its own settings on validation
    if not trains and space not in (None, DEFAULT_SPACE):
        raise UsageError(f"--space: method={base.method} has nothing to search (it chooses its own settings on "
                         f"validation when fitted); leave --space out")
    space = (space or DEFAULT_SPACE) if trains else ""
    params = parse_space(space) if space else []
    if not 1 <= trials <= 10_000:
        raise UsageError(f"--trials {trials}: must be in 1..10000")
    if base.holdout == "none":
        raise UsageError("holdout=none has no validation split to select on: tune with holdout=loo or last")
    base.validate()
    if not out_dir.strip():
        raise UsageError("--out: empty; expected the study folder")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"{out_dir}: exists and is not a folder")
    if os.path.isfile(os.path.join(out_dir, "config.json")):  # a run's folder would get a study inside it
        raise DataError(f"{out_dir}: is a run folder (it holds config.json); a study needs its own folder")
    OutputLock(out_dir, "--out").check()
    check_study_outputs(out_dir, overwrite)
    ds = dataset if dataset is not None else load_like(base)  # read once, checked before any trial

    with OutputLock(out_dir, "--out"):
        trials_dir = os.path.join(out_dir, TRIALS)
        try:
            os.makedirs(trials_dir, exist_ok=True)
        except OSError as e:
            raise DataError(f"{trials_dir}: cannot create the folder ({e.strerror})") from None
        for line in recover_folder(os.path.join(out_dir, BEST)) + recover_trials(trials_dir):
            log(line)  # what a killed tune left beside best/ and its trials
        check_study_outputs(out_dir, overwrite)  # again, under the lock
        try:
            study = open_study(optuna, out_dir, base, space, params)
            search(study, base, params, trials, out_dir, ds, log)
            return finish(study, base, space, out_dir, ds)
        except Exception as e:  # noqa: BLE001 - the study database on a full or read-only disk
            if isinstance(e, NanorecError) or not _database_error(e):
                raise
            reason = getattr(e, "orig", None) or e
            raise DataError(f"{os.path.join(out_dir, DB)}: {one_line(reason)}") from None


def check_study_outputs(out_dir: str, overwrite: bool) -> None:
    """best/ and study.json are replaced at the end: refuse, before any trial, ones this study did not write."""
    best, summary = os.path.join(out_dir, BEST), os.path.join(out_dir, SUMMARY)
    if overwrite:
        if os.path.lexists(best) and not os.path.isdir(best):
            raise DataError(f"{best}: exists and is not a folder")
        return
    if os.path.lexists(best) and not _written_by_study(best, os.path.join(out_dir, TRIALS)):
        raise UsageError(f"{best}: holds files this study did not write (the winner is copied there); "
                         f"move them, choose another --out, or pass --overwrite to replace them")
    if os.path.lexists(summary) and not _is_summary(summary):
        raise UsageError(f"{summary}: not a study summary nanorec wrote; move it, choose another --out, "
                         f"or pass --overwrite to replace it")


def _written_by_study(best: str, trials_dir: str) -> bool:
    """best/ is empty, or a copy of one of this study's trial runs (same metrics.json, only a run's files)."""
    if not os.path.isdir(best) or os.path.islink(best):
        return False
    names = os.listdir(best)
    if not names:
        return True
    if not set(names) <= set(rundir.RUN_FILES) | set(rundir.RUN_FOLDERS):
        return False
    mine = _bytes(os.path.join(best, rundir.METRICS))
    runs = sorted(os.listdir(trials_dir)) if os.path.isdir(trials_dir) else []
    return mine is not None and any(_bytes(os.path.join(trials_dir, n, rundir.METRICS)) == mine for n in runs)


def _bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _is_summary(path: str) -> bool:
    try:
        d = read_json(path)
    except DataError:
        return False
    return isinstance(d, dict) and {"space", "trials"} <= set(d)


def recover_trials(trials_dir: str) -> list[str]:
    """Under the study's lock: what killed trials left in trials/ (their hidden folders) cleaned."""
    hidden = (re.fullmatch(r"\.(.+)\.nanorec-(?:new|old)-\d+", n) for n in os.listdir(trials_dir))
    names = {m.group(1) for m in hidden if m}
    return [line for name in sorted(names) for line in recover_folder(os.path.join(trials_dir, name))]


def storage_url(path: str) -> str:
    """The SQLite URL of `path`, no character of it read as URL syntax (?, #, %) or Optuna's {template}."""
    from sqlalchemy.engine import URL
    url = URL.create("sqlite", database=os.path.abspath(path)).render_as_string(hide_password=False)
    return url.replace("{", "%7B").replace("}", "%7D")


def open_study(optuna, out_dir: str, base: Config, space: str, params: list[Param]):
    """The study of out_dir (created, or loaded and checked to be the same search)."""
    db = os.path.join(out_dir, DB)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is our one line, not Optuna's traceback
    study = optuna.create_study(
        study_name="nanorec", direction="maximize", load_if_exists=True, storage=storage_url(db),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER, n_warmup_steps=base.eval_interval))
    searched = study.user_attrs.get("method", base.method)
    if searched != base.method:
        raise UsageError(f"method={base.method}: the study in {out_dir} searches method={searched}; "
                         f"use that, or another --out")
    saved = study.user_attrs.get("space")  # None: a study from an older nanorec, judged by its trials
    drawn = {}
    for t in study.trials:
        drawn.update(t.distributions)
    if saved is not None:
        same, was = _by_key(parse_space(saved) if saved else []) == _by_key(params), f"--space {saved!r}"
    else:
        same, was = not drawn or drawn == distributions(optuna, params), f"other ranges of {', '.join(sorted(drawn))}"
    if not same:
        raise UsageError(f"--space {space!r}: the study in {out_dir} was run with {was}; use the same --space, "
                         f"or another --out for a new study")
    study.set_user_attr("space", space)
    study.set_user_attr("method", base.method)
    # a resumed search draws new values: the sampler's seed moves on with the trials already run
    # (the same seed would replay trial 0's values)
    seed = int(np.random.SeedSequence([base.seed, len(study.trials)]).generate_state(1)[0])
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    return study


def distributions(optuna, params: list[Param]) -> dict:
    """The Optuna distributions `suggest` draws the parameters from."""
    d = optuna.distributions
    return {p.key: d.CategoricalDistribution(list(p.choices)) if p.kind == "choice"
            else d.IntDistribution(p.low, p.high, log=p.log) if p.kind == "int"
            else d.FloatDistribution(p.low, p.high, log=p.log) for p in params}


def search(study, base: Config, params: list[Param], trials: int, out_dir: str, ds, log) -> None:
    """Run trials until `trials` have ended (one an interrupted process left running does not count)."""
    from optuna.trial import TrialState

    for t in study.trials:
        if t.state == TrialState.RUNNING:
            study.tell(t.number, state=TrialState.FAIL)
            log(f"trial {t.number}: interrupted by an earlier run of this study; marked failed, not counted")
    counted = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and "error" in t.user_attrs)]
    if not params and trials > 1:
        log(f"method={base.method}: nothing to search (it chooses its own settings on validation): one trial")
        trials = 1
    for _ in range(trials - len(counted)):
        trial = study.ask()
        run_dir = os.path.join(out_dir, TRIALS, f"{trial.number:03d}")
        trial.set_user_attr("run_dir", run_dir)

        try:
            cfg = dataclasses.replace(base, **suggest(trial, params)).validate()
            metrics = train(cfg, run_dir, overwrite=True, quiet=True, dataset=ds, score_test=False,
                          stop_below=pruning_line(study, base.eval_interval))
            for record in metrics["history"]:  # the validation curve, for the pruner and the sampler
                trial.report(record["NDCG@10"], record["step"])
            value = metrics["valid"]["NDCG@10"]  # the run as it ships (fused when fused)
            if not math.isfinite(value):
                raise DataError(f"validation NDCG@10 is {value}")
        except Exception as e:  # noqa: BLE001 - any trial may fail; the search goes on, in one line
            reason = one_line(e) if isinstance(e, NanorecError) else f"{type(e).__name__}: {one_line(e)}"
            trial.set_user_attr("error", reason)
            study.tell(trial, state=TrialState.FAIL)
            log(f"trial {trial.number}: failed: {reason}  {trial.params}")
            continue
        pruned = trial.should_prune()
        log(f"trial {trial.number}: valid NDCG@10 {value:.4f} (the run as shipped)"
            + (" pruned" if pruned else "") + f"  {trial.params}")
        if pruned:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, value)


def pruning_line(study, warmup: int) -> dict | None:
    """The median pruner's rule as data (train.run's stop_below): step (from `warmup`) -> median
    validation NDCG@10 of the completed trials (-inf where none is a number); None before PRUNE_AFTER."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    at = {s: [t.intermediate_values[s] for t in done if s in t.intermediate_values]
          for t in done for s in t.intermediate_values if s >= warmup}  # step -> the values there
    return {s: -math.inf if np.isnan(v).all() else float(np.nanmedian(v)) for s, v in at.items()} \
        if len(done) >= PRUNE_AFTER else None


def finish(study, base: Config, space: str, out_dir: str, ds) -> dict:
    """The winner, chosen on validation, copied to best/; only now is the test split scored, once."""
    from optuna.trial import TrialState

    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not done:
        failed = [t for t in study.trials if "error" in t.user_attrs]
        first = f" (trial {failed[0].number}: {failed[0].user_attrs['error']})" if failed else ""
        raise UsageError(f"{out_dir}: no trial of the study completed{first}; nothing to select "
                         f"(fix the cause, then run again with a larger --trials to add trials)")
    winner = study.best_trial
    best_dir = os.path.join(out_dir, BEST)
    copy_run(winner.user_attrs["run_dir"], best_dir)
    summary = {
        "space": space or "none", "method": base.method,
        "selection": "best validation NDCG@10 (test split not scored during the search)",
        "trials": [{"number": t.number, "state": t.state.name, "params": t.params,
                    "valid_NDCG@10": t.value, "run": t.user_attrs.get("run_dir"),
                    **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {})} for t in study.trials],
        "best": {"number": winner.number, "params": winner.params, "valid_NDCG@10": winner.value, "run": best_dir},
    }
    sp = split_like(ds, base)
    if sp.test is not None:  # the model the study ships, as `nanorec evaluate --run best` scores it (fused when fused)
        best = Run.open(best_dir)
        summary["best"]["test"] = evaluate_split(best.scorer, sp.test, base.eval_batch_size, ds.num_items,
                                                 exclude_seen=best.exclude_seen)
    write_json(os.path.join(out_dir, SUMMARY), summary)
    return summary


def copy_run(src: str, dst: str) -> None:
    """A copy of the run folder `src` at `dst`, put in place by one rename (an old dst removed only then)."""
    work = temp_folder(dst)
    try:
        shutil.copytree(src, work, dirs_exist_ok=True)
        publish_folder(work, dst)
    except (OSError, shutil.Error) as e:
        shutil.rmtree(os.path.dirname(work), ignore_errors=True)
        reason = disk_error(e) or one_line(e)
        raise DataError(f"{dst}: cannot copy the winner's run there ({reason})") from None


def _database_error(e: BaseException) -> bool:
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:
        return False
    return isinstance(e, SQLAlchemyError)


def _by_key(params: list[Param]) -> list[Param]:
    return sorted(params, key=lambda p: p.key)
