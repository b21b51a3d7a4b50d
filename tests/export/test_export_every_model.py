"""Every registered architecture exports to ONNX and passes the equivalence check, and the
exported file predicts what PyTorch predicts through the LungModel interface."""

from __future__ import annotations

import numpy as np
import pytest
from export_data import make_model_dir, random_images

from lungcad.models import list_models

ARCHITECTURES = [info.name for info in list_models("classifier")]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_onnx_export_matches_pytorch(architecture, tmp_path):
    import lungcad
    from lungcad.export.onnx_export import export_onnx
    from lungcad import load_model

    model = load_model(make_model_dir(tmp_path / "model", architecture))
    report = export_onnx(model, tmp_path / "m.onnx")
    assert report.max_abs_diff <= 1e-4 and report.batch_sizes == (1, 3)
    assert report.path.is_file() and report.json_path.is_file()

    onnx_model = lungcad.load_model(report.path, runtime="onnx")
    images = random_images(5, seed=3)
    expected = model.predict_proba(images, batch_size=4)
    got = onnx_model.predict_proba(images, batch_size=4)   # batches of 4 and 1: dynamic axis
    assert got.shape == (5, 2)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert onnx_model.decide(got) == model.decide(expected)


@pytest.mark.parametrize("architecture", ["paper-cnn-lstm", "efficientnet-lite0-lstm"])
def test_multiclass_lstm_export(architecture, tmp_path):
    """Softmax heads (C logits) export too, and LSTMs with them."""
    import lungcad
    from lungcad.export.onnx_export import export_onnx
    from lungcad import load_model

    model = load_model(make_model_dir(tmp_path / "model", architecture, task="jsrt-3class",
                                      classes=("non_nodule", "benign", "malignant"),
                                      threshold=None))
    report = export_onnx(model, tmp_path / "m.onnx")
    onnx_model = lungcad.load_model(report.path, runtime="onnx")
    images = random_images(3, seed=5)
    got = onnx_model.predict_proba(images)
    np.testing.assert_allclose(got, model.predict_proba(images), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-5)
    assert onnx_model.predict(images[0]).label == model.predict(images[0]).label


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_torchscript_export_matches_pytorch(architecture, tmp_path):
    from lungcad.export.torchscript import export_torchscript, load_torchscript_model
    from lungcad import load_model

    model = load_model(make_model_dir(tmp_path / "model", architecture))
    report = export_torchscript(model, tmp_path / "m.pt")
    assert report.max_abs_diff <= 1e-4
    images = random_images(4, seed=4)
    np.testing.assert_allclose(load_torchscript_model(report.path).predict_proba(images,
                                                                                 batch_size=3),
                               model.predict_proba(images), atol=1e-4, rtol=0)
