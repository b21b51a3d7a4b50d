"""The Storage SCP. Each received instance is checked while its C-STORE is open (a readable
DICOM image, with a model for its modality), made durable in the spool (written, fsynced and
renamed: :mod:`lungcad.dicom_node.spool`), and only then answered, so that an instance answered
Success survives a crash of the node, and a sender's timeout (Orthanc's is 10 s) never depends
on the model's speed:

- 0x0000 Success: in the spool; its SR and overlay follow (or the instance holds no image, e.g.
  an SR, and is ignored, with a log line);
- 0xC000 Failure, "Cannot understand" (PS3.4 B.2.3): not a readable DICOM image, or no model
  for it; the Error Comment says why;
- 0xA700 Failure, "Out of Resources": the spool holds its limit of instances or bytes, or the
  instance could not be written to disk (send again later).

A worker thread (:mod:`lungcad.dicom_node.delivery`) runs the spooled instances, one at a time,
and C-STOREs each one's SR and overlay to the destination, retrying with backoff; an instance
leaves the spool when the destination has taken all its results, or goes to ``failed/``. A bad
image never stops the association or the node. :meth:`DicomNode.start` resumes what the spool
holds; :meth:`DicomNode.shutdown` stops listening, lets the running associations finish, and
leaves what is not yet delivered in the spool for the next start.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from lungcad.dicom_node.delivery import Deliverer, RetryPolicy
from lungcad.dicom_node.destination import Destination
from lungcad.dicom_node.spool import MB, Spool, SpoolFull, spool_key
from lungcad.dicom_out import ModelChooser
from lungcad.errors import LungcadError

log = logging.getLogger("lungcad.listen")

CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700


@dataclass
class NodeStats:
    received: int = 0
    accepted: int = 0     # made durable in the spool, answered Success
    refused: int = 0      # answered 0xC000 or 0xA700
    processed: int = 0    # model run, results in the outbox
    stored: int = 0       # instances whose results the destination took
    failed: int = 0       # moved to failed/ (the model failed, or the attempts ran out)
    retries: int = 0      # attempts to store that failed and were scheduled again
    ignored: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for key, n in counts.items():
                setattr(self, key, getattr(self, key) + n)

    def line(self) -> str:
        return (f"{self.received} received, {self.processed} processed, {self.stored} stored to "
                f"the destination, {self.failed} failed, {self.refused} refused, {self.ignored} "
                f"ignored (not images), {self.retries} retried")


def _failure(code: int, message: str):
    from pydicom import Dataset

    status = Dataset()
    status.Status = code
    status.ErrorComment = message[:64]
    return status


class DicomNode:
    """``lungcad listen``: a Storage SCP with AE title ``aet`` on ``host:port``."""

    def __init__(self, chooser: ModelChooser, destination: Destination, *, spool: str | Path,
                 aet: str = "LUNGCAD", host: str = "127.0.0.1", port: int = 11112,
                 heatmap: bool = True, retry: RetryPolicy = RetryPolicy(),
                 max_instances: int = 500, max_bytes: int = 4096 * MB,
                 store_timeout: float = 30.0, durable: bool = True):
        if not 0 < len(aet) <= 16:
            raise LungcadError(f"--aet {aet!r}: an AE title has 1 to 16 characters")
        self.chooser, self.destination = chooser, destination
        self.aet, self.host, self.port, self.heatmap = aet, host, int(port), heatmap
        self.spool_dir, self.retry, self.store_timeout = Path(spool), retry, store_timeout
        self.limits, self.durable = (max_instances, max_bytes), durable
        self.stats = NodeStats()
        self.spool: Spool | None = None
        self.deliverer: Deliverer | None = None
        self._server = None

    # -- receiving -----------------------------------------------------------------------
    def handle_store(self, event):
        """EVT_C_STORE: the status of one received instance (see the module's docstring)."""
        self.stats.add(received=1)
        requestor = getattr(event.assoc.requestor, "ae_title", "?")
        label = f"instance {event.request.AffectedSOPInstanceUID} from {requestor}"
        try:
            data = event.encoded_dataset(include_meta=True)
            image = self._check(data, label)
        except LungcadError as exc:
            self.stats.add(refused=1)
            log.warning("refused: %s", exc)
            # The Error Comment holds 64 characters: the reason, without the instance's name.
            return _failure(CANNOT_UNDERSTAND, str(exc).replace(label, "").lstrip(" :,;"))
        except Exception as exc:  # noqa: BLE001  a bad image must not stop the node
            self.stats.add(refused=1)
            log.exception("refused: unexpected error on %s", label)
            return _failure(CANNOT_UNDERSTAND, f"unexpected error: {exc}")
        if not image:
            self.stats.add(ignored=1)
            return 0x0000
        key = spool_key(event.request.AffectedSOPInstanceUID)
        try:
            self.spool.accept(key, data)
        except SpoolFull as exc:
            self.stats.add(refused=1)
            log.warning("refused (0xA700): %s: %s", label, exc)
            return _failure(OUT_OF_RESOURCES, "lungcad spool full; send again later")
        except OSError as exc:
            self.stats.add(refused=1)
            log.error("refused (0xA700): %s: cannot write it to the spool %s (%s)", label,
                      self.spool_dir, exc)
            return _failure(OUT_OF_RESOURCES, f"lungcad cannot store it: {exc.strerror or exc}")
        self.stats.add(accepted=1)
        log.info("received %s: in the spool", label)
        self.deliverer.wake()
        return 0x0000

    def _check(self, data: bytes, label: str) -> bool:
        """True for a readable image with a model; False for an instance without an image;
        a LungcadError for anything else."""
        import pydicom

        from lungcad.io import load_image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(io.BytesIO(data), force=True)
                has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData",
                                                   "DoubleFloatPixelData"))
        except Exception as exc:  # noqa: BLE001  pydicom raises many types on damaged data
            raise LungcadError(f"{label} is not a readable DICOM data set ({exc})") from None
        if not has_pixels:
            log.info("ignored: %s holds no image (SOP class %s)", label, ds.get("SOPClassUID"))
            return False
        self.chooser.model_names_for(ds)  # a LungcadError where no model suits the modality
        load_image(data, name=label)     # decodes: a LungcadError for a damaged image
        return True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the spool is empty: every accepted image stored or in failed/."""
        return self.deliverer.wait_idle(timeout)

    # -- the server ----------------------------------------------------------------------
    def start(self):
        """Start listening (in background threads); returns the pynetdicom server."""
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        self.stats = NodeStats()
        self.spool = Spool(self.spool_dir, max_instances=self.limits[0],
                           max_bytes=self.limits[1], durable=self.durable)
        held = self.spool.usage()[0]
        if held:
            log.info("resuming %d instance(s) held in the spool %s", held, self.spool_dir)
        self.deliverer = Deliverer(self.spool, self.chooser, self.destination, self.stats,
                                   calling_aet=self.aet, heatmap=self.heatmap, retry=self.retry,
                                   store_timeout=self.store_timeout)
        ae = AE(ae_title=self.aet)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        ae.maximum_associations = 4
        ae.dimse_timeout = ae.network_timeout = 120
        try:
            self._server = ae.start_server((self.host, self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self.handle_store)])
        except OSError as exc:
            self.spool.close()
            raise LungcadError(f"cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); "
                               "is another program using the port? choose one with --port") from None
        self.deliverer.start()
        return self._server

    def shutdown(self, wait: float = 60.0) -> None:
        """Stop accepting associations, let the running ones finish (up to ``wait`` seconds,
        then abort them), close the socket, and stop the worker once the instance in hand is
        done: the rest stays in the spool, resumed on the next start."""
        server, self._server = self._server, None
        if server is None:
            return
        running = server.active_associations
        server.shutdown()
        deadline = time.monotonic() + wait
        for assoc in running:
            assoc.join(max(0.0, deadline - time.monotonic()))
            if assoc.is_alive():
                log.warning("aborting an association still running after %.0f s", wait)
                assoc.abort()
        self.deliverer.stop()
        self.spool.close()

    def serve(self, stop: threading.Event, poll: float = 0.5) -> NodeStats:
        """Listen until ``stop`` is set (SIGTERM / SIGINT in ``lungcad listen``)."""
        self.start()
        try:
            while not stop.wait(poll):
                pass
        finally:
            self.shutdown()
        return self.stats
