"""Radiograph, CT slice, or neither? The DICOM ``Modality`` tag where there is one, else a small
classifier.

The classifier is a multinomial logistic regression on the image descriptors
(:mod:`lungcad.domain.descriptors`, on a 224 px grid) with three answers: ``radiograph``,
``ct`` and ``neither`` (a photograph, a gradient, a blank or noisy picture). It is trained on the
shared JSRT radiographs **and realistic variants of them** (other windowing, processing, field
of view, size, JPEG, inversion: :mod:`lungcad.domain.variants`), both shared CT sets, and
synthetic pictures that are neither; ``studies/modality_classifier.py`` trains it, checks it
by grouped cross-validation, by holding out each transform family and on inputs it never saw,
and writes ``modality_classifier.json`` (shipped inside the package; its figures are in that
file and in docs/results.md). Nothing is downloaded.

What the answers do: a model **refuses** an input only when it is certainly the other modality
(its DICOM tag, or the classifier at least ``REFUSE_CONFIDENCE`` sure); anything less sure is
answered, and flagged by the model's domain check where it is unlike the training images. A
``neither`` input is never refused by a named model (it is flagged out of domain, with the
reason), and ``auto`` sends it to no model (:mod:`lungcad.domain.auto`).

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

from lungcad.domain.descriptors import GLOBAL, QUANTILES, THUMB, describe
from lungcad.errors import LungcadError

CLASSIFIER_FILE = Path(__file__).with_name("modality_classifier.json")
MODALITIES = ("radiograph", "ct")
CLASSES = ("radiograph", "ct", "neither")  # what the image classifier answers
# The image classifier's answer counts as certain (a refusal for a model of the other modality,
# "neither" for routing) only when this sure; below that the input is answered and the domain
# score flags it where it is unlike the model's training images.
REFUSE_CONFIDENCE = 0.98
# ... and only when the image is also typical of that modality's (unaltered) training images:
# within the out-of-fold threshold of a domain reference fitted on them (REFERENCE_FILES, as
# lungcad.domain.reference fits a model's). A radiograph from an unseen site that the
# classifier calls CT is, first of all, unlike the CT slices it was trained on.
REFERENCE_FILES = {m: Path(__file__).with_name(f"modality_{m}.npz") for m in MODALITIES}
NAMES = {"radiograph": "chest radiograph", "ct": "CT slice", "unknown": "image of unknown kind",
         "neither": "image that is neither a chest radiograph nor a CT slice"}
# descriptor groups (lungcad.domain.descriptors) in words, for saying why an image is neither
_GROUPS = (("its layout", slice(0, THUMB * THUMB)),
           ("its grey levels", slice(THUMB * THUMB, GLOBAL.start + len(QUANTILES) + 2)),
           ("its fine texture (noise, sharpness)", slice(GLOBAL.stop - 6, GLOBAL.stop)),
           ("where its edges lie", slice(GLOBAL.stop, None)))
_SPREAD = GLOBAL.start + len(QUANTILES) + 1  # the grey-level standard deviation


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
    modality: str        # "radiograph", "ct" or (image classifier only) "neither"
    confidence: float    # probability of that answer (1.0 from a DICOM tag)
    source: str          # "DICOM Modality tag" or "image classifier"
    reason: str = ""     # for "neither": what about the image is unlike both modalities
    certain: bool = False  # image classifier: at least REFUSE_CONFIDENCE sure, and typical

    @property
    def sure(self) -> bool:
        """A DICOM tag, or the image classifier certain (:func:`decide`)."""
        return self.source.startswith("DICOM") or self.certain

    def describe(self) -> str:
        if self.source.startswith("DICOM"):
            return f"a {NAMES[self.modality]} (its {self.source})"
        if self.modality == "neither":
            why = f": {self.reason}" if self.reason else ""
            return (f"neither a chest radiograph nor a CT slice by its appearance "
                    f"(p = {self.confidence:.3f}{why})")
        return f"a {NAMES[self.modality]} (by its appearance, p = {self.confidence:.3f})"


@lru_cache(maxsize=1)
def _classifier() -> dict:
    try:
        data = json.loads(CLASSIFIER_FILE.read_text())
        if tuple(data.get("classes", ())) != CLASSES:
            raise ValueError(f"classes {data.get('classes')}, not {list(CLASSES)}")
        for key in ("mean", "scale", "coef", "intercept", "class_mean", "class_scale"):
            data[key] = np.asarray(data[key], dtype=np.float64)
    except (OSError, ValueError, KeyError) as exc:
        raise LungcadError(f"{CLASSIFIER_FILE}: the modality classifier is missing or "
                           f"damaged ({exc}); reinstall lungcad") from None
    return data


def classifier_info() -> dict:
    """The shipped classifier's description (training data, cross-validated rates)."""
    hidden = ("mean", "scale", "coef", "intercept", "class_mean", "class_scale")
    return {k: v for k, v in _classifier().items() if k not in hidden}


def probabilities(descriptors: np.ndarray) -> np.ndarray:
    """(N, 3): P(radiograph), P(CT), P(neither) for each row of 224 px descriptors (N, D)."""
    data = _classifier()
    z = (np.atleast_2d(descriptors) - data["mean"]) / data["scale"]
    logits = z @ data["coef"].T + data["intercept"]
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def ct_probability(descriptors: np.ndarray) -> np.ndarray:
    """P(CT) for each row of 224 px descriptors (N, D)."""
    return probabilities(descriptors)[:, 1]


@lru_cache(maxsize=1)
def _references() -> tuple:
    from lungcad.domain.reference import DomainReference

    return tuple(DomainReference.load(REFERENCE_FILES[m]) for m in MODALITIES)


def typicality(descriptors: np.ndarray, references=None) -> np.ndarray:
    """(N, 2): each row's domain score against the radiograph and the CT training images,
    divided by that reference's threshold (1.0 or less: typical of that modality)."""
    references = references or _references()
    return np.stack([r.score(np.atleast_2d(descriptors)) / r.threshold for r in references],
                    axis=1)


def decide(probs: np.ndarray, typical: np.ndarray) -> tuple[str, bool]:
    """The image classifier's answer for one row of :func:`probabilities`, and whether it is
    certain: at least REFUSE_CONFIDENCE, and (radiograph or CT) typical of that modality's
    training images (its row of :func:`typicality` at most 1)."""
    k = int(np.argmax(probs))
    certain = probs[k] >= REFUSE_CONFIDENCE and (k >= len(typical) or typical[k] <= 1.0)
    return CLASSES[k], bool(certain)


def neither_reason(descriptors: np.ndarray) -> str:
    """Why an image is neither modality, in words: the descriptor groups furthest (in training
    spreads) from the nearer of the radiograph and CT training images."""
    data = _classifier()
    if descriptors[_SPREAD] < 0.01:
        return "it is almost uniform (a blank image)"
    z = (descriptors[None] - data["class_mean"][:2]) / data["class_scale"][:2]
    nearer = z[int(np.argmin((z * z).mean(axis=1)))]  # the nearer of radiograph and CT
    far = sorted(((float(np.sqrt((nearer[part] ** 2).mean())), words)
                  for words, part in _GROUPS), reverse=True)
    named = [words for value, words in far[:2] if value > 3.0] or [far[0][1]]
    return (" and ".join(named) + (" are" if len(named) > 1 else " is")
            + " unlike any chest radiograph or CT slice the check was trained on")


def guess_modality(image: np.ndarray, tag: str | None = None) -> ModalityGuess:
    """The modality of one 2-D image in [0, 1]: ``tag`` (the image's DICOM-derived modality,
    ``radiograph`` / ``ct``) decides where known; otherwise the image classifier, whose answer
    may also be ``neither`` (not a chest radiograph, not a CT slice: a photograph, a drawing)."""
    known = canonical(tag)
    if known != "unknown":
        return ModalityGuess(known, 1.0, "DICOM Modality tag")
    size = int(_classifier().get("size", 224))
    descriptors = describe(image, size)
    probs = probabilities(descriptors[None])[0]
    modality, certain = decide(probs, typicality(descriptors)[0])
    reason = neither_reason(descriptors) if modality == "neither" else ""
    return ModalityGuess(modality, float(probs[CLASSES.index(modality)]), "image classifier",
                         reason, certain)


def refusal(guess: ModalityGuess, model_modality: str, model_name: str,
            source: str = "image") -> str | None:
    """The message refusing ``guess`` for a model of ``model_modality``, or None to go on."""
    wanted = canonical(model_modality)
    if wanted == "unknown" or guess.modality not in MODALITIES or guess.modality == wanted:
        return None  # "neither" is flagged (Screen.note), never refused: a refusal is only
    if not guess.sure:  # for an input certainly of the other modality
        return None
    return (f"{source} is {guess.describe()}, but {model_name} reads {NAMES[wanted]}s: "
            f"refused. Use a model for {NAMES[guess.modality]}s, or `auto` "
            f"(lungcad predict auto ...), which picks one by modality")
