"""Heatmap files for images on disk: ``<stem>_overlay.png`` and ``<stem>_saliency.npy``.

The overlay is the original image (its own size) with the map blended in and the prediction
written on it; the ``.npy`` holds the raw [0, 1] map at the original image's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lungcad.disclaimer import SHORT_DISCLAIMER
from lungcad.errors import LungcadError
from lungcad.detection.batch import marks_images
from lungcad.detection.detect import detect
from lungcad.domain.check import predict_image
from lungcad.explain.render import draw_text, overlay, png_bytes
from lungcad.explain.saliency import Explainer

OVERLAY_SUFFIX = "_overlay.png"
SALIENCY_SUFFIX = "_saliency.npy"


@dataclass
class HeatmapFiles:
    image: Path
    overlay: Path
    saliency: Path
    prediction: object  # the model's ImagePrediction (lungcad.model_dir)
    target_class: str
    findings: list | None = None  # a detector's marks (drawn on the overlay); else None


def output_stems(paths: Sequence[str | Path]) -> list[str]:
    """A distinct file stem per image: its own stem, or (where images share one, as in
    ``train/x.png`` and ``valid/x.png``) prefixed by as few parent folders as tell them apart,
    and numbered if even that fails."""
    paths = [Path(p) for p in paths]

    def named(p: Path, depth: int) -> str:
        parents = [q.name for q in p.parents if q.name][:depth]
        return "_".join([*reversed(parents), p.stem])

    groups: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        groups.setdefault(p.stem, []).append(i)
    stems = [p.stem for p in paths]
    for members in groups.values():
        if len(members) < 2:
            continue
        deepest = max(len(paths[i].parents) for i in members)
        for depth in range(1, deepest + 1):
            names = [named(paths[i], depth) for i in members]
            if len(set(names)) == len(names):
                break
        for i, name in zip(members, names):
            stems[i] = name
    used: set[str] = set()
    for i, stem in enumerate(stems):
        candidate, n = stem, 1
        while candidate in used:
            n += 1
            candidate = f"{stem}_{n}"
        used.add(candidate)
        stems[i] = candidate
    return stems


def heat_target(explainer: Explainer, prediction, target_class: str | None) -> str:
    """Name of the class whose evidence the map shows (the rule :class:`Explainer` applies)."""
    if target_class is not None:
        return target_class
    if explainer.binary:
        return explainer.classes[-1]
    return max(prediction.probabilities, key=prediction.probabilities.get)


def prediction_text(prediction, method: str, target: str,
                    empty_map: bool = False) -> str:
    """What the overlay says: the verdict, the probabilities, and what the heat shows."""
    probs = ", ".join(f"{name} {p:.3f}" for name, p in prediction.probabilities.items())
    rule = f" (threshold {prediction.threshold:.3f})" if prediction.threshold is not None else ""
    heat = (f"heat: {method} for {target}" if not empty_map else
            f"heat: {method} found no evidence for {target} anywhere (empty map)")
    return f"verdict: {prediction.label}{rule}\n{probs}\n{heat}\n{SHORT_DISCLAIMER}"


def write_heatmap(explainer: Explainer, image_path: str | Path, out_dir: str | Path,
                  stem: str | None = None, target_class: str | None = None) -> HeatmapFiles:
    """Load one image, predict, and write its overlay PNG and saliency ``.npy`` into ``out_dir``.
    Raises :class:`LungcadError` for an image that cannot be read or used."""
    from lungcad.io import load_image

    image_path = Path(image_path)
    loaded = load_image(image_path)
    array = loaded.array
    prediction = predict_image(explainer.model, array)
    heat = explainer.maps([array], target_class, sources=[str(image_path)])[0]
    target = heat_target(explainer, prediction, target_class)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or image_path.stem
    overlay_path, saliency_path = out / f"{stem}{OVERLAY_SUFFIX}", out / f"{stem}{SALIENCY_SUFFIX}"
    text = prediction_text(prediction, explainer.method, target, empty_map=not heat.any())
    detection = detector_marks(explainer.model, loaded)
    if detection is None:
        picture = overlay(array, heat, text)
    else:  # a detector: its marks as circles with their scores, the text over them
        from lungcad.explain.marks import draw_marks, marks_text

        verdict, rest = text.split("\n", 1)
        text = f"{verdict}\n{marks_text(detection.findings, explainer.model.spec.name)}\n{rest}"
        picture = draw_text(draw_marks(overlay(array, heat), detection.findings,
                                       detection.mm_per_pixel), text)
    overlay_path.write_bytes(png_bytes(picture))
    np.save(saliency_path, heat.astype(np.float32))
    return HeatmapFiles(image_path, overlay_path, saliency_path, prediction, target,
                        None if detection is None else list(detection.findings))


def detector_marks(model, loaded):
    """A detector's :class:`~lungcad.detection.detect.Detection` of a loaded image (its own
    spacing and modality), or None for a model that does not mark nodules here (a classifier,
    or a detector's ONNX export made without its cell maps)."""
    if not marks_images(model):
        return None
    return detect(model, loaded.array, loaded.meta.pixel_spacing_mm, loaded.meta.modality)


def write_heatmaps(model, image_paths: Sequence[str | Path], out_dir: str | Path,
                   method: str = "gradcam", target_class: str | None = None,
                   errors: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Overlay PNG and saliency ``.npy`` for each image; returns the paths written (overlay,
    then saliency, per image). Files are named by each image's stem (see :func:`output_stems`).

    A bad image raises :class:`LungcadError`, unless ``errors`` is a list: then ``(path,
    message)`` is appended to it and the other images go on.
    """
    written: list[Path] = []
    with Explainer(model, method) as explainer:
        if target_class is not None:
            explainer.target_index(target_class)  # a wrong class name fails before any image
        for path, stem in zip(image_paths, output_stems(image_paths)):
            try:
                files = write_heatmap(explainer, path, out_dir, stem, target_class)
            except LungcadError as exc:
                if errors is None:
                    raise
                errors.append((Path(path), str(exc)))
                continue
            written += [files.overlay, files.saliency]
    return written
