"""``lungcad demo``: the bundled models on real DICOM files, offline, into one HTML page.

The two samples come with pip packages lungcad depends on: ``RG1_UNCI.dcm`` (a chest
radiograph, in ``pydicom-data``) and ``CT_small.dcm`` (a chest CT slice, in ``pydicom``).
Each bundled model reads the sample of its modality; the page shows every verdict with its
probabilities, threshold and Grad-CAM heatmap, and links each model card.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from lungcad.errors import LungcadError

# (file, what it is, the modality of the models that read it)
SAMPLES = (
    ("RG1_UNCI.dcm", "chest radiograph (CR, PA view), from the pydicom-data package",
     "chest radiograph"),
    ("CT_small.dcm", "axial chest CT slice, 128 x 128, from the pydicom package", "ct"),
)
REPORT_FILE = "demo.html"
DISCLAIMER = "Research software, not a medical device. Not for diagnosis."


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
        raise LungcadError(f"the DICOM sample {name} is not installed; it comes with the "
                           "package pydicom-data (pip install pydicom-data)")
    return Path(found)


@dataclass
class DemoResult:
    sample: str
    description: str
    model: str
    verdict: str
    probabilities: dict
    threshold: float | None
    overlay: Path
    card: Path | None


def run_demo(out_dir: str | Path, models: Sequence[str] | None = None,
             log: Callable[[str], None] = print) -> Path:
    """Run ``models`` (default: every bundled model) on the samples; return the HTML page."""
    from lungcad.explain import Explainer, write_heatmap
    from lungcad.inference import bundled_models, load_model, resolve_model_dir

    names = list(models) if models else bundled_models()
    if not names:
        raise LungcadError("no bundled models are installed (src/lungcad/bundled is empty)")
    out = Path(out_dir)
    figures = out / "figures"
    results: list[DemoResult] = []
    for name in names:
        model = load_model(name)
        samples = [s for s in SAMPLES if s[2] == model.spec.modality]
        if not samples:
            log(f"demo: {name} reads {model.spec.modality} images; no sample of that kind, skipped")
            continue
        explainer = Explainer(model, "gradcam")
        for file, description, _ in samples:
            path = sample_path(file)
            stem = f"{Path(file).stem}-{model.spec.name}"
            files = write_heatmap(explainer, path, figures, stem=stem)
            prediction = files.prediction
            card = resolve_model_dir(name) / "MODEL_CARD.md"
            results.append(DemoResult(file, description, model.spec.name, prediction.label,
                                      prediction.probabilities, prediction.threshold,
                                      files.overlay, card if card.is_file() else None))
            log(f"{file}  {model.spec.name}: {prediction.verdict()}")
    page = out / REPORT_FILE
    out.mkdir(parents=True, exist_ok=True)
    page.write_text(render_page(results))
    return page


def _embedded_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def render_page(results: Sequence[DemoResult]) -> str:
    from lungcad import __version__

    rows = []
    for r in results:
        probs = "<br>".join(f"{html.escape(c)}: {p:.3f}" for c, p in r.probabilities.items())
        rule = ("most probable class" if r.threshold is None
                else f"positive at probability &ge; {r.threshold:.3f}")
        card = (f'<details><summary>model card</summary><pre>{html.escape(r.card.read_text())}'
                "</pre></details>" if r.card else "")
        rows.append(
            f"<tr><td>{html.escape(r.sample)}<br><small>{html.escape(r.description)}</small></td>"
            f"<td><code>{html.escape(r.model)}</code>{card}</td>"
            f"<td><strong>{html.escape(r.verdict)}</strong><br><small>{rule}</small></td>"
            f"<td>{probs}</td>"
            f'<td><img src="{_embedded_png(r.overlay)}" alt="Grad-CAM heatmap of {html.escape(r.model)} '
            f'on {html.escape(r.sample)}" width="320"></td></tr>')
    body = "\n".join(rows) or '<tr><td colspan="5">no model ran</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lungcad demo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 75em; }}
.warning {{ background: #fff3cd; border: 1px solid #e0c060; padding: .6em 1em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .5em; vertical-align: top; }}
pre {{ white-space: pre-wrap; max-width: 40em; font-size: 80%; }}
</style></head><body>
<h1>lungcad demo</h1>
<p class="warning"><strong>{DISCLAIMER}</strong> These verdicts come from models trained on small
public research datasets; the two DICOM files are software test samples, not patients of any
study, and the CT slice is far smaller than the models' training images.</p>
<p>lungcad {__version__}: the bundled models on the DICOM samples that pydicom installs.
Heat shows where the model's evidence for the shown class lies (Grad-CAM).</p>
<table><tr><th>image</th><th>model</th><th>verdict</th><th>probabilities</th><th>heatmap</th></tr>
{body}
</table></body></html>
"""
