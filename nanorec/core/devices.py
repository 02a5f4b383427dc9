"""Which device runs the model, and in which precision."""
from __future__ import annotations

import contextlib
import re

import torch

from ..errors import UsageError

DEVICE_HELP = "auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps"


def pick_device(name: str) -> str:
    """'auto' -> 'cuda' or 'cpu'; any other name is checked once: a typo is one line, not a torch traceback."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if m:
        if not torch.cuda.is_available():
            raise UsageError(f"device={name!r}: CUDA is not available on this machine (use device=cpu or auto)")
        if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
            raise UsageError(f"device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return name
    if name == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise UsageError("device='mps': MPS is not available on this machine")
        return name
    raise UsageError(f"device={name!r}: expected {DEVICE_HELP}")


def autocast(dtype: str, device: str):
    """bf16 autocast on CUDA (unless dtype=float32), plain fp32 elsewhere (unless dtype=bfloat16)."""
    use_bf16 = dtype == "bfloat16" or (dtype == "auto" and device.startswith("cuda"))
    if use_bf16:
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()
