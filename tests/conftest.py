import hashlib
import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def shared_file(*parts):
    """A file from ../shared/data, or skip the test where that folder is absent."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present")
    return path


def snapshot(path):
    """{relative path: sha256} of every file under `path` (None when absent): what a test compares
    before and after a failing call to show nothing on disk changed."""
    if not os.path.lexists(path):
        return None
    out = {}
    for dirpath, _, filenames in os.walk(path):
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, path)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out
