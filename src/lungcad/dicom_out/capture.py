"""The overlay: a Secondary Capture (RGB) of the source image with the model's heatmap blended
over it, each detector finding ringed, and a label (model, verdict, probability, threshold,
"Research software, not for diagnostic use") burned in. In the source's study, in a new series,
referencing the source image."""

from __future__ import annotations

import warnings

import numpy as np

from lungcad.dicom_out.common import (CAPTURE_SERIES_NUMBER, MANUFACTURER, RESEARCH_NOTICE,
                                      Analysis, derived_uid, result_uid, series_description)
from lungcad.version import __version__

_AXES = (("L", "R"), ("P", "A"), ("H", "F"))


def _direction_letters(vector) -> str:
    """DICOM patient-orientation letters of a direction cosine vector (PS3.3 C.7.6.1.1.1)."""
    letters = []
    for axis in np.argsort(-np.abs(np.asarray(vector, dtype=float))):
        if abs(vector[axis]) > 0.25:
            letters.append(_AXES[axis][0] if vector[axis] > 0 else _AXES[axis][1])
    return "".join(letters) or "L"


def patient_orientation(ds) -> tuple[str, str]:
    """The source's Patient Orientation, or the one its Image Orientation (Patient) implies; a
    radiograph without either is taken as viewed from the front (L, F)."""
    value = ds.get("PatientOrientation")
    if value is not None and len(value) == 2 and all(str(v) for v in value):
        return str(value[0]), str(value[1])
    cosines = ds.get("ImageOrientationPatient")
    if cosines is not None and len(cosines) == 6:
        return _direction_letters(cosines[:3]), _direction_letters(cosines[3:])
    return "L", "F"


def render(analysis: Analysis) -> np.ndarray:
    """(H, W, 3) uint8: the image, heatmap, finding rings and the label text."""
    from lungcad.explain.render import draw_text, mark_circle, mark_cross, overlay

    image = analysis.image
    heat = analysis.heatmap if analysis.heatmap is not None else np.zeros_like(image)
    alpha = 0.4 if analysis.heatmap is not None else 0.0
    text = analysis.summary_line().replace("; ", "\n") + "\n" + RESEARCH_NOTICE
    rgb = draw_text(overlay(image, heat, alpha=alpha), text)
    spacing = analysis.pixel_spacing_mm
    for finding in analysis.findings:  # over the label: a mark is never hidden
        radius = (finding.radius_mm / spacing[1] if spacing and finding.radius_mm
                  else min(image.shape) / 30)
        rgb = mark_circle(rgb, finding.x, finding.y, max(radius, 3.0), colour=(255, 255, 0))
        rgb = mark_cross(rgb, finding.x, finding.y, colour=(255, 255, 0))
    return rgb


def build_capture(source, analysis: Analysis, instance_number: int = 1):
    """A highdicom ``SCImage`` (RGB, 8 bit) of :func:`render` for ``source`` (pydicom)."""
    from highdicom.sc import SCImage
    from pydicom import Dataset

    rgb = render(analysis)
    spacing = analysis.pixel_spacing_mm
    with warnings.catch_warnings():  # highdicom's advice on the source's odd person names
        warnings.simplefilter("ignore", UserWarning)
        capture = SCImage.from_ref_dataset(
            ref_dataset=source, pixel_array=rgb, photometric_interpretation="RGB",
            bits_allocated=8, coordinate_system="PATIENT",
            series_instance_uid=derived_uid("capture", source.SeriesInstanceUID,
                                            analysis.model_name, analysis.model_version),
            series_number=CAPTURE_SERIES_NUMBER,
            sop_instance_uid=result_uid("capture", source, analysis,
                                        "heatmap" if analysis.heatmap is not None else "plain"),
            instance_number=instance_number, manufacturer=MANUFACTURER,
            patient_orientation=patient_orientation(source),
            pixel_spacing=tuple(float(s) for s in spacing) if spacing else None,
            series_description=series_description(analysis, "overlay"), content_qualification="RESEARCH",
            manufacturer_model_name=analysis.model_label[:64],
            software_versions=f"lungcad {__version__}")
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    capture.SourceImageSequence = [reference]
    capture.BurnedInAnnotation = "YES"
    capture.ImageType = ["DERIVED", "SECONDARY"]
    capture.DerivationDescription = (f"lungcad {analysis.model_label} saliency overlay and "
                                     "findings")[:1024]
    capture.ImageComments = f"{analysis.summary_line()}. {RESEARCH_NOTICE}"[:10240]
    return capture
