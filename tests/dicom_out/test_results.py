"""DICOM results without a server: the SR's content read back with highdicom and pydicom, the
overlay's pixels and references, the findings and in-domain paths, --model auto's routing, and
`lungcad predict --dicom-out`."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pydicom
import pytest

from lungcad.cli import main
from lungcad.dicom_node import parse_destination
from lungcad.dicom_out import (RESEARCH_NOTICE, ModelChooser, dicom_results, read_sr,
                               write_dicom_results)
from lungcad.errors import LungcadError
from lungcad.findings import Finding


def _references_source(result, source) -> None:
    assert result.StudyInstanceUID == source.StudyInstanceUID          # the source's study
    assert result.SeriesInstanceUID != source.SeriesInstanceUID        # in a new series
    assert result.SOPInstanceUID != source.SOPInstanceUID
    assert "lungcad" in result.SeriesDescription and "research" in result.SeriesDescription
    assert result.PatientID == source.PatientID


def test_sr_and_overlay_of_a_radiograph_match_predict(tmp_path, rg1_path, models):
    import highdicom as hd

    model = models["jsrt-malignant"]
    expected = model.predict(rg1_path)
    written = write_dicom_results(dicom_results(model, rg1_path), tmp_path)
    assert [p.name.split("_")[0] for p in written] == ["sr", "overlay"]
    source = pydicom.dcmread(rg1_path)

    sr = hd.sr.srread(written[0])
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.ContentQualification == "RESEARCH"
    _references_source(sr, source)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    series = evidence.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    groups = sr.content.get_image_measurement_groups()
    assert len(groups) == 1
    measured = {m.name.meaning: m.value for m in groups[0].get_measurements()}
    assert measured["Probability of malignant"] == pytest.approx(
        expected.probabilities["malignant"], abs=1e-4)

    content = read_sr(pydicom.dcmread(written[0]))
    assert content["model"] == "jsrt-malignant" and content["version"] == model.spec.version
    assert content["probabilities"]["malignant"] == pytest.approx(
        expected.probabilities["malignant"], abs=1e-4)
    assert content["threshold"] == pytest.approx(model.spec.threshold)
    assert content["label"] == expected.label
    assert content["notice"] == RESEARCH_NOTICE
    assert content["in_domain"] == getattr(expected, "in_domain", None)  # the model's own check
    assert content["findings"] == []
    assert content["referenced_sop_instance_uids"] == [source.SOPInstanceUID]

    overlay = pydicom.dcmread(written[1])
    assert overlay.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    _references_source(overlay, source)
    assert overlay.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert overlay.BurnedInAnnotation == "YES"
    assert RESEARCH_NOTICE in overlay.ImageComments
    pixels = overlay.pixel_array
    assert pixels.shape == (source.Rows, source.Columns, 3) and pixels.dtype == np.uint8
    colour = np.abs(pixels[..., 0].astype(int) - pixels[..., 2].astype(int))
    assert (colour > 40).mean() > 0.05  # the heatmap is blended in, not a gray copy


def test_findings_and_in_domain_go_into_the_sr_and_onto_the_overlay(ct_path, models):
    model = models["ct-normal-vs-abnormal"]
    marks = [Finding(x=40, y=70, radius_mm=6.0, score=0.9, malignancy=0.7),
             Finding(x=100, y=30, radius_mm=0.0, score=0.3)]
    sr, overlay = dicom_results(model, ct_path, findings=marks, in_domain=False, heatmap=False)
    content = read_sr(sr)
    assert content["in_domain"] is False
    first, second = content["findings"]
    spacing = float(pydicom.dcmread(ct_path).PixelSpacing[1])
    assert first["graphic_type"] == "CIRCLE"
    assert first["points"][0] == [40.5, 70.5]  # pixel centres: DICOM puts 0 at the corner
    assert first["points"][1][0] - first["points"][0][0] == pytest.approx(6.0 / spacing)
    assert first["score"] == pytest.approx(0.9) and first["malignancy"] == pytest.approx(0.7)
    assert first["radius_mm"] == pytest.approx(6.0)
    assert second["graphic_type"] == "POINT" and second["points"] == [[100.5, 30.5]]
    assert "malignancy" not in second
    rgb = overlay.pixel_array
    yellow = (rgb[..., 0] > 200) & (rgb[..., 1] > 200) & (rgb[..., 2] < 80)
    assert yellow[60:81, 30:51].any() and yellow[20:41, 90:111].any()  # rings at the marks
    assert "OUT OF DOMAIN" in overlay.ImageComments


def test_a_radiograph_without_pixel_spacing_gets_points(rg1_path, models):
    sr, = dicom_results(models["jsrt-malignant"], rg1_path, overlay=False,
                        findings=[Finding(x=900, y=700, radius_mm=8.0, score=0.8)])
    assert [f["graphic_type"] for f in read_sr(sr)["findings"]] == ["POINT"]


class _Detector:
    """A stand-in detector: findings (from the detect service, patched below), no class
    probabilities."""

    kind = "detector"
    classes: list = []
    spec = SimpleNamespace(name="toy-detector", version="3", threshold_rule="")


def _toy_detect(model, image, spacing_mm=None, modality=None):
    assert isinstance(model, _Detector)
    assert image.ndim == 2 and modality == "ct" and spacing_mm is not None
    return [Finding(x=10, y=12, radius_mm=4.0, score=0.75)]


def test_a_detector_model_reports_its_own_findings(ct_path, monkeypatch):
    import lungcad.detection.detect

    monkeypatch.setattr(lungcad.detection.detect, "detect", _toy_detect)
    sr, overlay = dicom_results(_Detector(), ct_path)
    content = read_sr(sr)
    assert content["model"] == "toy-detector" and content["version"] == "3"
    assert content["probabilities"] == {} and content["label"] is None
    assert [f["score"] for f in content["findings"]] == [pytest.approx(0.75)]
    assert overlay.Rows == 128


def test_dataset_and_bytes_sources_and_non_dicom_input(tmp_path, ct_path, models):
    model = models["ct-normal-vs-abnormal"]
    from_ds = read_sr(dicom_results(model, pydicom.dcmread(ct_path), overlay=False)[0])
    from_bytes = read_sr(dicom_results(model, ct_path.read_bytes(), overlay=False)[0])
    assert from_ds["probabilities"] == pytest.approx(from_bytes["probabilities"], abs=1e-6)
    bare = pydicom.dcmread(ct_path)
    del bare.file_meta  # a data set built in memory: no file meta header
    from_bare = read_sr(dicom_results(model, bare, overlay=False)[0])
    assert from_bare["probabilities"] == pytest.approx(from_bytes["probabilities"], abs=1e-6)
    png = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(png)
    with pytest.raises(LungcadError, match="need DICOM input"):
        dicom_results(model, png)
    report = pydicom.dcmread(ct_path)
    del report.PixelData
    with pytest.raises(LungcadError, match="no image"):
        dicom_results(model, report)


def test_auto_picks_the_model_by_modality():
    loaded = []

    def loader(name):
        if name == "auto":
            raise LungcadError("no auto model")
        loaded.append(name)
        return SimpleNamespace(name=name)

    chooser = ModelChooser("auto", loader=loader)
    for modality, name in (("CR", "jsrt-malignant"), ("DX", "jsrt-malignant"),
                           ("CT", "ct-normal-vs-abnormal"), ("CR", "jsrt-malignant")):
        assert chooser.model_for(pydicom.Dataset({0x00080060: pydicom.DataElement(
            0x00080060, "CS", modality)})).name == name
    assert loaded == ["jsrt-malignant", "ct-normal-vs-abnormal"]  # each loaded once
    with pytest.raises(LungcadError, match="no model for DICOM Modality 'MR'"):
        chooser.model_for(pydicom.Dataset({0x00080060: pydicom.DataElement(0x00080060, "CS",
                                                                          "MR")}))
    named = ModelChooser("jsrt-malignant", loader=lambda n: SimpleNamespace(name=n))
    assert named.model_names_for(None) == ["jsrt-malignant"]
    assert named.model_for(None).name == "jsrt-malignant"


def test_auto_runs_every_bundled_model_of_the_modality_where_load_model_auto_exists():
    from lungcad.domain.auto import models_for

    auto = SimpleNamespace(model=lambda name: SimpleNamespace(name=name))
    chooser = ModelChooser("auto", loader=lambda name: auto if name == "auto" else None)
    ct = pydicom.Dataset()
    ct.Modality = "CT"
    names = [m.name for m in chooser.models_for(ct)]
    assert names == list(models_for("ct")) and "ct-normal-vs-abnormal" in names


@pytest.mark.parametrize("text, host, port, aet", [
    ("127.0.0.1:4242:ORTHANC", "127.0.0.1", 4242, "ORTHANC"),
    ("pacs.example.org:104:PACS", "pacs.example.org", 104, "PACS"),
    ("[::1]:11112:X", "::1", 11112, "X")])
def test_send_to_is_host_port_aet(text, host, port, aet):
    d = parse_destination(text)
    assert (d.host, d.port, d.aet) == (host, port, aet)


@pytest.mark.parametrize("text", ["localhost:4242", "host:port:AET", "h:0:A", ":4242:A",
                                  "h:4242:" + "A" * 17])
def test_bad_send_to_is_refused(text):
    with pytest.raises(LungcadError, match="--send-to"):
        parse_destination(text)


def test_predict_dicom_out_writes_results_and_names_non_dicom_input(tmp_path, ct_path, capsys):
    from PIL import Image

    from lungcad.io import load_image

    png = tmp_path / "slice.png"  # the CT slice as a PNG: a CT model predicts it, but as a PNG
    Image.fromarray(np.round(load_image(ct_path).array * 255).astype(np.uint8)).save(png)
    out = tmp_path / "out"
    status = main(["predict", "ct-normal-vs-abnormal", str(ct_path), str(png), "--out",
                   str(tmp_path / "p.csv"), "--dicom-out", str(out)])
    captured = capsys.readouterr()
    assert status == 1  # one input got no DICOM results
    assert f"{png}: DICOM results (--dicom-out, listen, pacs) need DICOM input" in captured.err
    assert "1 image(s) got no DICOM results" in captured.err
    assert "Traceback" not in captured.err
    files = sorted(p.name.split("_")[0] for p in out.iterdir())
    assert files == ["overlay", "sr"]
    sr = read_sr(next(out.glob("sr_*.dcm")))
    import pandas as pd

    table = pd.read_csv(tmp_path / "p.csv")
    row = table[table["path"].str.endswith("CT_small.dcm")].iloc[0]
    assert sr["probabilities"]["abnormal"] == pytest.approx(row["prob_abnormal"], abs=1e-4)


def test_result_uids_derive_from_source_and_model_and_descriptions_name_the_model(ct_path,
                                                                                  models):
    model = models["ct-normal-vs-abnormal"]
    first = dicom_results(model, ct_path, heatmap=False)
    again = dicom_results(model, ct_path, heatmap=False)
    assert [d.SOPInstanceUID for d in first] == [d.SOPInstanceUID for d in again]  # a retry
    other = pydicom.dcmread(ct_path)
    other.SOPInstanceUID = "1.2.3.4.5.6.7"
    moved = dicom_results(model, other, heatmap=False)
    assert not {d.SOPInstanceUID for d in moved} & {d.SOPInstanceUID for d in first}
    for result in first:
        assert f"ct-normal-vs-abnormal v{model.spec.version}" in result.SeriesDescription
        assert len(result.SeriesDescription) <= 64
