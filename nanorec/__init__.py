"""nanorec: a nanoGPT-style next-item recommender.

    from nanorec import Recommender
    rec = Recommender(max_steps=3000).fit(df, user_col="customer", item_col="sku", time_col="ts")
    rec.recommend(k=10)
"""

__version__ = "0.2.0"

from .api import Recommender  # noqa: E402
from .config import Config  # noqa: E402
from .errors import DataError, NanorecError, UsageError  # noqa: E402

__all__ = ["Recommender", "Config", "NanorecError", "DataError", "UsageError", "__version__"]
