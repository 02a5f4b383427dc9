"""nanorec: a nanoGPT-style next-item recommender."""

__version__ = "0.1.0"
