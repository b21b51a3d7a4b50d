"""`lungcad segment MODEL IMAGE... --out DIR`: per image a 0/255 mask at the input's size and an
outline overlay, one segmentation.csv; bad files named and skipped; classifiers refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lungcad.cli import main
from segment_models import (dark_pixel_segmenter, save_untrained_classifier,
                            save_untrained_segmenter, two_lungs, write_png)


def ct_small() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm", download=False))


def rg1_unci() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("RG1_UNCI.dcm", download=False))


@pytest.fixture()
def dark_model(monkeypatch):
    """`lungcad segment` loads a 'dark pixels are lung' model, whatever MODEL names."""
    import lungcad.inference

    model = dark_pixel_segmenter()
    monkeypatch.setattr(lungcad.inference, "load_model", lambda name, *a, **k: model)
    return model


def test_writes_masks_overlays_and_one_csv(tmp_path, dark_model, capsys):
    chest = two_lungs(200, 160)
    inputs = tmp_path / "in"
    write_png(chest, inputs / "a" / "chest.png")
    write_png(chest[:, ::-1], inputs / "b" / "chest.png")  # same stem, another folder
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (inputs / "notes.txt").write_text("not an image")
    out = tmp_path / "out"

    status = main(["segment", "jsrt-lungs", str(inputs), str(ct_small()), "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 1  # one image could not be read; the others went on
    failures = [line for line in captured.err.splitlines() if "failed" in line]
    assert len(failures) == 1 and "broken.png" in failures[0]
    assert "1 of 4 image(s) could not be segmented" in captured.err

    table = pd.read_csv(out / "segmentation.csv")
    assert list(table.columns[:3]) == ["path", "plausible", "warning"]
    assert {"right_area_px", "left_height_px", "lung_fraction", "right_area_mm2",
            "left_height_mm", "model"} <= set(table.columns)
    assert len(table) == 3
    rows = table.set_index("path")
    chest_a = rows.loc[str(inputs / "a" / "chest.png")]
    assert bool(chest_a["plausible"]) and pd.isna(chest_a["warning"])
    assert pd.isna(chest_a["right_area_mm2"])  # a PNG has no pixel spacing
    from lungcad.io import load_image

    expected = dark_model.segment(load_image(inputs / "a" / "chest.png").array)
    assert chest_a["right_area_px"] == expected.measures["right_area_px"] > 1000

    # The CT slice: a warning on one line of stderr and in the CSV; mm from its PixelSpacing.
    ct = rows.loc[str(ct_small())]
    assert not bool(ct["plausible"]) and "CT" in ct["warning"]
    warned = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warned) == 1 and "CT_small.dcm" in warned[0]
    assert ct["right_area_mm2"] == pytest.approx(ct["right_area_px"] * 0.661468 ** 2, rel=1e-3)

    # Distinct names for the two chest.png; masks at the input's size, 0/255, as segmented.
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["CT_small_mask.png", "CT_small_overlay.png", "a_chest_mask.png",
                            "a_chest_overlay.png", "b_chest_mask.png", "b_chest_overlay.png",
                            "segmentation.csv"])
    mask = np.asarray(Image.open(out / "a_chest_mask.png"))
    assert mask.shape == chest.shape and set(np.unique(mask)) == {0, 255}
    assert np.array_equal(mask == 255, expected.mask)
    flipped = np.asarray(Image.open(out / "b_chest_mask.png"))
    assert np.array_equal(flipped == 255, dark_model.segment(
        load_image(inputs / "b" / "chest.png").array).mask)

    overlay = np.asarray(Image.open(out / "a_chest_overlay.png").convert("RGB"))
    assert overlay.shape[:2] == (600, 480)  # a small image is enlarged 3x for legible text
    colours = {tuple(c) for c in overlay.reshape(-1, 3)}
    assert (0, 220, 255) in colours and (255, 150, 0) in colours  # right cyan, left orange


def test_single_image_gets_a_summary_line_with_the_disclaimer(tmp_path, dark_model, capsys):
    image = write_png(two_lungs(), tmp_path / "one.png")
    assert main(["segment", "jsrt-lungs", str(image), "--out", str(tmp_path / "o")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("one.png: right lung (image left): ")
    assert "left lung (image right)" in lines[0]
    assert lines[0].endswith("research software, not a medical device")


def test_overlay_of_a_large_image_keeps_its_size(tmp_path, dark_model):
    image = write_png(two_lungs(640, 600), tmp_path / "big.png")
    assert main(["segment", "m", str(image), "--out", str(tmp_path / "o")]) == 0
    assert Image.open(tmp_path / "o" / "big_overlay.png").size == (600, 640)
    assert Image.open(tmp_path / "o" / "big_mask.png").size == (600, 640)


def test_a_classifier_is_refused_in_one_line(tmp_path):
    classifier = save_untrained_classifier(tmp_path / "classifier")
    image = write_png(two_lungs(), tmp_path / "x.png")
    result = subprocess.run([sys.executable, "-m", "lungcad", "segment", str(classifier),
                             str(image), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "is a classifier" in result.stderr and "lungcad predict" in result.stderr
    assert not (tmp_path / "out").exists()


def test_out_that_cannot_be_written_fails_before_any_image(tmp_path, dark_model, capsys,
                                                            monkeypatch):
    image = write_png(two_lungs(), tmp_path / "x.png")
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    calls = []
    monkeypatch.setattr(dark_model, "segment", lambda *a, **k: calls.append(a))
    assert main(["segment", "m", str(image), "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lungcad segment: error: cannot write --out") and not calls
    assert len(err.strip().splitlines()) == 1


def test_no_images_and_missing_input_are_one_line_errors(tmp_path, dark_model, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["segment", "m", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no images to segment" in capsys.readouterr().err
    assert main(["segment", "m", str(tmp_path / "nowhere.png"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "input not found" in capsys.readouterr().err


def test_a_model_directory_is_loaded_and_run(tmp_path, capsys):
    model_dir = save_untrained_segmenter(tmp_path / "seg")
    image = write_png(two_lungs(), tmp_path / "x.png")
    status = main(["segment", str(model_dir), str(image), "--out", str(tmp_path / "o")])
    assert status == 0, capsys.readouterr().err
    table = pd.read_csv(tmp_path / "o" / "segmentation.csv")
    assert table["model"].tolist() == ["jsrt-lungs@1"]
    assert Image.open(tmp_path / "o" / "x_mask.png").size == (160, 200)


def test_bundled_jsrt_lungs_outlines_a_real_monochrome1_radiograph(tmp_path, capsys):
    from lungcad.model_dir import bundled_models

    if "jsrt-lungs" not in bundled_models():
        pytest.skip("the bundled jsrt-lungs model is not installed")
    assert main(["segment", "jsrt-lungs", str(rg1_unci()), "--out", str(tmp_path)]) == 0
    row = pd.read_csv(tmp_path / "segmentation.csv").iloc[0]
    assert bool(row["plausible"]), row["warning"]
    # Both lungs of a PA film: similar heights, together a good part of the picture.
    assert 0.15 < row["lung_fraction"] < 0.6
    assert 0.7 < row["right_height_px"] / row["left_height_px"] < 1.4
    mask = np.asarray(Image.open(tmp_path / "RG1_UNCI_mask.png"))
    assert mask.shape == (1955, 1841)
    # MONOCHROME1 is inverted on reading: the lungs are dark, so the mask's mean intensity in
    # the image is below the rest.
    from lungcad.io import load_image

    image = load_image(rg1_unci()).array
    assert image[mask == 255].mean() < image[mask == 0].mean()


def test_a_file_name_that_looks_like_a_formula_is_written_as_text(tmp_path, dark_model,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_png(two_lungs(), tmp_path / "=HYPERLINK(1).png")
    assert main(["segment", "m", "=HYPERLINK(1).png", "--out", "o"]) == 0
    rows = (tmp_path / "o" / "segmentation.csv").read_text().splitlines()
    assert rows[1].startswith("'=HYPERLINK(1).png,")  # a spreadsheet shows it as text


def test_predict_with_a_segmenter_is_refused_in_one_line(tmp_path, dark_model, capsys):
    """`lungcad predict` with a segmentation model said nothing useful (a traceback) before."""
    image = write_png(two_lungs(), tmp_path / "x.png")
    assert main(["predict", "jsrt-lungs", str(image)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a segmentation model" in err[0]
    assert "lungcad segment jsrt-lungs" in err[0]
