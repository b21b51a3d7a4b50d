"""Report figures, drawn only from the report dict (report.json is their single source).

matplotlib's object API with the Agg canvas: no pyplot global state, no display needed.
"""

from __future__ import annotations

import io

import numpy as np

FIGURE_SIZE = (5.0, 4.2)
DPI = 110


def _new_figure(size: tuple[float, float] = FIGURE_SIZE):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _mark_operating_point(ax, x, y, threshold) -> None:
    if x is None or y is None:
        return
    label = "operating point" + (f" (t = {threshold:.3g})" if threshold is not None else
                                 " (model's labels)")
    ax.plot([x], [y], "o", color="crimson", markersize=7, label=label, zorder=5)


def roc_figure(report: dict) -> bytes:
    figure = _new_figure()
    ax = figure.add_subplot()
    per_class = report.get("per_class")
    for name, curve in report["curves"]["roc"].items():
        auc = (report["metrics"]["roc_auc"]["value"] if per_class is None
               else per_class[name]["roc_auc"]["value"])
        ax.plot(curve["fpr"], curve["tpr"], lw=2, drawstyle="default",
                label=f"{name} (AUC {auc:.3f})" if auc is not None else name)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    point = report["curves"].get("operating_point")
    if point:
        _mark_operating_point(ax, point["fpr"], point["tpr"], point["threshold"])
    ax.set(xlabel="False positive rate (1 - specificity)", ylabel="True positive rate (sensitivity)",
           xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), title="ROC curve")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    return _png(figure)


def pr_figure(report: dict) -> bytes:
    figure = _new_figure()
    ax = figure.add_subplot()
    per_class = report.get("per_class")
    for i, (name, curve) in enumerate(report["curves"]["pr"].items()):
        ap = (report["metrics"]["average_precision"]["value"] if per_class is None
              else per_class[name]["average_precision"]["value"])
        line, = ax.step(curve["recall"], curve["precision"], where="post", lw=2,
                        label=f"{name} (AP {ap:.3f})" if ap is not None else name)
        ax.axhline(curve["prevalence"], ls="--", lw=1, color=line.get_color(), alpha=0.7)
    point = report["curves"].get("operating_point")
    if point:
        _mark_operating_point(ax, point["recall"], point["precision"], point["threshold"])
    ax.set(xlabel="Recall (sensitivity)", ylabel="Precision (PPV)", xlim=(-0.01, 1.01),
           ylim=(-0.01, 1.01), title="Precision-recall curve")
    ax.legend(loc="lower left", fontsize=8)
    return _png(figure)


def confusion_matrix_figure(report: dict) -> bytes:
    cm = report["confusion_matrix"]
    counts = np.array(cm["counts"])
    labels = cm["labels"]
    size = max(3.6, 1.1 * len(labels) + 2.2)
    figure = _new_figure((size + 0.8, size))
    ax = figure.add_subplot()
    row_totals = counts.sum(axis=1, keepdims=True)
    fraction = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)
    image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, f"{count}\n({fraction[i, j]:.0%})", ha="center", va="center", fontsize=9,
                color="white" if fraction[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="Predicted class", ylabel="True class", title="Confusion matrix")
    figure.colorbar(image, ax=ax, label="fraction of the true class", shrink=0.8)
    return _png(figure)


def reliability_figure(report: dict) -> bytes:
    calibration = report["calibration"]
    bins = [b for b in calibration["bins"] if b["n"]]
    figure = _new_figure((5.0, 5.2))
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    top.plot([b["mean_confidence"] for b in bins], [b["observed_frequency"] for b in bins],
             "o-", lw=2, label=f"model (ECE {calibration['ece']:.3f})")
    binary = report["task"]["binary"]
    top.set(ylabel="Fraction of positives" if binary else "Fraction correct",
            xlim=(0, 1), ylim=(-0.01, 1.01), title="Reliability diagram")
    top.legend(loc="upper left", fontsize=8)
    edges = [b["lower"] for b in calibration["bins"]]
    width = calibration["bins"][0]["upper"] - calibration["bins"][0]["lower"]
    bottom.bar(edges, [b["n"] for b in calibration["bins"]], width=width, align="edge",
               color="steelblue", edgecolor="white")
    bottom.set(xlabel=("Predicted probability of " + repr(report["task"]["positive_class"])
                       if binary else "Confidence (highest class probability)"), ylabel="cases")
    return _png(figure)


def score_histograms_figure(report: dict) -> bytes:
    histograms = report["curves"]["score_histograms"]
    columns = min(len(histograms), 2)
    rows = int(np.ceil(len(histograms) / columns))
    figure = _new_figure((5.0 * columns, 3.4 * rows))
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    threshold = report["threshold"]["value"]
    for ax, histogram in zip(axes, histograms):
        edges = np.array(histogram["edges"])
        for group, counts in histogram["counts"].items():
            ax.stairs(counts, edges, fill=True, alpha=0.45, label=f"true {group} (n={sum(counts)})")
        if threshold is not None and report["task"]["binary"]:
            ax.axvline(threshold, color="crimson", ls="--", lw=1.5, label=f"threshold {threshold:.3g}")
        ax.set(xlabel=histogram["score"], ylabel="cases", xlim=(0, 1))
        ax.legend(fontsize=8)
    for ax in axes[len(histograms):]:
        ax.set_visible(False)
    figure.suptitle("Score histograms by true class")
    return _png(figure)


def froc_figure(froc: dict) -> bytes:
    """FROC curve on a log-2 FP axis, the seven LUNA16 rates marked with their intervals."""
    figure = _new_figure()
    ax = figure.add_subplot()
    fps = np.asarray(froc["curve"]["fp_per_image"], dtype=float)
    sens = np.asarray(froc["curve"]["sensitivity"], dtype=float)
    rates = [r["fp_per_image"] for r in froc["sensitivity_at"]]
    low_x = min(rates) / 2
    shown = fps > 0
    # the curve from the lowest rate drawn; interpolation between points is linear as scored
    ax.plot(np.r_[low_x, fps[shown]], np.r_[np.interp(low_x, fps, sens), sens[shown]],
            lw=2, color="tab:blue", label="FROC")
    if fps[-1] < max(rates) * 1.5:  # beyond the last point the last sensitivity holds
        ax.plot([max(fps[-1], low_x), max(rates) * 1.5], [sens[-1]] * 2, ls=":", color="tab:blue")
    values = np.array([r["sensitivity"] for r in froc["sensitivity_at"]])
    lows = np.array([np.nan if r["ci_low"] is None else r["ci_low"] for r in froc["sensitivity_at"]])
    highs = np.array([np.nan if r["ci_high"] is None else r["ci_high"]
                      for r in froc["sensitivity_at"]])
    if np.isfinite(lows).any():
        ax.fill_between(rates, lows, highs, color="tab:blue", alpha=0.15, label="95% CI")
        ax.errorbar(rates, values, yerr=[np.abs(values - lows), np.abs(highs - values)],
                    fmt="none", ecolor="tab:blue", capsize=3)
    ax.plot(rates, values, "o", color="crimson", zorder=5,
            label=f"LUNA16 rates (CPM {froc['cpm']['value']:.3f})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(rates, [f"{r:g}" for r in rates])
    ax.set(xlabel="Mean false positives per image", ylabel="Sensitivity",
           xlim=(low_x, max(rates) * 1.5), ylim=(-0.01, 1.01),
           title=f"FROC (margin {froc['margin_mm']:g} mm)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(figure)


RENDERERS = {
    "roc": roc_figure,
    "pr": pr_figure,
    "confusion_matrix": confusion_matrix_figure,
    "reliability": reliability_figure,
    "score_histograms": score_histograms_figure,
}


def render_figures(report: dict) -> dict[str, bytes]:
    """PNG bytes of every figure ``report["figures"]`` lists, keyed by figure id."""
    return {figure["id"]: RENDERERS[figure["id"]](report) for figure in report.get("figures", [])}
