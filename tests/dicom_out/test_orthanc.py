"""End to end against a real PACS server (Orthanc, started by the ``orthanc`` fixture): images
go from Orthanc to `lungcad listen` over C-STORE and the results come back; a corrupt instance
in an association is refused and the rest processed; `lungcad pacs` fetches a study over
WADO-RS and STOWs the results back. The results are read back from Orthanc and checked."""

from __future__ import annotations

import copy
import signal
import subprocess
import sys
import time

import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import free_port, node_answers_echo
from lungcad.cli import main
from lungcad.dicom_node import DicomNode, parse_destination
from lungcad.dicom_out import RESEARCH_NOTICE, ModelChooser, read_sr
from lungcad.errors import LungcadError


def _results(orthanc, study_uid: str, known: set) -> dict:
    """{"SR": [...], "OT": [...]}: lungcad's result instances in the study not in ``known``."""
    found: dict = {"SR": [], "OT": []}
    for ds in orthanc.study_instances(study_uid):
        if ds.get("Manufacturer") == "lungcad" and ds.SOPInstanceUID not in known:
            found[ds.Modality].append(ds)
    return found


def _uids(orthanc, study_uid: str) -> set:
    return {ds.SOPInstanceUID for ds in orthanc.study_instances(study_uid)}


def _has_pair(results: dict, name: str) -> bool:
    """Whether ``results`` hold both the SR and the overlay of the model called ``name``."""
    return (any(read_sr(d)["model"] == name for d in results["SR"])
            and any(d.ManufacturerModelName.startswith(name + " ") for d in results["OT"]))


def _check_pair(results: dict, source, model, source_path) -> None:
    """``model``'s SR and overlay about ``source``, in its study, matching ``model.predict``."""
    name = model.spec.name
    (sr,) = [d for d in results["SR"] if read_sr(d)["model"] == name]
    (overlay,) = [d for d in results["OT"] if d.ManufacturerModelName.startswith(name + " ")]
    content = read_sr(sr)
    expected = model.predict(source_path)
    positive = model.classes[-1]
    assert content["model"] == model.spec.name
    assert content["probabilities"][positive] == pytest.approx(expected.probabilities[positive],
                                                               abs=1e-4)
    assert content["label"] == expected.label and content["notice"] == RESEARCH_NOTICE
    assert content["referenced_sop_instance_uids"] == [source.SOPInstanceUID]
    for result in (sr, overlay):
        assert result.StudyInstanceUID == source.StudyInstanceUID
        assert result.SeriesInstanceUID != source.SeriesInstanceUID
    assert overlay.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert overlay.pixel_array.shape == (source.Rows, source.Columns, 3)
    assert overlay.pixel_array.std() > 10


def test_listen_stores_results_back_to_orthanc_and_stops_on_sigterm(orthanc, rg1_path, ct_path,
                                                                    models, tmp_path):
    sources = {p: pydicom.dcmread(p) for p in (rg1_path, ct_path)}
    known = {p: _uids(orthanc, ds.StudyInstanceUID) for p, ds in sources.items()}
    ids = [orthanc.upload(p)["ID"] for p in sources]
    port = free_port()
    log = tmp_path / "listen.log"
    with open(log, "w") as sink:
        node = subprocess.Popen(
            [sys.executable, "-m", "lungcad", "listen", "--port", str(port), "--model", "auto",
             "--send-to", f"127.0.0.1:{orthanc.dicom_port}:{orthanc.aet}",
             "--spool", str(tmp_path / "spool"),
             "--no-heatmap"],  # heatmaps: test_results.py; here the network and the routing
            stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not node_answers_echo(port):
            assert node.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        orthanc.add_modality("lungcad", "LUNGCAD", port)
        job = orthanc.post("/modalities/lungcad/store",
                           json={"Resources": ids, "Synchronous": True}).json()
        assert job.get("InstancesCount", len(ids)) == 2, job
        expected = {rg1_path: "jsrt-malignant", ct_path: "ct-normal-vs-abnormal"}
        deadline = time.monotonic() + 180  # every CT model loads on the first CT image
        while True:
            found = {p: _results(orthanc, ds.StudyInstanceUID, known[p])
                     for p, ds in sources.items()}
            if all(_has_pair(found[p], models[name].spec.name) for p, name in expected.items()):
                break  # auto runs every model of a modality; wait for the two checked here
            assert node.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        _check_pair(found[rg1_path], sources[rg1_path], models["jsrt-malignant"], rg1_path)
        _check_pair(found[ct_path], sources[ct_path], models["ct-normal-vs-abnormal"], ct_path)
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
            raise
    text = log.read_text()
    assert node.returncode == 0, text
    assert "stopped: 2 received, 2 processed, 2 stored to the destination, 0 failed" in text
    assert "Traceback" not in text


def _ct_copy(template, study_uid: str, series_uid: str, number: int):
    ds = copy.deepcopy(template)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber = number
    return ds


def test_a_corrupt_instance_is_refused_and_the_rest_of_the_association_processed(
        orthanc, ct_path, models, tmp_path):
    from pynetdicom import AE
    from pynetdicom.sop_class import Comprehensive3DSRStorage, CTImageStorage

    template = pydicom.dcmread(ct_path)
    study, series = generate_uid(), generate_uid()
    good1, bad, good2 = (_ct_copy(template, study, series, n) for n in (1, 2, 3))
    bad.PixelData = bad.PixelData[:1000]  # truncated: 128 x 128 x 2 bytes expected

    def loader(name):
        if name == "auto":
            raise LungcadError("no auto model")
        return models[name]

    node = DicomNode(ModelChooser("auto", loader=loader),
                     parse_destination(f"127.0.0.1:{orthanc.dicom_port}:{orthanc.aet}"),
                     spool=tmp_path / "spool", port=free_port())
    node.start()
    try:
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(CTImageStorage)
        ae.add_requested_context(Comprehensive3DSRStorage)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="LUNGCAD")
        assert assoc.is_established
        statuses = [assoc.send_c_store(ds) for ds in (good1, bad, good2)]
        assoc.release()
        node.wait_idle()
        results = _results(orthanc, study, set())
        # An SR sent to the node holds no image: accepted and ignored, not answered with an SR.
        assoc = ae.associate("127.0.0.1", node.port, ae_title="LUNGCAD")
        report = assoc.send_c_store(results["SR"][0])
        assoc.release()
        node.wait_idle()
    finally:
        node.shutdown()
    assert [s.Status for s in statuses] == [0x0000, 0xC000, 0x0000]
    assert "truncated" in statuses[1].ErrorComment or "pixel" in statuses[1].ErrorComment.lower()
    assert report.Status == 0x0000
    stats = node.stats
    assert (stats.received, stats.processed, stats.stored, stats.failed, stats.refused,
            stats.ignored) == (4, 2, 2, 0, 1, 1)
    assert not list((tmp_path / "spool" / "incoming").iterdir())  # every image delivered
    referenced = sorted(read_sr(sr)["referenced_sop_instance_uids"][0] for sr in results["SR"])
    assert referenced == sorted([good1.SOPInstanceUID, good2.SOPInstanceUID])
    assert sorted(o.SourceImageSequence[0].ReferencedSOPInstanceUID for o in results["OT"]) \
        == referenced
    assert len(_results(orthanc, study, set())["SR"]) == 2  # no SR about the SR


def test_pacs_fetches_over_wado_rs_and_stows_results_back(orthanc, ct_path, models, capsys,
                                                          tmp_path):
    # A study of its own: results have UIDs derived from the source image and the model, so
    # another test's results about CT_small.dcm would be these very instances.
    source = _ct_copy(pydicom.dcmread(ct_path), generate_uid(), generate_uid(), 1)
    ct_path = tmp_path / "ct.dcm"
    source.save_as(ct_path, enforce_file_format=True)
    orthanc.upload(ct_path)
    known = _uids(orthanc, source.StudyInstanceUID)
    status = main(["pacs", "--url", orthanc.dicomweb, "--study", source.StudyInstanceUID,
                   "--model", "ct-normal-vs-abnormal"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "1 processed, 2 result(s) stored back" in captured.out
    _check_pair(_results(orthanc, source.StudyInstanceUID, known), source,
                models["ct-normal-vs-abnormal"], ct_path)

    assert main(["pacs", "--url", orthanc.dicomweb, "--study", "1.2.3.4.5"]) == 2
    assert "study 1.2.3.4.5 not found" in capsys.readouterr().err
