"""Group-level (cluster) bootstrap intervals for a report: ``lungcad evaluate --group-column``.

Rows of one group (slices of one patient; near-duplicate slices where a set has no patient ids)
are not independent cases. :func:`group_interval_section` resamples whole groups
(:func:`lungcad.evaluation.bootstrap.group_bootstrap_intervals`) and sets the intervals beside
the row-resampled ones of the report, for the same metric values and the same decisions (the
report's threshold, or its predicted labels).

The group of each row comes from a column of the predictions file, or from ``groups_file``:
a split file of ``lungcad data split`` (its ``groups`` map, path -> group) or a CSV with
``path`` and the column (e.g. a dataset's labels.csv).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lungcad.errors import LungcadError
from lungcad.evaluation.bootstrap import GROUP_METHOD, group_bootstrap_intervals
from lungcad.evaluation.metrics import binary_metric_values, multiclass_metric_values
from lungcad.evaluation.predictions import validate_predictions
from lungcad.evaluation.report import make_section

HEADLINE = {True: ("roc_auc", "accuracy", "sensitivity", "specificity", "balanced_accuracy"),
            False: ("macro_roc_auc", "accuracy", "balanced_accuracy", "macro_f1")}


def attach_groups(frame: pd.DataFrame, column: str, groups_file: str | None) -> pd.DataFrame:
    """``frame`` with a ``column`` of group labels (taken from ``groups_file`` where given)."""
    if groups_file is None:
        if column not in frame.columns:
            raise LungcadError(f"--group-column {column}: the predictions have no such column; "
                               "add it, or give --groups SPLIT.json (or a CSV with path and "
                               f"{column})")
        groups = frame[column]
    else:
        source = Path(groups_file)
        if source.suffix.lower() == ".json":
            mapping = json.loads(source.read_text()).get("groups")
            if not isinstance(mapping, dict):
                raise LungcadError(f"{source}: no 'groups' map (path -> group); is it a split "
                                   "file from lungcad data split?")
        else:
            table = pd.read_csv(source, dtype=str, keep_default_na=False)
            if "path" not in table.columns or column not in table.columns:
                raise LungcadError(f"{source}: needs columns path and {column}")
            mapping = dict(zip(table["path"], table[column]))
        groups = frame["path"].astype(str).map(mapping)
        missing = groups.isna() | (groups.astype(str) == "")
        if missing.any():
            raise LungcadError(f"{source}: no group for {int(missing.sum())} of the predictions' "
                               f"paths (first: {frame['path'].astype(str)[missing].iloc[0]})")
    groups = groups.astype(str)
    # a row without a group label is its own group (e.g. an image with no duplicate)
    lonely = groups.isin(["", "nan", "None"])
    groups = groups.where(~lonely, "row:" + frame.index.astype(str))
    return frame.assign(**{column: groups.to_numpy()})


def group_interval_section(report: dict, frame: pd.DataFrame, column: str,
                           n_bootstrap: int, seed: int) -> tuple[dict, dict]:
    """(JSON record, report section) of group-resampled intervals for ``report``'s metrics."""
    preds = validate_predictions(frame, require_labels=True, require_decisions=False)
    groups = frame[column].to_numpy()
    threshold = report["threshold"]["value"]
    if preds.binary and threshold is not None:
        predicted = (preds.positive_scores >= threshold).astype(int)
    else:
        predicted = preds.predicted
    y, probs = preds.y, preds.probs
    if preds.binary:
        def statistic(idx):
            return binary_metric_values(y[idx], probs[idx, -1], predicted[idx])
    else:
        def statistic(idx):
            return multiclass_metric_values(y[idx], probs[idx], predicted[idx], len(preds.classes))
    intervals = group_bootstrap_intervals(groups, statistic, n_bootstrap, seed)
    n_groups = int(pd.Series(groups).nunique())
    record = {"column": column, "n_groups": n_groups, "n_rows": len(frame),
              "n_resamples": int(n_bootstrap), "seed": int(seed), "method": GROUP_METHOD,
              "metrics": {name: {"value": report["metrics"][name]["value"], **iv.as_dict()}
                          for name, iv in intervals.items()
                          if "/" not in name and name in report["metrics"]}}
    rows = []
    for name in HEADLINE[preds.binary]:
        if name not in record["metrics"]:
            continue
        rec, row_rec = record["metrics"][name], report["metrics"][name]
        rows.append({"metric": name, "value": _fmt(rec["value"]),
                     "rows resampled": _fmt_interval(row_rec),
                     "groups resampled": _fmt_interval(rec)})
    section = make_section(
        f"Group-level intervals ({column})",
        [f"{len(frame)} rows in {n_groups} groups of '{column}'. Rows of one group are not "
         f"independent, so these intervals resample whole groups ({n_bootstrap} resamples, "
         f"seed {seed}, {GROUP_METHOD}); the row-resampled intervals above treat every row as "
         "an independent case and are too narrow where groups hold several rows."],
        [{"title": "95% intervals: rows against groups resampled",
          "columns": ["metric", "value", "rows resampled", "groups resampled"], "rows": rows}],
        section_id="group-intervals")
    return record, section


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _fmt_interval(record: dict) -> str:
    if record.get("ci_low") is None:
        return "none"
    return f"[{record['ci_low']:.3f}, {record['ci_high']:.3f}]"


def headline_text(record: dict) -> str:
    """One line: the group-resampled intervals of the headline metrics."""
    parts = [f"{name} {_fmt(rec['value'])} [{_fmt(rec['ci_low'])}, {_fmt(rec['ci_high'])}]"
             for name, rec in record["metrics"].items()
             if name in HEADLINE[True] + HEADLINE[False] and rec["ci_low"] is not None]
    return (f"group-level intervals ({record['n_groups']} groups of {record['column']}): "
            + "; ".join(parts))
