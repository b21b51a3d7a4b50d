"""`lungcad listen` loses nothing it answered Success to, against a real Orthanc: killed with
SIGKILL right after Success and restarted, the results arrive exactly once (and once more after
a resumed run that re-sends them); a destination down for a while, then up, gets them exactly
once; one down past the retry limit leaves the image in failed/ with its reason, logged and
reported on stop; a full spool answers 0xA700. Retry timings are shortened so each runs in
seconds."""

from __future__ import annotations

import copy
import signal
import subprocess
import sys
import time

import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import free_port, node_answers_echo, start_orthanc
from lungcad.dicom_node import DicomNode, RetryPolicy, parse_destination
from lungcad.dicom_out import ModelChooser, read_sr

MODEL = "ct-normal-vs-abnormal"


def _copy(ct_path, number: int = 1, study: str | None = None):
    """CT_small.dcm with new UIDs (its own study unless ``study`` is given)."""
    ds = copy.deepcopy(pydicom.dcmread(ct_path))
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber = number
    return ds


def _send(port: int, datasets: list) -> list[int]:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="LUNGCAD")
    assert assoc.is_established
    try:
        return [getattr(assoc.send_c_store(ds), "Status", None) for ds in datasets]
    finally:
        assoc.release()


def _lungcad_results(orthanc, study_uid: str) -> dict:
    found: dict = {"SR": [], "OT": []}
    for ds in orthanc.study_instances(study_uid):
        if ds.get("Manufacturer") == "lungcad":
            found[ds.Modality].append(ds)
    return found


def _listen(port: int, send_to: str, spool, log, *extra: str) -> subprocess.Popen:
    sink = open(log, "a")
    node = subprocess.Popen([sys.executable, "-m", "lungcad", "listen", "--port", str(port),
                             "--model", MODEL, "--no-heatmap", "--send-to", send_to,
                             "--spool", str(spool), *extra],
                            stdout=sink, stderr=subprocess.STDOUT, text=True)
    sink.close()
    deadline = time.monotonic() + 90
    while not node_answers_echo(port):
        assert node.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)
    return node


def _wait(condition, node, log, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert (node is None or node.poll() is None) and time.monotonic() < deadline, \
            log.read_text() if log else "gave up waiting"
        time.sleep(0.3)


def _stop(node: subprocess.Popen) -> None:
    node.send_signal(signal.SIGTERM)
    node.wait(timeout=60)


def _held(spool) -> list:
    return [p for folder in ("incoming", "outbox") for p in (spool / folder).iterdir()
            if not p.name.startswith(".")]


def _chooser(models):
    return ModelChooser(MODEL, loader=lambda name: models[name])


def test_killed_right_after_success_then_restarted_stores_results_exactly_once(
        orthanc, ct_path, tmp_path):
    source = _copy(ct_path)
    spool, log, port = tmp_path / "spool", tmp_path / "listen.log", free_port()
    send_to = f"127.0.0.1:{orthanc.dicom_port}:{orthanc.aet}"
    node = _listen(port, send_to, spool, log)
    try:
        assert _send(port, [source]) == [0x0000]
    finally:
        node.kill()  # SIGKILL, right after Success: no chance to finish anything
        node.wait()
    spooled = spool / "incoming" / f"{source.SOPInstanceUID}.dcm"
    assert spooled.exists(), log.read_text()  # on disk before Success was sent
    assert pydicom.dcmread(spooled).SOPInstanceUID == source.SOPInstanceUID
    saved = spooled.read_bytes()

    node = _listen(port, send_to, spool, log)  # resumes the spool
    try:
        _wait(lambda: not _held(spool), node, log)
    finally:
        _stop(node)
    assert "resuming 1 instance(s)" in log.read_text()
    first = _lungcad_results(orthanc, source.StudyInstanceUID)
    assert [len(first["SR"]), len(first["OT"])] == [1, 1], log.read_text()
    assert read_sr(first["SR"][0])["referenced_sop_instance_uids"] == [source.SOPInstanceUID]
    assert MODEL in first["SR"][0].SeriesDescription

    # A crash after the destination took the results but before the spool let go of the image:
    # the resumed run makes and sends them again, and the PACS still holds one copy.
    spooled.write_bytes(saved)
    node = _listen(port, send_to, spool, log)
    try:
        _wait(lambda: not _held(spool), node, log)
    finally:
        _stop(node)
    again = _lungcad_results(orthanc, source.StudyInstanceUID)
    assert [len(again["SR"]), len(again["OT"])] == [1, 1]
    assert {d.SOPInstanceUID for d in again["SR"] + again["OT"]} == \
        {d.SOPInstanceUID for d in first["SR"] + first["OT"]}
    assert "Traceback" not in log.read_text()


def test_destination_down_then_up_gets_the_results_exactly_once(ct_path, models, tmp_path):
    dicom_port = free_port()  # nothing listens there yet: the destination is down
    node = DicomNode(_chooser(models), parse_destination(f"127.0.0.1:{dicom_port}:ORTHANC"),
                     spool=tmp_path / "spool", port=free_port(),
                     retry=RetryPolicy(attempts=100, first_delay_s=0.2, max_delay_s=0.5))
    source = _copy(ct_path)
    node.start()
    late = None
    try:
        assert _send(node.port, [source]) == [0x0000]
        _wait(lambda: node.stats.retries >= 2, None, None)
        assert node.stats.stored == 0
        (tmp_path / "late-orthanc").mkdir()
        late = start_orthanc(tmp_path / "late-orthanc", dicom_port=dicom_port)
        assert node.wait_idle(timeout=120)
    finally:
        node.shutdown()
    try:
        results = _lungcad_results(late, source.StudyInstanceUID)
    finally:
        late.stop()
    assert [len(results["SR"]), len(results["OT"])] == [1, 1]
    assert (node.stats.stored, node.stats.failed) == (1, 0)
    assert not list((tmp_path / "spool" / "failed").iterdir())
    assert not _held(tmp_path / "spool")


def test_destination_down_past_the_retry_limit_moves_the_image_to_failed(orthanc, ct_path,
                                                                         tmp_path):
    source = _copy(ct_path)
    path = tmp_path / "source.dcm"
    source.save_as(path, enforce_file_format=True)
    orthanc_id = orthanc.upload(path)["ID"]
    spool, log, port = tmp_path / "spool", tmp_path / "listen.log", free_port()
    node = _listen(port, f"127.0.0.1:{free_port()}:NOBODY", spool, log,
                   "--retry-attempts", "3", "--retry-first", "0.1", "--retry-max", "0.2",
                   "--store-timeout", "5")
    try:
        orthanc.add_modality("lungcad-failing", "LUNGCAD", port)
        orthanc.post("/modalities/lungcad-failing/store",
                     json={"Resources": [orthanc_id], "Synchronous": True})
        failed = spool / "failed" / source.SOPInstanceUID
        _wait(lambda: (failed / "reason.txt").exists(), node, log)
    finally:
        _stop(node)
    reason = (failed / "reason.txt").read_text()
    assert "in 3 attempt(s)" in reason and "cannot open an association" in reason
    assert pydicom.dcmread(failed / "source.dcm").SOPInstanceUID == source.SOPInstanceUID
    assert sorted(p.name for p in failed.glob("*.dcm")) == ["00.dcm", "01.dcm", "source.dcm"]
    assert not _held(spool)
    text = log.read_text()
    assert f"instance {source.SOPInstanceUID} moved to" in text               # the log
    assert "1 stored to the destination" not in text
    assert f"failed: instance {source.SOPInstanceUID}" in text                # the stop report
    assert "0 stored to the destination, 1 failed" in text


def test_a_full_spool_answers_out_of_resources(ct_path, models, tmp_path):
    node = DicomNode(_chooser(models), parse_destination(f"127.0.0.1:{free_port()}:NOBODY"),
                     spool=tmp_path / "spool", port=free_port(), max_instances=1,
                     retry=RetryPolicy(attempts=5, first_delay_s=300, max_delay_s=300))
    study = generate_uid()
    first, second = _copy(ct_path, 1, study), _copy(ct_path, 2, study)
    node.start()
    try:
        statuses = _send(node.port, [first, second])
    finally:
        node.shutdown()
    assert statuses == [0x0000, 0xA700]
    assert (node.stats.accepted, node.stats.refused) == (1, 1)
    held = {p.stem for p in (tmp_path / "spool" / "incoming").glob("*.dcm")}
    assert held == {first.SOPInstanceUID}  # kept for the next start; the second never held


def test_an_image_that_cannot_be_written_to_the_spool_is_not_answered_success(ct_path, models,
                                                                            tmp_path,
                                                                            monkeypatch):
    from lungcad.dicom_node.spool import Spool

    def broken_disk(self, key, data):
        raise OSError(28, "No space left on device")

    node = DicomNode(_chooser(models), parse_destination(f"127.0.0.1:{free_port()}:NOBODY"),
                     spool=tmp_path / "spool", port=free_port())
    monkeypatch.setattr(Spool, "accept", broken_disk)
    node.start()
    try:
        statuses = _send(node.port, [_copy(ct_path)])
    finally:
        node.shutdown()
    assert statuses == [0xA700]
    assert (node.stats.accepted, node.stats.refused) == (0, 1)
