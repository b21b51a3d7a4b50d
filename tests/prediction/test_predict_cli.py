"""`lungcad predict`: dataset folders, files, folders, split parts, the one-line verdict, bad
images, and errors."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from predict_data import make_image, make_model_dir

from lungcad.cli import main
from lungcad.evaluation.predictions import read_predictions
from lungcad import load_model


def run_cli(capsys, *argv):
    status = main(["predict", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_dataset_folder_gives_labelled_rows_with_metadata(model_dir, dataset, tmp_path, capsys):
    folder, _ = dataset
    out = tmp_path / "preds.csv"
    status, stdout, err = run_cli(capsys, model_dir, folder, "--out", out, "--batch-size", "5")
    assert status == 0, err
    table = pd.read_csv(out)
    manifest = pd.read_csv(folder / "labels.csv")
    known = manifest[manifest["label"] != "unknown"]
    # one row per image with a class in the task; the unknown label is left out with a note
    assert table["path"].tolist() == known["path"].tolist()
    assert "left out 1 image(s) whose label (unknown)" in err
    assert list(table.columns[:6]) == ["path", "true_label", "prob_rest", "prob_malignant",
                                       "predicted_label", "model"]
    expected_truth = known["label"].map({"malignant": "malignant", "benign": "rest",
                                         "non_nodule": "rest"})
    assert table["true_label"].tolist() == expected_truth.tolist()
    assert (table["model"] == "tiny-ct@3").all()
    assert np.allclose(table[["prob_rest", "prob_malignant"]].sum(axis=1), 1, atol=1e-5)
    positive = table["prob_malignant"] >= 0.4  # the model's threshold
    assert (table["predicted_label"] == np.where(positive, "malignant", "rest")).all()
    for column in ("subtlety", "size_mm", "sex", "x_512", "y_512", "dataset_label"):
        assert column in table.columns, column
    assert table["x_512"].fillna(-1).tolist() == known["x_512"].fillna(-1).tolist()
    assert table["dataset_label"].tolist() == known["label"].tolist()
    assert "fold" not in table.columns  # no split used
    assert "wrote 12 prediction(s)" in stdout
    read_predictions(out)  # evaluate's reader accepts the file as it is


def test_probabilities_match_single_image_prediction(model_dir, dataset, tmp_path, capsys):
    """Batching (and batch size) changes nothing: each row equals LungModel.predict alone."""
    folder, _ = dataset
    outs = []
    for batch in (1, 16):
        out = tmp_path / f"b{batch}.csv"
        assert run_cli(capsys, model_dir, folder, "--out", out, "--batch-size", batch)[0] == 0
        outs.append(pd.read_csv(out))
    assert np.allclose(outs[0]["prob_malignant"], outs[1]["prob_malignant"], atol=2e-6)
    model = load_model(model_dir)
    for _, row in outs[1].head(3).iterrows():
        alone = model.predict(folder / row["path"]).probabilities["malignant"]
        assert abs(alone - row["prob_malignant"]) < 2e-6


def test_split_part_restricts_rows_and_adds_fold(model_dir, dataset, tmp_path, capsys):
    folder, split = dataset
    out = tmp_path / "test-fold1.csv"
    status, _, err = run_cli(capsys, model_dir, folder, "--split", split, "--part", "test",
                             "--fold", 1, "--out", out)
    assert status == 0, err
    table = pd.read_csv(out)
    test_part = json.loads(split.read_text())["folds"][1]["test"]
    labels = pd.read_csv(folder / "labels.csv").set_index("path")["label"]
    expected = [p for p in test_part if labels[p] != "unknown"]
    assert table["path"].tolist() == expected
    assert (table["fold"] == 1).all()

    out_val = tmp_path / "val-fold0.csv"
    assert run_cli(capsys, model_dir, folder, "--split", split, "--part", "val", "--fold", 0,
                   "--out", out_val)[0] == 0
    assert pd.read_csv(out_val)["path"].tolist() == json.loads(split.read_text())["folds"][0]["val"]


def test_split_with_several_folds_needs_fold(model_dir, dataset, tmp_path, capsys):
    folder, split = dataset
    status, _, err = run_cli(capsys, model_dir, folder, "--split", split, "--out", tmp_path / "x.csv")
    assert status == 2
    assert "has 2 folds: pass --fold K" in err and len(err.strip().splitlines()) == 1
    status, _, err = run_cli(capsys, model_dir, folder, "--fold", 1, "--out", tmp_path / "x.csv")
    assert status == 2 and "give --split too" in err


def test_split_for_another_dataset_is_refused(model_dir, dataset, tmp_path, capsys):
    folder, split = dataset
    other = tmp_path / "other-split.json"
    data = json.loads(split.read_text())
    data["manifest_sha256"] = "0" * 64
    other.write_text(json.dumps(data))
    status, _, err = run_cli(capsys, model_dir, folder, "--split", other, "--fold", 0,
                             "--out", tmp_path / "x.csv")
    assert status == 2 and "was made for a labels.csv" in err


def test_image_files_give_unlabelled_rows(model_dir, dataset, tmp_path, capsys):
    folder, _ = dataset
    files = [folder / "images" / "case000.png", folder / "images" / "case004.png"]
    out = tmp_path / "files.csv"
    status, _, err = run_cli(capsys, model_dir, *files, "--out", out)
    assert status == 0, err
    table = pd.read_csv(out)
    assert table["path"].tolist() == [str(f) for f in files]
    assert "true_label" not in table.columns and "fold" not in table.columns
    assert list(table.columns) == ["path", "prob_rest", "prob_malignant", "predicted_label", "model"]


def test_folder_is_searched_recursively_and_non_images_skipped(model_dir, tmp_path, capsys):
    root = tmp_path / "mixed"
    make_image(root / "a.png", seed=1)
    make_image(root / "sub" / "deeper" / "b.png", seed=2)
    make_image(tmp_path / "c.png", seed=3)
    shutil.copy(tmp_path / "c.png", root / "sub" / "no_extension")  # found by its content
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "README").write_text("not an image either")
    out = tmp_path / "folder.csv"
    status, _, err = run_cli(capsys, model_dir, root, "--out", out)
    assert status == 0, err
    paths = pd.read_csv(out)["path"].tolist()
    assert paths == [str(root / "a.png"), str(root / "sub" / "deeper" / "b.png"),
                     str(root / "sub" / "no_extension")]
    assert "skipped 2 file(s) that are not images" in err
    assert "notes.txt" in err and "README" in err


def test_default_output_file_in_current_folder(model_dir, dataset, tmp_path, capsys, monkeypatch):
    folder, _ = dataset
    monkeypatch.chdir(tmp_path)
    images = [folder / "images" / "case001.png", folder / "images" / "case002.png"]
    assert run_cli(capsys, model_dir, *images)[0] == 0
    assert len(pd.read_csv(tmp_path / "predictions.csv")) == 2


def test_single_image_prints_one_verdict_line(model_dir, dataset, tmp_path, capsys, monkeypatch):
    folder, _ = dataset
    monkeypatch.chdir(tmp_path)
    image = folder / "images" / "case000.png"
    status, out, err = run_cli(capsys, model_dir, image)
    assert status == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    match = re.fullmatch(r"case000\.png: (rest|malignant) \(p=(\d\.\d\d), threshold 0\.40\) "
                         r"\u2014 research software, not a medical device", lines[0])
    assert match, lines[0]
    prediction = load_model(model_dir).predict(image)
    assert match.group(1) == prediction.label
    assert float(match.group(2)) == pytest.approx(prediction.probabilities["malignant"], abs=0.006)
    assert not (tmp_path / "predictions.csv").exists()


def test_multiclass_verdict_names_the_most_probable_class(dataset, tmp_path, capsys):
    folder, _ = dataset
    model_dir = make_model_dir(tmp_path / "three", task="jsrt-3class",
                               classes=("non_nodule", "benign", "malignant"), threshold=None)
    status, out, _ = run_cli(capsys, model_dir, folder / "images" / "case003.png")
    assert status == 0
    prediction = load_model(model_dir).predict(folder / "images" / "case003.png")
    p = prediction.probabilities[prediction.label]
    assert out.strip() == (f"case003.png: {prediction.label} (p={p:.2f}) \u2014 research "
                           "software, not a medical device")


def test_bad_images_are_reported_and_the_rest_go_on(model_dir, dataset, tmp_path, capsys):
    folder, _ = dataset
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)  # a PNG signature, then nothing
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.fromarray(np.full((48, 48), 128, np.uint8)).save(blank)  # readable, but unusable
    good = [folder / "images" / "case000.png", folder / "images" / "case001.png"]
    out = tmp_path / "partial.csv"
    status, _, err = run_cli(capsys, model_dir, good[0], broken, blank, good[1], "--out", out,
                             "--batch-size", 4)
    assert status == 1
    assert str(broken) in err and str(blank) in err and "blank" in err
    assert "2 of 4 image(s) could not be predicted" in err
    assert pd.read_csv(out)["path"].tolist() == [str(p) for p in good]


def test_unknown_model_is_one_line_error(dataset, capsys):
    folder, _ = dataset
    status, out, err = run_cli(capsys, "no-such-model", folder / "images" / "case000.png")
    assert status == 2
    assert err.startswith("lungcad predict: error: no-such-model: not a model directory")
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_missing_input_is_one_line_error(model_dir, tmp_path, capsys):
    status, _, err = run_cli(capsys, model_dir, tmp_path / "nope.png")
    assert status == 2 and "input not found" in err and len(err.strip().splitlines()) == 1


def test_dataset_folder_must_be_alone(model_dir, dataset, capsys):
    folder, _ = dataset
    status, _, err = run_cli(capsys, model_dir, folder, folder / "images" / "case000.png")
    assert status == 2 and "give it alone" in err


def test_run_folder_is_accepted_as_model(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    make_model_dir(run / "model")
    folder, _ = dataset
    status, out, _ = run_cli(capsys, run, folder / "images" / "case000.png")
    assert status == 0 and out.startswith("case000.png: ")


def test_heatmaps_are_written_per_image(model_dir, dataset, tmp_path, capsys):
    folder, _ = dataset
    images = [folder / "images" / "case000.png", folder / "images" / "case001.png"]
    heat = tmp_path / "heat"
    status, out, err = run_cli(capsys, model_dir, *images, "--out", tmp_path / "h.csv",
                               "--heatmaps", heat)
    assert status == 0, err
    for stem in ("case000", "case001"):
        saliency = np.load(heat / f"{stem}_saliency.npy")
        assert saliency.shape == (48, 48)
        assert (heat / f"{stem}_overlay.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote 2 heatmap(s)" in out


def test_onnx_runtime_without_export_module_is_a_clear_error(model_dir, dataset, capsys,
                                                            monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lungcad.export.onnx_runtime", None)  # import fails
    folder, _ = dataset
    status, _, err = run_cli(capsys, model_dir, folder / "images" / "case000.png",
                             "--runtime", "onnx")
    assert status == 2 and "--runtime onnx needs ONNX Runtime" in err


def test_a_file_list_adds_its_paths_relative_to_its_folder(model_dir, tmp_path, capsys):
    images = [make_image(tmp_path / "archive" / f"a{i}.png", seed=i) for i in range(3)]
    listing = tmp_path / "archive" / "files.txt"
    listing.write_text("# chosen images\na0.png\n\n" + str(images[2]) + "\n")
    out = tmp_path / "p.csv"
    status, _, err = run_cli(capsys, model_dir, images[1], "--list", listing, "--out", out)
    assert status == 0, err
    assert pd.read_csv(out)["path"].tolist() == [str(images[1]), str(images[0]),
                                                 str(images[2])]
    status, _, err = run_cli(capsys, model_dir, "--list", tmp_path / "none.txt", "--out", out)
    assert status == 2 and "cannot read the file list" in err


def test_ray_options_without_the_ray_engine_are_refused(model_dir, tmp_path, capsys):
    image = make_image(tmp_path / "a.png")
    status, _, err = run_cli(capsys, model_dir, image, "--workers", "4")
    assert status == 2 and "--workers: only with --engine ray" in err
