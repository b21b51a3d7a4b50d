"""`lungcad data prepare` on synthetic sources: manifest re-sizing, refusals, JSRT bookkeeping."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lungcad.cli import main
from lungcad.data.manifest import Manifest
from lungcad.data.prepare import jsrt_row, normalise_class_name
from lungcad.errors import LungcadError


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("folder, label", [("Bengin cases", "benign"), ("Malignant cases", "malignant"),
                                           ("Normal cases", "normal"), ("not_normal", "not_normal"),
                                           ("normal", "normal"), ("Large Cell-Carcinoma", "large_cell_carcinoma")])
def test_class_folder_names_are_normalised(folder, label):
    assert normalise_class_name(folder) == label


def test_manifest_resize_keeps_columns_scales_coordinates_and_masks(tmp_path, capsys):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        image = rng.integers(0, 65535, (128, 96), dtype=np.uint16)  # 16-bit, not square
        write_png(src / "images" / f"a{i}.png", image)
        mask = np.zeros((128, 96), dtype=np.uint8)
        mask[32:96, 24:72] = 255
        write_png(src / "masks" / f"a{i}.png", mask)
        rows.append({"path": f"images/a{i}.png", "label": "x" if i else "y", "site": f"s{i}",
                     "x_128": 64.0, "y_128": 32.0, "x": 48.0, "y": 64.0, "width": 96,
                     "height": 128, "mask_path": f"masks/a{i}.png"})
    pd.DataFrame(rows).to_csv(src / "labels.csv", index=False)
    before = snapshot(src)
    out = tmp_path / "out"
    assert main(["data", "prepare", str(src), "--format", "manifest", "--size", "64", "--out",
                 str(out), "--workers", "2"]) == 0
    assert "prepared 3 image(s)" in capsys.readouterr().out
    assert snapshot(src) == before  # the source is untouched
    t = Manifest.load(out).table
    assert list(t.columns[:len(rows[0])]) == list(rows[0])  # every column kept, in order
    assert t["site"].tolist() == ["s0", "s1", "s2"] and t["label"].tolist() == ["y", "x", "x"]
    assert t["x_128"].tolist() == [64.0] * 3                # the 128 frame is still the 128 frame
    assert t["x_64"].tolist() == [32.0] * 3 and t["y_64"].tolist() == [16.0] * 3
    assert t["x"].tolist() == [32.0] * 3 and t["y"].tolist() == [32.0] * 3  # 48/96*64, 64/128*64
    assert t["width"].tolist() == [64] * 3 and t["height"].tolist() == [64] * 3
    image = Image.open(out / t["path"][0])
    assert image.size == (64, 64) and image.mode.startswith("I")  # still 16-bit
    mask = np.asarray(Image.open(out / t["mask_path"][0]))
    assert mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}
    assert mask[:16].max() == 0 and mask[24:40, 20:44].min() == 255


def test_manifest_needs_a_size_and_never_writes_into_the_source(tmp_path, capsys):
    src = tmp_path / "src"
    write_png(src / "a.png", np.zeros((40, 40), dtype=np.uint8))
    pd.DataFrame([{"path": "a.png", "label": "n"}]).to_csv(src / "labels.csv", index=False)
    assert main(["data", "prepare", str(src), "--format", "manifest", "--out", str(tmp_path / "o")]) == 2
    for out in (src, src / "sub"):
        assert main(["data", "prepare", str(src), "--format", "manifest", "--size", "32",
                     "--out", str(out)]) == 2
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("keep me")
    assert main(["data", "prepare", str(src), "--format", "manifest", "--size", "32",
                 "--out", str(busy)]) == 2
    err = capsys.readouterr().err
    assert "give --size" in err and "overlaps the source" in err and "not an empty folder" in err
    assert not (src / "sub").exists() and (busy / "x.txt").read_text() == "keep me"


def test_folders_skip_non_images_and_keep_names_apart(tmp_path, capsys):
    src = tmp_path / "src"
    write_png(src / "normal" / "a.png", np.full((40, 40), 10, dtype=np.uint8))
    write_png(src / "normal" / "sub" / "a.png", np.full((40, 40), 20, dtype=np.uint8))
    write_png(src / "normal" / "a.bmp", np.full((40, 40), 30, dtype=np.uint8))
    (src / "normal" / "notes.txt").write_text("not an image")
    write_png(src / "not_normal" / "b.png", np.full((50, 40), 40, dtype=np.uint8))
    out = tmp_path / "out"
    assert main(["data", "prepare", str(src), "--format", "folders", "--out", str(out),
                 "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "prepared 4 image(s)" in printed and "skipped 1 non-image file(s)" in printed
    t = Manifest.load(out).table.set_index("original_name")
    assert len(set(t["path"])) == 4
    assert t.loc["not_normal/b.png", "label"] == "not_normal"
    assert (t.loc["not_normal/b.png", "width"], t.loc["not_normal/b.png", "height"]) == (40, 50)
    for name, value in [("normal/a.png", 10), ("normal/sub/a.png", 20), ("normal/a.bmp", 30)]:
        assert np.asarray(Image.open(out / t.loc[name, "path"])).max() == value


def test_jsrt_row_reads_the_kaggle_fields():
    record = pd.Series({"study_id": "JPCLN007.IMG", "subtlety": "3", "size": "20", "age": "?",
                        "gender": "female", "x": "1024", "y": "512", "state": "malignant",
                        "position": "l.upper lobe", "diagnosis": "lung cancer"})
    row = jsrt_row(record, 256)
    assert row["path"] == "images/JPCLN007.png" and row["label"] == "malignant"
    assert (row["has_nodule"], row["malignant"], row["subtlety"], row["size_mm"]) == (1, 1, 3, 20)
    assert np.isnan(row["age"]) and row["sex"] == "Female"
    assert (row["x_2048"], row["y_2048"], row["x_256"], row["y_256"]) == (1024, 512, 128, 64)
    normal = jsrt_row(record.copy().replace({"malignant": "non-nodule", "JPCLN007.IMG": "JPCNN003"}), 256)
    assert normal["label"] == "non_nodule" and normal["has_nodule"] == 0
    assert all(np.isnan(normal[k]) for k in ("x_2048", "x_256", "subtlety", "size_mm"))
    with pytest.raises(LungcadError, match="unknown JSRT state"):
        jsrt_row(record.copy().replace({"malignant": "maybe"}), 256)


def test_jsrt_reports_missing_images_and_missing_rows_by_name(tmp_path, capsys):
    from lungcad.io.jsrt import write_jsrt_raw

    src = tmp_path / "raw"
    src.mkdir()
    ramp = np.tile(np.linspace(0, 1, 2048, dtype=np.float32), (2048, 1))
    for stem in ("JPCNN001", "JPCNN002"):
        write_jsrt_raw(ramp, src / f"{stem}.IMG")
    meta = [{"study_id": s, "subtlety": "", "size": "", "age": "50", "gender": "male", "x": "",
             "y": "", "state": "non-nodule", "position": "", "diagnosis": ""}
            for s in ("JPCNN001", "JPCNN009.IMG")]
    pd.DataFrame(meta).to_csv(src / "jsrt_metadata.csv", index=False)
    out = tmp_path / "out"
    assert main(["data", "prepare", str(src), "--format", "jsrt", "--size", "64", "--out", str(out),
                 "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert "prepared 1 image(s)" in captured.out and "2 failed" in captured.out
    assert "JPCNN009.IMG: listed in jsrt_metadata.csv but no JPCNN009.IMG" in captured.err
    assert "JPCNN002.IMG: no row for JPCNN002" in captured.err
    t = Manifest.load(out).table
    assert t["path"].tolist() == ["images/JPCNN001.png"] and t["sex"].tolist() == ["Male"]
    assert {"x_2048", "y_2048", "x_64", "y_64"} <= set(t.columns)


def test_prepare_jsrt_writes_the_lesion_table_and_both_truths_agree(tmp_path, capsys):
    """JSRT is one producer of lesions.csv (its nodule in the image's own pixels, spacing in
    labels.csv); scoring through it and through the old x_N columns gives the same FROC."""
    import json

    from lungcad.io import write_jsrt_raw

    src = tmp_path / "raw"
    src.mkdir()
    ramp = np.tile(np.linspace(0, 1, 2048, dtype=np.float32), (2048, 1))
    for stem in ("JPCLN001", "JPCNN001"):
        write_jsrt_raw(ramp, src / f"{stem}.IMG")
    pd.DataFrame([{"study_id": "JPCLN001", "subtlety": "4", "size": "21", "age": "50",
                   "gender": "f", "x": "1024", "y": "768", "state": "malignant", "position": "",
                   "diagnosis": ""},
                  {"study_id": "JPCNN001", "subtlety": "", "size": "", "age": "60",
                   "gender": "m", "x": "", "y": "", "state": "non-nodule", "position": "",
                   "diagnosis": ""}]).to_csv(src / "jsrt_metadata.csv", index=False)
    out = tmp_path / "out"
    assert main(["data", "prepare", str(src), "--format", "jsrt", "--size", "64", "--out",
                 str(out), "--workers", "1"]) == 0
    lesions = pd.read_csv(out / "lesions.csv")
    assert lesions[["path", "x", "y", "diameter_mm", "label"]].values.tolist() == [
        ["images/JPCLN001.png", 32.0, 24.0, 21.0, "nodule"]]
    labels = Manifest.load(out).table
    assert labels["spacing_mm"].tolist() == [pytest.approx(5.6)] * 2
    findings = tmp_path / "f.csv"
    findings.write_text("path,x,y,radius_mm,score,frame_size\nimages/JPCLN001.png,33,24,5,0.9,64\n"
                        "images/JPCNN001.png,10,10,5,0.4,64\nimages/JPCLN001.png,5,60,5,0.5,64\n")
    results = []
    for _ in range(2):
        report = tmp_path / f"r{len(results)}"
        assert main(["evaluate", "--findings", str(findings), "--dataset", str(out),
                     "--bootstrap", "0", "--out", str(report)]) == 0
        froc = json.loads((report / "froc.json").read_text())
        results.append((froc["curve"], froc["n_false_positive_marks"]))
        (out / "lesions.csv").unlink(missing_ok=True)  # the second pass derives the nodule from x_64, y_64
    assert results[0] == results[1] and results[0][1] == 2
    assert "derived from labels.csv (x_64, y_64, size_mm)" in capsys.readouterr().out
