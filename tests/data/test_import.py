"""``lungcad data import``: every annotation format on small files these tests write, boxes
round-tripping to the same pixels; a box outside its image, a missing image and a malformed file
each stop the import with one line and leave nothing written; NODE21's .mha + metadata.csv."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lungcad.cli import main

W, H = 40, 30
COLS, ROWS = range(10, 20), range(5, 15)   # the box covers pixel columns 10-19, rows 5-14


def _png(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (H, W), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _covered(row) -> tuple[list[int], list[int]]:
    """Pixel columns and rows whose centres lie in the box (lungcad: centres at whole numbers)."""
    return ([c for c in range(W) if row.x0 <= c <= row.x1],
            [r for r in range(H) if row.y0 <= r <= row.y1])


def _coco(src, bbox=(10, 5, 10, 10)):
    data = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                       {"id": 2, "file_name": "b.png", "width": W, "height": H}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": list(bbox)}],
            "categories": [{"id": 7, "name": "Nodule"}]}
    (src / "coco.json").write_text(json.dumps(data))
    return [src / "coco.json"]


def _voc(src, box=(11, 6, 20, 15)):
    (src / "voc").mkdir()
    objects = ("<object><name>Mass</name><bndbox>" + "".join(
        f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        + "</bndbox></object>")
    (src / "voc" / "a.xml").write_text(f"<annotation><filename>a.png</filename>{objects}"
                                       "</annotation>")
    (src / "voc" / "b.xml").write_text("<annotation><filename>b.png</filename></annotation>")
    return [src / "voc"]


def _cvat(src, box=(10, 5, 20, 15)):
    attrs = " ".join(f'{t}="{v}"' for t, v in zip(("xtl", "ytl", "xbr", "ybr"), box))
    (src / "cvat.xml").write_text(
        f'<annotations><image id="0" name="a.png" width="{W}" height="{H}">'
        f'<box label="nodule" {attrs}/></image><image id="1" name="b.png"/></annotations>')
    return [src / "cvat.xml"]


def _yolo(src, box=(15 / W, 10 / H, 10 / W, 10 / H)):
    (src / "labels").mkdir()
    (src / "labels" / "classes.txt").write_text("nodule\nmass\n")
    (src / "labels" / "a.txt").write_text("0 " + " ".join(f"{v:.8f}" for v in box) + "\n")
    (src / "labels" / "b.txt").write_text("")
    return [src / "labels"]


def _chestx_det(src, box=(10, 5, 20, 15)):
    data = [{"file_name": "a.png", "syms": ["Nodule"], "boxes": [list(box)], "polygons": []},
            {"file_name": "b.png", "syms": [], "boxes": [], "polygons": []}]
    (src / "chestx.json").write_text(json.dumps(data))
    return [src / "chestx.json"]


def _nih(src, box=(10, 5, 10, 10)):
    (src / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        f"a.png,Nodule,{','.join(map(str, box))}\n")
    return [src / "BBox_List_2017.csv"]


WRITERS = {"coco": _coco, "voc": _voc, "cvat": _cvat, "yolo": _yolo, "chestx-det": _chestx_det,
           "nih-bbox": _nih}


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    _png(folder / "a.png", 0)
    _png(folder / "b.png", 1)
    (tmp_path / "src").mkdir()
    return folder


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_boxes_round_trip_to_the_same_pixels(fmt, images, tmp_path, capsys):
    sources = WRITERS[fmt](tmp_path / "src")
    out = tmp_path / "ds"
    assert main(["data", "import", *map(str, sources), "--format", fmt, "--images", str(images),
                 "--out", str(out)]) == 0
    lesions = pd.read_csv(out / "lesions.csv")
    assert len(lesions) == 1 and lesions.path[0] == "images/a.png"
    cols, rows = _covered(lesions.iloc[0])
    assert cols == list(COLS) and rows == list(ROWS)
    labels = pd.read_csv(out / "labels.csv").set_index("path")
    if fmt != "nih-bbox":  # the NIH list names annotated images only
        assert labels.loc["images/b.png", "label"] == "no_lesion"
    assert labels.loc["images/a.png", "label"] == "lesion"
    assert (labels.loc["images/a.png", "width"], labels.loc["images/a.png", "height"]) == (W, H)
    assert (out / "images" / "a.png").is_symlink()  # referenced in place by default
    assert lesions.label[0] in ("nodule", "mass")


def test_copy_copies_and_labels_keeps_only_the_named_lesions(images, tmp_path, capsys):
    src = tmp_path / "src" / "BBox_List_2017.csv"
    src.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Nodule,10,5,10,10\n"
                   "a.png,Atelectasis,1,1,5,5\nb.png,Effusion,1,1,5,5\n")
    out = tmp_path / "ds"
    assert main(["data", "import", str(src), "--format", "nih-bbox", "--images", str(images),
                 "--out", str(out), "--copy", "--labels", "nodule,mass"]) == 0
    assert not (out / "images" / "a.png").is_symlink() and (out / "images" / "a.png").is_file()
    assert pd.read_csv(out / "lesions.csv")["label"].tolist() == ["nodule"]
    labels = pd.read_csv(out / "labels.csv").set_index("path")["label"]
    assert labels.to_dict() == {"images/a.png": "lesion", "images/b.png": "no_lesion"}
    assert "dropped (not in --labels): atelectasis 1, effusion 1" in capsys.readouterr().out


@pytest.mark.parametrize("fmt, make, message", [
    ("coco", lambda s: _coco(s, (35, 5, 10, 10)), r"coco.json: annotations\[0\].*outside"),
    ("voc", lambda s: _voc(s, (11, 6, 20, 31)), r"a.xml: object 1.*outside"),
    ("yolo", lambda s: _yolo(s, (0.99, 0.5, 0.2, 0.2)), r"a.txt: line 1.*outside"),
    ("chestx-det", lambda s: _chestx_det(s, (10, 5, 41, 15)), r"chestx.json: entry 0.*outside"),
])
def test_a_box_outside_the_image_is_one_line_and_nothing_is_written(fmt, make, message, images,
                                                                    tmp_path, capsys):
    sources = make(tmp_path / "src")
    out = tmp_path / "ds"
    assert main(["data", "import", *map(str, sources), "--format", fmt, "--images", str(images),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err)
    assert not out.exists() and not list(tmp_path.glob(".ds.partial-*"))


def test_a_missing_image_is_one_line_and_nothing_is_written(images, tmp_path, capsys):
    (images / "b.png").unlink()
    sources = _cvat(tmp_path / "src")
    out = tmp_path / "ds"
    assert main(["data", "import", *map(str, sources), "--format", "cvat", "--images",
                 str(images), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cvat.xml: image b.png" in err and "not found" in err
    assert not out.exists()


@pytest.mark.parametrize("fmt, text, message", [
    ("coco", "{not json", "coco.json: not a readable JSON file"),
    ("coco", json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "categories": [],
                         "annotations": [{"image_id": 1, "category_id": 3, "bbox": [1, 1, 2, 2]}]}),
     "annotations[0]: its category_id 3"),
    ("cvat", "<annotations><image name='a.png'><box label='n' xtl='x' ytl='1' xbr='2' ybr='3'/>"
             "</image></annotations>", "image a.png, box 1: x0 is not a number"),
    ("node21", "img_name,x,y,width,height,label\na.png,1,1,4,4,maybe\n",
     "data row 1 (image a.png): label must be 1 (nodule) or 0"),
    ("nih-bbox", "Image Index,Finding Label\na.png,Nodule\n", "not an NIH BBox_List_2017.csv"),
])
def test_a_malformed_file_is_one_line_naming_file_and_entry(fmt, text, message, images, tmp_path,
                                                            capsys):
    name = {"coco": "coco.json", "cvat": "cvat.xml", "node21": "metadata.csv",
            "nih-bbox": "bbox.csv"}[fmt]
    (tmp_path / "src" / name).write_text(text)
    out = tmp_path / "ds"
    assert main(["data", "import", str(tmp_path / "src" / name), "--format", fmt, "--images",
                 str(images), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and name in err
    assert not out.exists()


def test_node21_mha_and_metadata_round_trip(tmp_path, capsys):
    """NODE21 as distributed: .mha images (spacing in the header) and metadata.csv with several
    nodules on one image and a negative image; evaluation reads the result."""
    import SimpleITK as sitk
    from lungcad.io import load_image

    folder = tmp_path / "node21" / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for name in ("n1.mha", "n2.mha"):
        arrays[name] = rng.integers(0, 4096, (H, W)).astype(np.uint16)
        image = sitk.GetImageFromArray(arrays[name])
        image.SetSpacing((0.25, 0.25))
        sitk.WriteImage(image, str(folder / name))
    meta = tmp_path / "node21" / "metadata.csv"
    meta.write_text("img_name,x,y,width,height,label\n"
                    "n1.mha,10,5,10,10,1\nn1.mha,25,20,6,4,1\nn2.mha,0,0,0,0,0\n")
    out = tmp_path / "ds"
    assert main(["data", "import", str(meta), "--format", "node21", "--images", str(folder),
                 "--out", str(out)]) == 0
    lesions = pd.read_csv(out / "lesions.csv")
    assert len(lesions) == 2 and set(lesions.path) == {"images/n1.mha"}
    assert _covered(lesions.iloc[0]) == (list(COLS), list(ROWS))
    second = lesions.iloc[1]
    assert _covered(second) == (list(range(25, 31)), list(range(20, 24)))
    labels = pd.read_csv(out / "labels.csv").set_index("path")
    assert labels.loc["images/n2.mha", "label"] == "no_lesion"
    assert labels.loc["images/n1.mha", "spacing_mm"] == pytest.approx(0.25)
    assert labels.loc["images/n1.mha", "spacing_from"] == "image header"
    loaded = load_image(out / "images" / "n1.mha")  # the reader: pixels as stored, 12-bit
    assert loaded.meta.format == "metaimage" and loaded.meta.pixel_spacing_mm == (0.25, 0.25)
    assert np.allclose(loaded.array * 4095, arrays["n1.mha"], atol=1e-2)
    # evaluate: one mark in each box of n1 (several lesions an image), one false mark on n2
    findings = tmp_path / "findings.csv"
    findings.write_text("path,x,y,radius_mm,score\nimages/n1.mha,14,9,2,0.9\n"
                        "images/n1.mha,27,21,2,0.8\nimages/n2.mha,5,5,2,0.3\n")
    assert main(["evaluate", "--findings", str(findings), "--dataset", str(out),
                 "--out", str(tmp_path / "rep"), "--bootstrap", "0"]) == 0
    froc = json.loads((tmp_path / "rep" / "froc.json").read_text())
    assert froc["n_nodules"] == 2 and froc["n_nodules_found"] == 2
    assert froc["n_false_positive_marks"] == 1
    assert froc["image_level_auc"]["value"] == 1.0
    assert any("image header" in note for note in froc["lesions_and_spacing"])
