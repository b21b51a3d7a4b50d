"""`lungcad export` and `lungcad predict --runtime onnx` end to end, on a synthetic dataset."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from export_data import CARD, random_images
from PIL import Image

from lungcad.cli import main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A labelled dataset folder: 7 PNGs of different sizes, JSRT labels."""
    root = tmp_path_factory.mktemp("data") / "synth"
    (root / "images").mkdir(parents=True)
    rows = ["path,label"]
    for i, image in enumerate(random_images(7, seed=11)):
        rel = f"images/case{i}.png"
        Image.fromarray((image * 255).astype(np.uint8)).save(root / rel)
        rows.append(f"{rel},{('malignant', 'benign', 'non_nodule')[i % 3]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _probabilities(path) -> np.ndarray:
    table = pd.read_csv(path)
    return table[[c for c in table.columns if c.startswith("prob_")]].to_numpy()


def test_export_onnx_then_predict_matches_torch(ct_model_dir, dataset, tmp_path, capsys):
    onnx_file = tmp_path / "ct.onnx"
    assert main(["export", str(ct_model_dir), "--format", "onnx", "--out", str(onnx_file)]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "max |p difference|" in out and "batch sizes 1, 3" in out
    assert json.loads((tmp_path / "ct.onnx.json").read_text())["name"] == "test-ct-cnn"

    runs = {"torch": (str(ct_model_dir), "torch"), "file": (str(onnx_file), "onnx"),
            "directory": (str(ct_model_dir), "onnx")}
    tables = {}
    for key, (model, runtime) in runs.items():
        csv = tmp_path / f"{key}.csv"
        assert main(["predict", model, str(dataset), "--runtime", runtime, "--out", str(csv),
                     "--batch-size", "3"]) == 0
        tables[key] = pd.read_csv(csv)
    reference = tables.pop("torch")
    assert len(reference) == 7
    for key, table in tables.items():
        np.testing.assert_allclose(_probabilities(tmp_path / f"{key}.csv"),
                                   _probabilities(tmp_path / "torch.csv"), atol=1e-4, rtol=0)
        pd.testing.assert_frame_equal(table.drop(columns=["prob_rest", "prob_malignant"]),
                                      reference.drop(columns=["prob_rest", "prob_malignant"]))


def test_single_image_verdict_with_onnx(ct_model_dir, dataset, capsys):
    image = dataset / "images" / "case0.png"
    assert main(["predict", str(ct_model_dir), str(image)]) == 0
    torch_line = capsys.readouterr().out
    assert main(["predict", str(ct_model_dir), str(image), "--runtime", "onnx"]) == 0
    assert capsys.readouterr().out == torch_line


def test_export_torchscript_round_trips(lstm_model_dir, tmp_path, capsys):
    from lungcad.export.torchscript import load_torchscript_model
    from lungcad import load_model

    archive = tmp_path / "lstm.pt"
    assert main(["export", str(lstm_model_dir), "--format", "torchscript", "--out",
                 str(archive)]) == 0
    assert "torchscript" in capsys.readouterr().out
    scripted = load_torchscript_model(archive)
    reference = load_model(lstm_model_dir)
    assert scripted.spec.to_dict() == reference.spec.to_dict() and scripted.card == CARD
    assert json.loads((tmp_path / "lstm.pt.json").read_text())["export"]["runtime_format"] \
        == "torchscript"
    images = random_images(5, seed=2)
    np.testing.assert_allclose(scripted.predict_proba(images, batch_size=2),
                               reference.predict_proba(images), atol=1e-4, rtol=0)


def test_damaged_torchscript_is_a_lungcad_error(tmp_path):
    from lungcad.errors import LungcadError
    from lungcad.export.torchscript import load_torchscript_model

    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 not really a zip" * 10)
    with pytest.raises(LungcadError, match="bad.pt"):
        load_torchscript_model(tmp_path / "bad.pt")


@pytest.mark.parametrize("argv, message", [
    (["--opset", "9"], "too old"),
    (["--format", "torchscript", "--opset", "17"], "--opset applies to --format onnx only"),
    (["--tolerance", "0"], "--tolerance must be positive"),
])
def test_bad_options_are_one_line_errors(ct_model_dir, tmp_path, capsys, argv, message):
    assert main(["export", str(ct_model_dir), "--out", str(tmp_path / "x.onnx"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_not_a_model_and_out_folder_are_errors(ct_model_dir, tmp_path, capsys):
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "not a model directory" in capsys.readouterr().err
    assert main(["export", str(ct_model_dir), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["export", str(ct_model_dir), "--out", str(tmp_path / "no" / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_predict_onnx_with_damaged_file_is_one_line(tmp_path, dataset, capsys):
    (tmp_path / "bad.onnx").write_bytes(b"nonsense")
    assert main(["predict", str(tmp_path / "bad.onnx"), str(dataset), "--runtime", "onnx"]) == 2
    err = capsys.readouterr().err
    assert "bad.onnx" in err and "Traceback" not in err


def test_a_segmenter_is_refused_with_one_line(tmp_path, capsys):
    from lungcad.cli import main

    status = main(["export", "jsrt-lungs", "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "exports classifiers" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


def test_a_detector_exports_to_onnx_only(tmp_path, capsys):
    from detector_testing import save_detector_dir

    from lungcad.cli import main

    model = save_detector_dir(tmp_path / "detector")
    status = main(["export", str(model), "--format", "torchscript", "--out",
                   str(tmp_path / "m.pt")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "detectors to ONNX" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.pt").exists()
    assert main(["export", str(model), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "max |p difference|" in capsys.readouterr().out
    block = json.loads((tmp_path / "m.onnx.json").read_text())["export"]
    assert block["cells"] == "cells" and block["format"] == "lungcad-export/2"


def test_an_onnx_detector_reads_the_map_its_model_json_names(tmp_path):
    """A detector whose image probability is P(nodule) * P(malignant | nodule) (``output:
    malignant``): on ONNX Runtime, where there is no network to ask, the model.json says which
    map the image-level probability reads, so both runtimes agree."""
    from dataclasses import replace

    from detector_testing import detector_network, save_detector_dir

    from lungcad import load_model
    from lungcad.detection.batch import image_probabilities
    from lungcad.detection.detect import detect
    from lungcad.model_dir import read_spec, save_model_dir

    folder = save_detector_dir(tmp_path / "nodule")
    spec = read_spec(folder)
    spec = replace(spec, architecture_args={**spec.architecture_args, "output": "malignant"})
    network = detector_network()
    network.output = "malignant"
    save_model_dir(tmp_path / "malignant", network, spec, card="# test\n")
    on_torch = load_model(tmp_path / "malignant")
    on_onnx = load_model(tmp_path / "malignant", runtime="onnx")
    assert on_torch.map_output == on_onnx.map_output == "malignant"
    image = np.random.default_rng(3).random((128, 128)).astype(np.float32)
    a, b = (detect(m, image, lungs=None) for m in (on_torch, on_onnx))
    pa, pb = (image_probabilities(d, m.map_output) for d, m in ((a, on_torch), (b, on_onnx)))
    assert pa[1] == pytest.approx(a.malignancy) and pa[1] != pytest.approx(a.nodule_probability)
    np.testing.assert_allclose(pb, pa, atol=1e-4)
    # and the network's own forward (the exported probabilities) reads the same map
    np.testing.assert_allclose(on_onnx.predict_proba([image])[0], pa, atol=1e-4)


def test_a_two_stage_detector_marks_the_same_on_onnx_runtime(tmp_path):
    """A two-stage detector's ONNX file carries its patch classifier too: the fused marks on
    ONNX Runtime are PyTorch's (positions within a pixel, scores within 1e-4)."""
    from dataclasses import replace

    from detector_testing import save_detector_dir

    from lungcad import load_model
    from lungcad.detection.detect import detect
    from lungcad.export.onnx_stage2 import STAGE2_KEY
    from lungcad.model_dir import read_spec, save_model_dir
    from lungcad.models import create_model

    spec = read_spec(save_detector_dir(tmp_path / "one"))
    args = {**spec.architecture_args, "patch_kind": "cnn", "patch_side": 24,
            "context_mm": [20.0, 40.0]}
    spec = replace(spec, architecture="nodule-two-stage-lite0", architecture_args=args,
                   detection={**spec.detection, "second_stage": {"candidates": 12,
                                                                 "candidate_distance_mm": 10.0}})
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    network = create_model("nodule-two-stage-lite0", 2, **args)
    with torch.no_grad():
        network.stage1.cells.bias.copy_(torch.tensor([1.0, 0.0]))
    save_model_dir(tmp_path / "two", network, spec, card="# test\n")
    assert main(["export", str(tmp_path / "two"), "--out", str(tmp_path / "m.onnx")]) == 0
    on_torch, on_onnx = load_model(tmp_path / "two"), load_model(tmp_path / "m.onnx", "onnx")
    assert on_onnx.marks_nodules and on_onnx.candidate_scorer is not None
    image = np.random.default_rng(4).random((128, 128)).astype(np.float32)
    a, b = detect(on_torch, image, lungs=None), detect(on_onnx, image, lungs=None)
    assert len(a) == len(b) >= 2
    for fa, fb in zip(a, b):
        assert abs(fa.x - fb.x) <= 1 and abs(fa.y - fb.y) <= 1
        assert fb.score == pytest.approx(fa.score, abs=1e-4)
    # the fused scores are not stage 1's: the second stage ran on both runtimes
    stage1 = sorted(on_torch.cell_maps(on_torch.prepare(image)[None])[0, 0].ravel())[::-1]
    assert a.findings[0].score != pytest.approx(float(stage1[0]), abs=1e-3)
    # a file whose second stage was stripped marks nothing rather than stage 1's maxima alone
    import onnx

    proto = onnx.load(str(tmp_path / "m.onnx"))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != STAGE2_KEY]
    del proto.metadata_props[:]
    for key, value in kept:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp_path / "stripped.onnx"))
    assert not load_model(tmp_path / "stripped.onnx", "onnx").marks_nodules
    # and a damaged second stage is named, not a traceback
    entry = proto.metadata_props.add()
    entry.key, entry.value = STAGE2_KEY, "bm90IGFuIG9ubnggbW9kZWw="  # base64 of plain text
    onnx.save(proto, str(tmp_path / "damaged.onnx"))
    from lungcad.errors import LungcadError

    with pytest.raises(LungcadError, match="second stage .* cannot be read"):
        load_model(tmp_path / "damaged.onnx", "onnx")
