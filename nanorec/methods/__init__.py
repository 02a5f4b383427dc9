"""Every method behind one interface (methods/base.py, as RecTools' ModelBase for its zoo), found by
name: Run.open, train, tune, update and the leaderboard ask get(cfg.method), never a method's name."""
from __future__ import annotations

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
    return METHODS[name]
