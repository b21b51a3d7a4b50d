"""The written report: report.json, report.md, one self-contained report.html with every figure,
and the subgroup tables of a JSRT-like predictions file."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from lungcad.cli import main
from lungcad.evaluation.metrics import threshold_metrics
from lungcad.evaluation.render import write_report
from lungcad.evaluation.report import evaluate_predictions, make_section
from evaluation_synthetic import binary_predictions, multiclass_predictions

FIGURE_TITLES = ("ROC curve", "Precision-recall curve", "Confusion matrix", "Reliability diagram",
                 "Score histograms")
TOP_LEVEL_KEYS = ["format", "software", "disclaimer", "inputs", "task", "threshold", "bootstrap",
                  "metrics", "confusion_matrix", "calibration", "curves", "subgroups", "figures",
                  "sections", "warnings"]
DISCLAIMER_TEXT = "research software, not a medical device"


@pytest.fixture(scope="module")
def binary_report(tmp_path_factory):
    """A JSRT-like binary report written through the CLI, threshold chosen on validation."""
    folder = tmp_path_factory.mktemp("binary")
    test = binary_predictions(n=198, seed=1)
    test.to_csv(folder / "test.csv", index=False)
    validation = binary_predictions(n=100, seed=2, with_metadata=False)
    validation[["path", "true_label", "prob_rest", "prob_malignant"]].to_csv(
        folder / "val.csv", index=False)
    status = main(["evaluate", str(folder / "test.csv"), "--validation", str(folder / "val.csv"),
                   "--bootstrap", "200", "--seed", "5", "--out", str(folder / "report")])
    assert status == 0
    out = folder / "report"
    return {"out": out, "frame": test, "report": json.loads((out / "report.json").read_text())}


@pytest.fixture(scope="module")
def multiclass_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("multiclass") / "report"
    report = evaluate_predictions(multiclass_predictions(n=150), n_bootstrap=100)
    write_report(report, out)
    return {"out": out, "report": report}


def _embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(data)
            for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def _assert_self_contained(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"https?://", page)
    assert "<script" not in page.lower() and "<link" not in page.lower()


@pytest.mark.parametrize("which", ["binary_report", "multiclass_report"])
def test_html_holds_every_figure_and_is_self_contained(request, which):
    result = request.getfixturevalue(which)
    out, report = result["out"], result["report"]
    page = (out / "report.html").read_text()
    _assert_self_contained(page)
    images = _embedded_pngs(page)
    assert len(images) == page.count("data:image/png;base64") == len(FIGURE_TITLES)
    assert [f["title"] for f in report["figures"]] == list(FIGURE_TITLES)
    for title in FIGURE_TITLES:
        assert f"<figcaption><strong>{title}.</strong>" in page
    for heading in ("Data", "Decision threshold", "Metrics", "Confusion matrix", "Calibration"):
        assert f"<h2>{heading}</h2>" in page
    # the embedded images are the figures/ PNGs, and real pictures
    on_disk = sorted(p.read_bytes() for p in (out / "figures").glob("*.png"))
    assert sorted(images) == on_disk
    for png in images:
        with Image.open(io.BytesIO(png)) as picture:
            assert picture.format == "PNG" and picture.width > 300 and picture.height > 300
            # not a blank canvas
            assert np.asarray(picture.convert("L")).std() > 10
    markdown = (out / "report.md").read_text()
    for figure in report["figures"]:
        assert f"](figures/{figure['id']}.png)" in markdown


def test_report_json_keys_disclaimer_and_strict_json(binary_report):
    out, report = binary_report["out"], binary_report["report"]
    assert list(report) == TOP_LEVEL_KEYS
    assert report["format"] == "lungcad-evaluation/1"
    assert DISCLAIMER_TEXT in report["disclaimer"]
    assert DISCLAIMER_TEXT in (out / "report.md").read_text()
    assert DISCLAIMER_TEXT in (out / "report.html").read_text()
    # written with allow_nan=False: undefined values are null, never NaN
    text = (out / "report.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert report["bootstrap"]["n_resamples"] == 200 and report["bootstrap"]["seed"] == 5
    for name in ("accuracy", "log_loss", "roc_auc", "average_precision", "sensitivity",
                 "specificity", "ppv", "npv", "f1", "balanced_accuracy", "brier"):
        record = report["metrics"][name]
        assert record["ci_low"] <= record["value"] <= record["ci_high"], name
        assert record["ci_method"] in ("BCa", "percentile")
    assert report["threshold"]["chosen_on"] == "validation"
    assert report["warnings"] == []
    assert len(report["calibration"]["bins"]) == 10 and report["calibration"]["ece"] >= 0


def test_confusion_matrix_table_in_markdown_and_html(binary_report):
    out, report = binary_report["out"], binary_report["report"]
    (tn, fp), (fn, tp) = report["confusion_matrix"]["counts"]
    assert tn + fp + fn + tp == 198
    assert f"| rest | {tn} | {fp} |" in (out / "report.md").read_text()
    assert f"<tr><td>malignant</td><td>{fn}</td><td>{tp}</td></tr>" in (out / "report.html").read_text()


def test_jsrt_subgroup_tables(binary_report):
    report, frame = binary_report["report"], binary_report["frame"]
    tables = {t["variable"]: t for t in report["subgroups"]}
    assert set(tables) == {"subtlety", "size_mm", "sex", "age"}
    n = len(frame)
    for variable, table in tables.items():
        assert sum(row["n"] for row in table["rows"]) + table["n_without_value"] == n, variable
    assert tables["subtlety"]["n_without_value"] == int(frame["subtlety"].isna().sum())
    assert [r["group"] for r in tables["subtlety"]["rows"]] == ["1", "2", "3", "4", "5"]
    assert [r["group"] for r in tables["size_mm"]["rows"]] == ["<=10 mm", "11-20 mm", "21-30 mm",
                                                               ">30 mm"]
    assert [r["group"] for r in tables["age"]["rows"]] == ["<40", "40-59", "60-79", ">=80"]
    assert tables["age"]["n_without_value"] == 2
    assert tables["size_mm"]["rows"][0]["n"] == int((frame["size_mm"] <= 10).sum())
    assert tables["age"]["rows"][1]["n"] == int(frame["age"].between(40, 59.999).sum())

    # a row's figures, recomputed from the file at the report's threshold
    threshold = report["threshold"]["value"]
    male = frame[frame["sex"] == "Male"]
    y = (male["true_label"] == "malignant").to_numpy()
    m = threshold_metrics(y, male["prob_malignant"].to_numpy() >= threshold)
    row = next(r for r in tables["sex"]["rows"] if r["group"] == "Male")
    assert row["n"] == len(male) and row["positives"] == int(y.sum())
    assert row["sensitivity"] == pytest.approx(m["sensitivity"])
    assert row["specificity"] == pytest.approx(m["specificity"])

    markdown = (binary_report["out"] / "report.md").read_text()
    page = (binary_report["out"] / "report.html").read_text()
    for title in ("Subgroups", "Nodule subtlety", "Nodule size (mm)", "Sex", "Age (years)"):
        assert title in markdown and title in page


def test_multiclass_report_has_per_class_sections_and_fold_table(multiclass_report):
    report, out = multiclass_report["report"], multiclass_report["out"]
    assert report["threshold"]["rule"] == "model"
    assert [t["variable"] for t in report["subgroups"]] == ["fold"]
    page = (out / "report.html").read_text()
    assert "Per-class metrics (one-vs-rest)" in page
    for c in report["task"]["classes"]:
        assert f"<h4>{c}</h4>" in page
    assert set(report["curves"]["roc"]) == set(report["task"]["classes"])


def test_extra_section_image_is_embedded_too(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))).save(buffer, "PNG")
    section = make_section("Localisation", ["Extra text."],
                           tables=[{"title": "hits", "columns": ["a", "b"], "rows": [{"a": 1, "b": 0.5}]}],
                           images=[{"title": "Heatmap", "caption": "a test image",
                                    "png_base64": base64.b64encode(buffer.getvalue()).decode()}])
    report = evaluate_predictions(binary_predictions(n=60, with_metadata=False), threshold="0.5",
                                  n_bootstrap=0, extra_sections=[section])
    write_report(report, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64") == len(report["figures"]) + 1
    assert "<h2>Localisation</h2>" in page and "Extra text." in page
    assert (tmp_path / "figures" / "section0_0.png").read_bytes() == buffer.getvalue()
    _assert_self_contained(page)


def test_a_test_set_with_one_class_still_gives_a_report(tmp_path):
    """All negatives: AUC and sensitivity are undefined (null), the report says so."""
    frame = binary_predictions(n=50, seed=3, with_metadata=False)
    frame = frame[frame["true_label"] == "rest"].reset_index(drop=True)
    report = evaluate_predictions(frame, threshold="0.5", n_bootstrap=100)
    write_report(report, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["metrics"]["roc_auc"]["value"] is None
    assert saved["metrics"]["sensitivity"]["value"] is None
    assert saved["metrics"]["specificity"]["value"] is not None
    assert any("no case of class 'malignant'" in w for w in saved["warnings"])
    assert "roc" not in [f["id"] for f in saved["figures"]]
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64") == len(saved["figures"])
