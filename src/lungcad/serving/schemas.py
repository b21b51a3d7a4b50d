"""The API's answers as OpenAPI schemas (what /docs shows), and its error statuses."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class ErrorResponse(BaseModel):
    error: str


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str
    modality: str
    notes: list[str]


class FindingResponse(BaseModel):
    """One nodule mark of a detector, in the uploaded image's own pixel coordinates."""
    x: float                  # column, 0 = centre of the first pixel
    y: float                  # row
    radius_mm: float
    radius_px: float          # radius_mm at mm_per_pixel
    score: float              # in [0, 1]: higher = more likely a nodule
    malignancy: float | None  # P(malignant | nodule here), where the model has it


class PredictResponse(BaseModel):
    # Also one ``prob_<class>`` field per class, hence extra fields allowed.
    model_config = ConfigDict(extra="allow")
    model: str
    model_version: str
    task: str
    probabilities: dict[str, float]
    label: str
    threshold: float | None
    image: ImageInfo
    # The domain check: in_domain false = unlike the model's training images ("outside what
    # this model was trained on"); still answered. None where the model has no check.
    in_domain: bool | None = None
    domain_score: float | None = None
    domain_threshold: float | None = None
    domain_note: str | None = None
    # True: the image was in the model's training data (its score is not a validation);
    # None where the model directory records no training images
    in_training_data: bool | None = None
    calibrated: bool = False  # probabilities through the model's stored calibration
    heatmap_png: str | None = None
    heatmap_method: str | None = None
    heatmap_error: str | None = None  # why a heatmap asked for is absent
    # With lungs=true: the served segmentation model's lung outline over the image.
    lungs_model: str | None = None
    lungs_png: str | None = None
    lungs_plausible: bool | None = None
    lungs_measures: dict[str, float] | None = None
    lungs_warnings: list[str] | None = None
    lungs_error: str | None = None  # why a lung outline asked for is absent
    # A detector (kind "detector"): its marks, strongest first, in image pixels (the frame is
    # image.width x image.height). A classifier's answer has no findings key.
    findings: list[FindingResponse] | None = None
    mm_per_pixel: float | None = None  # the spacing the radii were measured with
    findings_warnings: list[str] | None = None
    findings_error: str | None = None  # why a detector gives no marks (ONNX Runtime)
    malignancy: float | None = None  # a detector's image-only malignancy score
    malignancy_age_sex: float | None = None  # with age and sex, where the model has that model
    age_sex_note: str | None = None  # which of age / sex were missing, and what was used


class SegmentationResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    kind: Literal["segmentation"]
    model: str
    model_version: str
    task: str
    plausible: bool
    measures: dict[str, float]
    warnings: list[str]
    in_domain: bool | None = None  # the segmenter's domain check (None: it has none)
    mask_png: str
    overlay_png: str
    image: ImageInfo
    image_png: str | None = None
    lungs_png: str | None = None


class ModelInfoResponse(BaseModel):
    id: str
    name: str
    version: str
    task: str
    kind: str
    architecture: str
    classes: list[str]
    threshold: float | None
    threshold_rule: str
    modality: str
    input_size: int
    runtime: str
    heatmaps: bool
    marks: bool = False  # a detector that marks nodules here (findings in its answers)
    card: str


class ModalityResponse(BaseModel):
    modality: str          # "radiograph", "ct" or (by the image alone) "neither"
    source: str            # "DICOM Modality tag" or "image classifier"
    confidence: float
    models: list[str]      # served models (not segmenters) of that modality: what auto picks
    reason: str | None = None  # "neither": why, and that no model was picked


class ModelsResponse(BaseModel):
    default: str
    models: list[ModelInfoResponse]
    lungs_model: str | None = None


class HealthResponse(BaseModel):
    status: str
    version: str
    models: list[str]
    disclaimer: str


ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in [
    (400, "The request body could not be parsed, or a host name the server does not answer to"),
    (404, "Unknown model"),
    (403, "A cross-origin request (another site's page posting here)"),
    (408, "The upload did not arrive within the server's --upload-timeout"),
    (413, "Upload over the size limit"),
    (422, "Missing field, several files, or an image that cannot be read or used (empty, not "
          "an image, truncated, too many pixels, over the decode budget, blank, values out of "
          "range, a multi-frame file without a frame)"),
    (503, "The model has --max-in-flight requests in flight already; retry after the "
          "Retry-After header's seconds"),
]}
