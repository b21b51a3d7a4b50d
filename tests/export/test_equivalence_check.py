"""The equivalence check refuses an export that differs from PyTorch, and writes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_data import SIDE
from torch import nn

from lungcad.errors import LungcadError


class BatchBakedNetwork(nn.Module):
    """Reshapes with the batch size as a Python int: tracing bakes in the example's batch size,
    so the export runs only at that size (a classic dynamic-axis bug the check must catch)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(SIDE * SIDE, 1)

    def forward(self, x):
        return self.linear(x.reshape(int(x.shape[0]), SIDE * SIDE))


class TracedBranchNetwork(nn.Module):
    """A Python branch: the trace keeps only the branch its example (batch of 2) took, so the
    export runs at every batch size but gives other numbers than PyTorch."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(SIDE * SIDE, 1)

    def forward(self, x):
        logits = self.linear(x.flatten(1))
        if x.shape[0] == 2:
            return logits * 0 + 3.0
        return logits


def _model(network):
    from lungcad.lung_model import LungModel
    from lungcad.model_dir import ModelSpec
    from lungcad.preprocess import Preprocessing

    spec = ModelSpec(name="odd", architecture="ct-cnn", task="jsrt-malignant",
                     classes=["rest", "malignant"], preprocessing=Preprocessing(SIDE, 1, 0.5, 0.25))
    torch.manual_seed(0)
    return LungModel(spec, network)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_baked_to_one_batch_size_is_refused(fmt, tmp_path):
    from lungcad.export.onnx_export import export_onnx
    from lungcad.export.torchscript import export_torchscript

    export = export_onnx if fmt == "onnx" else export_torchscript
    out = tmp_path / f"odd.{fmt}"
    with pytest.raises(LungcadError, match="batch") as info:
        export(_model(BatchBakedNetwork()), out)
    assert "nothing was written" in str(info.value)
    assert not out.exists() and not out.with_name(out.name + ".json").exists()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_that_differs_is_refused(fmt, tmp_path):
    """Traced at batch 2, the network gave a constant; at batch sizes 1 and 3 PyTorch does not."""
    from lungcad.export.onnx_export import export_onnx
    from lungcad.export.torchscript import export_torchscript

    export = export_onnx if fmt == "onnx" else export_torchscript
    out = tmp_path / f"odd.{fmt}"
    with pytest.raises(LungcadError, match=r"differs from PyTorch by .* at batch size 1"):
        export(_model(TracedBranchNetwork()), out)
    assert not out.exists()


def test_compare_probabilities_tolerance():
    from lungcad.export.common import compare_probabilities

    batches = [np.zeros((1, 2), np.float32), np.zeros((3, 2), np.float32)]
    reference = lambda b: np.full((len(b), 2), 0.5)  # noqa: E731
    assert compare_probabilities(reference, lambda b: reference(b) + 5e-5, batches, 1e-4,
                                 "x") == pytest.approx(5e-5)
    with pytest.raises(LungcadError, match=r"x differs from PyTorch by 0\.0002 .* batch size 1"):
        compare_probabilities(reference, lambda b: reference(b) + 2e-4, batches, 1e-4, "x")
    with pytest.raises(LungcadError, match="shape"):
        compare_probabilities(reference, lambda b: np.zeros((len(b), 3)), batches, 1e-4, "x")
    with pytest.raises(LungcadError, match="differs"):
        compare_probabilities(reference, lambda b: reference(b) * np.nan, batches, 1e-4, "x")
