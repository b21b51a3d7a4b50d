"""The model directory round trip: what is saved is what predicts."""

import json

import numpy as np
import pytest
import torch

from lungcad.errors import LungcadError
from lungcad import load_model
from lungcad.model_dir import ModelSpec, save_model_dir
from lungcad.models import create_model
from lungcad.preprocess import Preprocessing


def make_model_dir(path, threshold=0.3):
    torch.manual_seed(0)
    net = create_model("ct-cnn", num_classes=2)
    spec = ModelSpec(name="t", architecture="ct-cnn", task="ct-normal-vs-abnormal",
                     classes=["normal", "abnormal"], preprocessing=Preprocessing(size=64),
                     threshold=threshold, threshold_rule="test")
    save_model_dir(path, net, spec, card="# card")
    return net.eval(), spec


def test_saved_model_predicts_like_the_network(tmp_path):
    net, spec = make_model_dir(tmp_path / "m")
    model = load_model(tmp_path / "m")
    image = np.random.default_rng(0).random((100, 80)).astype(np.float32)
    with torch.inference_mode():
        logit = net(torch.from_numpy(spec.preprocessing.apply(image))[None])
    p = float(torch.sigmoid(logit)[0, 0])
    pred = model.predict(image)
    assert pred.probabilities["abnormal"] == pytest.approx(p, abs=1e-6)
    assert pred.label == ("abnormal" if p >= 0.3 else "normal")
    assert model.card == "# card"
    assert model.decide(np.array([[0.75, 0.25], [0.65, 0.35]])) == ["normal", "abnormal"]


def test_run_folder_resolves_to_its_model(tmp_path):
    make_model_dir(tmp_path / "run" / "model")
    assert load_model(tmp_path / "run").spec.name == "t"


def test_bad_model_directories(tmp_path):
    with pytest.raises(LungcadError, match="not a model directory"):
        load_model(tmp_path)
    make_model_dir(tmp_path / "m")
    (tmp_path / "m" / "weights.pt").write_bytes(b"garbage")
    with pytest.raises(LungcadError, match="cannot load the weights"):
        load_model(tmp_path / "m")
    spec = json.loads((tmp_path / "m" / "model.json").read_text())
    (tmp_path / "m" / "model.json").write_text(json.dumps({**spec, "format": "other"}))
    with pytest.raises(LungcadError, match="not a lungcad model"):
        load_model(tmp_path / "m")


def test_unknown_model_argument_is_a_clear_error():
    with pytest.raises(LungcadError, match=r"ct-cnn does not take the argument 'pretrained'"):
        create_model("ct-cnn", num_classes=2, pretrained="none")


def _lite0_spec(**extra) -> ModelSpec:
    from lungcad.models.efficientnet_lite import LITE_MEAN, LITE_STD

    return ModelSpec(name="delta", architecture="efficientnet-lite0", task="jsrt-malignant",
                     classes=["rest", "malignant"], preprocessing=Preprocessing(64, 1, LITE_MEAN, LITE_STD),
                     architecture_args={"pretrained": True}, **extra)


def test_pretrained_base_stores_only_changed_tensors_and_loads_back_exactly(tmp_path):
    torch.manual_seed(0)
    network = create_model("efficientnet-lite0", 2, pretrained=True).eval()
    with torch.no_grad():
        network.backbone._blocks[15]._bn2.weight.mul_(1.5)  # a tuned block, and the new head
    save_model_dir(tmp_path / "m", network, _lite0_spec(weights_base="pretrained"))
    stored = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)
    assert set(stored) == {"backbone._blocks.15._bn2.weight", "backbone._fc.weight",
                           "backbone._fc.bias"}
    model = load_model(tmp_path / "m")
    x = np.random.default_rng(0).normal(size=(2, 1, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = torch.sigmoid(network(torch.from_numpy(x))).numpy()[:, 0]
    np.testing.assert_allclose(model.predict_batch(x)[:, 1], expected, atol=1e-6)


def test_pretrained_base_refuses_foreign_tensors_and_unknown_bases(tmp_path):
    network = create_model("efficientnet-lite0", 2, pretrained=True)
    save_model_dir(tmp_path / "m", network, _lite0_spec(weights_base="pretrained"))
    torch.save({"not.a.layer": torch.zeros(1)}, tmp_path / "m" / "weights.pt")
    with pytest.raises(LungcadError, match="cannot load the weights"):
        load_model(tmp_path / "m")
    spec = json.loads((tmp_path / "m" / "model.json").read_text())
    (tmp_path / "m" / "model.json").write_text(json.dumps({**spec, "weights_base": "imagenet?"}))
    with pytest.raises(LungcadError, match="weights_base"):
        load_model(tmp_path / "m")


def test_one_loader_for_both_runtimes(tmp_path):
    import lungcad
    import lungcad.api

    assert lungcad.load_model is lungcad.api.load_model  # inference.load_model, with services
    make_model_dir(tmp_path / "m")
    with pytest.raises(LungcadError, match="unknown runtime 'tf'; choose one of torch, onnx"):
        lungcad.load_model(tmp_path / "m", runtime="tf")
    assert lungcad.load_model(tmp_path / "m", runtime="torch", threads=1).spec.name == "t"
