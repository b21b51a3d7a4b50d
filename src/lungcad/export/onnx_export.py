"""``lungcad export MODEL --format onnx``: a self-contained ONNX file, checked against PyTorch.

The graph is the network followed by its sigmoid / softmax: input ``image`` (N, channels, size,
size) of preprocessed images, output ``probabilities`` (N, classes); a detector's graph has a
second output, ``cells`` (N, 2, G, G), its cell maps, from which lungcad draws the marks on ONNX
Runtime as on PyTorch. Only the batch axis is dynamic, as preprocessing always resizes to the
model's size. The model.json, the model card and
the export details travel inside the file as ``metadata_props`` (keys in
:mod:`lungcad.export.common`), so ``lungcad.load_model(FILE, runtime="onnx")`` needs nothing
else.

The exporter is PyTorch's TorchScript-based one (``torch.onnx.export(..., dynamo=False)``): it
exports every registered architecture (LSTM, attention included) offline. The dynamo exporter
needs the ``onnxscript`` package and is not used.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from pathlib import Path

from lungcad.errors import LungcadError, first_line
from lungcad.export.common import (CARD_KEY, CELLS_NAME, CHECK_BATCH_SIZES, DEFAULT_TOLERANCE,
                                   EXPORT_KEY, INPUT_NAME, MODEL_JSON_KEY, OUTPUT_NAME,
                                   TRACE_BATCH_SIZE, ExportReport, check_inputs, check_output_path,
                                   compare_probabilities, detector_network, export_block,
                                   onnx_session, probability_network, write_sidecar)

DEFAULT_OPSET = 17
MIN_OPSET = 14  # LSTM, attention and the heads' ops need at least this


def onnx_proto(model, opset: int = DEFAULT_OPSET):
    """The ONNX model (an ``onnx.ModelProto``) of ``model`` (a LungModel), without metadata."""
    import onnx
    import torch

    if opset < MIN_OPSET:
        raise LungcadError(f"--opset {opset} is too old for these networks; use {MIN_OPSET} or newer "
                           f"(default {DEFAULT_OPSET})")
    spec = model.spec
    example = torch.from_numpy(check_inputs(spec, (TRACE_BATCH_SIZE,), seed=1)[0])
    if model.marks_nodules:
        network, outputs = detector_network(model), [OUTPUT_NAME, CELLS_NAME]
    else:
        network, outputs = probability_network(model.network), [OUTPUT_NAME]
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            # Tracer and deprecation warnings about the legacy exporter: the equivalence check
            # below, not these generic warnings, decides whether the export is right.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                network, (example,), buffer, dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *outputs]},
                do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - unsupported ops, bad opset: the user's to change
        first = first_line(exc)
        raise LungcadError(f"cannot export {spec.architecture} to ONNX opset {opset} ({first[:300]}); "
                           "try another --opset, or --format torchscript") from None
    proto = onnx.load_from_string(buffer.getvalue())
    proto.doc_string = (f"lungcad model {spec.name}@{spec.version} ({spec.architecture}, task "
                        f"{spec.task}): input '{INPUT_NAME}' preprocessed images, output "
                        f"'{OUTPUT_NAME}' for classes {spec.classes}"
                        + (f", output '{CELLS_NAME}' the cell maps P(nodule), P(malignant | "
                           "nodule)" if model.marks_nodules else "")
                        + ". Research software, not a medical device.")
    onnx.checker.check_model(proto)
    return proto


def attach_metadata(proto, metadata: dict[str, str]) -> None:
    """Set ``metadata`` as the model's metadata_props (replacing entries of the same keys)."""
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    for key, value in [*kept, *metadata.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def export_onnx(model, out: str | Path, opset: int = DEFAULT_OPSET,
                tolerance: float = DEFAULT_TOLERANCE) -> ExportReport:
    """Export ``model`` (a :class:`~lungcad.lung_model.LungModel`) to ``out`` and ``out.json``.

    Nothing is written unless ONNX Runtime's probabilities match PyTorch's within ``tolerance``
    at batch sizes 1 and 3 (a LungcadError says by how much they differ otherwise).
    """
    from lungcad.atomic import atomic_write

    out = check_output_path(out, (".onnx",))
    started = time.perf_counter()
    spec_dict = model.spec.to_dict()
    block = export_block(model, "onnx", opset=opset, exporter="torch.onnx.export(dynamo=False)",
                         **_onnx_versions())
    proto = onnx_proto(model, opset)
    session = onnx_session(proto.SerializeToString())
    what = f"the ONNX export of {spec_dict['name']} ({spec_dict['architecture']})"
    worst = compare_probabilities(
        model.predict_batch, lambda b: session.run([OUTPUT_NAME], {INPUT_NAME: b})[0],
        check_inputs(model.spec), tolerance, what)
    if model.marks_nodules:  # the marks come from the cell maps: they must agree too
        worst = max(worst, compare_probabilities(
            model.cell_maps, lambda b: session.run([CELLS_NAME], {INPUT_NAME: b})[0],
            check_inputs(model.spec), tolerance, f"{what} (its cell maps)"))
    extra = {}
    if model.candidate_scorer is not None:  # a two-stage detector: its patch classifier too
        from lungcad.export.onnx_stage2 import STAGE2_KEY, encode, stage2_onnx

        data, diff = stage2_onnx(model.network, model.network.patches, opset, tolerance, what)
        extra[STAGE2_KEY], worst = encode(data), max(worst, diff)
    block = {**block, "max_abs_diff": worst, "check_batch_sizes": list(CHECK_BATCH_SIZES),
             "tolerance": tolerance, "export_seconds": round(time.perf_counter() - started, 2)}
    metadata = {MODEL_JSON_KEY: json.dumps(spec_dict), EXPORT_KEY: json.dumps(block), **extra}
    if model.card:
        metadata[CARD_KEY] = model.card
    attach_metadata(proto, metadata)
    data = proto.SerializeToString()
    try:
        atomic_write(out, data)
    except OSError as exc:
        raise LungcadError(f"cannot write {out}: {exc.strerror or exc}") from None
    sidecar = write_sidecar(out, spec_dict, block)
    return ExportReport(out, sidecar, "onnx", worst, tolerance, CHECK_BATCH_SIZES, block)


def _onnx_versions() -> dict:
    import onnx
    import onnxruntime

    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}

