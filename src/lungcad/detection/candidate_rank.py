"""Re-ranking nodule candidates with a small model fitted on training images.

A blob filter's strength alone orders candidates poorly (ribs crossing vessels are strong
blobs too); a few cheap measurements of each candidate, weighed by a model fitted on the
*training* images' candidates (labelled by the FROC hit rule), order them better. Features
(:data:`FEATURES`): the filter's strength (log) and rank (log 1 + rank), the blob's radius, its
height in the image and distance from the midline (shares of the side), the mean intensity
within the radius, that minus the mean of the 1.3-2 radius ring (contrast), and the standard
deviation within the radius. Models: ``logistic`` (standardised features, L2) or ``boosting``
(scikit-learn's histogram gradient boosting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lungcad.errors import LungcadError

FEATURES = ("log_strength", "log_rank", "radius_mm", "height", "off_midline", "inner",
            "contrast", "inner_std")
MODELS = ("logistic", "boosting")


def candidate_features(image: np.ndarray, candidates: pd.DataFrame,
                       mm_per_pixel: float) -> pd.DataFrame:
    """:data:`FEATURES` of one image's candidates (``x``, ``y``, ``radius_mm``, ``score``,
    ``rank``), rows in the candidates' order."""
    image = np.asarray(image, np.float32)
    h, w = image.shape
    rows, cols = np.indices(image.shape)
    out = []
    for c in candidates.itertuples():
        r = max(c.radius_mm / mm_per_pixel, 2.0)
        r0, r1 = max(int(c.y - 2 * r - 2), 0), min(int(c.y + 2 * r + 3), h)
        c0, c1 = max(int(c.x - 2 * r - 2), 0), min(int(c.x + 2 * r + 3), w)
        patch = image[r0:r1, c0:c1]
        d = np.hypot(cols[r0:r1, c0:c1] - c.x, rows[r0:r1, c0:c1] - c.y)
        inner, ring = patch[d <= r], patch[(d >= 1.3 * r) & (d <= 2 * r)]
        inner = inner if inner.size else patch.ravel()
        ring_mean = float(ring.mean()) if ring.size else float(inner.mean())
        out.append((np.log(max(float(c.score), 1e-6)), np.log1p(float(c.rank)),
                    float(c.radius_mm), c.y / h, abs(c.x - (w - 1) / 2) / w,
                    float(inner.mean()), float(inner.mean()) - ring_mean, float(inner.std())))
    return pd.DataFrame(out, columns=list(FEATURES), index=candidates.index)


@dataclass
class CandidateRanker:
    """P(a candidate hits a nodule) from :data:`FEATURES`; fitted on training candidates."""

    model: str = "logistic"
    seed: int = 0

    def fit(self, features: pd.DataFrame, hits) -> "CandidateRanker":
        if self.model not in MODELS:
            raise LungcadError(f"unknown candidate ranker {self.model!r}; known: {list(MODELS)}")
        y = np.asarray(hits, int)
        if len(set(y.tolist())) < 2:
            raise LungcadError("the candidate ranker needs training candidates that hit a "
                               "nodule and others that do not")
        X = features[list(FEATURES)].to_numpy(float)
        self.mean_, self.scale_ = X.mean(0), X.std(0) + 1e-9
        if self.model == "logistic":
            from sklearn.linear_model import LogisticRegression

            self.fitted_ = LogisticRegression(C=1.0, max_iter=2000)
        else:
            from sklearn.ensemble import HistGradientBoostingClassifier

            self.fitted_ = HistGradientBoostingClassifier(
                max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=self.seed)
        self.fitted_.fit((X - self.mean_) / self.scale_, y)
        return self

    def score(self, features: pd.DataFrame) -> np.ndarray:
        X = features[list(FEATURES)].to_numpy(float)
        return self.fitted_.predict_proba((X - self.mean_) / self.scale_)[:, 1]


def reranked(candidates: pd.DataFrame, scores) -> pd.DataFrame:
    """``candidates`` (with ``path``) ordered per image by ``scores``, highest first: ``score``
    set to them and ``rank`` renumbered within each image (ties: the earlier rank first)."""
    out = candidates.copy()
    out["score"] = np.asarray(scores, float)
    out = out.sort_values(["path", "score", "rank"], ascending=[True, False, True], kind="stable")
    out["rank"] = out.groupby("path").cumcount()
    return out.reset_index(drop=True)
