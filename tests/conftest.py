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
