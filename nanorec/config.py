"""One flat, typed config for a training run.

Every field has a default and a comment; the command line overrides any of
them as `key=value` (an unknown key or a value of the wrong type is an error),
and the resolved config is saved as `config.json` in every run directory.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, fields

from .errors import DataError, UsageError


@dataclass
class Config:
    # data
    data: str = ""                 # interactions: S3-Rec .txt, .csv/.parquet, or a challenge folder
    user_col: str = "user_id"      # column names for .csv/.parquet input
    item_col: str = "item_id"
    time_col: str = "timestamp"    # "none" = file order (a missing time column is an error otherwise)
    time_format: str = ""          # how a text time column is written, e.g. %d/%m/%Y (day first) or %m/%d/%Y %H:%M;
                                   # "" = ISO dates (2024-01-31, 2024-01-31T12:00) or numbers: 03/01/2024 is an error
    filter: str = ""               # keep only rows whose column equals a value, e.g. "event_type=purchase,cart"
    weight_col: str = ""           # numeric column of per-event weights, each > 0: a target's weight in the GPT's loss
                                   # and in the transitions / co-occurrence counts (e.g. purchase 3, cart 2, view 1)
    target_filter: str = ""        # the events to predict, as filter=, e.g. "event_type=purchase": every event stays
                                   # in the histories the model reads (views as context); only matching ones are the
                                   # validation/test targets and, without weight_col, the loss targets and the pairs
                                   # the count tables count (with weight_col every event is learned, with its weight)
    holdout: str = "loo"           # loo: valid/test = 2nd-last/last item | last: valid = last | none: train on all |
                                   # time: test = every event at/after split_time (all of a user's next items),
                                   # valid = the same fraction of the events before it (a date: their last 10%),
                                   # train = what comes before that
    split_time: str = ""           # holdout=time: an ISO date/time (2024-03-01, 2024-03-01T12:00) or a fraction of
                                   # the log's events in time order (0.9: the last 10% of events are the test window)
    all_data: bool = False         # also train on validation targets (for the step count chosen on validation)
    content: str = ""              # comma-separated frozen content tables (.safetensors), added as proj(content[item])
    # model
    method: str = "gpt"            # gpt, or a baseline that ships the same way: popularity, transitions, cooccurrence, svd
    block_size: int = 50           # packed row length = longest history the model sees (most recent items kept)
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    dropout: float = -1.0          # -1 = auto: 0.5 with the full softmax, 0.1 with the sampled one (loss.py,
                                   # AUTO_DROPOUT: measured per output layer); or a number in [0, 1)
    bias: bool = True              # bias in Linear and LayerNorm layers
    attention: str = "sdpa"        # "sdpa" (boolean mask, reference) or "flex" (FlexAttention block mask; CUDA
                                   # training only, and it turns compile on)
    fuse_transitions: str = "auto" # add w1 * log(transition probs) + w2 * log(co-occurrence probs) + w3 * content
                                   # cosine to the GPT's log-probs, weights (0 included) chosen on validation:
                                   # "true" or "auto" (the same: exact at any catalogue size, fusion.py), "false"
    fusion_weights: str = "auto"   # "auto" = chosen on validation; "w1,w2[,w3]" = fixed, e.g. the weights a validated
                                   # run chose, for a holdout=none run that has no validation to choose on (in
                                   # Python also metrics.json's {"transitions": w1, ...} dict or a tuple)
    packing: bool = True           # many users per row; False = one user per row, left-aligned, padded
    # optimisation
    batch_size: int = 64           # rows of block_size tokens per step (~450 Beauty users)
    learning_rate: float = 1e-3
    min_lr: float = 1e-4           # cosine decay ends here
    warmup_steps: int = 100        # steps of linear warmup; more than max_steps is allowed but warned at the
                                   # start of training (the run never leaves warmup: no peak, no decay)
    decay_lr: bool = True          # linear warmup + cosine decay; False = constant learning_rate after warmup
    max_steps: int = 3000          # the cosine schedule's length; early stopping may end the run first
    decay_steps: int = 0           # length of the cosine decay; 0 = max_steps (all_data sets it to replay a schedule)
    weight_decay: float = 0.1      # on matrices only (no decay on biases, LayerNorm, embeddings)
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0         # 0 disables clipping
    loss: str = "auto"             # output layer: "full" softmax, "sampled" softmax, "auto" = full up to 20,000 items
    num_negatives: int = 0         # sampled softmax: negatives drawn each step, shared by all its targets; 0 = auto:
                                   # 1,024 doubling with the epochs max_steps covers past 8, up to 4,096
                                   # (loss.AUTO_NEGATIVES: measured per budget)
    negatives: str = "popularity"  # sampled softmax negatives: "popularity", "uniform" or "in_batch"
    future_decay: float = 0.0      # soft labels: each target also credits the user's next 2 items with weights
                                   # decay, decay^2 (normalised); 0 = the next item only
    # evaluation and checkpoints
    eval_interval: int = 200       # steps between validation passes
    eval_batch_size: int = 1024
    valid_users: int = 0           # validation (checkpoints, early stopping, fusion weights) on a fixed seeded sample
                                   # of this many users; 0 = auto: all of them while users x items <= 2e9, else a
                                   # sample of 2e9 / items users (train.VALID_WORK says why); N >= all users: all
    patience: int = 5              # stop after this many validations without a better NDCG@10; 0 = never
    checkpoint_interval: int = 200 # steps between resumable checkpoints (ckpt.pt)
    # system
    seed: int = 1337
    device: str = "auto"           # "auto" = cuda when available, else cpu
    dtype: str = "auto"            # "auto" = bf16 autocast on cuda, fp32 on cpu; or "float32" / "bfloat16"
    compile: bool = False          # torch.compile the transformer for training steps (on CUDA with bf16 1.3x
                                   # faster steps; with float32 it measured slower: benchmarks/README.md)
    threads: int = 0               # torch CPU threads; 0 = leave torch's default
    progress: bool = True          # tqdm progress bars (shown on a terminal only)
    track: str = ""                # also log to "tensorboard" and/or "mlflow" (comma-separated; needs the package)
    context_targets: str = "auto"  # target_filter: what a context slot (a view) learns: "next" = the next purchase of its
                                   # history, "none" = nothing (only the slot right before a purchase); auto = next
    exclude_seen: str = "auto"     # lists leave out a user's earlier items: "true", "false" (re-buys listed), "auto" = chosen on validation

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "Config":
        """Every key's type and range (the RULES table below); raises UsageError
        naming the first bad key. Checked before anything is read or written."""
        self.fusion_weights = weights_text(self.fusion_weights)
        for f in fields(self):
            value = getattr(self, f.name)
            want = PYTYPES[f.type]
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if type(value) is not want:
                raise UsageError(f"{f.name}={value!r}: expected {want.__name__}")
            if want is float and not math.isfinite(value):
                raise UsageError(f"{f.name}={value!r}: expected a finite number")
            rule = RULES.get(f.name)
            if rule and not rule[0](value):
                raise UsageError(f"{f.name}={value!r}: expected {rule[1]}")
        if self.n_embd % self.n_head:
            raise UsageError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.min_lr > self.learning_rate:
            raise UsageError(f"min_lr={self.min_lr} is above learning_rate={self.learning_rate}")
        if self.holdout == "time" and not self.split_time:
            raise UsageError("holdout=time needs split_time= (an ISO date/time like 2024-03-01, or a fraction like 0.9)")
        if self.split_time and self.holdout != "time":
            raise UsageError(f"split_time={self.split_time}: applies to holdout=time only (holdout={self.holdout})")
        if self.fusion_weights != "auto" and parse_weights(self.fusion_weights)[2] and not self.content:
            raise UsageError(f"fusion_weights={self.fusion_weights}: a content weight (the third) needs content=")
        return self

    def save(self, path: str) -> None:
        from .files import write_json
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str) -> "Config":
        """A saved config.json; a missing, broken or unknown key is a DataError naming the file."""
        from .data import read_json
        d = read_json(path)
        if not isinstance(d, dict):
            raise DataError(f"{path}: expected a JSON object of config keys")
        known = {f.name for f in fields(cls)}
        d = {**LEGACY, **d}  # keys a run written before they existed did not use
        if isinstance(d.get("fuse_transitions"), bool):  # briefly a bool
            d["fuse_transitions"] = str(d["fuse_transitions"]).lower()
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(f"{path}: unknown config key {unknown[0]!r} (written by another nanorec version?)")
        try:
            return cls(**d).validate()
        except UsageError as e:
            raise DataError(f"{path}: {e}") from None


# config.json written before a key existed: the value that run actually used
LEGACY = {"fuse_transitions": "false", "future_decay": 0.0, "fusion_weights": "auto", "time_format": "",
          "split_time": "", "context_targets": "none"}

PYTYPES = {"str": str, "int": int, "float": float, "bool": bool}


def _positive(x) -> bool:
    return x > 0


def _non_negative(x) -> bool:
    return x >= 0


def _split_time_ok(text: str) -> bool:
    from .data import parse_split_time
    return parse_split_time(text) is not None


def _filter_ok(text: str) -> bool:
    from .data.columns import _parse_filter
    try:
        _parse_filter(text, "target_filter")
    except UsageError:
        return False
    return True


WEIGHT_NAMES = ("transitions", "cooccurrence", "content")  # fusion.SIGNALS (that module needs torch)


def weights_text(value):
    """fusion_weights given in Python as metrics.json holds them, {"transitions": w1, "cooccurrence":
    w2[, "content": w3]}, or as a sequence (w1, w2[, w3]) -> the key's text "w1,w2[,w3]"; anything
    else unchanged (a str is checked by RULES, another type refused by validate)."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in WEIGHT_NAMES]
        if unknown or not {"transitions", "cooccurrence"} <= set(value):
            raise UsageError(f"fusion_weights={value!r}: expected the keys {', '.join(WEIGHT_NAMES)} "
                             "(as metrics.json's fusion weights; content may be left out)")
        value = [value[k] for k in WEIGHT_NAMES if k in value]
    if isinstance(value, (list, tuple)):
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in value):
            raise UsageError(f"fusion_weights={value!r}: expected numbers")
        return ",".join(repr(float(w)) for w in value)
    return value


def parse_weights(text: str) -> tuple[float, float, float] | None:
    """fusion_weights "w1,w2[,w3]" -> (w1, w2, w3) (w3 = 0 when left out), or None when it
    is not two or three finite numbers in 0..100."""
    parts = text.split(",")
    # plain decimals only: float() also takes "1_0" (10), "１" and "infinity", which no one means here
    if not all(re.fullmatch(r"(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", p.strip(), re.ASCII) for p in parts):
        return None
    ws = tuple(float(p) for p in parts)
    ok = len(ws) in (2, 3) and all(math.isfinite(w) and 0 <= w <= 100 for w in ws)
    return (ws + (0.0,))[:3] if ok else None


# key -> (check, what a good value is): shown in `nanorec train --help`
RULES = {
    "method": (lambda x: x in ("gpt", "popularity", "transitions", "cooccurrence", "svd"),
               "gpt, popularity, transitions, cooccurrence or svd"),
    "fuse_transitions": (lambda x: x in ("auto", "true", "false"), "auto, true or false"),
    "fusion_weights": (lambda x: x == "auto" or parse_weights(x) is not None,
                       "auto, or two or three numbers in 0..100: w1,w2[,w3] (transitions, co-occurrence, content)"),
    "holdout": (lambda x: x in ("loo", "last", "none", "time"), "loo, last, none or time"),
    "target_filter": (lambda x: x == "" or _filter_ok(x), "empty (every event is a target) or column=value[,value...]"),
    "time_format": (lambda x: x == "" or "%" in x, "empty (ISO dates or numbers) or a strptime format such as %d/%m/%Y"),
    "split_time": (lambda x: x == "" or _split_time_ok(x),
                   "an ISO date/time (2024-03-01, 2024-03-01T12:00:00) or a number: a fraction of the events "
                   "in (0, 1), else a time in the time column's own units"),
    "block_size": (lambda x: 1 <= x <= 100_000, "an integer in 1..100000"),
    "n_layer": (lambda x: 1 <= x <= 64, "an integer in 1..64"),
    "n_head": (lambda x: 1 <= x <= 64, "an integer in 1..64"),
    "n_embd": (lambda x: 1 <= x <= 8192, "an integer in 1..8192"),
    "dropout": (lambda x: 0.0 <= x < 1.0 or x == -1.0, "a number in [0, 1), or -1 (auto)"),
    "attention": (lambda x: x in ("sdpa", "flex"), "sdpa or flex"),
    "batch_size": (lambda x: 1 <= x <= 1_000_000, "an integer in 1..1000000"),
    "learning_rate": (lambda x: 0 < x <= 10, "a number in (0, 10]"),
    "min_lr": (_non_negative, "a number >= 0"),
    "warmup_steps": (_non_negative, "an integer >= 0"),
    "max_steps": (_positive, "an integer >= 1"),
    "decay_steps": (_non_negative, "an integer >= 0 (0 = max_steps)"),
    "weight_decay": (_non_negative, "a number >= 0"),
    "beta1": (lambda x: 0 <= x < 1, "a number in [0, 1)"),
    "beta2": (lambda x: 0 <= x < 1, "a number in [0, 1)"),
    "grad_clip": (_non_negative, "a number >= 0 (0 = no clipping)"),
    "loss": (lambda x: x in ("auto", "full", "sampled"), "auto, full or sampled"),
    "num_negatives": (lambda x: 0 <= x <= 1_000_000, "an integer in 0..1000000 (0 = auto)"),
    "negatives": (lambda x: x in ("popularity", "uniform", "in_batch"), "popularity, uniform or in_batch"),
    "future_decay": (lambda x: 0.0 <= x < 1.0, "a number in [0, 1)"),
    "valid_users": (_non_negative, "an integer >= 0 (0 = auto)"),
    "eval_interval": (_positive, "an integer >= 1"),
    "eval_batch_size": (lambda x: 1 <= x <= 1_000_000, "an integer in 1..1000000"),
    "patience": (_non_negative, "an integer >= 0 (0 = never stop early)"),
    "checkpoint_interval": (_positive, "an integer >= 1"),
    "seed": (lambda x: 0 <= x < 2**63, "an integer in 0..2^63-1"),
    "device": (lambda x: x == "auto" or x == "cpu" or x == "mps" or re.fullmatch(r"cuda(:\d+)?", x) is not None,
               "auto, cpu, cuda, cuda:N or mps"),
    "dtype": (lambda x: x in ("auto", "float32", "bfloat16"), "auto, float32 or bfloat16"),
    "threads": (lambda x: 0 <= x <= 1024, "an integer in 0..1024 (0 = torch's default)"),
    "context_targets": (lambda x: x in ("auto", "next", "none"), "auto, next or none"),
    "exclude_seen": (lambda x: x in ("auto", "true", "false"), "auto, true or false"),
}


def _parse_value(name: str, typ: type, raw: str):
    if typ is bool:
        low = raw.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"{name}={raw!r}: expected true or false")
    try:
        value = typ(raw)
    except (ValueError, OverflowError):
        raise UsageError(f"{name}={raw!r}: expected {typ.__name__}") from None
    if typ is float and not math.isfinite(value):
        raise UsageError(f"{name}={raw!r}: expected a finite number")
    return value


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply `key=value` strings and validate the result; an unknown key, a bad
    value or one out of range raises UsageError naming the key."""
    types = {f.name: f.type for f in fields(Config)}
    changes = {}
    for item in overrides:
        if "=" not in item:
            hint = f" (did you mean {item.lstrip('-').replace('-', '_')}=...?)" if item.lstrip("-").replace("-", "_") in types else ""
            raise UsageError(f"{item!r}: config overrides are key=value{hint} (see `nanorec train --help` for keys)")
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("-").replace("-", "_")
        if key not in types:
            close = difflib.get_close_matches(key, types, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UsageError(f"unknown config key {key!r}{hint}")
        changes[key] = _parse_value(key, PYTYPES[types[key]], raw)
    return dataclasses.replace(cfg, **changes).validate()


def add_run_writer_options(p, resume_help: str, overwrite_help: str) -> None:
    """The options every command that writes a run folder shares (train, update): --resume or
    --overwrite, --quiet, and the key=value overrides."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help=resume_help)
    mode.add_argument("--overwrite", action="store_true", help=overwrite_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines on the terminal")
    p.add_argument("overrides", nargs="*", metavar="key=value")


def check_dashed_keys(argv: list[str], options) -> None:
    """`--max_steps 10` (or `--max-steps=10`) where a config key is meant: argparse
    would say "unrecognized arguments"; say how to set it instead. `options` are
    the command's own option strings (`--data` is an option, not the key)."""
    names = {f.name for f in fields(Config)}
    for i, tok in enumerate(argv):
        if tok == "--":
            return
        if not tok.startswith("--") or tok.split("=", 1)[0] in options:
            continue
        key, eq, value = tok[2:].partition("=")
        key = key.replace("-", "_")
        if key in names:
            if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("-") and "=" not in argv[i + 1]:
                value = argv[i + 1]
            raise UsageError(f"{tok}: config keys are set as key=value, not as options: {key}={value or '...'}")


def describe() -> str:
    """Keys, defaults and their comments, for --help. A comment continued on the
    next source lines stays under its first line, and the key's [valid range]
    follows the whole comment."""
    import inspect
    src = inspect.getsource(Config).splitlines()
    field_indent = next(len(x) - len(x.lstrip()) for x in src if x.startswith(" ") and x.strip())
    out, rule = [], None  # rule: the [valid range] still to append to the current key's last line
    for line in src[1:]:
        s = line.strip()
        if s.startswith(("def ", "@")):  # the fields end where the methods begin
            break
        if s.startswith("#") and not s.startswith("# "):
            continue
        continued = s.startswith("# ") and len(line) - len(line.lstrip()) > field_indent
        if continued and out:  # the previous key's comment, continued: aligned under its "#"
            out.append(" " * out[-1].index("#") + s)
            continue
        if rule:
            out[-1] += f"  [{rule}]"
            rule = None
        if ":" in s and "=" in s and not s.startswith(("def", "return", "@", "class")):
            out.append("  " + s)
            rule = RULES[s.split(":", 1)[0]][1] if s.split(":", 1)[0] in RULES else None
        elif s.startswith("# ") and not out[-1:] == [""]:  # a section heading
            out.append("  " + s)
    if rule:
        out[-1] += f"  [{rule}]"
    return "\n".join(out)
