"""Fixtures for the DICOM tests: the two pydicom sample files, the bundled models loaded once,
and a real Orthanc server (Debian's orthanc + orthanc-dicomweb) on free localhost ports with a
temporary storage folder, started once per session and stopped afterwards."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
ORTHANC_AET = "ORTHANC"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_answers_echo(port: int) -> bool:
    """Whether a lungcad node listens on ``port``: an association and a C-ECHO answered."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="LUNGCAD")
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return getattr(status, "Status", None) == 0


@pytest.fixture(scope="session")
def rg1_path() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("RG1_UNCI.dcm"))


@pytest.fixture(scope="session")
def ct_path() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm"))


@pytest.fixture(scope="session")
def models():
    """name -> loaded model, for the two models --model auto picks."""
    import lungcad

    return {name: lungcad.load_model(name) for name in ("jsrt-malignant",
                                                         "ct-normal-vs-abnormal")}


def _plugin() -> Path | None:
    for folder in PLUGIN_DIRS:
        for path in sorted(folder.glob("libOrthancDicomWeb.so*")) if folder.is_dir() else []:
            return path
    return None


class Orthanc:
    def __init__(self, url: str, dicom_port: int, process: subprocess.Popen, log: Path):
        self.url, self.dicom_port, self.process, self.log = url, dicom_port, process, log
        self.aet, self.dicomweb = ORTHANC_AET, url + "/dicom-web"

    def get(self, path: str):
        import requests

        response = requests.get(self.url + path, timeout=30)
        response.raise_for_status()
        return response

    def post(self, path: str, **kwargs):
        import requests

        response = requests.post(self.url + path, timeout=120, **kwargs)
        response.raise_for_status()
        return response

    def upload(self, path: Path) -> dict:
        return self.post("/instances", data=Path(path).read_bytes()).json()

    def add_modality(self, name: str, aet: str, port: int) -> None:
        import requests

        requests.put(f"{self.url}/modalities/{name}", timeout=30,
                     json={"AET": aet, "Host": "127.0.0.1", "Port": port}).raise_for_status()

    def study_instances(self, study_uid: str) -> list:
        """pydicom datasets of every instance in the study (Orthanc's REST API, not DICOMweb)."""
        import io

        import pydicom

        found = self.post("/tools/find", json={"Level": "Instance", "Expand": False,
                                                "Query": {"StudyInstanceUID": study_uid}}).json()
        return [pydicom.dcmread(io.BytesIO(self.get(f"/instances/{i}/file").content))
                for i in found]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_orthanc(folder: Path, dicom_port: int | None = None) -> Orthanc:
    """A real Orthanc with its storage in ``folder``, on free localhost ports (the DICOM port
    ``dicom_port`` where given); skips where it is not installed. Stop it with ``stop``."""
    binary = shutil.which("Orthanc")
    plugin = _plugin()
    if binary is None or plugin is None:
        pytest.skip("Debian's orthanc and orthanc-dicomweb packages are not installed "
                    "(apt-get install orthanc orthanc-dicomweb; .ci/run installs them)")
    http_port, dicom_port = free_port(), dicom_port or free_port()
    config = {
        "Name": "lungcad-test", "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"), "DicomAet": ORTHANC_AET, "DicomPort": dicom_port,
        "HttpPort": http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomModalities": {}, "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomScuTimeout": 120, "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False,
        "StorageCompression": False, "SaveJobs": False, "HttpTimeout": 120,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    log = folder / "orthanc.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen([binary, str(folder / "config.json")], stdout=sink,
                                   stderr=subprocess.STDOUT, cwd=folder)
    server = Orthanc(f"http://127.0.0.1:{http_port}", dicom_port, process, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            server.get("/system")
            break
        except Exception:  # noqa: BLE001  not up yet
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"Orthanc did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    return server


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()
