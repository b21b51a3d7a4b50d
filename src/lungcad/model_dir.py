"""A model is a directory: weights, the exact preprocessing, label names, decision threshold, card.

Files in a model directory:

- ``model.json``: ``format`` ("lungcad-model/1"), ``name``, ``architecture`` (a registered model),
  ``architecture_args``, ``task``, ``classes`` (binary: negative first, positive last),
  ``threshold`` (probability of the positive class at or above which the verdict is positive;
  ``null`` for multi-class, which takes the most probable class), ``threshold_rule`` (how it was
  chosen), ``preprocessing`` (:class:`~lungcad.preprocess.Preprocessing` fields), ``modality``,
  ``lungcad_version``, and optional ``metrics``.
- ``weights.pt``: the network's state dict (loaded with ``weights_only=True``). With
  ``weights_base`` ``"pretrained"`` in model.json it holds only the tensors that differ from the
  architecture's pretrained weights (which install offline with their package, checked by sha256);
  that keeps the bundled models small. Otherwise (``"none"``) it holds every tensor.
- ``MODEL_CARD.md`` (shown by the page), ``training_images.sha256``: optional.

Whatever reads a model needs nothing else to reproduce its output. This module knows the format
and :class:`LungModel`, the loaded model; load one with :func:`lungcad.load_model` (which is
:func:`lungcad.inference.load_model`: both runtimes, and the name/directory/run-folder rules).
"""

from __future__ import annotations

import functools
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lungcad.atomic import atomic_write
from lungcad.errors import LungcadError
from lungcad.preprocess import Preprocessing
from lungcad.version import __version__

MODEL_FORMAT = "lungcad-model/1"
SPEC_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
CARD_FILE = "MODEL_CARD.md"
BUNDLED_DIR = Path(__file__).parent / "bundled"
WEIGHTS_BASES = ("none", "pretrained")


@dataclass
class ModelSpec:
    name: str
    architecture: str
    task: str
    classes: list[str]
    preprocessing: Preprocessing
    threshold: float | None = None
    threshold_rule: str = "default 0.5"
    architecture_args: dict = field(default_factory=dict)
    modality: str = "unknown"
    metrics: dict = field(default_factory=dict)
    version: str = "1"
    weights_base: str = "none"
    calibration: dict | None = None  # evaluation.calibration map, fitted out of fold
    domain: dict | None = None       # the domain reference's summary (domain.npz)
    detection: dict | None = None    # detectors: "marks" settings, "clinical" (age/sex) model

    def to_dict(self) -> dict:
        extra = {k: v for k, v in (("calibration", self.calibration), ("domain", self.domain),
                                   ("detection", self.detection)) if v is not None}
        return {**extra,
            "format": MODEL_FORMAT, "name": self.name, "version": self.version,
            "architecture": self.architecture, "architecture_args": self.architecture_args,
            "task": self.task, "classes": list(self.classes), "threshold": self.threshold,
            "threshold_rule": self.threshold_rule, "preprocessing": self.preprocessing.to_dict(),
            "modality": self.modality, "metrics": self.metrics, "lungcad_version": __version__,
            "weights_base": self.weights_base,
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "model.json") -> "ModelSpec":
        if d.get("format") != MODEL_FORMAT:
            raise LungcadError(f"{source}: not a lungcad model (format {d.get('format')!r}, "
                               f"expected {MODEL_FORMAT!r})")
        try:
            spec = cls(name=d["name"], architecture=d["architecture"], task=d["task"],
                       classes=list(d["classes"]),
                       preprocessing=Preprocessing.from_dict(d["preprocessing"]),
                       threshold=d.get("threshold"), threshold_rule=d.get("threshold_rule", ""),
                       architecture_args=d.get("architecture_args", {}),
                       modality=d.get("modality", "unknown"), metrics=d.get("metrics", {}),
                       version=str(d.get("version", "1")),
                       weights_base=str(d.get("weights_base", "none")),
                       calibration=d.get("calibration"), domain=d.get("domain"),
                       detection=d.get("detection"))
        except KeyError as exc:
            raise LungcadError(f"{source}: missing field {exc}") from None
        if spec.weights_base not in WEIGHTS_BASES:
            raise LungcadError(f"{source}: weights_base {spec.weights_base!r} is not one of "
                               f"{', '.join(WEIGHTS_BASES)}")
        return spec

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2


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
        probs = ", ".join(f"{k} {v:.3f}" for k, v in self.probabilities.items())
        rule = f" (threshold {self.threshold:.3f})" if self.threshold is not None else ""
        note = f" \u2014 {self.domain_note}" if self.domain_note else ""
        return f"{self.label}{rule}: {probs}{note}"


def atomic_torch_save(obj, path: str | Path) -> None:
    """torch.save through a temporary file and a rename, so a crash never leaves half a file."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(Path(path), buf.getvalue())


def save_model_dir(path: str | Path, network, spec: ModelSpec, card: str | None = None) -> Path:
    """Write a model directory; with ``spec.weights_base`` "pretrained", weights.pt keeps only
    the tensors that differ from the pretrained network (loading gives ``network`` back)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    state = (changed_tensors(network, build_network(spec)) if spec.weights_base == "pretrained"
             else network.state_dict())
    atomic_torch_save(state, out / WEIGHTS_FILE)
    atomic_write(out / SPEC_FILE, json.dumps(spec.to_dict(), indent=2).encode())
    if card is not None:
        atomic_write(out / CARD_FILE, card.encode())
    return out


def bundled_models() -> list[str]:
    """Names of the models shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / SPEC_FILE).is_file())


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """The model directory meant by ``name_or_path``: a model directory (has model.json), a
    training run folder (its ``model/``), or a bundled model's name, in that order."""
    path = Path(name_or_path)
    if (path / SPEC_FILE).is_file():
        return path
    if (path / "model" / SPEC_FILE).is_file():  # a training run folder
        return path / "model"
    if str(name_or_path) in bundled_models():
        return BUNDLED_DIR / str(name_or_path)
    known = ", ".join(bundled_models()) or "none installed"
    raise LungcadError(f"{name_or_path}: not a model directory (no {SPEC_FILE}), a run folder, "
                       f"or a bundled model name (bundled: {known})")


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
        from lungcad.evaluation.calibration import apply_calibration

        return apply_calibration(probs, self.spec.calibration).astype(probs.dtype)

    @property
    def domain_reference(self):
        """The :class:`~lungcad.domain.reference.DomainReference` of the model's training
        images (``domain.npz``), or None where model.json names none."""
        if not hasattr(self, "_domain_reference"):
            from lungcad.domain.check import load_reference

            self._domain_reference = load_reference(self.directory, self.spec.domain)
        return self._domain_reference

    def screen(self, images: Sequence[np.ndarray], sources: Sequence[str] | None = None,
               modalities: Sequence[str | None] | None = None) -> list:
        """Per image: refused (another modality), or its domain score and ``in_domain``
        (:func:`lungcad.domain.check.screen`)."""
        from lungcad.domain.check import screen

        return screen(self, images, sources, modalities)

    def decide(self, probs: np.ndarray) -> list[str]:
        probs = np.atleast_2d(probs)
        if self.spec.binary:
            t = 0.5 if self.spec.threshold is None else self.spec.threshold
            return [self.classes[1] if p >= t else self.classes[0] for p in probs[:, 1]]
        return [self.classes[i] for i in probs.argmax(axis=1)]

    def predict(self, image, modality: str | None = None) -> ImagePrediction:
        """Predict one image: a path, or an array as :func:`lungcad.io.load_image` returns
        (``modality``: its ``meta.modality``, where known). An input of the other modality
        (CT vs radiograph) is refused with a LungcadError; one unlike the training images is
        answered with ``in_domain`` False."""
        if isinstance(image, (str, Path)):
            from lungcad.io import load_image

            loaded = load_image(image)
            array, source, modality = loaded.array, str(image), loaded.meta.modality
        else:
            array, source = np.asarray(image, dtype=np.float32), "image"
        check = self.screen_one(array, source, modality)
        return self.prediction(self.predict_proba([array], sources=[source])[0], check)

    def screen_one(self, array: np.ndarray, source: str = "image", modality: str | None = None):
        """:meth:`screen` of one image; a LungcadError where it is of the other modality."""
        check = self.screen([array], [source], [modality])[0]
        if check.refused:
            raise LungcadError(check.refused)
        return check

    def prediction(self, probs: np.ndarray, check) -> ImagePrediction:
        """One image's verdict from its (calibrated) probabilities and its :meth:`screen_one`."""
        return ImagePrediction({c: float(p) for c, p in zip(self.classes, probs)},
                               self.decide(probs)[0],
                               self.spec.threshold if self.spec.binary else None,
                               check.in_domain, check.score, check.note(), check.in_training)

    def predict_many(self, images: Iterable) -> list[ImagePrediction]:
        return [self.predict(im) for im in images]

    @property
    def kind(self) -> str:
        """``classifier`` (class probabilities: :meth:`predict`), ``segmenter`` (a lung mask
        per image: :meth:`segment`) or ``detector`` (class probabilities, and marks where it
        finds nodules: :meth:`detect`), from the model's task and architecture."""
        from lungcad.data.tasks import TASKS
        from lungcad.models import registered_kind

        task = TASKS.get(self.spec.task)
        if task is not None and task.segmentation:
            return "segmenter"
        return "detector" if registered_kind(self.spec.architecture) == "detector" else "classifier"

    def detect(self, image, spacing_mm: tuple[float, float] | None = None,
               modality: str | None = None, marks: dict | None = None, age=None, sex=None):
        """Nodule marks on one image (a path, or a 2-D array in [0, 1]): a
        :class:`~lungcad.detection.detect.Detection` whose ``findings`` (iterating it gives
        them) are :class:`~lungcad.findings.Finding` in the image's own pixel coordinates,
        strongest first; only inside the lungs where the bundled ``jsrt-lungs`` is installed.
        ``spacing_mm`` (row, column) where the image has none of its own (DICOM has);
        ``marks``: :class:`~lungcad.detection.marks.MarkSettings` fields to change; ``age``
        (years, or DICOM ``063Y``) and ``sex`` (M/F) for the malignancy with age and sex (from
        the DICOM's PatientAge/PatientSex where the image is a DICOM path and they are None)."""
        from lungcad.detection.detect import detect_input

        if self.kind != "detector":
            raise LungcadError(f"{self.spec.name} is a {self.kind}: it does not mark nodules; "
                               "use a detector such as jsrt-nodules")
        return detect_input(self, image, spacing_mm, modality, marks, age, sex,
                            bundled_lung_model())

    def segment(self, image, spacing_mm: tuple[float, float] | None = None,
                modality: str | None = None):
        """The lung mask of one image (a path, or a 2-D array in [0, 1]) at the image's size: a
        :class:`~lungcad.segmentation.predict.LungSegmentation` with per-side area and height
        (in mm where the pixel spacing is known: from DICOM, or ``spacing_mm`` (row, column)),
        and a warning where no plausible pair of lungs is found or the image is of another
        modality (CT; from DICOM, or ``modality`` for an array read by ``load_image``)."""
        from lungcad.segmentation.predict import segment_image

        if self.kind != "segmenter":
            raise LungcadError(f"{self.spec.name} is a classifier: it gives class probabilities "
                               "(predict), not a mask; segment with a segmentation model such "
                               "as jsrt-lungs")
        source, modality = "image", modality or "unknown"
        if isinstance(image, (str, Path)):
            from lungcad.io import load_image

            loaded, source = load_image(image), str(image)
            image, modality = loaded.array, loaded.meta.modality
            spacing_mm = spacing_mm or loaded.meta.pixel_spacing_mm
        return segment_image(self.network, self.spec.preprocessing, image, source, spacing_mm,
                             modality, self.screen([image], [source], [modality])[0])

    def explain(self, image, method: str = "gradcam", target_class: str | None = None) -> np.ndarray:
        """Saliency map of one image (a path, or an array as ``load_image`` returns): 2-D float32
        in [0, 1] at the image's shape; see :func:`lungcad.explain.saliency_map`."""
        from lungcad.explain import saliency_map

        if isinstance(image, (str, Path)):
            from lungcad.io import load_image

            image = load_image(image).array
        return saliency_map(self, np.asarray(image, dtype=np.float32), method, target_class)


@functools.lru_cache(maxsize=1)
def bundled_lung_model() -> "LungModel | None":
    """The bundled lung segmenter (loaded once), None where it is not installed: detectors
    mark only inside its lung mask."""
    from lungcad.segmentation.masks import LUNG_MODEL

    directory = BUNDLED_DIR / LUNG_MODEL
    return read_model_dir(directory) if (directory / SPEC_FILE).is_file() else None


def build_network(spec: ModelSpec):
    """The untrained network of ``spec``; with ``weights_base`` "pretrained", its pretrained
    weights loaded (the tensors that weights.pt holds replace theirs)."""
    from lungcad.models import create_model

    args = dict(spec.architecture_args)
    if spec.weights_base == "pretrained":
        args["pretrained"] = True
    return create_model(spec.architecture, num_classes=len(spec.classes),
                        in_channels=spec.preprocessing.channels, **args)


def changed_tensors(network, base) -> dict:
    """The entries of ``network``'s state dict that differ from ``base``'s (same architecture)."""
    import torch

    reference = base.state_dict()
    return {k: v for k, v in network.state_dict().items()
            if k not in reference or reference[k].shape != v.shape
            or not torch.equal(reference[k], v)}


def read_model_dir(directory: Path) -> LungModel:
    """The model in ``directory`` (a model directory, already resolved), on PyTorch. Callers
    outside the loader use :func:`lungcad.inference.load_model`, which resolves names first."""
    import torch

    directory = Path(directory)
    try:
        spec = ModelSpec.from_dict(json.loads((directory / SPEC_FILE).read_text()),
                                   str(directory / SPEC_FILE))
    except json.JSONDecodeError as exc:
        raise LungcadError(f"{directory / SPEC_FILE}: not valid JSON ({exc})") from None
    network = build_network(spec)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise LungcadError(f"{directory}: no {WEIGHTS_FILE}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if spec.weights_base == "pretrained":
            unexpected = network.load_state_dict(state, strict=False).unexpected_keys
            if unexpected:
                raise KeyError(f"tensors the network does not have: {unexpected[:3]}")
        else:
            network.load_state_dict(state)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError, KeyError) as exc:
        raise LungcadError(f"{weights}: cannot load the weights ({str(exc).splitlines()[0]})") from None
    return LungModel(spec, network, directory)
