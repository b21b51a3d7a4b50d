"""Callbacks writing the run folder as training goes: metrics.csv (one row per epoch, one
continuous file across resumptions) and curves.png."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import lightning as L
import pandas as pd
from lightning.pytorch.utilities import rank_zero_only

from lungcad.atomic import atomic_write
from lungcad.training.curves import plot_curves

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_auroc", "lr",
                  "epoch_time_s"]
# what each column is read from in trainer.callback_metrics
SOURCES = {"train_loss": "train_loss_epoch", "train_acc": "train_acc", "val_loss": "val_loss",
           "val_acc": "val_acc", "val_auroc": "val_auroc"}


def read_metrics(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=METRIC_COLUMNS)
    return pd.read_csv(path)


class MetricsCSV(L.Callback):
    """Writes ``metrics.csv`` after each epoch (validation included) and redraws ``curves.png``.

    A resumed run starts at the epoch after its last checkpoint; rows for that epoch and later
    (written before the interruption, not covered by a checkpoint) are dropped first, so each
    epoch appears once, in order.
    """

    def __init__(self, run_dir: Path, title: str = "", plot: bool = True):
        self.path = Path(run_dir) / "metrics.csv"
        self.curves = Path(run_dir) / "curves.png"
        self.title = title
        self.plot = plot
        self._epoch_start = 0.0

    def _write(self, table: pd.DataFrame) -> None:
        buffer = io.StringIO()
        table.to_csv(buffer, index=False, float_format="%.6g")
        atomic_write(self.path, buffer.getvalue().encode())

    @rank_zero_only
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        table = read_metrics(self.path)
        self._write(table[table["epoch"] < trainer.current_epoch].reindex(columns=METRIC_COLUMNS))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.monotonic()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch}
        for column, key in SOURCES.items():
            value = metrics.get(key)
            row[column] = float(value) if value is not None else math.nan
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else math.nan
        row["epoch_time_s"] = round(time.monotonic() - self._epoch_start, 3)
        table = read_metrics(self.path)
        table = table[table["epoch"] < trainer.current_epoch]
        new = pd.DataFrame([row])
        table = (pd.concat([table, new], ignore_index=True) if len(table) else new).reindex(
            columns=METRIC_COLUMNS)
        self._write(table)
        if self.plot:
            plot_curves(self.path, self.curves, self.title)
