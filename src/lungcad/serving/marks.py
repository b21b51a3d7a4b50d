"""A detector's answer: the image-level prediction and the nodule marks, from one network pass.

``findings``: one ``{x, y, radius_mm, radius_px, score, malignancy}`` per mark, strongest first,
in the uploaded image's own pixel coordinates (x = column, y = row, 0 at the centre of the first
pixel; ``image.width`` / ``image.height`` give the frame), with ``mm_per_pixel`` (the spacing the
radii were measured with) and ``findings_warnings`` (an assumed spacing, no lung model...).
A detector served on ONNX Runtime marks nodules as on PyTorch (``lungcad export`` writes its cell
maps as a second output); an ONNX file without them (exported by an older lungcad) gives the
probabilities only, and ``findings_error`` says why. A classifier's or segmenter's answer has no
``findings`` key.
"""

from __future__ import annotations

from lungcad.errors import LungcadError
from lungcad.serving.service import ApiError, ServedModel, predict_payload

MARKS_NEED_CELLS = ("no nodule marks: this detector's ONNX file has no cell maps (it was "
                    "exported by an older lungcad), so it gives image-level probabilities only; "
                    "export it again with `lungcad export`, or serve it with --runtime torch")


def detector_payload(served: ServedModel, loaded, age=None, sex=None) -> dict:
    """The JSON answer of a detector for one decoded image (without heatmap); ``age``/``sex``
    as the request gives them (else the DICOM's tags)."""
    model = served.model
    if not served.marks:  # an ONNX file without the cell maps
        payload = predict_payload(served, loaded)
        payload["findings_error"] = MARKS_NEED_CELLS
        payload["image"]["notes"].append(MARKS_NEED_CELLS)
        return payload
    try:
        prediction, detection = detect_once(model, loaded, age, sex)
    except LungcadError as error:
        raise ApiError(422, str(error)) from None
    payload = predict_payload(served, loaded, prediction)
    payload.update(findings_fields(detection))
    return payload


def detect_once(model, loaded, age=None, sex=None):
    """(ImagePrediction, Detection) of one image from a single pass of the detector, as
    ``lungcad predict`` makes them: the modality / domain screen first (an image of the other
    modality is refused), then the cell maps, the marks, and the image-level probabilities (the
    strongest cell, through the model's calibration)."""
    from lungcad.detection.batch import image_probabilities
    from lungcad.detection.detect import detect
    from lungcad.domain.check import screen_one

    array, meta = loaded.array, loaded.meta
    modality = getattr(meta, "modality", None)
    check = screen_one(model, array, "uploaded image", modality)
    detection = detect(model, array, getattr(meta, "pixel_spacing_mm", None), modality,
                       age=getattr(meta, "patient_age", None) if age is None else age,
                       sex=getattr(meta, "patient_sex", None) if sex is None else sex)
    probs = image_probabilities(detection, model.map_output)
    prediction = model.prediction(model.calibrate(probs[None])[0], check)
    return prediction, detection


def findings_fields(detection) -> dict:
    """The marks for a REST answer: positions to 0.01 px, scores and probabilities unrounded
    (as the CSV tables write them), so that a client re-applying a cut-off gets lungcad's set."""
    mm = float(detection.mm_per_pixel)
    return {"findings": [{"x": round(f.x, 2), "y": round(f.y, 2),
                          "radius_mm": round(f.radius_mm, 2),
                          "radius_px": round(f.radius_px(mm), 2), "score": float(f.score),
                          "malignancy": None if f.malignancy is None else float(f.malignancy)}
                         for f in detection.findings],
            "mm_per_pixel": mm, "findings_warnings": list(detection.warnings),
            "malignancy": float(detection.malignancy),
            "malignancy_age_sex": (None if detection.malignancy_age_sex is None
                                   else float(detection.malignancy_age_sex)),
            "age_sex_note": detection.age_sex_note}
