"""The models shipped inside the package: present, small, loadable by name, honest cards whose
figures match docs/results.md, and the offline demo on the pydicom DICOM samples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import lungcad
from lungcad.cli import main
from lungcad.disclaimer import DISCLAIMER
from lungcad import load_model
from lungcad.model_dir import BUNDLED_DIR, bundled_models

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {"jsrt-malignant": "chest radiograph", "ct-normal-vs-abnormal": "ct",
           "iqothnccd-3class": "ct", "chest-ct-4class": "ct", "jsrt-lungs": "chest radiograph",
           "jsrt-nodules": "chest radiograph"}
CLASSIFIERS = sorted(n for n in SHIPPED if n != "jsrt-lungs")
HEADLINE = {"jsrt-lungs": ("dice", "iou", "hd95_mm")}  # else accuracy and (macro) ROC AUC
MAX_TOTAL_BYTES = 25 * 1024 * 1024


def test_the_six_models_are_bundled():
    assert sorted(bundled_models()) == sorted(SHIPPED)


def test_bundled_weights_fit_in_the_repository():
    total = sum(f.stat().st_size for f in BUNDLED_DIR.rglob("*") if f.is_file())
    assert total <= MAX_TOTAL_BYTES, f"bundled models take {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_bundled_model_loads_by_name_and_predicts(name):
    from pydicom.data import get_testdata_file

    model = lungcad.load_model(name)
    assert model.spec.name == name and model.spec.modality == SHIPPED[name]
    sample = "RG1_UNCI.dcm" if SHIPPED[name] != "ct" else "CT_small.dcm"
    prediction = model.predict(get_testdata_file(sample, download=False))
    assert prediction.label in model.classes
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    heat = model.explain(get_testdata_file(sample, download=False))
    assert heat.ndim == 2 and 0.0 <= heat.min() and heat.max() <= 1.0


def test_bundled_lung_model_segments_a_radiograph_and_warns_on_ct():
    from pydicom.data import get_testdata_file

    model = lungcad.load_model("jsrt-lungs")
    assert model.kind == "segmenter" and model.spec.modality == "chest radiograph"
    radiograph = model.segment(get_testdata_file("RG1_UNCI.dcm", download=False))
    assert radiograph.mask.shape == (1955, 1841) and radiograph.plausible
    assert 0.15 < radiograph.measures["lung_fraction"] < 0.6
    ct = model.segment(get_testdata_file("CT_small.dcm", download=False))
    assert not ct.plausible and "CT image" in ct.warnings[0]


def _card_rows(card: str) -> dict[str, str]:
    return dict(re.findall(r"^\| (\w+) \| ([0-9.]+ \[[0-9.]+, [0-9.]+\]) \|$", card, re.M))


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_model_card_is_honest_and_matches_model_json(name):
    directory = BUNDLED_DIR / name
    card = (directory / "MODEL_CARD.md").read_text()
    spec = json.loads((directory / "model.json").read_text())
    assert "research software, not a medical device" in card.lower()
    for heading in ("Intended use", "Training data", "Cross-validated performance",
                    "Known limits", "Reproduce"):
        assert f"## {heading}" in card
    rows = _card_rows(card)
    pooled = spec["metrics"]["cross_validation"]["pooled_out_of_fold"]
    assert rows and set(rows) == set(pooled)
    for metric, entry in pooled.items():
        assert rows[metric] == f"{entry['value']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"
    if spec["threshold"] is not None and name in CLASSIFIERS:
        assert f"{spec['threshold']:.4f}" in card and "out-of-fold" in spec["threshold_rule"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_model_card_figures_match_docs_results(name):
    """docs/results.md quotes each shipped model's headline figures exactly as its card."""
    results = (ROOT / "docs" / "results.md").read_text()
    pooled = json.loads((BUNDLED_DIR / name / "model.json").read_text())[
        "metrics"]["cross_validation"]["pooled_out_of_fold"]
    shipped_rows = [line for line in results.splitlines() if f"`{name}`" in line and "|" in line]
    assert shipped_rows, f"docs/results.md has no table row naming the bundled model `{name}`"
    for metric in HEADLINE.get(name, ("accuracy",
                                      "roc_auc" if "roc_auc" in pooled else "macro_roc_auc")):
        entry = pooled[metric]
        figure = f"{entry['value']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"
        assert any(figure in row for row in shipped_rows), (name, metric, figure)


def test_predict_by_name_prints_a_verdict(capsys):
    from pydicom.data import get_testdata_file

    for name, sample in (("jsrt-malignant", "RG1_UNCI.dcm"), ("chest-ct-4class", "CT_small.dcm")):
        path = get_testdata_file(sample, download=False)
        assert main(["predict", name, path]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"{sample}: {load_model(name).predict(path).label} (p=")


def test_demo_writes_a_page_with_every_verdict_and_heatmap(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    page = tmp_path / "demo" / "demo.html"
    assert f"demo report: {page.resolve()}" in printed
    text = page.read_text()
    assert DISCLAIMER in text and "research software, not a medical device" in text
    from lungcad.demo import REPLACED_BY_DETECTOR

    shown = [name for name in SHIPPED if name not in REPLACED_BY_DETECTOR]
    for name in shown:
        assert f"<code>{load_model(name).spec.name}</code>" in text
    # One entry per classifier (its modality's sample) and two for the lung model (both
    # samples), each with the image and its heatmap or lung outline.
    entries = len([n for n in CLASSIFIERS if n in shown]) + 2
    assert text.count('src="data:image/png;base64,') == 2 * entries
    assert len(list((tmp_path / "demo" / "figures").glob("*_overlay.png"))) == entries
    lungs = [line for line in printed.splitlines() if line.startswith(("RG1_UNCI.dcm  jsrt-lungs",
                                                                       "CT_small.dcm  jsrt-lungs"))]
    assert len(lungs) == 2
    radiograph, ct = sorted(lungs, reverse=True)
    assert "lungs outlined: right lung (image left): " in radiograph and "left lung" in radiograph
    assert "no plausible pair of lungs" in ct and "no plausible pair of lungs" in text
    assert text.count("right lung (image left)") == 2 and 'alt="Lung outline of' in text


def test_demo_without_the_samples_says_what_to_install(tmp_path, monkeypatch, capsys):
    import pydicom.data

    monkeypatch.setattr(pydicom.data, "get_testdata_file", lambda *a, **k: None)
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "pip install pydicom" in err and "Traceback" not in err


def test_serve_without_a_model_serves_the_bundled_ones(monkeypatch, capsys):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(app))
    assert main(["serve", "--threads", "1"]) == 0
    assert sorted(calls[0].state.served) == sorted(SHIPPED)


def test_demo_into_an_unusable_folder_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    assert main(["demo", "--out", str(tmp_path / "a_file")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lungcad demo: error: cannot create the demo folder")
    assert len(err.splitlines()) == 1
