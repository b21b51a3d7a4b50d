"""nodule-detector-lite0: shapes, flip averaging, MIL pooling, ONNX export, its trainer's loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lungcad.errors import LungcadError
from lungcad.models import create_model, registered_kind


def tiny(output: str = "nodule") -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("nodule-detector-lite0", 2, pretrained=False, output=output,
                        head_channels=8).eval()


def test_is_registered_as_a_detector_with_8_px_cells():
    assert registered_kind("nodule-detector-lite0") == "detector"
    assert registered_kind("nodule-heatmap-lite0") == "classifier"
    assert registered_kind("no-such-model") is None
    net = tiny()
    x = torch.randn(2, 1, 64, 96)
    assert net.frozen_features(x).shape == (2, 552, 8, 12)
    assert net.cell_logits(x).shape == (2, 2, 8, 12)


@pytest.mark.parametrize("output", ["nodule", "malignant"])
def test_image_logit_is_the_strongest_cell(output: str):
    net = tiny(output)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), net.heatmap(x).amax(dim=(2, 3)))
        if output == "malignant":
            cells = net.cell_logits(x)
            p = torch.sigmoid(cells[:, 0]) * torch.sigmoid(cells[:, 1])
            assert torch.allclose(net(x)[:, 0], torch.log(p / (1 - p)).amax(dim=(1, 2)),
                                  atol=1e-4)


def test_cells_average_the_image_and_its_mirror_mapped_back():
    net = tiny()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        plain = net.cells_from_features(net.frozen_features(x))
        mirror = net.cells_from_features(net.frozen_features(x.flip(-1)).flip(-1))
        assert torch.allclose(net.cell_logits(x), (plain + mirror) / 2, atol=1e-5)
        # so a mirrored image gives mirrored cells
        assert torch.allclose(net.cell_logits(x.flip(-1)), net.cell_logits(x).flip(-1),
                              atol=1e-4)


def test_standardisation_buffers_are_saved_with_the_weights():
    net = tiny()
    state = net.state_dict()
    assert "feature_mean" in state and "feature_std" in state
    assert state["feature_mean"].shape == (1, 552, 1, 1)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(LungcadError, match="binary"):
        create_model("nodule-detector-lite0", 3, pretrained=False)
    with pytest.raises(LungcadError, match="output must be one of"):
        create_model("nodule-detector-lite0", 2, pretrained=False, output="size")


def test_exports_to_onnx_and_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = tiny("malignant")
    x = torch.randn(2, 1, 64, 64)
    path = tmp_path / "m.onnx"
    torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, net(x).numpy(), atol=1e-4)


def test_the_head_learns_a_planted_nodule_from_cached_features():
    """Cell targets on a blob that the features can see: after training, the blob's cells
    outscore the rest (the trainer's loss and optimiser work end to end)."""
    from lungcad.training.nodule_detector import cell_probabilities, train_detector_head

    net = tiny()
    rng = np.random.default_rng(0)
    n, grid = 12, 8
    feats = rng.normal(size=(n, 2, 552, grid, grid)).astype(np.float16)
    nodule = np.zeros((n, grid, grid), np.float32)
    for k in range(n):
        r, c = rng.integers(1, grid - 1, size=2)
        nodule[k, r, c] = 1
        feats[k, :, :20, r, c] += 3.0  # the nodule's cells stand out in 20 channels
    train_detector_head(net, feats, nodule, nodule.copy(),
                        {"epochs": 30, "batch_size": 4, "lr": 1e-2, "image_loss_weight": 0.0},
                        log=lambda *_: None)
    probs = cell_probabilities(net, feats)[:, 0]
    assert probs[nodule > 0].min() > np.quantile(probs[nodule == 0], 0.95)
