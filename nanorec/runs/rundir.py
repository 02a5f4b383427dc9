"""The run directory: the names of the files a training run writes, their checked reads and their
writes (file I/O only: opening a run for scoring is run.py's `Run.open`).

    config.json        the Config as the run used it: every key, each auto resolved (config.resolve) and
                       listed under "auto"; unknown keys are refused on load
    items.json         internal index -> original item id (index 0 = padding, null)
    histories.parquet  every user's history (user_id, item index) in order: what recommend and
                       serve continue when no --data is given
    data.json          fingerprint of the training data (users, items, interactions, a hash, items_sha256
                       of items.json's ids; under target_filter the event types): other data is refused
    transitions.safetensors, cooccurrence.safetensors, fusion.json
                       fusion on (fusion.py): the two item-to-item tables and the terms' weights
    baseline.safetensors  a baseline's fitted arrays (method=popularity|transitions|cooccurrence|svd), instead of weights
    model.safetensors  the selected weights (best validation NDCG@10; the last ones without selection)
    ckpt.pt            the latest resumable state (plain tensors and strings: weights_only-loadable)
    metrics.json       {"valid": {...}, "test": {...}, "best_step": ..., "history": [...], ...}
    history.jsonl      one JSON line per validation pass (step, losses, metrics, seconds)
    test_ranks.npy     (M,) rank of each test user's target (1..20; 21 = below the top 20), for breakdowns
    train.log          what was printed
    curves.png         the validation curves (curves.py; a fused run's shipped figure drawn beside them)

Nothing here unpickles (weights are safetensors, checkpoints load with weights_only=True).
Every file is written through `files.atomic_write`, except the two logs (history.jsonl and
train.log), appended a line at a time. A new run is built in a hidden sibling of --out and
renamed into place when complete (RunFolder, files.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle

import numpy as np

from ..config import WEIGHT_NAMES, Config, unresolved
from ..data import Sequences, read_json
from ..errors import DataError, UsageError, one_line
from .files import (OutputLock, append_line, atomic_write, check_output_folder, discard_folder, publish_folder,
                    recover_folder, temp_folder, unfinished_folders, write_file, write_json, write_text)

CONFIG, ITEMS, DATA, WEIGHTS = "config.json", "items.json", "data.json", "model.safetensors"
BASELINE = "baseline.safetensors"
TRANSITIONS, COOCCURRENCE, FUSION = "transitions.safetensors", "cooccurrence.safetensors", "fusion.json"
FUSION_FILES = {"transitions": TRANSITIONS, "cooccurrence": COOCCURRENCE}  # the fusion tables -> file
HISTORIES = "histories.parquet"
CKPT, METRICS, HISTORY, TEST_RANKS, LOG = "ckpt.pt", "metrics.json", "history.jsonl", "test_ranks.npy", "train.log"
RUN_FILES = (CONFIG, ITEMS, DATA, HISTORIES, WEIGHTS, BASELINE, TRANSITIONS, COOCCURRENCE, FUSION, CKPT, METRICS, HISTORY, TEST_RANKS, LOG, "curves.png")
RUN_FOLDERS = ("tensorboard",)  # track=tensorboard's event files

# Keys a resumed run may change: how long and how visibly it goes on, not what is trained
# (any other key would continue a different model from this one's weights).
RESUMABLE_KEYS = ("max_steps", "patience", "eval_interval", "checkpoint_interval", "eval_batch_size",
                  "progress", "threads", "device", "compile", "fusion_weights")


# -----------------------------------------------------------------------------
# checks: nothing on disk changes here

def check_out_dir(out: str, resume: bool, overwrite: bool) -> None:
    """A fresh run needs an empty (or absent) folder unless overwrite; a resume needs a checkpoint
    (in --out, or in the folder an interrupted new run was being built in: resume_dir)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"{out}: exists and is not a folder")
    if resume and overwrite:
        raise UsageError("--resume continues the run in --out, --overwrite replaces it: choose one")
    OutputLock(out, "--out").check()
    if resume:
        if not os.path.exists(os.path.join(resume_dir(out), CKPT)):
            raise DataError(f"{out}: nothing to resume (no {CKPT})")
        return
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise UsageError(f"{out}: the folder is not empty (it holds {', '.join(sorted(os.listdir(out))[:3])}...); "
                         f"use --overwrite to replace its run, --resume to continue it, or another --out")
    interrupted = interrupted_run(out)
    if interrupted and not overwrite:
        raise UsageError(f"{out}: a run into it was interrupted before it was complete (its files are in "
                         f"{os.path.dirname(interrupted)}); use --resume to continue it, --overwrite to start again, "
                         f"or another --out")
    if overwrite and os.path.isdir(out):
        _check_replaceable(out)
    check_output_folder(out, "run folder")  # it will be created: its first existing ancestor must be a folder


def interrupted_run(out: str) -> str | None:
    """The folder an interrupted new run into `out` was built in, if it got as far as a checkpoint."""
    return next((work for work in unfinished_folders(out) if os.path.exists(os.path.join(work, CKPT))), None)


def resume_dir(out: str) -> str:
    """The run --resume continues: an interrupted new run of `out` (the newest), else `out` itself."""
    return interrupted_run(out) or out


def _check_replaceable(out: str) -> None:
    """--overwrite replaces the folder whole: it must hold a nanorec run's files and nothing else."""
    others = sorted(n for n in os.listdir(out) if n not in RUN_FILES and n not in RUN_FOLDERS
                    and not (n.startswith(".") and n.endswith(".tmp")))  # a killed write's temporary file
    if others:
        raise DataError(f"{out}: --overwrite replaces the run folder whole, and it also holds "
                        f"{', '.join(others[:3])}{'...' if len(others) > 3 else ''} (not a run's); "
                        f"move {'them' if len(others) > 1 else 'it'} out, or choose another --out")
    ours = [name for name in RUN_FILES if os.path.isfile(os.path.join(out, name))]
    if ours:
        try:  # a model folder has a config.json and a model.safetensors too
            read_config(out)
        except DataError as e:
            raise DataError(f"{out}: --overwrite replaces a nanorec run, and this folder's {CONFIG} is not one's "
                            f"({e}); choose another --out, or remove {', '.join(ours[:3])} yourself") from None


def resume_config(out: str, overrides_cfg: Config) -> None:
    """Refuse a resume whose config differs from the saved one in a key that shapes the model."""
    saved = unresolved(read_config(out))  # the keys as given, to compare with this command's
    for key in saved.to_dict():
        if key in RESUMABLE_KEYS or key == "data":
            continue
        if getattr(saved, key) != getattr(overrides_cfg, key):
            raise UsageError(f"{key}={getattr(overrides_cfg, key)!r}: cannot change on --resume "
                             f"(the run in {out} was trained with {key}={getattr(saved, key)!r}); "
                             f"changeable: {', '.join(RESUMABLE_KEYS)}")


def fingerprint(ds) -> dict:
    """What identifies a training data set: sizes and a hash of the vocabulary and every history."""
    h = hashlib.sha256()
    h.update(json.dumps([_plain(x) for x in ds.item_ids[1:].tolist()]).encode())
    h.update(np.ascontiguousarray(ds.sequences.offsets, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(ds.sequences.items, dtype=np.int64).tobytes())
    fp = {"users": int(len(ds.user_ids)), "items": int(ds.num_items),
          "interactions": int(len(ds.sequences.items)), "sha256": h.hexdigest(),
          "items_sha256": items_digest(ds.item_ids)}
    if getattr(ds, "event_types", None) is not None:  # target_filter: the event types the run knows
        fp["event_types"] = list(ds.event_types)
    return fp


def items_digest(item_ids: np.ndarray) -> str:
    """sha256 of items.json's ids (slot 0 skipped): recorded in data.json, checked by Run.open."""
    body = [_plain(x) for x in np.asarray(item_ids)[1:].tolist()]
    return hashlib.sha256(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def check_same_data(run_dir: str, fp: dict, data_path: str) -> None:
    """The data given now must be the data the run was trained on."""
    saved = read_fingerprint(run_dir)
    if saved is None or all(saved[k] == fp[k] for k in saved.keys() & fp.keys()):  # a key older runs lack is skipped
        return
    diffs = [f"{k} {saved[k]:,} vs {fp[k]:,}" for k in ("users", "items", "interactions") if saved.get(k) != fp.get(k)]
    what = "; ".join(diffs) if diffs else "same sizes, different contents"
    raise DataError(f"{data_path}: not the data the run in {run_dir} was trained on ({what})")


def check_same_vocabulary(run_dir: str, item_ids: np.ndarray, data_path: str) -> None:
    """Scoring needs the run's item vocabulary, not necessarily its exact training data."""
    run_items = read_items(run_dir)
    same = len(run_items) == len(item_ids) and all(str(a) == str(b) for a, b in zip(run_items[1:], item_ids[1:]))
    if not same:
        given, known = {str(x) for x in item_ids[1:]}, {str(x) for x in run_items[1:]}
        hint = "use the data the run was trained on" if not given < known else \
            (f"the run knows {len(known - given):,} item(s) this data lacks (an updated run: give its parent's "
             f"data and the update's events as one file)")
        raise DataError(f"{data_path}: its item vocabulary ({len(item_ids) - 1:,} items) differs from the run's "
                        f"{ITEMS} ({len(run_items) - 1:,} items); {hint}")


# -----------------------------------------------------------------------------
# writing (rank 0, after every check has passed)

class RunFolder:
    """A run folder written as a transaction, by one writer at a time:
    `work = folder.start(cfg, ds, fp)`, every file into work, `folder.commit()`, and
    `folder.close()` in a finally. A new run is built in a hidden sibling of `out`
    (files.temp_folder) and renamed into place by commit; one that stops after its first
    checkpoint stays there for --resume (resume_dir), before one it is removed. --resume
    continues inside the run folder, every file atomic. `notes`: lines for the run's log."""

    def __init__(self, out: str, resume: bool, overwrite: bool):
        self.out, self.resume, self.overwrite = out, resume, overwrite
        self.lock, self.work, self.committed, self.notes = None, None, False, []

    def start(self, cfg: Config, ds, fp: dict) -> str:
        """Take the lock, check --out again under it, write the run's first files; -> the folder to write."""
        self.lock = OutputLock(self.out, "--out").acquire()
        if self.lock.previous and self.lock.previous != os.getpid():
            self.notes.append(f"{self.out}: took over the lock of process {self.lock.previous} (no longer running)")
        resumed = resume_dir(self.out) if self.resume else None
        self.notes += recover_folder(self.out, keep=resumed if resumed != self.out else None)
        check_out_dir(self.out, self.resume, self.overwrite)  # again: another writer may have finished meanwhile
        self.work = resumed or temp_folder(self.out)
        if self.work != self.out:
            self.notes.append(f"writing {self.work}: renamed to {self.out} when complete")
        out, item_ids = self.work, ds.item_ids
        cfg.save(os.path.join(out, CONFIG))
        write_json(os.path.join(out, ITEMS), [None] + [_plain(x) for x in item_ids[1:].tolist()], indent=None)
        write_json(os.path.join(out, DATA), fp)
        if not self.resume or not os.path.exists(os.path.join(out, HISTORIES)):
            save_histories(os.path.join(out, HISTORIES), ds.user_ids, ds.sequences, ds.times, ds.time_unit)
        return self.work

    def commit(self) -> None:
        """The run is complete: a new one replaces `out` (the old run, if any, removed after)."""
        if self.work is not None and self.work != self.out:
            publish_folder(self.work, self.out)
        self.committed = True
        self.close()

    def close(self) -> None:
        """Always, last: remove a new run that stopped before its first checkpoint; release the lock."""
        if self.work is not None and self.work != self.out and not self.committed \
                and not os.path.exists(os.path.join(self.work, CKPT)):
            discard_folder(self.work)
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def save_histories(path: str, user_ids: np.ndarray, seqs, times: np.ndarray | None = None,
                   time_unit: str | None = None) -> None:
    """Long format, one row per event in order: user_id (original), item (internal index), and where
    they apply target (bool: exclude_seen removes only targets), weight and time (Dataset.times):
    what `nanorec update` needs to extend the run exactly."""
    import polars as pl
    users = np.repeat(np.asarray(user_ids), seqs.lengths)
    columns = {"user_id": users.tolist() if users.dtype == object else users, "item": seqs.items}
    is_target = seqs.is_target()
    if is_target is not None and not is_target.all():
        columns["target"] = is_target
    if seqs.weights is not None:
        columns["weight"] = np.asarray(seqs.weights, np.float32)
    if times is not None:
        kind = {"d": pl.Date}.get(time_unit, pl.Datetime(time_unit) if time_unit else None)
        columns["time"] = pl.Series(np.asarray(times)) if kind is None else pl.Series(np.asarray(times)).cast(kind)
    df = pl.DataFrame(columns)
    atomic_write(path, df.write_parquet)


# histories.parquet's optional columns after user_id, item, in this order, and their dtypes' checks
_HISTORY_EXTRAS = {"target": lambda dt: str(dt) == "Boolean", "weight": lambda dt: dt.is_float(),
                   "time": lambda dt: dt.is_numeric() or dt.is_temporal()}


def _read_history_frame(run_dir: str):
    """histories.parquet, its columns checked (user_id, item[, target][, weight][, time])."""
    import polars as pl
    path = os.path.join(run_dir, HISTORIES)
    if not os.path.exists(path):
        raise DataError(f"{run_dir}: no {HISTORIES} (a run from an older nanorec): pass --data")
    try:
        df = pl.read_parquet(path)
    except Exception as e:  # polars raises several unrelated types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({one_line(e)})") from None
    extras = df.columns[2:]
    if df.columns[:2] != ["user_id", "item"] or not df["item"].dtype.is_integer() \
            or extras != [c for c in _HISTORY_EXTRAS if c in extras] \
            or not all(_HISTORY_EXTRAS[c](df[c].dtype) for c in extras):
        raise DataError(f"{path}: expected columns user_id, item (an integer item index)[, target (bool)]"
                        f"[, weight (float)][, time (a number)]")
    if any(df[c].null_count() for c in df.columns):
        raise DataError(f"{path}: a missing user_id, item, target, weight or time")
    return df


def read_histories(run_dir: str, num_items: int | None = None):
    """(user_ids (U,), Sequences) from histories.parquet, users in first-appearance order, with its
    target flags and weights; every item index must be in 1..num_items (when given)."""
    path = os.path.join(run_dir, HISTORIES)
    df = _read_history_frame(run_dir)
    if num_items is not None and df.height and not 1 <= df["item"].min() <= df["item"].max() <= num_items:
        bad = df["item"].filter((df["item"] < 1) | (df["item"] > num_items))[0]
        raise DataError(f"{path}: item index {bad} outside the run's 1..{num_items:,} ({ITEMS}); "
                        f"the file was edited: restore it, or pass --data")
    users = df["user_id"].to_numpy()
    if users.dtype.kind not in "iu":
        users = users.astype(object)
    change = np.ones(len(users), dtype=bool)
    change[1:] = users[1:] != users[:-1]
    starts = np.nonzero(change)[0]
    offsets = np.append(starts, len(users)).astype(np.int64)
    targets = df["target"].to_numpy() if "target" in df.columns else None
    weights = df["weight"].to_numpy().astype(np.float32) if "weight" in df.columns else None
    return users[starts], Sequences(offsets, df["item"].to_numpy().astype(np.int64), weights=weights, targets=targets)


def read_history_times(run_dir: str) -> tuple[np.ndarray | None, str | None]:
    """-> ((total,) each saved event's time as Dataset.times holds it, its Dataset.time_unit);
    (None, None) when the run folder keeps no times."""
    df = _read_history_frame(run_dir)
    if "time" not in df.columns:
        return None, None
    s = df["time"]
    unit = "d" if str(s.dtype) == "Date" else getattr(s.dtype, "time_unit", None)
    times = s.to_physical().to_numpy()
    return (times.astype(np.int64) if times.dtype.kind in "iu" else times), unit


def save_weights(model, path: str) -> None:
    from safetensors.torch import save_file
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp))


def save_checkpoint(state: dict, path: str) -> None:
    import torch
    write_file(path, lambda f: torch.save(state, f))  # a Python file: a full disk is an OSError, not torch's text


def save_array(path: str, arr: np.ndarray) -> None:
    write_file(path, lambda f: np.save(f, arr))


def append_history(out: str, record: dict) -> None:
    """One line per validation pass; appended (a torn last line is skipped by readers)."""
    append_line(os.path.join(out, HISTORY), json.dumps(record))


def rewrite_history(out: str, records: list) -> None:
    """history.jsonl as of a checkpoint (a resumed run drops passes made after it)."""
    write_text(os.path.join(out, HISTORY), "".join(json.dumps(r) + "\n" for r in records))


# -----------------------------------------------------------------------------
# reading: every failure is a DataError naming the file

def read_config(run_dir: str) -> Config:
    """config.json, checked, with every key (Config.load's every_key)."""
    require_folder(run_dir)
    path = os.path.join(run_dir, CONFIG)
    if not os.path.exists(path):
        raise DataError(f"{run_dir}: not a run folder ({CONFIG} is missing)")
    return Config.load(path, every_key=True)


def read_items(run_dir: str) -> np.ndarray:
    """items.json: position i = original id of internal index i (0: null, padding), checked against
    data.json's size and hash: an edited items.json would map every score to the wrong item."""
    path = os.path.join(run_dir, ITEMS)
    ids = read_json(path)
    if not isinstance(ids, list) or len(ids) < 2 or ids[0] is not None:
        raise DataError(f"{path}: expected a JSON list [null, item id, ...]")
    body = ids[1:]
    if all(isinstance(x, int) and not isinstance(x, bool) for x in body):
        out = np.array([-1] + body, dtype=np.int64)
    elif all(isinstance(x, str) for x in body):
        out = np.array([""] + body, dtype=object)
    else:
        raise DataError(f"{path}: item ids must be all integers or all strings")
    if len(set(body)) != len(body):
        raise DataError(f"{path}: an item id appears twice")
    fp = read_fingerprint(run_dir)
    if fp is None:  # a run from before fingerprints
        return out
    if fp["items"] != len(out) - 1:
        raise DataError(f"{path}: {len(out) - 1:,} items, but the run was trained on {fp['items']:,} "
                        f"({DATA}); restore the file")
    if "items_sha256" in fp and fp["items_sha256"] != items_digest(out):
        raise DataError(f"{path}: its item ids differ from the ones the run was trained on (the hash in "
                        f"{DATA} does not match); restore the file")
    return out


def read_fingerprint(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, DATA)
    if not os.path.exists(path):
        return None  # a run written before fingerprints existed
    fp = read_json(path)
    if not isinstance(fp, dict) or not {"users", "items", "interactions", "sha256"} <= set(fp):
        raise DataError(f"{path}: not a data fingerprint")
    return fp


def read_metrics(run_dir: str) -> dict:
    """metrics.json of a finished run (a DataError naming the file when absent or broken)."""
    path = os.path.join(run_dir, METRICS)
    m = read_json(path)
    if not isinstance(m, dict):
        raise DataError(f"{path}: expected a JSON object of metrics")
    return m


def read_history(run_dir: str) -> list[dict]:
    """history.jsonl: one record per validation pass, in order; a torn last line (a run
    killed while appending) is skipped. [] when the run has made no pass yet."""
    path = os.path.join(run_dir, HISTORY)
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        lines = [x for x in f.read().split("\n") if x.strip()]
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # the torn last line
            raise DataError(f"{path}:{i + 1}: not a JSON record") from None
    return records


def read_test_ranks(run_dir: str) -> np.ndarray:
    """test_ranks.npy: (M,) rank of each test user's target (1..20; 21 = below the top 20)."""
    path = os.path.join(run_dir, TEST_RANKS)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file (the run did not score its test split)")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable .npy file ({one_line(e)})") from None


def load_weights(model, path: str) -> None:
    """Load safetensors weights into `model`, or a DataError naming the file."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file (has the run finished a validation pass?)")
    load_state(model, _read_safetensors(path), path)


def check_weights(path: str, state: dict) -> None:
    """--resume keeps the selected weights: they must fit the checkpoint's model (absent: fine)."""
    if not os.path.exists(path):
        return
    shapes = lambda d: {k: tuple(v.shape) for k, v in d.items()}  # noqa: E731
    if shapes(_read_safetensors(path)) != shapes(state):
        raise DataError(f"{path}: the weights do not fit the model of {CKPT}; "
                        f"start again with --overwrite, or restore the file")


def _read_safetensors(path: str) -> dict:
    from safetensors.torch import load_file
    try:
        return load_file(path)
    except Exception as e:  # noqa: BLE001 - any failure to parse the file means it is damaged
        raise DataError(f"{path}: not a readable safetensors file ({one_line(e)})") from None


def load_checkpoint(path: str, device: str = "cpu") -> dict:
    import torch
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged file can fail anywhere in the (weights-only) unpickler
        # (seen: RuntimeError, EOFError, UnpicklingError, BadZipFile, IndexError "pop from empty list")
        reason = "not a weights-only torch file" if isinstance(e, pickle.UnpicklingError) else one_line(e)
        raise DataError(f"{path}: not a readable checkpoint ({reason}); "
                        f"start again with --overwrite, or restore the file") from None
    need = {"model", "optimizer", "state", "config", "rng_cpu"}
    if not isinstance(ck, dict) or not need <= set(ck):
        raise DataError(f"{path}: not a nanorec checkpoint (missing {sorted(need - set(ck or {}))[:3]})")
    return ck


def load_state(module, state: dict, path: str) -> None:
    """module.load_state_dict(state), or a DataError naming the file whose state it is."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise DataError(f"{path}: weights do not fit the model of {CONFIG} ({one_line(e)})") from None


def save_fusion(out: str, tables: list, weights: tuple) -> None:
    """The fitted tables and the weights as {"transitions_weight": 0.2, ...} (config.WEIGHT_NAMES)."""
    for name, table in zip(FUSION_FILES, tables):
        save_baseline(table, os.path.join(out, FUSION_FILES[name]))
    write_json(os.path.join(out, FUSION), {f"{name}_weight": w for name, w in zip(WEIGHT_NAMES, weights)})


def read_fusion(run_dir: str) -> tuple[float, ...]:
    """fusion.json's weights in config.WEIGHT_NAMES order; a name it lacks (an older run) weighs 0."""
    path = os.path.join(run_dir, FUSION)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file (the run did not finish its fusion step)")
    d = read_json(path)
    weights = []
    for name in WEIGHT_NAMES:
        w = d.get(f"{name}_weight", 0.0 if name != WEIGHT_NAMES[0] else None) if isinstance(d, dict) else None
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < float("inf"):
            raise DataError(f"{path}: expected {{\"transitions_weight\": a finite number >= 0, "
                            f"\"cooccurrence_weight\": ..., \"content_weight\": ...}}; {name}_weight is {w!r}")
        weights.append(float(w))
    return tuple(weights)


def save_baseline(model, path: str) -> None:
    from safetensors.numpy import save_file
    arrays = {k: np.ascontiguousarray(v) for k, v in model.state().items()}
    atomic_write(path, lambda tmp: save_file(arrays, tmp))


def require_folder(run_dir: str) -> None:
    """A DataError unless run_dir is an existing folder."""
    if not os.path.isdir(run_dir):
        what = "not a run folder (a file)" if os.path.exists(run_dir) else "no such run folder"
        raise DataError(f"{run_dir}: {what}")


def _plain(x):
    return x.item() if hasattr(x, "item") else x


