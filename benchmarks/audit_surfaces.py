"""A bad-input audit of the lifecycle surfaces, as a demanding new user would try them (issue 29).

    PYTHONPATH=$PWD python benchmarks/audit_surfaces.py [--work /tmp/nanorec_audit] [--only PREFIX]
                                                         [--json benchmarks/results/audit_lifecycle_surfaces.json]

Builds a small shop log (string item ids with leading zeros, event types, weights, times) and
four tiny runs (plain, target_filter, weight_col, holdout=time) plus an update of the plain
one, then runs every case below in its own process (a 120 s bound: past it, a hang) over
`update` (CLI, API, kill -9 mid-write, a second writer, a file-size limit), filter files
(CLI, API, server), holdout=time, target_filter, weight_col, inspect, serve (POST and GET
bodies), tune and evaluate of updated runs. Each case is classified:

    clean error    exit 2 (a nanorec error), one line, for input that is wrong
    right answer   exit 0 and the output checked right (a brute-force filter, a file type kept...)
    silent wrong   exit 0 with a wrong output, or bad input accepted without a word
    valid refused  a clean error for input that is right
    raw error      a traceback, an "internal error", any other exit status
    hang           still running after the bound
    data lost      a file or folder outside the output changed, moved or removed

and the counts are written to the JSON (with each case's class and stderr's last line).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
TINY = "n_embd=16 n_layer=1 n_head=1 block_size=8 batch_size=8 threads=1 max_steps=30 eval_interval=30 warmup_steps=2"
BOUND = 120
CLASSES = ["clean error", "right answer", "silent wrong", "valid refused", "raw error", "hang", "data lost"]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
            "PYTHONWARNINGS": "ignore"}


def sh(cmd: str, cwd: str, timeout: float = BOUND) -> tuple[int | None, str, str]:
    """(exit status or None past the bound, stdout, stderr) of a bash command line."""
    p = subprocess.Popen(["bash", "-c", cmd], cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return None, out.decode(errors="replace"), err.decode(errors="replace")


NR = f"{PY} -m nanorec.cli"
API = f"{PY} -c"  # python snippets: a NanorecError is exit 2 (as the CLI), anything else a traceback


def api(code: str) -> str:
    prelude = ("import sys\nfrom nanorec.errors import NanorecError\nfrom nanorec import Recommender\n"
               "try:\n" + "".join(f"    {line}\n" for line in code.strip().splitlines()) +
               "except NanorecError as e:\n    print('error:', e, file=sys.stderr); sys.exit(2)\n")
    return f"{PY} -c {shlex.quote(prelude)}"


_APPS = {}  # (work, run, deny file) -> a TestClient: the serve cases share one app per run


def _client(work, run, deny):
    from fastapi.testclient import TestClient

    from nanorec.commands.serve import create_app
    key = (work, run, deny)
    if key not in _APPS:
        old = os.getcwd()
        os.chdir(work)
        try:
            _APPS[key] = TestClient(create_app(run, deny_items=deny and os.path.join(work, deny)),
                                   raise_server_exceptions=False)
        finally:
            os.chdir(old)
    return _APPS[key]


def post(body, run="run", deny=None, raw=None, headers=None):
    """A POST /recommendations, in this process (TestClient): -> (work -> (status, stdout, stderr))."""
    def call(work):
        c = _client(work, run, deny)
        if raw is not None:
            r = c.post("/recommendations", content=raw, headers=headers or {"content-type": "application/json"})
        else:
            r = c.post("/recommendations", json=body)
        return r
    call.text = f"POST /recommendations {json.dumps(body) if raw is None else raw[:80]} (run {run}, deny {deny})"
    return call


def get(url, run="run", deny=None):
    call = lambda work: _client(work, run, deny).get(url)  # noqa: E731
    call.text = f"GET {url} (run {run}, deny {deny})"
    return call


def serve_case(call, work) -> tuple:
    """(exit status as the CLI would give it, stdout, stderr) of an in-process request: a 5xx or an
    exception is exit 1 (raw), a server that refuses to start with a nanorec error exit 2."""
    from nanorec.errors import NanorecError
    try:
        r = call(work)
    except NanorecError as e:
        return 2, "", f"error: {e}"
    except Exception as e:  # noqa: BLE001 - a bug, reported as one
        return 1, "", f"Traceback: {type(e).__name__}: {e}"
    text = f"{r.status_code} {json.dumps(r.json()) if r.headers.get('content-type', '').startswith('application/json') else r.text[:200]}"
    return (1 if r.status_code >= 500 else 0), text, ""


# -----------------------------------------------------------------------------
# the workspace

def build(work: str) -> None:
    """The log, the runs, the update and the files the cases read."""
    import numpy as np
    import polars as pl
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for u in range(80):
        i = int(rng.integers(1, 30))
        for t in range(8):
            rows.append((u, f"{i:03d}", t, "purchase" if t % 2 == 1 else "view", 1.0 + (t % 2)))
            i = i % 29 + 1
    log = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "event_type", "w"], orient="row")
    log.write_csv(f"{work}/log.csv")
    new = [(u, f"{(u % 29) + 1:03d}", 100 + t, "purchase", 1.0) for u in [*range(10), 200, 201] for t in range(3)]
    new += [(5, "NEW1", 110, "purchase", 1.0), (200, "NEW1", 111, "purchase", 1.0)]
    frame = lambda r: pl.DataFrame(r, schema=log.columns, orient="row")  # noqa: E731
    frame(new).write_csv(f"{work}/new.csv")
    pl.concat([log, frame(new)]).write_csv(f"{work}/whole.csv")  # what an updated run was trained on, as one log
    frame([(3, "005", -5, "purchase", 1.0), (4, "006", 200, "purchase", 1.0)]).write_csv(f"{work}/new_old.csv")
    frame(rows[:16]).write_csv(f"{work}/new_dup.csv")
    frame([(1, "002", 300, "refund", 1.0)]).write_csv(f"{work}/new_badtype.csv")
    for name, w in (("zero", 0.0), ("tiny", 1e-50), ("huge", 1e39), ("neg", -1.0), ("nan", float("nan"))):
        frame([(u, f"{(u % 29) + 1:03d}", 100, "purchase", w) for u in range(5)]).write_csv(f"{work}/new_w_{name}.csv")
        log.with_columns(pl.lit(w).alias("w")).write_csv(f"{work}/log_w_{name}.csv")
    log.with_columns(pl.lit("x").alias("w")).write_csv(f"{work}/log_w_text.csv")
    with open(f"{work}/header_only.csv", "w") as f:
        f.write(",".join(log.columns) + "\n")
    with open(f"{work}/wrong_cols.csv", "w") as f:
        f.write("a,b\n1,2\n")
    for run, keys in (("run", ""), ("run_tf", "target_filter=event_type=purchase"), ("run_w", "weight_col=w"),
                      ("run_time", "holdout=time split_time=0.8")):
        if not os.path.isdir(f"{work}/{run}"):
            rc, _, err = sh(f"{NR} train --data log.csv --out {run} --quiet {TINY} {keys}", work, 600)
            assert rc == 0, err
    if not os.path.isdir(f"{work}/upd"):
        rc, _, err = sh(f"{NR} update --run run --data new.csv --out upd --quiet max_steps=5", work, 600)
        assert rc == 0, err
    rc, _, err = sh(f"{NR} recommend --run run --out full.csv --k 29 --exclude-seen", work)
    assert rc == 0, err
    # the filter files
    deny = ["004", "020", "011"]
    files = {
        "deny_plain.csv": "\n".join(deny) + "\n",
        "deny_header.csv": "item_id\n" + "\n".join(deny) + "\n",
        "deny_bom.csv": "\ufeff" + "\n".join(deny) + "\n",
        "deny_crlf.csv": "\r\n".join(deny) + "\r\n",
        "deny_blank.csv": "\n\n" + "\n\n".join(deny) + "\n\n",
        "deny_spaces.csv": "\n".join(f"  {d} " for d in deny) + "\n",
        "deny_quoted.csv": "\n".join(f'"{d}"' for d in deny) + "\n",
        "deny_table.csv": "sku_name,item_id\n" + "\n".join(f"x{d},{d}" for d in deny) + "\n",
        "deny_dup.csv": "004\n004\n",
        "deny_empty.csv": "",
        "deny_unknown.csv": "zz1\nzz2\n",
        "deny_nolead.csv": "4\n20\n",
        "deny_first_unknown.csv": "zz9\n004\n020\n",
        "deny_semicolon.csv": "004;020\n",
        "deny.tsv": "item_id\tnote\n004\ta\n020\tb\n",
        "allow_three.csv": "004\n020\n011\n",
        "allow_unknown.csv": "zz1\n",
        "allow_header_only.csv": "item_id\n",
    }
    for name, text in files.items():
        with open(f"{work}/{name}", "w", encoding="utf-8", newline="") as f:
            f.write(text)
    with open(f"{work}/deny_latin1.csv", "wb") as f:
        f.write("caf\xe9\n004\n".encode("latin-1"))
    with open(f"{work}/deny_binary.csv", "wb") as f:
        f.write(bytes(range(256)))
    import gzip
    with gzip.open(f"{work}/deny.csv.gz", "wt") as f:
        f.write("\n".join(deny) + "\n")
    pl.DataFrame({"item_id": deny}).write_parquet(f"{work}/deny.parquet")
    os.makedirs(f"{work}/a_folder", exist_ok=True)
    with open(f"{work}/catalog_none.csv", "w") as f:
        f.write("item_id,title\nX1,nothing\nX2,nada\n")
    with open(f"{work}/catalog.csv", "w") as f:
        f.write("item_id,title\n" + "".join(f"{i:03d},thing {i}\n" for i in range(1, 30)))
    os.makedirs(f"{work}/not_a_run", exist_ok=True)
    with open(f"{work}/not_a_run/notes.txt", "w") as f:
        f.write("my notes\n")


# -----------------------------------------------------------------------------
# checks of a right answer: (work, stdout, stderr) -> None when right, else what is wrong

def lists(path) -> dict:
    import polars as pl
    df = pl.read_csv(path, schema_overrides={"item_id": pl.Utf8, "user_id": pl.Utf8})
    return {u: g["item_id"].to_list() for (u,), g in df.group_by("user_id", maintain_order=True)}


def brute(work, k=10, allow=None, deny=()):
    full = lists(f"{work}/full.csv")
    keep = lambda x: (allow is None or x in allow) and x not in deny  # noqa: E731
    return {u: [x for x in items if keep(x)][:k] for u, items in full.items()}


def same_as(out, k=10, allow=None, deny=(), said=True):
    def check(work, stdout, stderr):
        got = lists(f"{work}/{out}")
        want = {u: v for u, v in brute(work, k, allow, deny).items() if v}
        if got != want:
            bad = [u for u in want if got.get(u) != want[u]]
            return f"{len(bad)} of {len(want)} lists differ from the brute-force filter (e.g. user {bad[:1]})"
        if said and (allow is not None or deny) and "read" not in stderr:
            return "the filter file's ids were not counted on stderr"
        return None
    return check


def says(text):
    return lambda work, stdout, stderr: None if text in stdout + stderr else f"does not say {text!r}"


def char_device(path):
    import stat
    return lambda work, o, e: None if stat.S_ISCHR(os.stat(path).st_mode) else f"{path} is no longer a device"


def folder_has(path, *names):
    return lambda work, o, e: None if all(os.path.exists(f"{work}/{path}/{n}") for n in names) \
        else f"{path} lacks one of {names}"


def all_of(*checks):
    def check(work, o, e):
        for c in checks:
            why = c(work, o, e)
            if why:
                return why
        return None
    return check


def status(code, *more):
    """A serve case: the printed HTTP status must be `code` (and the body hold each of `more`)."""
    def check(work, o, e):
        first = o.strip().split(" ", 1)
        if not first[0].isdigit() or int(first[0]) != code:
            return f"HTTP {first[0]} where {code} belongs: {o.strip()[:200]}"
        return next((f"body lacks {m!r}" for m in more if m not in o), None)
    return check


def no_item(*items):
    def check(work, o, e):
        body = json.loads(o.strip().split(" ", 1)[1])
        listed = body.get("items") or []
        return f"listed {set(items) & set(listed)}" if set(items) & set(listed) else None
    return check


# -----------------------------------------------------------------------------
# the cases: (id, surface, expect, command, check, protect)
#   expect: "error" (a clean error is right), "ok" (exit 0, then check), "either" (both may be
#   right; exit 0 is checked); protect: paths that must be unchanged afterwards

def cases(work):
    C = []

    def add(cid, surface, expect, cmd, check=None, protect=("run", "log.csv")):
        C.append(dict(id=cid, surface=surface, expect=expect, cmd=cmd, check=check, protect=list(protect)))

    up = f"{NR} update --quiet"
    add("U01", "update", "ok", f"{up} --run run --data new.csv --out u01 max_steps=3", folder_has("u01", "model.safetensors"))
    add("U02", "update", "error", f"{up} --run run --data new.csv --out run max_steps=3")
    add("U03", "update", "error", f"{up} --run run --data nope.csv --out u03 max_steps=3")
    add("U04", "update", "error", f"{up} --run run --data header_only.csv --out u04 max_steps=3")
    add("U05", "update", "error", f"{up} --run run --data new_dup.csv --out u05 max_steps=3")
    add("U06", "update", "error", f"{up} --run run --data new_old.csv --out u06 max_steps=3")
    add("U07", "update", "error", f"{up} --run run --data wrong_cols.csv --out u07 max_steps=3")
    add("U08", "update", "ok", f"{up} --run run --data <(cat new.csv) --out u08 max_steps=3", folder_has("u08", "model.safetensors"))
    add("U09", "update", "error", f"{up} --run run --data new.csv --out u09 max_steps=0")
    add("U10", "update", "error", f"{up} --run run --data new.csv --out u10 max_steps=abc")
    add("U11", "update", "error", f"{up} --run run --data new.csv --out u11 max_steps=-5")
    add("U12", "update", "error", f"{up} --run run --data new.csv --out u12 learning_rate=nan")
    add("U13", "update", "error", f"{up} --run run --data new.csv --out u13 foo=1")
    add("U14", "update", "error", f"{up} --run run --data new.csv --out u14 n_embd=32")
    add("U15", "update", "error", f"{up} --run nowhere --data new.csv --out u15")
    add("U16", "update", "error", f"{up} --run log.csv --data new.csv --out u16")
    add("U17", "update", "error", f"{up} --run run --data new.csv --out not_a_run max_steps=3",
        protect=("run", "not_a_run"))
    add("U18", "update", "error", f"{up} --run run --data new.csv --out upd max_steps=3", protect=("run", "upd"))
    add("U19", "update", "error", f"{up} --run run --data new.csv --out upd --resume max_steps=3",
        protect=("run", "upd"))
    add("U20", "update", "error", f"{up} --run run_tf --data new_badtype.csv --out u20 max_steps=3",
        protect=("run_tf",))
    add("U21", "update", "ok", f"{up} --run run_tf --data new.csv --out u21 max_steps=3", folder_has("u21", "model.safetensors"),
        protect=("run_tf",))
    for name in ("zero", "tiny", "huge", "neg", "nan"):
        add(f"U22{name}", "update", "error", f"{up} --run run_w --data new_w_{name}.csv --out u22{name} max_steps=3",
            protect=("run_w",))
    add("U23", "update", "error", f"{up} --run run_w --data <(cut -d, -f1-4 new.csv) --out u23 max_steps=3",
        protect=("run_w",))
    add("U24", "update", "ok", f"{up} --run run_time --data new.csv --out u24 max_steps=3",
        folder_has("u24", "model.safetensors"), protect=("run_time",))
    add("U25", "update", "error", f"{up} --run run --data a_folder --out u25 max_steps=3")
    add("U26", "update", "error", f"{up} --run run --data new.csv --out u26 max_steps=3 --resume")
    add("U27", "update", "error", f"{up} --run run --data new.csv --out '' max_steps=3")
    add("U28", "update", "error", f"{up} --run run --data new.csv --out log.csv max_steps=3")
    add("U29", "update", "ok", f"{up} --run upd --data <(printf 'user_id,item_id,timestamp,event_type,w\\n7,NEW1,500,"
        f"purchase,1\\n') --out u29 max_steps=2", folder_has("u29", "model.safetensors"), protect=("upd",))
    # faults
    add("UF1", "update fault", "ok",
        f"({up} --run run --data new.csv --out uf1 max_steps=400 & p=$!; sleep 8; kill -9 $p; wait $p; "
        f"test ! -e uf1/model.safetensors || exit 9; {up} --run run --data new.csv --out uf1 --resume max_steps=400 "
        f"|| {up} --run run --data new.csv --out uf1 max_steps=400)", folder_has("uf1", "model.safetensors"))
    add("UF2", "update fault", "ok",
        f"({up} --run run --data new.csv --out uf2 max_steps=300 & p=$!; sleep 6; "
        f"{up} --run run --data new.csv --out uf2 max_steps=3 2>second.err; s=$?; wait $p; a=$?; "
        f"echo second=$s first=$a; grep -q 'in use' second.err && test $s = 2 && test $a = 0)",
        folder_has("uf2", "model.safetensors"))
    add("UF3", "update fault", "error",
        f"ulimit -f 64; {up} --run run --data new.csv --out uf3 max_steps=3")
    add("UF4", "update fault", "error",
        f"mkdir -p ro && chmod 555 ro && {up} --run run --data new.csv --out ro/uf4 max_steps=3; s=$?; "
        f"chmod 755 ro; exit $s" if os.geteuid() != 0 else
        f"mkdir -p small && (mountpoint -q small || mount -t tmpfs -o size=100k tmpfs small) && "
        f"{up} --run run --data new.csv --out small/uf4 max_steps=3")
    # update API
    add("UA1", "update API", "error", api(f"Recommender.load('run').update('new.csv', out='ua1', max_steps='5')"))
    add("UA2", "update API", "error", api(f"Recommender.load('run').update('new.csv', out='ua2', max_steps=0)"))
    add("UA3", "update API", "ok", api("import polars as pl\nr = Recommender.load('run').update("
                                       "pl.read_csv('new.csv', schema_overrides={'item_id': pl.Utf8}), out='ua3', "
                                       "max_steps=3)\nprint(r.recommend(users=[200], k=3))"), says("200"))
    add("UA4", "update API", "error", api("Recommender.load('run').update('new.csv', out='run', max_steps=3)"))
    add("UA5", "update API", "error", api("import polars as pl\nRecommender.load('run').update(pl.read_csv("
                                          "'new.csv').head(0), out='ua5', max_steps=3)"))
    add("UA6", "update API", "error", api("Recommender.load('run').update('new.csv', out='ua6', learning_rate=-1)"))
    add("UA7", "update API", "error", api("Recommender.load('run').update('new.csv', out='ua7', bogus=1)"))
    add("UA8", "update API", "error", api("Recommender.load('run').update('new.csv', out='ua8', max_steps=2.5)"))
    add("UA9", "update API", "error", api("Recommender.load('run').update('new.csv', out='ua9', max_steps=True)"))
    # filter files through the CLI
    rec = f"{NR} recommend --run run --exclude-seen --k 10"
    deny = {"004", "020", "011"}
    for i, name in enumerate(["deny_plain.csv", "deny_header.csv", "deny_bom.csv", "deny_crlf.csv", "deny_blank.csv",
                              "deny_spaces.csv", "deny_quoted.csv", "deny_table.csv", "deny.csv.gz", "deny.parquet"]):
        add(f"F{i:02d}", "filters CLI", "ok", f"{rec} --deny-items {name} --out f{i:02d}.csv",
            same_as(f"f{i:02d}.csv", deny=deny), protect=("run", name))
    add("F10", "filters CLI", "ok", f"{rec} --deny-items <(cat deny_plain.csv) --out f10.csv", same_as("f10.csv", deny=deny))
    add("F11", "filters CLI", "ok", f"{rec} --deny-items deny.tsv --out f11.csv", same_as("f11.csv", deny={"004", "020"}))
    add("F12", "filters CLI", "error", f"{rec} --deny-items deny_dup.csv --out f12.csv")
    add("F13", "filters CLI", "error", f"{rec} --deny-items nope.csv --out f13.csv")
    add("F14", "filters CLI", "error", f"{rec} --deny-items a_folder --out f14.csv")
    add("F15", "filters CLI", "error", f"{rec} --deny-items deny_binary.csv --out f15.csv")
    add("F16", "filters CLI", "error", f"{rec} --deny-items deny_latin1.csv --out f16.csv")
    add("F17", "filters CLI", "ok", f"{rec} --deny-items deny_empty.csv --out f17.csv", same_as("f17.csv"))
    add("F18", "filters CLI", "ok", f"{rec} --deny-items deny_unknown.csv --out f18.csv",
        all_of(same_as("f18.csv"), says("not known")))
    add("F19", "filters CLI", "ok", f"{rec} --deny-items deny_nolead.csv --out f19.csv",
        all_of(same_as("f19.csv"), says("2 not known")))
    add("F20", "filters CLI", "ok", f"{rec} --deny-items deny_first_unknown.csv --out f20.csv",
        same_as("f20.csv", deny={"004", "020"}))
    add("F21", "filters CLI", "error", f"{rec} --deny-items deny_semicolon.csv --out f21.csv")
    add("F22", "filters CLI", "ok", f"{rec} --allow-items allow_three.csv --out f22.csv",
        same_as("f22.csv", allow=deny))
    add("F23", "filters CLI", "error", f"{rec} --allow-items deny_empty.csv --out f23.csv")
    add("F24", "filters CLI", "error", f"{rec} --allow-items allow_unknown.csv --out f24.csv")
    add("F25", "filters CLI", "error", f"{rec} --allow-items allow_header_only.csv --out f25.csv")
    add("F26", "filters CLI", "ok", f"{rec} --allow-items allow_three.csv --deny-items deny_plain.csv --out f26.csv",
        same_as("f26.csv", allow=deny, deny=deny))
    add("F27", "filters CLI", "ok", f"{rec} --deny-items deny_plain.csv --out f27.csv --mode generative",
        lambda w, o, e: None if not (set(sum(lists(f"{w}/f27.csv").values(), [])) & deny) else "a denied item listed")
    # filters through the API
    add("FA1", "filters API", "ok", api("r = Recommender.load('run')\ndf = r.recommend(k=10, exclude_items=['004','020'])\n"
                                        "assert not set(df['item_id'].cast(str).to_list()) & {'004','020'}\nprint('fine')"),
        says("fine"))
    add("FA2", "filters API", "error", api("Recommender.load('run').recommend(k=10, exclude_items=['nope'])"))
    add("FA3", "filters API", "error", api("Recommender.load('run').recommend(k=10, items=[])"))
    add("FA4", "filters API", "ok", api("df = Recommender.load('run').recommend(k=10, exclude_items='deny_plain.csv', "
                                        "exclude_seen=True)\ndf.write_csv('fa4.csv')"), same_as("fa4.csv", deny=deny, said=False))
    add("FA5", "filters API", "error", api("Recommender.load('run').recommend(k=10, items='nope.csv')"))
    add("FA6", "filters API", "error", api("Recommender.load('run').recommend(k=0)"))
    add("FA7", "filters API", "error", api("Recommender.load('run').recommend(k=10**9)"))
    add("FA8", "filters API", "error", api("Recommender.load('run').recommend(k='5')"))
    add("FA9", "filters API", "ok", api("df = Recommender.load('run').recommend(k=10, items='allow_three.csv', "
                                        "exclude_seen=True)\ndf.write_csv('fa9.csv')"), same_as("fa9.csv", allow=deny, said=False))
    # the server
    h = ["001", "002", "003"]
    add("S01", "serve", "ok", post({"history": h, "k": 5}), status(200, '"model"'))
    add("S02", "serve", "ok", post({"history": [1, 2, 3], "k": 5}), lambda w, o, e: None if o[:3] in ("200", "422")
        else o[:80])
    add("S03", "serve", "ok", post({"history": h, "k": 10**9}), status(422))
    add("S04", "serve", "ok", post({"history": h, "k": 0}), status(422))
    add("S05", "serve", "ok", post({"history": h, "k": "5"}), status(422))
    add("S06", "serve", "ok", post({"history": h, "k": 5.0}), status(422))
    add("S07", "serve", "ok", post({"history": h, "k": True}), status(422))
    add("S08", "serve", "ok", post({"history": "001", "k": 5}), status(422))
    add("S09", "serve", "ok", post({"history": [["001"]], "k": 5}), status(422))
    add("S10", "serve", "ok", post({"history": None, "k": 5}), status(422))
    add("S11", "serve", "ok", post({"history": ["ü€😀", "001", "\u0000"], "k": 5}), status(200, '"unknown_items": 2'))
    add("S12", "serve", "ok", post({"history": h, "k": 5, "event_types": ["view"] * 3}), status(422))
    add("S13", "serve", "ok", post({"history": h, "k": 5, "event_types": ["view"]}, run="run_tf"), status(422))
    add("S14", "serve", "ok", post({"history": h, "k": 5, "event_types": ["view", "refund", "view"]}, run="run_tf"),
        status(422))
    add("S15", "serve", "ok", post({"history": h, "k": 5, "event_types": [1, 2, 3]}, run="run_tf"), status(422))
    add("S16", "serve", "ok", post({"history": h, "k": 5, "event_types": ["view", "purchase", "view"]}, run="run_tf"),
        status(200))
    add("S17", "serve", "ok", post({"history": h, "k": 5, "exclude_items": ["nope"]}), status(422))
    add("S18", "serve", "ok", post({"history": h, "k": 5, "items": []}), status(422))
    add("S19", "serve", "ok", post(None, raw="[1,2,3]"), lambda w, o, e: None if o[:3] in ("400", "422") else o[:80])
    add("S20", "serve", "ok", post(None, raw='{"history": ["001"], "k": ' + "1" * 2_000_000 + "}"), status(413))
    add("S21", "serve", "ok", post(None, raw='{"history": ["001"], "k": NaN}'), status(400))
    add("S22", "serve", "ok", post(None, raw='{"history": ["001"]}', headers={"content-type": "text/plain"}), status(415))
    add("S23", "serve", "ok", get("/users/nobody/recommendations?k=5"), status(200, "popularity"))
    add("S24", "serve", "ok", get("/users/1/recommendations?k=-1"), status(422))
    add("S25", "serve", "ok", get("/users/1/recommendations?k=5&exclude_seen=maybe"), status(422))
    add("S26", "serve", "ok", get("/users/1/recommendations?k=5&items=nope"), status(422))
    add("S27", "serve", "ok", post({"history": h, "k": 5, "exclude_seen": "yes"}), status(422))
    add("S28", "serve", "ok", post({"history": ["001"] * 20000, "k": 5}), status(422))
    add("S29", "serve", "ok", post({"history": h, "k": 5, "extra": 1}), status(422))
    add("S30", "serve", "ok", post({"history": h, "k": 28}, deny="deny_plain.csv"),
        all_of(status(200), no_item("004", "020", "011")))
    add("S31", "serve", "ok", post({"history": h, "k": 28}, deny="deny_table.csv"), all_of(status(200),
                                                                                        no_item("004", "020", "011")))
    add("S32", "serve", "ok", get("/health", deny="deny_bom.csv"), status(200, '"denied": 3'))
    add("S33", "serve", "error", get("/health", deny="deny_latin1.csv"))
    add("S34", "serve", "ok", post({"history": [], "k": 5}), lambda w, o, e: None if o[:3] in ("200", "422") else o[:80])
    add("S35", "serve", "ok", post({"history": h, "k": 5, "items": ["004"] * 2}), lambda w, o, e: None
        if o[:3] in ("200", "422") and '"items": ["004", "004"]' not in o else o[:80])
    add("S36", "serve", "ok", post({"history": h, "k": 5, "event_types": ["view", None, "view"]}, run="run_tf"),
        status(422))
    # training: holdout=time, target_filter, weight_col
    tr = f"{NR} train --data log.csv --quiet {TINY}"
    add("T01", "holdout=time", "error", f"{tr} --out t01 holdout=time")
    add("T02", "holdout=time", "error", f"{tr} --out t02 holdout=time split_time=2.0")
    add("T03", "holdout=time", "error", f"{tr} --out t03 holdout=time split_time=2099-01-01")
    add("T04", "holdout=time", "error", f"{tr} --out t04 holdout=time split_time=0")
    add("T05", "holdout=time", "error", f"{tr} --out t05 holdout=time split_time=banana")
    add("T06", "target_filter", "error", f"{tr} --out t06 target_filter=event_type=refund")
    add("T07", "target_filter", "error", f"{tr} --out t07 target_filter=kind=purchase")
    add("T08", "target_filter", "error", f"{tr} --out t08 target_filter=event_type")
    add("T09", "target_filter", "error", f"{tr} --out t09 target_filter=event_type=purchase filter=event_type=view")
    for name in ("zero", "tiny", "huge", "neg", "nan", "text"):
        add(f"T10{name}", "weight_col", "error",
            f"{NR} train --data log_w_{name}.csv --quiet {TINY} --out t10{name} weight_col=w")
    add("T11", "weight_col", "error", f"{tr} --out t11 weight_col=nope")
    add("T12", "weight_col", "error", f"{tr} --out t12 weight_col=item_id")
    # inspect
    ins = f"{NR} inspect --run run"
    add("I01", "inspect", "ok", f"{ins} --out i01.html", folder_has(".", "i01.html"))
    add("I02", "inspect", "error", f"{ins} --out i02.html --items catalog_none.csv")
    add("I03", "inspect", "error", f"cp -r run i03run && echo '{{bad' > i03run/metrics.json && "
                                   f"{NR} inspect --run i03run --out i03.html")
    add("I04", "inspect", "error", f"cp -r run i04run && echo '[1,2]' > i04run/metrics.json && "
                                   f"{NR} inspect --run i04run --out i04.html")
    add("I05", "inspect", "error", f"{ins} --out i05.html --users nobody")
    add("I06", "inspect", "error", f"{ins} --out i06.html --k 0")
    add("I07", "inspect", "ok", f"{ins} --out /dev/null", char_device("/dev/null"))
    add("I08", "inspect", "ok", f"{ins} --out i08.html --data <(cat log.csv)", folder_has(".", "i08.html"))
    add("I09", "inspect", "error", f"{ins} --out i09.html --sample -1")
    add("I10", "inspect", "ok", f"{NR} inspect --run run_tf --out i10.html --data log.csv --items catalog.csv",
        folder_has(".", "i10.html"), protect=("run_tf",))
    add("I11", "inspect", "error", f"{ins} --out a_folder")
    add("I12", "inspect", "ok", f"{NR} inspect --run upd --out i12.html", folder_has(".", "i12.html"),
        protect=("upd",))
    add("I13", "inspect", "error", f"{ins} --out i13.html --data wrong_cols.csv")
    # recommend outputs
    add("R01", "recommend", "ok", f"{NR} recommend --run run --k 29 --include-seen --batch-size 8 --out /dev/stdout "
        f"| head -1", lambda w, o, e: None if o.startswith("user_id") and "error" not in e else f"stderr: {e[-120:]}")
    add("R02", "recommend", "ok", f"{NR} recommend --run run --k 5 --out /dev/null", char_device("/dev/null"))
    add("R03", "recommend", "ok", f"{NR} recommend --run run --k 5 --out - > r03.csv",
        lambda w, o, e: None if not os.path.exists(f"{w}/-") and open(f"{w}/r03.csv").read().startswith("user_id")
        else "--out - wrote a file named '-' (not stdout)")
    add("R04", "recommend", "ok", f"{NR} recommend --run run --k 5 --data <(cat log.csv) --out r04.csv",
        folder_has(".", "r04.csv"))
    add("R05", "recommend", "error", f"{NR} recommend --run run --k 5 --out a_folder")
    add("R06", "recommend", "error", f"{NR} recommend --run run --k 5 --out nowhere/r06.csv")
    add("R07", "recommend", "error", f"{NR} recommend --run run --k 0 --out full.csv", protect=("run", "full.csv"))
    add("R08", "recommend", "ok", f"{NR} recommend --run run --k 29 --out r08.csv --exclude-seen",
        lambda w, o, e: None if "fewer than 29" in e and "-3.4e" not in open(f"{w}/r08.csv").read() else "padded")
    add("R09", "recommend", "error", f"{NR} recommend --run run --k 5 --out r09.csv --users <(echo nobody)")
    add("R10", "recommend", "ok", f"{NR} recommend --run run_tf --k 5 --out r10.csv --data log.csv",
        folder_has(".", "r10.csv"), protect=("run_tf",))
    # tune
    tu = f"{NR} tune --data log.csv --trials 1 {TINY.replace('max_steps=30', 'max_steps=2').replace('eval_interval=30', 'eval_interval=2')}"
    add("N01", "tune", "error", f"{tu} --out n01 --space 'dropout=0.7..0.1'")
    add("N02", "tune", "error", f"{tu} --out n02 --space 'dropout=a..b'")
    add("N03", "tune", "error", f"{tu} --out n03 --space 'nokey=1..2'")
    add("N04", "tune", "error", f"{tu} --out n04 --space 'learning_rate=0..1:log'")
    add("N05", "tune", "error", f"{tu} --out n05 --space 'n_layer=1|'")
    add("N06", "tune", "error", f"{tu} --out n06 --space ''")
    add("N07", "tune", "error", f"{tu} --out run --space 'dropout=0.1..0.5'")
    add("N08", "tune", "either", f"{tu} --out not_a_run --space 'dropout=0.1..0.5'", folder_has("not_a_run", "notes.txt",
        "study.json"), protect=("run", "not_a_run"))  # a study beside the user's own files: documented, kept
    add("N09", "tune", "error", f"{tu} --out n09 --space 'dropout=0.1..0.5' --trials 0")
    add("N10", "tune", "error", f"{tu} --out n10 --space 'dropout=0.1..0.5,dropout=0.2..0.3'")
    # evaluate of updated runs
    add("E01", "evaluate", "ok", f"{NR} evaluate --run upd --data whole.csv", says("NDCG@10"), protect=("upd",))
    add("E02", "evaluate", "ok", f"{NR} evaluate --run u01 --data whole.csv --split valid", says("NDCG@10"),
        protect=("u01",))
    add("E09", "evaluate", "error", f"{NR} evaluate --run upd --data log.csv", protect=("upd",))
    add("E03", "evaluate", "error", f"{NR} evaluate --run upd --data wrong_cols.csv", protect=("upd",))
    add("E04", "evaluate", "error", f"{NR} evaluate --run not_a_run --data log.csv", protect=("not_a_run",))
    add("E05", "evaluate", "ok", f"{NR} evaluate --run u21 --data whole.csv", says("NDCG@10"), protect=("u21",))
    add("E06", "evaluate", "ok", f"{NR} evaluate --run u24 --data whole.csv", says("NDCG@10"), protect=("u24",))
    add("E07", "evaluate", "error", f"{NR} evaluate --run upd --data new_badtype.csv", protect=("upd",))
    add("E08", "evaluate", "ok", f"mkdir -p e08 && cd e08 && {NR} evaluate --run ../upd --data ../whole.csv --json - "
                                 f"> e08.json", lambda w, o, e: None if not os.path.exists(f"{w}/e08/-") and
        "NDCG@10" in json.load(open(f"{w}/e08/e08.json")) else "--json - wrote a file named '-'", protect=("upd",))
    add("T13", "weight_col", "error", f"{tr} --out t13 weight_col=timestamp")
    add("F28", "filters CLI", "error", f"{rec} --allow-items allow_unknown.csv --out f28.csv",
        lambda w, o, e: None)  # its message must say the one line read as a header (checked by hand: stderr_last)
    return C


# -----------------------------------------------------------------------------
# running and classifying

def digest(path: str):
    if not os.path.lexists(path):
        return None
    if os.path.isfile(path) or os.path.islink(path):
        return hashlib.sha256(open(path, "rb").read()).hexdigest() if os.path.isfile(path) else os.readlink(path)
    out = {}
    for d, _, names in os.walk(path):
        for n in names:
            p = os.path.join(d, n)
            if not n.startswith(".") and os.path.isfile(p):
                out[os.path.relpath(p, path)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def lost(before: dict, after: dict) -> list:
    """The protected paths of which a file changed or went (files added beside them are no loss)."""
    def gone(b, a):
        if isinstance(b, dict) and isinstance(a, dict):
            return any(a.get(name) != h for name, h in b.items())
        return b != a
    return [p for p in before if gone(before[p], after[p])]


def classify(case, work) -> dict:
    before = {p: digest(os.path.join(work, p)) for p in case["protect"]}
    t = time.time()
    rc, out, err = sh(case["cmd"], work) if isinstance(case["cmd"], str) else serve_case(case["cmd"], work)
    seconds = round(time.time() - t, 1)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    last = lines[-1][:300] if lines else ""
    after = {p: digest(os.path.join(work, p)) for p in case["protect"]}
    why = None
    if rc is None:
        cls = "hang"
    elif lost(before, after):
        cls, why = "data lost", f"changed or removed: {lost(before, after)}"
    elif "Traceback" in err or "internal error" in err or rc not in (0, 2):
        cls = "raw error"
    elif rc == 2:
        errors = [ln for ln in lines if "error" in ln.lower()]
        if len(errors) != 1 and "usage:" not in err:
            cls, why = "raw error", f"{len(errors)} error lines"
        else:
            cls = "valid refused" if case["expect"] == "ok" else "clean error"
    else:
        try:
            why = "bad input accepted" if case["expect"] == "error" else (case["check"] and case["check"](work, out, err))
        except Exception as e:  # noqa: BLE001 - an output the check cannot read is a wrong output
            why = f"output unreadable ({type(e).__name__}: {e})"
        cls = "silent wrong" if why else "right answer"
    return dict(id=case["id"], surface=case["surface"], expect=case["expect"], command=(case["cmd"] if isinstance(case["cmd"], str) else case["cmd"].text)[:400],
                status=rc, seconds=seconds, cls=cls, why=why, stderr_last=last)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/nanorec_audit")
    p.add_argument("--only", default="", help="run the cases whose id starts with one of these (comma-separated)")
    p.add_argument("--merge", action="store_true", help="replace these cases in --json's --label matrix, keep the rest")
    p.add_argument("--json", default="")
    p.add_argument("--label", default="after", help="the key of these counts in --json (before / after)")
    args = p.parse_args()
    work = os.path.abspath(args.work)
    build(work)
    results = []
    for case in cases(work):
        if not case["id"].startswith(tuple(args.only.split(","))):
            continue
        r = classify(case, work)
        results.append(r)
        print(f"{r['id']:8} {r['cls']:13} {r['seconds']:6}s  {r['why'] or ''} | {r['stderr_last'][:150]}", flush=True)
    doc = json.load(open(args.json)) if args.json and os.path.exists(args.json) else {}
    rerun = []
    if args.merge and args.label in doc:  # these cases again (after a fix), the others as they were
        new = {r["id"]: r for r in results}
        rerun = sorted(set(new) | set(doc[args.label].get("rerun", [])))
        results = [new.pop(r["id"], r) for r in doc[args.label]["matrix"]] + list(new.values())
    counts = {c: sum(r["cls"] == c for r in results) for c in CLASSES}
    print(json.dumps(counts))
    if args.json:
        doc.update({"command": "PYTHONPATH=$PWD python benchmarks/audit_surfaces.py --label " + args.label,
                    "machine": "2-core CPU, under load (shared with 5 other jobs)",
                    "python": platform.python_version()})
        doc[args.label] = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                                    capture_output=True, text=True).stdout.strip(),
                           "cases": len(results), "counts": counts, "matrix": results}
        if rerun:
            doc[args.label]["rerun"] = rerun
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
