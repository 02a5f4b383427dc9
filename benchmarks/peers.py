"""The peers side by side (issue 26): what a competitor tries first, on nanorec's own splits and scored
by nanorec's own evaluator, beside nanorec's defaults and its count tables.

    # the peers, in a venv of their own (they pin numpy 1.26; the project's venv stays as it is):
    python3 -m venv --system-site-packages PEERS_VENV
    echo $PWD/.venv/lib/python3.11/site-packages > PEERS_VENV/lib/python3.11/site-packages/project.pth
    PEERS_VENV/bin/pip install implicit==0.7.3 "rectools[torch]==0.19.0"
    OMP_WAIT_POLICY=PASSIVE PEERS_VENV/bin/python benchmarks/peers.py --data DATA --name NAME --only peers
    # nanorec, each command in its own process (fit = `nanorec train`, lists = `nanorec recommend`):
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/peers.py --data DATA --name NAME --only nanorec

DATA: an S3-Rec .txt (Beauty) or an event log (`nanorec synth --out synth.csv --rows R`: the seed's
shape at R rows). Protocol for every row: nanorec.data.split's leave-one-out (fit on split.train,
select on split.valid, the test scored once with the history items[:-1]), lists of 20 with the
user's history left out, scored by nanorec.evaluation.metrics.set_metrics (with one target per user it equals
the full-ranking metrics_from_ranks of `nanorec evaluate --exclude-seen`). A peer's list shorter than
20 counts its missing places as misses (implicit's kNN lists only items with a neighbour).

Peers, at their libraries' defaults except where said:
  implicit BM25Recommender / CosineRecommender (item-item kNN): K (neighbours, default 20) chosen on
    validation from 20, 50, 100, 200; BM25's K1=1.2, B=0.75 (defaults); binary user x item matrix.
  RecTools SASRecModel: defaults (2 blocks, 4 heads, 256 factors, dropout 0.2, full softmax, lr 1e-3,
    batch 128) except session_max_len=50 (the SASRec paper's setting for Beauty; the default 100 only
    adds padding to these short histories), trained in chunks of batches for a wall-clock budget,
    the chunk count chosen on validation NDCG@10 (a seeded validation sample of --sasrec-valid-users,
    whose metrics are its valid figures; --sasrec-test-users: the test on a seeded sample).
Seconds: fit = the model's fit (the selected setting's; SASRec: its training up to the selected
chunk), lists = top-20 for every test user; for nanorec, the whole `nanorec train` process (training,
validations, fusion, the test pass) and the whole `nanorec recommend --k 20` process.
Writes benchmarks/results/peers.json: one entry per --name, the two --only parts merged into it.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from nanorec.data import Sequences, load, split  # noqa: E402
from nanorec.evaluation.metrics import protocol_line, set_metrics  # noqa: E402

K_LIST = 20
KNN_GRID = (20, 50, 100, 200)
MACHINE = "2-core CPU, under load (shared with 5 other helpers' jobs; load average in each part's entry)"
PROTOCOL_NOTE = ("every row: nanorec.data.split leave-one-out, fit on split.train, selected on split.valid NDCG@10, the "
                 "test (history items[:-1]) scored once; top-20 lists with the history left out, scored by "
                 "nanorec.evaluation.metrics.set_metrics (= full-ranking metrics_from_ranks with one target); a short list's "
                 "missing places are misses")
PEER_SETTINGS = ("implicit kNN: library defaults (BM25 K1=1.2, B=0.75), K chosen on validation from 20/50/100/200, "
                 "binary user x item matrix; RecTools SASRec: library defaults except session_max_len=50 (the SASRec "
                 "paper's Beauty setting), trained for a wall-clock budget in chunks of batches, the chunk chosen on "
                 "validation NDCG@10 of a fixed validation sample")


def one_target(targets: np.ndarray) -> Sequences:
    """Each user's held-out item as a one-item row (what set_metrics reads)."""
    return Sequences(np.arange(len(targets) + 1, dtype=np.int64), np.asarray(targets, dtype=np.int64))


def scored(lists: np.ndarray, evalset) -> dict:
    """nanorec's metrics @5/10/20 of (M, 20) lists (0 = an empty place), plus how many lists are short."""
    m = {k: round(v, 4) for k, v in set_metrics(lists, one_target(evalset.targets)).items()}
    m["users"] = len(lists)
    m["lists_shorter_than_10"] = int(((lists > 0).sum(1) < 10).sum())
    return m


def user_items(hist: Sequences, num_items: int):
    """(M, N+1) binary CSR of each row's history (column 0 is padding, never filled)."""
    from scipy.sparse import csr_matrix
    m = csr_matrix((np.ones(len(hist.items), np.float32), hist.items, hist.offsets), shape=(len(hist), num_items + 1))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def knn_lists(model, evalset, num_items: int) -> np.ndarray:
    """(M, 20) implicit's own top-20 (history filtered by implicit), -1 padding turned into 0."""
    X = user_items(evalset.histories, num_items)
    ids, _ = model.recommend(np.arange(X.shape[0]), X, N=K_LIST, filter_already_liked_items=True)
    ids = np.asarray(ids, dtype=np.int64)
    return np.where(ids > 0, ids, 0)


def run_knn(kind: str, sp, n: int) -> dict:
    """A kNN peer: K chosen on validation NDCG@10, the test scored once with the chosen model."""
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
    cls = BM25Recommender if kind == "bm25" else CosineRecommender
    train = user_items(sp.train, n)
    selection, best = {}, None
    for K in KNN_GRID:
        model = cls(K=K)
        t0 = time.time()
        model.fit(train, show_progress=False)
        fit_s = time.time() - t0
        valid = scored(knn_lists(model, sp.valid, n), sp.valid)
        selection[str(K)] = valid["NDCG@10"]
        print(f"[{kind}] K={K} valid NDCG@10 {valid['NDCG@10']:.4f} fit {fit_s:.1f}s", flush=True)
        if best is None or valid["NDCG@10"] > best[1]["NDCG@10"]:
            best = (K, valid, model, fit_s)
    K, valid, model, fit_s = best
    t0 = time.time()
    lists = knn_lists(model, sp.test, n)
    list_s = time.time() - t0
    import implicit
    return dict(method=f"implicit {implicit.__version__} {cls.__name__}", settings=dict(K=K, **(
        dict(K1=model.K1, B=model.B) if kind == "bm25" else {})), selection_valid_NDCG_at_10_by_K=selection,
        valid=valid, test=scored(lists, sp.test), fit_seconds=round(fit_s, 1), list_seconds=round(list_s, 1))


def rectools_dataset(hist: Sequences, users: np.ndarray):
    """A RecTools Dataset of histories (user id = the nanorec row, datetime = position in the row)."""
    import pandas as pd
    from rectools.dataset import Dataset
    pos = np.arange(len(hist.items)) - np.repeat(hist.offsets[:-1], hist.lengths)
    df = pd.DataFrame({"user_id": np.repeat(users, hist.lengths), "item_id": hist.items, "weight": 1.0,
                       "datetime": pd.to_datetime(pos, unit="s")})
    return Dataset.construct(df)


def sasrec_lists(model, evalset, rows: np.ndarray | None = None) -> np.ndarray:
    """(M, 20) RecTools' own top-20 for the evalset's users (or those `rows` of it), history filtered."""
    hist = evalset.histories if rows is None else evalset.histories.take(rows)
    users = evalset.users if rows is None else evalset.users[rows]
    reco = model.recommend(users, rectools_dataset(hist, users), k=K_LIST, filter_viewed=True,
                           on_unsupported_targets="warn")
    lists = np.zeros((len(users), K_LIST), dtype=np.int64)
    at = {u: i for i, u in enumerate(users.tolist())}
    r = reco["user_id"].map(at).to_numpy()
    lists[r, reco["rank"].to_numpy() - 1] = reco["item_id"].to_numpy()
    return lists


def run_sasrec(sp, budget_s: float, chunk_batches: int, valid_users: int, test_users: int = 0, seed: int = 0) -> dict:
    """RecTools SASRec trained `chunk_batches` batches at a time until `budget_s` of training; after each
    chunk, the metrics of a fixed validation sample (`valid_users`); the best chunk's weights list the
    test once: every test user, or a seeded sample of `test_users` when the CPU cannot list them all
    (its list seconds then also given per 1,000 users)."""
    import rectools
    from pytorch_lightning import Trainer
    from rectools.models import SASRecModel

    def trainer():
        return Trainer(max_epochs=1, min_epochs=1, limit_train_batches=chunk_batches, enable_progress_bar=False,
                       enable_model_summary=False, logger=False, enable_checkpointing=False, devices=1,
                       accelerator="cpu")

    model = SASRecModel(session_max_len=50, get_trainer_func=trainer)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(sp.valid.targets), min(valid_users, len(sp.valid.targets)), replace=False))
    train_ds = rectools_dataset(sp.train, np.arange(len(sp.train)))
    valid_sample = type(sp.valid)(sp.valid.users[sample], sp.valid.histories.take(sample), sp.valid.targets[sample])
    history, best, trained = [], None, 0.0
    while trained < budget_s:
        t0 = time.time()
        model.fit_partial(train_ds, min_epochs=1, max_epochs=1)
        trained += time.time() - t0
        t0 = time.time()
        v = scored(sasrec_lists(model, valid_sample), valid_sample)
        history.append(dict(chunk=len(history) + 1, train_seconds=round(trained, 1),
                            valid_sample_NDCG_at_10=v["NDCG@10"], valid_seconds=round(time.time() - t0, 1)))
        print(f"[sasrec] {history[-1]}", flush=True)
        if best is None or v["NDCG@10"] > best[1]["NDCG@10"]:  # a copy of the weights (the model holds a local function)
            best = (len(history), v, copy.deepcopy(model.lightning_model.state_dict()), trained)
    chunk, valid, state, fit_s = best
    model.lightning_model.load_state_dict(state)
    test = sp.test
    if test_users and test_users < len(test.targets):
        rows = np.sort(rng.choice(len(test.targets), test_users, replace=False))
        test = type(test)(test.users[rows], test.histories.take(rows), test.targets[rows])
    t0 = time.time()
    lists = sasrec_lists(model, test)
    list_s = time.time() - t0
    return dict(method=f"RecTools {rectools.__version__} SASRecModel",
                settings=dict(n_blocks=model.n_blocks, n_heads=model.n_heads, n_factors=model.n_factors,
                              dropout_rate=model.dropout_rate, session_max_len=model.session_max_len, loss=model.loss,
                              lr=model.lr, batch_size=model.batch_size, chunk_batches=chunk_batches,
                              budget_seconds=budget_s, selected_chunk=chunk, chunks_run=len(history),
                              valid_sample_users=len(sample), test_users=len(test.targets)),
                history=history, valid=valid, test=scored(lists, test), fit_seconds=round(fit_s, 1),
                list_seconds=round(list_s * len(sp.test.targets) / len(test.targets), 1),
                list_seconds_per_1000_users=round(1000 * list_s / len(test.targets), 2),
                **({"note": f"test listed for a seeded sample of {len(test.targets):,} of the {len(sp.test.targets):,} "
                            "test users (the CPU under load could not list them all in time); list_seconds is "
                            "scaled to all of them"} if len(test.targets) < len(sp.test.targets) else {}))


def timed_cli(argv: list[str]) -> float:
    """One nanorec command in its own process -> wall seconds (exits on failure, with its stderr)."""
    print("[nanorec]", " ".join(argv), flush=True)
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "nanorec.cli", *argv], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT})
    if p.returncode != 0:
        sys.exit(f"nanorec {argv[0]} failed:\n{p.stderr[-3000:]}")
    return round(time.time() - t0, 1)


def run_nanorec(data: str, work: str, method: str | None, extra: list[str]) -> dict:
    """`nanorec train` (defaults, or method=...), its test re-scored with history excluded by
    `nanorec evaluate --exclude-seen` (the peers' protocol; metrics.json's valid and test follow the
    run's own exclude_seen choice, which may allow repeats), and `nanorec recommend` for every user (k=20)."""
    run = os.path.join(work, method or "default")
    fit_s = timed_cli(["train", "--data", data, "--out", run, "--overwrite", "--quiet"] + (
        [f"method={method}"] if method else extra))
    out = os.path.join(work, f"test_{method or 'default'}.json")
    timed_cli(["evaluate", "--run", run, "--data", data, "--split", "test", "--exclude-seen", "--json", out])
    list_s = timed_cli(["recommend", "--run", run, "--data", data, "--k", str(K_LIST),
                        "--out", os.path.join(work, f"lists_{method or 'default'}.csv")])
    m = json.load(open(os.path.join(run, "metrics.json")))
    test = json.load(open(out))
    test = test.get("metrics", test)
    seen = m.get("exclude_seen") if isinstance(m.get("exclude_seen"), dict) else {"setting": m.get("exclude_seen")}
    import nanorec
    return dict(method=f"nanorec {getattr(nanorec, '__version__', '')} " + (
                f"method={method}" if method else "defaults" + "".join(f" {e}" for e in extra)),
                settings=dict(exclude_seen=seen.get("choice", seen.get("setting")), fusion=(m.get("fusion") or {}).get("weights"),
                              steps=m.get("steps"), best_step=m.get("best_step"), selection=m.get("selection")),
                valid={k: round(v, 4) for k, v in m["valid"].items() if isinstance(v, float)},
                test={k: round(v, 4) if isinstance(v, float) else v for k, v in test.items()},
                test_with_the_runs_own_exclude_seen={k: round(v, 4) for k, v in m["test"].items()
                                                     if isinstance(v, float)},
                exclude_seen=seen, fit_seconds=fit_s, list_seconds=list_s,
                note="fit = the whole `nanorec train` process (training, validation, fusion, the test pass); "
                     "lists = the whole `nanorec recommend --k 20` process for every user (last item included)")


def table(whole: dict) -> str:
    """peers.json as the markdown tables of benchmarks/README.md: one per data set, and each row's MAP@10
    against the best peer's."""
    out = []
    for name, d in whole.get("datasets", {}).items():
        rows = d["rows"]
        done = {k: r for k, r in rows.items() if "test" in r}
        peer_best = max((r["test"]["MAP@10"] for k, r in done.items() if not k.startswith("nanorec")), default=0)
        out += [f"{name}: {d['users']:,} users, {d['items']:,} items, {d['events']:,} events", "",
                "| row | settings | valid NDCG@10 | test HR@10 | test NDCG@10 | test MAP@10 | x best peer's MAP@10 "
                "| fit s | lists s |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for key, r in rows.items():
            if "test" not in r:
                out.append(f"| {key} | could not run: {r.get('error')} | | | | | | | |")
                continue
            st = r["settings"]
            st = ", ".join(f"{k}={v}" for k, v in st.items() if k in (
                "K", "selected_chunk", "chunks_run", "budget_seconds", "fusion", "exclude_seen") and v is not None)
            st = st.replace("exclude_seen=", "").replace("'", "")
            if "note" in r and "sample" in r["note"]:
                st += f", test on a {r['test']['users']:,}-user sample, lists s scaled to all"
            t = r["test"]
            ratio = f"{t['MAP@10'] / peer_best:.2f}" if peer_best else ""
            out.append(f"| {r['method']} | {st[:120]} | {r['valid']['NDCG@10']:.4f} | {t['HR@10']:.4f} | "
                       f"{t['NDCG@10']:.4f} | {t['MAP@10']:.4f} | {ratio} | {r['fit_seconds']:.0f} | "
                       f"{r['list_seconds']:.0f} |")
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--name")
    ap.add_argument("--only", choices=["peers", "nanorec", "table"], required=True,
                    help="table: print benchmarks/results/peers.json as markdown")
    ap.add_argument("--peers", default="bm25,cosine,sasrec")
    ap.add_argument("--methods", default="default,transitions,cooccurrence",
                    help="nanorec rows: default (every setting at its default) and/or method=... values")
    ap.add_argument("--nanorec-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="settings for the default row beyond the defaults (e.g. max_steps=600 on a loaded CPU)")
    ap.add_argument("--sasrec-seconds", type=float, default=300.0, help="SASRec's training budget")
    ap.add_argument("--sasrec-chunk", type=int, default=100, help="batches between SASRec's validations")
    ap.add_argument("--sasrec-valid-users", type=int, default=2000, help="validation sample SASRec selects on")
    ap.add_argument("--tag", default="", help="appended to the peers' row names (a second budget beside the first)")
    ap.add_argument("--sasrec-test-users", type=int, default=0, help="list this many test users (0: all)")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "peers.json"))
    ap.add_argument("--work", default=None, help="nanorec's run folders (default runs/peers/NAME)")
    args = ap.parse_args()
    out_path = args.out
    if args.only == "table":
        return print(table(json.load(open(out_path))))
    if not (args.data and args.name):
        ap.error("--data and --name are needed to measure")
    import torch
    torch.set_num_threads(2)
    whole = json.load(open(out_path)) if os.path.exists(out_path) else {}
    result = whole.setdefault("datasets", {}).setdefault(args.name, {"rows": {}})
    ds = load(args.data)
    sp = split(ds)
    n = ds.num_items
    load_start = os.getloadavg()[0]
    rows = result["rows"]
    if args.only == "peers":
        for peer in args.peers.split(","):
            key = peer + args.tag
            try:
                rows[key] = run_sasrec(sp, args.sasrec_seconds, args.sasrec_chunk, args.sasrec_valid_users,
                                       args.sasrec_test_users) if peer == "sasrec" else run_knn(peer, sp, n)
            except Exception as e:  # a peer that cannot run here is a row saying why
                rows[key] = dict(error=f"{type(e).__name__}: {e}")
            print(key, json.dumps({k: rows[key].get(k) for k in ("test", "fit_seconds", "list_seconds", "error")}),
                  flush=True)
        result["peers_versions"] = {m: __import__(m).__version__ for m in ("implicit", "rectools", "numpy", "torch",
                                                                          "pytorch_lightning", "scipy", "pandas")}
    else:
        work = args.work or os.path.join(ROOT, "runs", "peers", args.name)
        os.makedirs(work, exist_ok=True)
        for method in args.methods.split(","):
            rows[f"nanorec_{method}"] = run_nanorec(args.data, work, None if method == "default" else method,
                                                    args.nanorec_set)
            print(method, json.dumps({k: rows[f"nanorec_{method}"][k] for k in ("test", "fit_seconds", "list_seconds")}),
                  flush=True)
        result["nanorec_versions"] = {"numpy": np.__version__, "torch": torch.__version__}
    result.update(
        data=os.path.relpath(os.path.abspath(args.data), ROOT),
        users=len(ds.sequences), items=n, events=int(len(ds.sequences.items)),
        protocol=protocol_line(n, len(sp.test.targets)) + "; lists of 20 scored by nanorec.evaluation.metrics.set_metrics",
        selection="validation NDCG@10 (second-to-last item) only; test scored once",
        machine=f"{MACHINE}; {platform.machine()}, python {platform.python_version()}",
        peers_settings=PEER_SETTINGS,
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    commands = result.setdefault("commands", [])  # one entry per invocation (the parts add up)
    commands += [dict(command=c) for c in result.pop("command", {}).values()]  # an older file's one-per-part entry
    result.pop("load_average", None)
    commands.append(dict(command="OMP_WAIT_POLICY=PASSIVE nice -n 10 " + (
        "PEERS_VENV/bin/python" if args.only == "peers" else ".venv/bin/python") + " benchmarks/peers.py " +
        " ".join(sys.argv[1:]), load_average_start_end=[round(load_start, 1), round(os.getloadavg()[0], 1)]))
    write_merged(out_path, args.name, result)


def write_merged(out_path: str, name: str, result: dict) -> None:
    """Write one data set's entry into the results file as it is now (another part may have written it
    since this one started): its rows and commands are added to what is there."""
    whole = json.load(open(out_path)) if os.path.exists(out_path) else {}
    now = whole.setdefault("datasets", {}).setdefault(name, {})
    rows, commands = {**now.get("rows", {}), **result["rows"]}, now.get("commands", [])
    commands += [c for c in result["commands"] if c not in commands]
    now.update(result, rows=rows, commands=commands)
    whole.update(machine=MACHINE, protocol_note=PROTOCOL_NOTE)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(whole, f, indent=1)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
