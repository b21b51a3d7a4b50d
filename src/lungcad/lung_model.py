"""The loaded model: :class:`LungModel` (preprocessing, forward pass, decision) and
:class:`ImagePrediction` (the verdict on one image, and the one place verdicts are worded).

A LungModel does one thing: images in, (calibrated) class probabilities and labels out. What is
done *with* a model is a service that takes one, each in its own package, none imported here:

- the domain screen and the screened prediction of one image: :mod:`lungcad.domain.check`
  (``screen``, ``predict_image``);
- lung masks: :func:`lungcad.segmentation.predict.segment`;
- nodule marks: :func:`lungcad.detection.detect.detect`;
- saliency maps: :func:`lungcad.explain.saliency.explain`.

``lungcad.load_model`` gives a :class:`lungcad.api.Model`, which puts these services back
together as methods (``predict``, ``segment``, ``detect``, ``explain``) for the Python API.
The model directory format itself is :mod:`lungcad.model_dir`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lungcad.calibration_map import apply_calibration
from lungcad.disclaimer import SHORT_DISCLAIMER
from lungcad.model_dir import CARD_FILE, ModelSpec, read_network, read_spec


@dataclass
class ImagePrediction:
    """The verdict on one image: class probabilities, the label, and the threshold applied
    (binary models; None for multi-class, which takes the most probable class)."""

    probabilities: dict[str, float]
    label: str
    threshold: float | None
    in_domain: bool | None = None      # None: the model has no domain reference
    domain_score: float | None = None  # higher: less like the training images
    domain_note: str = ""              # what to say where the input is out of domain
    in_training_data: bool | None = None  # one of the model's training images (None: unknown)

    def verdict(self) -> str:
        """Every probability, e.g. ``malignant (threshold 0.393): rest 0.210, malignant 0.790``."""
        probs = ", ".join(f"{k} {v:.3f}" for k, v in self.probabilities.items())
        rule = f" (threshold {self.threshold:.3f})" if self.threshold is not None else ""
        note = f" \u2014 {self.domain_note}" if self.domain_note else ""
        return f"{self.label}{rule}: {probs}{note}"

    def line(self, name: str) -> str:
        """The command line's one line, e.g. ``x.png: malignant (p=0.83, threshold 0.41) —
        research software, not a medical device``. Binary: p of the positive class, which the
        threshold applies to; multi-class: p of the predicted class."""
        probs = list(self.probabilities.values())
        if self.threshold is not None:
            detail = f"p={probs[-1]:.2f}, threshold {self.threshold:.2f}"
        else:
            detail = f"p={self.probabilities[self.label]:.2f}"
        note = f" \u2014 {self.domain_note}" if self.domain_note else ""
        return f"{name}: {self.label} ({detail}){note} \u2014 {SHORT_DISCLAIMER}"


class LungModel:
    """A loaded model: preprocessing, network and decision rule together."""

    def __init__(self, spec: ModelSpec, network, directory: Path | None = None):
        self.spec = spec
        self.network = network.eval()
        self.directory = directory

    @property
    def classes(self) -> list[str]:
        return self.spec.classes

    @property
    def card(self) -> str:
        if self.directory is not None and (self.directory / CARD_FILE).is_file():
            return (self.directory / CARD_FILE).read_text()
        return ""

    @property
    def kind(self) -> str:
        """``classifier`` (class probabilities), ``segmenter`` (a lung mask per image: its task
        is a segmentation) or ``detector`` (class probabilities, and marks where it finds
        nodules: model.json has ``detection``)."""
        from lungcad.data.tasks import TASKS

        task = TASKS.get(self.spec.task)
        if task is not None and task.segmentation:
            return "segmenter"
        return "detector" if self.spec.detection is not None else "classifier"

    @property
    def marks_nodules(self) -> bool:
        """Whether this model marks nodules: a detector whose network gives cell maps."""
        return self.kind == "detector" and hasattr(self.network, "cell_logits")

    @property
    def candidate_scorer(self):
        """A two-stage detector's second stage (``candidate_scores(image, xy, mm_per_pixel)``:
        P(nodule) of each stage-1 candidate), else None."""
        return self.network if hasattr(self.network, "candidate_scores") else None

    @property
    def map_output(self) -> str:
        """Which of a detector's maps its image-level probability reads: ``nodule`` (the
        strongest P(nodule) cell) or ``malignant`` (P(nodule) * P(malignant | nodule))."""
        default = (self.spec.architecture_args or {}).get("output", "nodule")
        return str(getattr(self.network, "output", default))

    def cell_maps(self, batch: np.ndarray) -> np.ndarray:
        """A detector's cell maps (N, 2, G, G) for preprocessed inputs (N, channels, size,
        size): P(nodule) and P(malignant | nodule) per cell (uncalibrated)."""
        import torch

        with torch.inference_mode():
            cells = self.network.cell_logits(
                torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
            return torch.sigmoid(cells.float()).numpy()

    def prepare(self, image: np.ndarray, source: str = "image") -> np.ndarray:
        return self.spec.preprocessing.apply(image, source)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, C) for preprocessed inputs (N, channels, size, size)."""
        import torch

        from lungcad.models import logits_to_probs

        with torch.inference_mode():
            logits = self.network(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
            return logits_to_probs(logits.float()).numpy()

    def predict_proba(self, images: Sequence[np.ndarray], batch_size: int = 16,
                      sources: Sequence[str] | None = None) -> np.ndarray:
        """Calibrated probabilities (N, C) of images (2-D arrays in [0, 1])."""
        out = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            names = sources[start:start + batch_size] if sources else ["image"] * len(chunk)
            out.append(self.predict_batch(np.stack([self.prepare(im, n) for im, n in zip(chunk, names)])))
        probs = np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)
        return self.calibrate(probs)

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        """The network's probabilities through model.json's ``calibration`` (if any)."""
        if not self.spec.calibration or not len(probs):
            return probs
        return apply_calibration(probs, self.spec.calibration).astype(probs.dtype)

    def decide(self, probs: np.ndarray) -> list[str]:
        probs = np.atleast_2d(probs)
        if self.spec.binary:
            t = self.spec.decision_threshold
            return [self.classes[1] if p >= t else self.classes[0] for p in probs[:, 1]]
        return [self.classes[i] for i in probs.argmax(axis=1)]

    def prediction(self, probs: np.ndarray, check=None) -> ImagePrediction:
        """One image's verdict from its (calibrated) probabilities and its domain check (a
        :class:`lungcad.domain.check.Screen`, or None where there is none)."""
        probs = np.asarray(probs, dtype=np.float64)
        return ImagePrediction({c: float(p) for c, p in zip(self.classes, probs)},
                               self.decide(probs)[0], self.spec.decision_threshold,
                               None if check is None else check.in_domain,
                               None if check is None else check.score,
                               "" if check is None else check.note(),
                               None if check is None else check.in_training)


def read_model_dir(directory: Path) -> LungModel:
    """The model in ``directory`` (a model directory, already resolved), on PyTorch. Callers
    outside the loader use :func:`lungcad.inference.load_model`, which resolves names first."""
    directory = Path(directory)
    spec = read_spec(directory)
    return LungModel(spec, read_network(directory, spec), directory)
