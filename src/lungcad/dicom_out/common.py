"""What the DICOM results share: the disclaimer, the codes lungcad uses in its reports, the new
series' UIDs and descriptions, and the source image's pixel spacing."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lungcad.version import __version__

RESEARCH_NOTICE = "Research software, not for diagnostic use"
MANUFACTURER = "lungcad"
# Private coding scheme for concepts DICOM has no code for (PS3.16: "99" prefix = private).
SCHEME = "99LUNGCAD"
SR_SERIES_NUMBER = 9901
CAPTURE_SERIES_NUMBER = 9902
# Root under which lungcad derives its UIDs (pydicom's, made unique per input by entropy).
_UID_PREFIX = "1.2.826.0.1.3680043.8.498."


def derived_uid(*parts: object) -> str:
    """A UID that is the same for the same ``parts`` (so that the results of one source series
    and one model land in one result series, run after run)."""
    from pydicom.uid import generate_uid

    return generate_uid(prefix=_UID_PREFIX, entropy_srcs=[str(p) for p in parts])


def result_uid(kind: str, source, analysis: "Analysis", *more: object) -> str:
    """The UID of one result about one source instance: the same for the same source SOP
    Instance UID, model, model version and ``kind`` (``sr``, ``capture``, a tracking id...),
    so that a retried or resumed run stores the same instance again, never a second copy."""
    return derived_uid(kind, source.SOPInstanceUID, analysis.model_name, analysis.model_version,
                       *more)


def series_description(analysis: "Analysis", what: str) -> str:
    """``lungcad <model> v<version> <what> - research only`` within the 64 characters of a
    DICOM LO: a reader of the PACS tells which model wrote which series."""
    tail = f" {what} - research only"
    return f"lungcad {analysis.model_label}"[:64 - len(tail)] + tail


@dataclass
class Analysis:
    """What one model said about one DICOM image, ready to be written as SR and overlay."""

    model_name: str
    model_version: str
    kind: str                                   # "classifier" or "detector"
    probabilities: dict[str, float]
    label: str | None
    threshold: float | None
    threshold_rule: str = ""
    positive_class: str | None = None           # binary models: the class thresholded
    in_domain: bool | None = None
    findings: list = field(default_factory=list)  # lungcad.findings.Finding
    heatmap: np.ndarray | None = None           # [0, 1], the image's shape
    image: np.ndarray | None = None             # display array [0, 1], the image's shape
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, column)

    @property
    def model_label(self) -> str:
        return f"{self.model_name} v{self.model_version}"

    def summary_line(self) -> str:
        """One line for the overlay and the logs: model, verdict, probability, threshold."""
        parts = [f"lungcad {__version__}: {self.model_label}"]
        if self.label is not None:
            cls = self.positive_class or self.label
            verdict = f"{self.label}: P({cls}) {self.probabilities.get(cls, float('nan')):.3f}"
            if self.threshold is not None:
                verdict += f", threshold {self.threshold:.3f}"
            parts.append(verdict)
        if self.findings:
            parts.append(f"{len(self.findings)} finding(s)")
        if self.in_domain is not None:
            parts.append("in domain" if self.in_domain else "OUT OF DOMAIN")
        return "; ".join(parts)


def dataset_spacing(ds) -> tuple[float, float] | None:
    """(row, column) mm per pixel from PixelSpacing or ImagerPixelSpacing, None where absent or
    not positive."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col):
            return row, col
    return None
