"""What the ONNX and TorchScript exports share: the network they trace, the equivalence check,
and the metadata that travels with the file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from lungcad.errors import LungcadError, first_line
from lungcad.export import DEFAULT_TOLERANCE

if TYPE_CHECKING:  # pragma: no cover
    from lungcad.lung_model import LungModel
    from lungcad.model_dir import ModelSpec

EXPORT_FORMAT = "lungcad-export/2"  # 2: a detector's export has its cell maps (CELLS_NAME)
CHECK_BATCH_SIZES = (1, 3)
TRACE_BATCH_SIZE = 2  # neither 1 nor a checked size, so no size can be baked in unnoticed
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
CELLS_NAME = "cells"  # a detector's second output: (N, 2, G, G) P(nodule), P(malignant | nodule)
CELLS_BLOCK = {"cells": CELLS_NAME,
               "cells_note": "a detector's cell maps (batch, 2, G, G): P(nodule) and "
                             "P(malignant | nodule) per cell, G = size / 16; lungcad marks "
                             "nodules from them (lungcad.detection.marks)"}
# Keys of the metadata stored in the file (ONNX metadata_props, TorchScript _extra_files).
MODEL_JSON_KEY = "lungcad.model_json"
CARD_KEY = "lungcad.model_card"
EXPORT_KEY = "lungcad.export"


@dataclass
class ExportReport:
    path: Path                      # the exported file
    json_path: Path                 # FILE.json beside it
    format: str                     # "onnx" or "torchscript"
    max_abs_diff: float             # largest |p_torch - p_export| over the check inputs
    tolerance: float
    batch_sizes: tuple[int, ...]
    info: dict = field(default_factory=dict)  # the export block (opset, versions, ...)

    def summary(self) -> str:
        size_mb = self.path.stat().st_size / 1e6
        sizes = ", ".join(map(str, self.batch_sizes))
        return (f"wrote {self.path} ({size_mb:.1f} MB, {self.format}) and {self.json_path.name}; "
                f"equivalence with PyTorch: max |p difference| {self.max_abs_diff:.2e} on random "
                f"inputs at batch sizes {sizes} (tolerance {self.tolerance:g})")


def probability_network(network):
    """``network`` followed by :func:`lungcad.models.registry.logits_to_probs`: the exported
    graph outputs class probabilities (N, C) in the model's class order, so whoever runs the
    file needs no knowledge of sigmoid-versus-softmax heads."""
    from torch import nn

    from lungcad.models import logits_to_probs

    class ProbabilityNetwork(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, image):
            return logits_to_probs(self.inner(image).float())

    return ProbabilityNetwork(network).eval()


def detector_network(model: "LungModel"):
    """A detector's graph: ``(probabilities, cells)``, the class probabilities (N, C) as
    :func:`probability_network` gives them and the cell maps (N, 2, G, G) that
    :meth:`LungModel.cell_maps` gives, from one pass (a two-stage detector's stage 1; its
    patch classifier is exported apart: :mod:`lungcad.export.onnx_stage2`)."""
    import torch
    from torch import nn

    from lungcad.models import logits_to_probs

    class DetectorNetwork(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, image):
            logits, cells = self.inner.logits_and_cells(image)
            return logits_to_probs(logits.float()), torch.sigmoid(cells.float())

    return DetectorNetwork(model.network).eval()


def check_inputs(spec: "ModelSpec", batch_sizes: Sequence[int] = CHECK_BATCH_SIZES,
                 seed: int = 0) -> list[np.ndarray]:
    """Preprocessed random images, one batch per size: uniform noise plus a smooth gradient in
    [0, 1], through the model's own preprocessing, so the inputs span what real images give."""
    rng = np.random.default_rng(seed)
    size = spec.preprocessing.size
    ramp = np.linspace(0, 1, size, dtype=np.float32)[None, :] * np.ones((size, 1), np.float32)
    batches = []
    for n in batch_sizes:
        images = [np.clip(0.6 * rng.random((size, size), dtype=np.float32) + 0.4 * ramp.T
                          * rng.random(), 0, 1) for _ in range(n)]
        batches.append(np.stack([spec.preprocessing.apply(im) for im in images]))
    return batches


def compare_probabilities(reference: Callable[[np.ndarray], np.ndarray],
                          candidate: Callable[[np.ndarray], np.ndarray],
                          batches: Sequence[np.ndarray], tolerance: float, what: str) -> float:
    """Largest |reference - candidate| over ``batches``; a LungcadError naming the batch size
    where it exceeds ``tolerance``, or where the export fails to run or gives the wrong shape."""
    worst = 0.0
    for batch in batches:
        expected = np.asarray(reference(batch), dtype=np.float64)
        try:
            got = np.asarray(candidate(batch), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - any failure of the export to run is a refusal
            first = first_line(exc)
            raise LungcadError(
                f"{what} fails to run a batch of {len(batch)} ({first[:300]}); the network does "
                "not export with a dynamic batch size: nothing was written") from None
        if got.shape != expected.shape:
            raise LungcadError(f"{what} gives probabilities of shape {got.shape} for a batch of "
                               f"{len(batch)}, PyTorch {expected.shape}: nothing was written")
        diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
        if not np.isfinite(diff) or diff > tolerance:
            raise LungcadError(
                f"{what} differs from PyTorch by {diff:.3g} in probability at batch size "
                f"{len(batch)} (tolerance {tolerance:g}): nothing was written. Try another "
                "--opset or --format, or report the architecture as not exportable")
        worst = max(worst, diff)
    return worst


def weights_sha256(model: "LungModel") -> str | None:
    """sha256 of the model directory's weights.pt (None for a model not loaded from one)."""
    from lungcad.hashing import file_sha256
    from lungcad.model_dir import weights_path

    if model.directory is None:
        return None
    weights = weights_path(model.directory, model.spec)
    return file_sha256(weights) if weights.is_file() else None


def export_block(model: "LungModel", fmt: str, **details) -> dict:
    """What is recorded about the export itself (in the file and in FILE.json)."""
    import platform

    import torch

    from lungcad.version import __version__

    spec = model.spec
    return {"format": EXPORT_FORMAT, "runtime_format": fmt, "input": INPUT_NAME,
            "input_shape": ["batch", spec.preprocessing.channels, spec.preprocessing.size,
                            spec.preprocessing.size],
            "input_note": "preprocessed images: resized to size x size, (x - mean) / std, "
                          "channels repeated (see model.json preprocessing)",
            "output": OUTPUT_NAME, "output_shape": ["batch", len(spec.classes)],
            "output_note": "class probabilities in the order of model.json classes",
            **(CELLS_BLOCK if model.marks_nodules and fmt == "onnx" else {}),
            "weights_sha256": weights_sha256(model), "torch": torch.__version__,
            "lungcad": __version__, "python": platform.python_version(), **details}


def write_sidecar(path: Path, spec_dict: dict, block: dict) -> Path:
    """FILE.json: the model.json (readable by ModelSpec.from_dict) with an ``export`` block."""
    from lungcad.atomic import atomic_write

    sidecar = path.with_name(path.name + ".json")
    atomic_write(sidecar, json.dumps({**spec_dict, "export": block}, indent=2).encode())
    return sidecar


def check_output_path(out: str | Path, suffixes: Sequence[str]) -> Path:
    out = Path(out)
    if out.is_dir():
        raise LungcadError(f"--out {out} is a folder; give a file name such as {out / 'model'}"
                           f"{suffixes[0]}")
    if not out.parent.is_dir():
        raise LungcadError(f"--out {out}: the folder {out.parent} does not exist")
    return out


def onnx_session(data: bytes | str | Path, threads: int | None = None):
    """An ONNX Runtime session on the CPU for a serialised model or a file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    source = str(data) if isinstance(data, Path) else data
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
