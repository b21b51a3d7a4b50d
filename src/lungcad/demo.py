"""``lungcad demo``: the bundled models on real DICOM files, offline, into one HTML page.

The two samples come with pip packages lungcad depends on: ``RG1_UNCI.dcm`` (a chest
radiograph, in ``pydicom-data``) and ``CT_small.dcm`` (a chest CT slice, in ``pydicom``).
Each bundled classifier reads the sample of its modality; the page shows every verdict with its
probabilities, threshold and Grad-CAM heatmap, and links each model card. A segmentation model
(``jsrt-lungs``) reads both samples: the radiograph's entry shows the lung outline with each
side's measures, the CT slice's the warning that no plausible pair of lungs is there. A nodule
detector (the bundled ``jsrt-nodules``, where installed: picked up like every bundled model)
reads the radiograph and draws its marks, circles with their scores, on its heatmap figure.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lungcad.disclaimer import DISCLAIMER
from lungcad.errors import LungcadError
from lungcad.version import __version__

# (file, what it is, the modality of the models that read it)
SAMPLES = (
    ("RG1_UNCI.dcm", "chest radiograph (CR, PA view), from the pydicom-data package",
     "chest radiograph"),
    ("CT_small.dcm", "axial chest CT slice, 128 x 128, from the pydicom package", "ct"),
)
SAMPLE_PACKAGES = {"RG1_UNCI.dcm": "pydicom-data", "CT_small.dcm": "pydicom"}
REPORT_FILE = "demo.html"
DISPLAY_SIDE = 384
DETECTOR = "jsrt-nodules"  # the bundled nodule detector, where installed
# Bundled models that the detector stands in for in the default demo, where it is bundled
# (() runs both). jsrt-nodules replaces jsrt-malignant: it marks where it looks, and its
# malignancy with age and sex scores an out-of-fold AUC of 0.667 (image only 0.606, as good as
# jsrt-malignant's 0.610; docs/results.md).
REPLACED_BY_DETECTOR: tuple[str, ...] = ("jsrt-malignant",)


def sample_path(name: str) -> Path:
    """Path of a DICOM sample installed with pydicom / pydicom-data (never downloaded)."""
    try:
        from pydicom.data import get_testdata_file
    except ImportError:
        raise LungcadError("the demo needs pydicom (pip install pydicom pydicom-data)") from None
    try:
        found = get_testdata_file(name, download=False)
    except (TypeError, ValueError, OSError):  # an older pydicom without ``download``
        found = None
    if not found:
        package = SAMPLE_PACKAGES.get(name, "pydicom-data")
        raise LungcadError(f"the DICOM sample {name} is not installed; it comes with the "
                           f"package {package} (pip install {package})")
    return Path(found)


@dataclass
class DemoResult:
    sample: str
    description: str
    model: str
    verdict: str
    probabilities: dict
    threshold: float | None
    image: Path
    overlay: Path
    card: Path | None
    measures: list[str] | None = None  # a segmentation: one line per side
    warnings: list[str] | None = None
    marks: list[str] | None = None  # a detector: one line per mark
    domain_note: str = ""  # where the sample is unlike the model's training images


def run_demo(out_dir: str | Path, models: Sequence[str] | None = None,
             log: Callable[[str], None] = print) -> Path:
    """Run ``models`` (default: every bundled model) on the samples; return the HTML page."""
    from lungcad.domain.check import predict_image
    from lungcad.explain import Explainer
    from lungcad.inference import load_model
    from lungcad.model_dir import bundled_models, resolve_model_dir
    from lungcad.io import load_image

    names = list(models) if models else demo_models(bundled_models())
    if not names:
        raise LungcadError("no bundled models are installed (src/lungcad/bundled is empty)")
    out = Path(out_dir)
    figures = out / "figures"
    try:
        figures.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LungcadError(f"cannot create the demo folder {out}: {exc.strerror or exc}") from None
    results: list[DemoResult] = []
    for name in names:
        model = load_model(name)
        if model.kind == "segmenter":
            results += [segment_sample(model, name, file, description, figures, log)
                        for file, description, _ in SAMPLES]
            continue
        samples = [s for s in SAMPLES if s[2] == model.spec.modality]
        if not samples:
            log(f"demo: {name} reads {model.spec.modality} images; no sample of that kind, skipped")
            continue
        explainer = Explainer(model, "gradcam")
        for file, description, _ in samples:
            path = sample_path(file)
            loaded = load_image(path)
            image = loaded.array
            prediction = predict_image(model, image, loaded.meta.modality)
            heat = explainer.maps([image], sources=[str(path)])[0]
            detection = sample_marks(model, loaded)
            stem = f"{Path(file).stem}-{model.spec.name}"
            image_png, overlay_png = write_figures(image, heat, figures, stem, detection)
            card = resolve_model_dir(name) / "MODEL_CARD.md"
            marks = None if detection is None else mark_lines(detection)
            results.append(DemoResult(file, description, model.spec.name, prediction.label,
                                      prediction.probabilities, prediction.threshold,
                                      image_png, overlay_png, card if card.is_file() else None,
                                      warnings=None if detection is None
                                      else list(detection.warnings), marks=marks,
                                      domain_note=prediction.domain_note))
            log(f"{file}  {model.spec.name}: {prediction.verdict()}"
                + ("" if marks is None else f"; {len(detection.findings)} nodule mark(s)"))
    page = out / REPORT_FILE
    page.write_text(render_page(results))
    return page


def demo_models(bundled: Sequence[str]) -> list[str]:
    """The bundled models the demo runs by default: all of them, less those the detector stands
    in for (:data:`REPLACED_BY_DETECTOR`) where the detector is bundled."""
    if DETECTOR not in bundled:
        return list(bundled)
    return [name for name in bundled if name not in REPLACED_BY_DETECTOR]


def sample_marks(model, loaded):
    """A detector's marks on a sample (its DICOM spacing and modality), or None for a model that
    does not mark nodules (a classifier, or a detector without its PyTorch network)."""
    from lungcad.explain.files import detector_marks

    return detector_marks(model, loaded)


def mark_lines(detection) -> list[str]:
    """One line per mark for the page: score, malignancy, where, how big."""
    lines = []
    for f in detection.findings:
        malignancy = "" if f.malignancy is None else f", malignancy {f.malignancy:.2f}"
        lines.append(f"mark {f.score:.2f}{malignancy} at x {f.x:.0f}, y {f.y:.0f} px "
                     f"(radius {f.radius_mm:.0f} mm)")
    return lines or ["no nodule marks"]


def segment_sample(model, name: str, file: str, description: str, figures: Path,
                   log: Callable[[str], None]) -> DemoResult:
    """One sample through a segmentation model: its outline figure and page entry."""
    from lungcad.explain.outline import (gray_rgb, outline_overlay, shrink_mask, side_lines,
                                         summary_text)
    from lungcad.explain.render import png_bytes
    from lungcad.io import load_image
    from lungcad.model_dir import resolve_model_dir
    from lungcad.preprocess import resize_area
    from lungcad.segmentation.predict import segment

    path = sample_path(file)
    loaded = load_image(path)
    result = segment(model, loaded.array, spacing_mm=loaded.meta.pixel_spacing_mm,
                     modality=loaded.meta.modality)
    shape = display_shape(loaded.array.shape)
    shown = resize_area(loaded.array, shape)
    stem = f"{Path(file).stem}-{model.spec.name}"
    image_png, overlay_png = figures / f"{stem}_image.png", figures / f"{stem}_overlay.png"
    image_png.write_bytes(png_bytes(gray_rgb(shown)))
    overlay_png.write_bytes(png_bytes(outline_overlay(
        shown, shrink_mask(result.mask, shape), summary_text(result, model.spec.name))))
    card = resolve_model_dir(name) / "MODEL_CARD.md"
    verdict = "lungs outlined" if result.plausible else "no plausible pair of lungs"
    sides = side_lines(result.measures)
    note = f" \u2014 {result.domain_note}" if result.domain_note else ""
    log(f"{file}  {model.spec.name}: {verdict}: "
        + ("; ".join(sides) if result.plausible else "; ".join(result.warnings)) + note)
    return DemoResult(file, description, model.spec.name, verdict, {}, None, image_png,
                      overlay_png, card if card.is_file() else None, sides, list(result.warnings),
                      domain_note=result.domain_note)


def display_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """The image's shape scaled so that its longer side is DISPLAY_SIDE pixels."""
    scale = DISPLAY_SIDE / max(shape)
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def write_figures(image: np.ndarray, heat: np.ndarray, folder: Path,
                  stem: str, detection=None) -> tuple[Path, Path]:
    """``<stem>_image.png`` (the image) and ``<stem>_overlay.png`` (with the heatmap, and a
    detector's marks where ``detection`` is given), both scaled to DISPLAY_SIDE for the page."""
    from lungcad.explain import overlay, png_bytes
    from lungcad.explain.marks import draw_marks
    from lungcad.explain.outline import gray_rgb
    from lungcad.preprocess import resize_area

    shape = display_shape(image.shape)
    shown, shown_heat = resize_area(image, shape), resize_area(heat, shape)
    image_png, overlay_png = folder / f"{stem}_image.png", folder / f"{stem}_overlay.png"
    image_png.write_bytes(png_bytes(gray_rgb(shown)))
    picture = overlay(shown, np.clip(shown_heat, 0, 1))
    if detection is not None:  # marks are in the image's pixels: scaled to the figure's
        picture = draw_marks(picture, detection.findings, detection.mm_per_pixel,
                             scale=shape[1] / image.shape[1])
    overlay_png.write_bytes(png_bytes(picture))
    return image_png, overlay_png


def _embedded_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _badge(r: DemoResult) -> str:
    """The "outside what this model was trained on" badge above an out-of-domain verdict."""
    if not r.domain_note:
        return ""
    return (f'<span class="ood">outside what this model was trained on</span><br>'
            f"<small>{html.escape(r.domain_note)}</small><br>")


def render_page(results: Sequence[DemoResult]) -> str:
    rows = []
    for r in results:
        probs = "<br>".join(f"{html.escape(c)}: {p:.3f}" for c, p in r.probabilities.items())
        rule = ("most probable class" if r.threshold is None
                else f"positive at probability &ge; {r.threshold:.3f}")
        picture = "Grad-CAM heatmap"
        if r.measures is not None:  # a segmentation
            probs = "<br>".join(map(html.escape, r.measures)) + "".join(
                f'<br><strong class="warn">warning:</strong> {html.escape(w)}'
                for w in r.warnings or [])
            rule = "lung fields; sides are the patient's (PA view: right lung on the image's left)"
            picture = "Lung outline"
        if r.marks is not None:  # a detector
            probs += "<br><strong>nodule marks</strong> (circles on the heatmap):<br>" + \
                "<br>".join(map(html.escape, r.marks)) + "".join(
                f'<br><strong class="warn">note:</strong> {html.escape(w)}'
                for w in r.warnings or [])
            picture = "Grad-CAM heatmap and nodule marks"
        card = (f'<details><summary>model card</summary><pre>{html.escape(r.card.read_text())}'
                "</pre></details>" if r.card else "")
        rows.append(
            f"<tr><td>{html.escape(r.sample)}<br><small>{html.escape(r.description)}</small></td>"
            f"<td><code>{html.escape(r.model)}</code>{card}</td>"
            f"<td>{_badge(r)}<strong>{html.escape(r.verdict)}</strong><br><small>{rule}</small></td>"
            f"<td>{probs}</td>"
            f'<td><img src="{_embedded_png(r.image)}" alt="{html.escape(r.sample)}" width="300"></td>'
            f'<td><img src="{_embedded_png(r.overlay)}" alt="{picture} of {html.escape(r.model)} '
            f'on {html.escape(r.sample)}" width="300"></td></tr>')
    body = "\n".join(rows) or '<tr><td colspan="6">no model ran</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lungcad demo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 75em; }}
.warning {{ background: #fff3cd; border: 1px solid #e0c060; padding: .6em 1em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .5em; vertical-align: top; }}
pre {{ white-space: pre-wrap; max-width: 40em; font-size: 80%; }}
.warn {{ color: #a00; }}
.ood {{ display: inline-block; background: #6b2fa0; color: #fff; font-weight: 600;
        padding: .15em .6em; border-radius: 1em; margin-bottom: .3em; }}
</style></head><body>
<h1>lungcad demo</h1>
<p class="warning"><strong>{DISCLAIMER}</strong> These verdicts come from models trained on small
public research datasets; the two DICOM files are software test samples, not patients of any
study, and neither resembles the models' training data: <code>RG1_UNCI.dcm</code> is a modern
computed radiograph (JSRT is digitised 1990s film) and <code>CT_small.dcm</code> is a 128 x 128 crop
around the mediastinum, unlike the whole-lung slices the CT models learned from. The verdicts
below show the software working, not the models' accuracy: each model card gives that. Each
model checks its input against its training images: a verdict marked <em>outside what this model
was trained on</em> comes from an input unlike them, and its probabilities say nothing.</p>
<p>lungcad {__version__}: the bundled models on the DICOM samples that pydicom installs.
Heat shows where the model's evidence for the shown class lies (Grad-CAM). The lung model draws
each lung's outline (the patient's right lung in cyan, the left in orange) and measures it. A
nodule detector circles where it finds nodules (yellow), each with its score.</p>
<table><tr><th>sample</th><th>model</th><th>verdict</th><th>probabilities / measures</th><th>image</th><th>heatmap / outline</th></tr>
{body}
</table></body></html>
"""
