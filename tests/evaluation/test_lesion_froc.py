"""FROC on lesion tables, by hand: several lesions an image, box hits (a mark inside two boxes
hits the nearer one only), centre-and-diameter hits beside boxes, the margin around a box,
per-label sensitivity and NODE21's image-level AUC. Spacing 1 mm a pixel: mm = pixels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lungcad.cli import main
from lungcad.data.manifest import Manifest
from lungcad.evaluation.froc import froc_analysis, match
from lungcad.evaluation.lesion_truth import truth_from_lesions

LESIONS = """path,x0,y0,x1,y1,x,y,diameter_mm,label
A.png,0,0,20,10,,,,nodule
A.png,10,0,30,10,,,,nodule
A.png,,,,,50,50,10,Nodule
B.png,10,10,20,20,,,,mass
"""
MARKS = pd.DataFrame({"path": ["A.png", "A.png", "A.png", "C.png", "B.png"],
                      "x": [12.0, 25.0, 53.0, 5.0, 40.0], "y": [5.0, 5.0, 50.0, 5.0, 40.0],
                      "radius_mm": 3.0, "score": [0.9, 0.5, 0.7, 0.6, 0.4]})


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "labels.csv").write_text("path,label,width,height,spacing_mm\n"
                                     "A.png,lesion,100,100,1\nB.png,lesion,100,100,1\n"
                                     "C.png,no_lesion,100,100,1\n")
    (root / "lesions.csv").write_text(LESIONS)
    return root


def test_a_mark_inside_two_boxes_hits_the_nearer_one_only(dataset):
    truth = truth_from_lesions(Manifest.load(dataset))
    events = match(MARKS, truth, margin_mm=0.0)
    # lesions in table order: box 0 (centre 10,5), box 1 (centre 20,5), disc, mass box
    assert events.mark_nodule.tolist() == [0, 1, 2, -1, -1]
    assert events.nodule_score.tolist() == [0.9, 0.5, 0.7, -np.inf]
    assert sorted(events.fp_score.tolist()) == [0.4, 0.6]
    only_first = match(MARKS.iloc[[0]], truth, margin_mm=0.0)  # the other box stays unfound
    assert only_first.nodule_score.tolist() == [0.9, -np.inf, -np.inf, -np.inf]
    assert only_first.fp_score.size == 0  # and the mark is no false positive


def test_the_box_grows_by_the_margin(dataset):
    truth = truth_from_lesions(Manifest.load(dataset))
    near = pd.DataFrame({"path": ["B.png"], "x": [21.5], "y": [15.0], "radius_mm": [1.0],
                         "score": [0.5]})  # 1.5 mm right of the mass box
    assert match(near, truth, margin_mm=1.0).mark_nodule.tolist() == [-1]
    assert match(near, truth, margin_mm=1.5).mark_nodule.tolist() == [3]


def test_froc_by_label_and_node21_figures_by_hand(dataset):
    froc = froc_analysis(MARKS, truth_from_lesions(Manifest.load(dataset)), margin_mm=0.0,
                         n_bootstrap=0)
    assert (froc["n_nodules"], froc["n_nodules_found"], froc["n_false_positive_marks"]) == (4, 3, 2)
    # points (FP/image, sensitivity): (0, 1/4) (0, 2/4) (1/3, 2/4) (1/3, 3/4) (2/3, 3/4)
    at = {r["fp_per_image"]: r["sensitivity"] for r in froc["sensitivity_at"]}
    assert at[0.125] == pytest.approx(0.5) and at[0.25] == pytest.approx(0.5)
    assert at[0.5] == pytest.approx(0.75) and at[8.0] == pytest.approx(0.75)
    labels = {r["label"]: r for r in froc["by_label"]}
    assert set(labels) == {"nodule", "mass"} and labels["nodule"]["lesions"] == 3
    assert labels["mass"]["sensitivity_at"]["8"] == 0.0
    assert labels["nodule"]["sensitivity_at"]["0.125"] == pytest.approx(2 / 3)
    assert labels["nodule"]["sensitivity_at"]["0.5"] == pytest.approx(1.0)
    # image level: A (lesions, 0.9) and B (lesion, 0.4) against C (none, 0.6): 1 of 2 pairs
    auc = froc["image_level_auc"]
    assert auc["value"] == pytest.approx(0.5) and (auc["n_positive"], auc["n_negative"]) == (2, 1)


def test_evaluate_command_on_a_lesion_table(dataset, tmp_path, capsys):
    findings = tmp_path / "findings.csv"
    MARKS.to_csv(findings, index=False)
    assert main(["evaluate", "--findings", str(findings), "--dataset", str(dataset),
                 "--margin-mm", "0", "--bootstrap", "20", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "by label: mass (1) CPM 0.000" in out and "image-level AUC" in out
    assert "labels.csv spacing_mm" in out
    report = (tmp_path / "r" / "report.md").read_text()
    assert "NODE21" in report and "Sensitivity by lesion label" in report
    assert json.loads((tmp_path / "r" / "froc.json").read_text())["n_images"] == 3


def test_a_bad_lesion_row_is_named(dataset, tmp_path, capsys):
    (dataset / "lesions.csv").write_text("path,x0,y0,x1,y1,label\nA.png,5,5,2,9,nodule\n")
    findings = tmp_path / "findings.csv"
    MARKS.to_csv(findings, index=False)
    assert main(["evaluate", "--findings", str(findings), "--dataset", str(dataset),
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "lesions.csv data row 1 (A.png): the box needs x0 < x1" in err
    assert err.count("\n") == 1


def test_jsrt_columns_without_lesions_csv_still_work_and_say_so(tmp_path, capsys):
    root = tmp_path / "jsrt"
    root.mkdir()
    (root / "labels.csv").write_text("path,label,x_512,y_512,size_mm\nA.png,malignant,100,100,"
                                     "14\nB.png,non_nodule,,,\n")
    findings = tmp_path / "f.csv"
    findings.write_text("path,x,y,radius_mm,score\nA.png,105,100,5,0.8\n")
    assert main(["evaluate", "--findings", str(findings), "--dataset", str(root),
                 "--bootstrap", "0", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "has no lesions.csv: one nodule a row derived from labels.csv (x_512, y_512" in out
    froc = json.loads((tmp_path / "r" / "froc.json").read_text())
    assert froc["n_nodules_found"] == 1 and froc["image_level_auc"]["value"] == 1.0
