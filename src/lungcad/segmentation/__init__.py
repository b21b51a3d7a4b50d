"""Lung-field segmentation of chest radiographs: the network's mask cleaned as a user expects
(the two largest regions, holes filled), checked for a plausible pair of lungs, and measured
per side (:mod:`~lungcad.segmentation.masks`); one image segmented end to end
(:mod:`~lungcad.segmentation.predict`)."""

from lungcad.segmentation.masks import LUNG_MODEL  # noqa: F401  (the bundled segmenter)


def installed_lung_model() -> str | None:
    """:data:`LUNG_MODEL` where it is bundled with this installation, else None."""
    from lungcad.model_dir import bundled_models

    return LUNG_MODEL if LUNG_MODEL in bundled_models() else None
