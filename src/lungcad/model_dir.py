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
  ``weights_from`` (optional) names another bundled model whose weights.pt this one reads, so
  that two bundles of one network (two outputs of one training, say) ship its weights once.
- ``MODEL_CARD.md`` (shown by the page), ``training_images.sha256``: optional.

Whatever reads a model needs nothing else to reproduce its output. This module is the format
only (the schema, saving, reading the spec and the network, the bundled models); the loaded
model is :class:`lungcad.lung_model.LungModel`, loaded with :func:`lungcad.load_model`.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from lungcad.atomic import atomic_write
from lungcad.errors import LungcadError
from lungcad.evaluation.thresholds import DEFAULT_THRESHOLD
from lungcad.preprocess import Preprocessing
from lungcad.version import __version__

MODEL_FORMAT = "lungcad-model/1"
SPEC_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
CARD_FILE = "MODEL_CARD.md"
BUNDLED_DIR = Path(__file__).parent / "bundled"
WEIGHTS_BASES = ("none", "pretrained")
# Architectures renamed since a model directory was written: read under their present name.
RENAMED_ARCHITECTURES = {"nodule-heatmap-detector-lite0": "nodule-heatmap-lite0"}


@dataclass
class ModelSpec:
    name: str
    architecture: str
    task: str
    classes: list[str]
    preprocessing: Preprocessing
    threshold: float | None = None
    threshold_rule: str = f"default {DEFAULT_THRESHOLD}"
    architecture_args: dict = field(default_factory=dict)
    modality: str = "unknown"
    metrics: dict = field(default_factory=dict)
    version: str = "1"
    weights_base: str = "none"
    calibration: dict | None = None  # evaluation.calibration map, fitted out of fold
    domain: dict | None = None       # the domain reference's summary (domain.npz)
    detection: dict | None = None    # detectors: "marks" settings, "clinical" (age/sex) model
    weights_from: str | None = None  # a bundled model whose weights.pt this one reads

    def to_dict(self) -> dict:
        extra = {k: v for k, v in (("calibration", self.calibration), ("domain", self.domain),
                                   ("detection", self.detection),
                                   ("weights_from", self.weights_from))
                 if v is not None}
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
            architecture = RENAMED_ARCHITECTURES.get(d["architecture"], d["architecture"])
            detection = d.get("detection")
            if architecture != d["architecture"] and detection is None:
                detection = {}  # the old name made the network a detector
            spec = cls(name=d["name"], architecture=architecture, task=d["task"],
                       classes=list(d["classes"]),
                       preprocessing=Preprocessing.from_dict(d["preprocessing"]),
                       threshold=d.get("threshold"), threshold_rule=d.get("threshold_rule", ""),
                       architecture_args=d.get("architecture_args", {}),
                       modality=d.get("modality", "unknown"), metrics=d.get("metrics", {}),
                       version=str(d.get("version", "1")),
                       weights_base=str(d.get("weights_base", "none")),
                       calibration=d.get("calibration"), domain=d.get("domain"),
                       detection=detection, weights_from=d.get("weights_from"))
        except KeyError as exc:
            raise LungcadError(f"{source}: missing field {exc}") from None
        if spec.weights_base not in WEIGHTS_BASES:
            raise LungcadError(f"{source}: weights_base {spec.weights_base!r} is not one of "
                               f"{', '.join(WEIGHTS_BASES)}")
        return spec

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def decision_threshold(self) -> float | None:
        """The cut on the positive class's probability (binary), None for multi-class."""
        if not self.binary:
            return None
        return DEFAULT_THRESHOLD if self.threshold is None else float(self.threshold)


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


def weights_path(directory: Path, spec: ModelSpec) -> Path:
    """The weights.pt that ``directory``'s model reads: its own, or the bundled model's that
    ``weights_from`` names."""
    if spec.weights_from is None:
        return Path(directory) / WEIGHTS_FILE
    if spec.weights_from not in bundled_models():
        raise LungcadError(f"{directory}: model.json takes its weights from the bundled model "
                           f"{spec.weights_from!r}, which is not installed; reinstall lungcad")
    return BUNDLED_DIR / spec.weights_from / WEIGHTS_FILE


def read_spec(directory: Path) -> ModelSpec:
    """The :class:`ModelSpec` of ``directory`` (a model directory, already resolved)."""
    directory = Path(directory)
    try:
        return ModelSpec.from_dict(json.loads((directory / SPEC_FILE).read_text()),
                                   str(directory / SPEC_FILE))
    except json.JSONDecodeError as exc:
        raise LungcadError(f"{directory / SPEC_FILE}: not valid JSON ({exc})") from None


def read_network(directory: Path, spec: ModelSpec):
    """``spec``'s network with ``directory``'s weights loaded (on the CPU)."""
    import torch

    network = build_network(spec)
    weights = weights_path(directory, spec)
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
    return network
