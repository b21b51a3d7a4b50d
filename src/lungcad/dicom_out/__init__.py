"""DICOM results for DICOM inputs, with highdicom: a Structured Report (Comprehensive 3D SR,
TID 1500 measurement report) and a Secondary Capture overlay per image, both in the source's
study, in new series, referencing the source image. Research software, not for diagnostic use.

>>> import lungcad
>>> from lungcad.dicom_out import dicom_results
>>> sr, overlay = dicom_results(lungcad.load_model("jsrt-malignant"), "chest.dcm")
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lungcad.dicom_out.analysis import MODEL_BY_MODALITY, ModelChooser, analyse, read_source
from lungcad.dicom_out.common import RESEARCH_NOTICE, Analysis
from lungcad.dicom_out.sr import read_sr

__all__ = ["MODEL_BY_MODALITY", "RESEARCH_NOTICE", "Analysis", "ModelChooser", "dicom_results",
           "read_source", "read_sr", "write_dicom_results"]


def dicom_results(model, source, *, findings: Sequence | None = None,
                  in_domain: bool | None = None, heatmap: bool = True,
                  heatmap_method: str = "gradcam", overlay: bool = True,
                  label: str | None = None) -> list:
    """[SR, overlay] (pydicom datasets, highdicom subclasses) for one DICOM image.

    ``source``: a path, the file's bytes, or a pydicom dataset. ``findings``: detector marks
    (:class:`lungcad.findings.Finding`, in the image's pixel coordinates) to report; a detector
    model's own are used when not given. ``in_domain``: the model's in-domain verdict, reported
    where not None. ``heatmap``: blend the saliency map into the overlay; ``overlay=False``
    returns the SR alone. Raises :class:`~lungcad.errors.LungcadError` for input that is not a
    DICOM image."""
    from lungcad.dicom_out.capture import build_capture
    from lungcad.dicom_out.sr import build_sr

    source_ds, analysis = analyse(model, source, findings=findings, in_domain=in_domain,
                                  heatmap=heatmap and overlay, heatmap_method=heatmap_method,
                                  label=label)
    number = int(source_ds.get("InstanceNumber") or 1)
    results = [build_sr(source_ds, analysis, list(getattr(model, "classes", []) or []) or None,
                        instance_number=number)]
    if overlay:
        results.append(build_capture(source_ds, analysis, instance_number=number))
    return results


def write_dicom_results(datasets: Sequence, out_dir: str | Path) -> list[Path]:
    """Write datasets as DICOM files named ``<kind>_<SOPInstanceUID>.dcm`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ds in datasets:
        kind = "sr" if str(ds.Modality) == "SR" else "overlay"
        path = out / f"{kind}_{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written
