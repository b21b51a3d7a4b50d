"""FROC evaluation of nodule detection: the arithmetic by hand, the hit rule's edges, coordinates
on a JSRT-like dataset, bootstrap intervals, and `lungcad evaluate --findings`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lungcad.cli import main
from lungcad.errors import LungcadError
from lungcad.evaluation.froc import (
    FP_RATES,
    cpm_of,
    froc_analysis,
    froc_curve,
    match,
    read_findings,
    sensitivity_at,
    truth_from_table,
    validate_findings,
)
from evaluation_synthetic import binary_predictions

MM = 0.7  # mm per pixel in the 512 frame


def labels(rows: list[tuple]) -> pd.DataFrame:
    """(path, x_512, y_512, size_mm[, subtlety]) -> a labels table; x None: no nodule."""
    out = []
    for row in rows:
        path, x, y, size = row[:4]
        out.append({"path": path, "label": "nodule" if x is not None else "non-nodule",
                    "x_512": x, "y_512": y, "size_mm": size,
                    "subtlety": row[4] if len(row) > 4 else np.nan})
    return pd.DataFrame(out).astype({"x_512": float, "y_512": float, "size_mm": float})


def marks(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["path", "x", "y", "radius_mm", "score"])


# --- the arithmetic, by hand ----------------------------------------------------------------

HAND_TRUTH = labels([("A", 100, 100, 10), ("B", 300, 300, 20), ("C", None, None, None)])
HAND_MARKS = marks([
    ("A", 100, 100, 5, 0.9),   # hits A's nodule
    ("A", 400, 50, 5, 0.3),    # FP
    ("B", 50, 450, 5, 0.8),    # FP
    ("B", 300, 300, 5, 0.4),   # hits B's nodule
    ("B", 305, 300, 5, 0.2),   # second mark on B's nodule: not an FP
    ("C", 256, 256, 5, 0.6),   # FP on the image without a nodule
])


def test_curve_points_by_hand():
    curve = froc_curve(HAND_MARKS, truth_from_table(HAND_TRUTH))
    # the 0.2 mark on B's already-found nodule changes nothing: no point of its own
    assert curve["threshold"] == [np.inf, 0.9, 0.8, 0.6, 0.4, 0.3]
    np.testing.assert_allclose(curve["fp_per_image"], [0, 0, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(curve["sensitivity"], [0, 0.5, 0.5, 0.5, 1, 1])


def test_sensitivities_and_cpm_by_hand():
    froc = froc_analysis(HAND_MARKS, truth_from_table(HAND_TRUTH), n_bootstrap=0)
    values = [r["sensitivity"] for r in froc["sensitivity_at"]]
    # 1/8, 1/4, 1/2 FP/image: the curve is flat at 0.5 up to 2/3 FP; from 1 FP on it is 1
    np.testing.assert_allclose(values, [0.5, 0.5, 0.5, 1, 1, 1, 1])
    assert froc["cpm"]["value"] == pytest.approx(5.5 / 7)
    assert froc["n_false_positive_marks"] == 3 and froc["n_nodules_found"] == 2
    assert froc["n_images"] == 3 and froc["n_nodules"] == 2
    assert [r["fp_per_image"] for r in froc["sensitivity_at"]] == list(FP_RATES)


def test_cpm_of_weighted_images_by_hand():
    truth = truth_from_table(HAND_TRUTH)
    events = match(validate_findings(HAND_MARKS), truth)
    assert cpm_of(events) == pytest.approx(5.5 / 7)
    # image A twice, B once, C not at all (3 images, 3 nodules): A's 0.9 hit finds 2/3 at 0 FP;
    # B's 0.8 FP costs 1/3 FP per image; C's 0.6 weighs nothing; B's 0.4 hit finds the rest at
    # 1/3 FP per image. So 2/3 at 1/8 and 1/4 FP per image, 1 from 1/2 on.
    weights = np.array([2.0, 1.0, 0.0])
    assert cpm_of(events, weights) == pytest.approx((2 * 2 / 3 + 5 * 1) / 7)


def test_top_of_a_vertical_step_is_taken():
    # at exactly 2/3 FP/image the curve rises from 0.5 to 1: the top counts
    fps = np.array([0, 0, 1 / 3, 2 / 3, 2 / 3])
    sens = np.array([0, 0.5, 0.5, 0.5, 1.0])
    assert sensitivity_at(fps, sens, [2 / 3])[0] == 1.0
    assert sensitivity_at(fps, sens, [0.6])[0] == 0.5


def test_linear_interpolation_versus_step():
    # a hit and an FP at the same score: one diagonal segment from (0, 0) to (0.5 FP, 1)
    truth = truth_from_table(labels([("A", 100, 100, 10), ("B", None, None, None)]))
    findings = marks([("A", 100, 100, 5, 0.9), ("B", 300, 300, 5, 0.9)])
    linear = froc_analysis(findings, truth, n_bootstrap=0)
    step = froc_analysis(findings, truth, n_bootstrap=0, interpolation="step")
    np.testing.assert_allclose([r["sensitivity"] for r in linear["sensitivity_at"]],
                               [0.25, 0.5, 1, 1, 1, 1, 1])
    np.testing.assert_allclose([r["sensitivity"] for r in step["sensitivity_at"]],
                               [0, 0, 1, 1, 1, 1, 1])
    assert linear["cpm"]["value"] == pytest.approx(5.75 / 7)


def test_sensitivity_holds_beyond_the_last_point():
    fps = np.array([0, 0.1, 0.2])
    sens = np.array([0, 0.4, 0.6])
    np.testing.assert_allclose(sensitivity_at(fps, sens, [0.05, 8]), [0.2, 0.6])


# --- the hit rule ---------------------------------------------------------------------------

def hits(findings: pd.DataFrame, truth_rows: list[tuple], margin_mm: float = 5.0):
    return match(validate_findings(findings), truth_from_table(labels(truth_rows)), margin_mm)


def test_exactly_on_radius_plus_margin_hits_and_just_beyond_misses():
    # size 4 mm: radius 2 + margin 5 = 7 mm = 10 px in the 512 frame
    rows = [("A", 100, 100, 4)]
    assert hits(marks([("A", 110, 100, 1, 0.5)]), rows).mark_nodule.tolist() == [0]
    assert hits(marks([("A", 106, 108, 1, 0.5)]), rows).mark_nodule.tolist() == [0]  # 6-8-10
    assert hits(marks([("A", 110.02, 100, 1, 0.5)]), rows).mark_nodule.tolist() == [-1]
    # the margin is a parameter: with 0 mm only the radius (2 mm) counts
    assert hits(marks([("A", 103, 100, 1, 0.5)]), rows, 0.0).mark_nodule.tolist() == [-1]
    assert hits(marks([("A", 102, 100, 1, 0.5)]), rows, 0.0).mark_nodule.tolist() == [0]


def test_two_marks_on_one_nodule_count_once_and_the_second_is_no_fp():
    truth = truth_from_table(labels([("A", 100, 100, 10), ("B", 300, 300, 10)]))
    findings = marks([("A", 100, 100, 5, 0.7), ("A", 102, 101, 5, 0.9)])
    events = match(validate_findings(findings), truth)
    assert events.mark_nodule.tolist() == [0, 0]
    assert events.fp_score.size == 0
    assert events.nodule_score[0] == 0.9  # the best-scoring mark sets when it is found
    froc = froc_analysis(findings, truth, n_bootstrap=0)
    assert froc["n_nodules_found"] == 1
    assert froc["curve"]["sensitivity"][-1] == 0.5
    assert froc["curve"]["fp_per_image"][-1] == 0


def test_a_mark_between_two_nodules_hits_the_nearer_only():
    rows = [("A", 100, 100, 10), ("A", 120, 100, 10)]  # reach 10 mm = 14.3 px each
    events = hits(marks([("A", 108, 100, 5, 0.5)]), rows)
    assert events.mark_nodule.tolist() == [0]
    assert np.isfinite(events.nodule_score).tolist() == [True, False]
    events = hits(marks([("A", 113, 100, 5, 0.5)]), rows)
    assert events.mark_nodule.tolist() == [1]
    # between two nodules but out of both reaches: a false positive
    far = [("A", 100, 100, 4), ("A", 140, 100, 4)]
    assert hits(marks([("A", 120, 100, 5, 0.5)]), far).mark_nodule.tolist() == [-1]


def test_a_mark_hits_only_nodules_of_its_own_image():
    events = hits(marks([("B", 100, 100, 5, 0.5)]), [("A", 100, 100, 10), ("B", None, None, None)])
    assert events.mark_nodule.tolist() == [-1]


def test_an_image_without_nodules_adds_only_false_positives():
    rows = [("A", 100, 100, 10), ("C", None, None, None), ("D", None, None, None)]
    truth = truth_from_table(labels(rows))
    findings = marks([("A", 100, 100, 5, 0.9), ("C", 100, 100, 5, 0.5), ("C", 200, 200, 5, 0.4)])
    froc = froc_analysis(findings, truth, n_bootstrap=0)
    assert froc["n_nodules"] == 1 and froc["n_false_positive_marks"] == 2
    # D has no marks and still counts: 2 FPs / 3 images
    assert froc["curve"]["fp_per_image"][-1] == pytest.approx(2 / 3)
    assert froc["curve"]["sensitivity"][-1] == 1.0


# --- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=["score"]), "lacks the column(s) score"),
    (lambda f: f.assign(x=[np.nan] + [1.0] * (len(f) - 1)), "x is missing or not a finite"),
    (lambda f: f.assign(y=[np.inf] + [1.0] * (len(f) - 1)), "y is missing or not a finite"),
    (lambda f: f.assign(radius_mm=[-1.0] + [1.0] * (len(f) - 1)), "radius_mm must be zero or more"),
    (lambda f: f.assign(frame_size=0), "frame_size must be positive"),
])
def test_bad_findings_are_refused_with_a_message(change, message):
    with pytest.raises(LungcadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_findings(change(HAND_MARKS.copy()), "findings.csv")


def test_paths_not_in_the_truth_are_refused_and_named():
    findings = pd.concat([HAND_MARKS, marks([("Z/unknown.png", 1, 1, 1, 0.5)])])
    with pytest.raises(LungcadError, match="Z/unknown.png"):
        froc_analysis(findings, truth_from_table(HAND_TRUTH), n_bootstrap=0)


def test_a_truth_without_nodule_columns_or_nodules_is_refused():
    with pytest.raises(LungcadError, match="x_512"):
        truth_from_table(pd.DataFrame({"path": ["A"], "label": ["x"]}))
    with pytest.raises(LungcadError, match="no nodule"):
        froc_analysis(HAND_MARKS[HAND_MARKS.path == "C"],
                      truth_from_table(HAND_TRUTH, ["C"]), n_bootstrap=0)


# --- coordinates on a JSRT-like dataset folder ----------------------------------------------

def jsrt_like(folder, n: int = 24, seed: int = 3) -> pd.DataFrame:
    """Half the images with a nodule, all on the left (x < 200), so mirroring moves them away."""
    rng = np.random.default_rng(seed)
    sizes = [10, 30, 5, 15, 25, 40] * 2  # 10 and 30 sit on band edges
    rows = []
    for i in range(n):
        nodule = i % 2 == 0
        k = i // 2
        rows.append({"path": f"images/JPCLN{i:03d}.png", "label": "nodule" if nodule else "normal",
                     "subtlety": (k % 5) + 1 if nodule else np.nan,
                     "size_mm": sizes[k % len(sizes)] if nodule else np.nan,
                     "x_512": rng.uniform(60, 190) if nodule else np.nan,
                     "y_512": rng.uniform(80, 430) if nodule else np.nan})
    table = pd.DataFrame(rows)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "labels.csv", index=False)
    return table


def centre_marks(table: pd.DataFrame, mirror: bool = False, scale: int = 1) -> pd.DataFrame:
    nod = table.dropna(subset=["x_512"])
    x = 511 - nod["x_512"] if mirror else nod["x_512"]
    return pd.DataFrame({"path": nod["path"], "x": x * scale, "y": nod["y_512"] * scale,
                         "radius_mm": nod["size_mm"] / 2,
                         "score": np.linspace(0.5, 0.99, len(nod)),
                         "frame_size": 512 * scale})


def test_marks_at_the_manifest_centres_find_every_nodule(tmp_path):
    table = jsrt_like(tmp_path)
    for scale in (1, 4):  # the 512 frame, and the 2048 frame via frame_size
        froc = froc_analysis(centre_marks(table, scale=scale), truth_from_table(table),
                             n_bootstrap=0)
        assert [r["sensitivity"] for r in froc["sensitivity_at"]] == [1.0] * 7
        assert froc["cpm"]["value"] == 1.0
        assert froc["n_false_positive_marks"] == 0
        size_rows = {r["group"]: (r["nodules"], r["fraction_found"])
                     for r in froc["breakdown"]["size"]}
        # 10 mm counts in 10-20 and 30 mm in >=30 (lower edge inclusive)
        assert size_rows == {"<10 mm": (2, 1.0), "10-20 mm": (4, 1.0), "20-30 mm": (2, 1.0),
                             ">=30 mm": (4, 1.0)}
        assert sorted(r["group"] for r in froc["breakdown"]["subtlety"]) == list("12345")


def test_horizontally_mirrored_marks_find_nothing(tmp_path):
    table = jsrt_like(tmp_path)
    froc = froc_analysis(centre_marks(table, mirror=True), truth_from_table(table), n_bootstrap=0)
    assert froc["cpm"]["value"] == 0.0
    assert froc["n_false_positive_marks"] == froc["n_marks"] == 12
    assert all(r["fraction_found"] == 0 for r in froc["breakdown"]["size"] if r["nodules"])


# --- bootstrap ------------------------------------------------------------------------------

def mixed_findings(table: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """Hits on some nodules, misses and FPs elsewhere, scores random."""
    rng = np.random.default_rng(seed)
    hits_ = centre_marks(table).iloc[::2].drop(columns="frame_size")
    fps = pd.DataFrame({"path": rng.choice(table["path"], 30), "x": rng.uniform(300, 500, 30),
                        "y": rng.uniform(0, 500, 30), "radius_mm": 5.0})
    out = pd.concat([hits_, fps], ignore_index=True)
    out["score"] = rng.random(len(out))
    return out


def test_bootstrap_intervals_contain_the_estimate_and_repeat_with_the_seed(tmp_path):
    table = jsrt_like(tmp_path)
    truth, findings = truth_from_table(table), mixed_findings(table)
    first = froc_analysis(findings, truth, n_bootstrap=200, seed=7)
    again = froc_analysis(findings, truth, n_bootstrap=200, seed=7)
    assert first["sensitivity_at"] == again["sensitivity_at"] and first["cpm"] == again["cpm"]
    for record in [*first["sensitivity_at"], first["cpm"]]:
        value = record.get("sensitivity", record.get("value"))
        assert record["ci_low"] is not None, record
        assert record["ci_low"] <= value <= record["ci_high"], record
    assert first["cpm"]["ci_low"] < first["cpm"]["ci_high"]  # a real spread, not a point
    assert 0 < first["cpm"]["value"] < 1


# --- the CLI --------------------------------------------------------------------------------

def test_cli_froc_alone_writes_froc_json_and_the_report(tmp_path, capsys):
    table = jsrt_like(tmp_path / "ds")
    findings = centre_marks(table).drop(columns="frame_size")
    # absolute paths inside the dataset are mapped to labels.csv's relative ones
    findings["path"] = [str(tmp_path / "ds" / p) for p in findings["path"]]
    findings.to_csv(tmp_path / "findings.csv", index=False)
    out = tmp_path / "report"
    status = main(["evaluate", "--findings", str(tmp_path / "findings.csv"),
                   "--dataset", str(tmp_path / "ds"), "--out", str(out), "--bootstrap", "50",
                   "--margin-mm", "3"])
    assert status == 0
    froc = json.loads((out / "froc.json").read_text())
    assert froc["cpm"]["value"] == 1.0 and froc["margin_mm"] == 3.0
    assert froc["n_images"] == 24 and froc["n_nodules"] == 12
    report = json.loads((out / "report.json").read_text())
    assert [s["id"] for s in report["sections"]] == ["froc"]
    markdown = (out / "report.md").read_text()
    assert "## FROC (nodule detection)" in markdown and "CPM (mean)" in markdown
    html = (out / "report.html").read_text()
    assert "FROC (nodule detection)" in html and "data:image/png;base64," in html
    assert (out / "figures" / "section0_0.png").stat().st_size > 1000
    assert "CPM 1.000" in capsys.readouterr().out


def test_cli_with_predictions_counts_only_their_images(tmp_path):
    table = jsrt_like(tmp_path / "ds")
    preds = binary_predictions(n=16, seed=0)
    preds["path"] = table["path"].iloc[:16].to_numpy()  # 8 nodules among 16 of the 24 images
    preds.to_csv(tmp_path / "preds.csv", index=False)
    centre_marks(table).iloc[:8].to_csv(tmp_path / "findings.csv", index=False)
    out = tmp_path / "report"
    status = main(["evaluate", str(tmp_path / "preds.csv"), "--findings",
                   str(tmp_path / "findings.csv"), "--dataset", str(tmp_path / "ds"),
                   "--out", str(out), "--bootstrap", "0"])
    assert status == 0
    froc = json.loads((out / "froc.json").read_text())
    assert froc["n_images"] == 16 and froc["n_nodules"] == 8
    report = json.loads((out / "report.json").read_text())
    assert "roc_auc" in report["metrics"] and report["sections"][-1]["id"] == "froc"
    assert "## FROC (nodule detection)" in (out / "report.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--findings", "{bad}", "--dataset", "{ds}"], "lacks the column(s) score"),
    (["--findings", "{unknown}", "--dataset", "{ds}"], "not among the images"),
    (["--findings", "{bad}"], "--findings and --dataset go together"),
    ([], "give a PREDICTIONS.csv"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    jsrt_like(tmp_path / "ds")
    marks([("images/JPCLN000.png", 1, 1, 1, 0.5)]).drop(columns="score").to_csv(
        tmp_path / "bad.csv", index=False)
    marks([("elsewhere.png", 1, 1, 1, 0.5)]).to_csv(tmp_path / "unknown.csv", index=False)
    paths = {"bad": tmp_path / "bad.csv", "unknown": tmp_path / "unknown.csv",
             "ds": tmp_path / "ds"}
    status = main(["evaluate", *[a.format(**paths) for a in args], "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o" / "froc.json").exists()


def test_read_findings_missing_file(tmp_path):
    with pytest.raises(LungcadError, match="does not exist"):
        read_findings(tmp_path / "nope.csv")
