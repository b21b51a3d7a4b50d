"""The Structured Report: a Comprehensive 3D SR holding a TID 1500 measurement report per image.

Content (all under the report's root, concept names in the private scheme ``99LUNGCAD`` where
DICOM has no code):

- observer: a device named after the model (name, version, manufacturer ``lungcad``);
- one image-level measurement group referencing the source image, with the model as Algorithm
  Name / Version, a NUM "Probability of <class>" per class, a NUM "Decision threshold" (binary
  models), a CODE "Predicted class" and, where known, a CODE "Input in the model's domain";
- one planar ROI group per detector finding: an SCOORD POINT (or CIRCLE where the pixel spacing
  turns the radius into pixels) in the source's pixel matrix, finding type SCT Nodule, NUM
  "Detection score", "Radius" (mm) and "Probability of malignancy" where the model gives one;
- a TEXT "Comment": "Research software, not for diagnostic use" (and Content Qualification
  RESEARCH in the header).

:func:`read_sr` reads these back into a dict.
"""

from __future__ import annotations

import numpy as np

from lungcad.dicom_out.common import (MANUFACTURER, RESEARCH_NOTICE, SCHEME, SR_SERIES_NUMBER,
                                      Analysis, derived_uid, result_uid, series_description)
from lungcad.version import __version__

THRESHOLD_MEANING = "Decision threshold"
LABEL_MEANING = "Predicted class"
IN_DOMAIN_MEANING = "Input in the model's domain"
SCORE_MEANING = "Detection score"
RADIUS_MEANING = "Radius"
MALIGNANCY_MEANING = "Probability of malignancy"
PROBABILITY_PREFIX = "Probability of "


def _concept(value: str, meaning: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning[:64])


def _number(value: str, meaning: str, number: float, unit=None):
    from highdicom.sr import Measurement
    from pydicom.sr.codedict import codes

    return Measurement(name=_concept(value, meaning), value=float(number),
                       unit=unit or codes.UCUM.NoUnits)


def _algorithm(analysis: Analysis):
    from highdicom.sr import AlgorithmIdentification

    parameters = []
    if analysis.threshold is not None:
        parameters.append(f"threshold {analysis.threshold:.6g} ({analysis.threshold_rule})"[:64])
    return AlgorithmIdentification(name=analysis.model_name, version=analysis.model_version,
                                   parameters=parameters or None, manufacturer=MANUFACTURER)


def _classification_group(source, analysis: Analysis, classes: list[str]):
    from highdicom.sr import (MeasurementsAndQualitativeEvaluations, QualitativeEvaluation,
                              SourceImageForMeasurementGroup, TrackingIdentifier)
    from pydicom.sr.codedict import codes

    measurements = [_number(f"PROB{i}", PROBABILITY_PREFIX + c, analysis.probabilities[c])
                    for i, c in enumerate(classes)]
    if analysis.threshold is not None:
        measurements.append(_number("THRESHOLD", THRESHOLD_MEANING, analysis.threshold))
    evaluations = []
    if analysis.label is not None:
        evaluations.append(QualitativeEvaluation(
            _concept("LABEL", LABEL_MEANING),
            _concept(f"CLASS{classes.index(analysis.label)}", analysis.label)))
    if analysis.in_domain is not None:
        evaluations.append(QualitativeEvaluation(_concept("INDOMAIN", IN_DOMAIN_MEANING),
                                                 codes.SCT.Yes if analysis.in_domain
                                                 else codes.SCT.No))
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=result_uid("track", source, analysis, 0),
                                               identifier="image classification"),
        finding_type=codes.SCT.Finding, algorithm_id=_algorithm(analysis),
        measurements=measurements or None, qualitative_evaluations=evaluations or None,
        source_images=[SourceImageForMeasurementGroup.from_source_image(source)])


def _finding_group(source, analysis: Analysis, finding, index: int):
    from highdicom.sr import (GraphicTypeValues, ImageRegion,
                              PlanarROIMeasurementsAndQualitativeEvaluations,
                              SourceImageForRegion, TrackingIdentifier)
    from pydicom.sr.codedict import codes

    # lungcad's pixel coordinates put 0 at the first pixel's centre; DICOM's at its outer corner.
    cx, cy = float(finding.x) + 0.5, float(finding.y) + 0.5
    spacing = analysis.pixel_spacing_mm
    if spacing is not None and finding.radius_mm and finding.radius_mm > 0:
        r = float(finding.radius_mm) / float(spacing[1])
        graphic_type, data = GraphicTypeValues.CIRCLE, np.array([[cx, cy], [cx + r, cy]])
    else:
        graphic_type, data = GraphicTypeValues.POINT, np.array([[cx, cy]])
    measurements = [_number("SCORE", SCORE_MEANING, finding.score)]
    if finding.radius_mm:
        measurements.append(_number("RADIUS", RADIUS_MEANING, finding.radius_mm,
                                    codes.UCUM.Millimeter))
    if finding.malignancy is not None:
        measurements.append(_number("MALIGNANCY", MALIGNANCY_MEANING, finding.malignancy))
    region = ImageRegion(graphic_type=graphic_type, graphic_data=data,
                         source_image=SourceImageForRegion.from_source_image(source))
    return PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=result_uid("track", source, analysis, index),
                                               identifier=f"finding {index}"),
        referenced_region=region, finding_type=codes.SCT.Nodule,
        algorithm_id=_algorithm(analysis), measurements=measurements)


def build_sr(source, analysis: Analysis, classes: list[str] | None = None,
             instance_number: int = 1):
    """A highdicom ``Comprehensive3DSR`` about ``source`` (its pydicom dataset): in the
    source's study, in a new series derived from the source series and the model."""
    from highdicom.sr import (Comprehensive3DSR, DeviceObserverIdentifyingAttributes,
                              MeasurementReport, ObservationContext, ObserverContext,
                              RelationshipTypeValues, TextContentItem)
    from pydicom.sr.codedict import codes

    classes = list(classes or analysis.probabilities)
    device = DeviceObserverIdentifyingAttributes(
        uid=derived_uid("device", analysis.model_name, analysis.model_version),
        name=f"lungcad {analysis.model_name}"[:64], manufacturer_name=MANUFACTURER,
        model_name=analysis.model_label[:64])
    context = ObservationContext(observer_device_context=ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))
    groups = []
    if analysis.probabilities:
        groups.append(_classification_group(source, analysis, classes))
    groups += [_finding_group(source, analysis, f, i + 1) for i, f in enumerate(analysis.findings)]
    report = MeasurementReport(observation_context=context,
                               procedure_reported=codes.SCT.ImagingProcedure,
                               imaging_measurements=groups,
                               title=codes.DCM.ImagingMeasurementReport)
    report[0].ContentSequence.append(TextContentItem(
        name=codes.DCM.Comment, value=RESEARCH_NOTICE,
        relationship_type=RelationshipTypeValues.CONTAINS))
    return Comprehensive3DSR(
        evidence=[source], content=report[0],
        series_instance_uid=derived_uid("sr", source.SeriesInstanceUID, analysis.model_name,
                                        analysis.model_version),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=result_uid("sr", source, analysis),
        instance_number=instance_number, manufacturer=MANUFACTURER, is_complete=True,
        series_description=series_description(analysis, "SR"), content_qualification="RESEARCH",
        manufacturer_model_name=analysis.model_label[:64],
        software_versions=f"lungcad {__version__}")


def _items(sequence):
    for item in sequence or []:
        yield item
        yield from _items(item.get("ContentSequence"))


def read_sr(ds) -> dict:
    """What a lungcad SR says, from a pydicom dataset (or a path): model, probabilities,
    threshold, predicted class, in-domain flag, findings (graphic type, points, measures) and
    the notice text."""
    import pydicom

    if not isinstance(ds, pydicom.Dataset):
        ds = pydicom.dcmread(ds)
    out: dict = {"model": None, "version": None, "probabilities": {}, "threshold": None,
                 "label": None, "in_domain": None, "findings": [], "notice": None,
                 "referenced_sop_instance_uids": []}
    for item in _items(ds.get("ContentSequence")):
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        kind = item.ValueType
        if kind == "TEXT" and name == "Algorithm Name":
            out["model"] = item.TextValue
        elif kind == "TEXT" and name == "Algorithm Version":
            out["version"] = item.TextValue
        elif kind == "TEXT" and name == "Comment":
            out["notice"] = item.TextValue
        elif kind == "NUM" and name.startswith(PROBABILITY_PREFIX) and name != MALIGNANCY_MEANING:
            out["probabilities"][name[len(PROBABILITY_PREFIX):]] = _num(item)
        elif kind == "NUM" and name == THRESHOLD_MEANING:
            out["threshold"] = _num(item)
        elif kind == "CODE" and name == LABEL_MEANING:
            out["label"] = item.ConceptCodeSequence[0].CodeMeaning
        elif kind == "CODE" and name == IN_DOMAIN_MEANING:
            out["in_domain"] = item.ConceptCodeSequence[0].CodeMeaning == "Yes"
        elif kind == "IMAGE":
            uid = item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            if uid not in out["referenced_sop_instance_uids"]:
                out["referenced_sop_instance_uids"].append(uid)
        if kind == "CONTAINER" and name == "Imaging Measurements":
            for group in item.get("ContentSequence", []):
                finding = _read_finding(group)
                if finding is not None:
                    out["findings"].append(finding)
    return out


def _num(item) -> float:
    return float(item.MeasuredValueSequence[0].NumericValue)


def _read_finding(group) -> dict | None:
    found: dict = {}
    for item in _items(group.get("ContentSequence")):
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        if item.ValueType == "SCOORD":
            found["graphic_type"] = item.GraphicType
            found["points"] = np.asarray(item.GraphicData, dtype=float).reshape(-1, 2).tolist()
        elif item.ValueType == "NUM" and name == SCORE_MEANING:
            found["score"] = _num(item)
        elif item.ValueType == "NUM" and name == RADIUS_MEANING:
            found["radius_mm"] = _num(item)
        elif item.ValueType == "NUM" and name == MALIGNANCY_MEANING:
            found["malignancy"] = _num(item)
    return found if "graphic_type" in found else None
