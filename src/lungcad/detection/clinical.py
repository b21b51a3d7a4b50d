"""Age and sex beside the image: reading them safely, and the malignancy score that uses them.

The image-only malignancy score of a detector is its strongest cell of P(nodule) * P(malignant |
nodule). With age and sex, a logistic regression on (logit of that score, age in decades, male)
gives P(malignant); it is fitted on out-of-fold image scores only (the experiment's pooled
out-of-fold predictions: never on scores of images the detector trained on), and stored in
model.json as ``clinical``. A missing age or sex is replaced by the training images' mean (the
share of men for sex), and the result says so.

Accepted values: age a number of years in [0, 120] (``"63"``, ``63``, DICOM ``"063Y"``; DICOM
months/weeks/days are converted), sex ``M``/``F``/``male``/``female`` (any case; DICOM ``O`` is
unknown). Anything else is refused with a clear message, never guessed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from lungcad.errors import LungcadError, excerpt

MAX_AGE = 120.0
_DICOM_AGE = re.compile(r"^(\d{3})([DWMY])$")
_DICOM_UNITS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}
_SEXES = {"m": 1.0, "male": 1.0, "f": 0.0, "female": 0.0}
CLIPPED = 1e-6


def parse_age(value, source: str = "age") -> float | None:
    """Years as a float, None for missing (None, empty, NaN); LungcadError for nonsense."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        years = float(value)
    else:
        text = str(value).strip()
        if not text:
            return None
        match = _DICOM_AGE.match(text.upper())
        if match:
            years = int(match.group(1)) * _DICOM_UNITS[match.group(2)]
        else:
            try:
                years = float(text)
            except ValueError:
                raise LungcadError(f"{source} {excerpt(value)} is not an age: give years as a "
                                   "number (e.g. 63) or a DICOM age string (e.g. 063Y)") from None
    if not math.isfinite(years) or not 0 <= years <= MAX_AGE:
        raise LungcadError(f"{source} {excerpt(value)} is out of range: an age is 0 to "
                           f"{MAX_AGE:g} years")
    return years


def parse_sex(value, source: str = "sex") -> float | None:
    """1.0 male, 0.0 female, None for missing or DICOM ``O``; LungcadError for nonsense."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip().lower()
    if text in ("", "o", "other", "unknown"):
        return None
    if text not in _SEXES:
        raise LungcadError(f"{source} {excerpt(value)} is not a sex: give M or F (male or female)")
    return _SEXES[text]


def patient_arrays(ages, sexes, source: str = "labels.csv") -> tuple[np.ndarray, np.ndarray]:
    """(years, male) float arrays of a table's age and sex columns, read as :func:`parse_age`
    and :func:`parse_sex` read them: NaN where missing, nonsense refused."""
    years = [parse_age(a, f"{source}: age") for a in ages]
    males = [parse_sex(s, f"{source}: sex") for s in sexes]
    return (np.array([np.nan if a is None else a for a in years], float),
            np.array([np.nan if m is None else m for m in males], float))


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), CLIPPED, 1 - CLIPPED)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class ClinicalModel:
    """P(malignant) from the image-only score, age and sex (a fitted logistic regression)."""

    intercept: float
    coef_score: float
    coef_age: float        # per decade
    coef_male: float
    mean_age: float        # used where age is missing
    share_male: float      # used where sex is missing
    n_fitted: int

    @classmethod
    def fit(cls, scores, ages, males, labels, C: float = 1.0) -> "ClinicalModel":
        """Fit on out-of-fold ``scores`` (image-only P(malignant)); NaN ages/sexes get the
        others' mean."""
        from sklearn.linear_model import LogisticRegression

        ages, males = np.asarray(ages, float), np.asarray(males, float)
        mean_age = float(np.nanmean(ages)) if np.isfinite(ages).any() else 60.0
        share_male = float(np.nanmean(males)) if np.isfinite(males).any() else 0.5
        X = cls._design(scores, np.where(np.isfinite(ages), ages, mean_age),
                        np.where(np.isfinite(males), males, share_male))
        y = np.asarray(labels, int)
        if len(set(y.tolist())) < 2:
            raise LungcadError("the age/sex model needs malignant and other images to fit")
        fitted = LogisticRegression(C=C, max_iter=1000).fit(X, y)
        a, b, c = (float(v) for v in fitted.coef_[0])
        return cls(float(fitted.intercept_[0]), a, b, c, mean_age, share_male, int(len(y)))

    @staticmethod
    def _design(scores, ages, males) -> np.ndarray:
        return np.column_stack([_logit(scores), np.asarray(ages, float) / 10.0,
                                np.asarray(males, float)])

    def predict(self, scores, ages, males) -> np.ndarray:
        """P(malignant) for arrays of scores, ages (NaN: missing) and males (NaN: missing)."""
        ages = np.asarray(ages, float)
        males = np.asarray(males, float)
        X = self._design(scores, np.where(np.isfinite(ages), ages, self.mean_age),
                         np.where(np.isfinite(males), males, self.share_male))
        z = self.intercept + X @ np.array([self.coef_score, self.coef_age, self.coef_male])
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "ClinicalModel":
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise LungcadError(f"model.json: the clinical (age/sex) model is damaged ({exc})") \
                from None

    def missing_note(self, age: float | None, sex: float | None) -> str:
        missing = [f"age (used {self.mean_age:.0f} years, the training mean)" if age is None
                   else "", "sex (used the training share of men)" if sex is None else ""]
        missing = [m for m in missing if m]
        return ("missing " + " and ".join(missing)) if missing else ""
