"""Baselines: every one is a scorer (fit, then score(histories, users) -> (B, N+1))."""


def shippable() -> dict:
    """method name -> class, for the baselines that can be trained, saved as a run folder,
    recommended from and served exactly like a GPT run (`nanorec train method=NAME`).
    Each has fit(train, num_items, valid) / score(histories, users) / state() / from_state(state).
    LightGCN and content kNN need per-user embeddings or content tables: leaderboard only."""
    from .cooccurrence import CoOccurrence
    from .pop import Popularity
    from .svd import PureSVD
    from .transitions import Transitions
    return {"popularity": Popularity, "transitions": Transitions, "cooccurrence": CoOccurrence, "svd": PureSVD}
