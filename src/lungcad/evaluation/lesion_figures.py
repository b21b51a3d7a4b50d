"""NODE21's figures beside lungcad's FROC: the image-level AUC of the marks and the sensitivity at
0.125, 0.25 and 0.5 false marks per image (NODE21's detection track reports these: its score is
0.75 AUC + 0.25 sensitivity at 0.25 FP per image; lungcad reports the parts, not the blend).

Image level: an image is positive when it holds at least one lesion; its score is its strongest
mark (0 without marks), as NODE21 scores an image by its most likely box.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NODE21_RATES = (0.125, 0.25, 0.5)
IMAGE_SCORE_RULE = "the strongest mark on the image (0 for an image without marks)"


def image_level_scores(findings: pd.DataFrame, truth) -> tuple[np.ndarray, np.ndarray]:
    """(y, score) per image of ``truth.images``: y = 1 with a lesion, score = strongest mark."""
    images = list(truth.images)
    index = {p: i for i, p in enumerate(images)}
    score = np.zeros(len(images))
    if len(findings):
        where = np.array([index[p] for p in findings["path"]], dtype=int)
        np.maximum.at(score, where, np.clip(findings["score"].to_numpy(float), 0, None))
    positive = set(truth.nodules["path"])
    y = np.array([p in positive for p in images], dtype=float)
    return y, score


def image_level_auc(findings: pd.DataFrame, truth, n_bootstrap: int, seed: int) -> dict:
    """The image-level ROC AUC (with a 95% bootstrap interval over images), or None values
    where the images are all positive or all negative."""
    from lungcad.evaluation.bootstrap import bootstrap_intervals
    from lungcad.evaluation.metrics import roc_auc

    y, score = image_level_scores(findings, truth)
    n_pos = int(y.sum())
    out = {"n_images": int(len(y)), "n_positive": n_pos, "n_negative": int(len(y) - n_pos),
           "image_score": IMAGE_SCORE_RULE, "value": None, "ci_low": None, "ci_high": None}
    if n_pos == 0 or n_pos == len(y):
        out["note"] = "undefined: the images are all with lesions or all without"
        return out

    def statistic(idx: np.ndarray) -> dict:
        return {"auc": roc_auc(y[idx], score[idx])}

    interval = bootstrap_intervals(len(y), statistic, n_bootstrap, seed)["auc"].as_dict()
    out.update({"value": float(roc_auc(y, score)), **interval})
    return out


def node21_rows(froc: dict) -> list[dict]:
    """The NODE21 table: sensitivity at its three rates and the image AUC, with intervals."""

    def ci(record: dict) -> str:
        return ("n/a" if record.get("ci_low") is None
                else f"{record['ci_low']:.3f} to {record['ci_high']:.3f}")

    def fmt(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    rows = [{"figure": f"sensitivity at {r['fp_per_image']:g} FP per image",
             "value": fmt(r["sensitivity"]), "95% CI": ci(r)}
            for r in froc["sensitivity_at"] if r["fp_per_image"] in NODE21_RATES]
    auc = froc.get("image_level_auc")
    if auc is not None:
        rows.append({"figure": f"image-level AUC ({auc['n_positive']} with lesions, "
                               f"{auc['n_negative']} without)",
                     "value": fmt(auc["value"]), "95% CI": ci(auc)})
    return rows
