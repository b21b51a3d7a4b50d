"""The Storage SCP. Each received instance is checked while its C-STORE is open (a readable
DICOM image, with a model for its modality) and answered at once, so that a sender's timeout
(Orthanc's is 10 s) never depends on the model's speed:

- 0x0000 Success: accepted; its SR and overlay follow (or the instance holds no image, e.g. an
  SR, and is ignored, with a log line);
- 0xC000 Failure, "Cannot understand" (PS3.4 B.2.3): not a readable DICOM image, or no model
  for it; the Error Comment says why;
- 0xA700 Failure, "Out of Resources": the node's queue is full (try again later).

Accepted images are run, one at a time, by a worker thread that C-STOREs each one's SR and
overlay to the destination; a failure there is logged and counted. A bad image never stops the
association or the node. :meth:`DicomNode.shutdown` stops listening, lets the running
associations finish and the queue drain.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
import warnings
from dataclasses import dataclass, field

from lungcad.dicom_node.destination import Destination, store
from lungcad.dicom_out import ModelChooser, dicom_results
from lungcad.errors import LungcadError

log = logging.getLogger("lungcad.listen")

CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700


@dataclass
class NodeStats:
    received: int = 0
    accepted: int = 0
    processed: int = 0
    stored: int = 0       # images whose results the destination took
    failed: int = 0       # refused on receipt, or failed in the model or at the destination
    ignored: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for key, n in counts.items():
                setattr(self, key, getattr(self, key) + n)

    def line(self) -> str:
        return (f"{self.received} received, {self.processed} processed, {self.stored} stored to "
                f"the destination, {self.failed} failed, {self.ignored} ignored (not images)")


def _failure(code: int, message: str):
    from pydicom import Dataset

    status = Dataset()
    status.Status = code
    status.ErrorComment = message[:64]
    return status


class DicomNode:
    """``lungcad listen``: a Storage SCP with AE title ``aet`` on ``host:port``."""

    def __init__(self, chooser: ModelChooser, destination: Destination, *, aet: str = "LUNGCAD",
                 host: str = "127.0.0.1", port: int = 11112, heatmap: bool = True,
                 queue_size: int = 500):
        if not 0 < len(aet) <= 16:
            raise LungcadError(f"--aet {aet!r}: an AE title has 1 to 16 characters")
        self.chooser, self.destination = chooser, destination
        self.aet, self.host, self.port, self.heatmap = aet, host, int(port), heatmap
        self.stats = NodeStats()
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._server = None
        self._worker: threading.Thread | None = None

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
            self.stats.add(failed=1)
            log.warning("refused: %s", exc)
            # The Error Comment holds 64 characters: the reason, without the instance's name.
            return _failure(CANNOT_UNDERSTAND, str(exc).replace(label, "").lstrip(" :,;"))
        except Exception as exc:  # noqa: BLE001  a bad image must not stop the node
            self.stats.add(failed=1)
            log.exception("refused: unexpected error on %s", label)
            return _failure(CANNOT_UNDERSTAND, f"unexpected error: {exc}")
        if not image:
            self.stats.add(ignored=1)
            return 0x0000
        try:
            self._queue.put((data, label), timeout=30)
        except queue.Full:
            self.stats.add(failed=1)
            log.warning("refused: %s: the queue is full", label)
            return _failure(OUT_OF_RESOURCES, "lungcad queue full; send again later")
        self.stats.add(accepted=1)
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

    # -- processing ----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._process(*item)
            finally:
                self._queue.task_done()

    def _process(self, data: bytes, label: str) -> None:
        import pydicom

        try:
            with self.chooser.lock:  # one model run at a time
                ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
                results = [r for model in self.chooser.models_for(ds)
                           for r in dicom_results(model, data, heatmap=self.heatmap, label=label)]
        except LungcadError as exc:
            self.stats.add(failed=1)
            log.warning("failed: %s", exc)
            return
        except Exception:  # noqa: BLE001  one image's failure must not stop the worker
            self.stats.add(failed=1)
            log.exception("failed: unexpected error on %s", label)
            return
        self.stats.add(processed=1)
        try:
            store(results, self.destination, calling_aet=self.aet)
        except LungcadError as exc:
            self.stats.add(failed=1)
            log.warning("results of %s not stored: %s", label, exc)
            return
        self.stats.add(stored=1)
        log.info("%s: results stored to %s", label, self.destination)

    def wait_idle(self) -> None:
        """Block until every accepted image has been processed (and stored or failed)."""
        self._queue.join()

    # -- the server ----------------------------------------------------------------------
    def start(self):
        """Start listening (in background threads); returns the pynetdicom server."""
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        self.stats = NodeStats()
        ae = AE(ae_title=self.aet)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        ae.maximum_associations = 4
        ae.dimse_timeout = ae.network_timeout = 120
        try:
            self._server = ae.start_server((self.host, self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self.handle_store)])
        except OSError as exc:
            raise LungcadError(f"cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); "
                               "is another program using the port? choose one with --port") from None
        self._worker = threading.Thread(target=self._work, name="lungcad-node-worker", daemon=True)
        self._worker.start()
        return self._server

    def shutdown(self, wait: float = 60.0) -> None:
        """Stop accepting associations, let the running ones finish (up to ``wait`` seconds,
        then abort them), close the socket, and process what was accepted."""
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
        if self._worker is not None:
            self._queue.put(None)  # after every accepted image
            self._worker.join()
            self._worker = None

    def serve(self, stop: threading.Event, poll: float = 0.5) -> NodeStats:
        """Listen until ``stop`` is set (SIGTERM / SIGINT in ``lungcad listen``)."""
        self.start()
        try:
            while not stop.wait(poll):
                pass
        finally:
            self.shutdown()
        return self.stats
