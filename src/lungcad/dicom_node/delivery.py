"""The DICOM node's worker: each instance in the spool is run through its model(s) once, its
results put in the outbox, and the outbox C-STOREd to the destination, with bounded retries and
backoff; an instance leaves the spool only when the destination has taken every result of it,
and goes to ``failed/`` (with its reason) when the model fails on it or the attempts run out."""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from dataclasses import dataclass

from lungcad.dicom_node.destination import Destination, store
from lungcad.dicom_node.spool import Spool
from lungcad.dicom_out import ModelChooser, dicom_results
from lungcad.errors import LungcadError

log = logging.getLogger("lungcad.listen")


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries to store an instance's results; the n-th failure waits
    ``first_delay_s * 2**(n-1)`` seconds, at most ``max_delay_s``, before the next."""
    attempts: int = 12
    first_delay_s: float = 10.0
    max_delay_s: float = 600.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or not (0 <= self.first_delay_s <= self.max_delay_s < math.inf):
            raise LungcadError(f"retry settings: attempts must be at least 1 and the delays 0 <= "
                               f"first <= max (got {self.attempts}, {self.first_delay_s:g} s, "
                               f"{self.max_delay_s:g} s)")

    def delay(self, failures: int) -> float:
        return min(self.max_delay_s, self.first_delay_s * 2.0 ** max(0, failures - 1))

    def span_s(self) -> float:
        """Seconds from the first attempt to the last, at most."""
        return sum(self.delay(n) for n in range(1, self.attempts))

    def describe(self) -> str:
        span = self.span_s()
        shown = f"{span / 3600:.1f} h" if span >= 3600 else f"{span:g} s"
        return f"{self.attempts} attempts over about {shown}"


def encode(ds) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class Deliverer:
    """The worker thread of :class:`~lungcad.dicom_node.scp.DicomNode`."""

    def __init__(self, spool: Spool, chooser: ModelChooser, destination: Destination, stats, *,
                 calling_aet: str, heatmap: bool, retry: RetryPolicy, store_timeout: float):
        self.spool, self.chooser, self.destination, self.stats = spool, chooser, destination, stats
        self.calling_aet, self.heatmap, self.retry = calling_aet, heatmap, retry
        self.store_timeout = store_timeout
        self.failed_now: list[tuple[str, str]] = []   # (key, reason) given up on in this run
        self._wake = threading.Condition()
        self._pending = False
        self._stop = False
        self._thread: threading.Thread | None = None

    # -- the thread ----------------------------------------------------------------------
    def start(self) -> None:
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="lungcad-node-worker",
                                        daemon=True)
        self._thread.start()

    def wake(self) -> None:
        with self._wake:
            self._pending = True
            self._wake.notify_all()

    def stop(self) -> None:
        """Finish the instance in hand and stop; the rest stays in the spool for the next start."""
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the spool is empty (every instance stored or failed); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._wake:
            while self.spool.usage()[0]:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._wake.wait(0.2 if remaining is None else min(0.2, remaining))
        return True

    def _loop(self) -> None:
        while True:
            with self._wake:
                if self._stop:
                    return
                self._pending = False
            key, wait = self._next_due()
            if key is not None:
                try:
                    self._handle(key)
                except Exception:  # noqa: BLE001  one instance's failure must not stop the worker
                    log.exception("unexpected error on instance %s; it stays in the spool", key)
                    wait = 1.0
                else:
                    continue
            with self._wake:
                if not self._stop and not self._pending:
                    self._wake.wait(wait)

    def _next_due(self) -> tuple[str | None, float]:
        """The next instance to work on, or None and the seconds until one is due."""
        now, soonest = time.time(), 5.0
        for key in self.spool.keys():
            delivery = self.spool.delivery(key)
            if delivery.results is None or delivery.next_try <= now:
                return key, 0.0
            soonest = min(soonest, delivery.next_try - now)
        return None, max(0.05, soonest)

    # -- one instance --------------------------------------------------------------------
    def _handle(self, key: str) -> None:
        delivery = self.spool.delivery(key)
        label = f"instance {key}"
        if delivery.results is None:
            data = self.spool.source(key)
            if data is None:
                return
            try:
                encoded = self._results(data, label)
            except Exception as exc:  # noqa: BLE001  LungcadError, or anything the model raised
                why = str(exc) if isinstance(exc, LungcadError) else f"unexpected error: {exc!r}"
                self._give_up(key, f"the model failed on it: {why}")
                return
            delivery = self.spool.put_results(key, encoded)
            self.stats.add(processed=1)
        try:
            import pydicom

            store([pydicom.dcmread(p) for p in delivery.results], self.destination,
                  calling_aet=self.calling_aet, timeout=self.store_timeout)
        except Exception as exc:  # noqa: BLE001  LungcadError, or the network's own errors
            exc = exc if isinstance(exc, LungcadError) else f"{type(exc).__name__}: {exc}"
            failures = delivery.attempts + 1
            if failures >= self.retry.attempts:
                self.spool.record_attempt(key, str(exc), 0.0)
                self._give_up(key, f"{self.destination} did not take its results in {failures} "
                                   f"attempt(s) ({self.retry.describe()}); last error: {exc}")
                return
            delay = self.retry.delay(failures)
            self.spool.record_attempt(key, str(exc), time.time() + delay)
            self.stats.add(retries=1)
            log.warning("%s: results not stored (attempt %d of %d): %s; next attempt in %g s",
                        label, failures, self.retry.attempts, exc, delay)
            return
        self.spool.delivered(key)
        self.stats.add(stored=1)
        log.info("%s: results stored to %s", label, self.destination)
        with self._wake:
            self._wake.notify_all()

    def _results(self, data: bytes, label: str) -> list[bytes]:
        import pydicom

        with self.chooser.lock:  # one model run at a time
            ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
            return [encode(r) for model in self.chooser.models_for(ds)
                    for r in dicom_results(model, data, heatmap=self.heatmap, label=label)]

    def _give_up(self, key: str, reason: str) -> None:
        folder = self.spool.fail(key, reason)
        self.failed_now.append((key, reason))
        self.stats.add(failed=1)
        log.error("instance %s moved to %s: %s", key, folder, reason)
        with self._wake:
            self._wake.notify_all()
