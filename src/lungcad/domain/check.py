"""The domain check at prediction time: refuse another modality, score the rest.

:func:`screen` is what every runtime runs on each input before and beside the network (it needs
no network, so PyTorch and ONNX Runtime give the same answer):

1. modality: an input of the other modality than the model's (a CT slice to a radiograph
   model, or the reverse) is **refused** with a message, decided by the DICOM ``Modality`` tag
   where there is one, else by the shipped radiograph-vs-CT classifier when it is sure
   (:mod:`lungcad.domain.modality`);
2. domain score: the input's distance to the model's training images
   (:mod:`lungcad.domain.reference`); above the stored threshold the input is **out of
   domain**: it is still answered, and the answer says so. An input the modality check calls
   neither a chest radiograph nor a CT slice (a photograph, a gradient) is out of domain
   whatever its score, and the answer says why.

Models without ``domain`` in model.json (older directories, models made by ``lungcad train``)
get neither check: their ``in_domain`` is None (unknown).

3. training data: where the model directory records its training images
   (:mod:`lungcad.domain.training_data`), ``in_training`` says whether this image was one of
   them (None: not recorded), and the note says so.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lungcad.domain.descriptors import describe
from lungcad.domain.modality import guess_modality, refusal
from lungcad.domain.reference import DOMAIN_FILE, DomainReference
from lungcad.domain.training_data import IN_TRAINING_NOTE, in_training_data
from lungcad.errors import LungcadError
from lungcad.io import read_input

OUT_OF_DOMAIN_TEXT = "outside what this model was trained on"


@dataclass
class Screen:
    """One input's check: ``refused`` (a message) or its score and verdict."""

    refused: str | None = None
    score: float | None = None
    in_domain: bool | None = None
    threshold: float | None = None
    modality: str | None = None   # radiograph / ct / neither, as decided (tag or image)
    neither: str = ""             # why the image is neither modality, where it is
    in_training: bool | None = None  # one of the model's training images (None: not recorded)

    def note(self, what: str = "verdict") -> str:
        """A sentence for verdict lines and pages; empty where the input is in domain and not
        one of the model's training images."""
        notes = [IN_TRAINING_NOTE] if self.in_training else []
        if self.in_domain is False and self.neither:
            notes.insert(0, f"OUT OF DOMAIN: this image is {self.neither}, so "
                            f"{OUT_OF_DOMAIN_TEXT} (domain score {self.score:.3g}, threshold "
                            f"{self.threshold:.3g}); do not read this {what}")
        elif self.in_domain is False:
            notes.insert(0, f"OUT OF DOMAIN: {OUT_OF_DOMAIN_TEXT} (domain score "
                            f"{self.score:.3g} > threshold {self.threshold:.3g}); do not read "
                            f"this {what}")
        return "; ".join(notes)


def load_reference(directory: Path | None, summary: dict | None) -> DomainReference | None:
    """The directory's domain reference where model.json names one."""
    if not summary or directory is None:
        return None
    path = Path(directory) / summary.get("file", DOMAIN_FILE)
    if not path.is_file():
        raise LungcadError(f"{directory}: model.json names a domain reference, but {path.name} "
                           "is missing; add it again with `lungcad calibrate`")
    return DomainReference.load(path)


_REFERENCES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def reference_of(model) -> DomainReference | None:
    """``model``'s domain reference (its directory's ``domain.npz``; read once per model), or
    None where model.json names none."""
    if model not in _REFERENCES:
        _REFERENCES[model] = load_reference(model.directory, model.spec.domain)
    return _REFERENCES[model]


def screen(model, images: Sequence[np.ndarray], names: Sequence[str] | None = None,
           tags: Sequence[str | None] | None = None) -> list[Screen]:
    """The check of each image (2-D arrays in [0, 1]) for ``model`` (a LungModel)."""
    reference = reference_of(model)
    summary = model.spec.domain or {}
    names = list(names) if names is not None else ["image"] * len(images)
    tags = list(tags) if tags is not None else [None] * len(images)
    out = []
    for image, name, tag in zip(images, names, tags):
        if reference is None:
            out.append(Screen(in_training=in_training_data(model, image)))
            continue
        guess = guess_modality(image, tag)
        message = refusal(guess, summary.get("modality", model.spec.modality), model.spec.name,
                          Path(name).name if name else "image")
        if message:
            out.append(Screen(refused=message, modality=guess.modality))
            continue
        score = float(reference.score(describe(image, reference.size)[None])[0])
        neither = guess.describe() if guess.modality == "neither" else ""
        out.append(Screen(score=score, in_domain=bool(score <= reference.threshold
                                                      and not neither),
                          threshold=reference.threshold, modality=guess.modality,
                          neither=neither, in_training=in_training_data(model, image)))
    return out


def screen_loaded(model, loaded: list[tuple[int, np.ndarray]], names: list[str],
                  modalities: list[str | None], start: int, failures: list[tuple[str, str]],
                  checks: dict) -> list[tuple[int, np.ndarray]]:
    """The loaded ``(position, image)`` pairs of one batch that ``model`` takes: another
    modality's (CT to a radiograph model, or the reverse) become ``failures`` with the refusal;
    the others' checks go into ``checks`` (by position in the whole input, ``start + i``)."""
    kept = []
    for (i, array), name, check in zip(loaded, names,
                                       screen(model, [a for _, a in loaded], names, modalities)):
        if check.refused:
            failures.append((name, check.refused))
        else:
            checks[start + i] = check
            kept.append((i, array))
    return kept


def screen_one(model, array: np.ndarray, source: str = "image",
               modality: str | None = None) -> Screen:
    """:func:`screen` of one image; a LungcadError where it is of the other modality."""
    check = screen(model, [array], [source], [modality])[0]
    if check.refused:
        raise LungcadError(check.refused)
    return check


def predict_image(model, image, modality: str | None = None):
    """The screened prediction of one image (a path, or an array as :func:`lungcad.io.load_image`
    returns, with its ``modality`` where known): an :class:`~lungcad.lung_model.ImagePrediction`.
    An input of the other modality (CT vs radiograph) is refused with a LungcadError; one unlike
    the training images is answered with ``in_domain`` False."""
    given = read_input(image, modality)
    check = screen_one(model, given.array, given.source, given.meta.modality)
    probs = model.predict_proba([given.array], sources=[given.source])[0]
    return model.prediction(probs, check)


def add_check_columns(model, table, checks: list[Screen]) -> None:
    """Insert, before ``table``'s ``model`` column, the checks of its rows: ``in_domain`` and
    ``domain_score`` where the model has a domain reference, ``in_training_data`` where its
    directory records its training images."""
    if not len(checks):
        return
    if reference_of(model) is not None:
        table.insert(table.columns.get_loc("model"), "in_domain", [c.in_domain for c in checks])
        table.insert(table.columns.get_loc("model"), "domain_score",
                     [c.score for c in checks])  # unrounded: in_domain follows from it
    if any(c.in_training is not None for c in checks):
        table.insert(table.columns.get_loc("model"), "in_training_data",
                     [c.in_training for c in checks])
