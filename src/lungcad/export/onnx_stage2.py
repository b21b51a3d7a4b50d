"""A two-stage detector's second stage on ONNX Runtime.

The detector's ONNX file holds stage 1 as its graph (``image`` -> ``probabilities``, ``cells``)
and the patch classifier (stage 2) as a second ONNX model of its own (``patches`` (N, C, side,
side) -> ``patch_logits`` (N,)), serialised into the file's metadata (key :data:`STAGE2_KEY`,
base64), so the file stays one self-contained file and ONNX Runtime never has to feed one graph
the other's input. The candidates' patches are cut as on PyTorch
(:func:`lungcad.models.nodule_patch.score_candidates`, the same eight symmetries averaged), so
the marks are the same on both runtimes.
"""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np

from lungcad.errors import LungcadError, first_line
from lungcad.export.common import (CHECK_BATCH_SIZES, TRACE_BATCH_SIZE, compare_probabilities,
                                   onnx_session)
from lungcad.models.patches import PatchSettings

STAGE2_KEY = "lungcad.stage2_onnx"
PATCH_INPUT, PATCH_OUTPUT = "patches", "patch_logits"


def patch_settings(spec) -> PatchSettings:
    """The patches a two-stage model's classifier reads, from model.json ``architecture_args``
    (where there is no network to ask: the export takes the network's own ``patches``)."""
    args = spec.architecture_args or {}
    return PatchSettings(int(args.get("patch_side", PatchSettings.side)),
                         tuple(float(c) for c in args.get("context_mm", PatchSettings.context_mm)))


def stage2_onnx(network, patches: PatchSettings, opset: int, tolerance: float,
                what: str) -> tuple[bytes, float]:
    """(serialised ONNX model of ``network.stage2``, its largest |P(nodule) difference| from
    PyTorch on random patches at batch sizes 1 and 3); a LungcadError where it differs by more
    than ``tolerance``, or where the patch classifier does not export."""
    import onnx
    import torch

    stage2 = network.stage2.eval()
    shape = (patches.channels, patches.side, patches.side)
    generator = torch.Generator().manual_seed(1)
    example = torch.randn((TRACE_BATCH_SIZE, *shape), generator=generator)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings: the check below decides
            torch.onnx.export(stage2, (example,), buffer, dynamo=False, opset_version=opset,
                              input_names=[PATCH_INPUT], output_names=[PATCH_OUTPUT],
                              dynamic_axes={PATCH_INPUT: {0: "batch"},
                                            PATCH_OUTPUT: {0: "batch"}},
                              do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - unsupported ops, bad opset: the user's to change
        first = first_line(exc)
        raise LungcadError(f"cannot export {what}'s second stage to ONNX opset {opset} "
                           f"({first[:300]}); try another --opset") from None
    data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    session = onnx_session(data)

    def on_torch(batch):
        with torch.inference_mode():
            return torch.sigmoid(stage2(torch.from_numpy(batch))).numpy()

    def on_onnx(batch):
        return 1 / (1 + np.exp(-session.run([PATCH_OUTPUT], {PATCH_INPUT: batch})[0]))

    batches = [torch.randn((n, *shape), generator=generator).numpy() for n in CHECK_BATCH_SIZES]
    worst = compare_probabilities(on_torch, on_onnx, batches, tolerance,
                                  f"{what} (its second stage)")
    return data, worst


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class OnnxSecondStage:
    """A two-stage detector's patch classifier on ONNX Runtime: ``candidate_scores`` as the
    PyTorch network gives it (P(nodule) per candidate, the eight symmetries averaged)."""

    def __init__(self, session, patches: PatchSettings):
        from torch import nn

        class PatchLogits(nn.Module):  # the patch network's face, running the ONNX graph
            def forward(self, x):
                import torch

                batch = np.ascontiguousarray(x.numpy(), dtype=np.float32)
                return torch.from_numpy(session.run([PATCH_OUTPUT], {PATCH_INPUT: batch})[0])

        self.network = PatchLogits()
        self.patches = patches

    def candidate_scores(self, image, xy: np.ndarray, mm_per_pixel: float) -> np.ndarray:
        from lungcad.models.nodule_patch import score_candidates

        return score_candidates(self.network, image, xy, mm_per_pixel, self.patches, tta=True)


def second_stage_from_metadata(meta: dict, spec, threads: int | None,
                               where) -> OnnxSecondStage | None:
    """The second stage stored in an ONNX file's metadata, or None where there is none."""
    if STAGE2_KEY not in meta:
        return None
    try:
        session = onnx_session(base64.b64decode(meta[STAGE2_KEY]), threads)
    except Exception as exc:  # noqa: BLE001 - a damaged or edited file
        first = first_line(exc)
        raise LungcadError(f"{where}: its second stage ({STAGE2_KEY}) cannot be read "
                           f"({first[:200]}); export it again with `lungcad export`") from None
    return OnnxSecondStage(session, patch_settings(spec))
