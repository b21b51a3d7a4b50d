"""nodule-heatmap-lite0: shapes, gradients, MIL pooling, ONNX export, and its fold trainer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lungcad.errors import LungcadError
from lungcad.models import create_model
from lungcad.training.nodule_heatmap import cell_targets, train_tasks


def tiny(output: str = "nodule", flip_average: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("nodule-heatmap-lite0", 2, pretrained=False, output=output,
                        head_channels=8, flip_average=flip_average)


@pytest.mark.parametrize("output", ["nodule", "malignant"])
def test_binary_logit_is_the_max_of_the_heatmap_and_gradients_flow(output: str):
    net = tiny(output).train()
    x = torch.randn(2, 1, 64, 96)
    logits = net(x)
    assert logits.shape == (2, 1)
    heat = net.heatmap(x)
    assert heat.shape == (2, 1, 4, 6)  # one cell per 16 px
    assert torch.allclose(logits, heat.amax(dim=(2, 3)))
    logits.sum().backward()
    assert net.cells.weight.grad.abs().sum() > 0
    assert net.blocks_tuned[0]._project_conv.weight.grad.abs().sum() > 0


def test_malignant_logit_is_logit_of_nodule_times_malignancy_probability():
    net = tiny("malignant").eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        cells = net.cell_logits(x)
        p = torch.sigmoid(cells[:, 0]) * torch.sigmoid(cells[:, 1])
        expected = torch.log(p / (1 - p)).amax()
        assert torch.allclose(net(x)[0, 0], expected, atol=1e-4)


def test_three_classes_give_three_logits_and_bad_output_is_a_clear_error():
    net = create_model("nodule-heatmap-lite0", 3, pretrained=False, head_channels=8)
    assert net(torch.randn(2, 1, 64, 64)).shape == (2, 3)
    with pytest.raises(LungcadError, match="output must be one of"):
        create_model("nodule-heatmap-lite0", 2, pretrained=False, output="size")


@pytest.mark.parametrize("flip_average", [False, True])
def test_exports_to_onnx_and_matches_torch(tmp_path, flip_average):
    ort = pytest.importorskip("onnxruntime")
    net = tiny("malignant", flip_average).eval()
    x = torch.randn(2, 1, 64, 64)
    path = tmp_path / "m.onnx"
    torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, net(x).numpy(), atol=1e-4)


def test_cell_targets_cover_the_nodule_disc_and_mark_malignancy():
    rows = pd.DataFrame({"label": ["malignant", "benign", "non_nodule"],
                         "x_512": [100.0, 400.0, np.nan], "y_512": [200.0, 40.0, np.nan],
                         "size_mm": [35.0, 5.0, np.nan]})
    nodule, malignant = cell_targets(rows, 32, 512)
    assert nodule.shape == (3, 32, 32)
    assert nodule[0, 200 // 16, 100 // 16] == 1 and malignant[0, 200 // 16, 100 // 16] == 1
    assert nodule[0].sum() > 4  # a 25 px radius covers several 16 px cells
    assert nodule[1].sum() == 1 and nodule[1, 40 // 16, 400 // 16] == 1  # small: the centre cell
    assert malignant[1].sum() == 0 and nodule[2].sum() == 0
    with pytest.raises(LungcadError, match="nodule annotations"):
        cell_targets(rows.drop(columns=["size_mm"]), 32, 512)


def _synthetic_jsrt(root, n: int = 12):
    """Bright discs on noise mark the nodules; labels alternate malignant / benign / none."""
    rng = np.random.default_rng(0)
    rows = []
    (root / "images").mkdir(parents=True)
    for i in range(n):
        label = ("malignant", "benign", "non_nodule")[i % 3]
        img = rng.normal(0.4, 0.05, (64, 64))
        x, y = rng.uniform(16, 48, 2)
        if label != "non_nodule":
            yy, xx = np.mgrid[:64, :64]
            img[(xx - x) ** 2 + (yy - y) ** 2 < 36] += 0.4
        name = f"images/{i:03d}.png"
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / name)
        has = label != "non_nodule"
        rows.append({"path": name, "label": label, "x_512": x * 8 if has else np.nan,
                     "y_512": y * 8 if has else np.nan, "size_mm": 8.4 if has else np.nan})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return [r["path"] for r in rows]


@pytest.mark.parametrize("tune_blocks", [False, True])
def test_fit_writes_a_loadable_model_with_a_validation_threshold(tmp_path, tune_blocks: bool):
    from lungcad import load_model
    from lungcad.io import load_image

    paths = _synthetic_jsrt(tmp_path / "data")
    config = {"image_size": 64, "epochs": 2, "batch_size": 4, "crop_cells": 2,
              "model_args": {"pretrained": False, "head_channels": 8}, "torch_threads": 1,
              "tune_blocks": tune_blocks}
    from lungcad.data.manifest import Manifest
    from lungcad.data.splits import FoldView
    from lungcad.data.tasks import get_task
    from lungcad.training.fit import finish

    trained = train_tasks(tmp_path / "data", paths[:9], paths[9:], ["jsrt-malignant"], config,
                          log=lambda m: None)["jsrt-malignant"]
    view = FoldView(Manifest.load(tmp_path / "data"), get_task("jsrt-malignant"), 0, 1,
                    tuple(paths[:9]), tuple(paths[9:]), ())
    model_dir = finish(trained, view, tmp_path / "run", "youden")
    spec = json.loads((model_dir / "model.json").read_text())
    assert spec["architecture"] == "nodule-heatmap-lite0"
    assert spec["architecture_args"]["output"] == "malignant"
    assert spec["architecture_args"]["pretrained"] is False
    assert spec["classes"] == ["rest", "malignant"] and spec["threshold_rule"].startswith("youden on ")
    # Frozen parts keep their initial weights; the trained parts moved.
    torch.manual_seed(0)
    fresh = create_model("nodule-heatmap-lite0", 2, pretrained=False, head_channels=8)
    trained = torch.load(model_dir / "weights.pt", weights_only=True)
    initial = fresh.state_dict()
    assert torch.equal(trained["stem.0.weight"], initial["stem.0.weight"])
    tuned_key = "blocks_tuned.0._project_conv.weight"
    assert torch.equal(trained[tuned_key], initial[tuned_key]) != tune_blocks
    assert not torch.equal(trained["cells.weight"], initial["cells.weight"])
    model = load_model(model_dir)
    pred = model.predict(load_image(tmp_path / "data" / paths[0]).array)
    assert set(pred.probabilities) == {"rest", "malignant"}
    assert abs(sum(pred.probabilities.values()) - 1) < 1e-5
    # The threshold is one of the validation scores (Youden picks an observed score).
    val_probs = model.predict_proba([load_image(tmp_path / "data" / p).array for p in paths[9:]])
    assert np.isclose(val_probs[:, 1], spec["threshold"], atol=1e-5).any()


def test_fit_refuses_tasks_it_cannot_train(tmp_path):
    paths = _synthetic_jsrt(tmp_path / "data", n=6)
    with pytest.raises(LungcadError, match="trains only"):
        train_tasks(tmp_path / "data", paths[:4], paths[4:], ["jsrt-3class"],
                    {"model_args": {"pretrained": False}})


def test_frozen_features_are_memoised_per_network_weights(tmp_path):
    from lungcad.data.manifest import Manifest
    from lungcad.training import nodule_heatmap

    paths = _synthetic_jsrt(tmp_path / "data", n=4)
    manifest = Manifest.load(tmp_path / "data")
    networks = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        networks.append(create_model("nodule-heatmap-lite0", 2, pretrained=False, head_channels=8))
    first = nodule_heatmap._features_for(networks[0], manifest, paths, 64, None)
    again = nodule_heatmap._features_for(networks[0], manifest, paths[::-1], 64, None)
    np.testing.assert_array_equal(again["f16"], first["f16"][::-1])  # memo, in the asked order
    other = nodule_heatmap._features_for(networks[1], manifest, paths, 64, None)
    assert not np.allclose(other["f16"], first["f16"])  # another network: not the memo's
