"""One upload through one model: decode, predict (or segment) and the saliency map, as one job on
the model's own threads (:meth:`~lungcad.serving.service.ServedModel.run`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungcad.serving.heatmap import HeatmapUnavailable
from lungcad.serving.lungs import segmentation_payload
from lungcad.serving.marks import detector_payload
from lungcad.serving.service import ServedModel, decode_upload, predict_payload


@dataclass
class Analysis:
    """What a model's threads make of one upload in one go: the decoded image, the answer so
    far, and the saliency map (or why there is none) where one was asked for."""
    image: object
    payload: dict
    heat: np.ndarray | None = None
    heat_error: str | None = None


def analyse(served: ServedModel, data: bytes, filename: str | None, settings, frame: int | None,
            heatmap: bool, for_page: bool, patient: tuple = (None, None)) -> Analysis:
    """Decode, predict (or segment) and, on request, the saliency map, all in one job on the
    model's threads: a request's decoded image lives only while its own job runs or its
    pictures are drawn, never while it waits behind other requests."""
    image = decode_upload(data, filename, served, settings.max_pixels, settings.max_decode_bytes,
                          frame)
    if served.kind == "segmenter":
        return Analysis(image, segmentation_payload(served, image, settings.display_side,
                                                    for_page))
    if served.kind == "detector":  # prediction and marks, one pass
        result = Analysis(image, detector_payload(served, image, *patient))
    else:
        result = Analysis(image, predict_payload(served, image))
    if heatmap:
        try:
            result.heat = served.heatmaps.saliency(image.array)
        except HeatmapUnavailable as error:
            # The prediction stands; the answer says why it comes without a heatmap.
            result.heat_error = str(error)
    return result


def modality_answer(served: dict, data: bytes, filename: str | None, settings) -> dict:
    """The modality of one upload and the served models (not segmenters) that read it; none,
    with the ``reason``, for an image that is neither a chest radiograph nor a CT slice."""
    from lungcad.domain.auto import not_routed, routed
    from lungcad.domain.modality import canonical, guess_modality
    from lungcad.errors import LungcadError
    from lungcad.io import load_image
    from lungcad.preprocess import check_pixels
    from lungcad.serving.service import ApiError, safe_label

    try:
        loaded = load_image(data, name=safe_label(filename), max_pixels=settings.max_pixels,
                            max_decode_bytes=settings.max_decode_bytes)
        check_pixels(loaded.array, safe_label(filename) or "image")
        guess = guess_modality(loaded.array, loaded.meta.modality)
    except LungcadError as error:
        raise ApiError(422, str(error)) from None
    answer = {"modality": guess.modality, "source": guess.source,
              "confidence": guess.confidence,
              "models": [mid for mid, s in served.items() if s.kind != "segmenter"
                         and canonical(s.spec.modality) == routed(guess)]}
    if routed(guess) is None:  # neither modality: no model, and why
        answer["reason"] = not_routed(guess, safe_label(filename) or "image")
    return answer


AUTO = "auto"


def auto_model_id(served: dict, data: bytes, filename: str | None, settings) -> tuple[str, dict]:
    """REST ``model=auto``: the first served model (not a segmenter) of the upload's modality,
    and the modality answer behind the choice. Where none is of that modality, the first served
    model, whose own modality check refuses the image (422) where it is sure of the mismatch.
    An image that is neither a radiograph nor a CT slice gets no model (422 with the reason)
    where the server has several to choose from."""
    from lungcad.serving.service import ApiError

    try:
        answer = modality_answer(served, data, filename, settings)
    except ApiError:  # unreadable here (or a frame to pick): the model's own reading says why
        answer = {"modality": "unknown", "source": "not read", "models": []}
    every_reader = [mid for mid, s in served.items() if s.kind != "segmenter"]
    if answer.get("reason") and len(every_reader) > 1:  # neither modality: no model to pick
        raise ApiError(422, f"{answer['reason']}; name a model (model=...) to read it anyway")
    # a server of one model reads everything with it, as if named: its answer is then flagged
    # out of domain where the image is neither modality
    readers = answer["models"] or every_reader
    if not readers:
        raise ApiError(422, f"no served model reads images; this server serves: "
                            f"{', '.join(served)}")
    return readers[0], answer
