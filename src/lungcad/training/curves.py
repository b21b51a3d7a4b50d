"""Training curves (accuracy and loss, training and validation) from a run's metrics.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_curves(metrics_csv: Path, out_png: Path, title: str = "") -> Path | None:
    """Two panels like the reference paper's figures: accuracy and loss per epoch.

    Validation AUROC, when present, is drawn dashed on the accuracy panel. Returns None when
    there is no epoch to plot yet.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from lungcad.atomic import atomic_write

    table = pd.read_csv(metrics_csv)
    if table.empty:
        return None
    epochs = table["epoch"] + 1  # people count epochs from 1
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in ((acc_ax, "acc", "accuracy"), (loss_ax, "loss", "loss")):
        for part, style in (("train", "-o"), ("val", "-s")):
            column = f"{part}_{metric}"
            if column in table and table[column].notna().any():
                ax.plot(epochs, table[column], style, markersize=3,
                        label="training" if part == "train" else "validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"model {label}")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if "val_auroc" in table and table["val_auroc"].notna().any():
        acc_ax.plot(epochs, table["val_auroc"], "--", color="grey", label="validation AUROC")
    acc_ax.set_ylim(-0.02, 1.02)
    acc_ax.legend(loc="lower right")
    loss_ax.legend(loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write(Path(out_png), buffer.getvalue())
    return Path(out_png)
