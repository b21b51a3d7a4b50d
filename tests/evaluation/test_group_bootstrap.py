"""`lungcad evaluate --group-column`: intervals that resample groups, not rows.

Hand case: 20 groups of 10 identical rows each (one patient's near-identical slices). Resampling
rows treats the 200 rows as 200 independent cases; resampling groups sees only 20, so its
intervals must be clearly wider, and the point values must not change.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lungcad.cli import main
from lungcad.evaluation.bootstrap import bootstrap_intervals, group_bootstrap_intervals


def _clustered(n_groups: int = 20, size: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for g in range(n_groups):
        label = g % 2
        score = float(np.clip(0.5 + (0.25 if label else -0.25) + rng.normal(0, 0.3), 0.01, 0.99))
        for k in range(size):
            rows.append({"path": f"g{g}/s{k}.png", "true_label": ["normal", "abnormal"][label],
                         "prob_normal": 1 - score, "prob_abnormal": score,
                         "predicted_label": "abnormal" if score >= 0.5 else "normal",
                         "model": "m", "case": f"patient{g}"})
    return pd.DataFrame(rows)


def test_groups_give_wider_intervals_than_rows_on_clustered_data():
    x = np.repeat(np.arange(20, dtype=float), 10)  # 20 clusters of 10 equal values
    groups = np.repeat(np.arange(20), 10)

    def statistic(idx):
        return {"mean": x[idx].mean(axis=-1)}

    rows = bootstrap_intervals(len(x), statistic, 1000, 0)["mean"]
    grouped = group_bootstrap_intervals(groups, statistic, 1000, 0)["mean"]
    assert grouped.method.startswith("percentile, groups resampled")
    assert (grouped.high - grouped.low) > 2.5 * (rows.high - rows.low)  # about sqrt(10) wider
    assert grouped.low < 9.5 < grouped.high
    # one row a group: the same data as resampling rows, so about the same width
    single = group_bootstrap_intervals(np.arange(200), statistic, 1000, 0)["mean"]
    assert single.high - single.low == pytest.approx(rows.high - rows.low, rel=0.25)
    # the same seed gives the same interval
    assert group_bootstrap_intervals(groups, statistic, 1000, 0)["mean"] == grouped


def test_evaluate_group_column(tmp_path, capsys):
    preds = tmp_path / "p.csv"
    _clustered().to_csv(preds, index=False)
    assert main(["evaluate", str(preds), "--bootstrap", "500", "--group-column", "case",
                 "--out", str(tmp_path / "r")]) == 0
    assert "group-level intervals (20 groups of case)" in capsys.readouterr().out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    grouped = report["group_bootstrap"]
    assert grouped["n_groups"] == 20 and grouped["n_rows"] == 200
    for name in ("roc_auc", "accuracy", "sensitivity", "specificity"):
        row, grp = report["metrics"][name], grouped["metrics"][name]
        assert grp["value"] == row["value"]
        assert grp["ci_high"] - grp["ci_low"] > 1.5 * (row["ci_high"] - row["ci_low"]), name
    assert "Group-level intervals (case)" in (tmp_path / "r" / "report.md").read_text()


def test_groups_from_a_split_file_or_table(tmp_path):
    frame = _clustered().drop(columns="case")
    preds = tmp_path / "p.csv"
    frame.to_csv(preds, index=False)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"groups": {p: p.split("/")[0] for p in frame.path}}))
    assert main(["evaluate", str(preds), "--bootstrap", "200", "--group-column", "group",
                 "--groups", str(split), "--out", str(tmp_path / "a")]) == 0
    table = tmp_path / "labels.csv"
    pd.DataFrame({"path": frame.path, "patient": frame.path.str[:3]}).to_csv(table, index=False)
    assert main(["evaluate", str(preds), "--bootstrap", "200", "--group-column", "patient",
                 "--groups", str(table), "--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "report.json").read_text())["group_bootstrap"]
    assert a["n_groups"] == 20


def test_missing_group_column_is_a_clear_error(tmp_path, capsys):
    preds = tmp_path / "p.csv"
    _clustered().to_csv(preds, index=False)
    assert main(["evaluate", str(preds), "--group-column", "nope", "--out",
                 str(tmp_path / "r")]) == 2
    assert "no such column" in capsys.readouterr().err
