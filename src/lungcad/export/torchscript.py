"""``lungcad export MODEL --format torchscript``: a traced TorchScript archive, checked against
PyTorch, with the model.json, the model card and the export details in its ``_extra_files``.

Like the ONNX export, the traced module outputs class probabilities (N, classes) for
preprocessed images (N, channels, size, size), any batch size. :func:`load_torchscript_model`
reads it back as a LungModel (``torch.jit.load`` with ``map_location="cpu"``). TorchScript is in
maintenance in PyTorch; prefer ONNX for deployment, TorchScript for C++ libtorch users.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from lungcad.errors import LungcadError, first_line
from lungcad.export.common import (CARD_KEY, CHECK_BATCH_SIZES, DEFAULT_TOLERANCE, EXPORT_KEY,
                                   MODEL_JSON_KEY, TRACE_BATCH_SIZE, ExportReport, check_inputs,
                                   check_output_path, compare_probabilities, export_block,
                                   probability_network, write_sidecar)
from lungcad.lung_model import LungModel
from lungcad.model_dir import ModelSpec


class TorchScriptLungModel(LungModel):
    """A LungModel whose network is a traced TorchScript module returning probabilities."""

    def __init__(self, spec: ModelSpec, module, path: Path | None = None, card: str = "",
                 export_info: dict | None = None):
        super().__init__(spec, module, None)
        self.path = path
        self.export_info = export_info or {}
        self._card = card

    @property
    def card(self) -> str:
        return self._card

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.network(torch.from_numpy(
                np.ascontiguousarray(batch, dtype=np.float32))).float().numpy()

    def explain(self, image, method: str = "gradcam", target_class: str | None = None):
        raise LungcadError("saliency maps need the model directory's PyTorch network, not a "
                           "TorchScript archive; use the model directory")


@contextmanager
def _quiet_jit() -> Iterator[None]:
    """Silence torch.jit's deprecation notice (this module's docstring says where it stands)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        yield


def _extra_files(spec_dict: dict, card: str, block: dict) -> dict[str, str]:
    return {MODEL_JSON_KEY: json.dumps(spec_dict), EXPORT_KEY: json.dumps(block),
            CARD_KEY: card}


def export_torchscript(model: LungModel, out: str | Path,
                       tolerance: float = DEFAULT_TOLERANCE) -> ExportReport:
    """Trace ``model`` into ``out`` (and ``out.json``); nothing is written unless the traced
    module, saved and loaded back, matches PyTorch within ``tolerance`` at batch sizes 1 and 3."""
    import torch

    from lungcad.atomic import atomic_write

    out = check_output_path(out, (".pt",))
    started = time.perf_counter()
    spec = model.spec
    example = torch.from_numpy(check_inputs(spec, (TRACE_BATCH_SIZE,), seed=1)[0])
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings: the check below decides
            traced = torch.jit.trace(probability_network(model.network), (example,),
                                     check_trace=False)
    except Exception as exc:  # noqa: BLE001 - an untraceable network is the user's to know
        first = first_line(exc)
        raise LungcadError(f"cannot trace {spec.architecture} to TorchScript ({first[:300]}); "
                           "try --format onnx") from None
    block = export_block(model, "torchscript", exporter="torch.jit.trace")
    spec_dict = spec.to_dict()

    def saved_bytes(info: dict) -> bytes:
        buffer = io.BytesIO()
        with _quiet_jit():
            torch.jit.save(traced, buffer, _extra_files=_extra_files(spec_dict, model.card, info))
        return buffer.getvalue()

    # Check the archive as it will be read back, not just the in-memory trace.
    with _quiet_jit():
        reloaded = torch.jit.load(io.BytesIO(saved_bytes(block)), map_location="cpu")
    candidate = TorchScriptLungModel(spec, reloaded)
    worst = compare_probabilities(model.predict_batch, candidate.predict_batch, check_inputs(spec),
                                  tolerance, f"the TorchScript export of {spec.name} "
                                  f"({spec.architecture})")
    block = {**block, "max_abs_diff": worst, "check_batch_sizes": list(CHECK_BATCH_SIZES),
             "tolerance": tolerance, "export_seconds": round(time.perf_counter() - started, 2)}
    try:
        atomic_write(out, saved_bytes(block))
    except OSError as exc:
        raise LungcadError(f"cannot write {out}: {exc.strerror or exc}") from None
    sidecar = write_sidecar(out, spec_dict, block)
    return ExportReport(out, sidecar, "torchscript", worst, tolerance, CHECK_BATCH_SIZES, block)


def load_torchscript_model(path: str | Path) -> TorchScriptLungModel:
    """A TorchScript archive written by ``lungcad export --format torchscript``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise LungcadError(f"{path}: no such TorchScript file")
    extra = {MODEL_JSON_KEY: "", EXPORT_KEY: "", CARD_KEY: ""}
    try:
        with _quiet_jit():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign archive
        first = first_line(exc)
        raise LungcadError(f"{path}: cannot load this TorchScript archive ({first[:300]}); "
                           "export it again with `lungcad export --format torchscript`") from None
    extra = {k: v.decode() if isinstance(v, bytes) else v for k, v in extra.items()}
    if not extra[MODEL_JSON_KEY]:
        raise LungcadError(f"{path}: a TorchScript archive without lungcad metadata; export "
                           "models with `lungcad export --format torchscript`")
    try:
        spec = ModelSpec.from_dict(json.loads(extra[MODEL_JSON_KEY]), f"{path} metadata")
        info = json.loads(extra[EXPORT_KEY] or "{}")
    except json.JSONDecodeError as exc:
        raise LungcadError(f"{path}: its lungcad metadata is not valid JSON ({exc})") from None
    return TorchScriptLungModel(spec, module, path, extra[CARD_KEY], info)
