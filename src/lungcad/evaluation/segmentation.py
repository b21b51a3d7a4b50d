"""Segmentation evaluation: Dice, IoU and the 95th-percentile Hausdorff distance (mm) of each
image's mask against its reference (MONAI's metrics), their means with seeded bootstrap 95%
intervals (resampling images), per-fold mean ± SD, the worst cases with pictures, and the
report (report.json, report.md, self-contained report.html)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from lungcad.atomic import atomic_write
from lungcad.disclaimer import DISCLAIMER

SEGMENTATION_METRICS = ("dice", "iou", "hd95_mm")
WORST_CASES = 5


def mask_metrics(predicted: np.ndarray, reference: np.ndarray, spacing_mm: float) -> dict:
    """Dice, IoU and HD95 (mm) of one boolean mask against its reference (same shape)."""
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou

    p = torch.from_numpy(np.asarray(predicted, bool)[None, None].astype(np.float32))
    r = torch.from_numpy(np.asarray(reference, bool)[None, None].astype(np.float32))
    dice = float(compute_dice(p, r, include_background=True))
    iou = float(compute_iou(p, r, include_background=True))
    if p.sum() == 0 or r.sum() == 0:
        hd95 = math.inf if p.sum() != r.sum() else 0.0
    else:
        import warnings

        with warnings.catch_warnings():  # MONAI 1.5's notice about a deprecated argument
            warnings.simplefilter("ignore", FutureWarning)
            hd95 = float(compute_hausdorff_distance(p, r, include_background=True,
                                                    percentile=95, spacing=spacing_mm))
    return {"dice": dice, "iou": iou, "hd95_mm": hd95}


def _mean_interval(values: np.ndarray, n_bootstrap: int, seed: int) -> dict:
    from lungcad.evaluation.bootstrap import bootstrap_intervals

    finite = values[np.isfinite(values)]
    record = {"value": float(finite.mean()) if len(finite) else None,
              "median": float(np.median(finite)) if len(finite) else None,
              "min": float(finite.min()) if len(finite) else None,
              "max": float(finite.max()) if len(finite) else None,
              "n": int(len(finite)), "n_undefined": int(len(values) - len(finite))}
    if len(finite) > 1 and n_bootstrap > 0:
        interval = bootstrap_intervals(len(finite), lambda idx: {"mean": finite[idx].mean(-1)},
                                       n_bootstrap, seed)["mean"]
        record.update(interval.as_dict())
    else:
        record.update({"ci_low": None, "ci_high": None, "ci_method": "none"})
    return record


def summarise_segmentation(table: pd.DataFrame, n_bootstrap: int = 2000, seed: int = 0) -> dict:
    """Per-image metric means with bootstrap intervals, per fold mean ± SD, the worst cases."""
    summary: dict = {"n_images": int(len(table)),
                     "bootstrap": {"n_resamples": n_bootstrap, "seed": seed,
                                   "resampled": "images"},
                     "metrics": {m: _mean_interval(table[m].to_numpy(float), n_bootstrap, seed)
                                 for m in SEGMENTATION_METRICS}}
    if "fold" in table.columns:
        per_fold = table.groupby("fold")[list(SEGMENTATION_METRICS)].mean()
        summary["per_fold"] = {m: {"mean": float(per_fold[m].mean()),
                                   "sd": float(per_fold[m].std(ddof=1)) if len(per_fold) > 1
                                   else None, "values": [float(v) for v in per_fold[m]]}
                               for m in SEGMENTATION_METRICS}
    worst = table.sort_values("dice").head(WORST_CASES)
    summary["worst"] = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                         for k, v in row.items()}
                        for row in worst[["path", *SEGMENTATION_METRICS]
                                         + (["fold"] if "fold" in worst else [])]
                        .to_dict("records")]
    if "plausible" in table.columns:
        summary["implausible"] = [str(p) for p in table.loc[~table["plausible"].astype(bool),
                                                            "path"]]
    return summary


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) \
        else f"{value:.{digits}f}"


def write_segmentation_report(summary: dict, pictures: Sequence[tuple[str, bytes]],
                              out_dir: str | Path, title: str) -> None:
    """report.json (with the pictures' files), report.md and a self-contained report.html."""
    from lungcad.evaluation.render import Block, to_html, to_markdown

    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    metrics = summary["metrics"]
    blocks = [Block("heading", title, level=1), Block("paragraph", DISCLAIMER),
              Block("paragraph", f"{summary['n_images']} images, each scored against its "
                    "reference mask at the reference's size. Means over images with 95% "
                    f"bootstrap intervals ({summary['bootstrap']['n_resamples']} resamples of "
                    f"images, seed {summary['bootstrap']['seed']}).")]
    rows = [[m, _fmt(r["value"]), f"{_fmt(r['ci_low'])} to {_fmt(r['ci_high'])}",
             _fmt(r["median"]), _fmt(r["min"]), _fmt(r["max"])] for m, r in metrics.items()]
    blocks.append(Block("table", columns=["metric", "mean", "95% CI", "median", "min", "max"],
                        rows=rows))
    if "per_fold" in summary:
        blocks.append(Block("heading", "Per fold", level=2))
        blocks.append(Block("table", columns=["metric", "mean ± SD over folds", "per fold"],
                            rows=[[m, f"{_fmt(s['mean'])} ± {_fmt(s['sd'])}",
                                   ", ".join(_fmt(v) for v in s["values"])]
                                  for m, s in summary["per_fold"].items()]))
    if summary.get("implausible"):
        blocks.append(Block("warning", f"{len(summary['implausible'])} image(s) got no plausible "
                            f"pair of lungs: {', '.join(summary['implausible'])}"))
    blocks.append(Block("heading", f"The {len(summary['worst'])} worst images by Dice", level=2))
    blocks.append(Block("table", columns=["image", "dice", "iou", "hd95 (mm)"],
                        rows=[[w["path"], _fmt(w["dice"]), _fmt(w["iou"]), _fmt(w["hd95_mm"], 1)]
                              for w in summary["worst"]]))
    files = []
    for i, (caption, png) in enumerate(pictures):
        name = f"figures/worst{i}.png"
        atomic_write(out / name, png)
        files.append(name)
        blocks.append(Block("figure", f"Worst {i + 1}", rows=[[caption]], png=png, file=name))
    atomic_write(out / "report.json", (json.dumps({**summary, "figures": files,
                                                   "disclaimer": DISCLAIMER}, indent=2)
                                       + "\n").encode())
    atomic_write(out / "report.md", to_markdown(blocks).encode())
    atomic_write(out / "report.html", to_html(blocks).encode())
