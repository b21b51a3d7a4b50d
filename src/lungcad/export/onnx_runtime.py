"""A lungcad model whose forward pass runs on ONNX Runtime (CPUExecutionProvider).

:class:`OnnxLungModel` is a :class:`~lungcad.lung_model.LungModel`: preprocessing
(``prepare``), batching (``predict_proba``), the decision rule (``decide``) and ``predict`` are
LungModel's own; only ``predict_batch`` differs. It has no PyTorch network (``network`` is None),
so saliency maps need the torch runtime.

Load one with ``lungcad.load_model(name_or_path, runtime="onnx")``, which takes

- an ``.onnx`` file written by ``lungcad export`` (the model.json travels inside it):
  :func:`read_onnx_file`;
- a model directory, run folder or bundled name (resolved by the loader), read by
  :func:`onnx_model_for_dir`: its ``model.onnx`` if it has one (refused if
  that file was exported from other weights or another model.json), otherwise an export made on
  the fly (with the equivalence check) and cached as ``<cache>/onnx/<key>.onnx``, where
  ``<cache>`` is ``$LUNGCAD_CACHE_DIR`` or ``~/.cache/lungcad``, and ``key`` hashes model.json,
  weights.pt, the opset and the torch version. Only this path needs torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from lungcad.errors import LungcadError, first_line
from lungcad.export.common import (CARD_KEY, CELLS_NAME, EXPORT_FORMAT, EXPORT_KEY, INPUT_NAME,
                                   MODEL_JSON_KEY, OUTPUT_NAME)
from lungcad.hashing import file_sha256
from lungcad.lung_model import LungModel, read_model_dir
from lungcad.model_dir import SPEC_FILE, ModelSpec, read_spec, weights_path

DIRECTORY_ONNX_FILE = "model.onnx"


class OnnxLungModel(LungModel):
    """A LungModel running an exported ONNX graph (output: class probabilities)."""

    def __init__(self, spec: ModelSpec, session, path: Path | None = None, card: str = "",
                 export_info: dict | None = None, directory: Path | None = None,
                 second_stage=None):
        # LungModel.__init__ would call network.eval(); there is no torch network here.
        self.spec = spec
        self.network = None
        self.directory = directory
        self.session = session
        self.path = path
        self.export_info = export_info or {}
        self._card = card
        self._second_stage = second_stage
        _check_session_fits(session, spec, path)

    @property
    def candidate_scorer(self):
        """A two-stage detector's patch classifier, from the file's metadata (else None)."""
        return self._second_stage

    @property
    def card(self) -> str:
        return self._card or super().card

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, C) for preprocessed inputs (N, channels, size, size)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]

    @property
    def marks_nodules(self) -> bool:
        """A detector exported with its cell maps (``lungcad export`` writes them since export
        format 2; an older file gives the image-level probabilities only)."""
        two_stage = "second_stage" in (self.spec.detection or {})
        outputs = {o.name for o in self.session.get_outputs()}
        return (self.kind == "detector" and CELLS_NAME in outputs
                and (self._second_stage is not None or not two_stage))

    def cell_maps(self, batch: np.ndarray) -> np.ndarray:
        """The detector's cell maps (N, 2, G, G), as :meth:`LungModel.cell_maps` gives them."""
        if not self.marks_nodules:
            raise LungcadError(f"{self.path or self.spec.name} has no cell maps (an export made "
                               "before lungcad marked nodules on ONNX Runtime, or not a "
                               "detector): export it again with `lungcad export`")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([CELLS_NAME], {INPUT_NAME: batch})[0]


def _check_session_fits(session, spec: ModelSpec, path: Path | None) -> None:
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    where = path or "the ONNX model"
    if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
        raise LungcadError(f"{where}: expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}', "
                           f"found inputs {list(inputs)} and outputs {list(outputs)}; export it "
                           "with `lungcad export`")
    p = spec.preprocessing
    if list(inputs[INPUT_NAME][1:]) != [p.channels, p.size, p.size]:
        raise LungcadError(f"{where}: its input shape {inputs[INPUT_NAME]} does not fit the "
                           f"preprocessing in its metadata ({p.channels} x {p.size} x {p.size}); "
                           "the file is damaged: export it again")


def open_session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session for ``path``; a LungcadError for a file it cannot read."""
    from lungcad.export.common import onnx_session

    if not path.is_file():
        raise LungcadError(f"{path}: no such ONNX file")
    try:
        return onnx_session(path, threads)
    except Exception as exc:  # noqa: BLE001 - InvalidProtobuf, Fail, ...: a damaged file
        first = first_line(exc)
        raise LungcadError(f"{path}: ONNX Runtime cannot load this file ({first[:300]}); it is "
                           "damaged or not an ONNX model: export it again with `lungcad export`") from None


def read_onnx_file(path: str | Path, threads: int | None = None,
                   directory: Path | None = None) -> OnnxLungModel:
    """An ``.onnx`` file written by ``lungcad export``, with its embedded model.json."""
    path = Path(path)
    session = open_session(path, threads)
    meta = session.get_modelmeta().custom_metadata_map
    if MODEL_JSON_KEY not in meta:
        raise LungcadError(f"{path}: an ONNX model without lungcad metadata ({MODEL_JSON_KEY}); "
                           "export models with `lungcad export`, which stores the preprocessing "
                           "and labels inside the file")
    try:
        spec = ModelSpec.from_dict(json.loads(meta[MODEL_JSON_KEY]), f"{path} metadata")
        export_info = json.loads(meta.get(EXPORT_KEY, "{}"))
    except json.JSONDecodeError as exc:
        raise LungcadError(f"{path}: its lungcad metadata is not valid JSON ({exc}); export it "
                           "again") from None
    from lungcad.export.onnx_stage2 import second_stage_from_metadata

    return OnnxLungModel(spec, session, path, meta.get(CARD_KEY, ""), export_info, directory,
                         second_stage_from_metadata(meta, spec, threads, path))


def onnx_cache_dir() -> Path:
    from lungcad.array_cache import cache_root

    return cache_root() / "onnx"


def _cache_key(directory: Path, opset: int) -> str:
    import torch

    digest = hashlib.sha256()
    digest.update((directory / SPEC_FILE).read_bytes())
    digest.update(weights_path(directory, read_spec(directory)).read_bytes())
    digest.update(f"opset={opset} torch={torch.__version__} {EXPORT_FORMAT}".encode())
    return digest.hexdigest()[:32]


def _directory_onnx(directory: Path, threads: int | None) -> OnnxLungModel:
    """The directory's own model.onnx, refused if it no longer matches the directory."""
    onnx_file = directory / DIRECTORY_ONNX_FILE
    model = read_onnx_file(onnx_file, threads, directory)
    on_disk = read_spec(directory)
    recorded = model.export_info.get("weights_sha256")
    weights = weights_path(directory, on_disk)
    current = file_sha256(weights) if weights.is_file() else None
    if _comparable(on_disk) != _comparable(model.spec) or (current and recorded != current):
        raise LungcadError(f"{onnx_file} was exported from another version of this model (its "
                           f"model.json or weights differ from {directory}'s); export it again: "
                           f"lungcad export {directory} --format onnx --out {onnx_file}")
    return model


def _comparable(spec: ModelSpec) -> dict:
    """The spec's fields, without the lungcad version (an upgrade changes no numbers)."""
    return {k: v for k, v in spec.to_dict().items() if k != "lungcad_version"}


def _writable_cache() -> Path | None:
    folder = onnx_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def onnx_model_for_dir(directory: Path, threads: int | None = None,
                       opset: int | None = None) -> OnnxLungModel:
    """The model of ``directory`` (a model directory, already resolved) on ONNX Runtime: its
    model.onnx, else an export made on the fly and cached (see the module notes).

    ``threads``: ONNX Runtime's intra-op threads (default: its own choice, the physical cores).
    """
    directory = Path(directory)
    if (directory / DIRECTORY_ONNX_FILE).is_file():
        return _directory_onnx(directory, threads)
    from lungcad.export.onnx_export import DEFAULT_OPSET, export_onnx

    opset = opset or DEFAULT_OPSET
    cache = _writable_cache()
    if cache is None:  # a read-only home: export into a temporary folder, used once
        with tempfile.TemporaryDirectory(prefix="lungcad-onnx-") as tmp:
            export_onnx(read_model_dir(directory), Path(tmp) / "model.onnx", opset)
            loaded = read_onnx_file(Path(tmp) / "model.onnx", threads, directory)
            loaded.path = None  # the session holds the graph; the file is gone
            return loaded
    cached = cache / f"{_cache_key(directory, opset)}.onnx"
    if not cached.is_file():
        export_onnx(read_model_dir(directory), cached, opset)
    return read_onnx_file(cached, threads, directory)
