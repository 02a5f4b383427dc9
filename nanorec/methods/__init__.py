"""Every method behind one interface (methods/base.py: fit / scorer / save / load, as RecTools'
ModelBase does for its zoo), found by name here. Run.open, train, tune, update and the
leaderboard ask the registry; none of them branches on a method's name.

    get("transitions").fit(train, num_items, valid)       a fitted model
    get(cfg.method).open(run_dir, cfg, item_ids, device)  (model, scorer) of a run folder
"""
from __future__ import annotations

from ..errors import UsageError
from .base import Method
from .cooccurrence import CoOccurrence
from .gpt import GPTMethod
from .knn import ContentKNN
from .lightgcn import LightGCN
from .popularity import Popularity
from .svd import PureSVD
from .transitions import Transitions

# name -> method. Content kNN needs a content table and LightGCN per-user embeddings of the
# training graph's users: leaderboard only (config's method key lists the ones that ship).
METHODS = {m.name: m for m in (
    GPTMethod(),
    Method("popularity", Popularity),
    Method("transitions", Transitions, takes_weights=True),
    Method("cooccurrence", CoOccurrence, takes_weights=True),
    Method("svd", PureSVD),
    Method("knn", ContentKNN),
    Method("lightgcn", LightGCN),
)}


def get(name: str) -> Method:
    """The registered method `name` (config.py checks a run's method key before it is asked)."""
    if name not in METHODS:
        raise UsageError(f"method={name!r}: expected one of {', '.join(METHODS)}")
    return METHODS[name]
