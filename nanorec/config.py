"""One flat, typed config for a training run. Each key is one field, `key(default, help, rule,
auto)`: adding a key is adding a field. `key=value` on the command line is parsed by the field's
type and checked by its rule (a bad one is one line naming the key); --help lists the fields.
Training calls `resolve` once, knowing the data: each auto becomes the value the run uses, and
config.json saves those values and the list of keys that were auto ("auto")."""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field, fields

from .data import parse_split_time, read_json
from .data.columns import parse_filter
from .errors import DataError, UsageError
from .runs.files import write_json


def key(default, help: str = "", rule: tuple | None = None, auto=None, section: str = ""):
    """A config field: default, help (its --help lines), rule = (check, what a good value is), auto =
    the sentinel `resolve` replaces with the value used (None: no auto), section = a --help heading."""
    return field(default=default, metadata={"help": help, "rule": rule, "auto": auto, "section": section})


def one_of(*values: str) -> tuple:
    return (lambda x: x in values), ", ".join(values[:-1]) + " or " + values[-1]


def ints(lo: int, hi: int | None = None, note: str = "") -> tuple:
    if hi is None:
        return (lambda x: x >= lo), f"an integer >= {lo}{note}"
    return (lambda x: lo <= x <= hi), f"an integer in {lo}..{hi}{note}"


def non_negative(note: str = "") -> tuple:
    return (lambda x: x >= 0), f"a number >= 0{note}"


UNIT = (lambda x: 0 <= x < 1), "a number in [0, 1)"


def _filter_ok(text: str) -> bool:
    try:
        parse_filter(text, "target_filter")
    except UsageError:
        return False
    return True


@dataclass
class Config:
    data: str = key("", "interactions: S3-Rec .txt, .csv/.parquet, or a challenge folder", section="data")
    user_col: str = key("user_id", "column names for .csv/.parquet input")
    item_col: str = key("item_id")
    time_col: str = key("timestamp", '"none" = file order (a missing time column is an error otherwise)')
    time_format: str = key("", "how a text time column is written, e.g. %d/%m/%Y (day first) or %m/%d/%Y %H:%M;\n"
                           '"" = ISO dates (2024-01-31, 2024-01-31T12:00) or numbers: 03/01/2024 is an error',
                           ((lambda x: x == "" or "%" in x),
                            "empty (ISO dates or numbers) or a strptime format such as %d/%m/%Y"))
    filter: str = key("", 'keep only rows whose column equals a value, e.g. "event_type=purchase,cart"')
    weight_col: str = key("", "numeric column of per-event weights, each > 0: a target's weight in the GPT's loss\n"
                          "and in the transitions / co-occurrence counts (e.g. purchase 3, cart 2, view 1)")
    target_filter: str = key(
        "", 'the events to predict, as filter=, e.g. "event_type=purchase": every event stays\n'
        "in the histories the model reads (views as context); only matching ones are the\n"
        "validation/test targets and, without weight_col, the loss targets and the pairs\n"
        "the count tables count (with weight_col every event is learned, with its weight)",
        ((lambda x: x == "" or _filter_ok(x)), "empty (every event is a target) or column=value[,value...]"))
    holdout: str = key("loo", "loo: valid/test = 2nd-last/last item | last: valid = last | none: train on all |\n"
                       "time: test = every event at/after split_time (all of a user's next items),\n"
                       "valid = the same fraction of the events before it (a date: their last 10%),\n"
                       "train = what comes before that", one_of("loo", "last", "none", "time"))
    split_time: str = key("", "holdout=time: an ISO date/time (2024-03-01, 2024-03-01T12:00) or a fraction of\n"
                          "the log's events in time order (0.9: the last 10% of events are the test window)",
                          ((lambda x: x == "" or parse_split_time(x) is not None),
                           "an ISO date/time (2024-03-01, 2024-03-01T12:00:00) or a number: a "
                           "fraction of the events in (0, 1), else a time in the time column's own units"))
    all_data: bool = key(False, "also train on validation targets (for the step count chosen on validation)")
    content: str = key("", "comma-separated frozen content tables (.safetensors), added as proj(content[item])")
    method: str = key("gpt", "gpt, or a baseline that ships the same way: popularity, transitions, cooccurrence, svd",
                      one_of("gpt", "popularity", "transitions", "cooccurrence", "svd"), section="model")
    block_size: int = key(50, "packed row length = longest history the model sees (most recent items kept)",
                          ints(1, 100_000))
    n_layer: int = key(2, rule=ints(1, 64))
    n_head: int = key(2, rule=ints(1, 64))
    n_embd: int = key(64, rule=ints(1, 8192))
    dropout: float = key(-1.0, "-1 = auto: 0.5 with the full softmax, 0.1 with the sampled one (loss.py,\n"
                         "AUTO_DROPOUT: measured per output layer); or a number in [0, 1)",
                         ((lambda x: 0.0 <= x < 1.0 or x == -1.0), "a number in [0, 1), or -1 (auto)"), auto=-1.0)
    bias: bool = key(True, "bias in Linear and LayerNorm layers")
    attention: str = key("sdpa", '"sdpa" (boolean mask, reference) or "flex" (FlexAttention block mask; CUDA\n'
                         "training only, and it turns compile on)", one_of("sdpa", "flex"))
    fuse_transitions: str = key(
        "auto", "add w1 * log(transition probs) + w2 * log(co-occurrence probs) + w3 * content\n"
        "cosine to the GPT's log-probs, weights (0 included) chosen on validation:\n"
        '"true" or "auto" (the same: exact at any catalogue size, fusion.py), "false"',
        one_of("auto", "true", "false"), auto="auto")
    fusion_weights: str = key(
        "auto", '"auto" = chosen on validation (the run\'s fusion.json holds them); "w1,w2[,w3]" =\n'
        "fixed, e.g. the weights a validated run chose, for a holdout=none run that has no\n"
        'validation to choose on (in Python also metrics.json\'s {"transitions": w1, ...} dict or a tuple)',
        ((lambda x: x == "auto" or parse_weights(x) is not None),
         "auto, or two or three finite numbers >= 0: w1,w2[,w3] (transitions, co-occurrence, content)"))
    packing: bool = key(True, "many users per row; False = one user per row, left-aligned, padded")
    batch_size: int = key(64, "rows of block_size tokens per step (~450 Beauty users)", ints(1, 1_000_000),
                          section="optimisation")
    learning_rate: float = key(1e-3, rule=((lambda x: 0 < x <= 10), "a number in (0, 10]"))
    min_lr: float = key(1e-4, "cosine decay ends here", non_negative())
    warmup_steps: int = key(100, "steps of linear warmup; more than max_steps is allowed but warned at the\n"
                            "start of training (the run never leaves warmup: no peak, no decay)", ints(0))
    decay_lr: bool = key(True, "linear warmup + cosine decay; False = constant learning_rate after warmup")
    max_steps: int = key(3000, "the cosine schedule's length; early stopping may end the run first", ints(1))
    decay_steps: int = key(0, "length of the cosine decay; 0 = max_steps (all_data sets it to replay a schedule)",
                           ints(0, note=" (0 = max_steps)"), auto=0)
    weight_decay: float = key(0.1, "on matrices only (no decay on biases, LayerNorm, embeddings)", non_negative())
    beta1: float = key(0.9, rule=UNIT)
    beta2: float = key(0.98, rule=UNIT)
    grad_clip: float = key(1.0, "0 disables clipping", non_negative(" (0 = no clipping)"))
    loss: str = key("auto", 'output layer: "full" softmax, "sampled" softmax, "auto" = full up to 20,000 items',
                    one_of("auto", "full", "sampled"), auto="auto")
    num_negatives: int = key(0, "sampled softmax: negatives drawn each step, shared by all its targets; 0 = auto:\n"
                             "1,024 doubling with the epochs max_steps covers past 8, up to 4,096\n"
                             "(loss.AUTO_NEGATIVES: measured per budget); a run with no sampled softmax: 0",
                             ints(0, 1_000_000, " (0 = auto)"), auto=0)
    negatives: str = key("popularity", 'sampled softmax negatives: "popularity", "uniform" or "in_batch"',
                         one_of("popularity", "uniform", "in_batch"))
    future_decay: float = key(0.0, "soft labels: each target also credits the user's next 2 items with weights\n"
                              "decay, decay^2 (normalised); 0 = the next item only", UNIT)
    eval_interval: int = key(200, "steps between validation passes", ints(1), section="evaluation and checkpoints")
    eval_batch_size: int = key(1024, rule=ints(1, 1_000_000))
    valid_users: int = key(0, "validation (checkpoints, early stopping, fusion weights) on a fixed seeded sample\n"
                           "of this many users; 0 = auto: all of them while users x items <= 2e9, else a\n"
                           "sample of 2e9 / items users (validation.VALID_WORK says why); N >= all users: all",
                           ints(0, note=" (0 = auto)"), auto=0)
    patience: int = key(5, "stop after this many validations without a better NDCG@10; 0 = never",
                        ints(0, note=" (0 = never stop early)"))
    checkpoint_interval: int = key(200, "steps between resumable checkpoints (ckpt.pt)", ints(1))
    seed: int = key(1337, rule=((lambda x: 0 <= x < 2**63), "an integer in 0..2^63-1"), section="system")
    device: str = key("auto", '"auto" = cuda when available, else cpu (each process\'s own: kept as auto in a run)',
                      ((lambda x: x in ("auto", "cpu", "mps") or re.fullmatch(r"cuda(:\d+)?", x) is not None),
                       "auto, cpu, cuda, cuda:N or mps"))
    dtype: str = key("auto", '"auto" = bf16 autocast on cuda, fp32 on cpu (on the device scoring); or "float32" / "bfloat16"',
                     one_of("auto", "float32", "bfloat16"))
    compile: bool = key(False, "torch.compile the transformer for training steps (on CUDA with bf16 1.3x\n"
                        "faster steps; with float32 it measured slower: benchmarks/README.md)")
    threads: int = key(0, "torch CPU threads; 0 = leave torch's default", ints(0, 1024, " (0 = torch's default)"))
    progress: bool = key(True, "tqdm progress bars (shown on a terminal only)")
    track: str = key("", 'also log to "tensorboard" and/or "mlflow" (comma-separated; needs the package)')
    context_targets: str = key("auto", 'target_filter: what a context slot (a view) learns: "next" = the next purchase of\n'
                               'its history, "none" = nothing (only the slot right before a purchase); auto = next',
                               one_of("auto", "next", "none"), auto="auto")
    exclude_seen: str = key("auto", 'lists leave out a user\'s earlier items: "true", "false" (re-buys listed), "auto" =\n'
                            "chosen on validation (after training: metrics.json's exclude_seen holds the choice)",
                            one_of("auto", "true", "false"))

    # not a field: the keys `resolve` replaced (None: not resolved, e.g. an old run's config.json)
    auto = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "Config":
        """Every key's type and range (its field's rule): a UsageError names the first bad key."""
        self.fusion_weights = weights_text(self.fusion_weights)
        for f in fields(self):
            value = getattr(self, f.name)
            want = TYPES[f.name]
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if type(value) is not want:
                raise UsageError(f"{f.name}={value!r}: expected {want.__name__}")
            if want is float and not math.isfinite(value):
                raise UsageError(f"{f.name}={value!r}: expected a finite number")
            wrong = expected(f.name, value)
            if wrong:
                raise UsageError(f"{f.name}={value!r}: expected {wrong}")
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
        """config.json: every key, and for a resolved config the keys that were auto."""
        write_json(path, self.to_dict() if self.auto is None else {**self.to_dict(), "auto": list(self.auto)})

    @classmethod
    def load(cls, path: str, every_key: bool = False) -> "Config":
        """A saved config.json; a broken or unknown key (every_key: a missing one too, but not one of
        LEGACY's) is a DataError naming the file. A run from before resolve(): .auto None."""
        d = read_json(path)
        if not isinstance(d, dict):
            raise DataError(f"{path}: expected a JSON object of config keys")
        missing = [k for k in TYPES if k not in d and k not in LEGACY] if every_key else []
        if missing:
            raise DataError(f"{path}: config key {missing[0]!r} is missing" + (f" (and {len(missing) - 1} more)"
                            if len(missing) > 1 else "") + "; restore the file, or train the run again")
        d = {**LEGACY, **d}  # keys a run written before they existed did not use
        auto = d.pop("auto", None)
        if auto is not None and not (isinstance(auto, list) and set(auto) <= set(AUTO)):
            raise DataError(f"{path}: \"auto\" must list config keys that have an auto value ({', '.join(AUTO)})")
        if isinstance(d.get("fuse_transitions"), bool):  # briefly a bool
            d["fuse_transitions"] = str(d["fuse_transitions"]).lower()
        unknown = sorted(set(d) - set(TYPES))
        if unknown:
            raise DataError(f"{path}: unknown config key {unknown[0]!r} (written by another nanorec version?)")
        try:
            cfg = cls(**d).validate()
        except UsageError as e:
            raise DataError(f"{path}: {e}") from None
        cfg.auto = None if auto is None else tuple(auto)
        return cfg


TYPES = {f.name: {"str": str, "int": int, "float": float, "bool": bool}[f.type] for f in fields(Config)}
AUTO = {f.name: f.metadata["auto"] for f in fields(Config) if f.metadata["auto"] is not None}  # key -> sentinel

# config.json written before a key existed: the value that run actually used
LEGACY = {"fuse_transitions": "false", "future_decay": 0.0, "fusion_weights": "auto", "time_format": "",
          "split_time": "", "context_targets": "none", "exclude_seen": "true"}


def expected(name: str, value) -> str | None:
    """What a good value of key `name` is, when `value` (of the key's type) is not one; else None."""
    rule = Config.__dataclass_fields__[name].metadata["rule"]
    return rule[1] if rule and not rule[0](value) else None


def resolve(cfg: Config, num_items: int, num_valid: int | None = None, batches_per_epoch=None) -> Config:
    """Every auto key -> the value a run on this data uses (rules: loss.py, validation.VALID_WORK);
    the copy's .auto lists the keys that were auto. num_valid / batches_per_epoch() (called only for
    num_negatives=auto): None leaves valid_users / num_negatives as they are. Idempotent."""
    from .core.loss import AUTO_DROPOUT, resolve_loss, resolve_negatives  # torch: config stays importable without it
    from .core.validation import validation_users  # it imports rundir, which imports config
    auto = tuple(k for k, sentinel in AUTO.items() if getattr(cfg, k) == sentinel)
    loss = resolve_loss(cfg.loss, num_items)
    sampled = loss == "sampled" and batches_per_epoch is not None  # train passes None for a fitted method
    out = dataclasses.replace(
        cfg, loss=loss, dropout=AUTO_DROPOUT[loss] if cfg.dropout == -1.0 else cfg.dropout,
        fuse_transitions="true" if cfg.fuse_transitions == "auto" else cfg.fuse_transitions,
        context_targets="next" if cfg.context_targets == "auto" else cfg.context_targets,
        decay_steps=cfg.decay_steps or cfg.max_steps,
        num_negatives=resolve_negatives(cfg.num_negatives, cfg.max_steps / batches_per_epoch())
        if sampled and cfg.num_negatives == 0 else cfg.num_negatives,
        valid_users=cfg.valid_users if num_valid is None else validation_users(num_valid, cfg.valid_users, num_items))
    out.auto = tuple(dict.fromkeys((cfg.auto or ()) + auto))
    return out


def unresolved(cfg: Config) -> Config:
    """A resolved config with its auto keys back to auto: the settings as given (update, --resume)."""
    return dataclasses.replace(cfg, **{k: AUTO[k] for k in cfg.auto or ()})


WEIGHT_NAMES = ("transitions", "cooccurrence", "content")  # the fusion weights' order (fusion.SIGNALS is this tuple)


def weights_text(value):
    """fusion_weights as metrics.json holds them ({"transitions": w1, ...}) or a sequence (w1, w2[, w3])
    -> the key's text "w1,w2[,w3]"; anything else unchanged (for the rule or validate to check)."""
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
    """fusion_weights "w1,w2[,w3]" -> (w1, w2, w3 or 0), or None unless two or three finite numbers >= 0."""
    parts = text.split(",")
    # plain decimals only: float() also takes "1_0" (10), "１" and "infinity", which no one means here
    if not all(re.fullmatch(r"(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", p.strip(), re.ASCII) for p in parts):
        return None
    ws = tuple(float(p) for p in parts)
    ok = len(ws) in (2, 3) and all(math.isfinite(w) and w >= 0 for w in ws)
    return (ws + (0.0,))[:3] if ok else None


def parse_value(name: str, raw: str):
    """The text of key `name`'s value -> the key's type (bool: 1/true/yes/on, 0/false/no/off)."""
    typ = TYPES[name]
    if typ is bool:
        low = raw.lower()
        if low in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return low in ("1", "true", "yes", "on")
        raise UsageError(f"{name}={raw!r}: expected true or false")
    try:
        value = typ(raw)
    except (ValueError, OverflowError):
        raise UsageError(f"{name}={raw!r}: expected {typ.__name__}") from None
    if typ is float and not math.isfinite(value):
        raise UsageError(f"{name}={raw!r}: expected a finite number")
    return value


def check_keys(names) -> None:
    """An unknown key is a UsageError naming it (and the keys it is close to)."""
    for name in names:
        if name not in TYPES:
            close = difflib.get_close_matches(name, TYPES, n=3)
            raise UsageError(f"unknown config key {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """`key=value` strings applied and validated: a bad one is a UsageError naming the key."""
    changes = {}
    for item in overrides:
        if "=" not in item:
            guess = item.lstrip("-").replace("-", "_")
            hint = f" (did you mean {guess}=...?)" if guess in TYPES else ""
            raise UsageError(f"{item!r}: config overrides are key=value{hint} (see `nanorec train --help` for keys)")
        name, raw = item.split("=", 1)
        name = name.strip().lstrip("-").replace("-", "_")
        check_keys([name])
        changes[name] = parse_value(name, raw)
    return dataclasses.replace(cfg, **changes).validate()


def add_run_writer_options(p, resume_help: str, overwrite_help: str) -> None:
    """The options of every command that writes a run folder (train, update)."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help=resume_help)
    mode.add_argument("--overwrite", action="store_true", help=overwrite_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines on the terminal")
    p.add_argument("overrides", nargs="*", metavar="key=value")


def check_dashed_keys(argv: list[str], options) -> None:
    """`--max_steps 10` (or `--max-steps=10`) for a config key: say how to set it, where argparse would
    say "unrecognized arguments". `options`: the command's own option strings (`--data`)."""
    for i, tok in enumerate(argv):
        if tok == "--":
            return
        if not tok.startswith("--") or tok.split("=", 1)[0] in options:
            continue
        name, eq, value = tok[2:].partition("=")
        name = name.replace("-", "_")
        if name in TYPES:
            if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("-") and "=" not in argv[i + 1]:
                value = argv[i + 1]
            raise UsageError(f"{tok}: config keys are set as key=value, not as options: {name}={value or '...'}")


def describe() -> str:
    """Keys, defaults, help and [valid range] for --help, under section headings."""
    out = []
    for f in fields(Config):
        meta = f.metadata
        if meta["section"]:
            out.append(f"  # {meta['section']}")
        default = f'"{f.default}"' if f.type == "str" else repr(f.default)
        head = f"  {f.name}: {f.type} = {default}"
        lines = meta["help"].split("\n") if meta["help"] else []
        out.append(f"{head:<33} # {lines[0]}" if lines else head)
        out += [" " * 34 + "# " + line for line in lines[1:]]
        if meta["rule"]:
            out[-1] += f"  [{meta['rule'][1]}]"
    return "\n".join(out)
