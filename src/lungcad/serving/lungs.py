"""Lung-field segmentation in the API: the answer for a segmentation model, and the lung-outline
layer that a classifier's answer gets on request (``lungs=true``), from the served segmenter."""

from __future__ import annotations

from typing import Mapping

from lungcad.errors import LungcadError
from lungcad.segmentation import LUNG_MODEL
from lungcad.serving.heatmap import shrink_for_display

NO_LUNGS_MODEL = ("no lung outline: this server serves no lung segmentation model (serve "
                  f"{LUNG_MODEL} too; `lungcad serve` with no model serves it)")


def is_segmenter(model) -> bool:
    return getattr(model, "kind", "classifier") == "segmenter"


def lungs_model_id(served: Mapping[str, object]) -> str | None:
    """The served segmenter that draws lung outlines for classifiers: the one named
    jsrt-lungs, else the first segmentation model served; None without one."""
    segmenters = [sid for sid, s in served.items() if is_segmenter(s.model)]
    named = [sid for sid in segmenters if served[sid].spec.name == LUNG_MODEL]
    return (named or segmenters or [None])[0]


def segment_loaded(served, loaded):
    """The :class:`~lungcad.segmentation.predict.LungSegmentation` of a decoded upload (its
    pixel spacing and modality from the file: a CT slice gets a warning)."""
    from lungcad.segmentation.predict import segment

    return segment(served.model, loaded.array, spacing_mm=loaded.meta.pixel_spacing_mm,
                   modality=loaded.meta.modality)


def _plain_measures(measures: dict) -> dict:
    return {k: (int(v) if k.endswith("_px") else float(v)) for k, v in measures.items()}


def segmentation_payload(served, loaded, display_side: int, for_page: bool) -> dict:
    """The JSON answer of a segmentation model for one image: the mask (PNG, the image's size),
    the image with the outline and measures (PNG, shrunk for display), measures and warnings;
    for the page also the outline alone as a transparent layer (``lungs_png``)."""
    from lungcad.explain.outline import (mask_png, outline_layer_png, outline_overlay,
                                         summary_text)
    from lungcad.explain.render import png_bytes
    from lungcad.serving.service import ApiError, b64, image_info

    try:
        result = segment_loaded(served, loaded)
    except LungcadError as error:
        raise ApiError(422, str(error)) from None
    small_image, small_mask = shrink_for_display(loaded.array, result.mask.astype("float32"),
                                                 display_side)
    overlay = outline_overlay(small_image, small_mask >= 0.5,
                              summary_text(result, served.spec.name))
    payload = {
        "kind": "segmentation",
        "model": served.id,
        "model_version": served.spec.version,
        "task": served.spec.task,
        "plausible": result.plausible,
        "measures": _plain_measures(result.measures),
        "warnings": result.notes(),
        "in_domain": result.in_domain,
        "mask_png": b64(mask_png(result.mask)),
        "overlay_png": b64(png_bytes(overlay)),
        "image": image_info(loaded),
    }
    if for_page:
        payload["lungs_png"] = b64(outline_layer_png(result.mask, display_side))
    return payload


def lungs_fields(lungs_served, loaded, display_side: int) -> dict:
    """``lungs_*`` fields for a classifier's answer: the outline layer (transparent PNG, shrunk
    for display like ``image_png``), its measures and warnings; or ``lungs_error``."""
    from lungcad.explain.outline import outline_layer_png
    from lungcad.serving.service import b64

    if lungs_served is None:
        return {"lungs_error": NO_LUNGS_MODEL}
    try:
        result = segment_loaded(lungs_served, loaded)
    except LungcadError as error:
        return {"lungs_error": f"no lung outline: {error}"}
    return {"lungs_model": lungs_served.id, "lungs_plausible": result.plausible,
            "lungs_measures": _plain_measures(result.measures),
            "lungs_warnings": result.notes(),
            "lungs_png": b64(outline_layer_png(result.mask, display_side))}
