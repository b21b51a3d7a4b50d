"""``lungcad pacs``: fetch a study over WADO-RS, run the model(s) on each image, and store the SR
and overlay back with STOW-RS (dicomweb-client)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from lungcad.dicom_out import ModelChooser, dicom_results
from lungcad.dicom_out.common import MANUFACTURER
from lungcad.errors import LungcadError

log = logging.getLogger("lungcad.pacs")


@dataclass
class StudyReport:
    instances: int = 0
    processed: int = 0
    stored: list = field(default_factory=list)     # SOP Instance UIDs stored back
    skipped: list = field(default_factory=list)    # (SOP Instance UID, why)
    failed: list = field(default_factory=list)     # (SOP Instance UID, message)

    def line(self) -> str:
        return (f"{self.instances} instance(s) in the study: {self.processed} processed, "
                f"{len(self.stored)} result(s) stored back, {len(self.skipped)} skipped, "
                f"{len(self.failed)} failed")


def _http_error(exc: Exception, url: str, what: str) -> LungcadError:
    response = getattr(exc, "response", None)
    code = f"HTTP {response.status_code}" if response is not None else type(exc).__name__
    return LungcadError(f"{what} at {url} failed ({code}: {str(exc).splitlines()[0][:200]})")


def _skip_reason(ds) -> str | None:
    if "PixelData" not in ds:
        return f"holds no image (modality {ds.get('Modality', '?')})"
    if str(ds.get("Manufacturer", "")) == MANUFACTURER:
        return "is a lungcad result"
    return None


def process_study(url: str, study_uid: str, chooser: ModelChooser, *, heatmap: bool = True,
                  client=None) -> StudyReport:
    """Run the study ``study_uid`` of the DICOMweb service at ``url`` (e.g. Orthanc's
    ``http://host:8042/dicom-web``) and STOW the results back; a bad image is reported in the
    result and the others go on."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    if client is None:
        client = DICOMwebClient(url=url)
    try:
        instances = client.retrieve_study(study_uid)
    except requests.exceptions.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            raise LungcadError(f"study {study_uid} not found at {url}") from None
        raise _http_error(exc, url, "WADO-RS retrieve") from None
    except requests.exceptions.RequestException as exc:
        raise _http_error(exc, url, "WADO-RS retrieve") from None
    report = StudyReport(instances=len(instances))
    if not instances:
        raise LungcadError(f"study {study_uid} at {url} holds no instances")
    for ds in instances:
        uid = str(ds.get("SOPInstanceUID", "?"))
        why = _skip_reason(ds)
        if why:
            report.skipped.append((uid, why))
            continue
        try:
            with chooser.lock:
                results = [r for model in chooser.models_for(ds)
                           for r in dicom_results(model, ds, heatmap=heatmap,
                                                  label=f"instance {uid}")]
        except LungcadError as exc:
            report.failed.append((uid, str(exc)))
            log.warning("failed: %s", exc)
            continue
        report.processed += 1
        try:
            client.store_instances(results, study_instance_uid=study_uid)
        except requests.exceptions.RequestException as exc:
            report.failed.append((uid, str(_http_error(exc, url, "STOW-RS store"))))
            continue
        report.stored += [str(r.SOPInstanceUID) for r in results]
    return report
