"""Segment one image with a lung-segmentation model: the network at its input size, the
probability map resized back to the image, then cleaned, checked and measured."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from lungcad.segmentation.masks import (LUNG_MODEL, clean_lung_mask, lung_measures,
                                        plausibility_problems)

NOT_LUNGS = ("no plausible pair of lungs found ({problems}); is this a frontal chest "
             "radiograph? The mask is shown, but do not trust it")
NOT_A_RADIOGRAPH = ("the input is a {modality} image, and this model segments chest radiographs: "
                    "its mask means nothing here")


@dataclass
class LungSegmentation:
    """The lung mask of one image, at the image's own size."""

    mask: np.ndarray                 # bool (H, W)
    probability: np.ndarray          # float32 (H, W), the network's lung probability
    measures: dict                   # lung_measures(): area and height per side
    warnings: list[str] = field(default_factory=list)  # the mask is no plausible pair of lungs
    in_domain: bool | None = None    # the model's domain check (None: the model has none)
    domain_score: float | None = None
    domain_note: str = ""            # what to say where the input is out of domain

    @property
    def plausible(self) -> bool:
        return not self.warnings

    def notes(self) -> list[str]:
        """Every warning to show beside the mask: the plausibility ones, then the domain's."""
        return self.warnings + ([self.domain_note] if self.domain_note else [])


def lung_probability(network, preprocessed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The network's lung probability for one preprocessed input (C, S, S), resized (bilinear)
    to ``shape``."""
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        logits = network(torch.from_numpy(np.ascontiguousarray(preprocessed[None],
                                                               dtype=np.float32)))
        probability = torch.sigmoid(logits.float()[:, :1])
        resized = F.interpolate(probability, size=tuple(int(s) for s in shape), mode="bilinear",
                                align_corners=False)
    return resized[0, 0].numpy().astype(np.float32)


def segment_image(network, preprocessing, image: np.ndarray, source: str = "image",
                  spacing_mm: tuple[float, float] | None = None,
                  modality: str = "unknown", check=None) -> LungSegmentation:
    """The cleaned lung mask of ``image`` (2-D, [0, 1]) and its measures; a warning where the
    mask is not a plausible pair of lungs, or where the image is known (``modality``, from
    DICOM, or ``check.modality`` where the modality check is sure) not to be a radiograph.
    ``check``: the model's :class:`~lungcad.domain.check.Screen` of the image (its domain
    score; the note where the image is out of domain)."""
    image = np.asarray(image, dtype=np.float32)
    probability = lung_probability(network, preprocessing.apply(image, source), image.shape)
    mask = clean_lung_mask(probability)
    problems = plausibility_problems(mask)
    warnings = [NOT_LUNGS.format(problems="; ".join(problems))] if problems else []
    if check is not None and check.refused:  # certainly a CT slice: said, not refused
        modality = check.modality or modality
    if modality not in ("radiograph", "unknown"):
        warnings.insert(0, NOT_A_RADIOGRAPH.format(modality=modality.upper()
                                                   if modality == "ct" else modality))
    result = LungSegmentation(mask, probability, lung_measures(mask, spacing_mm), warnings)
    if check is not None and not check.refused:
        result.in_domain, result.domain_score = check.in_domain, check.score
        result.domain_note = check.note("mask")
    return result


def segment(model, image, spacing_mm: tuple[float, float] | None = None,
            modality: str | None = None) -> LungSegmentation:
    """The lung mask of one image (a path, or a 2-D array in [0, 1]) by ``model`` (a segmenter
    LungModel), at the image's size: a :class:`LungSegmentation` with per-side area and height
    (in mm where the pixel spacing is known: from DICOM, or ``spacing_mm`` (row, column)), and a
    warning where no plausible pair of lungs is found or the image is of another modality (CT;
    from DICOM, or ``modality`` for an array read by ``load_image``)."""
    from lungcad.domain.check import screen
    from lungcad.errors import LungcadError
    from lungcad.io import read_input

    if model.kind != "segmenter":
        raise LungcadError(f"{model.spec.name} is a classifier: it gives class probabilities "
                           "(predict), not a mask; segment with a segmentation model such "
                           "as jsrt-lungs")
    given = read_input(image, modality, spacing_mm)
    check = screen(model, [given.array], [given.source], [given.meta.modality])[0]
    return segment_image(model.network, model.spec.preprocessing, given.array, given.source,
                         given.meta.pixel_spacing_mm, given.meta.modality, check)


@functools.lru_cache(maxsize=1)
def bundled_lung_model():
    """The bundled lung segmenter (a LungModel, loaded once), None where it is not installed:
    detectors mark only inside its lung mask."""
    from lungcad.lung_model import read_model_dir
    from lungcad.model_dir import BUNDLED_DIR, SPEC_FILE

    directory = BUNDLED_DIR / LUNG_MODEL
    return read_model_dir(directory) if (directory / SPEC_FILE).is_file() else None
