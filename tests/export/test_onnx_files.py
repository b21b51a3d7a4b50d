"""What travels with an exported ONNX file, what a damaged or foreign file gives, and how a model
directory is run on ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest
from export_data import CARD, make_model_dir, random_images

from lungcad.errors import LungcadError


@pytest.fixture(scope="module")
def exported(ct_model_dir, tmp_path_factory):
    from lungcad.export.onnx_export import export_onnx
    from lungcad import load_model

    return export_onnx(load_model(ct_model_dir), tmp_path_factory.mktemp("onnx") / "ct.onnx")


def test_metadata_round_trips(exported, ct_model_dir):
    import onnx

    import lungcad
    from lungcad.model_dir import ModelSpec

    on_disk = json.loads((ct_model_dir / "model.json").read_text())
    props = {p.key: p.value for p in onnx.load(str(exported.path)).metadata_props}
    assert json.loads(props["lungcad.model_json"]) == on_disk
    assert props["lungcad.model_card"] == CARD
    info = json.loads(props["lungcad.export"])
    assert info["max_abs_diff"] == exported.max_abs_diff and info["opset"] == 17
    assert info["input_shape"] == ["batch", 1, 64, 64]

    sidecar = json.loads(exported.json_path.read_text())
    assert exported.json_path.name == "ct.onnx.json"
    assert {k: v for k, v in sidecar.items() if k != "export"} == on_disk
    assert sidecar["export"] == info
    assert ModelSpec.from_dict(sidecar).to_dict() == ModelSpec.from_dict(on_disk).to_dict()

    model = lungcad.load_model(exported.path, runtime="onnx")
    assert model.spec.to_dict() == ModelSpec.from_dict(on_disk).to_dict()
    assert model.classes == ["rest", "malignant"] and model.spec.threshold == 0.4
    assert model.card == CARD and model.network is None


def test_graph_has_dynamic_batch_and_probability_output(exported):
    import onnx

    graph = onnx.load(str(exported.path)).graph
    (image,), (probs,) = graph.input, graph.output
    dims = image.type.tensor_type.shape.dim
    assert image.name == "image" and dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [1, 64, 64]
    assert probs.name == "probabilities"


def test_decision_uses_the_threshold(exported):
    import lungcad

    model = lungcad.load_model(exported.path, runtime="onnx")
    assert model.decide(np.array([[0.61, 0.39], [0.6, 0.4]])) == ["rest", "malignant"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_damaged_onnx_file_is_a_lungcad_error(exported, tmp_path, damage):
    import lungcad

    data = exported.path.read_bytes()
    broken = {"garbage": b"\x00\x01not an onnx model" * 100, "truncated": data[:len(data) // 2],
              "empty": b""}[damage]
    path = tmp_path / "broken.onnx"
    path.write_bytes(broken)
    with pytest.raises(LungcadError, match="broken.onnx"):
        lungcad.load_model(path, runtime="onnx")


def test_onnx_without_lungcad_metadata_is_refused(exported, tmp_path):
    import onnx

    import lungcad

    proto = onnx.load(str(exported.path))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "foreign.onnx"))
    with pytest.raises(LungcadError, match="without lungcad metadata"):
        lungcad.load_model(tmp_path / "foreign.onnx", runtime="onnx")


def test_missing_file_is_a_lungcad_error(tmp_path):
    import lungcad

    with pytest.raises(LungcadError, match="no such ONNX file"):
        lungcad.load_model(tmp_path / "absent.onnx", runtime="onnx")


def test_model_directory_is_exported_on_the_fly_and_cached(ct_model_dir, tmp_path):
    import lungcad
    from lungcad import load_model

    first = lungcad.load_model(ct_model_dir, runtime="onnx")
    assert first.path is not None and first.path.parent == tmp_path / "cache" / "onnx"
    written = first.path.stat().st_mtime_ns
    second = lungcad.load_model(ct_model_dir, runtime="onnx")
    assert second.path == first.path and second.path.stat().st_mtime_ns == written  # reused
    images = random_images(3)
    np.testing.assert_allclose(second.predict_proba(images),
                               load_model(ct_model_dir).predict_proba(images), atol=1e-4, rtol=0)
    assert second.card == CARD


def test_directory_model_onnx_is_used_and_checked(tmp_path):
    import lungcad
    from lungcad.export.onnx_export import export_onnx
    from lungcad import load_model

    directory = make_model_dir(tmp_path / "m", seed=1)
    export_onnx(load_model(directory), directory / "model.onnx")
    assert lungcad.load_model(directory, runtime="onnx").path == directory / "model.onnx"
    assert not (tmp_path / "cache" / "onnx").exists()

    make_model_dir(directory, seed=2)  # retrained in place: model.onnx is now stale
    with pytest.raises(LungcadError, match="exported from another version"):
        lungcad.load_model(directory, runtime="onnx")


def test_onnx_model_has_no_saliency(exported):
    import lungcad

    with pytest.raises(LungcadError, match="torch runtime"):
        lungcad.load_model(exported.path, runtime="onnx").explain(random_images(1)[0])


def test_onnx_model_rejects_bad_images_like_pytorch(exported):
    import lungcad

    with pytest.raises(LungcadError, match="blank"):
        lungcad.load_model(exported.path, runtime="onnx").predict(np.zeros((64, 64), np.float32))
    with pytest.raises(LungcadError, match="expect"):
        lungcad.load_model(exported.path, runtime="onnx").predict(np.full((64, 64), 200, np.float32))
