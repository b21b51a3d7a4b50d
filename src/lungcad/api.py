"""The Python API's model: what ``lungcad.load_model`` returns.

:class:`Model` is a loaded :class:`~lungcad.lung_model.LungModel` (any runtime) with the
services that take a model as methods, so that a user writes ``model.predict(path)`` rather
than ``predict_image(model, path)``. It sits on the top layer: it may import every service,
and nothing in the package imports it (inside the package, services are called directly).

- ``predict(image, modality=None)``: :func:`lungcad.domain.check.predict_image`;
- ``segment(image, spacing_mm=None, modality=None)``: :func:`lungcad.segmentation.predict.segment`;
- ``detect(image, ...)``: :func:`lungcad.detection.detect.detect`;
- ``explain(image, method="gradcam", target_class=None)``: :func:`lungcad.explain.saliency.explain`;
- everything else (``spec``, ``classes``, ``kind``, ``card``, ``network``, ``predict_proba``,
  ``decide``, ...) is the LungModel's own: ``model.core`` is the LungModel itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungcad.detection.detect import Detection, detect
from lungcad.domain.auto import AUTO, AutoModel
from lungcad.domain.check import predict_image
from lungcad.explain.saliency import explain
from lungcad.inference import load_model as load_core
from lungcad.lung_model import ImagePrediction, LungModel
from lungcad.segmentation.predict import LungSegmentation, segment


class Model:
    """A loaded model with its services as methods (see the module's docstring)."""

    def __init__(self, core: LungModel):
        self.core = core

    def __getattr__(self, name: str):
        if name == "core":  # not yet set (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.core, name)

    def __repr__(self) -> str:
        return f"<lungcad model {self.core.spec.name} ({self.core.kind})>"

    def predict(self, image, modality: str | None = None) -> ImagePrediction:
        """Predict one image: a path, or an array as :func:`lungcad.io.load_image` returns
        (``modality``: its ``meta.modality``, where known). An input of the other modality is
        refused with a LungcadError; one unlike the training images is answered with
        ``in_domain`` False."""
        return predict_image(self.core, image, modality)

    def segment(self, image, spacing_mm: tuple[float, float] | None = None,
                modality: str | None = None) -> LungSegmentation:
        """The lung mask of one image (a segmenter such as jsrt-lungs)."""
        return segment(self.core, image, spacing_mm, modality)

    def detect(self, image, spacing_mm: tuple[float, float] | None = None,
               modality: str | None = None, marks: dict | None = None, age=None,
               sex=None, second_stage: dict | None = None) -> Detection:
        """Nodule marks on one image (a detector such as jsrt-nodules); iterate for the marks.
        ``marks`` / ``second_stage``: mark and (two-stage detector) candidate settings to
        change, e.g. ``second_stage={"candidates": 50}``."""
        return detect(self.core, image, spacing_mm, modality, marks, age, sex,
                      second_stage=second_stage)

    def explain(self, image, method: str = "gradcam",
                target_class: str | None = None) -> np.ndarray:
        """Saliency map of one image, 2-D float32 in [0, 1] at the image's shape."""
        return explain(self.core, image, method, target_class)


def load_model(name_or_path: str | Path, runtime: str = "torch",
               threads: int | None = None) -> "Model | AutoModel":
    """:func:`lungcad.inference.load_model` (the one loader: a bundled name, a model directory,
    a run folder, or ``auto``), as a :class:`Model` with its services as methods."""
    if str(name_or_path) == AUTO:
        return load_core(name_or_path, runtime, threads)
    return Model(load_core(name_or_path, runtime, threads))
