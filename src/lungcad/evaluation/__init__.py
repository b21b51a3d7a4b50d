"""Evaluation of predictions files: metrics with confidence intervals, calibration, thresholds,
subgroup tables and the report (JSON, Markdown, self-contained HTML).

Kept import-light: matplotlib loads only when a report is written.
"""

from __future__ import annotations

_PUBLIC = {
    "evaluate_predictions": "lungcad.evaluation.report",
    "make_section": "lungcad.evaluation.report",
    "add_section": "lungcad.evaluation.report",
    "write_report": "lungcad.evaluation.render",
    "read_predictions": "lungcad.evaluation.predictions",
    "validate_predictions": "lungcad.evaluation.predictions",
    "choose_threshold": "lungcad.evaluation.thresholds",
    "parse_threshold_rule": "lungcad.evaluation.thresholds",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    """Import on first use, so ``import lungcad.evaluation.thresholds`` stays cheap."""
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lungcad.evaluation' has no attribute {name!r}")
