"""Ranks -> metrics: full-ranking accuracy, beyond-accuracy, baselines beside a run, curves."""
