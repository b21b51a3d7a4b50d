"""Radiograph or CT slice? The DICOM ``Modality`` tag where there is one, else a small classifier.

The classifier is a logistic regression on the image descriptors
(:mod:`lungcad.domain.descriptors`, on a 224 px grid), trained on the shared JSRT radiographs
and both shared CT sets and cross-validated with near-duplicate groups kept together
(``studies/modality_classifier.py`` trains it and writes ``modality_classifier.json``, a few
KB shipped inside the package; its cross-validated accuracy is in that file and in
docs/results.md). Nothing is downloaded.

Model directories name their modality as ``"chest radiograph"`` or ``"ct"``; images (the
``modality`` of :class:`lungcad.io.ImageMeta`) as ``"radiograph"``, ``"ct"`` or ``"unknown"``.
:func:`canonical` maps both to ``"radiograph"`` / ``"ct"`` / ``"unknown"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from lungcad.domain.descriptors import describe
from lungcad.errors import LungcadError

CLASSIFIER_FILE = Path(__file__).with_name("modality_classifier.json")
MODALITIES = ("radiograph", "ct")
# The image classifier refuses an input for a model of the other modality only when this sure;
# below that the input is answered (and the domain score flags it if it is unlike the training).
REFUSE_CONFIDENCE = 0.98
NAMES = {"radiograph": "chest radiograph", "ct": "CT slice", "unknown": "image of unknown kind"}


def canonical(modality: str | None) -> str:
    """``radiograph``, ``ct`` or ``unknown`` for a model's or an image's modality string."""
    text = (modality or "").strip().lower()
    if text in ("ct", "ct slice", "computed tomography"):
        return "ct"
    if "radiograph" in text or text in ("cr", "dx", "rg", "xray", "x-ray"):
        return "radiograph"
    return "unknown"


@dataclass(frozen=True)
class ModalityGuess:
    modality: str        # "radiograph" or "ct"
    confidence: float    # probability of that modality (1.0 from a DICOM tag)
    source: str          # "DICOM Modality tag" or "image classifier"

    def describe(self) -> str:
        if self.source.startswith("DICOM"):
            return f"a {NAMES[self.modality]} (its {self.source})"
        return f"a {NAMES[self.modality]} (by its appearance, p = {self.confidence:.3f})"


@lru_cache(maxsize=1)
def _classifier() -> dict:
    try:
        data = json.loads(CLASSIFIER_FILE.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LungcadError(f"{CLASSIFIER_FILE}: the radiograph-vs-CT classifier is missing or "
                           f"damaged ({exc}); reinstall lungcad") from None
    for key in ("mean", "scale", "coef"):
        data[key] = np.asarray(data[key], dtype=np.float64)
    return data


def classifier_info() -> dict:
    """The shipped classifier's description (training data, cross-validated accuracy)."""
    data = _classifier()
    return {k: v for k, v in data.items() if k not in ("mean", "scale", "coef", "intercept")}


def ct_probability(descriptors: np.ndarray) -> np.ndarray:
    """P(CT) for each row of 224 px descriptors (N, D)."""
    data = _classifier()
    z = (np.atleast_2d(descriptors) - data["mean"]) / data["scale"]
    return 1.0 / (1.0 + np.exp(-(z @ data["coef"] + float(data["intercept"]))))


def guess_modality(image: np.ndarray, tag: str | None = None) -> ModalityGuess:
    """The modality of one 2-D image in [0, 1]: ``tag`` (the image's DICOM-derived modality,
    ``radiograph`` / ``ct``) decides where known; otherwise the image classifier."""
    known = canonical(tag)
    if known != "unknown":
        return ModalityGuess(known, 1.0, "DICOM Modality tag")
    size = int(_classifier().get("size", 224))
    p_ct = float(ct_probability(describe(image, size)[None])[0])
    return (ModalityGuess("ct", p_ct, "image classifier") if p_ct >= 0.5
            else ModalityGuess("radiograph", 1.0 - p_ct, "image classifier"))


def refusal(guess: ModalityGuess, model_modality: str, model_name: str,
            source: str = "image") -> str | None:
    """The message refusing ``guess`` for a model of ``model_modality``, or None to go on."""
    wanted = canonical(model_modality)
    if wanted == "unknown" or guess.modality == wanted:
        return None
    if not guess.source.startswith("DICOM") and guess.confidence < REFUSE_CONFIDENCE:
        return None
    return (f"{source} is {guess.describe()}, but {model_name} reads {NAMES[wanted]}s: "
            f"refused. Use a model for {NAMES[guess.modality]}s, or `auto` "
            f"(lungcad predict auto ...), which picks one by modality")
