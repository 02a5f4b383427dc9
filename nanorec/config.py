"""One flat, typed config for a training run.

Every field has a default and a comment; the command line overrides any of
them as `key=value` (an unknown key or a value of the wrong type is an error),
and the resolved config is saved as `config.json` in every run directory.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields


@dataclass
class Config:
    # data
    data: str = ""                 # interactions: S3-Rec .txt, .csv/.parquet, or a challenge folder
    user_col: str = "user_id"      # column names for .csv/.parquet input
    item_col: str = "item_id"
    time_col: str = "timestamp"
    all_data: bool = False         # also train on validation targets (for the step count chosen on validation)
    content: str = ""              # comma-separated frozen content tables (.safetensors), added as proj(content[item])
    # model
    block_size: int = 50           # packed row length = longest history the model sees (most recent items kept)
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    dropout: float = 0.5           # small data, many items: strong dropout generalises better
    bias: bool = True              # bias in Linear and LayerNorm layers
    attention: str = "sdpa"        # "sdpa" (boolean mask, reference) or "flex" (FlexAttention block mask, compiled)
    packing: bool = True           # many users per row; False = one user per row, left-aligned, padded
    # optimisation
    batch_size: int = 64           # rows of block_size tokens per step (~450 Beauty users)
    learning_rate: float = 1e-3
    min_lr: float = 1e-4           # cosine decay ends here
    warmup_steps: int = 100
    decay_lr: bool = True          # linear warmup + cosine decay; False = constant learning_rate after warmup
    max_steps: int = 3000          # the cosine schedule's length; early stopping may end the run first
    decay_steps: int = 0           # length of the cosine decay; 0 = max_steps (all_data sets it to replay a schedule)
    weight_decay: float = 0.1      # on matrices only (no decay on biases, LayerNorm, embeddings)
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0         # 0 disables clipping
    # evaluation and checkpoints
    eval_interval: int = 200       # steps between validation passes
    eval_batch_size: int = 1024
    patience: int = 5              # stop after this many validations without a better NDCG@10; 0 = never
    checkpoint_interval: int = 200 # steps between resumable checkpoints (ckpt.pt)
    # system
    seed: int = 1337
    device: str = "auto"           # "auto" = cuda when available, else cpu
    dtype: str = "auto"            # "auto" = bf16 autocast on cuda, fp32 on cpu; or "float32" / "bfloat16"
    compile: bool = False          # torch.compile the model (worth it on GPU)
    threads: int = 0               # torch CPU threads; 0 = leave torch's default
    progress: bool = True          # tqdm progress bars

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def load(cls, path: str) -> "Config":
        with open(path) as f:
            d = json.load(f)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _parse_value(name: str, typ: type, raw: str):
    if typ is bool:
        low = raw.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}={raw!r}: expected true or false")
    try:
        return typ(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected {typ.__name__}") from None


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply `key=value` strings; unknown keys and bad values raise ValueError."""
    types = {f.name: f.type for f in fields(Config)}
    pytypes = {"str": str, "int": int, "float": float, "bool": bool}
    changes = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"{item!r}: overrides are key=value (see `nanorec train --help` for keys)")
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("-").replace("-", "_")
        if key not in types:
            close = [k for k in types if k.startswith(key[:3])]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown config key {key!r}{hint}")
        changes[key] = _parse_value(key, pytypes[types[key]], raw)
    return dataclasses.replace(cfg, **changes)


def describe() -> str:
    """Keys, defaults and their comments, for --help."""
    import inspect
    src = inspect.getsource(Config).splitlines()
    out = []
    for line in src:
        s = line.strip()
        if s.startswith("#") and not s.startswith("# "):
            continue
        if ":" in s and "=" in s and not s.startswith(("def", "return", "@", "class")):
            out.append("  " + s)
        elif s.startswith("# ") and not out[-1:] == [""]:
            out.append("  " + s)
    return "\n".join(out)
