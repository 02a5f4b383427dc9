"""Optional experiment trackers: TensorBoard and MLflow, when installed and asked for.

`track=tensorboard` writes RUN_DIR/tensorboard; `track=mlflow` logs the config as parameters and
every validation record (history.jsonl's) as metrics to the tracking URI in effect (MLFLOW_TRACKING_URI).
"""
from __future__ import annotations

import os

from ..errors import UsageError

TRACKERS = ("tensorboard", "mlflow")


def names(spec: str) -> list[str]:
    out = [t.strip() for t in spec.split(",") if t.strip()]
    for t in out:
        if t not in TRACKERS:
            raise UsageError(f"track={spec!r}: expected a comma-separated subset of {', '.join(TRACKERS)}")
    return out


def _load(t: str):
    """Tracker t's SummaryWriter (tensorboard) or module (mlflow), or one line to install it."""
    try:
        if t == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter
            return SummaryWriter
        import mlflow
        return mlflow
    except ImportError:
        raise UsageError(f"track={t}: the {t} package is not installed (pip install {t})") from None


def check(spec: str) -> None:
    """Before anything is written: every tracker asked for can be imported."""
    for t in names(spec):
        _load(t)


class Trackers:
    def __init__(self, spec: str, out_dir: str, config: dict):
        self.tb = self.mlflow = None
        for t in names(spec):
            if t == "tensorboard":
                self.tb = _load(t)(os.path.join(out_dir, "tensorboard"))
            else:
                self.mlflow = mlflow = _load(t)
                mlflow.start_run(run_name=os.path.basename(os.path.abspath(out_dir)))
                mlflow.log_params({k: v for k, v in config.items() if v != ""})

    def log(self, record: dict) -> None:
        step = record["step"]
        values = {k: float(v) for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
        if self.mlflow is not None:
            self.mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in values.items()}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.mlflow is not None:
            self.mlflow.end_run()
