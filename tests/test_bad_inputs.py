"""Bad inputs, every command: exit status 2, ONE line on stderr naming the file
(or key, or option) and the problem, no traceback, nothing on disk changed.

Every case is a builder in CASES: it writes its small bad input under its own
folder and returns a `Case`: the argv of `nanorec ...` (run in-process through
`nanorec.cli.main`) or a Python call (`call`, which must raise a NanorecError),
the substrings the error line must contain, the paths that must stay
byte-identical (`keep`) and the paths that must not appear (`absent`).

The harness also checks, for every case, that the shared good data and runs are
byte-identical afterwards and that no `.tmp` file is left anywhere. A case that
damages a run works on its own copy (shutil.copytree), so cases stay independent.
Argparse-detected errors print a usage block before the error line; those cases
(`argparse=True`) are a minority and check the last line.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
import torch

from nanorec.cli import COMMANDS
from nanorec.cli import main as cli_main
from nanorec.errors import DataError, NanorecError, UsageError
from nanorec.data.synthetic import write_challenge, write_csv

# a config small enough that a good run trains in a second
TINY = ["max_steps=2", "eval_interval=1", "n_embd=16", "n_layer=1", "n_head=1", "progress=false",
        "warmup_steps=1", "batch_size=8", "block_size=8", "threads=1"]
HAS_CUDA = torch.cuda.is_available()


@dataclass
class Case:
    argv: list | None = None                 # `nanorec ARGV...`, in-process
    call: Callable | None = None             # or a Python entry point that must raise `error`
    mentions: tuple = ()                     # substrings of the error line
    keep: tuple = ()                         # paths (files or folders) that must be byte-identical
    absent: tuple = ()                       # paths that must not exist afterwards
    argparse: bool = False                   # argparse's usage block + error line
    error: type = NanorecError               # for `call`


@dataclass
class Env:
    root: str
    log: str        # good interactions CSV (user_id,item_id,timestamp)
    other: str      # another log with the same columns (different data)
    chal: str       # good challenge folder
    run: str        # a finished tiny run trained on `log`
    chalrun: str    # a finished tiny run trained on `chal`
    shared: tuple = field(default=())


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bad"))
    log = write_csv(os.path.join(root, "good", "log.csv"), num_users=60, num_items=15, seed=1)
    other = write_csv(os.path.join(root, "good", "other.csv"), num_users=60, num_items=15, seed=2)
    chal = write_challenge(os.path.join(root, "good", "chal"), num_users=40, num_items=12, seed=3)
    run, chalrun = os.path.join(root, "goodrun"), os.path.join(root, "goodchalrun")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["train", "--data", log, "--out", run, "--quiet", *TINY]) == 0
        assert cli_main(["train", "--data", chal, "--out", chalrun, "--quiet", *TINY]) == 0
    return Env(root, log, other, chal, run, chalrun, shared=(os.path.join(root, "good"), run, chalrun))


# -----------------------------------------------------------------------------
# helpers

def write(path, content, mode=None):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    mode = mode or ("wb" if isinstance(content, bytes) else "w")
    with open(path, mode) as f:
        f.write(content)
    return str(path)


def copy_run(src, d, name="run"):
    dst = os.path.join(d, name)
    shutil.copytree(src, dst)
    return dst


def damage(path, how):
    """Truncate to half, empty, or overwrite with garbage."""
    data = open(path, "rb").read()
    new = {"truncated": data[:len(data) // 2], "empty": b"", "garbage": os.urandom(64) + b"\x00garbage"}[how]
    write(path, new)


def train_argv(e, d, *extra, data=None, out=None):
    out = os.path.join(d, "run") if out is None else out
    return ["train", "--data", data or e.log, "--out", out, "--quiet", *TINY, *extra]


def snapshot(path):
    """{relative name: sha256} of every file and folder under path (a file: {'': sha}); None if absent."""
    if not os.path.lexists(path):
        return None
    if not os.path.isdir(path):
        return {"": hashlib.sha256(open(path, "rb").read()).hexdigest()}
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        rel = os.path.relpath(dirpath, path)
        out[rel + "/"] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.join(rel, f)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def tmp_files(*paths):
    found = []
    for path in paths:
        for dirpath, _, filenames in os.walk(path):
            found += [os.path.join(dirpath, f) for f in filenames if f.endswith(".tmp")]
    return found


CASES: dict[str, Callable[[Env, str], Case]] = {}


def case(f):
    CASES[f.__name__] = f
    return f


# -----------------------------------------------------------------------------
# train: config keys (every one into a fresh --out; the folder must not appear)

CONFIG_BAD = [
    # (override(s), substrings)
    (["block_size=0"], ["block_size=0", "1..100000"]),
    (["block_size=100001"], ["block_size=100001", "1..100000"]),
    (["batch_size=0"], ["batch_size=0", "1..1000000"]),
    (["batch_size=-1"], ["batch_size=-1", "1..1000000"]),
    (["batch_size=1e3"], ["batch_size='1e3'", "expected int"]),
    (["eval_interval=0"], ["eval_interval=0", ">= 1"]),
    (["checkpoint_interval=0"], ["checkpoint_interval=0", ">= 1"]),
    (["eval_batch_size=0"], ["eval_batch_size=0", "1..1000000"]),
    (["max_steps=0"], ["max_steps=0", ">= 1"]),
    (["max_steps=1.5"], ["max_steps='1.5'", "expected int"]),
    (["max_steps="], ["max_steps=''", "expected int"]),
    (["patience=-1"], ["patience=-1", ">= 0"]),
    (["learning_rate=-1"], ["learning_rate=-1.0", "(0, 10]"]),
    (["learning_rate=0"], ["learning_rate=0.0", "(0, 10]"]),
    (["learning_rate=inf"], ["learning_rate='inf'", "finite"]),
    (["learning_rate=abc"], ["learning_rate='abc'", "expected float"]),
    (["min_lr=-1"], ["min_lr=-1.0", ">= 0"]),
    (["learning_rate=0.01", "min_lr=0.1"], ["min_lr=0.1", "learning_rate=0.01"]),
    (["warmup_steps=-1"], ["warmup_steps=-1", ">= 0"]),
    (["decay_steps=-5"], ["decay_steps=-5", ">= 0"]),
    (["weight_decay=-0.1"], ["weight_decay=-0.1", ">= 0"]),
    (["beta1=1"], ["beta1=1.0", "[0, 1)"]),
    (["beta2=-0.5"], ["beta2=-0.5", "[0, 1)"]),
    (["grad_clip=-1"], ["grad_clip=-1.0", ">= 0"]),
    (["n_embd=30", "n_head=4"], ["n_embd=30", "n_head=4", "divisible"]),
    (["n_embd=0"], ["n_embd=0", "1..8192"]),
    (["n_head=0"], ["n_head=0", "1..64"]),
    (["n_layer=-2"], ["n_layer=-2", "1..64"]),
    (["n_layer=65"], ["n_layer=65", "1..64"]),
    (["dropout=2"], ["dropout=2.0", "[0, 1)"]),
    (["dropout=1"], ["dropout=1.0", "[0, 1)"]),
    (["dropout=-0.1"], ["dropout=-0.1", "[0, 1)"]),
    (["dropout=nan"], ["dropout='nan'", "finite"]),
    (["attention=linear"], ["attention='linear'", "sdpa or flex"]),
    (["device=tpu"], ["device='tpu'", "cuda"]),
    (["device=cuda:99"], ["device='cuda:99'"]),
    (["dtype=float16"], ["dtype='float16'", "bfloat16"]),
    (["threads=-1"], ["threads=-1", "0..1024"]),
    (["threads=100000"], ["threads=100000", "0..1024"]),
    (["seed=-1"], ["seed=-1", "2^63"]),
    (["seed=9223372036854775808"], ["seed=9223372036854775808", "2^63"]),
    (["bias=maybe"], ["bias='maybe'", "true or false"]),
    (["packing=2"], ["packing='2'", "true or false"]),
    (["compile="], ["compile=''", "true or false"]),
    (["n_layers=3"], ["'n_layers'", "unknown config key", "n_layer"]),
    (["dropout"], ["'dropout'", "key=value", "dropout=..."]),
    (["--", "=3"], ["unknown config key ''"]),
    (["method=lightgcn"], ["method='lightgcn'", "transitions"]),
    (["holdout=random"], ["holdout='random'", "loo, last, none or time"]),
    (["fuse_transitions=sometimes"], ["fuse_transitions='sometimes'", "auto, true or false"]),
    (["track=wandb"], ["track='wandb'", "tensorboard"]),
    (["fusion_weights=0.2"], ["fusion_weights='0.2'", "w1,w2"]),
    (["fusion_weights=0.2,0.3,0.1,0"], ["fusion_weights='0.2,0.3,0.1,0'", "w1,w2"]),
    (["fusion_weights=0.2,0.3,1"], ["fusion_weights=0.2,0.3,1", "content="]),
    (["fusion_weights=-1,0"], ["fusion_weights='-1,0'", "finite numbers >= 0"]),
    (["fusion_weights=0,1e999"], ["fusion_weights='0,1e999'", "finite numbers >= 0"]),
    (["fusion_weights=nan,0"], ["fusion_weights='nan,0'", "finite numbers >= 0"]),
    (["fusion_weights=a,b"], ["fusion_weights='a,b'", "w1,w2"]),
    (["fusion_weights="], ["fusion_weights=''", "auto"]),
    (["future_decay=1"], ["future_decay=1.0", "[0, 1)"]),
    (["future_decay=-0.2"], ["future_decay=-0.2", "[0, 1)"]),
    (["future_decay=inf"], ["future_decay='inf'", "finite"]),
    (["future_decay=some"], ["future_decay='some'", "float"]),
]


def _config_case(overrides, mentions):
    def build(e, d):
        out = os.path.join(d, "run")
        return Case(train_argv(e, d, *overrides), mentions=tuple(mentions), absent=(out,))
    return build


for _i, (_ov, _m) in enumerate(CONFIG_BAD):
    CASES[f"train_config_{_i:02d}_{'_'.join(_ov).replace('=', '_')[:40]}"] = _config_case(_ov, _m)


@case
def train_device_cuda_without_cuda(e, d):
    if HAS_CUDA:
        pytest.skip("this machine has CUDA")
    return Case(train_argv(e, d, "device=cuda"), mentions=("device='cuda'", "not available"),
                absent=(os.path.join(d, "run"),))


@case
def train_attention_flex_on_cpu(e, d):
    return Case(train_argv(e, d, "attention=flex", "device=cpu"), mentions=("attention=flex", "CUDA"),
                absent=(os.path.join(d, "run"),))


@case
def train_max_steps_as_option(e, d):
    """`--max_steps 10` is not how keys are set: hint the key=value form."""
    return Case(["train", "--data", e.log, "--out", os.path.join(d, "run"), "--max_steps", "10"],
                mentions=("--max_steps", "max_steps=10"), absent=(os.path.join(d, "run"),))


@case
def train_dashed_key_with_equals(e, d):
    return Case(["train", "--data", e.log, "--out", os.path.join(d, "run"), "--n-layer=3"],
                mentions=("--n-layer", "n_layer=3"), absent=(os.path.join(d, "run"),))


@case
def train_user_col_missing(e, d):
    return Case(train_argv(e, d, "user_col=customer"), mentions=(e.log, "missing column 'customer'"),
                absent=(os.path.join(d, "run"),))


@case
def train_time_col_missing(e, d):
    return Case(train_argv(e, d, "time_col=when"), mentions=(e.log, "'when'", "time_col=none"),
                absent=(os.path.join(d, "run"),))


@case
def train_no_data(e, d):
    out = os.path.join(d, "run")
    return Case(["train", "--out", out, *TINY], mentions=("--data", "required"), absent=(out,))


@case
def train_data_empty_string(e, d):
    out = os.path.join(d, "run")
    return Case(["train", "--data", "", "--out", out, *TINY], mentions=("--data",), absent=(out,))


@case
def train_no_out(e, d):
    return Case(["train", "--data", e.log, *TINY], mentions=("--out",), argparse=True)


@case
def train_resume_and_overwrite(e, d):
    run = copy_run(e.run, d)
    return Case(train_argv(e, d, "--resume", "--overwrite", out=run), mentions=("--overwrite", "--resume"),
                keep=(run,), argparse=True)


# -----------------------------------------------------------------------------
# train: an existing good run must survive every refusal byte for byte

@case
def train_dropout2_onto_good_run(e, d):
    run = copy_run(e.run, d)
    return Case(train_argv(e, d, "dropout=2", out=run), mentions=("dropout=2.0", "[0, 1)"), keep=(run,))


@case
def train_dropout2_onto_good_run_overwrite(e, d):
    run = copy_run(e.run, d)
    return Case(train_argv(e, d, "dropout=2", "--overwrite", out=run), mentions=("dropout=2.0",), keep=(run,))


@case
def train_missing_content_onto_good_run(e, d):
    run = copy_run(e.run, d)
    content = os.path.join(d, "nope.safetensors")
    return Case(train_argv(e, d, f"content={content}", out=run), mentions=(run,), keep=(run,))


@case
def train_missing_content_onto_good_run_overwrite(e, d):
    run = copy_run(e.run, d)
    content = os.path.join(d, "nope.safetensors")
    return Case(train_argv(e, d, f"content={content}", "--overwrite", out=run),
                mentions=(content, "no such file"), keep=(run,))


@case
def train_garbage_content_overwrite(e, d):
    run = copy_run(e.run, d)
    content = write(os.path.join(d, "junk.safetensors"), b"not a safetensors file at all")
    return Case(train_argv(e, d, f"content={content}", "--overwrite", out=run),
                mentions=(content, "safetensors"), keep=(run, content))


@case
def train_content_folder_overwrite(e, d):
    run = copy_run(e.run, d)
    content = os.path.join(d, "tables.safetensors")
    os.makedirs(content)
    return Case(train_argv(e, d, f"content={content}", "--overwrite", out=run), mentions=(content,), keep=(run,))


@case
def train_bad_data_onto_good_run_overwrite(e, d):
    run = copy_run(e.run, d)
    data = write(os.path.join(d, "bad.csv"), "user_id,item_id,timestamp\n1,5,10\n1,x,11\n")
    return Case(train_argv(e, d, "--overwrite", data=data, out=run), mentions=(data,), keep=(run,))


@case
def train_into_nonempty_out(e, d):
    run = copy_run(e.run, d)
    return Case(train_argv(e, d, out=run), mentions=(run, "not empty", "--overwrite"), keep=(run,))


@case
def train_into_folder_with_other_files(e, d):
    out = os.path.join(d, "mine")
    write(os.path.join(out, "notes.txt"), "my notes\n")
    return Case(train_argv(e, d, out=out), mentions=(out, "not empty"), keep=(out,))


@case
def train_resume_other_data(e, d):
    run = copy_run(e.run, d)
    return Case(["train", "--out", run, "--resume", "--data", e.other, "--quiet"],
                mentions=(e.other, "not the data"), keep=(run,))


@case
def train_resume_other_data_key(e, d):
    run = copy_run(e.run, d)
    return Case(["train", "--out", run, "--resume", f"data={e.other}", "--quiet"],
                mentions=(e.other, "not the data"), keep=(run,))


@case
def train_resume_n_embd(e, d):
    run = copy_run(e.run, d)
    return Case(["train", "--out", run, "--resume", "n_embd=64", "--quiet"],
                mentions=("n_embd=64", "cannot change on --resume", "n_embd=16"), keep=(run,))


@case
def train_resume_dropout(e, d):
    run = copy_run(e.run, d)
    return Case(["train", "--out", run, "--resume", "dropout=0.1", "--quiet"],
                mentions=("dropout=0.1", "cannot change on --resume"), keep=(run,))


@case
def train_resume_bad_value(e, d):
    run = copy_run(e.run, d)
    return Case(["train", "--out", run, "--resume", "max_steps=0", "--quiet"], mentions=("max_steps=0",), keep=(run,))


@case
def train_resume_empty_folder(e, d):
    out = os.path.join(d, "run")
    os.makedirs(out)
    return Case(["train", "--out", out, "--resume"], mentions=(out, "nothing to resume"), keep=(out,))


@case
def train_resume_missing_folder(e, d):
    out = os.path.join(d, "run")
    return Case(["train", "--out", out, "--resume"], mentions=(out, "nothing to resume"), absent=(out,))


@case
def train_resume_no_ckpt(e, d):
    run = copy_run(e.run, d)
    os.remove(os.path.join(run, "ckpt.pt"))
    return Case(["train", "--out", run, "--resume", "--quiet"], mentions=(run, "ckpt.pt"), keep=(run,))


def _resume_damaged(name, how, mentions):
    def build(e, d):
        run = copy_run(e.run, d)
        path = os.path.join(run, name)
        damage(path, how)
        return Case(["train", "--out", run, "--resume", "--quiet"], mentions=(path, *mentions), keep=(run,))
    return build


for _name in ("ckpt.pt", "model.safetensors", "config.json", "items.json", "data.json"):
    for _how in ("truncated", "empty", "garbage"):
        CASES[f"train_resume_{_how}_{_name.replace('.', '_')}"] = _resume_damaged(_name, _how, ())


@case
def train_resume_config_unknown_key(e, d):
    run = copy_run(e.run, d)
    path = os.path.join(run, "config.json")
    cfg = json.load(open(path))
    cfg["n_layers"] = 3
    write(path, json.dumps(cfg))
    return Case(["train", "--out", run, "--resume", "--quiet"], mentions=(path, "unknown config key 'n_layers'"),
                keep=(run,))


@case
def train_resume_config_bad_value(e, d):
    run = copy_run(e.run, d)
    path = os.path.join(run, "config.json")
    cfg = json.load(open(path))
    cfg["dropout"] = 7
    write(path, json.dumps(cfg))
    return Case(["train", "--out", run, "--resume", "--quiet"], mentions=(path, "dropout"), keep=(run,))


@case
def train_resume_items_wrong_vocabulary(e, d):
    run = copy_run(e.run, d)
    path = os.path.join(run, "items.json")
    write(path, json.dumps([None] + [1000 + i for i in range(15)]))
    return Case(["train", "--out", run, "--resume", "--quiet"], mentions=("items.json",), keep=(run,))


@case
def train_overwrite_model_folder(e, d):
    """--overwrite deletes run file names (config.json, model.safetensors...): never another tool's."""
    out = os.path.join(d, "siglip")
    write(os.path.join(out, "config.json"), '{"model_type": "siglip", "hidden_size": 768}')
    write(os.path.join(out, "model.safetensors"), b"weights of another model")
    return Case(train_argv(e, d, "--overwrite", out=out), mentions=(out, "not", "nanorec run", "config.json"),
                keep=(out,))


@case
def train_overwrite_damaged_run(e, d):
    run = copy_run(e.run, d)
    damage(os.path.join(run, "config.json"), "garbage")
    return Case(train_argv(e, d, "--overwrite", out=run), mentions=(run, "nanorec run", "config.json"), keep=(run,))


@case
def train_content_covers_no_item(e, d):
    from nanorec.content.tables import save_table
    run = copy_run(e.run, d)
    table = os.path.join(d, "t.safetensors")
    save_table(table, np.arange(1000, 1010), np.ones((10, 4), np.float32))
    return Case(train_argv(e, d, f"content={table}", "--overwrite", out=run),
                mentions=(table, "none of its 10 item ids"), keep=(run, table))


@case
def train_user_col_is_item_col(e, d):
    return Case(train_argv(e, d, "user_col=item_id"), mentions=("user_col='item_id'", "item_col='item_id'",
                                                                "different column"),
                absent=(os.path.join(d, "run"),))


@case
def train_time_col_is_user_col(e, d):
    return Case(train_argv(e, d, "time_col=user_id"), mentions=("time_col='user_id'", "different column"),
                absent=(os.path.join(d, "run"),))


# -----------------------------------------------------------------------------
# train: --out

@case
def train_out_is_a_file(e, d):
    out = write(os.path.join(d, "run"), "a file\n")
    return Case(train_argv(e, d, out=out), mentions=(out, "not a folder"), keep=(out,))


@case
def train_out_parent_is_a_file(e, d):
    parent = write(os.path.join(d, "afile"), "a file\n")
    out = os.path.join(parent, "run")
    return Case(train_argv(e, d, out=out), mentions=(out, "is a file"), keep=(parent,))


@case
def train_out_read_only(e, d):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders (the parent-is-a-file case covers an unwritable --out)")
    parent = os.path.join(d, "ro")
    os.makedirs(parent)
    os.chmod(parent, 0o555)
    out = os.path.join(parent, "run")
    return Case(train_argv(e, d, out=out), mentions=(out,), absent=(out,))


@case
def train_out_empty_string(e, d):
    return Case(train_argv(e, d, out=""), mentions=("--out",))


# -----------------------------------------------------------------------------
# train: data files

@case
def train_missing_data_file(e, d):
    p = os.path.join(d, "nope.csv")
    return Case(train_argv(e, d, data=p), mentions=(p, "no such file"), absent=(os.path.join(d, "run"),))


@case
def train_data_is_empty_folder(e, d):
    p = os.path.join(d, "empty")
    os.makedirs(p)
    return Case(train_argv(e, d, data=p), mentions=(p, "train.csv"), absent=(os.path.join(d, "run"),))


@case
def train_unknown_extension(e, d):
    p = write(os.path.join(d, "log.xlsx"), b"PK\x03\x04")
    return Case(train_argv(e, d, data=p), mentions=(p, "unknown format"), absent=(os.path.join(d, "run"),))


@case
def train_binary_txt(e, d):
    p = write(os.path.join(d, "Beauty.txt"), b"1 2 3\n\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\n")
    return Case(train_argv(e, d, data=p), mentions=(p + ":2", "UTF-8"), absent=(os.path.join(d, "run"),))


@case
def train_txt_id_beyond_int64(e, d):
    p = write(os.path.join(d, "Beauty.txt"), "1 2 3 4\n2 3 99999999999999999999 4\n")
    return Case(train_argv(e, d, data=p), mentions=(p + ":2", "99999999999999999999", "int64"),
                absent=(os.path.join(d, "run"),))


@case
def train_txt_non_integer_id(e, d):
    p = write(os.path.join(d, "Beauty.txt"), "1 2 3 4\n2 3 x5 4\n3 1 2\n")
    return Case(train_argv(e, d, data=p), mentions=(p + ":2", "'x5'", "integer"), absent=(os.path.join(d, "run"),))


@case
def train_txt_line_without_items(e, d):
    p = write(os.path.join(d, "Beauty.txt"), "1 2 3 4\n2\n")
    return Case(train_argv(e, d, data=p), mentions=(p + ":2", "at least one item"), absent=(os.path.join(d, "run"),))


@case
def train_txt_user_twice(e, d):
    p = write(os.path.join(d, "Beauty.txt"), "1 2 3 4\n2 3 4\n1 5 6\n")
    return Case(train_argv(e, d, data=p), mentions=(p + ":3", "already has line 1"), absent=(os.path.join(d, "run"),))


@case
def train_txt_empty(e, d):
    p = write(os.path.join(d, "Empty.txt"), "")
    return Case(train_argv(e, d, data=p), mentions=(p, "no interactions"), absent=(os.path.join(d, "run"),))


@case
def train_csv_empty_file(e, d):
    p = write(os.path.join(d, "log.csv"), "")
    return Case(train_argv(e, d, data=p), mentions=(p,), absent=(os.path.join(d, "run"),))


@case
def train_csv_header_only(e, d):
    p = write(os.path.join(d, "log.csv"), "user_id,item_id,timestamp\n")
    return Case(train_argv(e, d, data=p), mentions=(p, "no interactions"), absent=(os.path.join(d, "run"),))


@case
def train_csv_missing_item_column(e, d):
    p = write(os.path.join(d, "log.csv"), "user_id,product,timestamp\n1,5,10\n1,6,11\n")
    return Case(train_argv(e, d, data=p), mentions=(p, "missing column 'item_id'"), absent=(os.path.join(d, "run"),))


@case
def train_csv_id_beyond_int64(e, d):
    p = write(os.path.join(d, "log.csv"), "user_id,item_id,timestamp\n1,5,10\n1,18446744073709551616,11\n")
    return Case(train_argv(e, d, data=p), mentions=(p + ":3", "'item_id'", "int64"), absent=(os.path.join(d, "run"),))


@case
def train_csv_float_item_ids(e, d):
    p = write(os.path.join(d, "log.csv"), "user_id,item_id,timestamp\n1,5.0,10\n1,6.5,11\n2,5.0,12\n")
    return Case(train_argv(e, d, data=p), mentions=(p + ":3", "'item_id'", "6.5", "whole number"),
                absent=(os.path.join(d, "run"),))


@case
def train_csv_nan_item_ids(e, d):
    p = write(os.path.join(d, "log.csv"), "user_id,item_id,timestamp\n1,5,10\n1,NaN,11\n2,5,12\n")
    return Case(train_argv(e, d, data=p), mentions=(p + ":3", "'item_id'", "not a number"),
                absent=(os.path.join(d, "run"),))


@case
def train_csv_empty_cell(e, d):
    p = write(os.path.join(d, "log.csv"), "user_id,item_id,timestamp\n1,5,10\n,6,11\n")
    return Case(train_argv(e, d, data=p), mentions=(p + ":3", "'user_id'", "empty"), absent=(os.path.join(d, "run"),))


@case
def train_csv_timestamp_not_a_date(e, d):
    p = write(os.path.join(d, "log.csv"),
              "user_id,item_id,timestamp\n1,5,2024-01-02\n1,6,2024-01-03\n2,5,yesterday\n2,7,2024-01-05\n")
    return Case(train_argv(e, d, data=p), mentions=(p + ":4", "'timestamp'", "'yesterday'"),
                absent=(os.path.join(d, "run"),))


@case
def train_csv_infinite_timestamp(e, d):
    p = write(os.path.join(d, "log.csv"), "user_id,item_id,timestamp\n1,5,10\n1,6,inf\n2,5,12\n")
    return Case(train_argv(e, d, data=p), mentions=(p + ":3", "'timestamp'", "finite"),
                absent=(os.path.join(d, "run"),))


@case
def train_tsv_named_csv(e, d):
    p = write(os.path.join(d, "log.csv"), "user_id\titem_id\ttimestamp\n1\t5\t10\n1\t6\t11\n")
    return Case(train_argv(e, d, data=p), mentions=(p, "tabs", ".tsv"), absent=(os.path.join(d, "run"),))


@case
def train_csv_not_utf8(e, d):
    p = write(os.path.join(d, "log.csv"), b"user_id,item_id,timestamp\n1,5,10\n1,\xff\xfe,11\n")
    return Case(train_argv(e, d, data=p), mentions=(p + ":3", "UTF-8"), absent=(os.path.join(d, "run"),))


@case
def train_garbage_gz(e, d):
    p = write(os.path.join(d, "log.csv.gz"), b"\x1f\x8b\x08garbage")
    return Case(train_argv(e, d, data=p), mentions=(p, "gzip"), absent=(os.path.join(d, "run"),))


@case
def train_garbled_parquet(e, d):
    p = write(os.path.join(d, "log.parquet"), os.urandom(256))
    return Case(train_argv(e, d, data=p), mentions=(p, "cannot be read"), absent=(os.path.join(d, "run"),))


@case
def train_parquet_list_ids(e, d):
    import polars as pl
    p = os.path.join(d, "log.parquet")
    pl.DataFrame({"user_id": [1, 1, 2], "item_id": [[1, 2], [3], [4]], "timestamp": [1, 2, 3]}).write_parquet(p)
    return Case(train_argv(e, d, data=p), mentions=(p, "'item_id'", "integer or string ids"),
                absent=(os.path.join(d, "run"),))


@case
def train_parquet_bool_ids(e, d):
    import polars as pl
    p = os.path.join(d, "log.parquet")
    pl.DataFrame({"user_id": [True, True, False], "item_id": [1, 2, 3], "timestamp": [1, 2, 3]}).write_parquet(p)
    return Case(train_argv(e, d, data=p), mentions=(p, "'user_id'"), absent=(os.path.join(d, "run"),))


@case
def train_parquet_garbage_timestamps(e, d):
    import polars as pl
    p = os.path.join(d, "log.parquet")
    pl.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 3, 4],
                  "timestamp": ["2024-01-01", "2024-01-02", "??", "2024-01-04"]}).write_parquet(p)
    return Case(train_argv(e, d, data=p), mentions=(p + ": row 2", "'timestamp'", "'??'"),
                absent=(os.path.join(d, "run"),))


@case
def train_parquet_nan_ids(e, d):
    import polars as pl
    p = os.path.join(d, "log.parquet")
    pl.DataFrame({"user_id": [1, 1, 2], "item_id": [1.0, float("nan"), 3.0], "timestamp": [1, 2, 3]}).write_parquet(p)
    return Case(train_argv(e, d, data=p), mentions=(p + ": row 1", "'item_id'", "not a number"),
                absent=(os.path.join(d, "run"),))


@case
def train_parquet_folder_mismatched_columns(e, d):
    import polars as pl
    f = os.path.join(d, "parts")
    os.makedirs(f)
    pl.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "timestamp": [1, 2]}).write_parquet(f + "/a.parquet")
    pl.DataFrame({"user_id": [2, 2], "product": [1, 2], "timestamp": [1, 2]}).write_parquet(f + "/b.parquet")
    return Case(train_argv(e, d, data=f), mentions=(os.path.join(f, "b.parquet"), "differ"),
                absent=(os.path.join(d, "run"),))


@case
def train_nothing_to_learn(e, d):
    p = write(os.path.join(d, "log.csv"), "user_id,item_id,timestamp\n1,5,10\n1,6,11\n2,5,12\n")
    return Case(train_argv(e, d, data=p), mentions=(p, "nothing to learn"), absent=(os.path.join(d, "run"),))


# -----------------------------------------------------------------------------
# challenge folders

def bad_challenge(e, d, train=None, test="keep", mapping=None):
    f = os.path.join(d, "chal")
    shutil.copytree(e.chal, f)
    if train is not None:
        write(os.path.join(f, "train.csv"), train)
    if test is None:
        os.remove(os.path.join(f, "test.csv"))
    elif test != "keep":
        write(os.path.join(f, "test.csv"), test)
    if mapping is not None:
        write(os.path.join(f, "id_mappings.json"), mapping)
    return f


@case
def train_challenge_non_integer_id(e, d):
    f = bad_challenge(e, d, train="user_id,item_id,rating,timestamp\n1,0,5,10\n1,3,4,11\nu2,4,3,12\n2,0,5,13\n")
    return Case(train_argv(e, d, data=f), mentions=(os.path.join(f, "train.csv") + ":4", "'user_id'", "'u2'"),
                absent=(os.path.join(d, "run"),))


@case
def train_challenge_header_only_test_csv(e, d):
    f = bad_challenge(e, d, test="user_id,predictions\n")
    return Case(train_argv(e, d, data=f), mentions=(os.path.join(f, "test.csv"), "no users"),
                absent=(os.path.join(d, "run"),))


@case
def train_challenge_test_csv_without_user_id(e, d):
    f = bad_challenge(e, d, test="customer,predictions\n1,0\n")
    return Case(train_argv(e, d, data=f), mentions=(os.path.join(f, "test.csv"), "missing column 'user_id'"),
                absent=(os.path.join(d, "run"),))


@case
def train_challenge_duplicate_test_users(e, d):
    f = bad_challenge(e, d, test="user_id,predictions\n1,0\n2,0\n1,0\n")
    return Case(train_argv(e, d, data=f), mentions=(os.path.join(f, "test.csv") + ":4", "user_id 1", "once"),
                absent=(os.path.join(d, "run"),))


@case
def train_challenge_bad_id_mappings(e, d):
    f = bad_challenge(e, d, mapping='{"user_mapping": {\n"U1": 1,,\n}')
    return Case(train_argv(e, d, data=f), mentions=(os.path.join(f, "id_mappings.json") + ":2", "JSON"),
                absent=(os.path.join(d, "run"),))


@case
def train_folder_without_train_csv(e, d):
    f = os.path.join(d, "chal")
    write(os.path.join(f, "test.csv"), "user_id,predictions\n1,0\n")
    return Case(train_argv(e, d, data=f), mentions=(f, "train.csv"), absent=(os.path.join(d, "run"),))


# -----------------------------------------------------------------------------
# recommend

def rec_argv(e, d, *extra, run=None, data=None, out=None):
    out = os.path.join(d, "recs.csv") if out is None else out
    return ["recommend", "--run", run or e.run, "--data", data or e.log, "--out", out, *extra]


def _rec_case(extra, mentions, argparse=False):
    def build(e, d):
        out = os.path.join(d, "recs.csv")
        return Case(rec_argv(e, d, *extra), mentions=tuple(mentions), absent=(out,), argparse=argparse)
    return build


REC_OPTIONS_BAD = [
    (["--k", "0"], ["--k 0", "at least 1"]),
    (["--k", "-5"], ["--k -5", "at least 1"]),
    (["--k", "1000000"], ["--k 1000000", "15 items"]),
    (["--temperature", "-1"], ["--temperature -1", ">= 0"]),
    (["--temperature", "nan"], ["--temperature nan", ">= 0"]),
    (["--temperature", "inf", "--mode", "generative"], ["--temperature inf", "finite"]),
    (["--temperature", "0.5"], ["--temperature", "--mode generative"]),
    (["--top-k-sample", "-1"], ["--top-k-sample -1", ">= 0"]),
    (["--seed", "-1"], ["--seed -1", "2^63"]),
    (["--batch-size", "0"], ["--batch-size 0", "1..1000000"]),
    (["--device", "gpu7"], ["device='gpu7'", "cuda"]),
    (["--device", ""], ["device=''"]),
]
for _i, (_ex, _m) in enumerate(REC_OPTIONS_BAD):
    CASES[f"recommend_option_{_i:02d}_{'_'.join(_ex).strip('-')[:30]}"] = _rec_case(_ex, _m)

CASES["recommend_mode_unknown"] = _rec_case(["--mode", "beam"], ["--mode", "'beam'"], argparse=True)
CASES["recommend_k_not_a_number"] = _rec_case(["--k", "ten"], ["--k", "'ten'"], argparse=True)


@case
def recommend_device_cuda_without_cuda(e, d):
    if HAS_CUDA:
        pytest.skip("this machine has CUDA")
    out = os.path.join(d, "recs.csv")
    return Case(rec_argv(e, d, "--device", "cuda:0"), mentions=("cuda:0", "not available"), absent=(out,))


@case
def recommend_bad_k_keeps_old_output(e, d):
    out = write(os.path.join(d, "recs.csv"), "user_id,item_id\n1,2\n")
    return Case(rec_argv(e, d, "--k", "0", out=out), mentions=("--k 0",), keep=(out,))


@case
def recommend_bad_data_keeps_old_output(e, d):
    out = write(os.path.join(d, "recs.csv"), "user_id,item_id\n1,2\n")
    data = os.path.join(d, "gone.csv")
    return Case(rec_argv(e, d, data=data, out=out), mentions=(data, "no such file"), keep=(out,))


@case
def recommend_out_missing_folder(e, d):
    out = os.path.join(d, "no", "such", "recs.csv")
    return Case(rec_argv(e, d, out=out), mentions=(out, "does not exist"), absent=(os.path.join(d, "no"),))


@case
def recommend_out_is_a_folder(e, d):
    out = os.path.join(d, "recs.csv")
    os.makedirs(out)
    return Case(rec_argv(e, d, out=out), mentions=(out, "is a folder"), keep=(out,))


@case
def recommend_out_parent_is_a_file(e, d):
    parent = write(os.path.join(d, "afile"), "x\n")
    out = os.path.join(parent, "recs.csv")
    return Case(rec_argv(e, d, out=out), mentions=(out, "is a file"), keep=(parent,))


@case
def recommend_out_empty_string(e, d):
    return Case(rec_argv(e, d, out=""), mentions=("--out",))


@case
def recommend_run_missing(e, d):
    run = os.path.join(d, "norun")
    return Case(rec_argv(e, d, run=run), mentions=(run,), absent=(os.path.join(d, "recs.csv"),))


@case
def recommend_run_is_a_file(e, d):
    run = write(os.path.join(d, "run"), "x\n")
    return Case(rec_argv(e, d, run=run), mentions=(run, "not a run folder"), absent=(os.path.join(d, "recs.csv"),),
                keep=(run,))


@case
def recommend_run_not_a_run(e, d):
    run = os.path.join(d, "notarun")
    os.makedirs(run)
    return Case(rec_argv(e, d, run=run), mentions=(run, "not a run folder"), absent=(os.path.join(d, "recs.csv"),))


@case
def recommend_data_missing(e, d):
    data = os.path.join(d, "gone")
    return Case(rec_argv(e, d, data=data), mentions=(data, "no such file"), absent=(os.path.join(d, "recs.csv"),))


@case
def recommend_other_vocabulary(e, d):
    data = write(os.path.join(d, "shop.csv"), "user_id,item_id,timestamp\n1,a,1\n1,b,2\n2,c,3\n2,a,4\n")
    return Case(rec_argv(e, d, data=data), mentions=(data, "vocabulary"), absent=(os.path.join(d, "recs.csv"),))


@case
def recommend_users_missing(e, d):
    users = os.path.join(d, "users.csv")
    return Case(rec_argv(e, d, "--users", users), mentions=(users, "no such file"),
                absent=(os.path.join(d, "recs.csv"),))


@case
def recommend_users_is_a_folder(e, d):
    users = os.path.join(d, "users.csv")
    os.makedirs(users)
    return Case(rec_argv(e, d, "--users", users), mentions=(users,), absent=(os.path.join(d, "recs.csv"),))


@case
def recommend_users_without_user_id(e, d):
    users = write(os.path.join(d, "users.csv"), "customer\n1\n2\n")
    return Case(rec_argv(e, d, "--users", users), mentions=(users, "missing column 'user_id'"),
                absent=(os.path.join(d, "recs.csv"),))


@case
def recommend_users_header_only(e, d):
    users = write(os.path.join(d, "users.csv"), "user_id\n")
    return Case(rec_argv(e, d, "--users", users), mentions=(users, "no users"), absent=(os.path.join(d, "recs.csv"),))


@case
def recommend_users_duplicate(e, d):
    users = write(os.path.join(d, "users.csv"), "user_id\n1\n2\n1\n")
    return Case(rec_argv(e, d, "--users", users), mentions=(users, "user 1 ", "more than once"),
                absent=(os.path.join(d, "recs.csv"),))


@case
def recommend_users_nan(e, d):
    users = write(os.path.join(d, "users.csv"), "user_id\n1\nNaN\n")
    return Case(rec_argv(e, d, "--users", users), mentions=(users, "'user_id'"), absent=(os.path.join(d, "recs.csv"),))


@case
def recommend_challenge_without_test_csv(e, d):
    f = bad_challenge(e, d, test=None)
    return Case(rec_argv(e, d, run=e.chalrun, data=f), mentions=(f, "test.csv", "--users"),
                absent=(os.path.join(d, "recs.csv"),))


@case
def recommend_challenge_header_only_test_csv(e, d):
    f = bad_challenge(e, d, test="user_id,predictions\n")
    return Case(rec_argv(e, d, run=e.chalrun, data=f), mentions=(os.path.join(f, "test.csv"), "no users"),
                absent=(os.path.join(d, "recs.csv"),))


@case
def recommend_challenge_duplicate_test_users(e, d):
    f = bad_challenge(e, d, test="user_id,predictions\n3,0\n3,0\n")
    return Case(rec_argv(e, d, run=e.chalrun, data=f), mentions=(os.path.join(f, "test.csv") + ":3", "once"),
                absent=(os.path.join(d, "recs.csv"),))


def _damaged_run_case(cmd, name, how, extra_mentions=()):
    def build(e, d):
        run = copy_run(e.run, d)
        path = os.path.join(run, name)
        if how == "unknown_key":
            cfg = json.load(open(path))
            cfg["n_layers"] = 3
            write(path, json.dumps(cfg))
        else:
            damage(path, how)
        out = os.path.join(d, "recs.csv" if cmd == "recommend" else "m.json")
        argv = rec_argv(e, d, run=run, out=out) if cmd == "recommend" else \
            ["evaluate", "--run", run, "--data", e.log, "--json", out]
        return Case(argv, mentions=(path, *extra_mentions), keep=(run,), absent=(out,))
    return build


for _cmd in ("recommend", "evaluate"):
    for _name, _hows in (("config.json", ("truncated", "empty", "garbage", "unknown_key")),
                         ("items.json", ("truncated", "empty", "garbage")),
                         ("model.safetensors", ("truncated", "empty", "garbage"))):
        for _how in _hows:
            CASES[f"{_cmd}_{_how}_{_name.replace('.', '_')}"] = _damaged_run_case(_cmd, _name, _how)


def _serve_damaged(name):
    def build(e, d):
        run = copy_run(e.run, d)
        path = os.path.join(run, name)
        damage(path, "truncated")
        return Case(["serve", "--run", run, "--data", e.log, "--port", "8765"], mentions=(path,), keep=(run,))
    return build


for _name in ("config.json", "items.json", "model.safetensors"):
    CASES[f"serve_truncated_{_name.replace('.', '_')}"] = _serve_damaged(_name)


@case
def recommend_users_parquet_list_ids(e, d):
    import polars as pl
    users = os.path.join(d, "users.parquet")
    pl.DataFrame({"user_id": [[1, 2], [3]]}).write_parquet(users)
    return Case(rec_argv(e, d, "--users", users), mentions=(users, "'user_id'", "List"),
                absent=(os.path.join(d, "recs.csv"),))


@case
def recommend_run_without_weights(e, d):
    run = copy_run(e.run, d)
    os.remove(os.path.join(run, "model.safetensors"))
    return Case(rec_argv(e, d, run=run), mentions=(os.path.join(run, "model.safetensors"), "no such file"),
                keep=(run,), absent=(os.path.join(d, "recs.csv"),))


@case
def evaluate_run_content_table_gone(e, d):
    run = copy_run(e.run, d)
    path = os.path.join(run, "config.json")
    cfg = json.load(open(path))
    cfg["content"] = os.path.join(d, "gone.safetensors")
    write(path, json.dumps(cfg))
    out = os.path.join(d, "m.json")
    return Case(ev_argv(e, d, "--json", out, run=run), mentions=(cfg["content"], "no such file"), keep=(run,),
                absent=(out,))


# -----------------------------------------------------------------------------
# evaluate

def ev_argv(e, d, *extra, run=None, data=None):
    return ["evaluate", "--run", run or e.run, "--data", data or e.log, *extra]


@case
def evaluate_test_split_of_challenge(e, d):
    out = os.path.join(d, "m.json")
    return Case(ev_argv(e, d, "--split", "test", "--json", out, run=e.chalrun, data=e.chal),
                mentions=(e.chal, "no test answers", "--split valid"), absent=(out,))


@case
def evaluate_json_missing_folder(e, d):
    out = os.path.join(d, "no", "m.json")
    return Case(ev_argv(e, d, "--json", out), mentions=(out, "does not exist"), absent=(os.path.join(d, "no"),))


@case
def evaluate_json_is_a_folder(e, d):
    out = os.path.join(d, "m.json")
    os.makedirs(out)
    return Case(ev_argv(e, d, "--json", out), mentions=(out, "is a folder"), keep=(out,))


@case
def evaluate_bad_run_keeps_old_json(e, d):
    out = write(os.path.join(d, "m.json"), '{"old": 1}\n')
    run = os.path.join(d, "norun")
    return Case(ev_argv(e, d, "--json", out, run=run), mentions=(run,), keep=(out,))


@case
def evaluate_other_vocabulary(e, d):
    data = write_csv(os.path.join(d, "big.csv"), num_users=60, num_items=40, seed=4)
    out = os.path.join(d, "m.json")
    return Case(ev_argv(e, d, "--json", out, data=data), mentions=(data, "vocabulary", "items.json"), absent=(out,))


@case
def evaluate_list_length_zero(e, d):
    return Case(ev_argv(e, d, "--list-length", "0"), mentions=("--list-length 0", "at least 1"))


@case
def evaluate_list_length_negative(e, d):
    return Case(ev_argv(e, d, "--mode", "generative", "--list-length", "-3"), mentions=("--list-length -3",))


@case
def evaluate_device_gpu7(e, d):
    return Case(ev_argv(e, d, "--device", "gpu7"), mentions=("device='gpu7'",))


@case
def evaluate_run_missing(e, d):
    run = os.path.join(d, "norun")
    return Case(ev_argv(e, d, run=run), mentions=(run, "no such run folder"))


@case
def evaluate_run_not_a_run(e, d):
    run = os.path.join(d, "empty")
    os.makedirs(run)
    return Case(ev_argv(e, d, run=run), mentions=(run, "not a run folder"))


@case
def evaluate_data_missing(e, d):
    data = os.path.join(d, "gone.csv")
    return Case(ev_argv(e, d, data=data), mentions=(data, "no such file"))


@case
def evaluate_split_unknown(e, d):
    return Case(ev_argv(e, d, "--split", "train"), mentions=("--split", "'train'"), argparse=True)


@case
def evaluate_no_run(e, d):
    return Case(["evaluate", "--data", e.log], mentions=("--run",), argparse=True)


# -----------------------------------------------------------------------------
# serve (argument and startup errors only: nothing here reaches uvicorn.run)

def sv_argv(e, *extra, run=None, data=None):
    return ["serve", "--run", run or e.run, "--data", data or e.log, *extra]


SERVE_BAD = [
    (["--port", "99999"], ["--port 99999", "1..65535"]),
    (["--port", "0"], ["--port 0", "1..65535"]),
    (["--port", "-1"], ["--port -1", "1..65535"]),
    (["--host", ""], ["--host", "empty"]),
    (["--max-history", "0"], ["--max-history 0", "at least 1"]),
    (["--max-body-bytes", "-5"], ["--max-body-bytes -5", "at least 1"]),
    (["--device", "gpu7", "--port", "8765"], ["device='gpu7'"]),
]
for _i, (_ex, _m) in enumerate(SERVE_BAD):
    CASES[f"serve_option_{_i:02d}_{'_'.join(_ex).strip('-')[:30]}"] = (
        lambda ex, m: lambda e, d: Case(sv_argv(e, *ex), mentions=tuple(m)))(_ex, _m)


@case
def serve_port_not_a_number(e, d):
    return Case(sv_argv(e, "--port", "http"), mentions=("--port", "'http'"), argparse=True)


@case
def serve_run_missing(e, d):
    run = os.path.join(d, "norun")
    return Case(sv_argv(e, "--port", "8765", run=run), mentions=(run, "no such run folder"))


@case
def serve_data_missing(e, d):
    data = os.path.join(d, "gone.csv")
    return Case(sv_argv(e, "--port", "8765", data=data), mentions=(data, "no such file"))


@case
def serve_other_vocabulary(e, d):
    data = write(os.path.join(d, "shop.csv"), "user_id,item_id,timestamp\n1,a,1\n1,b,2\n")
    return Case(sv_argv(e, "--port", "8765", data=data), mentions=(data, "vocabulary"))


# -----------------------------------------------------------------------------
# leaderboard

@case
def leaderboard_resume_truncated_json(e, d):
    out = os.path.join(d, "lb")
    path = write(os.path.join(out, "leaderboard.json"), '{"rows": [{"method": "popularity", "te')
    return Case(["leaderboard", "--data", e.log, "--out", out, "--methods", "popularity", "--resume"],
                mentions=(path, "JSON"), keep=(out,))


@case
def leaderboard_resume_not_a_leaderboard(e, d):
    out = os.path.join(d, "lb")
    path = write(os.path.join(out, "leaderboard.json"), '{"rows": [{"method": "magic"}]}')
    return Case(["leaderboard", "--data", e.log, "--out", out, "--methods", "popularity", "--resume"],
                mentions=(path, "not a leaderboard"), keep=(out,))


@case
def leaderboard_resume_json_is_a_folder(e, d):
    out = os.path.join(d, "lb")
    path = os.path.join(out, "leaderboard.json")
    os.makedirs(path)
    return Case(["leaderboard", "--data", e.log, "--out", out, "--methods", "popularity", "--resume"],
                mentions=(path,), keep=(out,))


@case
def leaderboard_unknown_method(e, d):
    out = os.path.join(d, "lb")
    return Case(["leaderboard", "--data", e.log, "--out", out, "--methods", "popularity,sasrec"],
                mentions=("'sasrec'", "unknown method"), absent=(out,))


@case
def leaderboard_no_methods(e, d):
    out = os.path.join(d, "lb")
    return Case(["leaderboard", "--data", e.log, "--out", out, "--methods", " , "], mentions=("--methods",),
                absent=(out,))


@case
def leaderboard_generative_without_packed(e, d):
    out = os.path.join(d, "lb")
    return Case(["leaderboard", "--data", e.log, "--out", out, "--methods", "gpt_generative"],
                mentions=("gpt_generative", "gpt_packed"), absent=(out,))


@case
def leaderboard_generative_before_packed(e, d):
    out = os.path.join(d, "lb")
    return Case(["leaderboard", "--data", e.log, "--out", out, "--methods", "gpt_generative,gpt_packed"],
                mentions=("gpt_generative", "gpt_packed", "before"), absent=(out,))


@case
def leaderboard_all_data_without_content_decay(e, d):
    out = os.path.join(d, "lb")
    return Case(["leaderboard", "--data", e.log, "--out", out, "--methods", "gpt_all_data"],
                mentions=("gpt_all_data", "gpt_content_decay"), absent=(out,))


@case
def leaderboard_bad_override(e, d):
    out = os.path.join(d, "lb")
    return Case(["leaderboard", "--data", e.log, "--out", out, "--methods", "popularity", "dropout=2"],
                mentions=("dropout=2.0",), absent=(out,))


@case
def leaderboard_challenge_data(e, d):
    out = os.path.join(d, "lb")
    return Case(["leaderboard", "--data", e.chal, "--out", out, "--methods", "popularity"],
                mentions=(e.chal, "test targets"), absent=(out,))


@case
def leaderboard_content_without_attributes(e, d):
    out = os.path.join(d, "lb")
    return Case(["leaderboard", "--data", e.log, "--out", out, "--methods", "content_knn"],
                mentions=(e.log, "item2attributes"), absent=(out,))


@case
def leaderboard_data_missing(e, d):
    out, data = os.path.join(d, "lb"), os.path.join(d, "gone.txt")
    return Case(["leaderboard", "--data", data, "--out", out, "--methods", "popularity"],
                mentions=(data, "no such file"), absent=(out,))


@case
def leaderboard_out_is_a_file(e, d):
    out = write(os.path.join(d, "lb"), "x\n")
    return Case(["leaderboard", "--data", e.log, "--out", out, "--methods", "popularity"],
                mentions=(out, "not a folder"), keep=(out,))


@case
def leaderboard_out_parent_is_a_file(e, d):
    parent = write(os.path.join(d, "afile"), "x\n")
    out = os.path.join(parent, "lb")
    return Case(["leaderboard", "--data", e.log, "--out", out, "--methods", "popularity"],
                mentions=(out,), keep=(parent,))


# -----------------------------------------------------------------------------
# quickstart

def qs_argv(d, *extra, out=None):
    return ["quickstart", "--out", os.path.join(d, "qs") if out is None else out, *extra]


QUICKSTART_BAD = [
    (["--items", "0"], ["--items 0", "20.."]),
    (["--items", "-3"], ["--items -3"]),
    (["--users", "0"], ["--users 0", "50.."]),
    (["--users", "100000000000"], ["--users 100000000000"]),
    (["--seed", "-1"], ["--seed -1"]),
    (["dropout=2"], ["dropout=2.0"]),
    (["n_embd=30", "n_head=4"], ["n_embd=30", "divisible"]),
    (["--max_steps", "10"], ["--max_steps", "max_steps=10"]),
]
for _i, (_ex, _m) in enumerate(QUICKSTART_BAD):
    CASES[f"quickstart_{_i:02d}_{'_'.join(_ex).strip('-')[:30]}"] = (
        lambda ex, m: lambda e, d: Case(qs_argv(d, *ex), mentions=tuple(m), absent=(os.path.join(d, "qs"),)))(_ex, _m)


@case
def quickstart_items_not_a_number(e, d):
    return Case(qs_argv(d, "--items", "many"), mentions=("--items", "'many'"), argparse=True,
                absent=(os.path.join(d, "qs"),))


@case
def quickstart_out_is_a_file(e, d):
    out = write(os.path.join(d, "qs"), "x\n")
    return Case(qs_argv(d, out=out), mentions=(out, "not a folder"), keep=(out,))


@case
def quickstart_out_parent_is_a_file(e, d):
    parent = write(os.path.join(d, "afile"), "x\n")
    out = os.path.join(parent, "qs")
    return Case(qs_argv(d, out=out), mentions=(out,), keep=(parent,))


# -----------------------------------------------------------------------------
# embed (tests/test_embed_images.py has many more)

@case
def embed_out_not_safetensors(e, d):
    out = os.path.join(d, "t.npy")
    return Case(["embed", "attributes", "--data", e.log, "--out", out], mentions=("--out", ".safetensors"),
                absent=(out,))


@case
def embed_attributes_dim_zero(e, d):
    out = os.path.join(d, "t.safetensors")
    return Case(["embed", "attributes", "--data", e.log, "--out", out, "--dim", "0"], mentions=("--dim", "0"),
                absent=(out,))


@case
def embed_attributes_without_json(e, d):
    out = os.path.join(d, "t.safetensors")
    return Case(["embed", "attributes", "--data", e.log, "--out", out], mentions=(e.log, "item2attributes"),
                absent=(out,))


@case
def embed_table_missing_input(e, d):
    out, src = os.path.join(d, "t.safetensors"), os.path.join(d, "vectors.npy")
    return Case(["embed", "table", "--input", src, "--out", out], mentions=(src, "no such file"), absent=(out,))


@case
def embed_table_out_missing_folder(e, d):
    out = os.path.join(d, "no", "t.safetensors")
    return Case(["embed", "table", "--input", os.path.join(d, "v.npy"), "--out", out],
                mentions=(out, "does not exist"), absent=(os.path.join(d, "no"),))


@case
def embed_images_batch_size_zero(e, d):
    out = os.path.join(d, "t.safetensors")
    os.makedirs(os.path.join(d, "imgs"))
    return Case(["embed", "images", "--items", e.run, "--images", os.path.join(d, "imgs"), "--out", out,
                 "--batch-size", "0"], mentions=("--batch-size", "at least 1"), absent=(out,))


@case
def embed_no_subcommand(e, d):
    return Case(["embed"], mentions=("COMMAND",), argparse=True)


# -----------------------------------------------------------------------------
# the dispatcher

@case
def top_unknown_command(e, d):
    return Case(["trian", "--data", e.log], mentions=("unknown command 'trian'", "train"))


@case
def top_unknown_option(e, d):
    return Case(["--verbose"], mentions=("unknown command '--verbose'",))


@case
def top_empty_command(e, d):
    return Case([""], mentions=("unknown command ''",))


# -----------------------------------------------------------------------------
# Python entry points: the same checks, as exceptions

@case
def py_train_run_dropout2_onto_good_run(e, d):
    from nanorec.config import Config
    from nanorec.core.train import run
    out = copy_run(e.run, d)
    return Case(call=lambda: run(Config(data=e.log, dropout=2.0), out, overwrite=True),
                mentions=("dropout=2.0",), keep=(out,), error=UsageError)


@case
def py_train_run_missing_content_onto_good_run(e, d):
    from nanorec.config import Config
    from nanorec.core.train import run
    out = copy_run(e.run, d)
    content = os.path.join(d, "nope.safetensors")
    return Case(call=lambda: run(Config(data=e.log, content=content, progress=False), out, overwrite=True,
                                 quiet=True),
                mentions=(content, "no such file"), keep=(out,), error=DataError)


@case
def py_train_run_wrong_type(e, d):
    from nanorec.config import Config
    from nanorec.core.train import run
    out = os.path.join(d, "run")
    return Case(call=lambda: run(Config(data=e.log, n_embd="64"), out), mentions=("n_embd='64'", "expected int"),
                absent=(out,), error=UsageError)


@case
def py_train_run_bool_as_float(e, d):
    from nanorec.config import Config
    from nanorec.core.train import run
    out = os.path.join(d, "run")
    return Case(call=lambda: run(Config(data=e.log, dropout=True), out), mentions=("dropout=True",),
                absent=(out,), error=UsageError)


@case
def py_train_run_no_data(e, d):
    from nanorec.config import Config
    from nanorec.core.train import run
    out = os.path.join(d, "run")
    return Case(call=lambda: run(Config(), out), mentions=("data",), absent=(out,))


@case
def py_train_run_into_good_run(e, d):
    from nanorec.config import Config
    from nanorec.core.train import run
    out = copy_run(e.run, d)
    return Case(call=lambda: run(Config(data=e.log), out), mentions=(out, "not empty"), keep=(out,),
                error=UsageError)


@case
def py_data_load_missing(e, d):
    from nanorec.data import load
    p = os.path.join(d, "nope.csv")
    return Case(call=lambda: load(p), mentions=(p, "no such file"), error=DataError)


@case
def py_data_load_empty_path(e, d):
    from nanorec.data import load
    return Case(call=lambda: load(""), mentions=("empty",))


@case
def py_data_load_not_a_frame(e, d):
    from nanorec.data import load
    return Case(call=lambda: load(42), mentions=("load", "int"), error=UsageError)


@case
def py_data_load_frame_missing_column(e, d):
    import pandas as pd
    from nanorec.data import load
    df = pd.DataFrame({"user": [1, 1], "item_id": [1, 2], "timestamp": [1, 2]})
    return Case(call=lambda: load(df), mentions=("<dataframe>", "missing column 'user_id'"), error=DataError)


@case
def py_data_load_frame_nan_ids(e, d):
    import pandas as pd
    from nanorec.data import load
    df = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1.0, np.nan, 2.0], "timestamp": [1, 2, 3]})
    return Case(call=lambda: load(df), mentions=("<dataframe>: row 1", "'item_id'"), error=DataError)


@case
def py_data_load_bad_filter(e, d):
    from nanorec.data import load
    return Case(call=lambda: load(e.log, filter="event_type"), mentions=("filter='event_type'", "column=value"),
                error=UsageError)


@case
def py_data_load_folder_json(e, d):
    from nanorec.data import read_json
    p = os.path.join(d, "x.json")
    os.makedirs(p)
    return Case(call=lambda: read_json(p), mentions=(p,), error=DataError)


@case
def py_apply_overrides_unknown_key(e, d):
    from nanorec.config import Config, apply_overrides
    return Case(call=lambda: apply_overrides(Config(), ["n_layers=3"]), mentions=("'n_layers'", "n_layer"),
                error=UsageError)


@case
def py_apply_overrides_wrong_type(e, d):
    from nanorec.config import Config, apply_overrides
    return Case(call=lambda: apply_overrides(Config(), ["n_layer=1.5"]), mentions=("n_layer='1.5'",),
                error=UsageError)


@case
def py_apply_overrides_no_equals(e, d):
    from nanorec.config import Config, apply_overrides
    return Case(call=lambda: apply_overrides(Config(), ["dropout"]), mentions=("'dropout'", "key=value"),
                error=UsageError)


@case
def py_apply_overrides_not_divisible(e, d):
    from nanorec.config import Config, apply_overrides
    return Case(call=lambda: apply_overrides(Config(), ["n_head=3"]), mentions=("n_embd=64", "n_head=3"),
                error=UsageError)


@case
def py_config_load_missing(e, d):
    from nanorec.config import Config
    p = os.path.join(d, "config.json")
    return Case(call=lambda: Config.load(p), mentions=(p, "no such file"), error=DataError)


@case
def py_config_load_folder(e, d):
    from nanorec.config import Config
    p = os.path.join(d, "config.json")
    os.makedirs(p)
    return Case(call=lambda: Config.load(p), mentions=(p,), error=DataError)


@case
def py_config_load_list(e, d):
    from nanorec.config import Config
    p = write(os.path.join(d, "config.json"), "[1, 2]")
    return Case(call=lambda: Config.load(p), mentions=(p, "JSON object"), error=DataError)


@case
def py_config_load_unknown_key(e, d):
    from nanorec.config import Config
    p = write(os.path.join(d, "config.json"), '{"n_layers": 3}')
    return Case(call=lambda: Config.load(p), mentions=(p, "'n_layers'"), error=DataError)


@case
def py_config_load_bad_value(e, d):
    from nanorec.config import Config
    p = write(os.path.join(d, "config.json"), '{"block_size": 0}')
    return Case(call=lambda: Config.load(p), mentions=(p, "block_size=0"), error=DataError)


@case
def py_config_load_wrong_type(e, d):
    from nanorec.config import Config
    p = write(os.path.join(d, "config.json"), '{"n_layer": "two"}')
    return Case(call=lambda: Config.load(p), mentions=(p, "n_layer='two'"), error=DataError)


@case
def py_recommend_k_zero(e, d):
    from nanorec.scoring.recommend import recommend
    return Case(call=lambda: recommend(e.run, e.log, k=0, device="cpu"), mentions=("--k 0",), error=UsageError)


@case
def py_recommend_unknown_mode(e, d):
    from nanorec.scoring.recommend import recommend
    return Case(call=lambda: recommend(e.run, e.log, mode="beam", device="cpu"), mentions=("'beam'", "generative"),
                error=UsageError)


@case
def py_recommend_negative_temperature(e, d):
    from nanorec.scoring.recommend import recommend
    return Case(call=lambda: recommend(e.run, e.log, mode="generative", temperature=-1.0, device="cpu"),
                mentions=("--temperature -1",), error=UsageError)


@case
def py_train_run_resume_and_overwrite(e, d):
    from nanorec.config import Config
    from nanorec.core.train import run
    out = copy_run(e.run, d)
    return Case(call=lambda: run(Config(data=e.log), out, resume=True, overwrite=True),
                mentions=("--resume", "--overwrite"), keep=(out,), error=UsageError)


@case
def py_load_run_missing(e, d):
    from nanorec.runs.run import Run
    run = os.path.join(d, "norun")
    return Case(call=lambda: Run.open(run), mentions=(run, "no such run folder"), error=DataError)


# -----------------------------------------------------------------------------
# newer surfaces: holdout, shipped baselines, trackers, tune, the Python API

@case
def train_holdout_loo_on_two_event_users(e, d):
    """Every user has two events: leave-one-out leaves nothing to learn; the hint names holdout=none."""
    p = write(os.path.join(d, "two.csv"), "user_id,item_id,timestamp\n" +
              "".join(f"{u},{u % 5},{2 * u}\n{u},{(u + 1) % 5},{2 * u + 1}\n" for u in range(20)))
    return Case(["train", "--data", p, "--out", os.path.join(d, "run"), *TINY],
                mentions=(p, "nothing to learn", "holdout=none"), absent=(os.path.join(d, "run"),))


@case
def train_weight_col_with_a_baseline(e, d):
    p = write(os.path.join(d, "w.csv"), "user_id,item_id,timestamp,w\n1,1,1,1\n1,2,2,2\n1,3,3,1\n2,1,1,1\n2,3,2,1\n")
    return Case(["train", "--data", p, "--out", os.path.join(d, "run"), "weight_col=w", "method=svd", *TINY],
                mentions=("weight_col", "method=svd"), absent=(os.path.join(d, "run"),))


@case
def train_weight_col_nan(e, d):
    p = write(os.path.join(d, "w.csv"), "user_id,item_id,timestamp,w\n1,1,1,1\n1,2,2,nan\n1,3,3,1\n")
    return Case(["train", "--data", p, "--out", os.path.join(d, "run"), "weight_col=w", *TINY],
                mentions=(p, "'w'"), absent=(os.path.join(d, "run"),))


@case
def train_weight_col_not_numeric(e, d):
    p = write(os.path.join(d, "w.csv"), "user_id,item_id,timestamp,w\n1,1,1,1\n1,2,2,heavy\n1,3,3,1\n")
    return Case(["train", "--data", p, "--out", os.path.join(d, "run"), "weight_col=w", *TINY],
                mentions=(p, "'w'", "heavy"), absent=(os.path.join(d, "run"),))


def _weight_case(d, bad):
    p = write(os.path.join(d, "w.csv"), f"user_id,item_id,timestamp,w\n1,1,1,1\n1,2,2,{bad}\n1,3,3,1\n2,1,1,1\n")
    return Case(["train", "--data", p, "--out", os.path.join(d, "run"), "weight_col=w", *TINY],
                mentions=(f"{p}:3", "'w'", repr(bad)), absent=(os.path.join(d, "run"),))


@case
def train_weight_col_zero(e, d):
    """A weight 0 is an error naming its line, not a silently dropped event."""
    case = _weight_case(d, "0")
    return dataclasses.replace(case, mentions=case.mentions + ("<= 0",))


@case
def train_weight_col_negative(e, d):
    case = _weight_case(d, "-2.5")
    return dataclasses.replace(case, mentions=case.mentions + ("<= 0",))


@case
def train_weight_col_inf(e, d):
    case = _weight_case(d, "inf")
    return dataclasses.replace(case, mentions=case.mentions + ("finite",))


@case
def train_weight_col_boolean_parquet(e, d):
    import polars as pl
    p = os.path.join(d, "w.parquet")
    pl.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "timestamp": [1, 2], "w": [True, False]}).write_parquet(p)
    return Case(["train", "--data", p, "--out", os.path.join(d, "run"), "weight_col=w", *TINY],
                mentions=(p, "'w'", "Boolean", "weights"), absent=(os.path.join(d, "run"),))


def _typed_log(d):
    return write(os.path.join(d, "ev.csv"), "user_id,item_id,timestamp,event_type\n1,1,1,view\n1,2,2,purchase\n"
                 "1,3,3,view\n2,1,1,view\n2,3,2,purchase\n")


@case
def train_target_filter_syntax(e, d):
    return Case(["train", "--data", _typed_log(d), "--out", os.path.join(d, "run"), "target_filter=purchase", *TINY],
                mentions=("target_filter='purchase'", "column=value"), absent=(os.path.join(d, "run"),))


@case
def train_target_filter_unknown_column(e, d):
    p = _typed_log(d)
    return Case(["train", "--data", p, "--out", os.path.join(d, "run"), "target_filter=kind=purchase", *TINY],
                mentions=(p, "missing target_filter column 'kind'", "event_type"), absent=(os.path.join(d, "run"),))


@case
def train_target_filter_matches_nothing(e, d):
    p = _typed_log(d)
    return Case(["train", "--data", p, "--out", os.path.join(d, "run"), "target_filter=event_type=buy", *TINY],
                mentions=(p, "no event matches target_filter", "'view'"), absent=(os.path.join(d, "run"),))


@case
def train_target_filter_on_a_challenge_folder(e, d):
    return Case(["train", "--data", e.chal, "--out", os.path.join(d, "run"), "target_filter=event_type=purchase",
                 *TINY], mentions=("target_filter='event_type=purchase'", "event logs", e.chal),
                absent=(os.path.join(d, "run"),))


@case
def train_target_filter_with_svd(e, d):
    return Case(["train", "--data", _typed_log(d), "--out", os.path.join(d, "run"), "target_filter=event_type=purchase",
                 "method=svd", *TINY], mentions=("target_filter", "method=svd"), absent=(os.path.join(d, "run"),))


@case
def synth_event_types_one_name(e, d):
    out = os.path.join(d, "shop.csv")
    return Case(["synth", "--out", out, "--rows", "100", "--event-types", "view"],
                mentions=("--event-types 'view'", "2 or 3"), absent=(out,))


@case
def synth_event_types_into_a_challenge_folder(e, d):
    out = os.path.join(d, "shop")
    return Case(["synth", "--out", out, "--rows", "100", "--event-types", "view,purchase"],
                mentions=("--event-types", ".csv or .parquet"), absent=(out,))


@case
def synth_shop_into_a_folder(e, d):
    out = os.path.join(d, "shop")
    return Case(["synth", "--out", out, "--rows", "5000", "--shop"], mentions=("--shop", ".csv or .parquet"),
                absent=(out,))


@case
def synth_shop_too_few_rows(e, d):
    out = os.path.join(d, "shop.csv")
    return Case(["synth", "--out", out, "--rows", "500", "--shop"], mentions=("--rows 500", "1000"), absent=(out,))


@case
def train_track_tensorboard_missing(e, d):
    try:
        import torch.utils.tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed")
    except ImportError:
        pass
    return Case(train_argv(e, d, "track=tensorboard"), mentions=("track=tensorboard", "pip install tensorboard"),
                absent=(os.path.join(d, "run"),))


@case
def train_resume_change_method(e, d):
    run = copy_run(e.run, d)
    return Case(["train", "--out", run, "--resume", "method=transitions"],
                mentions=("method='transitions'", "cannot change on --resume"), keep=(run,))


@case
def recommend_baseline_run_missing_model(e, d):
    run = os.path.join(d, "base")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["train", "--data", e.log, "--out", run, "--quiet", "method=transitions"]) == 0
    os.remove(os.path.join(run, "baseline.safetensors"))
    out = os.path.join(d, "recs.csv")
    return Case(["recommend", "--run", run, "--out", out], mentions=("baseline.safetensors", "no such file"),
                keep=(run,), absent=(out,))


@case
def recommend_baseline_run_garbage_model(e, d):
    run = os.path.join(d, "base")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["train", "--data", e.log, "--out", run, "--quiet", "method=popularity"]) == 0
    write(os.path.join(run, "baseline.safetensors"), "not safetensors")
    out = os.path.join(d, "recs.csv")
    return Case(["recommend", "--run", run, "--out", out], mentions=("baseline.safetensors", "not a readable"),
                keep=(run,), absent=(out,))


def _fused_run(e, d):
    run = os.path.join(d, "fused")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["train", "--data", e.log, "--out", run, "--quiet", "fuse_transitions=true", *TINY]) == 0
    return run


@case
def recommend_fusion_weight_garbage(e, d):
    run = _fused_run(e, d)
    write(os.path.join(run, "fusion.json"), '{"transitions_weight": "lots"}')
    out = os.path.join(d, "recs.csv")
    return Case(["recommend", "--run", run, "--out", out], mentions=("fusion.json", "transitions_weight"),
                keep=(run,), absent=(out,))


@case
def evaluate_fusion_transitions_missing(e, d):
    run = _fused_run(e, d)
    os.remove(os.path.join(run, "transitions.safetensors"))
    return Case(["evaluate", "--run", run, "--data", e.log], mentions=("transitions.safetensors", "no such file"),
                keep=(run,))


@case
def recommend_fusion_cooccurrence_weight_negative(e, d):
    run = _fused_run(e, d)
    write(os.path.join(run, "fusion.json"), '{"transitions_weight": 0.2, "cooccurrence_weight": -1}')
    out = os.path.join(d, "recs.csv")
    return Case(["recommend", "--run", run, "--out", out], mentions=("fusion.json", "cooccurrence_weight"),
                keep=(run,), absent=(out,))


@case
def recommend_fusion_content_weight_without_content(e, d):
    run = _fused_run(e, d)
    write(os.path.join(run, "fusion.json"), '{"transitions_weight": 0.2, "cooccurrence_weight": 0, "content_weight": 2}')
    out = os.path.join(d, "recs.csv")
    return Case(["recommend", "--run", run, "--out", out], mentions=("fusion.json", "content weight", "no content"),
                keep=(run,), absent=(out,))


@case
def evaluate_fusion_cooccurrence_missing(e, d):
    run = _fused_run(e, d)
    write(os.path.join(run, "fusion.json"), '{"transitions_weight": 0.2, "cooccurrence_weight": 0.3}')
    os.remove(os.path.join(run, "cooccurrence.safetensors"))
    return Case(["evaluate", "--run", run, "--data", e.log], mentions=("cooccurrence.safetensors", "no such file"),
                keep=(run,))


@case
def tune_trials_zero(e, d):
    pytest.importorskip("optuna")
    out = os.path.join(d, "study")
    return Case(["tune", "--data", e.log, "--out", out, "--trials", "0", *TINY], mentions=("--trials 0",),
                absent=(out,))


@case
def tune_bad_space(e, d):
    out = os.path.join(d, "study")
    return Case(["tune", "--data", e.log, "--out", out, "--space", "dropout=0.9..0.1", *TINY],
                mentions=("--space", "low < high"), absent=(out,))


@case
def tune_space_untunable_key(e, d):
    out = os.path.join(d, "study")
    return Case(["tune", "--data", e.log, "--out", out, "--space", "data=a|b", *TINY],
                mentions=("'data'", "not a tunable"), absent=(out,))


@case
def tune_holdout_none(e, d):
    pytest.importorskip("optuna")
    out = os.path.join(d, "study")
    return Case(["tune", "--data", e.log, "--out", out, "holdout=none", *TINY],
                mentions=("holdout=none", "validation"), absent=(out,))


@case
def tune_out_is_a_file(e, d):
    pytest.importorskip("optuna")
    out = write(os.path.join(d, "study"), "a file")
    return Case(["tune", "--data", e.log, "--out", out, *TINY], mentions=(out, "not a folder"), keep=(out,))


@case
def api_unknown_keyword(e, d):
    from nanorec import Recommender
    return Case(call=lambda: Recommender(n_layers=2), mentions=("'n_layers'", "n_layer"), error=UsageError)


@case
def api_recommend_before_fit(e, d):
    from nanorec import Recommender
    return Case(call=lambda: Recommender().recommend(k=5), mentions=("not fitted",), error=UsageError)


@case
def api_k_zero(e, d):
    from nanorec import Recommender
    return Case(call=lambda: Recommender.load(e.run).recommend(k=0), mentions=("k=0",), error=UsageError)


@case
def api_k_bool(e, d):
    from nanorec import Recommender
    return Case(call=lambda: Recommender.load(e.run).recommend_history([1], k=True), mentions=("k=True",),
                error=UsageError)


@case
def api_save_into_non_empty_folder(e, d):
    from nanorec import Recommender
    target = os.path.join(d, "target")
    write(os.path.join(target, "mine.txt"), "keep me")
    return Case(call=lambda: Recommender.load(e.run).save(target), mentions=(target, "not empty"), keep=(target,),
                error=UsageError)


@case
def api_load_not_a_run(e, d):
    from nanorec import Recommender
    return Case(call=lambda: Recommender.load(os.path.join(d, "nothing")), mentions=("no such run folder",),
                error=DataError)


@case
def api_fit_missing_column(e, d):
    import polars as pl
    from nanorec import Recommender
    df = pl.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 1], "when": [1, 2, 3]})
    return Case(call=lambda: Recommender().fit(df, out=os.path.join(d, "run")), mentions=("timestamp", "when"),
                absent=(os.path.join(d, "run"),), error=DataError)


# -----------------------------------------------------------------------------
# outputs that exist: never replaced without --overwrite, never more than nanorec wrote (issue 17)

@case
def train_overwrite_folder_with_other_files(e, d):
    run = copy_run(e.run, d)
    write(os.path.join(run, "notes.txt"), "kept here by the user\n")
    return Case(train_argv(e, d, "--overwrite", out=run), mentions=(run, "notes.txt", "--overwrite"), keep=(run,))


@case
def tune_out_empty(e, d):
    pytest.importorskip("optuna")
    return Case(["tune", "--data", e.log, "--out", "", *TINY], mentions=("--out", "empty"))


@case
def tune_best_not_written_by_the_study(e, d):
    pytest.importorskip("optuna")
    out = os.path.join(d, "proj")
    write(os.path.join(out, "best", "notes.txt"), "kept here by the user\n")
    return Case(["tune", "--data", e.log, "--out", out, *TINY], mentions=(os.path.join(out, "best"), "--overwrite"),
                keep=(out,))


@case
def tune_study_json_not_a_study(e, d):
    pytest.importorskip("optuna")
    out = os.path.join(d, "proj")
    write(os.path.join(out, "study.json"), '{"my": "own file"}')
    return Case(["tune", "--data", e.log, "--out", out, *TINY], mentions=("study.json", "--overwrite"), keep=(out,))


@case
def tune_space_for_a_baseline(e, d):
    pytest.importorskip("optuna")
    out = os.path.join(d, "study")
    return Case(["tune", "--data", e.log, "--out", out, "--space", "dropout=0.1..0.5", "method=transitions"],
                mentions=("--space", "method=transitions", "nothing to search"), absent=(out,))


@case
def synth_out_empty(e, d):
    return Case(["synth", "--out", "", "--rows", "10"], mentions=("--out", "empty"))


@case
def synth_onto_an_existing_file(e, d):
    path = shutil.copy(e.log, os.path.join(d, "mydata.csv"))
    return Case(["synth", "--out", path, "--rows", "10"], mentions=(path, "exists", "--overwrite"), keep=(path,))


@case
def synth_overwrite_folder_with_other_files(e, d):
    out = os.path.join(d, "synth")
    write(os.path.join(out, "train.csv"), "user_id,item_id,rating,timestamp\n")
    write(os.path.join(out, "notes.txt"), "kept here by the user\n")
    return Case(["synth", "--out", out, "--rows", "10", "--overwrite"], mentions=(out, "notes.txt"), keep=(out,))


@case
def synth_more_items_than_rows(e, d):
    """100 rows over 100 million items: once 7.1 GB, then a 2.2 GB id file for 100 rows."""
    out = os.path.join(d, "wide.csv")
    return Case(["synth", "--out", out, "--rows", "100", "--items", "100000000"],
                mentions=("--items 100,000,000", "--rows 100"), absent=(out,))


@case
def synth_more_rows_than_memory(e, d):
    out = os.path.join(d, "big.csv")
    return Case(["synth", "--out", out, "--rows", "1000000000"], mentions=("--rows 1,000,000,000", "GB", "available"),
                absent=(out,))


# -----------------------------------------------------------------------------
# the harness

# -----------------------------------------------------------------------------
# business filters (--allow-items / --deny-items, the API's items / exclude_items)

FILTER_FILES_BAD = {  # name: (file text, the error line's words, the options it is an error for)
    # an allow list with no id the run knows would list nothing (a deny list's unknown ids are counted instead)
    "unknown_ids": ("item_id\n99999\nnope\n", ["2 item ids read", "no item could be listed"], ("--allow-items",)),
    "empty_file": ("", ["allow.csv", "lists nothing"], ("--allow-items",)),  # an empty deny list denies nothing
    "header_only": ("item_id\n", ["no items (its one line 'item_id' is no item of the run (read as a header))"], ("--allow-items",)),
    "repeated_id": ("item_id\n1\n1\n", ["item 1 is listed more than once"], ("--allow-items", "--deny-items")),
    "two_columns_no_item_id": ("a,b\n1,2\n", ["missing column 'item_id'"], ("--allow-items", "--deny-items")),
    "not_utf8": (b"item_id\n\xff\xfe1\n", ["allow.csv:2", "not UTF-8"], ("--allow-items", "--deny-items")),
}
for _name, (_text, _m, _opts) in FILTER_FILES_BAD.items():
    for _opt in _opts:
        def _filter_case(e, d, text=_text, m=_m, opt=_opt):
            f = write(os.path.join(d, "allow.csv"), text)
            out = os.path.join(d, "recs.csv")
            return Case(rec_argv(e, d, opt, f, out=out), mentions=(f, *m), absent=(out,))
        CASES[f"recommend_filter_{_opt.strip('-').replace('-', '_')}_{_name}"] = _filter_case


@case
def recommend_filter_file_missing(e, d):
    out = os.path.join(d, "recs.csv")
    return Case(rec_argv(e, d, "--allow-items", os.path.join(d, "nope.csv"), out=out),
                mentions=("nope.csv", "no such file"), absent=(out,))


@case
def serve_deny_items_repeated_id(e, d):
    f = write(os.path.join(d, "deny.csv"), "item_id\n3\n3\n")
    return Case(sv_argv(e, "--deny-items", f, "--port", "8765"), mentions=(f, "item 3 is listed more than once"))


@case
def serve_deny_items_is_a_folder(e, d):
    return Case(sv_argv(e, "--deny-items", d, "--port", "8765"), mentions=(d, "is a folder"))


def _api_filter_case(kwargs, mentions):
    def build(e, d):
        from nanorec import Recommender
        rec = Recommender.load(e.run)
        return Case(call=lambda: rec.recommend(k=3, **kwargs), mentions=tuple(mentions), error=UsageError)
    return build


API_FILTERS_BAD = [
    (dict(items=[]), ["items: empty"]),
    (dict(items=[1, 99999]), ["items: 1 of its 2 item ids are not items of the run", "99999"]),
    (dict(exclude_items=["x1"]), ["exclude_items: 1 of its 1", "integers"]),
    (dict(items="1"), ["items='1'", "expected a list"]),
    (dict(items=[1, 1]), ["items: 1 is listed more than once"]),
    (dict(exclude_items=[2.5]), ["exclude_items[0]=2.5"]),
]
for _i, (_kw, _m) in enumerate(API_FILTERS_BAD):
    CASES[f"api_filter_{_i:02d}_{'_'.join(_kw)}"] = _api_filter_case(_kw, _m)


# -----------------------------------------------------------------------------
# cases found by the audit of the surfaces (the mapping is in tests/test_audit.py)

@case
def recommend_users_is_a_pipe(e, d):
    """`--users <(...)`: a pipe (polars cannot map it: an internal error once), read as a stream; one
    without the user column is one line naming the pipe. Closed for writing: a regressed reader cannot hang."""
    read, written = os.pipe()
    os.write(written, b"customer\n1\n2\n")
    os.close(written)
    pipe = f"/dev/fd/{read}"  # what the shell's <(...) passes
    out = os.path.join(d, "recs.csv")
    return Case(["recommend", "--run", e.run, "--users", pipe, "--out", out],
                mentions=(pipe, "missing column 'user_id'"), absent=(out,))


@case
def train_data_is_a_pipe(e, d):
    """`train --data <(...)`: a pipe has no file name to tell its format by; one line naming it,
    and no run folder. The pipe is filled and closed for writing: a regressed reader cannot hang."""
    read, written = os.pipe()
    os.write(written, b"user_id,item_id,timestamp\n1,1,1\n1,2,2\n")
    os.close(written)
    pipe = f"/dev/fd/{read}"
    out = os.path.join(d, "run")
    return Case(["train", "--data", pipe, "--out", out, *TINY], mentions=(pipe,), absent=(out,))


def _with_column(e, d, name, values, col="w"):
    """e.log with one more column (a list of values, or a function of the row index)."""
    import polars as pl
    df = pl.read_csv(e.log)
    vals = [values(i) for i in range(df.height)] if callable(values) else values
    path = os.path.join(d, name)
    df.with_columns(pl.Series(col, vals)).write_csv(path)
    return path


@case
def train_weight_zero_in_float32(e, d):
    """A weight of 1e-50 is > 0 but 0 in float32 (all of them: nothing to learn; was a hang)."""
    data = _with_column(e, d, "w.csv", lambda i: 1e-50 if i == 3 else 1.0)
    out = os.path.join(d, "run")
    return Case(train_argv(e, d, "weight_col=w", data=data, out=out), mentions=("w.csv:5", "1e-50", "0 in float32"),
                absent=(out,))


@case
def train_weight_inf_in_float32(e, d):
    """A weight of 1e39 is finite but inf in float32 (was IndexError 4294967295)."""
    data = _with_column(e, d, "w.csv", lambda i: 1e39 if i == 3 else 1.0)
    out = os.path.join(d, "run")
    return Case(train_argv(e, d, "weight_col=w", data=data, out=out), mentions=("w.csv:5", "inf in float32"),
                absent=(out,))


@case
def train_weights_sum_beyond_float32(e, d):
    data = _with_column(e, d, "w.csv", lambda i: 1e37)
    out = os.path.join(d, "run")
    return Case(train_argv(e, d, "weight_col=w", data=data, out=out), mentions=("w.csv", "sums to", "float32"),
                absent=(out,))


@case
def train_target_filter_leaves_no_training_target(e, d):
    """Only each user's last event matches target_filter: every target is held out (was a hang past 150 s)."""
    import polars as pl
    users = pl.read_csv(e.log)["user_id"].to_list()
    last = {u: i for i, u in enumerate(users)}  # each user's last row (the log is in time order per user)
    data = _with_column(e, d, "typed.csv", lambda i: "purchase" if last[users[i]] == i else "view", col="event")
    out = os.path.join(d, "run")
    return Case(train_argv(e, d, "target_filter=event=purchase", data=data, out=out),
                mentions=("typed.csv", "no training target left", "holdout=none"), absent=(out,))


@case
def recommend_data_pipe_of_no_known_format(e, d):
    """`--data <(...)` whose bytes are no table: one line at once (a pipe has no suffix to go by)."""
    read, written = os.pipe()
    os.write(written, b"hello world\n")
    os.close(written)
    pipe = f"/dev/fd/{read}"
    out = os.path.join(d, "recs.csv")
    return Case(rec_argv(e, d, data=pipe, out=out), mentions=(pipe, "no suffix"), absent=(out,))


@case
def recommend_out_is_a_socket(e, d):
    """--out a socket: one line (a character device or a FIFO is written to; a socket is no output)."""
    import socket
    path = os.path.join(d, "sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    return Case(rec_argv(e, d, out=path), mentions=(path, "socket"))


CASES["train_config_fusion_weights_underscore"] = _config_case(
    ["fusion_weights=1_0,2"], ["fusion_weights='1_0,2'", "w1,w2"])  # float('1_0') is 10: not a weight anyone typed
CASES["train_config_fusion_weights_fullwidth_digit"] = _config_case(["fusion_weights=\uff11,2"], ["fusion_weights="])


@case
def api_fusion_weights_dict_with_unknown_key(e, d):
    from nanorec import Recommender
    return Case(call=lambda: Recommender(fusion_weights={"transition": 0.5, "cooccurrence": 0.1}), error=UsageError,
                mentions=("fusion_weights=", "transitions, cooccurrence, content"))


@case
def api_fusion_weights_tuple_with_a_bool(e, d):
    from nanorec import Recommender
    return Case(call=lambda: Recommender(fusion_weights=(0.5, True)), error=UsageError,
                mentions=("fusion_weights=(0.5, True)", "numbers"))


@case
def inspect_run_missing(e, d):
    out = os.path.join(d, "page.html")
    return Case(["inspect", "--run", os.path.join(d, "nope"), "--out", out], mentions=("no such run folder",),
                absent=(out,))


@case
def update_run_missing(e, d):
    out = os.path.join(d, "updated")
    return Case(["update", "--run", os.path.join(d, "nope"), "--data", e.log, "--out", out],
                mentions=(os.path.join(d, "nope"),), absent=(out,))


@case
def update_out_is_the_run(e, d):
    """--out equal to --run: the old run must never be written (tests/test_update.py has the rest)."""
    return Case(["update", "--run", e.run, "--data", e.log, "--out", e.run], mentions=("--out",), keep=(e.run,))


@case
def update_data_missing(e, d):
    missing, out = os.path.join(d, "week.csv"), os.path.join(d, "updated")
    return Case(["update", "--run", e.run, "--data", missing, "--out", out], mentions=(missing,),
                absent=(out,), keep=(e.run,))


@case
def inspect_out_parent_is_a_file(e, d):
    blocker = os.path.join(d, "blocker")
    write(blocker, "mine\n")
    return Case(["inspect", "--run", e.run, "--out", os.path.join(blocker, "page.html")], mentions=(blocker,),
                keep=(blocker, e.run))


def run_cli(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = cli_main(list(argv))
    return code, err.getvalue()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, env, tmp_path, monkeypatch):
    monkeypatch.delenv("NANOREC_DEBUG", raising=False)
    d = str(tmp_path)
    c = CASES[name](env, d)
    watched = [*c.keep, *env.shared]
    before = {p: snapshot(p) for p in watched}

    if c.call is not None:
        with pytest.raises(NanorecError) as info:
            c.call()
        assert isinstance(info.value, c.error), (type(info.value), info.value)
        line = str(info.value)
        assert "\n" not in line.strip(), line
    else:
        code, stderr = run_cli(c.argv)
        assert "Traceback" not in stderr, stderr
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        assert code == 2, (code, stderr)
        assert lines, "nothing on stderr"
        line = lines[-1]
        cmd = c.argv[0] if c.argv and c.argv[0] in COMMANDS else None
        prefix = f"nanorec {cmd}" if cmd else "nanorec: error: "
        if c.argparse:
            assert all(ln.startswith(("usage:", " ")) for ln in lines[:-1]), stderr
        else:
            assert len(lines) == 1, stderr
        assert line.startswith(prefix) and ": error: " in line, line
        assert "internal error" not in line, line
    print(f"\n{name}: {line}")  # pytest -s shows every message
    for m in c.mentions:
        assert m in line, f"{m!r} not in {line!r}"

    for p in watched:
        assert snapshot(p) == before[p], f"{p} changed"
    for p in c.absent:
        assert not os.path.lexists(p), f"{p} was written"
    assert not tmp_files(d, *env.shared), "temporary files left behind"


def test_every_command_has_cases():
    """Each `nanorec` command has bad-input cases in the table (named after it): a new command without
    them fails here (this replaced a count of the table's rows, which said nothing about coverage)."""
    missing = [name for name in COMMANDS if not any(c.startswith(name + "_") for c in CASES)]
    assert not missing, f"no bad-input case for: {', '.join(missing)}"
