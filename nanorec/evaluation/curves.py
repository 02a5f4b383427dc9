"""curves.png: train / validation loss by step, validation NDCG@10 by step and by training time
(runs compared at equal steps or equal wall time); a fused run's shipped NDCG@10 is a dashed line.
Needs matplotlib (the baselines extra); without it the run just has no picture.
"""
from __future__ import annotations

import math

from ..runs.files import atomic_write


def plot_curves(history: list[dict], path: str, title: str = "", fused: float | None = None) -> bool:
    """Write the picture to `path`; fused: the shipped fused model's validation NDCG@10 (the curves
    are the GPT's alone). -> False without matplotlib or a history."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not history:
        return False

    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(steps, [h["train_loss"] for h in history], label="train (interval mean)")
    if "valid_loss" in history[0]:
        axes[0].plot(steps, [h["valid_loss"] for h in history], label="validation")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("cross-entropy")
    axes[0].legend(fontsize=8)
    if "NDCG@10" in history[0]:
        ndcg = [h["NDCG@10"] for h in history]
        best = max(range(len(ndcg)), key=lambda i: ndcg[i] if not math.isnan(ndcg[i]) else -1)
        axes[1].plot(steps, ndcg, marker=".")
        axes[1].axvline(steps[best], color="tab:red", linestyle=":", label=f"GPT alone: best {ndcg[best]:.4f} @ {steps[best]}")
        if fused is not None:
            for ax in axes[1:]:
                ax.axhline(fused, color="tab:green", linestyle="--", label=f"shipped (fused) {fused:.4f}")
            axes[2].legend(fontsize=8)
        axes[1].legend(fontsize=8)
        axes[2].plot([h.get("train_seconds", 0) / 60 for h in history], ndcg, marker=".")
    else:
        for ax in axes[1:]:
            ax.text(0.5, 0.5, "no validation split", ha="center", va="center", transform=ax.transAxes)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("validation NDCG@10")
    axes[2].set_xlabel("training minutes (validation excluded)")
    axes[2].set_ylabel("validation NDCG@10")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return True
